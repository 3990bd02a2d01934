"""Copies of one IP packet on a SPAN or mirror port, found and dropped before anything counts them.

A SPAN of several VLANs (or a router's `encapsulation replicate`) shows a routed packet once per VLAN
it crossed: the same IP packet, with other MACs, another VLAN tag and a TTL one lower (RFC 791 §3.2:
every router decrements it, and so recomputes the header checksum). A copy is the same packet when,
within `window_s` of the previous copy, it carries the same IP identification (IPv4, RFC 791 §3.1;
the flow label for IPv6, RFC 8200 §3, which has no identification outside fragments), the same
addresses and transport ports, the same TCP sequence number and the same transport payload (hash);
TTL/hop limit, checksum and everything at layer 2 are left out. An identification of 0 (RFC 6864
lets atomic datagrams repeat it) or an IPv6 flow label of 0 identifies nothing: such a copy is taken
as one only when it arrived by another layer-2 path (VLAN stack or MAC pair), as a mirrored routed
copy does, so that a sender repeating one datagram is still counted packet by packet.

The first copy is the packet; it is held `window_s` (capture time) so that the VLAN path of its
copies ("200->100") is known when it is described. VoIPmonitor's `deduplicate` option does the same.
Memory is bounded: frames held and packet keys remembered each have a cap, and hitting one is counted.
"""
from __future__ import annotations

from collections import deque
from typing import Hashable

ANOMALIES = {
    "dedup.held_overflow": "frames held for duplicate detection over max_dedup_held: the oldest described "
                           "early (a copy of it arriving later is still dropped, its VLAN not in the path)",
    "dedup.keys_overflow": "packet keys remembered for duplicate detection over max_dedup_held: the oldest "
                           "forgotten (a later copy of that packet is counted as a packet)",
}


class Deduplicator:
    """Holds frames for `window_s` and drops the copies that arrive meanwhile.

    A held entry is a list [ts, item, decoded, path]: `path` stays None until a copy arrives, then
    lists the VLAN stack of every copy in order of arrival, the first one's first.
    """

    __slots__ = ("window_s", "cap", "held", "_keys", "_order", "duplicates", "held_overflows", "key_overflows")

    def __init__(self, window_s: float, cap: int):
        self.window_s = window_s
        self.cap = cap
        self.held: deque[list] = deque()        # held entries, oldest first
        self._keys: dict[Hashable, list] = {}   # key -> [last copy's ts, its l2 path, held entry, first VLAN]
        self._order: deque[tuple[float, Hashable]] = deque()   # (ts, key) as keys were set or refreshed
        self.duplicates = 0
        self.held_overflows = 0
        self.key_overflows = 0

    def offer(self, entry: list, key: Hashable | None, ident: int, l2: tuple, vlan: tuple) -> bool:
        """True when the frame of `entry` is a copy of a packet seen within the window (counted: the
        caller drops it); otherwise the entry is held until release() hands it back."""
        ts = entry[0]
        if key is not None:
            known = self._keys.get(key)
            if known is not None and 0 <= ts - known[0] <= self.window_s and (ident or l2 != known[1]):
                self.duplicates += 1
                known[0], known[1] = ts, l2
                self._order.append((ts, key))
                held = known[2]
                if held[3] is None:
                    held[3] = [known[3]]
                held[3].append(vlan)            # a packet already described keeps its record as it was
                return True
            self._keys[key] = [ts, l2, entry, vlan]
            self._order.append((ts, key))
            if len(self._keys) > self.cap:
                self._forget_oldest()
        self.held.append(entry)
        return False

    def release(self, now: float) -> list[list]:
        """The held entries no copy can join any more (older than the window at `now`, or over the
        cap), oldest first; keys not refreshed within the window are forgotten."""
        out = []
        held, window = self.held, self.window_s
        while held and now - held[0][0] > window:
            out.append(held.popleft())
        while len(held) > self.cap:
            out.append(held.popleft())
            self.held_overflows += 1
        order, keys = self._order, self._keys
        while order and now - order[0][0] > window:
            ts, key = order.popleft()
            known = keys.get(key)
            if known is not None and known[0] == ts:
                del keys[key]
        return out

    def drain(self) -> list[list]:
        """End of input: every held entry, oldest first."""
        out = list(self.held)
        self.held.clear()
        self._keys.clear()
        self._order.clear()
        return out

    def first_held_frame(self) -> int | None:
        """The frame number of the oldest held frame (None when nothing is held)."""
        return self.held[0][1].frame if self.held else None

    def _forget_oldest(self) -> None:
        while self._order:
            ts, key = self._order.popleft()
            known = self._keys.get(key)
            if known is not None and known[0] == ts:
                del self._keys[key]
                self.key_overflows += 1
                return
