"""The client's share of analyze --cluster: the workers' FileParts fed to one Analyzer as one capture.

The files are merged exactly as voipwatch.capture.read_captures merges them (capture-time order,
ties in file order, frames renumbered 1-based over the run, a reader anomaly numbered as there), so
every record crossing a file boundary (a call, a dialog, a stream, a TCP or IP reassembly) is built
once, by one Analyzer, as in a one-process run. The per-frame records go through the per-frame
pipeline in that order; the RTP candidates go to the batch RTP collector in blocks of capture order,
each grouped by stream (the order voipwatch.batch.rtp.BatchRtp requires), with their run frame numbers.
"""
from __future__ import annotations

import heapq
from operator import itemgetter
from typing import Callable

import numpy as np

from voipwatch.batch.candidates import KEY_COLUMNS, Candidates, DecodedCandidates, group_candidates
from voipwatch.batch.copies import CandidateCopies
from voipwatch.batch.grouping import KeyIds
from voipwatch.batch.rtp import BatchRtp
from voipwatch.cluster.decode import FilePart
from voipwatch.pipeline import Analyzer
from voipwatch.records import Anomaly, Frame

# Rows per block when candidates of files that overlap in time must be regrouped in run order.
REGROUP_ROWS = 1 << 20


def merge_order(keys: list[np.ndarray]) -> np.ndarray:
    """Positions in the concatenation of `keys` (each file's item times, in file order) in the order
    read_captures yields them: heapq.merge of the files by time, ties to the earlier file. When every
    file is in time order that is a stable sort; otherwise the merge itself is replayed."""
    joined = np.concatenate(keys) if keys else np.zeros(0)
    if all(len(k) < 2 or bool((k[1:] >= k[:-1]).all()) for k in keys):
        return np.argsort(joined, kind="stable")
    starts = np.cumsum([0] + [len(k) for k in keys[:-1]]).tolist()
    files = [_keyed_items(f, k) for f, k in enumerate(keys)]
    return np.fromiter((starts[f] + j for _, f, j in heapq.merge(*files)), dtype=np.int64, count=len(joined))


def _keyed_items(f: int, keys: np.ndarray):
    """(time, file, item) of one file's items: compared by time, then by file, as heapq.merge breaks ties."""
    for j, t in enumerate(keys.tolist()):
        yield t, f, j


def feed_parts(parts: list[FilePart], analyzer: Analyzer, rtp: BatchRtp,
               progress: Callable[[Frame], None] | None = None) -> None:
    """Feed the parts (files in the run's order) to `analyzer`, whose RTP collector is `rtp`;
    `progress` sees the per-frame records' frames (numbered over the run) as they go."""
    keys = [part.ts for part in parts]
    starts = np.cumsum([0] + [len(k) for k in keys[:-1]]).tolist()
    order = merge_order(keys)
    is_frame = np.concatenate([part.is_frame() for part in parts]) if parts else np.zeros(0, dtype=bool)
    # Per item: frames merged up to and including it (a frame's run number), and its place in the run.
    merged = np.empty(len(order), dtype=np.int64)
    merged[order] = np.cumsum(is_frame[order])
    place = np.empty(len(order), dtype=np.int64)
    place[order] = np.arange(len(order))
    items: list[tuple[int, Frame | Anomaly]] = []
    blocks: list[tuple[np.ndarray, Candidates]] = []
    for f, part in enumerate(parts):
        items.extend(_per_frame_items(part, f, merged[starts[f]:starts[f] + len(part.ts)],
                                      place[starts[f]:starts[f] + len(part.ts)]))
        run = merged[starts[f]:starts[f] + part.scanned]
        blocks.extend((run[done + cands.index], cands) for done, cands in part.blocks)
    items.sort(key=itemgetter(0))
    for _, item in items:
        analyzer.process(item)
        if progress is not None and type(item) is Frame:
            progress(item)
    ordered, duplicates = _in_run_order(blocks, rtp.dedup_window_s)
    analyzer.count_duplicates(duplicates)
    for frames, cands in ordered:
        rtp.count_candidates(len(cands), float(cands.ts.min()), float(cands.ts.max()))
        rtp.add_candidates(cands, frames)


def _per_frame_items(part: FilePart, source: int, merged: np.ndarray, place: np.ndarray):
    """(place in the run, item) of the part's records for the per-frame pipeline, numbered for the run
    as read_captures numbers them."""
    numbers, places = merged.tolist(), place.tolist()
    for index, ts, linktype, data, wire_len, offset in part.slow:
        yield places[index], Frame(ts, numbers[index], linktype, data, wire_len, source, offset)
    # The last frame of this file merged so far: (number in the file, number in the run).
    last = (part.scanned, numbers[part.scanned - 1]) if part.scanned else (0, 0)
    for k, item in enumerate(part.tail, start=part.scanned):
        if type(item) is Frame:
            last = (item.frame, numbers[k])
            yield places[k], Frame(item.ts, numbers[k], item.linktype, item.data, item.wire_len, source, item.offset)
        else:
            number = last[1] if item.frame == last[0] else numbers[k] + 1
            yield places[k], Anomaly(item.ts, number, item.layer, item.name, item.detail, item.src, item.dst)


def _in_run_order(blocks: list[tuple[np.ndarray, Candidates]], dedup_window_s: float | None
                  ) -> tuple[list[tuple[np.ndarray, Candidates]], int]:
    """The candidate blocks in run order, and the SPAN copies dropped among them. Without deduplication,
    rotated files give blocks whose frames do not interleave, so each keeps the grouping its worker made.
    Otherwise the candidates are regrouped here in run order, and with `dedup_window_s` the copies of
    the whole set are dropped first, as the per-frame merge drops them (voipwatch.batch.copies: within
    one file and across files)."""
    blocks = sorted((b for b in blocks if len(b[1])), key=lambda b: int(b[0].min()))
    if dedup_window_s is None and all(int(a[0].max()) < int(b[0].min()) for a, b in zip(blocks, blocks[1:])):
        return blocks, 0
    if not blocks:
        return [], 0
    columns = [np.concatenate(column) for column in zip(*((frames, *_keyed(c)) for frames, c in blocks))]
    by_frame = np.argsort(columns[0], kind="stable")
    index, keys, (seq, rtp_ts, b1, payload_len, heuristic, ts, ident, macs) = (
        columns[0][by_frame], [c[by_frame] for c in columns[1:KEY_COLUMNS + 1]],
        [c[by_frame] for c in columns[KEY_COLUMNS + 1:]])
    copies = CandidateCopies(dedup_window_s) if dedup_window_s is not None else None
    streams = KeyIds(KEY_COLUMNS)
    out, dropped = [], 0
    for lo in range(0, len(index), REGROUP_ROWS):
        part = slice(lo, lo + REGROUP_ROWS)
        decoded = DecodedCandidates(index=index[part], keys=[k[part] for k in keys], seq=seq[part],
                                    rtp_ts=rtp_ts[part], b1=b1[part], payload_len=payload_len[part],
                                    heuristic=heuristic[part], ts=ts[part], ident=ident[part], macs=macs[part])
        if copies is not None:
            decoded, n = copies.drop(decoded)
            dropped += n
        decoded.ident = decoded.macs = None
        if len(decoded):
            grouped = group_candidates(decoded, streams)
            out.append((grouped.index, grouped))
    return out, dropped


def _keyed(c: Candidates) -> tuple[np.ndarray, ...]:
    """A grouped block's columns with each row's full stream key (those of DecodedCandidates but `index`),
    then what tells its copies apart (IP identification, MACs; zeros when the worker kept none)."""
    n = len(c)
    ident = c.ident if c.ident is not None else np.zeros(n, dtype=np.uint32)
    macs = c.macs if c.macs is not None else np.zeros((n, 2), dtype=np.uint64)
    return (*(c.flows[c.flow, j] for j in range(c.flows.shape[1])), c.ssrc, c.seq, c.rtp_ts, c.b1,
            c.payload_len, c.heuristic, c.ts, ident, macs)
