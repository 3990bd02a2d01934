"""The registrar's view of bindings (voipwatch/bindings.py): the bindings table and the checks that read it
(RF-07 binding_hijack, rogue_binding), on sample_captures/rf-bindings.pcap (a registrar that lists every
binding in its 200 OKs, RFC 3261 §10.3 step 8) checked against tshark's reading of those 200 OKs, and on
hand-built messages for registrars that list nothing."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import peer
from voipwatch.bindings import RegisterRequest, RegistrarView
from voipwatch.records import PacketMeta, SipMessage

SAMPLES = Path(__file__).resolve().parents[1] / "sample_captures"
CAPTURE, CONFIG = SAMPLES / "rf-bindings.pcap", SAMPLES / "configs" / "registration_flood.toml"
T0 = 1_700_000_000.0
CRACKER, PHONE, ROGUE = "203.0.113.50", "10.1.10.21", "sip:123@1.1.1.1"


def _oks(tshark) -> list[tuple[float, str, dict[str, int]]]:
    """Every 200 OK to REGISTER as tshark reads it: time, To user, listed contact -> its expires param."""
    out = peer.run(tshark, ["-r", str(CAPTURE), "-Y", 'sip.Status-Code == 200 && sip.CSeq.method == "REGISTER"',
                            "-T", "fields", "-E", "aggregator=|", "-e", "frame.time_epoch", "-e", "sip.to.user",
                            "-e", "sip.Contact"])
    oks = []
    for line in out.splitlines():
        ts, user, contacts = (line.split("\t") + [""])[:3]
        listed = {}
        for value in filter(None, contacts.split("|")):
            m = re.fullmatch(r"<([^>]+)>;expires=(\d+)", value.strip())
            listed[m[1]] = int(m[2])
        oks.append((float(ts), user, listed))
    return oks


@pytest.mark.peer
@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_bindings_table_follows_the_200_ok_contact_lists(analysis, tshark, mode):
    """Each row is one contact of one AOR from the first 200 OK that listed it to the last, with the expiry of
    that last listing, as tshark reads the 200 OKs; a contact no longer listed ends as removed, one whose
    expiry passed as expired, the rest are still bound at the end of the capture."""
    oks = _oks(tshark)
    rows = {(b.aor.split("@")[0], b.contact, b.first_seen_ts): b
            for b in analysis(CAPTURE, CONFIG, mode).records["bindings"]}
    # What tshark's 200 OKs say, contact by contact, in the same episodes (listed, then no longer listed).
    open_rows: dict[tuple, list] = {}
    expected = {}
    for ts, user, listed in oks:
        for (u, contact), row in list(open_rows.items()):
            if u == user and contact not in listed:
                expected[(u, contact, row[0])] = (*row, "removed", ts)
                del open_rows[(u, contact)]
        for contact, expires in listed.items():
            first = open_rows.get((user, contact), [ts])[0]
            count = open_rows.get((user, contact), [0, 0, 0, 0])[3] + 1
            open_rows[(user, contact)] = [first, ts, ts + expires, count]
    end = 1_700_001_000.01
    for (u, contact), row in open_rows.items():
        expected[(u, contact, row[0])] = (*row, "expired", row[2]) if row[2] <= end else (*row, "bound_at_end", None)
    assert set(rows) == set(expected) and len(rows) == 5
    for key, (first, last, expires, count, end_kind, ended) in expected.items():
        b = rows[key]
        assert (b.last_confirmed_ts, b.expires_ts, b.confirmations, b.end, b.ended_ts) == pytest.approx(
            (last, expires, count, end_kind, ended)), key
    rogue = rows[("2001", ROGUE, T0 + 113.01)]
    assert (rogue.src, rogue.contact_host, rogue.end, rogue.user_agent) == (CRACKER, "1.1.1.1", "bound_at_end",
                                                                           "friendly-scanner")
    phone = rows[("2001", f"sip:2001@{PHONE}:5060", T0 + 1.01)]
    assert (phone.end, phone.removed_by, phone.ended_ts) == ("removed", PHONE, pytest.approx(T0 + 301.01))
    assert rows[("2003", "sip:2003@10.1.10.23:5060", T0 + 3.01)].removed_by == "10.1.10.24"


@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_a_phone_removing_its_own_contact_leaves_the_crackers_binding(analysis, mode):
    """Issue 12: RF-07 said a phone's Expires: 0 'removed the live binding from the attacker'. The phone removed
    only its own contact; the 200 OK still listed sip:123@1.1.1.1. Now the phone's de-registration (and its
    return) raise nothing, the crack raises RF-07 stating what the 200 OK lists, and the binding the cracker
    left is a rogue binding, critical: outside the site, beside the phone, after a guessed password."""
    alerts = [a for a in analysis(CAPTURE, CONFIG, mode).alerts if a.family == "registration_flood"]
    hijacks = [a for a in alerts if a.name == "registration_flood.binding_hijack"]
    assert [(a.src, a.severity, a.evidence["action"]) for a in hijacks] == [
        (CRACKER, "high", "register"), ("10.1.10.24", "medium", "deregister")]
    crack = hijacks[0]
    assert [(b["contact"], b["registered_from"]) for b in crack.evidence["listed_bindings"]] == [
        (f"sip:2001@{PHONE}:5060", PHONE), (ROGUE, CRACKER)]
    assert "added sip:123@1.1.1.1" in crack.msg and "its 200 OK lists 2 binding(s)" in crack.msg
    assert "removed" not in crack.msg
    assert hijacks[1].evidence["listed_count"] == 0 and hijacks[1].evidence["removed_bindings"][0]["registered_from"] \
        == "10.1.10.23"
    rogue = [a for a in alerts if a.name == "registration_flood.rogue_binding"]
    assert len(rogue) == 1 and rogue[0].severity == "critical" and rogue[0].check == "RF-07"
    ev = rogue[0].evidence
    assert (ev["contact"], ev["contact_host"], ev["registered_from"], ev["account_cracked"]) == (
        ROGUE, "1.1.1.1", CRACKER, True)
    assert ev["expires_ts"] == pytest.approx(T0 + 113.01 + 3600)
    assert [b["contact"] for b in ev["inside_bindings"]] == [f"sip:2001@{PHONE}:5060"]


# -- hand-built: registrars that do not enumerate, expiry, the cap -------------------------------------------
def _msg(ts, frame, src, dst, *, contacts=(), expiries=(), status=None):
    return SipMessage(PacketMeta(ts, frame, (), src, 5060, dst, 5060, "udp"), status is None,
                      None if status else "REGISTER", None, None, status, None, "c", 1, "REGISTER", None, "9",
                      None, "sip:9@pbx", "9", None, contact=tuple(contacts), contact_expires=tuple(expiries))


def _register(view, ts, src, contacts, expiries, listed=(), listed_expiries=()):
    request = _msg(ts, 1, src, "10.0.0.5", contacts=contacts, expiries=expiries)
    ok = _msg(ts + 0.01, 2, "10.0.0.5", src, contacts=listed, expiries=listed_expiries, status=200)
    return view.on_ok("9@pbx", RegisterRequest.of(request), ok)


def test_a_200_without_contacts_keeps_the_registers_own_contacts():
    """A registrar that does not enumerate bindings (a 200 with no Contact) is taken at the REGISTER's word,
    and only the contacts a REGISTER removes itself are removed; those rows say listed_by_registrar false."""
    view = RegistrarView(max_aors=10)
    a = _register(view, T0, "10.0.0.21", ["sip:9@10.0.0.21"], [600])
    assert [(b.contact, b.listed_by_registrar, b.expires_ts) for b in a.added] == [("sip:9@10.0.0.21", False, T0 + 600.01)]
    _register(view, T0 + 10, "10.0.0.22", ["sip:9@10.0.0.22"], [600])
    assert {b.contact for b in view.live("9@pbx", T0 + 20)} == {"sip:9@10.0.0.21", "sip:9@10.0.0.22"}
    gone = _register(view, T0 + 30, "10.0.0.22", ["sip:9@10.0.0.22"], [0])
    assert [(r.contact, r.end, r.removed_by) for r in gone.ended] == [("sip:9@10.0.0.22", "removed", "10.0.0.22")]
    assert [b.contact for b in view.live("9@pbx", T0 + 40)] == ["sip:9@10.0.0.21"]


def test_bindings_lapse_at_their_expiry_and_the_cap_is_counted():
    view = RegistrarView(max_aors=1)
    _register(view, T0, "10.0.0.21", ["sip:9@10.0.0.21"], [60], ["sip:9@10.0.0.21"], [60])
    assert view.expire(T0 + 60) == []                      # still bound until its expiry
    [lapsed] = view.expire(T0 + 61)
    assert (lapsed.end, lapsed.ended_ts) == ("expired", T0 + 60.01) and len(view) == 0
    _register(view, T0 + 100, "10.0.0.21", ["sip:9@10.0.0.21"], [60], ["sip:9@10.0.0.21"], [60])
    request = _msg(T0 + 101, 3, "10.0.0.23", "10.0.0.5", contacts=["sip:8@10.0.0.23"], expiries=[60])
    ok = _msg(T0 + 101.01, 4, "10.0.0.5", "10.0.0.23", contacts=["sip:8@10.0.0.23"], expiries=[60], status=200)
    update = view.on_ok("8@pbx", RegisterRequest.of(request), ok)
    assert view.overflows == 1 and [(r.aor, r.end) for r in update.ended] == [("9@pbx", "evicted")]
    [left] = view.finish(T0 + 120)
    assert (left.aor, left.end, left.ended_ts) == ("8@pbx", "bound_at_end", None)


def test_contacts_per_aor_and_refresh_entries_stay_bounded():
    """A registrar that enumerates nothing lets each REGISTER add 64 contacts: the AOR keeps the newest
    MAX_CONTACTS_PER_AOR, the rest end as evicted (counted); a phone refreshing every second for a day leaves
    no growing heap of stale expiry entries."""
    from voipwatch.bindings import MAX_CONTACTS_PER_AOR
    view = RegistrarView(max_aors=10)
    evicted = 0
    for n in range(10):
        contacts = [f"sip:9@10.0.{n}.{i}" for i in range(64)]
        evicted += sum(r.end == "evicted" for r in _register(view, T0 + n, "10.0.0.21", contacts, [3600] * 64).ended)
    assert len(view.live("9@pbx", T0 + 20)) == MAX_CONTACTS_PER_AOR and evicted == view.overflows == 640 - 256
    for n in range(86_400):
        _register(view, T0 + 100 + n, "10.0.0.30", [], [], ["sip:7@10.0.0.30"], [3600])
    assert len(view._lapse) < 3 * (MAX_CONTACTS_PER_AOR + 1) + 1024
