"""Which captures of a set can be read: a per-file check before a run, and the damage found during it.

A capture whose header cannot be read (missing, empty, unknown format, bad pcap/pcapng header, broken
gzip header) would stop a whole run with CaptureError; `check_capture` finds that first, so that a run
over many files can name the bad one and go on with the others. Damage after the header (a file cut
short, a record of impossible length) never stops a run: the reader keeps every whole record before it
and reports a `capture.*` anomaly naming the file, which `damage_of` finds again for the run record.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from voipwatch.capture import CaptureError, read_capture
from voipwatch.records import Anomaly, Frame

# capture.* anomalies after which the reader stopped reading the file (voipwatch.capture.ANOMALIES)
READING_STOPPED = ("capture.truncated_record", "capture.bad_record_length", "capture.bad_section_header")


@dataclass(frozen=True)
class CaptureCheck:
    """A capture file before a run: its content hash and size, and why it cannot be read (None if it can)."""
    path: str
    sha256: str | None
    size: int | None
    error: str | None
    first_ts: float | None = None      # capture time of its first record

    @property
    def usable(self) -> bool:
        return self.error is None


def sha256_file(path: str, chunk: int = 1 << 20) -> tuple[str, int]:
    """SHA-256 (hex) and size in bytes of a file's content."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def check_capture(path: str) -> CaptureCheck:
    """Hash a capture and read its header (and first record): an `error` names what makes it unusable."""
    try:
        sha, size = sha256_file(path)
    except OSError as exc:
        return CaptureCheck(path, None, None, f"{path}: cannot open: {exc.strerror or exc}")
    try:
        items = read_capture(path)
        first = next(items, None)         # the readers check the file header before the first item
        items.close()
    except CaptureError as exc:
        return CaptureCheck(path, sha, size, str(exc))
    return CaptureCheck(path, sha, size, None, first.ts if isinstance(first, Frame) else None)


def damage_of(anomalies: list[Anomaly], path: str) -> str | None:
    """The reader's note on where it stopped reading `path` (a truncated or damaged record), if it did."""
    for a in anomalies:
        if a.name in READING_STOPPED and a.detail.startswith(f"{path}: "):
            return f"{a.name}: {a.detail}"
    return None
