"""Caps and expiry of the SIP session state (voipwatch/sessions.py), on capture time only.

Each table is filled past its cap: the least recently used entry goes (a call or registration is
emitted as a record, not dropped), the overflow is counted, and closing by idleness is judged on the
capture times of the messages, never on the wall clock (the times here are decades away from it).
"""
from __future__ import annotations

from voipwatch.records import PacketMeta, SdpMedia, SdpSession, SipMessage
from voipwatch.sessions import TRANSACTION_S, CallTracker, MediaExpectations, RegistrationTracker

T0 = 1_000_000.0
PHONE, PBX = "10.0.0.11", "10.0.0.5"


def sip(ts: float, frame: int, call_id: str, *, method: str | None = None, status: int | None = None,
        cseq: int = 1, cseq_method: str | None = None, src: str = PHONE, dst: str = PBX, user: str = "1001",
        branch: str = "z9hG4bK-1", sdp: SdpSession | None = None) -> SipMessage:
    """A request (method) or a response (status) of one transaction; the AOR is user@pbx."""
    uri = f"sip:{user}@pbx"
    return SipMessage(PacketMeta(ts, frame, (), src, 5060, dst, 5060, "udp"), method is not None, method,
                      "sip:pbx" if method else None, None, status, None if method else "x", call_id, cseq,
                      cseq_method or method, uri, user, "ft", uri, user, None if method else "tt",
                      via=(f"SIP/2.0/UDP {src}:5060;branch={branch}",), sdp=sdp)


def offer(addr: str, port: int) -> SdpSession:
    return SdpSession(None, None, addr, (SdpMedia("audio", port, "RTP/AVP", ("0",), ((0, "PCMU", 8000),)),))


# -- CallTracker ---------------------------------------------------------------------------------

def test_call_cap_evicts_least_recently_active_call_as_a_record():
    calls = CallTracker(max_calls=2, idle_s=3600.0, linger_s=64.0)
    assert calls.on_sip(sip(T0, 1, "c1", method="INVITE")) == []
    assert calls.on_sip(sip(T0 + 1, 2, "c2", method="INVITE")) == []
    calls.on_sip(sip(T0 + 2, 3, "c1", status=180, cseq_method="INVITE", src=PBX, dst=PHONE))  # c1 active again
    evicted = calls.on_sip(sip(T0 + 3, 4, "c3", method="INVITE"))
    assert [(c.call_id, c.state, c.last_ts) for c in evicted] == [("c2", "attempting", T0 + 1)]
    assert (len(calls), calls.overflows) == (2, 1)
    assert calls.get("c2") is None and calls.get("c1").state == "ringing"
    evicted = calls.on_sip(sip(T0 + 4, 5, "c4", method="INVITE"))
    assert [c.call_id for c in evicted] == ["c1"] and calls.overflows == 2


def test_call_tracker_ignores_messages_outside_any_invite_dialog():
    calls = CallTracker(max_calls=1)
    for n, msg in enumerate((sip(T0, 1, "o1", method="OPTIONS"), sip(T0, 2, "b1", method="BYE"),
                             sip(T0, 3, "r1", status=200, cseq_method="INVITE", src=PBX, dst=PHONE))):
        assert calls.on_sip(msg) == []
    assert (len(calls), calls.overflows) == (0, 0)


def test_calls_close_by_capture_time_ended_after_linger_others_after_idle():
    calls = CallTracker(max_calls=10, idle_s=300.0, linger_s=64.0)
    calls.on_sip(sip(T0, 1, "ended", method="INVITE"))
    calls.on_sip(sip(T0 + 1, 2, "ended", status=200, cseq_method="INVITE", src=PBX, dst=PHONE))
    calls.on_sip(sip(T0 + 10, 3, "ended", method="BYE", cseq=2))
    calls.on_sip(sip(T0 + 5, 4, "open", method="INVITE"))
    calls.on_sip(sip(T0 + 6, 5, "open", status=200, cseq_method="INVITE", src=PBX, dst=PHONE))
    assert calls.expire(T0 + 74) == []                        # exactly linger_s after the BYE
    assert [(c.call_id, c.state, c.duration_s) for c in calls.expire(T0 + 74.5)] == [("ended", "ended", 9.0)]
    assert calls.expire(T0 + 306) == []                       # exactly idle_s after the 200
    assert [(c.call_id, c.state) for c in calls.expire(T0 + 306.5)] == [("open", "answered")]
    assert len(calls) == 0 and calls.overflows == 0 and calls.finish() == []


def test_call_finish_emits_every_open_call():
    calls = CallTracker(max_calls=10)
    calls.on_sip(sip(T0, 1, "a", method="INVITE"))
    calls.on_sip(sip(T0 + 1, 2, "b", method="INVITE"))
    assert [c.call_id for c in calls.finish()] == ["a", "b"] and len(calls) == 0


# -- RegistrationTracker -------------------------------------------------------------------------

def register(ts: float, frame: int, user: str, cseq: int = 1, src: str = PHONE) -> SipMessage:
    return sip(ts, frame, f"reg-{user}", method="REGISTER", cseq=cseq, user=user, src=src,
               branch=f"z9hG4bK-{user}-{cseq}")


def answer(ts: float, frame: int, user: str, status: int, cseq: int = 1, src: str = PHONE) -> SipMessage:
    return sip(ts, frame, f"reg-{user}", status=status, cseq=cseq, cseq_method="REGISTER", user=user,
               src=PBX, dst=src, branch=f"z9hG4bK-{user}-{cseq}")


def test_registration_cap_evicts_least_recently_registered_row_as_a_record():
    regs = RegistrationTracker(max_entries=2, max_transactions=100)
    regs.on_sip(register(T0, 1, "1001"))
    regs.on_sip(answer(T0 + 0.1, 2, "1001", 401))
    regs.on_sip(register(T0 + 1, 3, "1002"))
    regs.on_sip(register(T0 + 2, 4, "1001", cseq=2))           # 1001 refreshed: 1002 is least recent
    evicted = regs.on_sip(register(T0 + 3, 5, "1003"))
    assert [(r.aor, r.src, r.attempts) for r in evicted] == [("1002@pbx", PHONE, 1)]
    assert (len(regs), regs.overflows) == (2, 1)
    evicted = regs.on_sip(register(T0 + 4, 6, "1004"))
    assert [(r.aor, r.attempts, r.challenges) for r in evicted] == [("1001@pbx", 2, 1)]
    assert regs.overflows == 2
    # A response for an evicted row has nothing to update; it neither creates a row nor fails.
    assert regs.on_sip(answer(T0 + 4.1, 7, "1002", 200)) == [] and len(regs) == 2


def test_register_transaction_cap_is_counted_and_forgets_the_oldest():
    regs = RegistrationTracker(max_entries=100, max_transactions=2)
    for n, user in enumerate(("1001", "1002", "1003")):
        regs.on_sip(register(T0 + n, n + 1, user))
    assert regs.transaction_overflows == 1
    for n, user in enumerate(("1001", "1002", "1003")):
        regs.on_sip(answer(T0 + 3 + n, n + 4, user, 200))
    successes = {r.aor: r.successes for r in regs.finish()}
    assert successes == {"1001@pbx": 0, "1002@pbx": 1, "1003@pbx": 1}   # 1001's transaction was forgotten
    assert regs.overflows == 0


def test_register_transactions_expire_after_64_t1_of_capture_time():
    regs = RegistrationTracker(max_entries=10, max_transactions=10)
    regs.on_sip(register(T0, 1, "1001"))
    regs.on_sip(register(T0 + 1, 2, "1001"))                   # a retransmission: same transaction
    regs.on_sip(answer(T0 + TRANSACTION_S + 0.5, 3, "1001", 200))   # too late for the transaction
    regs.on_sip(register(T0 + 100, 4, "1002"))
    regs.on_sip(answer(T0 + 100 + TRANSACTION_S, 5, "1002", 403))    # just in time
    rows = {r.aor: (r.attempts, r.successes, r.failures, r.rejected) for r in regs.finish()}
    assert rows == {"1001@pbx": (1, 0, 0, 0), "1002@pbx": (1, 0, 0, 1)}   # a 403 without credentials: no failed login


def test_registration_rows_close_after_idle_capture_time():
    regs = RegistrationTracker(max_entries=10, max_transactions=10, idle_s=600.0)
    regs.on_sip(register(T0, 1, "1001"))
    regs.on_sip(register(T0 + 100, 2, "1002"))
    assert regs.expire(T0 + 600) == []
    assert [r.aor for r in regs.expire(T0 + 600.5)] == ["1001@pbx"]
    regs.on_sip(register(T0 + 650, 3, "1001", cseq=2))         # a later REGISTER starts a new row
    assert [r.aor for r in regs.expire(T0 + 701)] == ["1002@pbx"]
    assert [(r.aor, r.first_ts, r.attempts) for r in regs.finish()] == [("1001@pbx", T0 + 650, 1)]
    assert regs.overflows == 0


def test_registration_row_idle_time_counts_its_responses():
    """A row is active until its last REGISTER transaction ends: a late answer on one row must not keep
    an older-answered row open past its idle time."""
    regs = RegistrationTracker(max_entries=10, max_transactions=10, idle_s=600.0)
    regs.on_sip(register(T0, 1, "1001"))
    regs.on_sip(register(T0 + 1, 2, "1002"))
    regs.on_sip(answer(T0 + 20, 3, "1001", 200))               # 1001 last active at T0 + 20
    assert [r.aor for r in regs.expire(T0 + 601.5)] == ["1002@pbx"]
    assert [r.aor for r in regs.expire(T0 + 620.5)] == ["1001@pbx"]


# -- MediaExpectations ---------------------------------------------------------------------------

def invite_with_sdp(ts: float, frame: int, call_id: str, addr: str, port: int) -> SipMessage:
    return sip(ts, frame, call_id, method="INVITE", sdp=offer(addr, port))


def test_media_cap_evicts_least_recently_announced_endpoints():
    media = MediaExpectations(max_entries=4)                   # one m= line binds its RTP and RTCP ports
    media.announce(invite_with_sdp(T0, 1, "c1", "10.0.0.21", 4000))
    media.announce(invite_with_sdp(T0 + 1, 2, "c2", "10.0.0.22", 4000))
    assert (len(media), media.overflows) == (4, 0)
    media.announce(invite_with_sdp(T0 + 2, 3, "c3", "10.0.0.23", 4000))
    assert (len(media), media.overflows) == (4, 2)
    assert media.lookup("10.0.0.99", 9, "10.0.0.21", 4000, 10, T0 + 3) is None      # c1 evicted
    assert media.lookup("10.0.0.99", 9, "10.0.0.21", 4001, 10, T0 + 3) is None
    found = media.lookup("10.0.0.22", 4000, "10.0.0.99", 9, 10, T0 + 3)            # bound as a source too
    assert (found.call_id, found.is_rtcp) == ("c2", False)
    assert media.lookup("10.0.0.99", 9, "10.0.0.23", 4001, 10, T0 + 3).is_rtcp
    # Announcing c2 again makes it the most recent: c3 goes next.
    media.announce(invite_with_sdp(T0 + 3, 4, "c2", "10.0.0.22", 4000))
    media.announce(invite_with_sdp(T0 + 4, 5, "c4", "10.0.0.24", 4000))
    assert media.overflows == 4
    assert media.lookup("10.0.0.99", 9, "10.0.0.23", 4000, 10, T0 + 5) is None
    assert media.lookup("10.0.0.99", 9, "10.0.0.22", 4000, 10, T0 + 5).call_id == "c2"


def test_media_binding_judged_on_the_packet_time_and_frame():
    media = MediaExpectations(max_entries=10, max_age_s=600.0)
    media.announce(invite_with_sdp(T0, 5, "c1", "10.0.0.21", 4000))
    assert media.lookup("10.0.0.99", 9, "10.0.0.21", 4000, 5, T0) is None       # not before its own SDP
    assert media.lookup("10.0.0.99", 9, "10.0.0.21", 4000, 6, T0 + 600).call_id == "c1"
    assert media.lookup("10.0.0.99", 9, "10.0.0.21", 4000, 7, T0 + 600.5) is None   # older than max_age_s
    media.announce(invite_with_sdp(T0 + 100, 8, "c2", "10.0.0.22", 4000))
    media.expire(T0 + 600)
    assert len(media) == 4
    media.expire(T0 + 600.5)                                   # frees only what lookup already ignores
    assert len(media) == 2 and media.lookup("10.0.0.99", 9, "10.0.0.22", 4000, 9, T0 + 601).call_id == "c2"
    assert media.overflows == 0


def test_media_ignores_held_and_rejected_streams():
    media = MediaExpectations(max_entries=10)
    media.announce(invite_with_sdp(T0, 1, "c1", "0.0.0.0", 4000))   # RFC 3264 §8.4 hold
    media.announce(invite_with_sdp(T0, 2, "c2", "10.0.0.21", 0))    # RFC 3264 §6 rejected
    assert (len(media), media.overflows) == (0, 0)
