"""Writes sample_captures/xv-benign.pcap: the xv-attacks site behaving well, full of false-positive traps.

Same site and config (sample_captures/configs/cross_vlan.toml). Labels: nothing here may raise a
cross_vlan alert.
- Phones 10.20.0.41-.43 get DHCP from the voice DHCP server, time from the voice NTP server, names from the
  voice resolver, config by TFTP from the provisioning server, REGISTER with the ESC, and .41 calls .42 via
  the ESC with RTP between the phones (SDP-negotiated media peers).
- The router MAC (...:fe, roles.gateway_macs) forwards between every VLAN (its frames carry other hosts'
  addresses on VLANs 10, 50, 100 and 900).
- PC 10.10.0.50 asks the data resolver, browses the Internet and reaches the ESC's web directory through the
  application-layer firewall (...:fd, firewall_macs).
- Phone .43 sends paging audio setup to multicast 239.1.1.1 (allowed_destinations).
- The voicemail server, one NIC in both VLANs (10.10.0.30 and 10.20.0.30), is in roles.dual_role_dmz.
- The ESC sends an INVITE to the PSTN gateway (allowed); the SBC trunks to the carrier 203.0.113.10 (allowed).
- Remote phone 198.51.100.200 (in roles.remote_vpn_pool) registers with the SBC and calls; its SDP says
  c=192.168.1.20 (behind NAT) and its RTP comes from its public address, the one that signalled.
- Phone .41 (a Cisco phone) sends CDP with the phone capability and a VoIP VLAN Query untagged (native VLAN);
  the access switch sends LLDP-MED as a network connectivity device.
- The provider trunk carries QinQ frames with outer tag 4000 (qinq_outer_vlans) around the voice VLAN.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pcapgen import PcapWriter, mac  # noqa: E402
from xv_attacks import (DHCP_VOICE, DNS_DATA, DNS_VOICE, ESC, FIREWALL_MAC, GW, NTP_VOICE, PROV, SBC, T0, VOICE,  # noqa: E402
                        XvSite, call, cdp_frame, dhcp_offer, dns_answer, dns_query, host_mac, lldp_frame, ntp,
                        register)

PHONES = ("10.20.0.41", "10.20.0.42", "10.20.0.43")
PC, REMOTE = "10.10.0.50", "198.51.100.200"


def phones_boot(site: XvSite, t: float) -> None:
    site.l2(t, host_mac(PHONES[0]), cdp_frame("SEP020000000A29", 0x90, "Cisco IP Phone 7940", True))
    for i, phone in enumerate(PHONES):
        ts = t + 0.5 + i
        site.udp(ts, DHCP_VOICE, 67, phone, 68, dhcp_offer(phone, DHCP_VOICE))
        site.udp(ts + 0.1, phone, 123, NTP_VOICE, 123, ntp(3))
        site.udp(ts + 0.11, NTP_VOICE, 123, phone, 123, ntp(4))
        site.udp(ts + 0.2, phone, 33000 + i, DNS_VOICE, 53, dns_query(0x100 + i, "pbx.example.com"))
        site.udp(ts + 0.21, DNS_VOICE, 53, phone, 33000 + i, dns_answer(0x100 + i, "pbx.example.com", ESC))
        site.udp(ts + 0.3, phone, 34000 + i, PROV, 69, b"\x00\x01SEPconfig.xml\x00octet\x00")
        register(site, ts + 0.4, phone, f"10{41 + i}", ESC)


def office(site: XvSite, t: float) -> None:
    site.udp(t, PC, 35000, DNS_DATA, 53, dns_query(0x500, "www.example.com"))
    site.udp(t + 0.01, DNS_DATA, 53, PC, 35000, dns_answer(0x500, "www.example.com", "93.184.216.34"))
    site.handshake(t + 0.1, PC, 35001, "93.184.216.34", 443)
    site.handshake(t + 0.5, PC, 35002, ESC, 443, via=FIREWALL_MAC)
    nic = mac(0x30)
    site.udp(t + 1, "10.10.0.30", 35003, DNS_DATA, 53, dns_query(0x501, "mail.example.com"), src_mac=nic)
    site.udp(t + 1.5, "10.20.0.30", 123, NTP_VOICE, 123, ntp(3), src_mac=nic)
    site.udp(t + 2, PHONES[2], 5004, "239.1.1.1", 5004, b"\x00paging", vlans=(VOICE,))


def trunks(site: XvSite, t: float) -> None:
    call(site, t, ESC, GW, GW, "esc-to-gw@xv", 36000, 36002, rtp_packets=0)
    call(site, t + 1, SBC, "203.0.113.10", "203.0.113.10", "sbc-trunk@xv", 36010, 36012, rtp_packets=0)
    register(site, t + 2, REMOTE, "7200", SBC)
    call(site, t + 3, REMOTE, SBC, SBC, "remote@xv", 36020, 36022, rtp_packets=20, media_ip="192.168.1.20")
    site.l2(t + 4, mac(0xA1), lldp_frame(0x0014, 4), (VOICE,))
    site.udp(t + 5, "10.20.0.42", 123, NTP_VOICE, 123, ntp(3), vlans=(4000, VOICE))


def build() -> PcapWriter:
    site = XvSite()
    phones_boot(site, T0 + 1)
    call(site, T0 + 5, PHONES[0], PHONES[1], ESC, "phone-call@xv", 31000, 31002, rtp_packets=50)
    office(site, T0 + 8)
    trunks(site, T0 + 11)
    return site.pcap


if __name__ == "__main__":
    build().save(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "xv-benign.pcap"))
