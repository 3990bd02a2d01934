"""registration_flood's sliding windows at 10x and 100x their threshold rates (and at the 10,000 requests/s of
a SIPp flood): generated message streams whose counts are known by construction. A window's cap must never
change what the detector concludes, nor the totals it states."""
from __future__ import annotations

import pytest

from voipwatch.config import load_settings
from voipwatch.detect import load_detectors
from voipwatch.records import PacketMeta, SipAuth, SipMessage

FAMILY = "registration_flood"
T0 = 1_500_000_000.0
ATTACKER, REGISTRAR = "203.0.113.9", "10.0.0.5"


def _request(ts, frame, method, *, src=ATTACKER, dst=REGISTRAR, dport=5060, user="100", call_id=None, cseq=1,
             auth=None):
    creds = (SipAuth("authorization", "Digest", username=user, realm="pbx", response_sha256=f"{frame:064x}",
                     response_len=32),) if auth else ()
    return SipMessage(PacketMeta(ts, frame, (), src, 5060, dst, dport, "udp"), True, method, f"sip:{user}@pbx", user,
                      None, None, call_id or f"c{frame}", cseq, method, f"sip:{user}@pbx", user, "t1",
                      f"sip:{user}@pbx", user, None, user_agent="tool/1", auth=creds)


def _answer(request, status, frame):
    p = request.pkt
    return SipMessage(PacketMeta(p.ts + 0.001, frame, (), p.dst, p.dport, p.src, p.sport, "udp"), False, None, None,
                      None, status, "x", request.call_id, request.cseq, request.method, request.from_uri,
                      request.from_user, "t1", request.to_uri, request.to_user, "r1")


def _detector():
    settings = load_settings(None)
    return load_detectors()[FAMILY](settings.detector_configs[FAMILY], settings.site)


def _feed(det, messages):
    return [a for m in messages for a in det.on_sip_message(m) or ()]


@pytest.mark.parametrize("rate", [200, 2_000, 10_000])       # 10x, 100x and 500x flood_rate (20/s)
def test_request_flood_at_any_rate(rate):
    """8 s of INVITEs: RF-08 fires once the requests span flood_min_span_s (5 s), and states the true number
    of requests in its 10-s window and the true time of the first one."""
    det = _detector()
    n = 8 * rate
    msgs = [_request(T0 + i / rate, i + 1, "INVITE", user=str(1000 + i % 50)) for i in range(n)]
    alerts = [a for a in _feed(det, msgs) if a.name == f"{FAMILY}.request_flood"]
    assert alerts, "no RF-08"
    first = alerts[0]
    assert first.evidence["first_ts"] == T0
    assert first.ts == pytest.approx(T0 + 5.0, abs=1.5 / rate)
    assert first.evidence["requests"] == round((first.ts - T0) * rate) + 1
    last = alerts[-1]
    assert last.evidence["requests"] == n and last.evidence["methods"] == {"INVITE": n}
    assert det.caps_hit() == {}


@pytest.mark.parametrize("factor", [10, 100])
def test_brute_force_at_any_rate(factor):
    """bf_failures (10) rejected credentials per 60 s, sent 10x and 100x as fast: every failure is counted."""
    det = _detector()
    failures, msgs = 10 * factor, []
    for i in range(failures):
        req = _request(T0 + i * 60.0 / failures, 2 * i + 1, "REGISTER", user="2001", call_id="bf", cseq=i + 1, auth=True)
        msgs += [req, _answer(req, 401, 2 * i + 2)]
    alerts = [a for a in _feed(det, msgs) if a.name == f"{FAMILY}.brute_force"]
    assert alerts[0].evidence["failures"] == 10 and alerts[-1].evidence["failures"] == failures
    assert alerts[-1].evidence["first_ts"] == T0 + 0.001          # the first rejection


@pytest.mark.parametrize("factor", [10, 100])
def test_sweep_and_enumeration_at_any_rate(factor):
    """sweep_hosts (20) hosts and enum_users (30) users per 60 s, probed 10x and 100x as fast: the sweep names
    the true number of hosts, the enumeration the true number of users tried."""
    det = _detector()
    hosts, users = 20 * factor, 30 * factor
    msgs = [_request(T0 + i * 60.0 / hosts, i + 1, "OPTIONS", dst=f"10.1.{i // 250}.{i % 250 + 1}") for i in range(hosts)]
    sweeps = [a for a in _feed(det, msgs) if a.name == f"{FAMILY}.sweep"]
    assert sweeps[-1].evidence["hosts"] == hosts and sweeps[-1].evidence["first_ts"] == T0
    start = T0 + 1_000
    msgs = [_request(start + i * 60.0 / users, hosts + i + 1, "REGISTER", user=str(10_000 + i)) for i in range(users)]
    alerts = _feed(det, msgs) + list(det.finish())
    enum = [a for a in alerts if a.name == f"{FAMILY}.enumeration"]
    assert len(enum) == 1 and enum[0].evidence["users_tried"] == users
    assert enum[0].evidence["first_ts"] == start


def test_a_cap_hit_is_counted_not_hidden():
    """max_tracked keys per table: a flood of distinct sources beyond it drops the least recently used ones,
    and says so in caps_hit."""
    settings = load_settings(None, (f"detectors.{FAMILY}.max_tracked=50",))
    det = load_detectors()[FAMILY](settings.detector_configs[FAMILY], settings.site)
    _feed(det, [_request(T0 + i * 0.01, i + 1, "OPTIONS", src=f"198.51.100.{i % 200 + 1}") for i in range(200)])
    hits = det.caps_hit()
    assert hits["registration_flood.flood"] == 150 and hits["registration_flood.hosts"] == 150


def test_detector_cap_hits_reach_the_summary():
    """analyze's summary.json caps_hit lists the detectors' cap hits beside the pipeline's."""
    from pathlib import Path

    from voipwatch.analyze import analyze_files
    capture = Path(__file__).resolve().parents[2] / "sample_captures" / "rf-attacks.pcap"
    settings = load_settings(None, (f"detectors.{FAMILY}.max_tracked=3",))
    summary = analyze_files([str(capture)], settings).summary
    hits = {k: v for k, v in summary["caps_hit"].items() if k.startswith(f"detector.{FAMILY}.")}
    assert hits["detector.registration_flood.txns"] > 0 and hits["detector.registration_flood.flood"] > 0
    assert load_settings(None).detector_configs[FAMILY].max_tracked == 100_000
    assert "caps_hit" in analyze_files([str(capture)], load_settings(None)).summary


@pytest.mark.parametrize("factor", [10, 100])
def test_distributed_spraying_at_any_rate(factor):
    """spray_sources (5) sources failing one user per 10 min, 10x and 100x as many: all sources counted."""
    det = _detector()
    sources, msgs = 5 * factor, []
    for i in range(sources):
        req = _request(T0 + i * 600.0 / sources / 2, 2 * i + 1, "REGISTER", src=f"198.51.{100 + i // 250}.{i % 250 + 1}",
                       user="2001", call_id=f"d{i}", auth=True)
        msgs += [req, _answer(req, 403, 2 * i + 2)]
    spray = [a for a in _feed(det, msgs) if a.name == f"{FAMILY}.spraying"]
    assert spray[-1].evidence["source_count"] == sources and spray[-1].evidence["failures"] == sources
    assert len(spray[-1].evidence["sources"]) == 50                   # max_listed


@pytest.mark.parametrize("rate", [200, 2_000])
def test_flood_503_corroboration_at_any_rate(rate):
    """Every request of a flood answered 503 (flood_503 is 10 per window): the alert states the true count of
    503s to the source in its window."""
    det = _detector()
    msgs, n = [], 6 * rate
    for i in range(n):
        req = _request(T0 + i / rate, 2 * i + 1, "OPTIONS", user="x")
        msgs += [req, _answer(req, 503, 2 * i + 2)]
    floods = [a for a in _feed(det, msgs) if a.name == f"{FAMILY}.request_flood"]
    last = floods[-1]
    assert last.severity == "high" and last.evidence["requests"] == n
    assert last.evidence["responses_503"] == n          # the finding is updated by the last request's 503 too
