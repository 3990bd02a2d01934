"""Real-time Transport Protocol (RFC 3550 §5): header fields, static payload types, header heuristic."""
from __future__ import annotations

import struct

from voipwatch.records import Anomaly, PacketMeta, RtpPacket

# RFC 3550 §5.1 fixed header:
#     0                   1                   2                   3
#     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
#    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
#    |V=2|P|X|  CC   |M|     PT      |       sequence number         |
#    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
#    |                           timestamp                           |
#    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
#    |           synchronization source (SSRC) identifier            |
#    +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
#    |            contributing source (CSRC) identifiers             |
#    |                             ....                              |
#    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
FIXED = struct.Struct("!BBHII")      # V P X CC | M PT | sequence | timestamp | SSRC
CSRC_LEN = 4                         # each CSRC identifier is 32 bits
# RFC 3550 §5.3.1 header extension, after the CSRC list:
#    |      defined by profile       |           length              |
#    |                        header extension (length 32-bit words) |
EXTENSION = struct.Struct("!HH")     # profile-defined | length in 32-bit words (excluding these 4 octets)

VERSION = 2
VERSION_2_OCTETS = frozenset(range(0x80, 0xC0))   # first octets of version 2 (RTP and RTCP, RFC 3550 §6.4.1)
PADDING_BIT = 0x20
EXTENSION_BIT = 0x10
CC_MASK = 0x0F
MARKER_BIT = 0x80
PT_MASK = 0x7F

# RFC 3551 §6 Tables 4 and 5: static payload type -> (encoding name, clock rate Hz).
# Encoding names as registered for SDP a=rtpmap (RFC 4856); unassigned and reserved numbers are absent.
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int]] = {
    0: ("PCMU", 8000),
    3: ("GSM", 8000),
    4: ("G723", 8000),
    5: ("DVI4", 8000),
    6: ("DVI4", 16000),
    7: ("LPC", 8000),
    8: ("PCMA", 8000),
    9: ("G722", 8000),     # RFC 3551 §4.5.2: 8000 Hz by historical error, the codec samples at 16000
    10: ("L16", 44100),    # two channels
    11: ("L16", 44100),    # one channel
    12: ("QCELP", 8000),
    13: ("CN", 8000),      # RFC 3389 comfort noise
    14: ("MPA", 90000),
    15: ("G728", 8000),
    16: ("DVI4", 11025),
    17: ("DVI4", 22050),
    18: ("G729", 8000),
    25: ("CelB", 90000),
    26: ("JPEG", 90000),
    28: ("nv", 90000),
    31: ("H261", 90000),
    32: ("MPV", 90000),
    33: ("MP2T", 90000),
    34: ("H263", 90000),
}

# RFC 5761 §4: with RTP and RTCP on one port, a second octet in 192..223 (M bit set, PT 64..95)
# is RTCP (packet types 192..223); RTP must not use payload types 64..95.
RTCP_MUX_FIRST = 192
RTCP_MUX_LAST = 223

# RFC 3551 §3 / RFC 5761 §4: payload types 72..76 collide with RTCP SR/RR/SDES/BYE/APP once the
# marker bit is set; Wireshark's heuristic rejects them whatever the marker bit.
RTCP_CONFLICT_PT_FIRST = 72
RTCP_CONFLICT_PT_LAST = 76

# Every Anomaly.name of this module (layer "rtp"); the RTP stream table's cap is voipwatch.pipeline's.
ANOMALIES = {
    "rtp.malformed": "a datagram to or from SDP-announced RTP media that is neither RTP nor RTCP "
                     "(short, not version 2, or its CSRC list or extension overruns it)",
}


def codec_name(pt: int, rtpmap: dict[int, tuple[str, int]] | None = None) -> str | None:
    """Encoding name of payload type `pt`: the SDP rtpmap entry if any, else RFC 3551's static name."""
    entry = rtpmap.get(pt) if rtpmap else None
    if entry is None:
        entry = STATIC_PAYLOAD_TYPES.get(pt)
    return entry[0] if entry else None


def clock_rate(pt: int, rtpmap: dict[int, tuple[str, int]] | None = None) -> int | None:
    """RTP clock rate (Hz) of payload type `pt`: the SDP rtpmap entry if any, else RFC 3551's static rate."""
    entry = rtpmap.get(pt) if rtpmap else None
    if entry is None:
        entry = STATIC_PAYLOAD_TYPES.get(pt)
    return entry[1] if entry and entry[1] > 0 else None


def is_rtcp_payload(payload: bytes) -> bool:
    """RFC 5761 §4 demultiplexing: version 2 and a second octet of 192..223 means RTCP, not RTP."""
    return (len(payload) >= 2 and payload[0] >> 6 == VERSION
            and RTCP_MUX_FIRST <= payload[1] <= RTCP_MUX_LAST)


def _header_len(payload: bytes) -> int | None:
    """Octets of fixed header + CSRC list + extension (RFC 3550 §5.3.1), or None if they overrun."""
    n = len(payload)
    off = FIXED.size + CSRC_LEN * (payload[0] & CC_MASK)
    if payload[0] & EXTENSION_BIT:
        if n - off < EXTENSION.size:
            return None
        _, words = EXTENSION.unpack_from(payload, off)
        off += EXTENSION.size + 4 * words
    return off if off <= n else None


# UDP ports of LAN services that own their datagrams: tshark gives a datagram to the dissector
# registered for its port before trying any heuristic (epan/dissectors/packet-udp.c,
# decode_udp_ports), so its RTP heuristic never claims these; neither does voipwatch's.
# DNS 53, DHCP 67/68, TFTP 69, NTP 123, NetBIOS 137/138, SNMP 161/162, IKE 500/4500, syslog 514,
# RIP 520, DHCPv6 546/547, SSDP 1900, mDNS 5353, LLMNR 5355; and the other VoIP signalling on UDP:
# H.225 RAS 1719, MGCP 2427/2727, IAX2 4569 (RFC 5456 full frames start with the F bit, like RTP v2),
# and SIP itself, 5060/5061 (RFC 3261 §19.1.2): a damaged SIP message whose first octet has RTP's
# version bits is not media. Media on these ports is RTP only where SDP announced it.
HEURISTIC_EXCLUDED_PORTS = frozenset({53, 67, 68, 69, 123, 137, 138, 161, 162, 500, 514, 520, 546, 547,
                                      1719, 1900, 2427, 2727, 4500, 4569, 5060, 5061, 5353, 5355})


def looks_like_rtp(payload: bytes) -> bool:
    """True when Wireshark 4.0 would decode this UDP payload as RTP through its `rtp_udp` heuristic.

    The rule of dissect_rtp_heur() in epan/dissectors/packet-rtp.c (4.0.x), checked against
    tshark 4.0.17 with crafted packets (tests/dissectors/test_rtp.py):
      * version 2 (version 0 goes to ZRTP/STUN/T.38, never RTP);
      * payload type not 72..76 (RTCP conflict range, RFC 3551 §3), marker bit ignored;
      * 12 + 4*CC octets present and, with X set, the 4-octet extension header and its
        4*length octets (RFC 3550 §5.3.1);
      * with P set, the last octet (padding count, RFC 3550 §5.1) is neither 0 nor larger than
        the octets after the header.
    It does not look at UDP ports (no even-port rule in 4.0). In addition, a payload whose second
    octet is 192..223 is excluded: dissect_rtp() hands those to RTCP (RFC 5761 §4), so tshark never
    counts them as RTP.
    """
    if len(payload) < FIXED.size or payload[0] >> 6 != VERSION:
        return False
    if RTCP_CONFLICT_PT_FIRST <= payload[1] & PT_MASK <= RTCP_CONFLICT_PT_LAST:
        return False
    if is_rtcp_payload(payload):
        return False
    header = _header_len(payload)
    if header is None:
        return False
    if payload[0] & PADDING_BIT:
        count = payload[-1]
        if count == 0 or count > len(payload) - header:
            return False
    return True


def parse_unannounced(meta: PacketMeta, payload: bytes) -> tuple[RtpPacket | None, list[Anomaly]]:
    """The dispatch table's parser for media SDP did not announce (negotiated=False)."""
    return parse_rtp(meta, payload, False), []


def not_rtp(meta: PacketMeta, payload: bytes) -> Anomaly:
    """rtp.malformed: a non-empty datagram to or from SDP-announced RTP media that is neither RTP nor RTCP."""
    return Anomaly(meta.ts, meta.frame, "rtp", "rtp.malformed",
                   f"{len(payload)}-byte datagram to or from SDP-announced RTP media: {header_problem(payload)}",
                   meta.src, meta.dst)


def header_problem(payload: bytes) -> str:
    """Why parse_rtp refuses a payload that is not multiplexed RTCP, in words (for an anomaly detail)."""
    if len(payload) < FIXED.size:
        return f"shorter than the {FIXED.size}-octet fixed header"
    if payload[0] >> 6 != VERSION:
        return f"version {payload[0] >> 6}, not {VERSION}"
    return "the CSRC list or header extension overruns the datagram"


def parse_rtp(meta: PacketMeta, payload: bytes, negotiated: bool) -> RtpPacket | None:
    """RTP header fields of one UDP payload, or None when it cannot be RTP.

    None when shorter than the 12-octet fixed header, version is not 2, the CSRC list or header
    extension overruns the datagram (tshark throws before tapping such packets), or the second
    octet is 192..223 (RTCP multiplexed on the RTP port, RFC 5761 §4: use dissectors.rtcp).
    payload_len excludes CSRCs, the extension and the padding (P bit: count in the last octet,
    RFC 3550 §5.1); a padding count larger than the payload is clipped, as Wireshark does.
    """
    n = len(payload)
    if n < FIXED.size:
        return None
    b0, b1, seq, timestamp, ssrc = FIXED.unpack_from(payload)
    if b0 >> 6 != VERSION or RTCP_MUX_FIRST <= b1 <= RTCP_MUX_LAST:
        return None
    if b0 & (CC_MASK | EXTENSION_BIT):          # CSRCs or an extension: their lengths must fit
        header = _header_len(payload)
        if header is None:
            return None
    else:
        header = FIXED.size
    body = n - header
    if b0 & PADDING_BIT:
        body = max(0, body - payload[-1])
    # positional: this runs once per RTP packet (field order of records.RtpPacket)
    return RtpPacket(meta, ssrc, seq, timestamp, b1 & PT_MASK, b1 >= MARKER_BIT, body, negotiated)
