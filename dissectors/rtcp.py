"""RTP Control Protocol (RFC 3550 §6): compound packets, reception reports, SDES CNAME, SRTCP framing."""
from __future__ import annotations

import struct

from voipwatch.records import Anomaly, PacketMeta, RtcpPacket, RtcpReportBlock

# RFC 3550 §6.4.1 common header of every RTCP packet (SR shown):
#     0                   1                   2                   3
#     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
#    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
#    |V=2|P|    RC   |   PT=SR=200   |             length            |
#    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
#    |                         SSRC of sender                        |
#    +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
#    |              NTP timestamp, most significant word             |
#    |             NTP timestamp, least significant word             |
#    |                         RTP timestamp                         |
#    |                     sender's packet count                     |
#    |                      sender's octet count                     |
#    +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
#    |                 SSRC_1 (SSRC of first source)                 |
#    | fraction lost |       cumulative number of packets lost       |
#    |           extended highest sequence number received           |
#    |                      interarrival jitter                      |
#    |                         last SR (LSR)                         |
#    |                   delay since last SR (DLSR)                  |
#    +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
# length = packet size in 32-bit words minus one, header and padding included.
HEADER = struct.Struct("!BBH")        # V P RC | PT | length
SSRC = struct.Struct("!I")
SENDER_INFO_LEN = 20                  # NTP msw, NTP lsw, RTP timestamp, packet count, octet count
REPORT_BLOCK = struct.Struct("!IIIIII")  # SSRC | fraction(8) cumulative(24) | ext. highest seq | jitter | LSR | DLSR
# RFC 3550 §6.5 SDES chunk: SSRC/CSRC, then items | type(8) | length(8) | text | ..., END item (0),
# then zero octets up to the next 32-bit boundary.
SDES_ITEM = struct.Struct("!BB")      # item type | text length
SDES_END = 0
SDES_CNAME = 1

VERSION = 2
RC_MASK = 0x1F

# RTCP packet types (IANA "RTP Control Protocol (RTCP) Control Packet Types"):
PACKET_TYPES: dict[int, str] = {
    200: "SR",     # RFC 3550 §6.4.1
    201: "RR",     # RFC 3550 §6.4.2
    202: "SDES",   # RFC 3550 §6.5
    203: "BYE",    # RFC 3550 §6.6
    204: "APP",    # RFC 3550 §6.7
    205: "RTPFB",  # RFC 4585 §6.2 transport-layer feedback
    206: "PSFB",   # RFC 4585 §6.3 payload-specific feedback
    207: "XR",     # RFC 3611 extended reports
}
SR, RR, SDES = 200, 201, 202
# RFC 5761 §4: RTCP packet types live in 192..223 (the RTP payload types 64..95 with the marker bit).
PT_FIRST, PT_LAST = 192, 223

# RFC 3711 §3.4: an SRTCP packet is the compound RTCP packet followed by the E flag and 31-bit
# SRTCP index (one 32-bit word), an optional MKI and the authentication tag. Only the first 8
# octets (header and sender SSRC) of the compound packet are left in clear.
SRTCP_INDEX_LEN = 4

# Every Anomaly.name parse_rtcp gives (layer "rtcp").
ANOMALIES = {
    "rtcp.bad_version": "a datagram taken as RTCP whose version is not 2 (RFC 3550 §6.4.1)",
    "rtcp.bad_length": "shorter than a header, a length field overrunning the datagram, stray trailing octets, "
                       "or report blocks overrunning their packet (RFC 3550 §6.4)",
    "rtcp.bad_sdes": "SDES chunks overrunning their packet (RFC 3550 §6.5)",
}


def _walk(payload: bytes) -> tuple[list[tuple[int, int, int, int]], int]:
    """Follow the length fields: [(offset, size, rc, pt)] of well-formed packets, and where they end."""
    packets = []
    off, n = 0, len(payload)
    while off + HEADER.size <= n:
        b0, pt, words = HEADER.unpack_from(payload, off)
        size = (words + 1) * 4
        if b0 >> 6 != VERSION or not PT_FIRST <= pt <= PT_LAST or off + size > n:
            break
        packets.append((off, size, b0 & RC_MASK, pt))
        off += size
    return packets, off


def _report_blocks(payload: bytes, start: int, end: int, count: int) -> tuple[RtcpReportBlock, ...] | None:
    """`count` RFC 3550 §6.4.1 report blocks from `start`, or None if they do not fit before `end`."""
    if start + count * REPORT_BLOCK.size > end:
        return None
    blocks = []
    for i in range(count):
        ssrc, loss, highest, jitter, lsr, dlsr = REPORT_BLOCK.unpack_from(payload, start + i * REPORT_BLOCK.size)
        cumulative = loss & 0xFFFFFF
        if cumulative & 0x800000:          # signed 24-bit (RFC 3550 §6.4.1: may be negative with duplicates)
            cumulative -= 1 << 24
        blocks.append(RtcpReportBlock(ssrc=ssrc, fraction_lost=loss >> 24, cumulative_lost=cumulative,
                                      highest_seq=highest, jitter=jitter, lsr=lsr, dlsr=dlsr))
    return tuple(blocks)


def _cnames(payload: bytes, start: int, end: int, count: int) -> tuple[list[str], bool]:
    """CNAME texts of `count` SDES chunks (RFC 3550 §6.5) and whether the chunks were well formed."""
    names = []
    off = start
    for _ in range(count):
        off += SSRC.size
        while True:
            if off >= end:
                return names, False
            kind = payload[off]
            if kind == SDES_END:
                off = (off + 4) & ~3       # END octet, then pad to the 32-bit boundary
                break
            if off + SDES_ITEM.size > end:
                return names, False
            kind, length = SDES_ITEM.unpack_from(payload, off)
            off += SDES_ITEM.size
            if off + length > end:
                return names, False
            if kind == SDES_CNAME:
                names.append(payload[off:off + length].decode("utf-8", errors="replace"))
            off += length
    return names, off <= end


def parse_rtcp(meta: PacketMeta, payload: bytes) -> tuple[RtcpPacket | None, list[Anomaly]]:
    """One UDP datagram of (compound) RTCP, or SRTCP when 4 or more octets follow the last packet.

    Never raises. Anomalies (layer "rtcp"): rtcp.bad_version (first octet not version 2),
    rtcp.bad_length (shorter than one header, a length field overrunning the datagram, fewer than
    4 stray trailing octets, report blocks overrunning their packet), rtcp.bad_sdes (SDES chunks
    overrunning their packet). With SRTCP (encrypted=True) only the first packet's type and the
    sender SSRC are reported: the rest is ciphertext (RFC 3711 §3.4).
    """
    def anomaly(name: str, detail: str) -> Anomaly:
        return Anomaly(ts=meta.ts, frame=meta.frame, layer="rtcp", name=name, detail=detail,
                       src=meta.src, dst=meta.dst)

    n = len(payload)
    if n < HEADER.size:
        return None, [anomaly("rtcp.bad_length", f"{n} octets, shorter than the 4-octet RTCP header")]
    if payload[0] >> 6 != VERSION:
        return None, [anomaly("rtcp.bad_version", f"version {payload[0] >> 6}, expected 2")]
    packets, end = _walk(payload)
    if not packets:
        _, pt, words = HEADER.unpack_from(payload)
        return None, [anomaly("rtcp.bad_length", f"packet type {pt} declares {(words + 1) * 4} octets, "
                                                 f"the datagram has {n}")]
    sender_ssrc = SSRC.unpack_from(payload, SSRC.size)[0] if packets[0][1] >= 2 * SSRC.size else None
    trailing = n - end
    if trailing >= SRTCP_INDEX_LEN:
        kind = PACKET_TYPES.get(packets[0][3], str(packets[0][3]))
        return RtcpPacket(pkt=meta, kinds=(kind,), sender_ssrc=sender_ssrc, encrypted=True), []
    anomalies = []
    if trailing:
        anomalies.append(anomaly("rtcp.bad_length", f"{trailing} stray octets after the last RTCP packet"))
    kinds, reports, cnames = [], [], []
    for off, size, count, pt in packets:
        kinds.append(PACKET_TYPES.get(pt, str(pt)))
        if pt in (SR, RR):
            first_block = off + HEADER.size + SSRC.size + (SENDER_INFO_LEN if pt == SR else 0)
            blocks = _report_blocks(payload, first_block, off + size, count)
            if blocks is None:
                anomalies.append(anomaly("rtcp.bad_length", f"{PACKET_TYPES[pt]} with {count} report blocks "
                                                            f"in {size} octets"))
            else:
                reports.extend(blocks)
        elif pt == SDES:
            names, ok = _cnames(payload, off + HEADER.size, off + size, count)
            cnames.extend(names)
            if not ok:
                anomalies.append(anomaly("rtcp.bad_sdes", f"{count} SDES chunks overrun {size} octets"))
    return RtcpPacket(pkt=meta, kinds=tuple(kinds), sender_ssrc=sender_ssrc, reports=tuple(reports),
                      cnames=tuple(cnames)), anomalies


def looks_like_rtcp(payload: bytes) -> bool:
    """Wireshark 4.0's `rtcp_udp` heuristic (dissect_rtcp_heur in epan/dissectors/packet-rtcp.c).

    Version 2, first packet type SR, RR, BYE, APP or PSFB, and a length that is a multiple of 4;
    no port parity test (checked against tshark 4.0.17). Stricter than Wireshark in one point: at
    least 8 octets, since every one of those packet types carries an SSRC after its header.
    """
    return (len(payload) >= 2 * SSRC.size and len(payload) % 4 == 0 and payload[0] >> 6 == VERSION
            and payload[1] in (200, 201, 203, 204, 206))
