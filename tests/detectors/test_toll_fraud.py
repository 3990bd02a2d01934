"""toll_fraud on real captures (a sipcli dial-plan probe, a friendly-scanner sweep, a spoofed INVITE, ordinary
calls) and on hand-built records for behaviour no capture shows (emergency calls, scope without a site model)."""
from __future__ import annotations

from pathlib import Path

import pytest

from detectors.toll_fraud import TollFraud
from voipwatch.analyze import analyze_files
from voipwatch.config_schema import ConfigError
from voipwatch.detect import SEVERITIES
from voipwatch.records import PacketMeta, SipAuth, SipMessage
from voipwatch.config import load_settings

FAMILY = "toll_fraud"
SIP_3700 = "sip-attacks/Traces/SIP-3700-unauthorized-401.pcap"


def _alerts(path: Path, mode: str = "batch") -> list:
    result = analyze_files([str(path)], load_settings(None), mode=mode)
    return [a for a in result.alerts if a.family == FAMILY]


def _zeek_notice_sources(path: Path) -> set[str]:
    lines = [line.split("\t") for line in path.read_text().splitlines() if not line.startswith("#")]
    return {fields[2] for fields in lines if len(fields) > 10}


def test_sipcli_dial_plan_probe(public_captures):
    """SIP-3700 (real, LBNL): sipcli tries 011972599501806 and 011972598072172 against two servers, each with
    the carrier-access codes 1010333/1010555/1010222/1010432 and the outside-line 9, at 00:42 and 04:03 UTC
    (off-hours); every attempt is refused (482, 401 then 403/503). The peer (Zeek) only saw a 401/403
    'brute force' from the same source; here: prefix walking on each number, international calls off-hours,
    and a burst of international calls per probe. Nothing was answered, so nothing is critical."""
    alerts = _alerts(public_captures / SIP_3700)
    peer = _zeek_notice_sources(public_captures / "sip-attacks/Baseline/sip-attacks.SIP-3700-unauthorized-401/notice.log")
    assert {a.src for a in alerts} == peer == {"40.129.198.250"}
    assert sorted((a.name, a.severity, a.dst) for a in alerts) == [
        (f"{FAMILY}.high_risk_destination", "medium", "157.147.97.131"),
        (f"{FAMILY}.high_risk_destination", "medium", "157.147.97.20"),
        (f"{FAMILY}.prefix_walking", "high", "157.147.97.131"),
        (f"{FAMILY}.prefix_walking", "high", "157.147.97.20"),
        (f"{FAMILY}.toll_call_volume", "high", "157.147.97.131"),
        (f"{FAMILY}.toll_call_volume", "high", "157.147.97.20")]
    walks = {a.dst: a for a in alerts if a.name.endswith("prefix_walking")}
    first = walks["157.147.97.20"]
    # the final form: every variant of the probe (tshark: 5 INVITE R-URIs, each answered 482)
    assert first.check == "TF-03" and first.evidence["variants"] == 5
    assert first.evidence["prefixes"] == ["", "1010222", "1010333", "1010555", "9"] and first.evidence["statuses"] == [482]
    assert walks["157.147.97.131"].evidence["statuses"] == [403, 503]
    for alert in alerts:
        if alert.name.endswith("high_risk_destination"):
            assert alert.evidence["class"] == "international" and alert.evidence["off_hours"] is True
    volume = next(a for a in alerts if a.name.endswith("toll_call_volume") and a.dst == "157.147.97.20")
    assert volume.evidence["calls"] == 5 and volume.evidence["account"] == "200"
    assert "9011972599501806" in volume.evidence["numbers"]


def test_sipcli_probe_same_alerts_in_both_paths(public_captures):
    batch, stream = (_alerts(public_captures / SIP_3700, mode) for mode in ("batch", "stream"))
    assert [(a.name, a.ts, a.evidence) for a in batch] == [(a.name, a.ts, a.evidence) for a in stream]


@pytest.mark.parametrize("capture", ["ipfixprobe/inputs/sip.pcap", "sipnab/metasploit-sip-invite-spoof.pcap"])
def test_scanners_and_spoofs_are_not_toll_fraud(public_captures, capture):
    """ipfixprobe: friendly-scanner INVITEs extension 100 on 3 hosts (an internal extension, one 401) and guesses
    REGISTER passwords: reconnaissance for the registration_flood family, no call to an external number.
    Metasploit sip_invite_spoof: one INVITE with no user part in its Request-URI, answered 180. Nothing here."""
    assert _alerts(public_captures / capture) == []


@pytest.mark.parametrize("capture", ["sipnab/sip-rtp-g711.pcap", "rtp-pcap/sip-rtp-g722.pcap",
                                     "voipshark/SIP-RTP-Normal_Call_two_parties.pcap", "sipnab/sip-proxy.pcap",
                                     "sngrep/aaa.pcap", "sipnab/SIP_CALL_RTP_G711", "sipnab/sip-over-tcp.pcap",
                                     "suricata-verify/sip-sdp/sdp.pcap"])
def test_ordinary_calls_raise_nothing_above_low(public_captures, capture):
    """Ordinary calls between extensions or test users; sdp.pcap answers a call between two public hosts
    (1.1.1.1 -> 2.2.2.2 for 97239287044) that no site model says is ours, so TF-02 does not judge it."""
    alerts = _alerts(public_captures / capture)
    assert [a for a in alerts if SEVERITIES.index(a.severity) > SEVERITIES.index("low")] == []


# -- hand-built records --------------------------------------------------------------------------
T0 = 1_699_920_000.0          # Tue 2023-11-14 00:00 UTC: outside business hours


def _detector(*sets: str) -> TollFraud:
    settings = load_settings(None, sets)
    return TollFraud(settings.detector_configs[FAMILY], settings.site)


def _msg(ts: float, src: str, dst: str, *, method: str | None = None, status: int | None = None,
         ruri_user: str | None = None, call_id: str = "c1", auth: tuple = (), **fields) -> SipMessage:
    pkt = PacketMeta(ts=ts, frame=int(ts * 1000) % 1_000_000, vlan=(), src=src, sport=5060, dst=dst, dport=5060,
                     transport="udp")
    return SipMessage(pkt=pkt, is_request=method is not None, method=method,
                      request_uri=f"sip:{ruri_user}@example.com" if ruri_user else None, ruri_user=ruri_user,
                      status=status, reason=None, call_id=call_id, cseq=1,
                      cseq_method=method or fields.pop("cseq_method", "INVITE"), from_uri=None,
                      from_user=fields.pop("from_user", "7000"), from_tag="f", to_uri=None, to_user=ruri_user,
                      to_tag=fields.pop("to_tag", None), auth=auth, **fields)


def _feed(det, messages) -> list:
    return [alert for msg in messages for alert in det.on_sip_message(msg)]


def test_emergency_calls_never_alert():
    det = _detector("roles.pstn_gw=['10.0.0.20']", "roles.esc=['10.0.0.5']")
    msgs = [_msg(T0, "198.51.100.9", "10.0.0.20", method="INVITE", ruri_user="911"),
            _msg(T0 + 0.5, "10.0.0.20", "198.51.100.9", status=200)]
    assert _feed(det, msgs) == []


def test_without_roles_only_public_callers_of_internal_servers_are_judged():
    det = _detector()
    assert any("TF-01" in r for r in det.idle_reasons()) and any("TF-06" in r for r in det.idle_reasons())
    transit = [_msg(T0, "198.51.100.9", "203.0.113.7", method="INVITE", ruri_user="0114420794600001"),
               _msg(T0 + 0.5, "203.0.113.7", "198.51.100.9", status=180)]
    internal = [_msg(T0 + 10, "10.0.0.50", "10.0.0.5", method="INVITE", ruri_user="0114420794600002", call_id="c2"),
                _msg(T0 + 10.5, "10.0.0.5", "10.0.0.50", status=180, call_id="c2")]
    inbound = [_msg(T0 + 20, "198.51.100.9", "10.0.0.5", method="INVITE", ruri_user="0114420794600003", call_id="c3"),
               _msg(T0 + 20.5, "10.0.0.5", "198.51.100.9", status=180, call_id="c3")]
    names = [a.name for a in _feed(det, transit + internal + inbound) if a.name.endswith("unauthenticated_call")]
    assert names == [f"{FAMILY}.unauthenticated_call"]


def test_credentials_are_never_evidence():
    det = _detector()
    creds = (SipAuth(header="proxy-authorization", scheme="Digest", username="7000", realm="example.com",
                     response_sha256="ab" * 32, response_len=32),)
    msgs = [_msg(T0 + i, "198.51.100.9", "10.0.0.5", method="INVITE", ruri_user=f"01144207946000{i}",
                 call_id=f"v{i}", auth=creds) for i in range(5)]
    alerts = _feed(det, msgs)
    assert {a.name for a in alerts} == {f"{FAMILY}.high_risk_destination", f"{FAMILY}.toll_call_volume",
                                        f"{FAMILY}.call_velocity"}    # five unanswered INVITEs in 4 s
    assert all("ab" * 32 not in str(a.evidence) and "response" not in " ".join(a.evidence) for a in alerts)


def test_bad_patterns_are_configuration_errors():
    with pytest.raises(ConfigError, match="access_codes"):
        _detector("detectors.toll_fraud.access_codes=['(']")


def test_the_default_high_risk_list_marks_network_codes_and_a_site_list_replaces_it():
    """Out of the box +881/+882/+883 (ITU-T E.164 international networks and satellite) are high-risk in every
    international form, ordinary international numbers stay international; a site's [dialplan] high_risk
    replaces the list (empty: the class is off)."""
    from voipwatch.site import Site
    default = Site({})
    assert [default.number_class(n) for n in ("+882161234100", "00881612345678", "011883140000001",
                                               "+5371234567", "+442079460123", "+15555769711")] == \
        ["high_risk", "high_risk", "high_risk", "high_risk", "international", "international"]
    own = Site({"dialplan": {"high_risk": [r"^\+44"]}})
    assert [own.number_class(n) for n in ("+882161234100", "+442079460123")] == ["international", "high_risk"]
    assert Site({"dialplan": {"high_risk": []}}).number_class("+882161234100") == "international"


def test_a_site_list_turns_the_default_high_risk_call_into_an_international_one(tmp_path):
    """The same capture, the desk phone's +882 call: high_risk_destination out of the box, nothing once the
    site replaces the list with one that does not name +882 (business hours, so international is silent)."""
    capture = Path(__file__).resolve().parents[2] / "sample_captures" / "tf-accounts.pcap"
    desk = [a for a in analyze_files([str(capture)], load_settings(None)).alerts
            if a.name == f"{FAMILY}.high_risk_destination" and a.src == "10.3.10.1"]
    assert [(a.severity, a.evidence["number"], a.evidence["class"]) for a in desk] == [("medium", "+882130000001", "high_risk")]
    site = tmp_path / "site.toml"
    site.write_text('[dialplan]\nhigh_risk = ["^\\\\+53"]\n')
    replaced = [a for a in analyze_files([str(capture)], load_settings(site)).alerts
                if a.name == f"{FAMILY}.high_risk_destination" and a.src == "10.3.10.1"]
    assert replaced == []


def _one_rings(src: str, dst: str, callers: list[str], ring_s: float) -> list:
    """An inbound call per caller to extension 2001, cancelled ring_s after its INVITE (CANCEL, then 487)."""
    msgs = []
    for i, caller in enumerate(callers):
        t, cid = T0 + 20 * i, f"ring-{i}"
        msgs += [_msg(t, src, dst, method="INVITE", ruri_user="2001", call_id=cid, from_user=caller),
                 _msg(t + 0.3, dst, src, status=180, call_id=cid, from_user=caller),
                 _msg(t + ring_s, src, dst, method="CANCEL", ruri_user="2001", call_id=cid, from_user=caller),
                 _msg(t + ring_s + 0.01, dst, src, status=487, call_id=cid, from_user=caller)]
    return msgs


def test_wangiri_counts_distinct_numbers_of_one_range_that_ring_briefly():
    """Five numbers of +88216123xxxx cancelled after 1.5 s from the Internet are a campaign; the same calls
    ringing 8 s (longer than wangiri_ring_s), four numbers only, or five numbers of five ranges are not."""
    wangiri = [f"+88216123410{i}" for i in range(5)]
    campaign = [a for a in _feed(_detector(), _one_rings("198.51.100.9", "10.0.0.5", wangiri, 1.5))
                if a.name == f"{FAMILY}.wangiri_campaign"]
    assert [(a.evidence["range"], a.evidence["distinct_numbers"]) for a in campaign] == [("+88216123xxxx", 5)]
    for callers, ring_s in ((wangiri, 8.0), (wangiri[:4], 1.5),
                            (["+33140000123", "+493012345678", "+81312345678", "+442079460123", "+8821612349999"], 1.5)):
        alerts = _feed(_detector(), _one_rings("198.51.100.9", "10.0.0.5", callers, ring_s))
        assert [a for a in alerts if "wangiri" in a.name] == [], (callers, ring_s)


def test_users_hanging_up_on_each_other_are_no_wangiri():
    """Internal calls whose From is the caller's E.164 DID (one block, +1415555xxxx, 'international' by the
    default dial plan), cancelled while ringing, come from phones, not from outside: no campaign."""
    users = [f"+141555501{i:02d}" for i in range(6)]
    alerts = _feed(_detector(), _one_rings("10.0.0.50", "10.0.0.5", users, 1.0))
    assert [a for a in alerts if "wangiri" in a.name] == []
