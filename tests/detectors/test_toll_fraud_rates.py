"""toll_fraud's windows at 10x and 100x their thresholds (generated message streams, counts known by
construction): the totals an alert states are the true ones, whatever the rate."""
from __future__ import annotations

import pytest

from detectors.toll_fraud import TollFraud
from voipwatch.config import load_settings
from voipwatch.records import PacketMeta, SipAuth, SipMessage

FAMILY = "toll_fraud"
T0 = 1_500_000_000.0
PHONE, ESC = "10.0.0.50", "10.0.0.5"
CREDS = (SipAuth("proxy-authorization", "Digest", username="7000", realm="pbx", response_sha256="cd" * 32,
                 response_len=32),)


def _msg(ts, frame, src, dst, *, method=None, status=None, callee=None, call_id):
    return SipMessage(PacketMeta(ts, frame, (), src, 5060, dst, 5060, "udp"), method is not None, method,
                      f"sip:{callee}@pbx" if callee else None, callee, status, None, call_id, 1,
                      method or "INVITE", "sip:7000@pbx", "7000", "f", f"sip:{callee}@pbx" if callee else None,
                      callee, "t" if status == 200 else None, auth=CREDS if method == "INVITE" else ())


def _run(messages):
    settings = load_settings(None)
    det = TollFraud(settings.detector_configs[FAMILY], settings.site)
    return [a for m in messages for a in det.on_sip_message(m)], det


@pytest.mark.parametrize("factor", [10, 100])
def test_toll_call_volume_and_concurrency_at_any_rate(factor):
    """toll_calls (5 per 600 s) and max_concurrent (2) exceeded 10x and 100x: every call is counted, none is
    forgotten by a cap (the concurrency list was cut to max_concurrent + 1, so "3 concurrent" for 6). The
    calls are 0.1 s apart, all within setup_timeout_s."""
    n = 10 * factor
    msgs = [_msg(T0 + i * 0.1, i + 1, PHONE, ESC, method="INVITE", callee=f"0114420794{i:06d}", call_id=f"c{i}")
            for i in range(n)]
    alerts, det = _run(msgs)
    volume = [a for a in alerts if a.name == f"{FAMILY}.toll_call_volume"]
    assert volume[-1].evidence["calls"] == n and volume[-1].evidence["first_ts"] == T0
    concurrent = [a for a in alerts if a.name == f"{FAMILY}.call_velocity" and a.evidence["kind"] == "concurrent"]
    assert [a.evidence["calls"] for a in concurrent] == list(range(3, n + 1))
    assert det.caps_hit() == {}


@pytest.mark.parametrize("factor", [10, 100])
def test_short_calls_at_any_rate(factor):
    """short_calls (10 per 600 s) answered and hung up within short_call_s, 10x and 100x over."""
    n, msgs, frame = 10 * factor, [], 0
    for i in range(n):
        ts, cid, callee = T0 + i * 0.5, f"s{i}", f"0114420795{i:06d}"
        msgs += [_msg(ts, frame + 1, PHONE, ESC, method="INVITE", callee=callee, call_id=cid),
                 _msg(ts + 0.1, frame + 2, ESC, PHONE, status=200, call_id=cid),
                 _msg(ts + 0.3, frame + 3, PHONE, ESC, method="BYE", callee=callee, call_id=cid)]
        frame += 3
    alerts, _ = _run(msgs)
    short = [a for a in alerts if a.name == f"{FAMILY}.call_velocity" and a.evidence["kind"] == "short_calls"]
    assert short[-1].evidence["calls"] == n and short[-1].evidence["first_ts"] == pytest.approx(T0 + 0.3)
