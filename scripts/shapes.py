#!/usr/bin/env python3
"""The capture shapes people bring, made from one classic Ethernet pcap, for benchmark.py --matrix.

    python scripts/shapes.py SOURCE.pcap -o DIR [--shapes sll,ipv6,...]

Every converter streams: one frame in, one frame out, through 8 MiB buffers, so memory stays small
whatever the size of the capture. The traffic is the same in every shape; only its framing changes:

- containers: classic pcap in both byte orders and both time units, pcapng (one interface, or two
  interfaces of different link types), and the original compressed with gzip, zstd or xz (the
  Debian tools at their default levels, as people run them);
- link layers: Ethernet, Linux cooked v1/v2 (the VLAN tags stay in-band after the cooked header,
  as libpcap reinserts them), raw IP, BSD null and loopback (these carry no VLAN tags), QinQ
  (an 802.1ad S-tag and an 802.1Q C-tag pushed in front of every frame's own tags);
- IPv6: every IPv4 address mapped into a /96 prefix (its low 32 bits are the IPv4 address, the
  layout of RFC 6052 §2.2): RFC 1918 and other internal IPv4 space into the unique local prefix
  fd00:4:6::/96 (RFC 4193), everything else into the documentation prefix 2001:db8:4:6::/96
  (RFC 3849), so that what is internal stays internal. The SIP messages over UDP are rewritten to
  match (URI and Via hosts as IPv6 references in brackets, RFC 3261 §25.1 and RFC 5118 §4; SDP
  `IN IP6`, RFC 8866 §5.7; Content-Length fixed), because a peer follows RTP through the SDP, and the
  UDP checksum is recomputed over the IPv6 pseudo-header, which it must carry (RFC 8200 §8.1); a
  wrong checksum stays wrong by the same amount. SIP over TCP keeps its IPv4 text (counted as
  sip_over_tcp_left_ipv4: rewriting it would move every later sequence number), and packets with
  no IPv6 equivalent (ICMP, ...) stay IPv4 (counted).

`map_back_ipv6` undoes the address mapping in text, for comparing the outputs of two shapes.
"""
from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

BUFFER = 8 << 20
SNAPLEN = 262144                  # written into every header: no converted frame is cut

# LINKTYPE_* (tcpdump.org/linktypes.html)
LT_NULL, LT_ETHERNET, LT_RAW, LT_LOOP, LT_SLL, LT_IPV4, LT_IPV6, LT_SLL2 = 0, 1, 101, 108, 113, 228, 229, 276
ETHERTYPE_IPV4, ETHERTYPE_IPV6 = 0x0800, 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
# QinQ shape: IEEE 802.1ad S-tag (TPID 0x88A8) then 802.1Q C-tag (0x8100), ids no capture uses
QINQ_OUTER, QINQ_INNER = 3000, 300
# BSD loopback address families: LINKTYPE_NULL is written in the host's order (little-endian here,
# with macOS's AF_INET6 = 30), LINKTYPE_LOOP in network order (OpenBSD's AF_INET6 = 24)
AF_INET, AF_INET6_NULL, AF_INET6_LOOP = 2, 30, 24
# Linux cooked captures: ARPHRD_ETHER, packet types PACKET_HOST / BROADCAST / MULTICAST (if_packet.h)
ARPHRD_ETHER, PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST = 1, 0, 1, 2
SLL2_IFINDEX = 2

# pcap (draft-ietf-opsawg-pcap §4): magic, version 2.4, thiszone, sigfigs, snaplen, linktype
PCAP_MAGIC_US, PCAP_MAGIC_NS = 0xA1B2C3D4, 0xA1B23C4D
# pcapng (draft-ietf-opsawg-pcapng): block types, byte-order magic, option codes
SHB, IDB, EPB, SPB, OPB = 0x0A0D0D0A, 1, 6, 3, 2
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_ENDOFOPT, OPT_IF_NAME, OPT_IF_TSRESOL, OPT_SHB_USERAPPL = 0, 2, 9, 4

# ----------------------------------------------------------------------------- reading


@dataclass(slots=True)
class Record:
    linktype: int
    ts_ns: int
    data: bytes
    orig_len: int


class CaptureFormatError(ValueError):
    pass


def read_records(path: str | os.PathLike) -> Iterator[Record]:
    """The frames of a classic pcap (either byte order, us or ns) or pcapng file, in file order."""
    with open(path, "rb", buffering=BUFFER) as f:
        magic = f.read(4)
        if magic == b"\x0a\x0d\x0d\x0a":
            f.seek(0)
            yield from _read_pcapng(f, path)
            return
        for order in "<>":
            value = struct.unpack(order + "I", magic)[0] if len(magic) == 4 else None
            if value in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
                yield from _read_pcap(f, order, 1 if value == PCAP_MAGIC_NS else 1000, path)
                return
        raise CaptureFormatError(f"{path}: not a pcap or pcapng file (magic {magic.hex()})")


def _read_exactly(f: BinaryIO, n: int, path, what: str) -> bytes:
    data = f.read(n)
    if len(data) < n:
        raise CaptureFormatError(f"{path}: {what} cut short")
    return data


def _read_pcap(f: BinaryIO, order: str, ns_per_unit: int, path) -> Iterator[Record]:
    head = _read_exactly(f, 20, path, "file header")
    linktype = struct.unpack(order + "I", head[16:20])[0] & 0xFFFF   # upper bits: FCS length flags
    rec = struct.Struct(order + "IIII")
    while h := f.read(16):
        if len(h) < 16:
            raise CaptureFormatError(f"{path}: record header cut short")
        sec, frac, caplen, orig = rec.unpack(h)
        data = _read_exactly(f, caplen, path, "record data")
        yield Record(linktype, sec * 1_000_000_000 + frac * ns_per_unit, data, orig)


def _tsresol_ns(value: int) -> tuple[int, int]:
    """(multiplier, divisor) turning if_tsresol ticks into nanoseconds (pcapng §4.2: bit 7 set means
    a power of two, else a power of ten; the default is 6, microseconds)."""
    if value & 0x80:
        return 1_000_000_000, 1 << (value & 0x7F)
    return (10 ** (9 - value), 1) if value <= 9 else (1, 10 ** (value - 9))


def _read_pcapng(f: BinaryIO, path) -> Iterator[Record]:
    order, ifaces = "<", []
    while head := f.read(8):
        if len(head) < 8:
            raise CaptureFormatError(f"{path}: block header cut short")
        if head[:4] == b"\x0a\x0d\x0d\x0a":                  # a section: its own byte order, interfaces
            bom = _read_exactly(f, 4, path, "section header")
            order = "<" if struct.unpack("<I", bom)[0] == BYTE_ORDER_MAGIC else ">"
            _read_exactly(f, struct.unpack(order + "I", head[4:])[0] - 12, path, "section header")
            ifaces = []
            continue
        btype, total = struct.unpack(order + "II", head)
        body = _read_exactly(f, total - 8, path, "block")
        if btype == IDB:
            linktype = struct.unpack_from(order + "H", body)[0]
            resol, off = 6, 8
            while off + 4 <= len(body) - 4:
                code, length = struct.unpack_from(order + "HH", body, off)
                if code == OPT_ENDOFOPT:
                    break
                if code == OPT_IF_TSRESOL and length >= 1:
                    resol = body[off + 4]
                off += 4 + (length + 3) // 4 * 4
            ifaces.append((linktype, *_tsresol_ns(resol)))
        elif btype == EPB:
            iface, hi, lo, caplen, orig = struct.unpack_from(order + "IIIII", body)
            linktype, mul, div = ifaces[iface]
            yield Record(linktype, ((hi << 32) | lo) * mul // div, body[20:20 + caplen], orig)
        elif btype in (SPB, OPB):
            raise CaptureFormatError(f"{path}: pcapng block type {btype} (simple/obsolete packet) not supported here")


# ----------------------------------------------------------------------------- writing


class PcapWriter:
    """Classic pcap, little- or big-endian, microsecond or nanosecond timestamps."""

    def __init__(self, f: BinaryIO, linktype: int, big_endian: bool = False, nanoseconds: bool = False) -> None:
        order = ">" if big_endian else "<"
        self.f, self.rec = f, struct.Struct(order + "IIII")
        self.div = 1 if nanoseconds else 1000
        f.write(struct.pack(order + "IHHiIII", PCAP_MAGIC_NS if nanoseconds else PCAP_MAGIC_US, 2, 4, 0, 0,
                            SNAPLEN, linktype))

    def write(self, rec: Record, iface: int = 0) -> None:
        sec, ns = divmod(rec.ts_ns, 1_000_000_000)
        self.f.write(self.rec.pack(sec, ns // self.div, len(rec.data), rec.orig_len))
        self.f.write(rec.data)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(btype: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


class PcapngWriter:
    """pcapng, little-endian: one section, interfaces given as (linktype, if_tsresol, if_name)."""

    def __init__(self, f: BinaryIO, interfaces: list[tuple[int, int, str]]) -> None:
        self.f, self.units = f, []
        shb_opts = _option(OPT_SHB_USERAPPL, b"voipwatch scripts/shapes.py") + _option(OPT_ENDOFOPT, b"")
        f.write(_block(SHB, struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + shb_opts))
        for linktype, tsresol, name in interfaces:
            opts = _option(OPT_IF_NAME, name.encode()) + _option(OPT_IF_TSRESOL, bytes([tsresol])) + \
                _option(OPT_ENDOFOPT, b"")
            f.write(_block(IDB, struct.pack("<HHI", linktype, 0, SNAPLEN) + opts))
            self.units.append(10 ** (9 - tsresol))

    def write(self, rec: Record, iface: int = 0) -> None:
        ticks = rec.ts_ns // self.units[iface]
        n = len(rec.data)
        total = 32 + n + (-n % 4)
        self.f.write(struct.pack("<IIIIIII", EPB, total, iface, ticks >> 32, ticks & 0xFFFFFFFF, n, rec.orig_len))
        self.f.write(rec.data)
        self.f.write(b"\0" * (-n % 4) + struct.pack("<I", total))


# ----------------------------------------------------------------------------- checksums

def _sum16(data: bytes) -> int:
    """The 16-bit one's complement sum of data (RFC 1071), as a residue mod 0xFFFF: 2**16 is 1 mod
    0xFFFF, so the sum of the big-endian words is the whole big-endian number mod 0xFFFF (an odd
    length is padded with a zero octet at the end, RFC 768)."""
    if len(data) & 1:
        data += b"\0"
    return int.from_bytes(data, "big") % 0xFFFF


def _checksum(total: int) -> int:
    """The checksum field for a one's complement sum (mod 0xFFFF): never 0, so a computed zero is
    sent as 0xFFFF as UDP requires (RFC 768) and TCP accepts (both mean the same in one's complement)."""
    return 0xFFFF - total % 0xFFFF


# ----------------------------------------------------------------------------- IPv4 -> IPv6

ULA_PREFIX = ipaddress.IPv6Address("fd00:4:6::")            # RFC 4193 unique local
DOC_PREFIX = ipaddress.IPv6Address("2001:db8:4:6::")        # RFC 3849 documentation
_INTERNAL_V4 = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                  "127.0.0.0/8", "169.254.0.0/16")]
_V6_TEXT = re.compile(r"\[?(?:fd00:4:6|2001:db8:4:6)::(?:([0-9a-f]{1,4}):)?([0-9a-f]{1,4})\]?")


def map_ipv4(addr4: bytes, _cache: dict[bytes, bytes] = {}) -> bytes:
    """The IPv6 address standing for an IPv4 address (16 bytes)."""
    v6 = _cache.get(addr4)
    if v6 is None:
        internal = any(ipaddress.IPv4Address(addr4) in n for n in _INTERNAL_V4)
        v6 = (ULA_PREFIX if internal else DOC_PREFIX).packed[:12] + addr4
        if len(_cache) < 1 << 16:
            _cache[addr4] = v6
    return v6


def map_back_ipv6(text: str) -> str:
    """Text with every mapped IPv6 address (bracketed or not) replaced by its IPv4 address."""
    if ":4:6::" not in text:
        return text

    def v4(m: re.Match) -> str:
        value = (int(m[1] or "0", 16) << 16) | int(m[2], 16)
        return str(ipaddress.IPv4Address(value))
    return _V6_TEXT.sub(v4, text)


_OCTET = rb"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = _OCTET + rb"(?:\." + _OCTET + rb"){3}(?![\d])"
_SDP_ADDR = re.compile(rb"IN IP4 (" + _IPV4 + rb")")                   # RFC 8866 §5.2 o=, §5.7 c=
# hosts of SIP URIs, Via sent-by and maddr (RFC 3261 §25.1: an IPv6 host is an IPv6reference, in
# brackets); the Call-ID's "@host" is rewritten too, so that a call keeps one host name
_SIP_HOST = re.compile(rb"(?:(?<=@)|(?<=sip:)|(?<=sips:)|(?<=/UDP )|(?<=/TCP )|(?<=/TLS )|(?<=/SCTP )"
                       rb"|(?<=maddr=))(" + _IPV4 + rb")")
_SIP_RECEIVED = re.compile(rb"(?<=received=)(" + _IPV4 + rb")")       # a bare IPv6address (§20.42)
_SIP_START = re.compile(rb"(?:SIP/2\.0 \d{3} |[A-Z]{3,16} \S+ SIP/2\.0\r?\n)")
_CONTENT_LENGTH = re.compile(rb"(?im)^(content-length|l)([ \t]*:[ \t]*)\d+")


def _v6_text(addr4: bytes) -> bytes:
    return str(ipaddress.IPv6Address(map_ipv4(bytes(int(x) for x in addr4.split(b"."))))).encode()


def rewrite_sip_ipv6(payload: bytes) -> bytes:
    """A SIP message with its IPv4 literals in URIs, Via, Call-ID and SDP made IPv6; anything else as is."""
    if not _SIP_START.match(payload):
        return payload
    split = payload.find(b"\r\n\r\n")
    head, body = (payload, b"") if split < 0 else (payload[:split + 4], payload[split + 4:])

    def text(part: bytes) -> bytes:
        part = _SDP_ADDR.sub(lambda m: b"IN IP6 " + _v6_text(m[1]), part)
        part = _SIP_HOST.sub(lambda m: b"[" + _v6_text(m[1]) + b"]", part)
        return _SIP_RECEIVED.sub(lambda m: _v6_text(m[1]), part)
    new_head, new_body = text(head), text(body)
    if split >= 0 and len(new_body) != len(body):
        new_head = _CONTENT_LENGTH.sub(lambda m: m[1] + m[2] + str(len(new_body)).encode(), new_head, count=1)
    return new_head + new_body


def _udp_ipv6(seg: bytes, complete: bool, pseudo4: bytes, addrs6: bytes, stats: Counter) -> bytes:
    """The UDP datagram for IPv6: SIP rewritten, checksum over the IPv6 pseudo-header (RFC 8200 §8.1)."""
    sport, dport, ulen, ck = struct.unpack_from("!HHHH", seg)
    body = seg[8:]
    new_body = rewrite_sip_ipv6(body) if complete and ulen == len(seg) else body
    new_len = ulen + len(new_body) - len(body)
    pseudo6 = addrs6 + struct.pack("!IxxxB", new_len, 17)
    if new_body is not body:
        stats["sip_rewritten"] += 1
    if ck == 0:                               # IPv4 allows "no checksum"; IPv6 does not
        if not complete:
            stats["udp_no_checksum_kept_truncated"] += 1
            return seg
        stats["udp_checksum_filled"] += 1
        new = struct.pack("!HHHH", sport, dport, new_len, 0) + new_body
        return new[:6] + struct.pack("!H", _checksum(_sum16(pseudo6 + new))) + new[8:]
    if new_body is body:                      # the same bytes: move the pseudo-header sum only (RFC 1624)
        total = (0xFFFF - ck) - _sum16(pseudo4 + struct.pack("!H", ulen)) + _sum16(pseudo6)
        return seg[:6] + struct.pack("!H", _checksum(total)) + body
    # new bytes: a wrong checksum stays wrong by the same amount
    error = (0xFFFF - ck) - _sum16(pseudo4 + struct.pack("!H", ulen) + seg[:6] + b"\0\0" + body)
    new = struct.pack("!HHHH", sport, dport, new_len, 0) + new_body
    return new[:6] + struct.pack("!H", _checksum(_sum16(pseudo6 + new) + error)) + new[8:]


def _tcp_ipv6(seg: bytes, tcp_len: int, pseudo4: bytes, addrs6: bytes) -> bytes:
    ck = struct.unpack_from("!H", seg, 16)[0]
    total = (0xFFFF - ck) - _sum16(pseudo4 + struct.pack("!H", tcp_len)) + \
        _sum16(addrs6 + struct.pack("!IxxxB", tcp_len, 6))
    return seg[:16] + struct.pack("!H", _checksum(total)) + seg[18:]


def ipv4_to_ipv6(l3: bytes, stats: Counter) -> bytes | None:
    """The IPv6 packet carrying an IPv4 packet's UDP or TCP payload (None when there is no IPv6
    equivalent: ICMP and other protocols stay IPv4). Traffic class = TOS, hop limit = TTL; a fragment
    gets a Fragment header with the IPv4 identification (RFC 8200 §4.5); IPv4 options are dropped."""
    if len(l3) < 20 or l3[0] >> 4 != 4:
        return None
    ihl = (l3[0] & 15) * 4
    tos, total, ident, frag, ttl, proto = struct.unpack_from("!xBHHHBB", l3)
    if proto not in (6, 17) or total < ihl:
        stats["left_ipv4_protocol_%d" % proto] += 1
        return None
    if ihl > 20:
        stats["ipv4_options_dropped"] += 1
    payload = l3[ihl:total]
    complete = len(l3) >= total
    offset, more = (frag & 0x1FFF) * 8, bool(frag & 0x2000)
    addrs6 = map_ipv4(l3[12:16]) + map_ipv4(l3[16:20])
    pseudo4 = l3[12:20] + bytes((0, proto))
    if offset == 0 and proto == 17 and len(payload) >= 8:
        new = _udp_ipv6(payload, complete and not more, pseudo4, addrs6, stats)
    elif offset == 0 and proto == 6 and len(payload) >= 18:
        new = _tcp_ipv6(payload, total - ihl, pseudo4, addrs6)
        if _SIP_START.match(payload, (payload[12] >> 4) * 4):
            stats["sip_over_tcp_left_ipv4"] += 1   # rewriting it would move every later sequence number
    else:
        new = payload
    length = total - ihl + len(new) - len(payload)
    ext = b""
    next_header = proto
    if offset or more:
        stats["fragments"] += 1
        ext = struct.pack("!BBHI", proto, 0, offset | more, ident)
        next_header = 44
    stats["ipv4_mapped"] += 1
    return struct.pack("!IHBB", 0x60000000 | tos << 20, length + len(ext), next_header, ttl) + addrs6 + ext + new


# ----------------------------------------------------------------------------- Ethernet frames


def split_ethernet(frame: bytes) -> tuple[bytes, int, int]:
    """(the bytes after the MACs up to the EtherType, EtherType, where the payload starts)."""
    off = 12
    ethertype = frame[12] << 8 | frame[13]
    while ethertype in VLAN_TPIDS and len(frame) >= off + 8:
        off += 4
        ethertype = frame[off] << 8 | frame[off + 1]
    return frame[12:off], ethertype, off + 2


def ip_packet(frame: bytes, start: int, ethertype: int) -> bytes:
    """The IP packet of an Ethernet frame, without the padding to 60 bytes (raw IP has none)."""
    l3 = frame[start:]
    if ethertype == ETHERTYPE_IPV4 and len(l3) >= 4:
        total = l3[2] << 8 | l3[3]
        return l3[:total] if 20 <= total < len(l3) else l3
    if ethertype == ETHERTYPE_IPV6 and len(l3) >= 6:
        total = 40 + (l3[4] << 8 | l3[5])
        return l3[:total] if 40 < total < len(l3) else l3
    return l3


def _resized(rec: Record, data: bytes, linktype: int) -> Record:
    return Record(linktype, rec.ts_ns, data, rec.orig_len + len(data) - len(rec.data))


def _packet_type(frame: bytes) -> int:
    if frame[:6] == b"\xff" * 6:
        return PACKET_BROADCAST
    return PACKET_MULTICAST if frame[0] & 1 else PACKET_HOST


def to_sll(rec: Record) -> Record:
    """Linux cooked v1: packet type, ARPHRD_ETHER, the sender's MAC, then the Ethernet frame's bytes
    from its first TPID/EtherType on (tags in-band, as libpcap reinserts them)."""
    f = rec.data
    return _resized(rec, struct.pack("!HHH", _packet_type(f), ARPHRD_ETHER, 6) + f[6:12] + b"\0\0" + f[12:], LT_SLL)


def to_sll2(rec: Record) -> Record:
    """Linux cooked v2: protocol, reserved, interface index, ARPHRD_ETHER, packet type, address."""
    f = rec.data
    head = f[12:14] + b"\0\0" + struct.pack("!IHBB", SLL2_IFINDEX, ARPHRD_ETHER, _packet_type(f), 6) + f[6:12]
    return _resized(rec, head + b"\0\0" + f[14:], LT_SLL2)


def _ip_only(rec: Record, linktype: int, family: Callable[[int], bytes], stats: Counter) -> Record | None:
    _, ethertype, start = split_ethernet(rec.data)
    if ethertype not in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
        return None
    if start > 14:
        stats["vlan_tags_dropped"] += 1
    return _resized(rec, family(ethertype) + ip_packet(rec.data, start, ethertype), linktype)


def to_qinq(rec: Record) -> Record:
    f = rec.data
    tags = struct.pack("!HHHH", 0x88A8, QINQ_OUTER, 0x8100, QINQ_INNER)
    return _resized(rec, f[:12] + tags + f[12:], LT_ETHERNET)


def to_ipv6(rec: Record, stats: Counter) -> Record:
    tags, ethertype, start = split_ethernet(rec.data)
    if ethertype != ETHERTYPE_IPV4:
        return rec
    l3 = ipv4_to_ipv6(ip_packet(rec.data, start, ethertype), stats)
    if l3 is None:
        return rec
    return _resized(rec, rec.data[:12] + tags + b"\x86\xdd" + l3, LT_ETHERNET)


# ----------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class Shape:
    name: str
    title: str
    encapsulation: str                # what `capinfos -M -E` says
    file_type: str = "pcap"           # what `capinfos -M -t` says (None: capinfos cannot read it)
    suffix: str = ".pcap"
    source: str = "original"          # the shape it is made from
    vlan: str = "keep"                # keep | drop (no VLAN tags) | qinq (two outer tags added)
    ipv6: bool = False                # addresses mapped (compare through map_back_ipv6)
    compressor: tuple[str, ...] = ()  # the tool that compresses the source to stdout
    decompressor: tuple[str, ...] = ()
    tshark_reads: bool = True         # else tshark reads it through `decompressor FILE | tshark -r -`
    per_packet: tuple[str, ...] = ()  # capinfos' "Encapsulation in use by packets" (several link types)


SHAPES: tuple[Shape, ...] = (
    Shape("original", "pcap, Ethernet, IPv4 (the original)", "ether"),
    Shape("pcap-be", "pcap, big-endian", "ether"),
    Shape("pcap-ns", "pcap, nanosecond", "ether", "nsecpcap"),
    Shape("pcapng", "pcapng", "ether", "pcapng", ".pcapng"),
    Shape("pcapng-2if", "pcapng, Ethernet + Linux cooked v1", "per-packet", "pcapng", ".pcapng",
          per_packet=("Ethernet", "Linux cooked-mode capture v1")),
    Shape("sll", "Linux cooked v1 (113)", "linux-sll"),
    Shape("sll2", "Linux cooked v2 (276)", "linux-sll2"),
    Shape("raw", "raw IP (101)", "rawip", vlan="drop"),
    Shape("raw4", "raw IPv4 (228)", "rawip4", vlan="drop"),
    Shape("null", "BSD null (0)", "null", vlan="drop"),
    Shape("loop", "BSD loopback (108)", "loop", vlan="drop"),
    Shape("qinq", "QinQ (802.1ad + 802.1Q added)", "ether", vlan="qinq"),
    Shape("ipv6", "IPv6 (same traffic)", "ether", ipv6=True),
    Shape("raw6", "raw IPv6 (229)", "rawip6", source="ipv6", vlan="drop", ipv6=True),
    Shape("gz", "pcap.gz", "ether", "pcap (gzip compressed)", ".pcap.gz", compressor=("gzip", "-c"),
          decompressor=("gzip", "-dc")),
    Shape("zst", "pcap.zst", "ether", "pcap (zstd compressed)", ".pcap.zst", compressor=("zstd", "-q", "-c"),
          decompressor=("zstd", "-q", "-dc")),
    Shape("xz", "pcap.xz", "ether", None, ".pcap.xz", compressor=("xz", "-c", "-T1"),
          decompressor=("xz", "-dc"), tshark_reads=False),
)
BY_NAME = {s.name: s for s in SHAPES}


def _family(af6: int, order: str) -> Callable[[int], bytes]:
    v4, v6 = struct.pack(order + "I", AF_INET), struct.pack(order + "I", af6)
    return lambda ethertype: v4 if ethertype == ETHERTYPE_IPV4 else v6


def _no_header(ethertype: int) -> bytes:
    return b""


def _framing(name: str, stats: Counter) -> tuple[Callable[[BinaryIO], object], Callable[[Record], Record | None]]:
    """(the container writer for a shape, the per-frame conversion; None = the frame cannot be carried)."""
    eth = lambda f: PcapWriter(f, LT_ETHERNET)                    # noqa: E731
    same = lambda rec: rec                                        # noqa: E731
    if name == "pcap-be":
        return lambda f: PcapWriter(f, LT_ETHERNET, big_endian=True), same
    if name == "pcap-ns":
        return lambda f: PcapWriter(f, LT_ETHERNET, nanoseconds=True), same
    if name == "pcapng":
        return lambda f: PcapngWriter(f, [(LT_ETHERNET, 6, "eth0")]), same
    if name == "sll":
        return lambda f: PcapWriter(f, LT_SLL), to_sll
    if name == "sll2":
        return lambda f: PcapWriter(f, LT_SLL2), to_sll2
    if name in ("raw", "raw6"):
        return (lambda f: PcapWriter(f, LT_RAW if name == "raw" else LT_IPV6),
                lambda rec: _ip_only(rec, LT_RAW if name == "raw" else LT_IPV6, _no_header, stats))
    if name == "raw4":
        return lambda f: PcapWriter(f, LT_IPV4), lambda rec: _ip_only(rec, LT_IPV4, _no_header, stats)
    if name == "null":
        return lambda f: PcapWriter(f, LT_NULL), lambda rec: _ip_only(rec, LT_NULL, _family(AF_INET6_NULL, "<"), stats)
    if name == "loop":
        return lambda f: PcapWriter(f, LT_LOOP), lambda rec: _ip_only(rec, LT_LOOP, _family(AF_INET6_LOOP, ">"), stats)
    if name == "qinq":
        return eth, to_qinq
    if name == "ipv6":
        return eth, lambda rec: to_ipv6(rec, stats)
    raise KeyError(name)


def convert(shape: Shape, src: Path, dst: Path) -> Counter:
    """Write one shape of src to dst (through dst.tmp, renamed when complete); the conversion's counts."""
    stats: Counter = Counter()
    tmp = dst.with_name(dst.name + ".tmp")
    if shape.compressor:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            subprocess.run([*shape.compressor], stdin=fin, stdout=fout, check=True)
        stats["frames"] = -1                                       # the source's frames, unchanged
    elif shape.name == "pcapng-2if":
        with open(tmp, "wb", buffering=BUFFER) as f:
            w = PcapngWriter(f, [(LT_ETHERNET, 6, "eth0"), (LT_SLL, 9, "any")])
            for i, rec in enumerate(read_records(src)):
                _expect_ethernet(rec)
                if i % 2:
                    w.write(to_sll(rec), 1)
                else:
                    w.write(rec, 0)
                stats["frames"] += 1
    else:
        make_writer, frame = _framing(shape.name, stats)
        with open(tmp, "wb", buffering=BUFFER) as f:
            w = make_writer(f)
            for rec in read_records(src):
                _expect_ethernet(rec)
                out = frame(rec)
                if out is None:
                    raise CaptureFormatError(f"{shape.name}: frame {stats['frames'] + 1} is not IP and cannot be "
                                             "carried (the base capture should hold IP frames only)")
                w.write(out)
                stats["frames"] += 1
    os.replace(tmp, dst)
    return stats


def _expect_ethernet(rec: Record) -> None:
    if rec.linktype != LT_ETHERNET:
        raise CaptureFormatError(f"the shapes are made from an Ethernet capture, not LINKTYPE {rec.linktype}")


def make_base(src: Path, dst: Path) -> Counter:
    """A capture as the "original" shape: classic little-endian microsecond pcap, Ethernet, only the
    frames every shape can carry (IPv4/IPv6, tagged or not); what was left out is counted."""
    stats: Counter = Counter()
    tmp = dst.with_name(dst.name + ".tmp")
    with open(tmp, "wb", buffering=BUFFER) as f:
        w = PcapWriter(f, LT_ETHERNET)
        for rec in read_records(src):
            _expect_ethernet(rec)
            _, ethertype, _ = split_ethernet(rec.data)
            if ethertype in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
                w.write(Record(rec.linktype, rec.ts_ns // 1000 * 1000, rec.data, rec.orig_len))
                stats["frames"] += 1
            else:
                stats["left_out_ethertype_0x%04x" % ethertype] += 1
    os.replace(tmp, dst)
    return stats


def is_base(src: Path) -> bool:
    """Whether a capture can be the "original" shape as it is (LE us pcap, Ethernet, IP frames only)."""
    with open(src, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or struct.unpack_from("<I", head)[0] != PCAP_MAGIC_US or \
            struct.unpack_from("<I", head, 20)[0] & 0xFFFF != LT_ETHERNET:
        return False
    return all(split_ethernet(r.data)[1] in (ETHERTYPE_IPV4, ETHERTYPE_IPV6) for r in read_records(src))


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(BUFFER):
            h.update(chunk)
    return h.hexdigest()


CODE_HASH = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:8]


def build_shapes(src: Path, cache: Path, names: list[str] | None = None, log=print) -> dict[str, dict]:
    """Every shape of src (or those named), cached in cache/<stem>-<source hash>-<code hash>/.

    Returns name -> {path, stats}; "original" is src itself when it already is one."""
    stem = src.name.split(".")[0]
    key = f"{stem}-{file_hash(src)[:12]}-{CODE_HASH}"
    folder = cache / key
    for old in cache.glob(f"{stem}-*"):                           # the same file changed, or older converters
        if old.name != key and re.fullmatch(re.escape(stem) + r"-[0-9a-f]{12}-[0-9a-f]{8}", old.name):
            shutil.rmtree(old)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [s for s in SHAPES if names is None or s.name in names or s.name == "original"]
    for s in list(wanted):                                        # the shapes they are made from
        if s.source not in (x.name for x in wanted):
            wanted.insert(0, BY_NAME[s.source])
    out: dict[str, dict] = {}
    for shape in wanted:
        meta = folder / f"{shape.name}.json"
        path = folder / f"{shape.name}{shape.suffix}"
        if shape.name == "original" and not meta.is_file():
            if is_base(src):
                meta.write_text(json.dumps(dict(path=str(src), stats={"frames": -1, "as_is": 1})))
        if meta.is_file() and Path(json.loads(meta.read_text())["path"]).is_file():
            out[shape.name] = json.loads(meta.read_text())
            continue
        log(f"  making shape {shape.name} ...")
        stats = make_base(src, path) if shape.name == "original" else \
            convert(shape, Path(out[shape.source]["path"]), path)
        out[shape.name] = dict(path=str(path), stats=dict(stats))
        meta.write_text(json.dumps(out[shape.name]))
    return out


# ----------------------------------------------------------------------------- checking with capinfos

def capinfos(path: Path, capinfos_bin: str = "capinfos") -> dict:
    """capinfos' file type, encapsulation(s) and frame count; `error` when it cannot read the file."""
    p = subprocess.run([capinfos_bin, "-t", "-E", "-c", "-M", str(path)], capture_output=True, text=True,
                       timeout=900)
    if p.returncode != 0:
        return dict(error=(p.stderr.strip().splitlines() or ["capinfos failed"])[-1])
    info: dict = dict(per_packet=[])
    for line in p.stdout.splitlines():
        key, sep, value = line.partition(":")
        if line.startswith(" ") and not sep:                       # "  Ethernet (1500)" under "in use by"
            info["per_packet"].append(re.sub(r"\s*\(\d+\)$", "", line.strip()))
        elif sep:
            info[key.strip()] = value.strip()
    return dict(file_type=info.get("File type"), encapsulation=info.get("File encapsulation"),
                per_packet=info["per_packet"], frames=int(info.get("Number of packets", "-1")))


def check_shape(shape: Shape, path: Path, frames: int, capinfos_bin: str = "capinfos") -> list[str]:
    """What capinfos says that a shape should not be (file type, link type(s), frame count); []: right."""
    if shape.file_type is None:
        return []                                                 # capinfos cannot read it (xz)
    got = capinfos(path, capinfos_bin)
    if "error" in got:
        return [f"capinfos: {got['error']}"]
    problems = []
    for what, want in (("file type", shape.file_type), ("encapsulation", shape.encapsulation),
                       ("frames", frames)):
        have = got[what.replace(" ", "_")]
        if have != want:
            problems.append(f"{what} {have!r}, expected {want!r}")
    if shape.per_packet and sorted(got["per_packet"]) != sorted(shape.per_packet):
        problems.append(f"link types in use {got['per_packet']}, expected {list(shape.per_packet)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path, help="an Ethernet pcap/pcapng capture")
    ap.add_argument("-o", "--out", type=Path, required=True, help="cache folder")
    ap.add_argument("--shapes", help=f"comma-separated subset of {','.join(BY_NAME)}")
    ap.add_argument("--json", type=Path, help="also write {shape: {path, stats}} to this file")
    args = ap.parse_args(argv)
    names = args.shapes.split(",") if args.shapes else None
    unknown = sorted(set(names or ()) - set(BY_NAME))
    if unknown:
        ap.error(f"unknown shapes: {', '.join(unknown)}")
    made = build_shapes(args.source.resolve(), args.out.resolve(), names)
    for name, info in made.items():
        print(f"  {name:12} {info['path']}  {info['stats']}")
    if args.json:
        args.json.write_text(json.dumps(made, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
