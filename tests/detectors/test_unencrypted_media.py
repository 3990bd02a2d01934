"""unencrypted_media on real captures (cleartext G.711 calls, SIP/TLS + SRTP, SRTP alone, ZRTP, DTLS-SRTP,
RFC 2833 events) and on hand-built records for what no capture shows (weak SDES parameters, entropy)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from detectors.unencrypted_media import Config, UnencryptedMedia
from voipwatch.analyze import analyze_files
from voipwatch.config_schema import ConfigError, build
from voipwatch.detect import SEVERITIES
from voipwatch.records import PacketMeta, RtpStream, SdpCrypto, SdpMedia, SdpSession, SipMessage
from voipwatch.config import load_settings
from voipwatch.site import Site

FAMILY = "unencrypted_media"
REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_captures"


def _alerts(path: Path, mode: str = "batch") -> list:
    result = analyze_files([str(path)], load_settings(None), mode=mode)
    return [a for a in result.alerts if a.family == FAMILY]


def _names(alerts) -> list[tuple[str, str]]:
    return sorted((a.name.split(".", 1)[1], a.severity) for a in alerts)


def test_cleartext_g711_calls(public_captures):
    """SIPp <-> FreeSWITCH, PCMU then PCMA, all in 10.0.2.0/24: the two calls' media is one cleartext finding
    between internal hosts (medium, hygiene) listing both calls, the one signalling pair is cleartext SIP
    without REGISTER (medium); no keys, no public path."""
    alerts = _alerts(public_captures / "sipnab/sip-rtp-g711.pcap")
    assert _names(alerts) == [("cleartext_rtp", "medium"), ("cleartext_sip", "medium")]
    rtp = next(a for a in alerts if a.name.endswith("cleartext_rtp"))
    assert rtp.identifier == "internal hosts <-> internal hosts"
    assert rtp.evidence["call_ids"] == ["1-1966@10.0.2.20", "1-1968@10.0.2.20"] and rtp.evidence["calls"] == 2
    assert rtp.evidence["codecs"] == ["PCMA", "PCMU"] and rtp.evidence["basis"] == {"sdp": 2}
    assert rtp.evidence["top_host_pairs"] == [{"hosts": ["10.0.2.15", "10.0.2.20"], "count": 2}]
    sip = next(a for a in alerts if a.name.endswith("cleartext_sip"))
    assert sip.evidence["methods"] == {"ACK": 2, "BYE": 1, "INVITE": 2, "responses": 5}
    assert sip.evidence["host_pairs"] == 1


def test_cleartext_call_on_public_addresses(public_captures):
    """The Wireshark SIP_CALL_RTP_G711 sample runs on 200.57.7.0/24 (public by default): every public address
    is a place of its own, so the call's media is critical between its two ends, REGISTER pairs are critical,
    the PBX-side leg with no SIP is found by its 160-byte payloads, and each public peer gets one UM-06 summary."""
    alerts = _alerts(public_captures / "sipnab/SIP_CALL_RTP_G711")
    call = [a for a in alerts if a.name.endswith("cleartext_rtp") and a.evidence["calls"]]
    assert [(a.severity, a.evidence["call_ids"]) for a in call] == [("critical", ["12013223@200.57.7.195"])]
    assert call[0].evidence["public_ends"] == ["200.57.7.196", "200.57.7.204"]
    flow = [a for a in alerts if a.name.endswith("cleartext_rtp") and a.evidence["flows"]]
    assert [(a.evidence["basis"], a.severity) for a in flow] == [({"payload_length": 1}, "critical")]
    register = [a for a in alerts if a.name.endswith("cleartext_sip") and a.evidence["methods"].get("REGISTER")]
    assert {a.severity for a in register} == {"critical"} and len(register) == 2
    public = {a.evidence["peer"]: a.severity for a in alerts if a.name.endswith("cleartext_on_public_path")}
    assert public["200.57.7.204"] == "critical" and public["200.57.7.195"] == "high"
    assert not [a for a in alerts if "sdes" in a.name or "dtmf" in a.name]


@pytest.mark.parametrize("capture", ["voipshark/SIP-over-TLS-RSA-SRTP_Normal_Call_two_parties.pcap",
                                     "rtp-pcap/marseillaise-srtp.pcap", "ndpi/pcap/stun_dtls_rtp.pcapng"])
def test_encrypted_captures_raise_nothing(public_captures, capture):
    """SIP over TLS with SRTP (170-byte payloads), SRTP alone (SSRC 0xDEADBEEF), WebRTC DTLS-SRTP Opus:
    no cleartext SIP, no SDES exposure, no cleartext media."""
    assert _alerts(public_captures / capture) == []


def test_zrtp_call_is_not_reported_as_cleartext(public_captures):
    """Zfone + X-Lite via Asterisk: SDP says RTP/AVP with no a=zrtp-hash, ZRTP runs on the media path and
    the payloads are 160 + 4 bytes (HMAC-SHA1-32). The call is zrtp_suspected (info), never cleartext_rtp;
    its SIP (REGISTER included) is cleartext."""
    alerts = _alerts(public_captures / "sipnab/Asterisk_ZFONE_XLITE.pcap")
    assert _names(alerts) == [("cleartext_sip", "high"), ("zrtp_suspected", "info")]
    zrtp = next(a for a in alerts if a.name.endswith("zrtp_suspected"))
    assert zrtp.call_id == "ZDYzOWVlNjEwM2NjZTBjNzliNmM1ZTNiOGZjNWFhN2E."
    assert {s["srtp_trailer_b"] for s in zrtp.evidence["streams"]} == {4}
    assert "ZRTP" in zrtp.msg


def test_rfc2833_events_without_sdp(public_captures):
    """SIPp's RFC 2833 capture: 10 bare 4-byte telephone-event payloads on PT 101 and no signalling."""
    alerts = _alerts(public_captures / "sipp/dtmf_2833_1.pcap")
    assert _names(alerts) == [("dtmf_in_clear", "high")]
    assert alerts[0].evidence["event_packets"] == 10 and alerts[0].evidence["event_streams"] == 1


@pytest.mark.parametrize("capture", ["voipshark/SIP-over-TLS-RSA-SRTP_Normal_Call_two_parties.pcap",
                                     "rtp-pcap/marseillaise-srtp.pcap", "ndpi/pcap/stun_dtls_rtp.pcapng",
                                     "sipnab/Asterisk_ZFONE_XLITE.pcap"])
def test_protected_media_never_above_low(public_captures, capture):
    media = [a for a in _alerts(public_captures / capture, "stream") if not a.name.endswith("cleartext_sip")]
    assert all(SEVERITIES.index(a.severity) <= SEVERITIES.index("low") for a in media)


def test_benign_sample_raises_nothing(analysis):
    assert [a for a in analysis(SAMPLES / "um-benign.pcap").alerts if a.family == FAMILY] == []


def test_no_key_material_in_alerts(analysis):
    """The attacks sample carries SDES inline keys; alerts hold only their SHA-256 and length."""
    alerts = [a for a in analysis(SAMPLES / "um-attacks.pcap").alerts if a.family == FAMILY]
    text = json.dumps([a.evidence for a in alerts]) + " ".join(a.msg for a in alerts)
    for key in ("YUJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0", "MDEyMzQ1Njc4OUFCQ0RFRkdISUpLTE1OT1BRUlNU", "inline:"):
        assert key not in text


# -- hand-built records --------------------------------------------------------------------------------
def _meta(ts: float, src: str, dst: str) -> PacketMeta:
    return PacketMeta(ts, int(ts * 10), (110,), src, 5060, dst, 5060, "udp")


def _sip(ts, src, dst, sdp, method=None, status=None, call_id="c1@test") -> SipMessage:
    return SipMessage(_meta(ts, src, dst), method is not None, method, None, "2000", status, None, call_id, 1,
                      "INVITE", None, src, None, None, None, None, sdp=sdp)


def _sdp(ip, port, proto="RTP/SAVP", crypto=()) -> SdpSession:
    return SdpSession(None, ip, ip, (SdpMedia("audio", port, proto, ("0",), ((0, "PCMU", 8000),), crypto=crypto),))


def _run(detector, *records) -> list:
    out = []
    for record in records:
        handler = {SipMessage: detector.on_sip_message, RtpStream: detector.on_rtp_stream}[type(record)]
        out += list(handler(record))
    return out + list(detector.finish())


def _detector(**overrides) -> UnencryptedMedia:
    return UnencryptedMedia(build(Config, overrides, "detectors.unencrypted_media"), Site({}))


@pytest.mark.parametrize("suite,params,severity", [
    ("AES_CM_128_HMAC_SHA1_80", ("UNENCRYPTED_SRTP",), "high"),
    ("AES_CM_128_HMAC_SHA1_80", ("UNAUTHENTICATED_SRTP",), "medium"),
    ("NULL_HMAC_SHA1_80", (), "high"),
    ("AES_CM_128_HMAC_SHA1_80", (), None),
])
def test_weak_sdes_parameters(suite, params, severity):
    crypto = (SdpCrypto(1, suite, "ab" * 32, 30, params),)
    alerts = _run(_detector(), _sip(1.0, "10.0.0.1", "10.0.0.2", _sdp("10.0.0.1", 4000, crypto=crypto), method="INVITE"),
                  _sip(1.5, "10.0.0.2", "10.0.0.1", _sdp("10.0.0.2", 4002, crypto=crypto), status=200))
    weak = [a for a in alerts if a.name.endswith("weak_srtp")]
    assert [a.severity for a in weak] == ([severity] if severity else [])


def test_cnsa_profile_wants_aes256():
    crypto = (SdpCrypto(1, "AES_CM_128_HMAC_SHA1_80", "ab" * 32, 30),)
    records = (_sip(1.0, "10.0.0.1", "10.0.0.2", _sdp("10.0.0.1", 4000, crypto=crypto), method="INVITE"),
               _sip(1.5, "10.0.0.2", "10.0.0.1", _sdp("10.0.0.2", 4002, crypto=crypto), status=200))
    assert not [a for a in _run(_detector(), *records) if a.name.endswith("weak_srtp")]
    assert [a.severity for a in _run(_detector(require_aes256=True), *records) if a.name.endswith("weak_srtp")] == ["low"]


def _stream(entropy, codec="PCMU", pt=0, size=170.0, packets=100) -> RtpStream:
    return RtpStream("10.0.0.1", 4000, "10.0.0.2", 4002, (), 0x1234, pt, codec, packets, packets, 0, 0, 0, 0.0, 0.0,
                     20.0, 10.0, 12.0, 1, None, False, (pt,), int(size * packets), entropy)


@pytest.mark.parametrize("stream,expect", [
    (_stream(6.9, size=157.3), "clear"),        # mixed sizes defeat the length test; entropy says cleartext
    (_stream(7.97, size=157.3), "srtp"),
    (_stream(7.7, size=157.3), "unknown"),      # between the thresholds
    (_stream(6.9, codec="opus", pt=111, size=90.0), "unknown"),   # entropy says nothing about compressed codecs
    (_stream(None, size=160.0), "clear"),
    (_stream(None, size=170.0), "srtp"),
    (_stream(None, pt=13, codec="CN", size=1.0), "unknown"),
])
def test_payload_verdict(stream, expect):
    assert _detector()._payload_verdict(stream)[0] == expect


@pytest.mark.parametrize("overrides", [{"internal_media_severity": "severe"}, {"allow_cleartext_pairs": ["10.0.0.1"]},
                                       {"private_transport_peers": ["not-a-cidr"]}, {"sensitive_numbers": ["("]}])
def test_bad_configuration_is_refused(overrides):
    with pytest.raises(ConfigError):
        _detector(**overrides)


def test_hygiene_findings_track_problems_not_calls(tmp_path):
    """A generated site capture (scripts/gen_site_capture.py, its small profile: 60 phones, cleartext G.711
    calls through one PBX, registrations, OPTIONS, a scan) has one problem of each kind inside the site:
    cleartext media and cleartext SIP between internal hosts. One finding each, whose totals are the
    calls table's and the SIP table's own counts: every call with a cleartext stream, every host pair."""
    out = tmp_path / "site.pcap"
    small = ["--packets", "20000", "--phones", "60", "--calls-concurrent", "30", "--call-duration-s", "3", "8",
             "--scan-every-s", "8", "--scan-guesses", "40", "--options-every-s", "5"]
    subprocess.run([sys.executable, str(REPO / "scripts" / "gen_site_capture.py"), "-o", str(out), "--seed", "7",
                    "-q", *small], check=True, timeout=120)
    result = analyze_files([str(out)], load_settings(None))
    um = [a for a in result.alerts if a.family == FAMILY]
    assert _names(um) == [("cleartext_rtp", "medium"), ("cleartext_sip", "high")]
    rtp = next(a for a in um if a.name.endswith("cleartext_rtp"))
    streams = result.tables["rtp_streams"]
    with_media = set(streams["call_id"].dropna()) - {""}
    assert rtp.evidence["calls"] == len(with_media) > 20
    assert rtp.evidence["streams"] == len(streams) and rtp.evidence["packets"] == int(streams["packets"].sum())
    assert rtp.evidence["host_pairs"] == len({tuple(sorted(p)) for p in zip(streams["src"], streams["dst"])})
    assert len(rtp.evidence["call_ids"]) == 20                              # max_listed, the total beside it
    sip = next(a for a in um if a.name.endswith("cleartext_sip"))
    messages = result.tables["sip_messages"]
    assert sip.evidence["messages"] == len(messages)
    assert sip.evidence["host_pairs"] == len({tuple(sorted(p)) for p in zip(messages["src"], messages["dst"])})


def test_a_call_view_shows_the_roll_up_that_lists_the_call():
    """voipwatch call: a call's alerts include the cleartext roll-up whose evidence lists its Call-ID."""
    from voipwatch.call.select import select_calls
    result = analyze_files([str(SAMPLES / "um-attacks.pcap")], load_settings(None))
    view, = select_calls(result, call_id="um-clear@attacks")
    rollups = [a for a in view.alerts if a.name == f"{FAMILY}.cleartext_rtp"]
    assert [(a.severity, a.identifier) for a in rollups] == [("medium", "internal hosts <-> internal hosts")]
