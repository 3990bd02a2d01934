"""Writes sample_captures/span-routed.pcap: the lab's tagged SPAN of a router between VLANs.

The lab (tests/lab/lab.py) in small: voice VLAN 110 (10.110.0.0/24: proxy 10.110.0.10, phones .11 and
.12), data VLAN 20 (10.20.0.0/24: host .20, softphone .30), a router with one leg per VLAN (MAC
06:76 + its leg's address, as the lab's mac_for) and attackers at 203.0.113.x behind its WAN leg, which
the SPAN does not see. The SPAN mirrors every frame of VLANs 20 and 110, tagged: a routed packet appears
twice (`encapsulation replicate` does the same), first on the sender's VLAN from the sender's MAC to the
router (TTL 64), then 150 us later on the receiver's VLAN from the router's MAC (TTL 63, same IP id).

Labels (capture time from T0):
- t+0.0: phones 1001 (.11) and 1002 (.12) REGISTER with the proxy, 200 OK (same VLAN: once each).
- t+1.0: scanner 203.0.113.66 sends OPTIONS to the proxy, answered 200; t+1.5 it REGISTERs 1001, 401.
  Its frames are on VLAN 110 only, from the router's MAC: it is not in the voice zone.
- t+2.0: data host 10.20.0.20 sends 4 OPTIONS to the proxy (a monitor, 1 s apart), each answered 200:
  8 OPTIONS frames and 8 200 frames on the wire, 4 + 4 packets (VLAN path 20->110 and 110->20).
- t+7.0: softphone 10.20.0.30 (1030) calls 1002 through the proxy: INVITE (routed, 2 frames), the proxy's
  INVITE to .12 (1 frame), 100/180/200 back, ACK, 50 RTP packets each way between .30:30000 and
  .12:40000 (routed: 200 frames, 100 packets), BYE and 200: 2 INVITE packets, 3 INVITE frames.
- t+10.0: 10.20.0.20 sends SNMP get-request (UDP 161) to phone 10.110.0.11, which answers ICMP port
  unreachable quoting it (both routed: 4 frames, 2 packets).
- t+10.5: 10.20.0.20 sends SNMP to 10.110.0.99, which does not exist: the router's data leg 10.20.0.1
  answers ICMP host unreachable (1 frame each, on VLAN 20 only).
- t+12.0: attacker 203.0.113.68 REGISTERs 1001 with credentials and the proxy accepts it (200 OK): a
  binding beside the phone's, from a public address (RF-07), still on VLAN 110 from the router's MAC.
"""
from __future__ import annotations

import ipaddress
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pcapgen import ETH_IPV4, PcapWriter, _checksum, ethernet, ipv4, rtp, sdp_body, sip_message, udp  # noqa: E402

T0 = 1_700_300_000.0
VOICE, DATA = 110, 20
PROXY, PHONE1, PHONE2 = "10.110.0.10", "10.110.0.11", "10.110.0.12"
DATA_HOST, SOFTPHONE = "10.20.0.20", "10.20.0.30"
ROUTER = {VOICE: "10.110.0.1", DATA: "10.20.0.1"}
SCANNER, FRAUD = "203.0.113.66", "203.0.113.68"
COPY_DELAY_S = 0.00015                          # the routed copy, on the receiver's VLAN
REALM = "lab.voipwatch.test"


def mac_for(ip: str) -> bytes:
    """A stable locally administered MAC from an IPv4 address (tests/lab/lab.py mac_for)."""
    return b"\x06\x76" + ipaddress.IPv4Address(ip).packed


def vlan_of(ip: str) -> int | None:
    """The mirrored VLAN of an address; None for the outside (behind the router's WAN leg)."""
    return VOICE if ip.startswith("10.110.") else DATA if ip.startswith("10.20.") else None


class Span:
    """Frames as the SPAN sees them: same-VLAN packets once, routed packets once per mirrored VLAN."""

    def __init__(self):
        self.pcap = PcapWriter()
        self.ident = 0x4000

    def ip(self, ts: float, src: str, dst: str, proto: int, l4: bytes, delivered: bool = True) -> int:
        """One packet (routed unless `delivered` is False: the router has no way to its destination);
        returns its IP identification."""
        self.ident += 1
        src_vlan, dst_vlan = vlan_of(src), vlan_of(dst)
        if src_vlan == dst_vlan:
            self.pcap.add(ts, ethernet(ipv4(src, dst, proto, l4, self.ident), ETH_IPV4, mac_for(src), mac_for(dst),
                                       (src_vlan,)))
            return self.ident
        ttl = 64
        if src_vlan is not None:            # from the sender to the router's leg on the sender's VLAN
            self.pcap.add(ts, ethernet(ipv4(src, dst, proto, l4, self.ident, ttl), ETH_IPV4, mac_for(src),
                                       mac_for(ROUTER[src_vlan]), (src_vlan,)))
            ts += COPY_DELAY_S
        ttl -= 1                            # RFC 791 §3.2: the router decrements it
        if dst_vlan is not None and delivered:   # from the router's leg on the receiver's VLAN to the receiver
            self.pcap.add(ts, ethernet(ipv4(src, dst, proto, l4, self.ident, ttl), ETH_IPV4,
                                       mac_for(ROUTER[dst_vlan]), mac_for(dst), (dst_vlan,)))
        return self.ident

    def udp(self, ts, src, sport, dst, dport, payload):
        self.ip(ts, src, dst, 17, udp(src, sport, dst, dport, payload))

    def icmp_error(self, ts, src, icmp_type, code, quoted_src, quoted_dst, quoted_udp: bytes, quoted_ident: int,
                   quoted_ttl: int):
        """RFC 792: type, code, checksum, 4 unused octets, then the offending datagram's IP header (as the
        answering host received it) + its first 8 octets."""
        quoted = ipv4(quoted_src, quoted_dst, 17, quoted_udp, quoted_ident, quoted_ttl)[:28]
        body = struct.pack("!BBHI", icmp_type, code, 0, 0) + quoted
        body = body[:2] + struct.pack("!H", _checksum(body)) + body[4:]
        self.ip(ts, src, quoted_src, 1, body)


def sip_headers(src, sport, from_user, to_user, call_id, cseq, method, tag, branch, host=PROXY):
    return [("Via", f"SIP/2.0/UDP {src}:{sport};branch=z9hG4bK{branch}"), ("Max-Forwards", "70"),
            ("From", f"<sip:{from_user}@{REALM}>;tag={tag}"), ("To", f"<sip:{to_user}@{REALM}>"),
            ("Call-ID", call_id), ("CSeq", f"{cseq} {method}"), ("Contact", f"<sip:{from_user}@{src}:{sport}>"),
            ("User-Agent", "SpanLab/1.0")]


def response(request_headers, status, body="", to_tag=None, extra=()):
    keep = [(n, f"{v};tag={to_tag}" if n == "To" and to_tag else v) for n, v in request_headers
            if n in ("Via", "From", "To", "Call-ID", "CSeq")]
    return sip_message(f"SIP/2.0 {status}", keep + [("Server", "SpanProxy/1.0"), *extra], body)


def exchange(span, ts, src, dst, start_line, headers, status="200 OK", body="", answer_body="", to_tag=None,
             extra=(), answer_extra=()):
    span.udp(ts, src, 5060, dst, 5060, sip_message(start_line, headers + list(extra), body))
    span.udp(ts + 0.01, dst, 5060, src, 5060, response(headers, status, answer_body, to_tag, answer_extra))


def register(span, ts, src, user, n, status="200 OK", credentials=False):
    hdrs = sip_headers(src, 5060, user, user, f"reg-{user}-{n}@{src}", n, "REGISTER", f"r{user}", f"reg{user}{n}")
    extra = [("Expires", "3600")]
    if credentials:
        extra.append(("Authorization", f'Digest username="{user}", realm="{REALM}", nonce="n{n}", '
                                        f'uri="sip:{PROXY}", response="{"0" * 32}"'))
    answer = [("WWW-Authenticate", f'Digest realm="{REALM}", nonce="n{n}"')] if status.startswith("401") else []
    exchange(span, ts, src, PROXY, f"REGISTER sip:{PROXY} SIP/2.0", hdrs, status, extra=extra, answer_extra=answer)


def options(span, ts, src, n):
    hdrs = sip_headers(src, 5060, "monitor", "ping", f"opt-{n}@{src}", n, "OPTIONS", f"o{n}", f"opt{n}")
    exchange(span, ts, src, PROXY, f"OPTIONS sip:ping@{PROXY} SIP/2.0", hdrs)


def call(span, ts):
    """1030 (softphone, data VLAN) calls 1002 through the proxy; media flows directly."""
    call_id = "span-call-1@10.20.0.30"
    a = sip_headers(SOFTPHONE, 5060, "1030", "1002", call_id, 1, "INVITE", "a1030", "inv1")
    b = sip_headers(PROXY, 5060, "1030", "1002", "b2b-" + call_id, 1, "INVITE", "p1030", "inv2")
    offer, answer = sdp_body(SOFTPHONE, SOFTPHONE, 30000), sdp_body(PHONE2, PHONE2, 40000)
    span.udp(ts, SOFTPHONE, 5060, PROXY, 5060, sip_message(f"INVITE sip:1002@{PROXY} SIP/2.0", a, offer))
    span.udp(ts + 0.005, PROXY, 5060, SOFTPHONE, 5060, response(a, "100 Trying"))
    span.udp(ts + 0.01, PROXY, 5060, PHONE2, 5060, sip_message(f"INVITE sip:1002@{PHONE2} SIP/2.0", b, offer))
    span.udp(ts + 0.05, PHONE2, 5060, PROXY, 5060, response(b, "180 Ringing", to_tag="c1002"))
    span.udp(ts + 0.055, PROXY, 5060, SOFTPHONE, 5060, response(a, "180 Ringing", to_tag="c1002"))
    span.udp(ts + 1.0, PHONE2, 5060, PROXY, 5060, response(b, "200 OK", answer, to_tag="c1002"))
    span.udp(ts + 1.005, PROXY, 5060, SOFTPHONE, 5060, response(a, "200 OK", answer, to_tag="c1002"))
    ack = [(n, v.replace("INVITE", "ACK") if n == "CSeq" else v) for n, v in a]
    span.udp(ts + 1.02, SOFTPHONE, 5060, PROXY, 5060, sip_message(f"ACK sip:1002@{PROXY} SIP/2.0", ack))
    for i in range(50):
        t = ts + 1.1 + i * 0.02
        span.udp(t, SOFTPHONE, 30000, PHONE2, 40000, rtp(100 + i, 8000 + 160 * i, 0x5A0030, 0, b"\xd5" * 160, i == 0))
        span.udp(t + 0.003, PHONE2, 40000, SOFTPHONE, 30000,
                 rtp(700 + i, 24000 + 160 * i, 0x5A0012, 0, b"\x55" * 160, i == 0))
    bye = [(n, "2 BYE" if n == "CSeq" else v) for n, v in a]
    exchange(span, ts + 2.5, SOFTPHONE, PROXY, f"BYE sip:1002@{PROXY} SIP/2.0", bye)


def snmp_probe(span, ts, target, answered_by, code):
    """An SNMPv1 get-request (UDP 161) answered by an ICMP destination unreachable from `answered_by`: the
    target itself (it received the routed copy, TTL 63), or the router (the copy it could not forward, TTL 64)."""
    payload = bytes.fromhex("302602010004067075626c6963a019020101020100020100300e300c06082b060102010101000500")
    datagram = udp(DATA_HOST, 40161, target, 161, payload)
    by_target = answered_by == target
    ident = span.ip(ts, DATA_HOST, target, 17, datagram, delivered=by_target)
    span.icmp_error(ts + 0.002, answered_by, 3, code, DATA_HOST, target, datagram, ident, 63 if by_target else 64)


def build() -> PcapWriter:
    span, t = Span(), T0
    register(span, t, PHONE1, "1001", 1)
    register(span, t + 0.2, PHONE2, "1002", 1)
    options(span, t + 1.0, SCANNER, 100)
    register(span, t + 1.5, SCANNER, "1001", 7, "401 Unauthorized")
    for n in range(4):
        options(span, t + 2.0 + n, DATA_HOST, n + 1)
    call(span, t + 7.0)
    snmp_probe(span, t + 10.0, PHONE1, PHONE1, 3)               # port unreachable, from the phone itself
    snmp_probe(span, t + 10.5, "10.110.0.99", ROUTER[DATA], 1)  # host unreachable, from the router
    register(span, t + 12.0, FRAUD, "1001", 9, credentials=True)
    return span.pcap


if __name__ == "__main__":
    build().save(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "span-routed.pcap"))
