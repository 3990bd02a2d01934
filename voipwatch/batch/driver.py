"""The vectorised batch path: a capture file fed to the Analyzer chunk by chunk.

A capture file is scanned in chunks (batch.reader). In each chunk the RTP candidates, frames whose
headers numpy can decode exactly as the per-frame dissectors would, are decoded column-wise
(batch.candidates) and go straight to the analyzer's RTP collector (batch.rtp.BatchRtp); every
other frame (SIP, DNS, TCP, fragments, IPv6 extension headers, anything unusual) goes through the
per-frame pipeline in frame order. Candidates are classified once every SDP announced before their
frames is known (at the end of input, or with --jobs as the per-frame path's SDP log grows): a
candidate sent to or from an SDP-announced endpoint set up before its frame is negotiated RTP,
otherwise the header heuristic decides (dissectors.rtp.looks_like_rtp, mirrored there). The result
is the same records the streaming path gives; tests/test_parity.py holds both to that.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np

from voipwatch import compressed
from voipwatch.batch.candidates import KEY_COLUMNS, Candidates, DecodedCandidates, decode_candidates, group_candidates
from voipwatch.batch.copies import CandidateCopies
from voipwatch.batch.grouping import KeyIds
from voipwatch.batch.reader import HEAD, Records, Scanner, ScanError
from voipwatch.batch.rtp import BatchRtp
from voipwatch.batch.workers import Producer
from voipwatch.capture import read_capture
from voipwatch.pipeline import Analyzer
from voipwatch.records import Frame

CHUNK_BYTES = 8 << 20                   # file bytes read and scanned at a time


@dataclass
class Chunk:
    """One scanned chunk, independent of the read buffer (so another process can produce it)."""
    records: int                  # records in the chunk
    cands: Candidates | DecodedCandidates | None   # None once another process keeps them (KeptCandidates)
    n_cands: int
    cand_span: tuple[float, float]                 # earliest and latest capture time of the candidates
    slow: list[tuple[int, float, int, bytes, int, int]]   # (index, ts, linktype, data, wire_len, file offset)
    last: tuple[float, int, int, int]                      # (ts, linktype, wire_len, file offset) of the last record
    duplicates: int = 0                                    # candidates dropped as copies (voipwatch.batch.copies)


class ChunkReader:
    """A pcap/pcapng file, plain or compressed (voipwatch.compressed), as a sequence of Chunks.

    Raises OSError or ScanError when the file cannot be opened or is not such a file. Iteration stops
    before the first irregular record, or where a compressed stream breaks; `complete` then tells
    whether every record was scanned (if not, the rest of the file is for voipwatch.capture, which
    reports it exactly).
    """

    def __init__(self, path: str, grouped: bool = True, dedup_window_s: float | None = None,
                 copy_keys: bool = False):
        self.path = path
        self.grouped = grouped        # Chunk.cands grouped by stream (else DecodedCandidates)
        self.copy_keys = copy_keys    # candidates keep what tells SPAN copies apart (ident, MACs)
        self.streams = KeyIds(KEY_COLUMNS)      # the stream keys of every chunk (group_candidates)
        self.copies = CandidateCopies(dedup_window_s) if dedup_window_s is not None else None
        with open(path, "rb") as raw:
            self.compression = compressed.kind(raw.read(4))
        with self._open() as fh:
            try:
                head = fh.read(64)
            except compressed.DECOMPRESSION_ERRORS as exc:
                raise ScanError(f"bad {self.compression} stream: {exc}") from exc
            self.scanner = Scanner(head)
        self.complete = False

    def _open(self) -> BinaryIO:
        """The capture's (decompressed) bytes from the start."""
        raw = open(self.path, "rb")
        if self.compression is None:
            return raw
        return compressed.open_stream(self.compression, raw)

    def __iter__(self) -> Iterator[Chunk]:
        scanner = self.scanner
        broken = False
        with self._open() as fh:
            fh.read(scanner.header_len)
            base = scanner.header_len
            # One reusable buffer: unconsumed bytes move to its front, the file fills the rest, and the
            # HEAD bytes past the data stay zero (gathers may reach into them).
            buf = bytearray(CHUNK_BYTES + HEAD)
            view = memoryview(buf)
            kept = 0
            while not scanner.irregular:
                try:
                    got = fh.readinto(view[kept:CHUNK_BYTES])
                except compressed.DECOMPRESSION_ERRORS:
                    broken = True         # the generic reader reads up to the damage again and names it
                    break
                if not got:
                    break
                end = kept + got
                buf[end:end + HEAD] = bytes(HEAD)
                records, used = scanner.scan(buf, end, base)
                if used == 0 and end == CHUNK_BYTES:
                    scanner.irregular = True      # a record longer than a chunk: leave it to the generic reader
                    break
                if len(records.ts):
                    yield _chunk(records, self.streams if self.grouped else None, self.copies, self.copy_keys)
                base += used
                kept = end - used
                buf[:kept] = buf[used:end]
        self.complete = not scanner.irregular and not kept and not broken


def _chunk(records: Records, streams: KeyIds | None, copies: CandidateCopies | None = None,
           copy_keys: bool = False) -> Chunk:
    """The chunk's candidates (their SPAN copies dropped when `copies`) grouped with `streams`, or
    (None) decoded only; with `copy_keys`, each keeps its IP identification and MACs."""
    decoded = decode_candidates(records)
    is_cand = np.zeros(len(records.ts), dtype=bool)
    is_cand[decoded.index] = True
    duplicates = 0
    if copies is not None:
        decoded, duplicates = copies.drop(decoded)
    if not copy_keys:
        decoded.ident = decoded.macs = None
    cands = group_candidates(decoded, streams) if streams is not None else decoded
    slow = np.flatnonzero(~is_cand)
    buf = records.buf
    data = [bytes(buf[start:start + caplen])
            for start, caplen in zip(records.data_off[slow].tolist(), records.caplen[slow].tolist())]
    last = len(records.ts) - 1
    span = (float(cands.ts.min()), float(cands.ts.max())) if len(cands) else (0.0, 0.0)
    return Chunk(len(records.ts), cands, len(cands), span,
                 list(zip(slow.tolist(), records.ts[slow].tolist(), records.linktype[slow].tolist(), data,
                          records.wire_len[slow].tolist(), records.file_off[slow].tolist())),
                 (float(records.ts[last]), int(records.linktype[last]), int(records.wire_len[last]),
                  int(records.file_off[last])), duplicates)


def feed_file(path: str, analyzer: Analyzer, rtp: BatchRtp, progress: Callable[[Frame], None] | None = None) -> bool:
    """Feed one capture file through the vectorised path to an Analyzer whose RTP collector is `rtp`.

    Returns False, having fed nothing, when the file is not an uncompressed pcap/pcapng file (the
    caller then uses the generic reader). Frames go to analyzer.process, RTP candidates straight to
    `rtp`. With rtp.jobs > 1, another process scans the file and keeps the RTP candidates while this
    one runs the per-frame path; at the end of input `rtp` hands its share to that process, which
    computes the streams (with rtp.jobs processes).
    """
    try:
        reader = ChunkReader(path, grouped=rtp.jobs == 1, dedup_window_s=rtp.dedup_window_s)
    except (OSError, ScanError):
        return False
    source: ChunkReader | KeptCandidates = reader
    chunks: Iterable[Chunk] = reader
    if rtp.jobs > 1:
        source = KeptCandidates(reader, rtp)
        chunks = producer = Producer(source, KeptCandidates.finish, KeptCandidates.settle, KeptCandidates.hear)
        rtp.delegate(producer.ask, producer.tell)
    done = 0
    for chunk in chunks:
        done = _feed_chunk(chunk, done, analyzer, rtp, progress)
    if not source.complete:
        for item in islice(read_capture(path), done, None):
            analyzer.process(item)
            if progress is not None and type(item) is Frame:
                progress(item)
    return True


class KeptCandidates:
    """The chunks of a ChunkReader (grouped=False), in the process that scans them (analyze --jobs):
    each chunk's RTP candidates stay in this process, the rest of the chunk goes on. Once every chunk
    is sent, settle() groups them into this process's copy of the analyzer's BatchRtp while the
    consumer still works through the last chunks."""

    def __init__(self, reader: ChunkReader, rtp: BatchRtp):
        self.reader, self.rtp = reader, rtp
        self.complete = False
        self._kept: list[tuple[DecodedCandidates, int]] = []    # (candidates, records before their chunk)

    def __iter__(self) -> Iterator[Chunk]:
        done = 0
        for chunk in self.reader:
            if chunk.n_cands:
                self._kept.append((chunk.cands, done))
            chunk.cands = None
            done += chunk.records
            yield chunk
        self.complete = self.reader.complete

    def settle(self) -> None:
        kept, self._kept = self._kept, []
        for decoded, done in kept:
            cands = group_candidates(decoded, self.reader.streams)
            self.rtp.add_candidates(cands, done + 1 + cands.index)

    def hear(self, notes: list) -> None:
        """The analyzer's SDP announcements so far (BatchRtp.share): the candidates they cover are
        classified while the per-frame process goes on."""
        self.rtp.hear(notes)

    def finish(self, handover: dict) -> tuple[list, int]:
        """The analyzer's BatchRtp.finish, here: its per-frame packets and SDP log join the candidates."""
        self.rtp.take_over(handover)
        streams: list = []
        not_rtp = self.rtp.streams(streams.extend)
        return streams, not_rtp


def _feed_chunk(chunk: Chunk, done: int, analyzer: Analyzer, rtp: BatchRtp, progress) -> int:
    """Per-frame path for the non-candidates, in order; candidates handed over as columns (or, kept
    by the scanning process, counted)."""
    for i, ts, linktype, data, wire_len, offset in chunk.slow:
        analyzer.process(Frame(ts, done + 1 + i, linktype, data, wire_len, 0, offset))
    analyzer.count_duplicates(chunk.duplicates)
    if chunk.n_cands:
        rtp.count_candidates(chunk.n_cands, *chunk.cand_span)
        if chunk.cands is not None:
            rtp.add_candidates(chunk.cands, done + 1 + chunk.cands.index)
    rtp.share(analyzer.settled_frame(done + chunk.records))   # frames still held: their SDP is not known yet
    if progress is not None:
        ts, linktype, wire_len, offset = chunk.last
        progress(Frame(ts, done + chunk.records, linktype, b"", wire_len, 0, offset))
    return done + chunk.records
