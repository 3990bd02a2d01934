"""Bounded first-sighting tables: flow directions and (MAC, IP, VLAN) hosts, in capture time.

They feed the separation checks (who talks to whom, which host appears in which VLAN) without
keeping per-packet state: each table is an LRU with a cap, and only first sightings are reported.
"""
from __future__ import annotations

from collections import OrderedDict


class FirstSeen:
    """An LRU set: add() says whether a key is new. Evictions past the cap are counted."""

    def __init__(self, cap: int):
        self.cap = cap
        self._keys: OrderedDict = OrderedDict()
        self.overflows = 0

    def __contains__(self, key) -> bool:
        return key in self._keys

    def add(self, key) -> bool:
        if key in self._keys:
            self._keys.move_to_end(key)
            return False
        self._keys[key] = None
        if len(self._keys) > self.cap:
            self._keys.popitem(last=False)
            self.overflows += 1
        return True

    def __len__(self) -> int:
        return len(self._keys)
