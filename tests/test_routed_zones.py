"""Zones of routed traffic and ICMP answers, on span-routed.pcap (the lab's router between VLANs 20 and 110,
attackers at 203.0.113.x behind it): a frame the router sends carries the destination's VLAN, so it gives
no zone to the address it carries (voipwatch.places); an ICMP error quoting a flow answers it (XV-03)."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

from voipwatch.analyze import analyze_files
from voipwatch.capture import read_capture
from voipwatch.config import load_settings
from voipwatch.records import HostSeen
from voipwatch.site import Site

SAMPLES = Path(__file__).resolve().parents[1] / "sample_captures"
sys.path.insert(0, str(SAMPLES / "generators"))
from pcapgen import PcapWriter  # noqa: E402
from span_routed import ROUTER, mac_for  # noqa: E402

CAPTURE = SAMPLES / "span-routed.pcap"
CONFIG = SAMPLES / "configs" / "span_routed.toml"
VOICE_LEG = ":".join(f"{b:02x}" for b in mac_for(ROUTER[110]))
# Zones by VLAN only, as a site that tags everything may declare them: the VLAN is then the only clue.
VLAN_ONLY = '[zones.voice]\nvlans = [110]\n[zones.data]\nvlans = [20]\n[roles]\nesc = ["10.110.0.10"]\n'


def _alerts(name: str, path: Path = CAPTURE, config: Path = CONFIG, mode: str = "batch"):
    settings = load_settings(str(config))
    result = analyze_files([str(path)], settings, mode=mode)
    return [a for a in result.alerts if a.name == name], settings


@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_a_public_attacker_behind_the_router_is_not_in_the_voice_zone(mode):
    """203.0.113.68's REGISTER reaches the proxy on VLAN 110 from the router's MAC: RF-07 used to say "zone
    voice"; a public address takes a zone from the CIDRs only, and none holds it."""
    alerts, settings = _alerts("registration_flood.binding_hijack", mode=mode)
    assert [(a.src, a.severity, a.evidence["new_zone"], a.evidence["public_source"]) for a in alerts] == [
        ("203.0.113.68", "high", None, True)]
    assert "zone voice" not in alerts[0].msg
    assert settings.site.zone_of("203.0.113.68", (110,)) is None
    assert settings.site.zone_of("10.110.0.11", (20,)) == "voice"        # its own MAC sent it on VLAN 110


@pytest.fixture(scope="module")
def voice_only(tmp_path_factory) -> Path:
    """The same SPAN with only VLAN 110 mirrored: the data hosts' packets are seen only as the router sends
    them onto the voice VLAN."""
    pcap = PcapWriter()
    for frame in read_capture(str(CAPTURE)):
        if struct.unpack_from("!HH", frame.data, 12) == (0x8100, 110):
            pcap.add(frame.ts, frame.data)
    path = tmp_path_factory.mktemp("voice-only") / "voice-only.pcap"
    pcap.save(path)
    return path


@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_routed_data_hosts_do_not_become_phones(voice_only, tmp_path, mode):
    """On the voice VLAN alone, 10.20.0.20's SNMP probe of phone 10.110.0.11 arrives from the router's MAC.
    The router's voice leg sourced a public address (the scanner) before it: it is learned as a gateway, so
    10.20.0.20 takes no zone from VLAN 110 (before: "Phone 10.20.0.20 opened udp/161 ... to 10.110.0.11 (phone)",
    XV-04),
    and the scanner is not placed either."""
    config = tmp_path / "site.toml"
    config.write_text(VLAN_ONLY)
    settings = load_settings(str(config))
    result = analyze_files([str(voice_only)], settings, mode=mode)
    assert result.summary["frames_by_class"].get("duplicates") is None       # one copy of each packet here
    assert [a for a in result.alerts if a.name == "cross_vlan.unneeded_server_contact"] == []
    assert settings.site.places.learned == {VOICE_LEG}
    assert settings.site.zone_of("10.20.0.20", (110,)) is None
    assert settings.site.zone_of("10.110.0.11", (110,)) == "voice"


def _host(ts, mac, ip, vlan=(110,)):
    return HostSeen(ts, int(ts), vlan, mac, ip)


def test_a_mac_sourcing_many_addresses_is_a_router():
    """More than gateway_min_sources IPv4 sources behind one MAC: a router. What it placed is withdrawn;
    the host's own MAC still places an address; declared gateways place nothing from the start."""
    site = Site({"zones": {"voice": {"vlans": [110]}, "data": {"vlans": [20]}},
                 "site": {"gateway_min_sources": 3}, "roles": {"gateway_macs": ["02:00:00:00:00:FE"]}})
    places = site.places
    for n in range(3):
        places.observe(_host(n, "06:76:00:00:00:01", f"10.20.0.{n + 1}"))
    assert site.zone_of("10.20.0.1", (110,)) == "voice"       # three sources: still taken for a host's
    places.observe(_host(4, "06:76:00:00:00:01", "10.20.0.9"))
    assert places.learned == {"06:76:00:00:00:01"}
    assert site.zone_of("10.20.0.1", (110,)) is None and places.only_routed("10.20.0.1")
    places.observe(_host(5, "02:00:0a:14:00:01", "10.20.0.1", (20,)))
    assert site.zone_of("10.20.0.1", (110,)) == "data"
    places.observe(_host(6, "02-00-00-00-00-fe", "10.20.0.77"))
    assert site.zone_of("10.20.0.77", (110,)) is None
    places.observe(_host(7, "02:00:0a:14:00:4d", "10.20.0.78", (10, 110)))   # double-tagged: injected
    assert site.zone_of("10.20.0.78", (110,)) is None


def test_internal_and_public_sources_make_a_router():
    site = Site({"zones": {"voice": {"vlans": [110]}}})
    site.places.observe(_host(1, "06:76:0a:6e:00:01", "10.20.0.20"))
    assert site.zone_of("10.20.0.20", (110,)) == "voice"
    site.places.observe(_host(2, "06:76:0a:6e:00:01", "198.51.100.9"))
    assert site.zone_of("10.20.0.20", (110,)) is None
    assert site.zone_of("198.51.100.9", (110,)) is None


@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_icmp_errors_answer_xv03(mode):
    """10.20.0.20's SNMP to phone 10.110.0.11 is answered by ICMP port unreachable from the phone (refused: the
    phone is reachable from the data zone); its SNMP to absent 10.110.0.99 by the router's host unreachable
    (blocked on the way). Neither is "unanswered"."""
    alerts, _ = _alerts("cross_vlan.direct_data_voice_flow", mode=mode)
    got = {(a.src, a.dst, a.dport, a.severity, a.evidence["outcome"], a.evidence["target_reachable"],
            a.evidence["answer"]["kind"], a.evidence["answer"]["meaning"], a.evidence["answer"]["from"],
            a.evidence["answer"]["from_target"]) for a in alerts}
    assert got == {
        ("10.20.0.20", "10.110.0.11", 161, "medium", "refused", True, "icmp", "port unreachable", "10.110.0.11", True),
        ("10.20.0.20", "10.110.0.99", 161, "medium", "blocked", False, "icmp", "host unreachable", "10.20.0.1",
         False)}
    refused = next(a for a in alerts if a.evidence["outcome"] == "refused")
    assert refused.evidence["vlan_path"] == "20->110"
    assert "10.110.0.11 answered ICMP port unreachable" in refused.msg
