"""RTP stream statistics over columns: the vectorised twin of voipwatch.rtpstats.RtpStreamTracker.

The batch path (voipwatch.batch.rtp) computes every stream at the end of input from columns of RTP
header fields, with the arithmetic voipwatch.rtpstats describes (Wireshark 4.0's rtppacket_analyse):
the integers are those of the tracker, the jitter figures agree to ~1e-12 relative (the recursion
sums in another order). tests/test_rtpstats.py holds both to tshark and to each other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from dissectors.rtp import codec_name
from voipwatch.batch.grouping import stable_order
from voipwatch.records import RtpStream
from voipwatch.rtpstats import (COMFORT_NOISE_PTS, FIRST_DYNAMIC_PT, IN_SEQUENCE_SPAN, JITTER_WEIGHT,
                                TSHARK_STATIC_CLOCK, WRAP_JUMP, analysis_clock_rate)

KEY_COLUMNS = ("vlan", "src", "sport", "dst", "dport", "ssrc")
TABLE_COLUMNS = ("ts", "frame", *KEY_COLUMNS, "seq", "rtp_ts", "pt", "marker", "payload_len", "negotiated",
                 "clock_rate_hz")
# Jitter updates per block of the blocked RFC 3550 §A.8 recursion: wide blocks for long streams, narrow
# ones when streams are short (less padding). A block's carry-in sums earlier blocks until their weight
# (15/16)^(width * blocks back) falls below 1e-17, where it no longer changes a double.
EWMA_WIDE, EWMA_NARROW = 64, 16
EWMA_NEGLIGIBLE = 1e-17


def streams_from_table(table: Any, idle_s: float = 60.0,
                       vlans: Sequence[tuple[int, ...]] | Mapping[int, tuple[int, ...]] | None = None
                       ) -> list[RtpStream]:
    """The vectorised twin of RtpStreamTracker: the same records from a table of RTP header fields.

    `table` maps column names to equal-length columns (a pandas DataFrame, or a dict of arrays):
    TABLE_COLUMNS, where clock_rate_hz is rtp.clock_rate of the row's payload type (0 or NaN when
    unknown), plus optional "codec" (rtp.codec_name; RFC 3551 names when absent) and "call_id" (a
    stream takes its first packet's). Rows may be in any order: "frame" gives capture order. "vlan"
    holds VLAN tuples, or integer indexes into `vlans`.
    Segments are cut where a packet comes more than idle_s after the previous one of its stream.
    """
    n = len(table["ts"])
    if n == 0:
        return []
    key = _stream_ids(table, n)
    order = capture_order(key, _numeric(table, "frame", np.int64))
    segments = segment_rows(
        stream=key[order], ts=_numeric(table, "ts", np.float64)[order], seq=_numeric(table, "seq", np.int64)[order],
        rtp_ts=_numeric(table, "rtp_ts", np.int64)[order], pt=_numeric(table, "pt", np.int64)[order],
        marker=_numeric(table, "marker", bool)[order], clock=_analysis_clock_rates(table)[order],
        payload_len=_numeric(table, "payload_len", np.int64)[order],
        negotiated=_numeric(table, "negotiated", bool)[order], idle_s=idle_s)
    rows = order[segments.first]                          # each segment's first row, in table order
    last_rows = order[segments.last]
    frame = _numeric(table, "frame", np.int64)
    ts_in = _numeric(table, "ts", np.float64)
    pts = _numeric(table, "pt", np.int64)[rows].tolist()
    columns = {name: _pick(table, name, rows) for name in KEY_COLUMNS}
    vlan_values = columns["vlan"] if vlans is None else [vlans[int(v)] for v in columns["vlan"]]
    call_ids = [_text(c) for c in _pick(table, "call_id", rows)] if "call_id" in _names(table) else [None] * len(rows)
    return stream_records(
        segments, src=map(str, columns["src"]), sport=map(int, columns["sport"]), dst=map(str, columns["dst"]),
        dport=map(int, columns["dport"]), vlan=map(tuple, vlan_values), ssrc=map(int, columns["ssrc"]),
        payload_type=pts, codec=_codecs(table, rows, pts), call_id=call_ids,
        first_ts=ts_in[rows].tolist(), last_ts=ts_in[last_rows].tolist(), first_frame=frame[rows].tolist())


@dataclass
class Segments:
    """Statistics of stream segments, one entry per segment, from rows sorted as segment_rows wants."""
    first: np.ndarray                 # sorted row of each segment's first packet
    last: np.ndarray                  # sorted row of its last packet
    packets: np.ndarray
    expected: np.ndarray
    duplicates: np.ndarray
    out_of_order: np.ndarray
    jitter_mean: np.ndarray           # ms
    jitter_max: np.ndarray
    max_delta: np.ndarray
    negotiated: np.ndarray            # bool: any packet of the segment was SDP-announced
    bytes: np.ndarray                 # RTP payload octets
    payload_types: list[tuple[int, ...]]


def segment_rows(stream: np.ndarray, ts: np.ndarray, seq: np.ndarray, rtp_ts: np.ndarray, pt: np.ndarray,
                 marker: np.ndarray, clock: np.ndarray, payload_len: np.ndarray, negotiated: np.ndarray,
                 idle_s: float) -> Segments:
    """The statistics of every segment of rows sorted by stream id, then capture order.

    `clock` is analysis_clock_rate per row (0 for none). A segment is cut where a packet comes more
    than idle_s after the previous one of its stream.
    """
    n = len(ts)
    first = np.empty(n, dtype=bool)
    first[0] = True
    np.not_equal(stream[1:], stream[:-1], out=first[1:])
    first[1:] |= ts[1:] - ts[:-1] > idle_s
    starts = np.flatnonzero(first)
    seg = np.cumsum(first) - 1
    stats = _segment_stats(ts=ts, seg=seg, starts=starts, first=first, seq=seq.astype(np.int64, copy=False),
                           rtp_ts=rtp_ts.astype(np.int64, copy=False), pt=pt.astype(np.int64, copy=False),
                           marker=marker, clock=clock)
    return Segments(
        first=starts, last=np.append(starts[1:], n) - 1, packets=stats["packets"], expected=stats["expected"],
        duplicates=stats["duplicates"], out_of_order=stats["out_of_order"], jitter_mean=stats["mean_jitter"],
        jitter_max=stats["max_jitter"], max_delta=stats["max_delta"],
        negotiated=np.logical_or.reduceat(negotiated, starts),
        bytes=np.add.reduceat(payload_len.astype(np.int64, copy=False), starts), payload_types=stats["payload_types"])


def stream_records(segments: Segments, *, src, sport, dst, dport, vlan, ssrc, payload_type, codec, call_id,
                   first_ts, last_ts, first_frame) -> list[RtpStream]:
    """RtpStream records, in first-frame order, from segment statistics and per-segment key values."""
    expected = segments.expected.tolist()
    packets = segments.packets.tolist()
    # Positional, in RtpStream field order (records.py): one object per segment.
    streams = [RtpStream(*row) for row in zip(
        src, sport, dst, dport, vlan, ssrc, payload_type, codec, packets, expected,
        [e - p for e, p in zip(expected, packets)], segments.duplicates.tolist(), segments.out_of_order.tolist(),
        segments.jitter_mean.tolist(), segments.jitter_max.tolist(), segments.max_delta.tolist(), first_ts,
        last_ts, first_frame, call_id, segments.negotiated.tolist(), segments.payload_types,
        segments.bytes.tolist())]
    streams.sort(key=lambda s: s.first_frame)
    return streams


def _numeric(table: Any, name: str, dtype: Any) -> np.ndarray:
    column = table[name]
    if hasattr(column, "to_numpy"):
        return column.to_numpy(dtype=dtype, na_value=0)
    return np.asarray(column, dtype=dtype)


def _stream_ids(table: Any, n: int) -> np.ndarray:
    """A dense id per row for (vlan, src, sport, dst, dport, ssrc)."""
    import pandas as pd      # imported when first needed: `voipwatch analyze` runs without pandas
    ports = ((_numeric(table, "sport", np.uint64) << np.uint64(48))
             | (_numeric(table, "dport", np.uint64) << np.uint64(32)) | _numeric(table, "ssrc", np.uint64))
    key = np.zeros(n, dtype=np.int64)
    cardinality = 1
    for codes, uniques in (pd.factorize(ports), *(pd.factorize(table[name]) for name in ("src", "dst", "vlan"))):
        size = len(uniques) + 1                 # code -1 (a missing value) becomes 0
        if cardinality * size >= 1 << 62:
            key, kept = pd.factorize(key)
            cardinality = len(kept)
        key = key * size + (codes + 1)
        cardinality *= size
    return pd.factorize(key)[0]


def _pick(table: Any, name: str, rows: np.ndarray) -> list:
    """Values of column `name` at `rows` (table order)."""
    column = table[name]
    if hasattr(column, "iloc"):
        return column.iloc[rows].tolist()
    return [column[int(r)] for r in rows]


def capture_order(key: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Row order by stream id, then frame."""
    if len(frame) > 1 and not np.all(frame[1:] > frame[:-1]):
        pre = np.argsort(frame, kind="stable")
        return pre[stable_order(key[pre])]
    return stable_order(key)


def _analysis_clock_rates(table: Any) -> np.ndarray:
    """analysis_clock_rate() per row (0 for none), evaluated once per distinct (pt, rate, codec)."""
    import pandas as pd
    pt = _numeric(table, "pt", np.int64)
    static = np.zeros(128, dtype=np.int64)
    for p, r in TSHARK_STATIC_CLOCK.items():
        static[p] = r
    out = static[pt & 0x7F]
    dynamic = np.flatnonzero(pt >= FIRST_DYNAMIC_PT)
    if len(dynamic):
        rate = np.nan_to_num(_numeric(table, "clock_rate_hz", np.float64)[dynamic]).astype(np.int64)
        if "codec" in _names(table):
            name_codes, names = pd.factorize(np.asarray(table["codec"], dtype=object)[dynamic],
                                             use_na_sentinel=False)
        else:
            name_codes, names = np.zeros(len(dynamic), dtype=np.int64), np.array([None], dtype=object)
        combo = (name_codes.astype(np.int64) * 128 + pt[dynamic]) << 32 | (rate & 0xFFFFFFFF)
        codes, uniques = pd.factorize(combo)
        rates = [analysis_clock_rate(int(u >> 32) % 128, int(u & 0xFFFFFFFF), _text(names[int(u >> 32) // 128]))
                 for u in uniques]
        out[dynamic] = np.array([r or 0 for r in rates], dtype=np.int64)[codes]
    return out


def _codecs(table: Any, rows: np.ndarray, pts: np.ndarray) -> list[str | None]:
    if "codec" in _names(table):
        return [_text(c) for c in _pick(table, "codec", rows)]
    return [codec_name(int(p)) for p in pts]


def _names(table: Any) -> set[str]:
    return set(table.columns) if hasattr(table, "columns") else set(table)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _shift(a: np.ndarray, fill: Any) -> np.ndarray:
    """a[i - 1] at i, `fill` at 0."""
    out = np.empty_like(a)
    out[0] = fill
    out[1:] = a[:-1]
    return out


def _segment_stats(ts, seg, starts, first, seq, rtp_ts, pt, marker, clock) -> dict[str, Any]:
    """rtppacket_analyse() over every row at once: rows sorted by segment, then capture order."""
    n, n_seg = len(ts), len(starts)
    seg_first = starts[seg]
    t = (ts - ts[seg_first]) * 1000.0
    since_first = rtp_ts - rtp_ts[seg_first]
    # Wireshark 4.0: in time sequence when ts - first_ts < 2^31, or (0xFFFFFFFF - first_ts) + ts < 2^31.
    in_seq = np.where(since_first >= 0, since_first < IN_SEQUENCE_SPAN, since_first < 1 - IN_SEQUENCE_SPAN)
    in_seq &= ~first

    # Sequence cycles: in-sequence packets set "under" (seq below the first, or 0 after 65535) and
    # clear it (seq above the first); a cycle is counted each time it gets set.
    start_seq = seq[seg_first]
    sets = in_seq & ((seq < start_seq) | ((seq == 0) & (_shift(seq, -1) == 65535)))
    cycles = np.zeros(n_seg, dtype=np.int64)
    if sets.any():
        event = _last_before(sets | (in_seq & (seq > start_seq)), seg_first)
        counted = sets & ~((event >= 0) & sets[event])
        cycles = np.bincount(seg[counted], minlength=n_seg)
    last = np.append(starts[1:], n) - 1
    expected = seq[last] + cycles * 65536 - seq[starts] + 1

    advanced, highest = _sequence_updates(seq, in_seq, first, seg_first, starts)
    behind = ~advanced & ~first
    duplicates = np.bincount(seg[behind & (seq == highest)], minlength=n_seg)
    out_of_order = np.bincount(seg[behind & (seq < highest)], minlength=n_seg)

    # Arrival of the previous in-sequence packet (the first packet counts).
    kept = np.flatnonzero(in_seq | first)
    t_kept = t[kept]
    delta = t_kept - _shift(t_kept, 0.0)
    # Jitter updates: in-sequence packets with a clock rate (RFC 3550 §A.8, in ms as tshark).
    divisor = clock[kept] // 1000
    is_update = in_seq[kept] & (divisor > 0)
    updates = np.flatnonzero(is_update)
    update_seg = seg[kept[updates]]
    new_seg = np.ones(len(updates), dtype=bool)
    np.not_equal(update_seg[1:], update_seg[:-1], out=new_seg[1:])
    nominal = (since_first[kept[updates]] & 0xFFFFFFFF) / divisor[updates]
    nominal_prev = np.where(new_seg, 0.0, _shift(nominal, 0.0)) if len(updates) else nominal
    diff = np.abs(t_kept[updates] - (t_kept[updates - 1] + (nominal - nominal_prev)))
    rank = np.arange(len(updates)) - np.maximum.accumulate(np.where(new_seg, np.arange(len(updates)), 0))
    jitter = _ewma(diff, rank, new_seg)

    # Statistics over regular packets: in sequence, no marker, neither this nor the previous CN.
    cn = (pt == COMFORT_NOISE_PTS[0]) | (pt == COMFORT_NOISE_PTS[1])
    regular = (in_seq & ~marker & ~cn & ~_shift(cn, False))[kept]
    kept_starts = np.flatnonzero(first[kept])
    max_delta = np.maximum.reduceat(np.where(regular, delta, 0.0), kept_starts).clip(min=0.0)
    regular_update = regular[updates]
    jitter_kept = np.zeros(len(kept))
    jitter_kept[updates] = np.where(regular_update, jitter, 0.0)
    max_jitter = np.maximum.reduceat(jitter_kept, kept_starts)
    position = (kept - seg_first[kept])[updates][regular_update]
    mean_jitter = _running_means(jitter[regular_update], position, update_seg[regular_update], n_seg)

    changes = first | (pt != _shift(pt, -1))
    pairs = np.unique(seg[changes] * 128 + (pt[changes] & 0x7F))        # (segment, payload type), sorted
    bounds = np.searchsorted(pairs // 128, np.arange(n_seg + 1)).tolist()
    values = (pairs % 128).tolist()
    return {"packets": np.diff(np.append(starts, n)), "expected": expected, "duplicates": duplicates,
            "out_of_order": out_of_order, "max_delta": max_delta, "max_jitter": max_jitter,
            "mean_jitter": mean_jitter,
            "payload_types": [tuple(values[bounds[i]:bounds[i + 1]]) for i in range(n_seg)]}


def _last_before(mask: np.ndarray, seg_first: np.ndarray) -> np.ndarray:
    """Per row, index of the last row strictly before it in its segment where `mask` holds, else -1."""
    last = np.maximum.accumulate(np.where(mask, np.arange(len(mask)), -1))
    before = _shift(last, -1)
    return np.where(before >= seg_first, before, -1)


def _sequence_updates(seq: np.ndarray, in_seq: np.ndarray, first: np.ndarray, seg_first: np.ndarray,
                      starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wireshark's highest accepted seq: whether each row advanced it, and its value before the row.

    Guessed with a running maximum of unwrapped sequence numbers, then checked row by row against
    the exact rule; segments where the guess fails (odd reorderings) are replayed one packet at a time.
    """
    step = ((seq - _shift(seq, 0) + 32768) & 0xFFFF) - 32768
    step[first] = 0
    running = np.cumsum(step)
    unwrapped = running - running[seg_first] + seq[seg_first]
    lift = np.cumsum(first) << 40          # each segment's values above every earlier segment's
    candidate = np.where(in_seq | first, unwrapped, -(1 << 38)) + lift
    before = _shift(np.maximum.accumulate(candidate), 0)
    highest = (before - lift) & 0xFFFF
    highest[first] = seq[first]
    guess = (in_seq & (candidate > before)) | first
    exact = (in_seq & ((seq > highest) | (highest - seq > WRAP_JUMP))) | first
    ends = np.append(starts[1:], len(seq))
    for s in np.unique(np.searchsorted(starts, np.flatnonzero(exact != guess), side="right") - 1):
        lo, hi = starts[s], ends[s]
        best = int(seq[lo])
        before_row, advanced = [best], [True]
        for value, ok in zip(seq[lo + 1:hi].tolist(), in_seq[lo + 1:hi].tolist()):
            before_row.append(best)
            up = ok and (value > best or best - value > WRAP_JUMP)
            advanced.append(up)
            if up:
                best = value
        highest[lo:hi] = before_row
        exact[lo:hi] = advanced
    return exact, highest


def _ewma(d: np.ndarray, rank: np.ndarray, new_seg: np.ndarray) -> np.ndarray:
    """J_k = 15/16 J_(k-1) + D_k / 16, J = 0 before each segment (RFC 3550 §A.8), vectorised.

    Updates are laid out in rows of `width` per segment; within a row the recursion is a scaled
    cumulative sum, and a row's carry-in sums the ends of the previous rows of its segment, weighted by
    (15/16)^width per row back.
    """
    if not len(d):
        return d
    a = 1.0 - JITTER_WEIGHT
    width = EWMA_WIDE if len(d) >= EWMA_WIDE * np.count_nonzero(new_seg) else EWMA_NARROW
    col = rank % width
    row_start = new_seg | (col == 0)
    row = np.cumsum(row_start) - 1
    n_rows = int(row[-1]) + 1
    powers = a ** np.arange(width + 1)
    grid = np.zeros(n_rows * width)
    flat = row * width + col
    grid[flat] = d * (JITTER_WEIGHT / powers[col])
    local = (np.cumsum(grid.reshape(n_rows, width), axis=1) * powers[:width]).ravel()
    row_seg = np.cumsum(new_seg)[np.flatnonzero(row_start)]
    ends = local[width - 1::width]
    carry = np.zeros(n_rows)
    weight = 1.0
    for back in range(1, n_rows):
        if weight < EWMA_NEGLIGIBLE:
            break
        carry[back:] += np.where(row_seg[back:] == row_seg[:-back], weight * ends[:-back], 0.0)
        weight *= powers[width]
    return local[flat] + powers[col + 1] * carry[row]


def _running_means(values: np.ndarray, position: np.ndarray, seg: np.ndarray, n_seg: int) -> np.ndarray:
    """Final value per segment of tshark's mean = (mean * (n - 1) + v) / n over the given rows.

    n_k is the number of packets before row k. With M_k = mean_k * n_k: M_k = M_(k-1) * G_k + v_k,
    G_k = (n_k - 1) / n_(k-1), M_0 = 0; G is 1 between consecutive packets, so M is a sum of v over
    runs of consecutive rows, each run weighted by the product of the G at the later runs' starts.
    """
    out = np.zeros(n_seg)
    if not len(values):
        return out
    n = position.astype(np.float64)
    new_seg = np.ones(len(seg), dtype=bool)
    np.not_equal(seg[1:], seg[:-1], out=new_seg[1:])
    run_start = new_seg.copy()
    run_start[1:] |= position[1:] != position[:-1] + 1
    starts = np.flatnonzero(run_start)
    sums = np.add.reduceat(values, starts)
    gain = np.where(new_seg[starts], 1.0, (n[starts] - 1.0) / n[np.maximum(starts - 1, 0)])
    # weight of run r = product of gain over the later runs of its segment: a suffix sum of logs.
    logs = np.log(gain)
    run_seg = seg[starts]
    seg_runs = np.flatnonzero(new_seg[starts])
    totals = np.add.reduceat(logs, seg_runs)
    shifted = logs.copy()
    shifted[seg_runs[1:]] -= totals[:-1]
    suffix = np.repeat(totals, np.diff(np.append(seg_runs, len(starts)))) - np.cumsum(shifted)
    last_n = n[np.append(np.flatnonzero(new_seg)[1:], len(seg)) - 1]
    out[run_seg[seg_runs]] = np.add.reduceat(sums * np.exp(suffix), seg_runs) / last_n
    return out
