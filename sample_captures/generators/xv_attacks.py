"""Writes sample_captures/xv-attacks.pcap: separation failures on a VLAN trunk, each from its own source.

The site (sample_captures/configs/cross_vlan.toml): voice VLAN 100 = 10.20.0.0/16 (ESC 10.20.0.5, voice
DNS/NTP/DHCP/provisioning), data VLAN 10 = 10.10.0.0/16 (data DNS/NTP/DHCP), UC DMZ VLAN 50 = 10.50.0.0/24
(SBC .10, PSTN gateway .20), the Internet on VLAN 900. The sensor sees the router trunk: a packet between
VLANs appears twice, on the sender's VLAN (to the router MAC ...:fe) and on the receiver's (from it).
Labels (one scenario per source, in time order):
- 10.10.0.31 (data) is a softphone: REGISTERs with the ESC and calls phone 10.20.0.41 with direct RTP (XV-01).
- 10.10.0.32 opens TCP/80 on phone 10.20.0.41 and gets a SYN-ACK (XV-03 answered, high).
- 10.10.0.33 sends SNMP to phone 10.20.0.41, never answered (XV-03 unanswered, medium).
- phone 10.20.0.42 opens SSH on phone 10.20.0.43, answered (XV-04 phone-to-phone).
- call xv-inject between phones .44 and .45 via the ESC; 10.20.0.66 injects 25 RTP packets into .44's
  announced port (XV-04 unannounced media peer, rtpinject style).
- phone 10.20.0.46 offers SDP with c=10.10.0.77, a data address (media_zone_mismatch).
- phone 10.20.0.47 is answered by the data DNS server; 10.10.0.34 by the voice NTP server; the data DHCP
  server answers voice client 10.20.0.90 (XV-05 dns, ntp, dhcp).
- phone 10.20.0.48 sends an INVITE straight to the PSTN gateway (XV-06).
- phone 10.20.0.49 calls public 203.0.113.50 directly; public 198.51.100.7 REGISTERs with the SBC (XV-07).
- 10.10.0.35 sends a frame double-tagged 10/100 to a phone (XV-12 double tag).
- 10.10.0.36 (browsing on VLAN 10) sends a CDP VoIP VLAN Query claiming to be a phone; 02:00:00:00:0b:26
  sends LLDP-MED as a class I endpoint without telephone capability (XV-12 voice VLAN discovery).
- one NIC (02:00:00:00:00:37) is 10.10.0.37 on VLAN 10 and 10.20.0.37 on VLAN 100 (XV-13).
"""
from __future__ import annotations

import ipaddress
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pcapgen import ETH_IPV4, PcapWriter, ethernet, ipv4, mac, rtp, sdp_body, sip_message, tcp, udp  # noqa: E402

T0 = 1_700_100_000.0
VOICE, DATA, DMZ, OUTSIDE = 100, 10, 50, 900
ROUTER_MAC, FIREWALL_MAC = mac(0xFE), mac(0xFD)
ESC, SBC, GW = "10.20.0.5", "10.50.0.10", "10.50.0.20"
DNS_VOICE, DNS_DATA, NTP_VOICE, NTP_DATA = "10.20.0.53", "10.10.0.53", "10.20.0.123", "10.10.0.123"
DHCP_VOICE, DHCP_DATA, PROV = "10.20.0.67", "10.10.0.67", "10.20.0.69"
TCP_SYN, TCP_SYNACK, TCP_ACK_PSH = 0x02, 0x12, 0x18
CDP_MAC, LLDP_MAC = bytes.fromhex("01000ccccccc"), bytes.fromhex("0180c200000e")


def host_mac(ip: str) -> bytes:
    """Each host's own MAC: 02:00 followed by its IPv4 address, so captures read easily."""
    return b"\x02\x00" + ipaddress.IPv4Address(ip).packed


def vlan_of(ip: str) -> int:
    return {"10.10": DATA, "10.20": VOICE, "10.50": DMZ}.get(ip.rsplit(".", 2)[0], OUTSIDE)


class XvSite:
    """A routed trunk: same-VLAN packets appear once, inter-VLAN packets on both VLANs via `via`."""

    def __init__(self, vlan_for=vlan_of):
        self.pcap = PcapWriter()
        self.ident = 0
        self.vlan_for = vlan_for

    def ip(self, ts, src, dst, proto, l4, via=ROUTER_MAC, vlans=None, src_mac=None):
        self.ident += 1
        packet = ipv4(src, dst, proto, l4, ident=self.ident & 0xFFFF)
        smac = src_mac or host_mac(src)
        if vlans is not None:
            self.pcap.add(ts, ethernet(packet, ETH_IPV4, smac, host_mac(dst), vlans))
        elif self.vlan_for(src) == self.vlan_for(dst):
            self.pcap.add(ts, ethernet(packet, ETH_IPV4, smac, host_mac(dst), (self.vlan_for(src),)))
        else:
            self.pcap.add(ts, ethernet(packet, ETH_IPV4, smac, via, (self.vlan_for(src),)))
            self.pcap.add(ts + 0.0002, ethernet(packet, ETH_IPV4, via, host_mac(dst), (self.vlan_for(dst),)))

    def udp(self, ts, src, sport, dst, dport, payload, **kw):
        self.ip(ts, src, dst, 17, udp(src, sport, dst, dport, payload), **kw)

    def tcp(self, ts, src, sport, dst, dport, flags, seq=1000, ack=0, payload=b"", **kw):
        self.ip(ts, src, dst, 6, tcp(src, sport, dst, dport, seq, ack, flags, payload), **kw)

    def handshake(self, ts, client, cport, server, sport, answered=True, **kw):
        self.tcp(ts, client, cport, server, sport, TCP_SYN, **kw)
        if answered:
            self.tcp(ts + 0.001, server, sport, client, cport, TCP_SYNACK, 5000, 1001, **kw)

    def rtp(self, ts, src, sport, dst, dport, ssrc, count, pt=0, gap=0.02):
        for i in range(count):
            self.udp(ts + i * gap, src, sport, dst, dport, rtp(i, i * 160, ssrc, pt, bytes([0xFF]) * 160, i == 0))

    def l2(self, ts, src_mac, frame_body, vlans=()):
        self.pcap.add(ts, frame_body(src_mac, vlans))


# -- SIP ------------------------------------------------------------------------------------
def headers(src, user, to_user, call_id, cseq, method, host="pbx.example.com"):
    return [("Via", f"SIP/2.0/UDP {src}:5060;branch=z9hG4bK{abs(hash_str(call_id + method + str(cseq))):x}"),
            ("Max-Forwards", "70"), ("From", f"<sip:{user}@{host}>;tag=t{user}"), ("To", f"<sip:{to_user}@{host}>"),
            ("Call-ID", call_id), ("CSeq", f"{cseq} {method}"), ("Contact", f"<sip:{user}@{src}:5060>"),
            ("User-Agent", "XvPhone/1.0")]


def hash_str(text: str) -> int:
    """A stable 32-bit FNV-1a hash (Python's hash() is salted per process)."""
    value = 0x811C9DC5
    for byte in text.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def response(request_headers, status, body="", to_tag="callee"):
    keep = [(n, v if n != "To" else f"{v};tag={to_tag}") for n, v in request_headers
            if n in ("Via", "From", "To", "Call-ID", "CSeq")]
    return sip_message(f"SIP/2.0 {status}", keep + [("Server", "XvPBX/1.0")], body)


def register(site, ts, phone, user, registrar, answered=True):
    hdrs = headers(phone, user, user, f"reg-{user}@xv", 1, "REGISTER") + [("Expires", "3600")]
    site.udp(ts, phone, 5060, registrar, 5060, sip_message(f"REGISTER sip:{registrar} SIP/2.0", hdrs))
    if answered:
        site.udp(ts + 0.01, registrar, 5060, phone, 5060, response(hdrs, "200 OK"))


def call(site, ts, caller, callee, proxy, call_id, caller_port, callee_port, rtp_packets=50, media_ip=None,
         status="200 OK"):
    """caller -> proxy INVITE (SDP), proxy -> caller answer with the callee's SDP, ACK, RTP both ways."""
    hdrs = headers(caller, caller.rsplit(".", 1)[1], "callee", call_id, 1, "INVITE")
    offer = sdp_body(caller, media_ip or caller, caller_port, session_id=hash_str(call_id) & 0xFFFF)
    site.udp(ts, caller, 5060, proxy, 5060, sip_message(f"INVITE sip:callee@{proxy} SIP/2.0", hdrs, offer))
    site.udp(ts + 0.01, proxy, 5060, caller, 5060, response(hdrs, "100 Trying"))
    if not status.startswith("200"):
        site.udp(ts + 0.3, proxy, 5060, caller, 5060, response(hdrs, status))
        return
    answer = sdp_body(callee, callee, callee_port, session_id=(hash_str(call_id) >> 16) & 0xFFFF)
    site.udp(ts + 0.5, proxy, 5060, caller, 5060, response(hdrs, status, answer))
    ack = [(n, v if n != "CSeq" else "1 ACK") for n, v in hdrs]
    site.udp(ts + 0.52, caller, 5060, proxy, 5060, sip_message(f"ACK sip:callee@{callee} SIP/2.0", ack))
    if rtp_packets:
        site.rtp(ts + 0.6, caller, caller_port, callee, callee_port, hash_str(call_id + "a"), rtp_packets)
        site.rtp(ts + 0.61, callee, callee_port, caller, caller_port, hash_str(call_id + "b"), rtp_packets)


# -- other protocols ------------------------------------------------------------------------
def dns_query(qid: int, name: str) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", 1, 1)


def dns_answer(qid: int, name: str, addr: str) -> bytes:
    q = dns_query(qid, name)
    rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + ipaddress.IPv4Address(addr).packed
    return struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + q[12:] + rr


def ntp(mode: int) -> bytes:
    """RFC 5905 §7.3 header: LI 0, version 4, mode 3 (client) or 4 (server), rest zero."""
    return bytes([(4 << 3) | mode]) + bytes(47)


def dhcp_offer(yiaddr: str, server: str) -> bytes:
    """RFC 2131 §2 BOOTREPLY (op 2) with the magic cookie, DHCPOFFER (option 53 = 2) and server id (54)."""
    fixed = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 2, 1, 6, 0, 0x1234, 0, 0, bytes(4),
                        ipaddress.IPv4Address(yiaddr).packed, ipaddress.IPv4Address(server).packed, bytes(4),
                        bytes(16), bytes(64), bytes(128))
    return fixed + b"\x63\x82\x53\x63" + b"\x35\x01\x02" + b"\x36\x04" + ipaddress.IPv4Address(server).packed + b"\xff"


def cdp_frame(device: str, caps: int, platform: str, query: bool):
    """CDP v2 (LLC/SNAP, OUI 00000c, PID 0x2000) with device id, capabilities, platform, VoIP VLAN Query."""
    def tlv(kind: int, value: bytes) -> bytes:
        return struct.pack("!HH", kind, 4 + len(value)) + value
    body = tlv(1, device.encode()) + tlv(4, struct.pack("!I", caps)) + tlv(6, platform.encode())
    if query:
        body += tlv(0x000F, b"\x20\x00\x01")
    pdu = b"\x02\xb4\x00\x00" + body
    llc = b"\xaa\xaa\x03\x00\x00\x0c\x20\x00" + pdu

    def build(src_mac: bytes, vlans=()) -> bytes:
        return ethernet(llc, len(llc), src_mac, CDP_MAC, vlans)
    return build


def lldp_frame(sys_caps: int, med_class: int | None):
    """LLDP (IEEE 802.1AB): chassis, port, TTL, system capabilities and an LLDP-MED capabilities TLV."""
    def tlv(kind: int, value: bytes) -> bytes:
        return struct.pack("!H", (kind << 9) | len(value)) + value

    def build(src_mac: bytes, vlans=()) -> bytes:
        body = tlv(1, b"\x04" + src_mac) + tlv(2, b"\x03" + src_mac) + tlv(3, b"\x00\x78")
        body += tlv(7, struct.pack("!HH", sys_caps, sys_caps))
        if med_class is not None:
            body += tlv(127, b"\x00\x12\xbb\x01" + struct.pack("!H", 0x0033) + bytes([med_class]))
        return ethernet(body + tlv(0, b""), 0x88CC, src_mac, LLDP_MAC, vlans)
    return build


# -- scenarios -------------------------------------------------------------------------------
def attacks(site: XvSite) -> None:
    t = T0
    register(site, t + 1, "10.10.0.31", "2031", ESC)
    call(site, t + 1.5, "10.10.0.31", "10.20.0.41", ESC, "softphone@xv", 30000, 30002, rtp_packets=10)
    site.handshake(t + 3, "10.10.0.32", 40032, "10.20.0.41", 80)
    site.udp(t + 4, "10.10.0.33", 40033, "10.20.0.41", 161, b"\x30\x26\x02\x01\x01\x04\x06public")
    site.handshake(t + 6, "10.20.0.42", 40042, "10.20.0.43", 22)
    call(site, t + 8, "10.20.0.44", "10.20.0.45", ESC, "xv-inject", 32044, 32045, rtp_packets=100)
    site.rtp(t + 9, "10.20.0.66", 41000, "10.20.0.44", 32044, 0x0BADBEEF, 25, pt=0, gap=0.04)
    call(site, t + 12, "10.20.0.46", "10.20.0.40", ESC, "xv-divert", 32046, 32040, media_ip="10.10.0.77",
         status="603 Decline")
    site.udp(t + 14, "10.20.0.47", 33047, DNS_DATA, 53, dns_query(0x4701, "www.example.com"))
    site.udp(t + 14.01, DNS_DATA, 53, "10.20.0.47", 33047, dns_answer(0x4701, "www.example.com", "93.184.216.34"))
    site.udp(t + 14.5, "10.10.0.34", 123, NTP_VOICE, 123, ntp(3))
    site.udp(t + 14.51, NTP_VOICE, 123, "10.10.0.34", 123, ntp(4))
    site.udp(t + 15, DHCP_DATA, 67, "10.20.0.90", 68, dhcp_offer("10.20.0.90", DHCP_DATA))
    call(site, t + 16, "10.20.0.48", "10.50.0.20", GW, "xv-gw", 32048, 32020, rtp_packets=0)
    call(site, t + 18, "10.20.0.49", "203.0.113.50", "203.0.113.50", "xv-internet", 32049, 20000, rtp_packets=0)
    register(site, t + 19, "198.51.100.7", "7001", SBC)
    site.udp(t + 20, "10.10.0.35", 40035, DNS_DATA, 53, dns_query(0x3501, "intranet.example.com"))
    site.udp(t + 20.5, "10.10.0.35", 40036, "10.20.0.41", 5060, b"OPTIONS-probe", vlans=(DATA, VOICE))
    site.handshake(t + 22, "10.10.0.36", 40037, "93.184.216.34", 443)
    site.l2(t + 22.5, host_mac("10.10.0.36"), cdp_frame("SEP020000000A24", 0x90, "Cisco IP Phone 7940", True))
    site.l2(t + 23, b"\x02\x00\x00\x00\x0b\x26", lldp_frame(0x0080, 1), (DATA,))
    nic = mac(0x37)
    site.udp(t + 25, "10.10.0.37", 40038, DNS_DATA, 53, dns_query(0x3701, "files.example.com"), src_mac=nic)
    site.udp(t + 25.5, "10.20.0.37", 123, NTP_VOICE, 123, ntp(3), src_mac=nic)


def build() -> PcapWriter:
    site = XvSite()
    attacks(site)
    return site.pcap


if __name__ == "__main__":
    build().save(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "xv-attacks.pcap"))
