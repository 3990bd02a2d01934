"""MediaExpectations.lookup vectorised: which SDP announcement each RTP candidate belongs to.

The rule is voipwatch.sessions' (endpoints_in_lookup_order, binding_holds), applied to arrays. The
streaming table holds, for each endpoint, the latest announcement made before the packet being
looked up; here every announcement of the capture is known, so for each packet the latest one set up
before its frame is found by binary search in the log sorted by (endpoint, setup frame).
tests/test_announcements.py holds both to the same answers.
"""
from __future__ import annotations

import numpy as np

from voipwatch.sessions import binding_holds, endpoints_in_lookup_order

FRAME_SPAN = 1 << 31             # frame numbers stay below 2^31: (endpoint rank, setup frame) as one number


class AnnouncementIndex:
    """The log of every SDP announcement of the capture (MediaExpectations.log), searchable by endpoint."""

    def __init__(self, log: list, max_age_s: float):
        self.log = log
        self.max_age_s = max_age_s
        # Each announced (address, port) numbered: the streaming table matches the address text itself.
        self.endpoints: dict[tuple[str, int], int] = {}
        entries = [(i, ep.setup_frame, self.endpoints.setdefault(endpoint, len(self.endpoints)))
                   for i, (endpoint, ep) in enumerate(log)]
        index, setup, key = (np.asarray(col, dtype=np.int64) for col in zip(*entries)) if entries else \
            (np.zeros(0, np.int64),) * 3
        order = np.lexsort((setup, key))             # by endpoint, then by setup frame
        self.index, self.setup, key = index[order], setup[order], key[order]
        self.setup_ts = np.asarray([log[i][1].setup_ts for i in self.index.tolist()], dtype=np.float64)
        self.known, self.first = np.unique(key, return_index=True)     # sorted endpoint keys
        self.count = np.diff(np.r_[self.first, len(key)])
        # (endpoint rank, setup frame) as one sortable number.
        self.ranked = np.repeat(np.arange(len(self.known), dtype=np.int64), self.count) * FRAME_SPAN + self.setup

    def keys(self, endpoints: list[tuple[str, int]]) -> np.ndarray:
        """The key of each (address, port), -1 when no announcement names it. As in the streaming table,
        an announced address matches packets only when written as their addresses are (dissectors.ip.ntop:
        IPv4 in decimal without leading zeros, IPv6 as socket.inet_ntop writes it)."""
        return np.asarray([self.endpoints.get(endpoint, -1) for endpoint in endpoints], dtype=np.int64)

    def lookup(self, src_keys: np.ndarray, dst_keys: np.ndarray, flow: np.ndarray, frames: np.ndarray,
               ts: np.ndarray) -> np.ndarray:
        """Per packet, the log index of the announcement MediaExpectations.lookup would give it; -1 when
        none. Keys (keys()) per flow; flow, frames, ts per packet."""
        result = np.full(len(frames), -1, dtype=np.int64)
        for keys in endpoints_in_lookup_order(src_keys, dst_keys):
            rows, code, pos = self._latest(keys[flow], frames)
            at = np.maximum(pos, 0)
            holds = (pos >= self.first[code]) & binding_holds(self.setup[at], self.setup_ts[at], frames[rows],
                                                               ts[rows], self.max_age_s)
            rows, pos = rows[holds], pos[holds]
            first_found = result[rows] < 0               # an endpoint earlier in the order wins
            result[rows[first_found]] = self.index[pos[first_found]]
        return result

    def lookup_block(self, src_keys: np.ndarray, dst_keys: np.ndarray, flows: np.ndarray, local: np.ndarray,
                     frames: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """lookup() for a block of packets whose flows are flows[local]: once per flow, at the block's
        first frame and time, which holds for all its packets unless an announcement of one of the
        flow's endpoints is set up, or comes of age, within the block (those flows' packets are looked
        up one by one)."""
        first, last, t0, t1 = int(frames.min()), int(frames.max()), float(ts.min()), float(ts.max())
        result = self.lookup(src_keys, dst_keys, flows, np.full(len(flows), first), np.full(len(flows), t0))[local]
        changing = np.zeros(len(flows), dtype=bool)
        for keys in (src_keys[flows], dst_keys[flows]):
            known, code, pos = self._latest(keys, np.full(len(flows), first))
            announced = np.searchsorted(self.ranked, code * FRAME_SPAN + last) > pos + 1
            # Whether the packets' age test can differ within the block (a second's margin for rounding).
            expiry = self.setup_ts[np.maximum(pos, 0)] + self.max_age_s
            ageing = (pos >= self.first[code]) & (expiry >= t0 - 1) & (expiry <= t1 + 1)
            changing[known] |= announced | ageing
        rows = np.flatnonzero(changing[local])
        if len(rows):
            result[rows] = self.lookup(src_keys, dst_keys, flows[local[rows]], frames[rows], ts[rows])
        return result

    def _latest(self, keys: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the packets whose endpoint key was announced (rows), its code and the position of its
        latest announcement set up before the packet's frame (below first[code] when none): the one
        the streaming table holds when the packet is looked up."""
        code = np.minimum(np.searchsorted(self.known, keys), max(len(self.known) - 1, 0))
        rows = np.flatnonzero(self.known[code] == keys) if len(self.known) else np.zeros(0, dtype=np.int64)
        code = code[rows].astype(np.int64)
        pos = np.searchsorted(self.ranked, code * FRAME_SPAN + frames[rows] - 1, side="right") - 1
        return rows, code, pos
