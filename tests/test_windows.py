"""Caps and expiry of the detectors' bounded state (voipwatch/windows.py), on capture time only.

Every structure keeps at most its cap (the least recently used key goes first, and is counted) and
forgets what is older than its window, judged on the capture times the caller passes in: the tests
use times decades away from the wall clock, so an accidental time.time() would show.
"""
from __future__ import annotations

from collections import Counter

from voipwatch.windows import BoundedMap, KeyedWindows, SlidingWindow

T0 = 1_000_000.0          # 1970-01-12: far from any wall-clock reading


def test_bounded_map_evicts_least_recently_used_and_counts():
    m = BoundedMap(cap=3, idle_s=100.0, factory=list)
    for n, key in enumerate("abc"):
        m.touch(key, T0 + n)
    m.touch("a", T0 + 3)                           # a is now the most recently used; b the least
    m.touch("d", T0 + 4)
    assert (len(m), m.overflows) == (3, 1)
    assert "b" not in m and [k for k, _ in m.items()] == ["c", "a", "d"]
    m.set("e", [5], T0 + 5)                        # set() is subject to the same cap
    m.touch("f", T0 + 6)
    assert m.overflows == 3 and [k for k, _ in m.items()] == ["d", "e", "f"]


def test_bounded_map_keeps_values_and_get_does_not_refresh():
    m = BoundedMap(cap=2, idle_s=100.0, factory=list)
    m.touch("a", T0).append(1)
    m.touch("b", T0 + 1)
    assert m.get("a") == [1] and m.touch("a", T0 + 2) == [1]
    assert m.get("b") == [] and m.get("zz", "none") == "none"
    m.touch("c", T0 + 3)                           # get("b") did not refresh b: it is evicted
    assert "b" not in m and m.overflows == 1
    assert m.pop("a") == [1] and m.pop("a", "gone") == "gone" and len(m) == 1


def test_bounded_map_expires_by_capture_time():
    m = BoundedMap(cap=10, idle_s=60.0, factory=list)
    m.touch("a", T0)
    m.touch("b", T0 + 30)
    m.expire(T0 + 60)                              # exactly idle_s: still kept
    assert [k for k, _ in m.items()] == ["a", "b"]
    m.expire(T0 + 60.5)
    assert [k for k, _ in m.items()] == ["b"]
    m.touch("c", T0 + 91)                          # touching one key expires the others
    assert [k for k, _ in m.items()] == ["c"] and m.overflows == 0   # expiry is not an overflow


def test_bounded_map_touch_after_idle_starts_afresh():
    """An entry untouched for idle_s is gone, whether or not anything else touched the map meanwhile."""
    m = BoundedMap(cap=10, idle_s=60.0, factory=list)
    m.touch("a", T0).append("old")
    assert m.touch("a", T0 + 61) == []
    m.touch("a", T0 + 100).append("kept")
    assert m.touch("a", T0 + 160) == ["kept"]


def test_sliding_window_counts_within_the_window():
    w = SlidingWindow(window_s=10.0)
    for n in range(5):
        w.add(T0 + n, f"host{n % 3}")
    assert (w.count(), w.n_distinct(), w.first_ts()) == (5, 3, T0)
    w.add(T0 + 10, "host0")                        # T0 is exactly 10 s old: still inside
    assert (w.count(), w.first_ts()) == (6, T0)
    w.add(T0 + 12.5, "host9")                      # drops T0, T0+1, T0+2
    assert (w.count(), w.n_distinct(), w.first_ts()) == (4, 3, T0 + 3)   # host0, host1, host9
    w.expire(T0 + 100)
    assert (w.count(), w.n_distinct(), w.first_ts()) == (0, 0, None)


def test_sliding_window_counts_every_event_at_any_rate():
    """No cap on events changes what the window says: 100,000 events in 8 s (12,500/s, the rate of a SIPp
    flood) are all counted, the first one's time is kept, and memory is bounded by the buckets."""
    w = SlidingWindow(window_s=10.0)
    for n in range(100_000):
        w.add(T0 + n * 8e-5, "INVITE" if n % 4 else "REGISTER")
    assert (w.count(), w.first_ts(), w.n_distinct()) == (100_000, T0, 2)
    assert w.distinct == {"INVITE": 75_000, "REGISTER": 25_000}
    assert len(w.buckets) <= 1_001
    w.add(T0 + 15.0, "BYE")                        # events up to T0 + 5 s have left the window
    kept = sum(1 for n in range(100_000) if T0 + 15.0 - (T0 + n * 8e-5) <= 10.0)
    assert abs(w.count() - (kept + 1)) <= 125      # exact to one 10 ms bucket (125 events) at the old edge
    assert T0 + 5.0 - 0.01 <= w.first_ts() <= T0 + 5.0 + 0.01


def test_sliding_window_caps_distinct_values_and_counts_the_cap():
    caps = Counter()
    w = SlidingWindow(window_s=60.0, max_values=3, caps=caps)
    for n in range(10):
        w.add(T0 + n, f"user{n}")
    assert (w.count(), w.n_distinct(), caps["values"]) == (10, 3, 7)
    w.add(T0 + 10, "user0")                        # a remembered value is still counted in its slot
    assert w.distinct["user0"] == 2 and caps["values"] == 7


def test_keyed_windows_cap_evicts_least_recently_used_key():
    kw = KeyedWindows(window_s=60.0, cap=2)
    kw.add("src1", T0, "a")
    kw.add("src2", T0 + 1, "a")
    kw.add("src1", T0 + 2, "b")                    # src2 is now the least recently used
    third = kw.add("src3", T0 + 3, "a")
    assert kw.overflows == 1 and third.count() == 1
    assert kw.add("src1", T0 + 4, "c").count() == 3          # src1 kept its events
    assert kw.add("src2", T0 + 5, "a").count() == 1          # src2 was evicted: starts again
    assert kw.overflows == 2                                 # ... and src3 went to make room


def test_keyed_windows_expire_by_capture_time():
    kw = KeyedWindows(window_s=60.0, cap=10)
    kw.add("src1", T0, "a")
    kw.add("src1", T0 + 50, "b")
    window = kw.add("src1", T0 + 70, "c")          # the event at T0 left the window
    assert (window.count(), window.n_distinct(), window.first_ts()) == (2, 2, T0 + 50)
    assert kw.add("src1", T0 + 200, "d").count() == 1
    assert kw.overflows == 0


def test_keyed_windows_count_value_overflows_of_all_keys():
    kw = KeyedWindows(window_s=60.0, cap=10, max_values=2)
    for n in range(5):
        kw.add("src1", T0 + n, n)
        kw.add("src2", T0 + n, n)
    assert (kw.value_overflows, kw.overflows) == (6, 0)
