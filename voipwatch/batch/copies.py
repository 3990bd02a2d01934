"""SPAN copies among the batch reader's RTP candidates, found column-wise: voipwatch.dedup's rule.

A candidate is a copy when the previous candidate with the same IPv4 identification (IPv6: flow label), addresses,
ports and RTP header (SSRC, sequence number, timestamp, marker and payload type) and payload length
came at most `window_s` earlier, and its identification is not 0 or it came by another layer-2 path
(VLAN stack or MAC pair). For RTP the header and length stand for the payload hash the per-frame path
uses: within a window of milliseconds one sender never repeats them for other media. The candidates
of the previous chunk's last `window_s` are kept, so that a copy in the next chunk is found too.
"""
from __future__ import annotations

import numpy as np

from voipwatch.batch.candidates import DecodedCandidates
from voipwatch.batch.grouping import mix_columns, stable_order


class CandidateCopies:
    """Drops the copies among each chunk's candidates, in chunk order."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self._tail: dict[str, np.ndarray] | None = None    # the previous chunk's last window_s of candidates

    def drop(self, cands: DecodedCandidates) -> tuple[DecodedCandidates, int]:
        """The candidates without their copies, and how many copies were dropped."""
        n = len(cands)
        if n == 0:
            return cands, 0
        link, src_high, src_low, dst_high, dst_low, ports, ssrc = cands.keys
        u64 = np.uint64
        cols = {"k0": src_low.astype(u64), "k4": src_high.astype(u64), "k5": dst_high.astype(u64),
                "k6": dst_low.astype(u64), "k1": (ports.astype(u64) << u64(32)) | cands.ident.astype(u64),
                "k2": (ssrc.astype(np.uint64) << np.uint64(32)) | cands.rtp_ts.astype(np.uint64),
                "k3": ((cands.seq.astype(np.uint64) << np.uint64(48)) | (cands.b1.astype(np.uint64) << np.uint64(40))
                       | cands.payload_len.astype(np.uint64)),
                "ident": cands.ident, "vlan": link.astype(u64), "mac0": cands.macs[:, 0],
                "mac1": cands.macs[:, 1], "ts": cands.ts}
        tail = self._tail
        both = cols if tail is None else {name: np.concatenate([tail[name], col]) for name, col in cols.items()}
        copy = _copies(both, self.window_s)[len(both["ts"]) - n:]
        last = cands.ts.max()
        recent = np.flatnonzero(both["ts"] >= last - self.window_s)
        self._tail = {name: col[recent] for name, col in both.items()}
        dropped = int(copy.sum())
        if dropped:
            cands = cands.take(np.flatnonzero(~copy))
        return cands, dropped


def _copies(cols: dict[str, np.ndarray], window_s: float) -> np.ndarray:
    """Per row: whether it is a copy of the previous row with the same key."""
    n = len(cols["ts"])
    copy = np.zeros(n, dtype=bool)
    keys = [cols[name] for name in sorted(cols) if name.startswith("k")]
    hashed = mix_columns(keys)
    # equal keys together, in record order: a stable radix sort on the hash's low, then high 32 bits
    order = stable_order(hashed & np.uint64(0xFFFFFFFF))
    order = order[stable_order(hashed[order] >> np.uint64(32))]
    same = np.flatnonzero(hashed[order[1:]] == hashed[order[:-1]])
    if not len(same):
        return copy
    prev, cur = order[same], order[same + 1]
    equal = np.ones(len(cur), dtype=bool)
    for key in keys:                                     # a hash collision is no copy
        equal &= key[prev] == key[cur]
    dt = cols["ts"][cur] - cols["ts"][prev]
    moved = ((cols["vlan"][prev] != cols["vlan"][cur]) | (cols["mac0"][prev] != cols["mac0"][cur])
             | (cols["mac1"][prev] != cols["mac1"][cur]))
    copy[cur[equal & (dt >= 0) & (dt <= window_s) & ((cols["ident"][cur] != 0) | moved)]] = True
    return copy
