"""IP fragment reassembly (RFC 791 §3.2, RFC 8200 §4.5) with bounded state and capture-time expiry.

Overlapping fragments are refused outright (RFC 5722 for IPv6; the same policy for IPv4, since
overlaps are how fragment-based evasion works): the datagram is dropped and reported.
"""
from __future__ import annotations

from collections import deque
from typing import Hashable

MAX_PENDING_DATAGRAMS = 1024        # datagrams waiting for fragments
MAX_PENDING_BYTES = 8 << 20         # fragment bytes held over all pending datagrams
MAX_FRAGMENTS_PER_DATAGRAM = 256    # more pieces than this is an attack, not a path MTU
FRAGMENT_TIMEOUT_S = 30.0           # capture seconds from the first fragment (RFC 8200 §4.5: 60 s max)
MAX_DATAGRAM_BYTES = 65535          # RFC 791 total length / RFC 8200 payload length ceiling

# Every anomaly name of fragment reassembly (layer "ip"); dissectors.net reports the last two.
ANOMALIES = {
    "ip.fragment_overlap": "fragments overlap (RFC 5722): the datagram is dropped",
    "ip.fragment_oversize": f"a fragment ending past {MAX_DATAGRAM_BYTES} bytes: the datagram is dropped",
    "ip.fragment_too_many": f"more than {MAX_FRAGMENTS_PER_DATAGRAM} fragments: the datagram is dropped",
    "ip.fragment_table_full": f"{MAX_PENDING_DATAGRAMS} datagrams or {MAX_PENDING_BYTES >> 20} MiB pending: "
                              "the oldest dropped",
    "ip.fragment_timeout": f"a datagram still incomplete {FRAGMENT_TIMEOUT_S:g} s after its first fragment: dropped",
    "ip.fragment_incomplete_at_end": "a datagram still incomplete at the end of the capture",
}


class _Pending:
    __slots__ = ("first_ts", "first_frame", "frags", "nbytes", "total", "proto")

    def __init__(self, ts: float, frame: int) -> None:
        self.first_ts = ts
        self.first_frame = frame
        self.frags: list[tuple[int, int, bytes]] = []   # (start, end, data)
        self.nbytes = 0
        self.total: int | None = None                   # known once the last fragment arrived
        self.proto: int | None = None                   # upper protocol, from the offset-0 fragment


class FragmentReassembler:
    """Collects fragments per (version, src, dst, [proto,] id, vlan) key until a datagram is whole."""

    def __init__(self, max_datagrams: int = MAX_PENDING_DATAGRAMS, max_bytes: int = MAX_PENDING_BYTES,
                 timeout_s: float = FRAGMENT_TIMEOUT_S) -> None:
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._pending: dict[Hashable, _Pending] = {}    # insertion order == age of the first fragment
        self._bytes = 0
        # timeouts found while adding, kept for expire() (bounded: one per pending datagram at most)
        self._expired: deque[tuple[float, int, str]] = deque(maxlen=max_datagrams)

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, key: Hashable, offset: int, more: bool, proto: int, data: bytes,
            ts: float, frame: int) -> tuple[int, bytes] | tuple[str, str] | None:
        """Add one fragment's payload; return (proto, payload) when complete, None while pending,
        or (anomaly name, detail)."""
        self._expire_into_queue(ts)
        end = offset + len(data)
        if end > MAX_DATAGRAM_BYTES:
            self._drop(key)
            return ("ip.fragment_oversize", f"fragment ends at byte {end} > {MAX_DATAGRAM_BYTES}")
        entry = self._pending.get(key)
        note: tuple[str, str] | None = None
        if entry is None:
            note = self._make_room(len(data))
            entry = self._pending[key] = _Pending(ts, frame)
        for start, stop, held in entry.frags:
            if offset < stop and start < end:
                if start == offset and stop == end and held == data:
                    return None                           # a retransmitted copy: nothing new
                self._drop(key)
                return ("ip.fragment_overlap", f"bytes {offset}-{end} overlap {start}-{stop}")
        if not more:
            if entry.total is not None and entry.total != end:
                self._drop(key)
                return ("ip.fragment_overlap", f"two last fragments end at {entry.total} and {end}")
            if any(stop > end for _, stop, _ in entry.frags):
                self._drop(key)
                return ("ip.fragment_overlap", f"held fragments reach past the last fragment's end {end}")
            entry.total = end
        if entry.total is not None and end > entry.total:
            self._drop(key)
            return ("ip.fragment_overlap", f"fragment ends at {end}, after the last fragment's {entry.total}")
        if len(entry.frags) == MAX_FRAGMENTS_PER_DATAGRAM:
            self._drop(key)
            return ("ip.fragment_too_many", f"more than {MAX_FRAGMENTS_PER_DATAGRAM} fragments")
        if offset == 0:
            entry.proto = proto
        entry.frags.append((offset, end, data))
        entry.nbytes += len(data)
        self._bytes += len(data)
        if entry.total is not None and entry.nbytes == entry.total and entry.proto is not None:
            # no overlaps and every byte of [0, total) held: the pieces tile the datagram
            self._drop(key)
            entry.frags.sort()
            return entry.proto, b"".join(piece for _, _, piece in entry.frags)
        return note

    def expire(self, now: float) -> list[tuple[float, int, str]]:
        """Drop datagrams whose first fragment is older than the timeout: [(first ts, first frame, detail)]."""
        self._expire_into_queue(now)
        out = list(self._expired)
        self._expired.clear()
        return out

    def _expire_into_queue(self, now: float) -> None:
        pending = self._pending
        while pending:
            key = next(iter(pending))
            entry = pending[key]
            if now - entry.first_ts <= self.timeout_s:
                break
            self._drop(key)
            self._expired.append((entry.first_ts, entry.first_frame,
                                  f"{len(entry.frags)} fragment(s), {entry.nbytes} bytes never completed"))

    def _make_room(self, size: int) -> tuple[str, str] | None:
        """Evict the oldest datagrams until one more (of size bytes) fits; name the eviction."""
        evicted = 0
        while self._pending and (len(self._pending) >= self.max_datagrams or self._bytes + size > self.max_bytes):
            self._drop(next(iter(self._pending)))
            evicted += 1
        if evicted:
            return ("ip.fragment_table_full", f"evicted {evicted} oldest pending datagram(s)")
        return None

    def _drop(self, key: Hashable) -> None:
        entry = self._pending.pop(key, None)
        if entry is not None:
            self._bytes -= entry.nbytes
