"""Writes sample_captures/xv-inferred.pcap: a trunk with no site model, where the voice VLAN must be inferred.

VLAN 200 carries SIP and RTP (PBX 192.168.20.5, phones .21-.23), VLAN 300 the office (PCs 192.168.30.x
browsing and resolving), VLAN 900 the Internet. With no [zones] configured, cross_vlan infers VLAN 200
as voice from its SIP flows. Labels:
- 192.168.30.11 sends a frame double-tagged 300/200 before any SIP was seen (reported once VLAN 200 is
  inferred), and a QinQ frame 300/301 whose inner VLAN is not voice (not reported);
- 192.168.30.13 sends a frame double-tagged 300/200 after inference;
- 192.168.30.12, browsing on VLAN 300, sends a CDP VoIP VLAN Query claiming to be a phone;
- phone 192.168.20.23 sends the same CDP query untagged (a real phone at boot: not reported).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pcapgen import PcapWriter  # noqa: E402
from xv_attacks import XvSite, call, cdp_frame, dns_answer, dns_query, host_mac, register  # noqa: E402

T0 = 1_700_200_000.0
VOICE, OFFICE, INTERNET = 200, 300, 900
PBX, PHONES = "192.168.20.5", ("192.168.20.21", "192.168.20.22", "192.168.20.23")
PCS, RESOLVER, WEB = ("192.168.30.11", "192.168.30.12", "192.168.30.13"), "192.168.30.53", "93.184.216.34"


def vlan_for(ip: str) -> int:
    return {"192.168.20": VOICE, "192.168.30": OFFICE}.get(ip.rsplit(".", 1)[0], INTERNET)


def build() -> PcapWriter:
    site = XvSite(vlan_for)
    site.udp(T0 + 0.5, PCS[0], 40000, PHONES[0], 9, b"\x00hop", vlans=(OFFICE, VOICE))
    site.udp(T0 + 0.6, PCS[0], 40001, "192.168.31.1", 9, b"\x00qinq", vlans=(OFFICE, 301))
    for i, pc in enumerate(PCS):
        ts = T0 + 1 + i * 0.5
        site.udp(ts, pc, 41000 + i, RESOLVER, 53, dns_query(0x300 + i, "www.example.com"))
        site.udp(ts + 0.01, RESOLVER, 53, pc, 41000 + i, dns_answer(0x300 + i, "www.example.com", WEB))
        site.handshake(ts + 0.1, pc, 42000 + i, WEB, 443)
    for i, phone in enumerate(PHONES):
        register(site, T0 + 3 + i, phone, f"20{21 + i}", PBX)
    call(site, T0 + 7, PHONES[0], PHONES[1], PBX, "inferred-call@xv", 30000, 30002, rtp_packets=50)
    site.l2(T0 + 10, host_mac(PHONES[2]), cdp_frame("SEP0200C0A81417", 0x90, "Cisco IP Phone 7960", True))
    site.l2(T0 + 11, host_mac(PCS[1]), cdp_frame("SEP0200C0A81E0C", 0x90, "Cisco IP Phone 7940", True), (OFFICE,))
    site.udp(T0 + 12, PCS[2], 40002, PHONES[1], 9, b"\x00hop", vlans=(OFFICE, VOICE))
    return site.pcap


if __name__ == "__main__":
    build().save(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "xv-inferred.pcap"))
