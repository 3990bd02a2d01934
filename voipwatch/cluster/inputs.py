"""Capture sets: directories expanded to their captures, and captures that cannot be read left out."""
from __future__ import annotations

import math
from pathlib import Path

from voipwatch.capture import CaptureError, read_capture
from voipwatch.records import Frame


def expand_captures(arguments: list[str]) -> list[str]:
    """The arguments with each directory replaced by its regular, non-hidden files (not recursive),
    ordered by the capture time of their first packet, then by name; files with no readable packet
    come last. The order only decides ties: files are merged packet by packet in capture-time order,
    and packets of equal time come in file order."""
    out: list[str] = []
    for argument in arguments:
        if argument != "-" and Path(argument).is_dir():
            files = [p for p in Path(argument).iterdir() if p.is_file() and not p.name.startswith(".")]
            out.extend(str(p) for p in sorted(files, key=lambda p: (_first_ts(str(p)), p.name)))
        else:
            out.append(argument)
    return out


def _first_ts(path: str) -> float:
    try:
        return next((item.ts for item in read_capture(path) if type(item) is Frame), math.inf)
    except CaptureError:
        return math.inf


def unreadable(path: str) -> dict | None:
    """{file, offset, error} when the capture's header cannot be read (what read_captures would raise)."""
    try:
        next(read_capture(path), None)
    except CaptureError as exc:
        return failure(path, exc.offset, exc.message)
    return None


def failure(path: str, offset: int, error: str) -> dict:
    """One entry of summary.json's captures_failed."""
    return {"file": path, "offset": offset, "error": error}
