"""Detectors: one file per family of NSA guide checks; they consume records, never packets."""
