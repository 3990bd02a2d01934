"""Bounded first-sighting tables: flow directions and (MAC, IP, VLAN) hosts, in capture time.

They feed the separation checks (who talks to whom, which host appears in which VLAN) without
keeping per-packet state: each table is an LRU with a cap, and only first sightings are reported.
"""
from __future__ import annotations

from collections import OrderedDict


class FirstSeen:
    """An LRU set of keys with their last sighting: add() says whether a key is new.

    A key unseen for more than `idle_s` (judged on the sighting's own capture time, so every
    execution path agrees) counts as new again; expire() frees such keys; evictions past the cap
    are counted.
    """

    def __init__(self, cap: int, idle_s: float = 3600.0):
        self.cap = cap
        self.idle_s = idle_s
        self._keys: OrderedDict = OrderedDict()
        self.overflows = 0

    def seen(self, key, ts: float) -> bool:
        last = self._keys.get(key)
        return last is not None and ts - last <= self.idle_s

    def add(self, key, ts: float) -> bool:
        last = self._keys.get(key)
        self._keys[key] = ts
        self._keys.move_to_end(key)
        if last is not None and ts - last <= self.idle_s:
            return False
        if len(self._keys) > self.cap:
            self._keys.popitem(last=False)
            self.overflows += 1
        return True

    def expire(self, now: float) -> None:
        keys = self._keys
        while keys:
            key, last = next(iter(keys.items()))
            if now - last <= self.idle_s:
                break
            del keys[key]

    def __len__(self) -> int:
        return len(self._keys)
