"""The workers' share of analyze --cluster: one capture file decoded into a picklable FilePart.

A worker scans the file as the one-process batch path does (voipwatch.batch.driver.ChunkReader):
the RTP candidates of each chunk are decoded column-wise and grouped by stream, every other record
(SIP, DNS, RTCP, TCP, IPv6, fragments, ...) is cut out as raw bytes for the client's per-frame
pipeline, and the part of the file the scanner leaves (an irregular record, a compressed file) is
read by the generic reader (voipwatch.capture.read_capture), frames and anomalies as they are. The
capture time of every item comes back too: the client needs all of them to merge the files, and
each candidate's IP identification and MACs, with which the client drops the set's SPAN copies.
Nothing here depends on another file, on SDP or on configuration; that is the client's work.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import islice

import numpy as np

from dissectors import dispatch
from voipwatch import __version__
from voipwatch.batch.candidates import Candidates
from voipwatch.batch.driver import ChunkReader
from voipwatch.batch.reader import ScanError
from voipwatch.capture import CaptureError, read_capture
from voipwatch.records import Anomaly, Frame

Slow = tuple[int, float, int, bytes, int, int]   # (record index in the file, ts, linktype, data, wire_len, offset)


@dataclass
class FilePart:
    """One capture file, decoded as far as it can be without the others."""
    path: str
    ts: np.ndarray                    # float64 capture time of every item, in file order: the scanned records, then `tail`
    scanned: int                      # records scanned column-wise (items 0 .. scanned - 1)
    blocks: list[tuple[int, Candidates]] = field(default_factory=list)   # (records before the chunk, its candidates)
    slow: list[Slow] = field(default_factory=list)                        # the scanned records that are not candidates
    tail: list[Frame | Anomaly] = field(default_factory=list)             # the generic reader's items after them
    error: str | None = None          # why the capture could not be read at all (its items are then empty)
    offset: int = 0                   # byte offset that error refers to
    seconds: float = 0.0              # the worker's time on this file (wall)
    cpu_s: float = 0.0                # and the CPU time of its process meanwhile
    decoder: tuple = ()               # decoder_identity() of the worker

    @property
    def frames(self) -> int:
        return self.scanned + sum(1 for item in self.tail if type(item) is Frame)

    def is_frame(self) -> np.ndarray:
        """Per item: a frame (True) or an anomaly of the reader (False)."""
        return np.r_[np.ones(self.scanned, dtype=bool), np.fromiter((type(i) is Frame for i in self.tail), bool,
                                                                      count=len(self.tail))]


def decoder_identity() -> tuple[str, tuple[str, ...]]:
    """What decides how a worker splits frames: voipwatch's version and the site's dissector plugins
    (their ports join the dispatch table, which keeps datagrams on them off the RTP fast path)."""
    return __version__, tuple(module.__name__ for module in dispatch.site_modules())


def decode_capture(path: str) -> FilePart:
    """The FilePart of one capture; a capture whose header cannot be read gives a part with `error`."""
    started, cpu = time.perf_counter(), time.process_time()
    try:
        part = _decode(path)
    except CaptureError as exc:
        part = FilePart(path, np.zeros(0), 0, error=exc.message, offset=exc.offset)
    part.seconds = round(time.perf_counter() - started, 6)
    part.cpu_s = round(time.process_time() - cpu, 6)
    part.decoder = decoder_identity()
    return part


def _decode(path: str) -> FilePart:
    try:
        reader: ChunkReader | None = ChunkReader(path, grouped=True, copy_keys=True)
    except (OSError, ScanError):      # not a file the scanner walks: the generic reader decides
        reader = None
    blocks: list[tuple[int, Candidates]] = []
    slow: list[Slow] = []
    times: list[np.ndarray] = []
    done = 0
    for chunk in reader if reader is not None else ():
        ts = np.empty(chunk.records)
        if chunk.n_cands:
            ts[chunk.cands.index] = chunk.cands.ts
            blocks.append((done, chunk.cands))
        if chunk.slow:
            ts[[s[0] for s in chunk.slow]] = [s[1] for s in chunk.slow]
            slow.extend((done + i, t, lt, data, wl, off) for i, t, lt, data, wl, off in chunk.slow)
        times.append(ts)
        done += chunk.records
    tail: list[Frame | Anomaly] = []
    if reader is None or not reader.complete:
        tail = list(islice(read_capture(path), done, None))
    times.append(np.fromiter((item.ts for item in tail), dtype=np.float64, count=len(tail)))
    return FilePart(path, np.concatenate(times), done, blocks, slow, tail)
