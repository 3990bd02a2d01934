"""Frame -> UDP datagram / TCP segment: link, IP (with reassembly and tunnels) and transport in one call.

``NetworkDecoder.decode`` is the pipeline's single entry point. Every frame ends as exactly one of
a ``Datagram`` (UDP or TCP with its payload), a ``Skipped`` (a named bucket: ARP, LLDP, ICMP,
a fragment still waiting, ...) or an ``Anomaly``. Tunnels (IP-in-IP, GRE, PPP-in-GRE, Ethernet
over GRE) are followed to the innermost packet, whose addresses are the ones reported.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from dissectors import ip, ipfrag, link
from dissectors.ipfrag import FragmentReassembler
from voipwatch.records import Anomaly, Frame, PacketMeta

MAX_ENCAP_DEPTH = 4               # IP headers followed through tunnels before giving up

# The common case decoded straight-line: Ethernet II (IEEE 802.3 §3.1.1) EtherType(2) at byte 12,
# an optional 802.1Q tag (TCI(2) EtherType(2)), then IPv4 without options (RFC 791 §3.1) + UDP (RFC 768).
_U16 = struct.Struct("!H")
_TAG = struct.Struct("!HH")
_V4_UDP = struct.Struct("!BBHHHBBH4s4sHHHH")

# PacketMeta is a frozen slotted dataclass whose generated __init__ sets each field through
# object.__setattr__ (~0.85 µs); setting the slots through their descriptors builds the identical
# object in half the time. The fast path below uses it; the general path uses the constructor.
_new = object.__new__
_SET_TS, _SET_FRAME = PacketMeta.ts.__set__, PacketMeta.frame.__set__  # type: ignore[attr-defined]
_SET_VLAN = PacketMeta.vlan.__set__  # type: ignore[attr-defined]
_SET_SRC, _SET_SPORT = PacketMeta.src.__set__, PacketMeta.sport.__set__  # type: ignore[attr-defined]
_SET_DST, _SET_DPORT = PacketMeta.dst.__set__, PacketMeta.dport.__set__  # type: ignore[attr-defined]
_SET_TRANSPORT = PacketMeta.transport.__set__  # type: ignore[attr-defined]

# Every name decode() can put in Skipped.bucket (a frame class) or Anomaly.name, with its meaning
# (a contract: tests hold decode to it). A frame decode() returns as an Anomaly is counted under its name.
BUCKETS = {
    **link.BUCKETS,
    "icmp": "ICMP (IP protocol 1)",
    "icmpv6": "ICMPv6 (IP protocol 58)",
    "igmp": "IGMP (IP protocol 2)",
    "ip.other_proto": "any other IP protocol that is not UDP or TCP",
    "ip.fragment_pending": "an IP fragment held until its datagram is whole (the frame completing it is counted "
                           "as the datagram)",
}
ANOMALIES = {
    **link.ANOMALIES, **ip.ANOMALIES, **ipfrag.ANOMALIES,
    "ip.encap_too_deep": f"more than {MAX_ENCAP_DEPTH} nested IP headers (tunnels)",
    "ip.bad_length": "an IP length field reaching past a frame the capture holds whole (decoded anyway)",
    "udp.truncated": "a UDP header cut short",
    "udp.bad_length": "a UDP length below 8 or past the IP payload (RFC 768; decoded to the IP payload's end)",
    "tcp.truncated": "a TCP header cut short",
    "tcp.bad_header_length": "a TCP data offset below 5 (RFC 9293 §3.1)",
}
# The names above that never stand for a frame: they ride on a decoded Datagram, or come from
# expire() and finish(). decode() returns the others in place of a frame.
NOT_FRAMES = frozenset(("ip.bad_length", "udp.bad_length", "ip.fragment_timeout", "ip.fragment_incomplete_at_end"))

_PROTO_BUCKETS = {ip.PROTO_ICMP: "icmp", ip.PROTO_ICMPV6: "icmpv6", ip.PROTO_IGMP: "igmp"}
_LAYER = {"link": "link", "ip": "ip", "ipv6": "ip", "gre": "ip", "udp": "udp", "tcp": "tcp"}


@dataclass(slots=True)
class Datagram:
    """A decoded UDP datagram or TCP segment."""
    meta: PacketMeta               # transport "udp" | "tcp"; the innermost addresses when tunnelled
    payload: bytes
    src_mac: str | None = None
    dst_mac: str | None = None
    tcp_seq: int | None = None
    tcp_flags: int | None = None   # RFC 9293 flag bits (FIN 0x01, SYN 0x02, RST 0x04, ...)
    tunnels: tuple[tuple[str, str, str], ...] = ()  # ("ipip" | "gre", outer src, outer dst), outer first
    truncated: bool = False        # the capture cut the payload short of what the headers declare
    anomaly: Anomaly | None = None  # a defect that did not stop decoding (e.g. udp.bad_length)
    ip_id: int = 0                 # the innermost IP header's identification (IPv4) or flow label (IPv6)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A frame that is not UDP/TCP: counted in a named bucket, never silent."""
    bucket: str                    # one of BUCKETS: "arp", "lldp", "cdp", "icmp", "ip.fragment_pending", ...
    payload: bytes = b""           # for lldp/cdp, the raw L2 payload; for icmp/icmpv6, the ICMP message
    src_mac: str | None = None
    vlan: tuple[int, ...] = ()
    src: str | None = None         # for icmp/icmpv6: the IP addresses, identification (IPv4) or flow
    dst: str | None = None         # label (IPv6), and destination MAC
    ip_id: int = 0
    dst_mac: str | None = None


class NetworkDecoder:
    """Decodes frames; holds the only cross-frame state of this layer, the IP fragment table."""

    def __init__(self, reassembler: FragmentReassembler | None = None) -> None:
        self.fragments = reassembler if reassembler is not None else FragmentReassembler()

    def decode(self, frame: Frame) -> Datagram | Skipped | Anomaly:
        data = frame.data
        if frame.linktype == link.LINKTYPE_ETHERNET and len(data) >= 42:
            off, vlan = 14, ()
            ethertype = _U16.unpack_from(data, 12)[0]
            if ethertype == 0x8100:
                tci, ethertype = _TAG.unpack_from(data, 14)
                off, vlan = 18, (tci & 0x0FFF,)
            if ethertype == link.ETHERTYPE_IPV4 and data[off] == 0x45 and len(data) - off >= 28:
                _, _, total, ident, frag, _, proto, _, src, dst, sport, dport, ulen, _ = _V4_UDP.unpack_from(data, off)
                if (proto == ip.PROTO_UDP and not frag & 0x3FFF and ulen == total - 20 and ulen >= 8
                        and off + total <= len(data)):
                    dst_mac, src_mac = link.mac_pair(data[:12])
                    meta = _new(PacketMeta)
                    _SET_TS(meta, frame.ts); _SET_FRAME(meta, frame.frame); _SET_VLAN(meta, vlan)  # noqa: E702
                    _SET_SRC(meta, ip.ntop(src)); _SET_SPORT(meta, sport); _SET_DST(meta, ip.ntop(dst))  # noqa: E702
                    _SET_DPORT(meta, dport); _SET_TRANSPORT(meta, "udp")  # noqa: E702
                    return Datagram(meta, data[off + 28:off + total], src_mac, dst_mac, ip_id=ident)
        return self._decode(frame)

    def expire(self, now: float) -> list[Anomaly]:
        """Report fragmented datagrams still incomplete FRAGMENT_TIMEOUT_S after their first fragment."""
        return [Anomaly(ts, number, "ip", "ip.fragment_timeout", detail)
                for ts, number, detail in self.fragments.expire(now)]

    def finish(self) -> list[Anomaly]:
        """End of input: fragmented datagrams still incomplete (their other fragments were not captured)."""
        return [Anomaly(ts, number, "ip", "ip.fragment_incomplete_at_end", detail)
                for ts, number, detail in self.fragments.expire(float("inf"))]

    def _decode(self, frame: Frame) -> Datagram | Skipped | Anomaly:
        """Every layer combination; the fast path above is this function's answer for its case."""
        data = frame.data
        lk = link.decode_link(frame.linktype, data)
        if type(lk) is tuple:
            return _anomaly(frame, lk)
        if lk.bucket is not None:
            return _skipped(lk.bucket, lk, data, len(data), lk.vlan, lk.src_mac)
        buf, off, end = data, lk.offset, len(data)
        vlan, src_mac, dst_mac, ethertype = lk.vlan, lk.src_mac, lk.dst_mac, lk.ethertype
        tunnels: list[tuple[str, str, str]] = []
        for _ in range(MAX_ENCAP_DEPTH):
            pkt = ip.parse_ipv4(buf, off, end) if ethertype == link.ETHERTYPE_IPV4 else ip.parse_ipv6(buf, off, end)
            if type(pkt) is tuple:
                return _anomaly(frame, pkt)
            if pkt.frag_id is not None:
                pkt = self._reassemble(frame, pkt, ethertype, vlan)
                if type(pkt) is not ip.IpPacket:
                    return pkt if type(pkt) is Anomaly else Skipped("ip.fragment_pending", b"", src_mac, vlan)
            proto = pkt.proto
            if proto == ip.PROTO_UDP or proto == ip.PROTO_TCP:
                return _transport(frame, pkt, vlan, src_mac, dst_mac, tuple(tunnels))
            if proto == ip.PROTO_IPIP or proto == ip.PROTO_IPV6:
                tunnels.append(("ipip", ip.ntop(pkt.src), ip.ntop(pkt.dst)))
                ethertype = link.ETHERTYPE_IPV4 if proto == ip.PROTO_IPIP else link.ETHERTYPE_IPV6
                buf, off, end = pkt.buf, pkt.start, pkt.end
                continue
            if proto == ip.PROTO_ICMP or proto == ip.PROTO_ICMPV6:
                return Skipped(_PROTO_BUCKETS[proto], bytes(pkt.buf[pkt.start:pkt.end]), src_mac, vlan,
                               ip.ntop(pkt.src), ip.ntop(pkt.dst), pkt.ident, dst_mac)
            if proto != ip.PROTO_GRE:
                return Skipped(_PROTO_BUCKETS.get(proto, "ip.other_proto"), b"", src_mac, vlan)
            gre = ip.parse_gre(pkt.buf, pkt.start, pkt.end)
            if type(gre[0]) is str:
                return _anomaly(frame, gre)
            tunnels.append(("gre", ip.ntop(pkt.src), ip.ntop(pkt.dst)))
            gre_proto, start = gre
            buf, off, end = pkt.buf, start, pkt.end
            if gre_proto == link.ETHERTYPE_IPV4 or gre_proto == link.ETHERTYPE_IPV6:
                ethertype = gre_proto
                continue
            if gre_proto == ip.GRE_TEB:
                lk = link.decode_ethernet(buf, off, end)
            elif gre_proto == ip.GRE_PPP:
                lk = link.decode_ppp(buf, off, end)
            else:
                return _anomaly(frame, ("gre.unsupported", f"GRE protocol type 0x{gre_proto:04x}"))
            if type(lk) is tuple:
                return _anomaly(frame, lk)
            # the innermost Ethernet names the hosts; its tags extend the outer stack
            vlan = vlan + lk.vlan
            if lk.src_mac is not None:
                src_mac, dst_mac = lk.src_mac, lk.dst_mac
            if lk.bucket is not None:
                return _skipped(lk.bucket, lk, buf, end, vlan, src_mac)
            ethertype, off = lk.ethertype, lk.offset
        return _anomaly(frame, ("ip.encap_too_deep", f"more than {MAX_ENCAP_DEPTH} nested IP headers"))

    def _reassemble(self, frame: Frame, pkt: ip.IpPacket, ethertype: int,
                    vlan: tuple[int, ...]) -> ip.IpPacket | Anomaly | None:
        """Feed a fragment; the whole datagram when this frame completes it, else None or an Anomaly."""
        if pkt.declared_end > pkt.end:
            return _anomaly(frame, ("ip.truncated", "fragment cut short by the capture: cannot reassemble"),
                            ip.ntop(pkt.src), ip.ntop(pkt.dst))
        v6 = ethertype == link.ETHERTYPE_IPV6
        # RFC 791 keys on (src, dst, protocol, id); RFC 8200 on (src, dst, id); both kept apart per VLAN
        key = (6, pkt.src, pkt.dst, pkt.frag_id, vlan) if v6 else (4, pkt.src, pkt.dst, pkt.proto, pkt.frag_id, vlan)
        got = self.fragments.add(key, pkt.frag_offset, pkt.frag_more, pkt.proto, pkt.buf[pkt.start:pkt.end],
                                 frame.ts, frame.frame)
        if got is None:
            return None
        if type(got[0]) is str:
            return _anomaly(frame, got, ip.ntop(pkt.src), ip.ntop(pkt.dst))
        proto, payload = got
        whole = ip.IpPacket(pkt.src, pkt.dst, proto, payload, 0, len(payload), len(payload), ident=pkt.frag_id)
        if not v6:
            return whole
        whole = ip.ipv6_extensions(whole)           # headers after the Fragment header are in the payload
        return _anomaly(frame, whole) if type(whole) is tuple else whole


def _transport(frame: Frame, pkt: ip.IpPacket, vlan: tuple[int, ...], src_mac: str | None,
               dst_mac: str | None, tunnels: tuple[tuple[str, str, str], ...]) -> Datagram | Anomaly:
    buf, start, end = pkt.buf, pkt.start, pkt.end
    src, dst = ip.ntop(pkt.src), ip.ntop(pkt.dst)
    note = None
    if pkt.declared_end > end and len(frame.data) >= frame.wire_len:
        # The frame is whole on the wire, so a length field reaching past it is corrupt, not a capture cut.
        note = _anomaly(frame, ("ip.bad_length", f"IP length field claims {pkt.declared_end - start} payload "
                                                 f"bytes, the frame holds {end - start}"), src, dst)
    if pkt.proto == ip.PROTO_UDP:
        if end - start < 8:
            return _anomaly(frame, ("udp.truncated", f"UDP header needs 8 bytes, {end - start} captured"), src, dst)
        sport, dport, ulen, _ = ip.UDP.unpack_from(buf, start)
        declared = pkt.declared_end - start
        if ulen < 8 or ulen > declared:       # RFC 768: length covers header + data, within the IP payload
            # one defect per datagram: a corrupt IP length is the cause when there is one
            note = note or _anomaly(frame, ("udp.bad_length", f"UDP length {ulen}, IP payload {declared}"), src, dst)
            stop = pkt.declared_end
        else:
            stop = start + ulen               # a shorter UDP length trims trailing bytes, as Wireshark does
        meta = PacketMeta(frame.ts, frame.frame, vlan, src, sport, dst, dport, "udp")
        return Datagram(meta, buf[start + 8:min(stop, end)], src_mac, dst_mac, None, None, tunnels,
                        stop > end, note, pkt.ident)
    if end - start < 20:
        return _anomaly(frame, ("tcp.truncated", f"TCP header needs 20 bytes, {end - start} captured"), src, dst)
    sport, dport, seq, _, offflags, _, _, _ = ip.TCP.unpack_from(buf, start)
    hlen = (offflags >> 12) * 4
    if hlen < 20:
        return _anomaly(frame, ("tcp.bad_header_length", f"data offset {hlen // 4}"), src, dst)
    if start + hlen > end:
        return _anomaly(frame, ("tcp.truncated", f"TCP header of {hlen} bytes, {end - start} captured"), src, dst)
    meta = PacketMeta(frame.ts, frame.frame, vlan, src, sport, dst, dport, "tcp")
    return Datagram(meta, buf[start + hlen:end], src_mac, dst_mac, seq, offflags & 0x01FF, tunnels,
                    pkt.declared_end > end, note, pkt.ident)


def _skipped(bucket: str, lk: link.Link, buf: bytes, end: int, vlan: tuple[int, ...],
             src_mac: str | None) -> Skipped:
    payload = buf[lk.offset:end if lk.end is None else lk.end] if bucket in link.RAW_PAYLOAD_BUCKETS else b""
    return Skipped(bucket, payload, src_mac, vlan)


def _anomaly(frame: Frame, what: tuple[str, str], src: str | None = None, dst: str | None = None) -> Anomaly:
    name, detail = what
    return Anomaly(frame.ts, frame.frame, _LAYER.get(name.partition(".")[0], "link"), name, detail, src, dst)
