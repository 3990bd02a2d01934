"""Protocol dissectors: bytes in, records and anomalies out; they describe, never judge."""
