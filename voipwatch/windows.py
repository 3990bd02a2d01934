"""Bounded, capture-time state for detectors: keyed sliding windows and an LRU map with expiry.

Every structure has a cap (the least recently used key is dropped, and counted) and forgets what is
older than its window, measured on the capture time the caller passes in.
"""
from __future__ import annotations

from collections import Counter, OrderedDict, deque
from typing import Any, Callable, Generic, Hashable, TypeVar

V = TypeVar("V")


class Cap:
    """How many entries a bounded structure could not keep (a detector's caps_hit reads `overflows`)."""

    __slots__ = ("overflows",)

    def __init__(self):
        self.overflows = 0


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
    """Events of one key within the last `window_s`: count, distinct values and first time, O(1) amortised.

    Events are kept as counts per time bucket (`window_s / max_buckets` wide), never as a list of a
    bounded length: at any rate, count() is the true number of events in the window and first_ts() the
    true time of its oldest event, to within one bucket at the window's old edge (a bucket is dropped
    once its newest event has left the window). Sparse events each get their own bucket and are exact.
    At most `max_values` distinct values are remembered; a value beyond that is still counted in
    count() but not in n_distinct(), and counted in `caps["values"]` (a conclusion "n_distinct() >= N"
    holds for any N <= max_values).
    """

    __slots__ = ("window_s", "bucket_s", "max_values", "buckets", "distinct", "n", "caps")

    def __init__(self, window_s: float, max_buckets: int = 1_000, max_values: int = 10_000,
                 caps: Counter | None = None):
        self.window_s = window_s
        self.bucket_s = window_s / max_buckets
        self.max_values = max_values
        self.buckets: deque[list] = deque()        # [first ts, last ts, events, {value: events}]
        self.distinct: dict[Hashable, int] = {}
        self.n = 0
        self.caps = caps if caps is not None else Counter()

    def add(self, now: float, value: Hashable = None) -> None:
        self.expire(now)
        buckets = self.buckets
        if buckets and now - buckets[-1][0] < self.bucket_s:
            bucket = buckets[-1]                   # (a frame out of capture order joins it too)
            bucket[0], bucket[1] = min(bucket[0], now), max(bucket[1], now)
        else:
            bucket = [now, now, 0, {}]
            buckets.append(bucket)
        bucket[2] += 1
        self.n += 1
        distinct = self.distinct
        if value in distinct or len(distinct) < self.max_values:
            distinct[value] = distinct.get(value, 0) + 1
            bucket[3][value] = bucket[3].get(value, 0) + 1
        else:
            self.caps["values"] += 1

    def expire(self, now: float) -> None:
        buckets, distinct = self.buckets, self.distinct
        while buckets and now - buckets[0][1] > self.window_s:
            _, _, events, values = buckets.popleft()
            self.n -= events
            for value, k in values.items():
                left = distinct[value] - k
                if left:
                    distinct[value] = left
                else:
                    del distinct[value]

    def count(self) -> int:
        return self.n

    def n_distinct(self) -> int:
        return len(self.distinct)

    def first_ts(self) -> float | None:
        return self.buckets[0][0] if self.buckets else None


class KeyedWindows:
    """One SlidingWindow per key, in a BoundedMap. `overflows` counts keys dropped by the cap, and
    `value_overflows` values its windows could not remember (SlidingWindow.max_values)."""

    def __init__(self, window_s: float, cap: int = 50_000, max_buckets: int = 1_000, max_values: int = 10_000):
        self.window_s = window_s
        self.caps: Counter = Counter()
        self._map: BoundedMap[SlidingWindow] = BoundedMap(
            cap, window_s, lambda: SlidingWindow(window_s, max_buckets, max_values, self.caps))

    @property
    def overflows(self) -> int:
        return self._map.overflows

    @property
    def value_overflows(self) -> int:
        return self.caps["values"]

    def add(self, key: Hashable, now: float, value: Hashable = None) -> SlidingWindow:
        window = self._map.touch(key, now)
        window.add(now, value)
        return window
