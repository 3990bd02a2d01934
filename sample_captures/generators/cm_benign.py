"""Writes sample_captures/cm-benign.pcap: the cleartext_management site managed properly (see cm_attacks.py)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cm_attacks import benign  # noqa: E402

if __name__ == "__main__":
    benign().save(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "cm-benign.pcap"))
