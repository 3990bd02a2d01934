"""IPv4 and IPv6 (with extension headers), GRE, and the UDP and TCP headers.

Parsers take ``(buf, off, end)`` (``end`` = how far the captured bytes of this layer reach) and
return a result object or a ``(name, detail)`` pair naming the anomaly. Checksums are never a
reason to drop a packet and are not verified. Fragment reassembly lives in ``ipfrag``.
"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

PROTO_ICMP, PROTO_IGMP, PROTO_IPIP, PROTO_TCP, PROTO_UDP = 1, 2, 4, 6, 17
PROTO_IPV6, PROTO_GRE, PROTO_ICMPV6 = 41, 47, 58

# RFC 791 §3.1: version(4) IHL(4) | TOS(8) | total length(16) | identification(16) |
# flags(3) fragment offset(13) | TTL(8) | protocol(8) | header checksum(16) | source(32) | destination(32)
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV4_MF, _IPV4_OFFSET = 0x2000, 0x1FFF
# RFC 8200 §3: version(4) traffic class(8) flow label(20) | payload length(16) | next header(8) |
# hop limit(8) | source(128) | destination(128)
_IPV6 = struct.Struct("!IHBB16s16s")
# RFC 8200 §4.5: next header(8) reserved(8) | fragment offset(13) res(2) M(1) | identification(32)
_IPV6_FRAG = struct.Struct("!BBHI")
_EXT_HOP, _EXT_ROUTING, _EXT_FRAGMENT, _EXT_DSTOPTS, _EXT_AH = 0, 43, 44, 60, 51
# Extension headers in the RFC 6564 uniform format (next header(8), length in 8-octet units - 1):
# hop-by-hop, routing, destination options (RFC 8200 §4.3-4.6), mobility (RFC 6275), HIP (RFC 7401), shim6 (RFC 5533)
_EXT_UNIFORM = frozenset((_EXT_HOP, _EXT_ROUTING, _EXT_DSTOPTS, 135, 139, 140))
MAX_IPV6_EXT_HEADERS = 16

# RFC 2784 §2 / RFC 2890 §2: C(1) R(1) K(1) S(1) reserved(9) version(3) | protocol type(16),
# then checksum+reserved(32) if C, key(32) if K, sequence(32) if S.
# RFC 2637 §4.1 (version 1, PPTP): K must be set (payload length(16) call id(16)), sequence if S, ack(32) if A.
_GRE = struct.Struct("!HH")
_GRE_C, _GRE_R, _GRE_K, _GRE_S, _GRE_A = 0x8000, 0x4000, 0x2000, 0x1000, 0x0080
GRE_TEB, GRE_PPP = 0x6558, 0x880B            # transparent Ethernet bridging, PPP (PPTP)

# RFC 768: source port(16) destination port(16) length(16) checksum(16)
UDP = struct.Struct("!HHHH")
# RFC 9293 §3.1: source port(16) destination port(16) sequence(32) acknowledgment(32) |
# data offset(4) reserved(3) flags(9) | window(16) checksum(16) urgent pointer(16)
TCP = struct.Struct("!HHIIHHHH")
TCP_FIN, TCP_SYN, TCP_RST = 0x01, 0x02, 0x04

# Every anomaly name these parsers return (layer "ip"); a raw-IP link frame reports ip.bad_version too.
ANOMALIES = {
    "ip.truncated": "an IPv4 or IPv6 header, or a fragment to reassemble, cut short by the capture",
    "ip.bad_version": "an IP version that is not the one the link layer announces (neither 4 nor 6 on a raw-IP link)",
    "ip.bad_header_length": "an IPv4 IHL below 5, or a header longer than the total length (RFC 791 §3.1)",
    "ipv6.bad_ext_header": f"an IPv6 extension header cut short, a second fragment header, or more than "
                           f"{MAX_IPV6_EXT_HEADERS} of them (RFC 8200 §4)",
    "gre.truncated": "a GRE header cut short (RFC 2784)",
    "gre.unsupported": "GRE with source routing, an unknown version, or a payload that is not IP, PPP or Ethernet",
}

_ADDR_CACHE_MAX = 4096
_addr_cache: dict[bytes, str] = {}


def ntop(packed: bytes) -> str:
    """Text form of a 4- or 16-byte address (socket.inet_ntop), cached with an insertion-order cap."""
    text = _addr_cache.get(packed)
    if text is None:
        text = socket.inet_ntop(socket.AF_INET if len(packed) == 4 else socket.AF_INET6, packed)
        if len(_addr_cache) >= _ADDR_CACHE_MAX:
            del _addr_cache[next(iter(_addr_cache))]
        _addr_cache[packed] = text
    return text


@dataclass(slots=True)
class IpPacket:
    """One IP header's worth of facts: where its upper-layer payload is and what it is."""
    src: bytes                     # packed addresses (strings are made only for delivered datagrams)
    dst: bytes
    proto: int                     # upper-layer protocol (after IPv6 extension headers)
    buf: bytes                     # the buffer holding the payload
    start: int                     # payload start in buf
    end: int                       # payload end: what the length fields say, clipped to the capture
    declared_end: int              # payload end per the length fields (> end when the capture is cut)
    frag_offset: int = 0           # fragment offset in bytes
    frag_more: bool = False        # more fragments follow
    frag_id: int | None = None     # identification, when this packet is a fragment
    ident: int = 0                 # IPv4 identification (RFC 791 §3.1) or IPv6 flow label (RFC 8200 §3)


def parse_ipv4(buf: bytes, off: int, end: int) -> IpPacket | tuple[str, str]:
    """RFC 791 header, options skipped."""
    if end - off < 20:
        return ("ip.truncated", f"IPv4 header needs 20 bytes, {end - off} captured")
    vihl, _, total, ident, frag, _, proto, _, src, dst = _IPV4.unpack_from(buf, off)
    if vihl >> 4 != 4:
        return ("ip.bad_version", f"version {vihl >> 4} in an IPv4 packet")
    hlen = (vihl & 0x0F) * 4
    if hlen < 20:
        return ("ip.bad_header_length", f"IHL {hlen // 4}")
    if total == 0:               # TSO: the capturing host's NIC fills the length in later (Wireshark does the same)
        total = end - off
    if total < hlen:
        return ("ip.bad_header_length", f"header length {hlen} > total length {total}")
    if off + hlen > end:
        return ("ip.truncated", f"IPv4 header of {hlen} bytes, {end - off} captured")
    declared = off + total
    pkt = IpPacket(src, dst, proto, buf, off + hlen, min(declared, end), declared, ident=ident)
    if frag & (_IPV4_MF | _IPV4_OFFSET):
        pkt.frag_offset, pkt.frag_more, pkt.frag_id = (frag & _IPV4_OFFSET) * 8, bool(frag & _IPV4_MF), ident
    return pkt


def parse_ipv6(buf: bytes, off: int, end: int) -> IpPacket | tuple[str, str]:
    """RFC 8200 header and extension headers up to the upper layer or a Fragment header."""
    if end - off < 40:
        return ("ip.truncated", f"IPv6 header needs 40 bytes, {end - off} captured")
    vtf, plen, nh, _, src, dst = _IPV6.unpack_from(buf, off)
    if vtf >> 28 != 6:
        return ("ip.bad_version", f"version {vtf >> 28} in an IPv6 packet")
    # payload length 0: a jumbogram (RFC 2675) or a TSO-captured packet: take what was captured
    declared = off + 40 + plen if plen else end
    pkt = IpPacket(src, dst, nh, buf, off + 40, min(declared, end), declared, ident=vtf & 0xFFFFF)
    return ipv6_extensions(pkt)


def ipv6_extensions(pkt: IpPacket) -> IpPacket | tuple[str, str]:
    """Walk extension headers from pkt.start with next header pkt.proto (also after reassembly)."""
    buf, pos, end, nh = pkt.buf, pkt.start, pkt.end, pkt.proto
    for _ in range(MAX_IPV6_EXT_HEADERS):
        if nh in _EXT_UNIFORM or nh == _EXT_AH:
            if end - pos < 2:
                return ("ipv6.bad_ext_header", f"extension header {nh} cut short")
            size = (buf[pos + 1] + 2) * 4 if nh == _EXT_AH else (buf[pos + 1] + 1) * 8   # RFC 4302 §2.2 for AH
            if end - pos < size:
                return ("ipv6.bad_ext_header", f"extension header {nh} of {size} bytes, {end - pos} left")
            nh, pos = buf[pos], pos + size
        elif nh == _EXT_FRAGMENT:
            if pkt.frag_id is not None:
                return ("ipv6.bad_ext_header", "second fragment header")
            if end - pos < 8:
                return ("ipv6.bad_ext_header", "fragment header cut short")
            nxt, _, offm, ident = _IPV6_FRAG.unpack_from(buf, pos)
            nh, pos = nxt, pos + 8
            if offm & 0xFFF9:            # RFC 6946: offset 0 and M=0 is an atomic fragment, parsed as whole
                pkt.frag_offset, pkt.frag_more, pkt.frag_id = offm & 0xFFF8, bool(offm & 1), ident
                break
        else:
            break
    else:
        return ("ipv6.bad_ext_header", f"more than {MAX_IPV6_EXT_HEADERS} extension headers")
    pkt.proto, pkt.start = nh, pos
    return pkt


def parse_gre(buf: bytes, off: int, end: int) -> tuple[int, int] | tuple[str, str]:
    """GRE header -> (protocol type, payload offset); versions 0 (RFC 2784/2890) and 1 (RFC 2637)."""
    if end - off < 4:
        return ("gre.truncated", f"GRE header needs 4 bytes, {end - off} captured")
    flags, proto = _GRE.unpack_from(buf, off)
    version = flags & 0x7
    if version == 0:
        if flags & _GRE_R:
            return ("gre.unsupported", "source routing present (RFC 1701)")
        size = 4 + 4 * (bool(flags & _GRE_C) + bool(flags & _GRE_K) + bool(flags & _GRE_S))
    elif version == 1:
        if not flags & _GRE_K or proto != GRE_PPP:
            return ("gre.unsupported", f"enhanced GRE without key or carrying 0x{proto:04x}")
        size = 8 + 4 * (bool(flags & _GRE_S) + bool(flags & _GRE_A))
    else:
        return ("gre.unsupported", f"GRE version {version}")
    if end - off < size:
        return ("gre.truncated", f"GRE header of {size} bytes, {end - off} captured")
    return proto, off + size
