"""Bounded, capture-time state for detectors: keyed sliding windows and an LRU map with expiry.

Every structure has a cap (the least recently used key is dropped, and counted) and forgets what is
older than its window, measured on the capture time the caller passes in.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any, Callable, Generic, Hashable, TypeVar

V = TypeVar("V")


class BoundedMap(Generic[V]):
    """key -> value, least recently used first; entries untouched for `idle_s` are dropped by expire()."""

    def __init__(self, cap: int, idle_s: float, factory: Callable[[], V] | None = None):
        self.cap = cap
        self.idle_s = idle_s
        self.factory = factory
        self.overflows = 0
        self._data: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._data

    def get(self, key: Hashable, default: Any = None) -> V | Any:
        item = self._data.get(key)
        return default if item is None else item[1]

    def touch(self, key: Hashable, now: float) -> V:
        """The value for key (created by the factory if new or idle), marked as used at `now`."""
        self.expire(now)                       # first, so that an idle entry is not revived
        item = self._data.pop(key, None)
        value = self.factory() if item is None else item[1]
        self._data[key] = (now, value)
        if len(self._data) > self.cap:
            self._data.popitem(last=False)
            self.overflows += 1
        return value

    def set(self, key: Hashable, value: V, now: float) -> None:
        self._data.pop(key, None)
        self._data[key] = (now, value)
        self.expire(now)
        if len(self._data) > self.cap:
            self._data.popitem(last=False)
            self.overflows += 1

    def pop(self, key: Hashable, default: Any = None) -> V | Any:
        item = self._data.pop(key, None)
        return default if item is None else item[1]

    def expire(self, now: float) -> None:
        data = self._data
        while data:
            key, (seen, _) = next(iter(data.items()))
            if now - seen <= self.idle_s:
                break
            del data[key]

    def items(self):
        return ((k, v) for k, (_, v) in self._data.items())


class SlidingWindow:
    """Events of one key within the last `window_s`: count and distinct values, O(1) amortised."""

    __slots__ = ("window_s", "max_events", "events", "distinct")

    def __init__(self, window_s: float, max_events: int = 10_000):
        self.window_s = window_s
        self.max_events = max_events
        self.events: deque[tuple[float, Hashable]] = deque()
        self.distinct: dict[Hashable, int] = {}

    def add(self, now: float, value: Hashable = None) -> None:
        self.events.append((now, value))
        self.distinct[value] = self.distinct.get(value, 0) + 1
        if len(self.events) > self.max_events:
            self._drop()
        self.expire(now)

    def expire(self, now: float) -> None:
        while self.events and now - self.events[0][0] > self.window_s:
            self._drop()

    def _drop(self) -> None:
        _, value = self.events.popleft()
        left = self.distinct[value] - 1
        if left:
            self.distinct[value] = left
        else:
            del self.distinct[value]

    def count(self) -> int:
        return len(self.events)

    def n_distinct(self) -> int:
        return len(self.distinct)

    def first_ts(self) -> float | None:
        return self.events[0][0] if self.events else None


class KeyedWindows:
    """One SlidingWindow per key, in a BoundedMap."""

    def __init__(self, window_s: float, cap: int = 50_000, max_events: int = 10_000):
        self.window_s = window_s
        self._map: BoundedMap[SlidingWindow] = BoundedMap(cap, window_s, lambda: SlidingWindow(window_s, max_events))

    @property
    def overflows(self) -> int:
        return self._map.overflows

    def add(self, key: Hashable, now: float, value: Hashable = None) -> SlidingWindow:
        window = self._map.touch(key, now)
        window.add(now, value)
        return window
