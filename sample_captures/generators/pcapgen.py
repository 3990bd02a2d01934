"""Deterministic frame builders and a pcap writer for the bundled sample captures.

Everything here is a pure function of its arguments: fixed start times, seeded RNGs, no wall clock,
so a generator run twice writes byte-identical files (tests/test_samples.py checks this).
"""
from __future__ import annotations

import ipaddress
import math
import struct
from dataclasses import dataclass, field

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_8021Q = 0x8100
ETH_8021AD = 0x88A8


def _checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac(n: int) -> bytes:
    return b"\x02\x00" + n.to_bytes(4, "big")


def ethernet(payload: bytes, ethertype: int, src_mac: bytes = mac(1), dst_mac: bytes = mac(2),
             vlans: tuple[int, ...] = (), outer_tpid: int = ETH_8021Q) -> bytes:
    """Ethernet II with an 802.1Q/802.1ad tag stack outer -> inner (IEEE 802.1Q §9.6)."""
    tpids = [outer_tpid if i == 0 and len(vlans) > 1 else ETH_8021Q for i in range(len(vlans))]
    tags = b"".join(struct.pack("!HH", tpid, vid & 0x0FFF) for tpid, vid in zip(tpids, vlans))
    return dst_mac + src_mac + tags + struct.pack("!H", ethertype) + payload


def ipv4(src: str, dst: str, proto: int, payload: bytes, ident: int = 0, ttl: int = 64,
         flags_frag: int = 0) -> bytes:
    """RFC 791 header without options, checksum filled in."""
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, flags_frag, ttl, proto, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + payload


def ipv6(src: str, dst: str, next_header: int, payload: bytes, hop_limit: int = 64) -> bytes:
    """RFC 8200 §3 fixed header."""
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), next_header, hop_limit,
                       ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed) + payload


def udp(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    """RFC 768 datagram with the pseudo-header checksum (IPv4 or IPv6)."""
    length = 8 + len(payload)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    pseudo = _pseudo_header(src, dst, 17, length)
    csum = _checksum(pseudo + header + payload) or 0xFFFF
    return struct.pack("!HHHH", sport, dport, length, csum) + payload


def tcp(src: str, sport: int, dst: str, dport: int, seq: int, ack: int, flags: int, payload: bytes = b"",
        window: int = 65535) -> bytes:
    """RFC 9293 §3.1 header without options."""
    header = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags,
                         window, 0, 0)
    csum = _checksum(_pseudo_header(src, dst, 6, len(header) + len(payload)) + header + payload)
    return header[:16] + struct.pack("!H", csum) + header[18:] + payload


def _pseudo_header(src: str, dst: str, proto: int, length: int) -> bytes:
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if a.version == 4:
        return a.packed + b.packed + struct.pack("!BBH", 0, proto, length)
    return a.packed + b.packed + struct.pack("!IxxxB", length, proto)


def rtp(seq: int, timestamp: int, ssrc: int, pt: int, payload: bytes, marker: bool = False) -> bytes:
    """RFC 3550 §5.1 fixed header, version 2, no CSRC."""
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, timestamp & 0xFFFFFFFF,
                       ssrc) + payload


def linear_to_ulaw(sample: int) -> int:
    """ITU-T G.711 mu-law encoding of a 16-bit linear sample."""
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    sample = min(abs(sample), clip) + bias
    exponent = max(0, sample.bit_length() - 8)
    exponent = min(exponent, 7)
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def tone_ulaw(freq_hz: float, amplitude: float, n_samples: int, start_sample: int = 0,
              rate: int = 8000) -> bytes:
    """A sine tone as G.711 mu-law bytes (amplitude as a fraction of full scale)."""
    return bytes(linear_to_ulaw(int(round(amplitude * 32767 * math.sin(2 * math.pi * freq_hz * (start_sample + i) / rate))))
                 for i in range(n_samples))


@dataclass
class PcapWriter:
    """Classic pcap (microsecond, little-endian), frames kept in memory and sorted by time on save."""
    linktype: int = 1
    snaplen: int = 262144
    frames: list[tuple[float, int, bytes]] = field(default_factory=list)

    def add(self, ts: float, frame: bytes) -> None:
        self.frames.append((ts, len(self.frames), frame))

    def save(self, path) -> None:
        out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, self.snaplen, self.linktype)]
        for ts, _, frame in sorted(self.frames):
            usec_total = int(round(ts * 1_000_000))
            out.append(struct.pack("<IIII", usec_total // 1_000_000, usec_total % 1_000_000, len(frame), len(frame)))
            out.append(frame)
        with open(path, "wb") as fh:
            fh.write(b"".join(out))


@dataclass
class UdpCapture:
    """Ethernet/IPv4/UDP frames into a PcapWriter: IP identifications count up, each MAC is made from
    the last two octets of its IPv4 address."""
    pcap: PcapWriter = field(default_factory=PcapWriter)
    ident: int = 0

    def udp(self, ts: float, src: str, sport: int, dst: str, dport: int, payload: bytes) -> None:
        self.ident += 1
        packet = ipv4(src, dst, 17, udp(src, sport, dst, dport, payload), ident=self.ident & 0xFFFF)
        self.pcap.add(ts, ethernet(packet, ETH_IPV4, _host_mac(src), _host_mac(dst)))


def _host_mac(address: str) -> bytes:
    return mac(int.from_bytes(ipaddress.IPv4Address(address).packed[2:], "big"))


def sip_message(start_line: str, headers: list[tuple[str, str]], body: str = "") -> bytes:
    """A SIP message with CRLF line ends and a correct Content-Length (RFC 3261 §7)."""
    lines = [start_line] + [f"{name}: {value}" for name, value in headers]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def sdp_body(origin_ip: str, media_ip: str, port: int, proto: str = "RTP/AVP",
             formats: tuple[tuple[int, str], ...] = ((0, "PCMU/8000"), (101, "telephone-event/8000")),
             extra: tuple[str, ...] = (), session_id: int = 1) -> str:
    """An RFC 4566 session with one audio m= line."""
    fmts = " ".join(str(pt) for pt, _ in formats)
    lines = ["v=0", f"o=- {session_id} 1 IN IP4 {origin_ip}", "s=voipwatch sample", f"c=IN IP4 {media_ip}", "t=0 0",
             f"m=audio {port} {proto} {fmts}"]
    lines += [f"a=rtpmap:{pt} {name}" for pt, name in formats]
    lines += list(extra) + ["a=sendrecv"]
    return "\r\n".join(lines) + "\r\n"
