"""FirstSeen (voipwatch/flows.py): first sightings with a counted LRU cap and capture-time expiry."""
from __future__ import annotations

from voipwatch.flows import FirstSeen

T0 = 1_000_000.0          # far from any wall-clock reading: expiry must come from the times passed in


def test_first_sighting_only():
    seen = FirstSeen(cap=10, idle_s=60.0)
    assert seen.add("a", T0) is True
    assert seen.add("a", T0 + 1) is False and seen.seen("a", T0 + 1)
    assert not seen.seen("b", T0 + 1) and len(seen) == 1


def test_cap_evicts_least_recently_seen_and_counts():
    seen = FirstSeen(cap=3, idle_s=600.0)
    for n, key in enumerate("abc"):
        seen.add(key, T0 + n)
    seen.add("a", T0 + 3)                          # a sighted again: b is now the least recent
    assert seen.add("d", T0 + 4) is True
    assert (len(seen), seen.overflows) == (3, 1)
    assert not seen.seen("b", T0 + 5) and seen.seen("a", T0 + 5) and seen.seen("c", T0 + 5)
    assert seen.add("b", T0 + 5) is True           # evicted, so new again (and c makes room)
    assert seen.overflows == 2 and not seen.seen("c", T0 + 6)


def test_unseen_for_idle_s_is_new_again():
    seen = FirstSeen(cap=10, idle_s=60.0)
    seen.add("a", T0)
    assert seen.seen("a", T0 + 60) and not seen.seen("a", T0 + 60.5)
    assert seen.add("a", T0 + 60.5) is True        # judged on the sighting's time, before any expire()
    assert seen.add("a", T0 + 61) is False
    assert (len(seen), seen.overflows) == (1, 0)


def test_expire_frees_idle_keys_by_capture_time():
    seen = FirstSeen(cap=10, idle_s=60.0)
    seen.add("a", T0)
    seen.add("b", T0 + 30)
    seen.expire(T0 + 60)
    assert len(seen) == 2
    seen.expire(T0 + 61)
    assert len(seen) == 1 and seen.seen("b", T0 + 61)
    seen.expire(T0 + 1000)
    assert len(seen) == 0 and seen.overflows == 0
