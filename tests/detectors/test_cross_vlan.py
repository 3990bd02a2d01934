"""cross_vlan on real captures (VLAN/QinQ traces, CDP from switches, ordinary calls), with and without a site
model, and on hand-built records for what no public capture shows (refused flows, NAT, inference votes)."""
from __future__ import annotations

from pathlib import Path

import pytest

from detectors.cross_vlan import Config, CrossVlan, _asks_voice_vlan
from voipwatch.analyze import analyze_files
from voipwatch.records import FlowSeen, HostSeen, L2Neighbor, PacketMeta, RtpStream, SdpMedia, SdpSession, SipMessage
from voipwatch.config import load_settings
from voipwatch.site import Site

FAMILY = "cross_vlan"
VLAN_CAPTURES = ("ndpi/pcap/stun.pcap", "sipnab/SIP_CALL_RTP_G711", "zeek/Traces/vlan-collisions.pcap",
                 "snort3_demo/codecs/vlan/double_tagging_0x88A8_0x8100.pcap", "tcpdump/802.1ad_QinQ.pcap",
                 "ipfixprobe/inputs/vlan.pcap")
BENIGN_CALLS = ("sipnab/sip-rtp-g711.pcap", "sipnab/SIP_CALL_RTP_G711", "sipnab/codec-negotiation.pcap",
                "sipnab/register-invite-reinvite-bye.pcap", "sipnab/rtp-protocol.pcap", "sipnab/sip-over-tcp.pcap",
                "sipnab/Asterisk_ZFONE_XLITE.pcap", "voipshark/SIP-RTP-Normal_Call_two_parties.pcap")


def _run(path: Path, config: str | None = None, tmp_path: Path | None = None, mode: str = "batch"):
    site_file = None
    if config is not None:
        site_file = tmp_path / "site.toml"
        site_file.write_text(config, encoding="utf-8")
    settings = load_settings(str(site_file) if site_file else None)
    result = analyze_files([str(path)], settings, mode=mode)
    return [a for a in result.alerts if a.family == FAMILY], settings


@pytest.mark.parametrize("capture", VLAN_CAPTURES)
def test_vlan_captures_raise_nothing_without_a_site_model(public_captures, capture):
    """With no site model only voice-VLAN inference could give a zone, and none of these VLANs carries SIP or
    RTP (stun.pcap's VLAN 1611 carries STUN over TCP; the rest carry DNS, TCP or nothing IP): no voice VLAN is
    inferred, so the QinQ stacks 10/20, 1/2, 200/2001 are not hops. SIP_CALL_RTP_G711's 9 CDP frames come from
    a Catalyst 1900 (switch capabilities, no VoIP VLAN Query)."""
    alerts, settings = _run(public_captures / capture)
    assert alerts == []
    assert settings.site.inferred_voice_vlans == frozenset()


@pytest.mark.parametrize("capture", BENIGN_CALLS)
def test_benign_calls_raise_nothing_above_low(public_captures, capture):
    """Ordinary calls: every RTP stream's peers are in its call's SDP or signalling, no VLANs, no site model."""
    alerts, _ = _run(public_captures / capture)
    assert [a for a in alerts if a.severity not in ("info", "low")] == []


def test_catalyst_cdp_is_a_network_device(public_captures):
    result = analyze_files([str(public_captures / "sipnab/SIP_CALL_RTP_G711")], load_settings(None), mode="stream")
    claims = result.records[L2Neighbor]
    assert len(claims) == 9
    assert all(c.network_device and not _asks_voice_vlan(c) and c.phone is False for c in claims)
    assert {c.platform for c in claims} == {"cisco 1900"}


@pytest.mark.parametrize("capture,voice,outer,macs", [
    ("snort3_demo/codecs/vlan/double_tagging_0x88A8_0x8100.pcap", 2, 1, {"d4:ae:52:89:ba:fa"}),
    ("tcpdump/802.1ad_QinQ.pcap", 2001, 200, {"00:20:d2:5a:fb:3f", "00:80:ea:81:88:63"}),
    ("zeek/Traces/vlan-collisions.pcap", 20, 10, {"c8:bc:c8:96:d2:a0", "00:10:db:88:d2:ef"}),
])
def test_double_tags_into_a_declared_voice_vlan(public_captures, tmp_path, capture, voice, outer, macs):
    """Declaring the inner VLAN as voice turns each QinQ sender into a double-tag hop (one alert per MAC);
    declaring the outer tag a provider trunk (qinq_outer_vlans) silences it. The double-tagged copies in
    vlan-collisions (also seen on VLAN 42, declared data) are not counted as the hosts' own VLANs, until the
    outer tag is declared a trunk: then both hosts are on voice VLAN 20 and data VLAN 42 (XV-13)."""
    config = f"[zones.voice]\nvlans = [{voice}]\n[zones.data]\nvlans = [42]\n"
    alerts, _ = _run(public_captures / capture, config, tmp_path)
    assert [(a.name, a.severity, a.check) for a in alerts] == [(f"{FAMILY}.vlan_hopping", "critical", "XV-12")] * len(macs)
    assert {a.evidence["mac"] for a in alerts} == macs
    assert all(a.evidence["indicator"] == "double_tag" and a.evidence["outer_vlan"] == outer
               and a.evidence["inner_vlan"] == voice for a in alerts)
    trunk = config + f"[detectors.cross_vlan]\nqinq_outer_vlans = [{outer}]\n"
    alerts, _ = _run(public_captures / capture, trunk, tmp_path)
    dual = len(macs) if "collisions" in capture else 0
    assert [(a.name, a.severity) for a in alerts] == [(f"{FAMILY}.dual_role_host", "medium")] * dual


def test_same_hosts_on_voice_and_data_vlans(public_captures, tmp_path):
    """ipfixprobe vlan.pcap replays one DNS exchange untagged, on VLAN 123 and on VLAN 150: with 123 = voice and
    150 = data, both hosts are dual-role (XV-13) and the resolver, declared a data DNS server, answered a voice
    client (XV-05); in both paths alike. The VLAN 150 frames are copies of the untagged ones (same time, IP id,
    MACs and TTL): read as a SPAN (deduplicate, the default) they are dropped, and only XV-05 remains."""
    config = ("[zones.voice]\nvlans = [123]\n[zones.data]\nvlans = [150]\n"
              "[roles]\ndns_data = [\"192.168.170.20\"]\n")
    span, settings = _run(public_captures / "ipfixprobe/inputs/vlan.pcap", config, tmp_path)
    assert [(a.name, a.evidence["client_zone"]) for a in span] == [(f"{FAMILY}.shared_infrastructure_service", "voice")]
    config += "[pipeline]\ndeduplicate = false\n"
    path = public_captures / "ipfixprobe/inputs/vlan.pcap"
    alerts, _ = _run(path, config, tmp_path)
    assert sorted((a.name, a.severity) for a in alerts) == [
        (f"{FAMILY}.dual_role_host", "medium"), (f"{FAMILY}.dual_role_host", "medium"),
        (f"{FAMILY}.shared_infrastructure_service", "medium")]
    dual = {a.evidence["host"]: a.evidence for a in alerts if a.name.endswith("dual_role_host")}
    assert dual["00:c0:9f:32:41:8c"]["ips"] == ["192.168.170.20"]
    assert dual["00:c0:9f:32:41:8c"]["voice_vlan"] == [123] and dual["00:c0:9f:32:41:8c"]["data_vlan"] == [150]
    shared = next(a for a in alerts if a.name.endswith("shared_infrastructure_service"))
    assert (shared.evidence["service"], shared.evidence["client"], shared.evidence["client_zone"],
            shared.evidence["qname"]) == ("dns", "192.168.170.8", "voice", "google.com")
    stream, _ = _run(path, config, tmp_path, mode="stream")
    assert [(a.name, a.identifier, a.ts) for a in stream] == [(a.name, a.identifier, a.ts) for a in alerts]


# -- hand-built records ----------------------------------------------------------------------
SITE = {"zones": {"voice": {"vlans": [100], "cidrs": ["10.20.0.0/16"]}, "data": {"vlans": [10], "cidrs": ["10.10.0.0/16"]}},
        "roles": {"esc": ["10.20.0.5"], "sbc": ["10.50.0.10"]}}


def _detector(tree: dict = SITE, **config) -> CrossVlan:
    return CrossVlan(Config(**config), Site(tree))


def _meta(ts, src, sport, dst, dport, vlan=(), transport="udp", frame=1):
    return PacketMeta(ts, frame, vlan, src, sport, dst, dport, transport)


def _feed(det: CrossVlan, records) -> list:
    out = []
    for record in records:
        handler = {FlowSeen: det.on_flow_seen, HostSeen: det.on_host_seen, SipMessage: det.on_sip_message,
                   RtpStream: det.on_rtp_stream}[type(record)]
        out += list(handler(record) or ())
    return out + list(det.finish())


def test_refused_flow_is_medium_and_names_the_initiator():
    """A SYN answered by RST reached the voice host but was refused: medium, outcome refused."""
    det = _detector()
    alerts = _feed(det, [FlowSeen(_meta(1.0, "10.10.0.9", 4000, "10.20.0.9", 23, (10,), "tcp"), "tcp.control", False, tcp_flags=0x02),
                         FlowSeen(_meta(1.1, "10.20.0.9", 23, "10.10.0.9", 4000, (10,), "tcp"), "tcp.control", True, tcp_flags=0x14)])
    assert [(a.name, a.severity, a.src, a.evidence["outcome"]) for a in alerts] == [
        (f"{FAMILY}.direct_data_voice_flow", "medium", "10.10.0.9", "refused")]


def _sip(ts, src, dst, call_id, request, addr, port):
    sdp = SdpSession(None, addr, addr, (SdpMedia("audio", port, "RTP/AVP", ("0",)),))
    return SipMessage(_meta(ts, src, 5060, dst, 5060), request, "INVITE" if request else None, None, None,
                      None if request else 200, None, call_id, 1, "INVITE", None, None, None, None, None, None, sdp=sdp)


def _stream(src, dst, call_id, packets=50):
    return RtpStream(src, 4000, dst, 4002, (), 0x1234, 0, "PCMU", packets, packets, 0, 0, 0, 0.0, 0.0, 20.0,
                     10.0, 11.0, 9, call_id, True)


def test_nat_and_announced_peers_are_not_unannounced():
    """Media from the NAT address that signalled (SDP said 192.168.1.20) is fine; a third address is not,
    and a call whose answer SDP was never seen is not judged."""
    det = _detector()
    records = [_sip(1.0, "198.51.100.200", "10.50.0.10", "c1", True, "192.168.1.20", 4000),
               _sip(1.5, "10.50.0.10", "198.51.100.200", "c1", False, "10.50.0.10", 4002),
               _stream("198.51.100.200", "10.50.0.10", "c1"), _stream("203.0.113.9", "10.50.0.10", "c1"),
               _sip(2.0, "10.20.0.41", "10.20.0.5", "c2", True, "10.20.0.41", 4000),
               _stream("203.0.113.9", "10.20.0.41", "c2")]
    alerts = [a for a in _feed(det, records) if a.name.endswith("unannounced_media_peer")]
    assert [(a.call_id, a.evidence["peer"], a.evidence["side"]) for a in alerts] == [("c1", "203.0.113.9", "source")]


def test_inference_needs_sip_to_dominate():
    """A VLAN with 4 SIP flow directions but 5 other flows is not voice; one more SIP flow tips it (5 >= 0.5 x 10)."""
    site = Site({})
    det = CrossVlan(Config(), site)
    other = [FlowSeen(_meta(1.0 + i, "192.168.5.9", 40000 + i, "192.168.5.1", 80, (5,), "tcp"), "tcp.control", False)
             for i in range(5)]
    sip = [FlowSeen(_meta(10.0 + i, "192.168.5.20", 5060, "192.168.5.1", 5060 + i, (5,)), "sip", False)
           for i in range(5)]
    _feed(det, other + sip[:4])
    assert site.inferred_voice_vlans == frozenset()
    _feed(det, sip[4:])
    assert site.inferred_voice_vlans == frozenset({5})


def test_idle_reasons_name_what_is_missing():
    reasons = " ".join(CrossVlan(Config(), Site({})).idle_reasons())
    assert "[zones.data]" in reasons and "roles.pstn_gw" in reasons and "roles.sbc" in reasons
    assert _detector({"zones": SITE["zones"], "roles": {"esc": ["10.20.0.5"], "sbc": ["10.50.0.10"],
                                                        "pstn_gw": ["10.50.0.20"]}}).idle_reasons() == []


def test_inference_starts_afresh_on_a_reused_site():
    """One Settings (one Site) for two runs: the second run infers VLAN 200 again, in the same order."""
    settings = load_settings(None)
    capture = str(Path(__file__).resolve().parents[2] / "sample_captures" / "xv-inferred.pcap")
    runs = [[(a.name, a.identifier, a.ts) for a in analyze_files([capture], settings, mode=mode).alerts
             if a.family == FAMILY] for mode in ("batch", "stream")]
    assert runs[0] == runs[1] and len(runs[0]) == 3
