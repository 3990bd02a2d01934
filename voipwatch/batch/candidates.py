"""RTP candidates: the frames of a chunk whose headers numpy decodes exactly as the dissectors would.

RTP over UDP over IPv4 or IPv6, behind any link header of fixed length (dissectors.link.FIXED_HEADERS:
Ethernet and Linux cooked v1/v2 with up to MAX_TAGS VLAN tags, raw IP, BSD null/loopback), decoded
column-wise from a chunk's records (batch.reader) without building per-packet objects; every other
frame is left to the per-frame pipeline. Whether a candidate is RTP is decided later, once the SDP
announced before it is known (batch.rtp): announced, or accepted by the header heuristic
(dissectors.rtp.looks_like_rtp, mirrored here).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from dissectors import dispatch
from dissectors.ip import PROTO_UDP, ntop
from dissectors.link import (AF_INET, AF_INET6, ETHERTYPE_IPV4, ETHERTYPE_IPV6, FIXED_HEADERS, LINKTYPE_ETHERNET,
                             VLAN_TPIDS)
from dissectors.rtp import (CC_MASK, EXTENSION_BIT, HEURISTIC_EXCLUDED_PORTS, PADDING_BIT, PT_MASK,
                           RTCP_CONFLICT_PT_FIRST, RTCP_CONFLICT_PT_LAST, RTCP_MUX_FIRST, RTCP_MUX_LAST, VERSION)
from voipwatch.batch.grouping import HashCollision, KeyIds, factorize, mix_columns, stable_order
from voipwatch.batch.reader import HEAD, Records, gather_rows

MAX_TAGS = 3                            # deeper VLAN stacks go per-frame (the headers must fit in HEAD)
# Per UDP port: OWNED_PORT when the dispatch table names it, so that datagrams with RTP's version bits
# go per-frame (an entry bound to the port may claim them; on a protocol's default port, one that is
# not RTP is an anomaly); EXCLUDED_PORT when the RTP heuristic never runs there
# (dissectors.rtp.HEURISTIC_EXCLUDED_PORTS, the not_ports of the table's RTP entry).
OWNED_PORT, EXCLUDED_PORT = 1, 2
# A stream's key: link code (VLAN stack, depth, IP version), source and destination address (high
# and low 64 bits each; an IPv4 address is the low 32 bits), sport << 16 | dport, SSRC. A flow's key
# is all but the SSRC.
KEY_COLUMNS = 7
IPV6_FLOW = 1 << 40                     # in the link code: the addresses are IPv6


@functools.cache
def port_flags() -> np.ndarray:
    """Each UDP port's flags, from the combined dispatch table (a site's entries too), computed once."""
    flags = np.zeros(1 << 16, dtype=np.uint8)
    flags[sorted({port for entry in dispatch.udp_entries() for port in entry.ports | entry.home})] |= OWNED_PORT
    flags[sorted(HEURISTIC_EXCLUDED_PORTS)] |= EXCLUDED_PORT
    return flags


IS_TPID = np.zeros(1 << 16, dtype=bool)
IS_TPID[sorted(VLAN_TPIDS)] = True
# Octets of a link header and its VLAN tags, at most (dissectors.link.FIXED_HEADERS).
LINK_HEAD = max(header.length for header in FIXED_HEADERS.values()) + 4 * MAX_TAGS


@dataclass
class Candidates:
    """RTP candidate columns of one chunk: one row per candidate, grouped by stream (flow, SSRC) and in
    record order within a stream; and the chunk's distinct flows."""
    index: np.ndarray        # int64 record index within the chunk
    flow: np.ndarray         # int32 row of `flows`
    flows: np.ndarray        # (n, KEY_COLUMNS - 1) uint64 per distinct flow: its key (flow_of reads it)
    ssrc: np.ndarray         # uint32
    seq: np.ndarray          # uint16
    rtp_ts: np.ndarray       # uint32
    b1: np.ndarray           # uint8 second RTP octet: marker bit and payload type
    payload_len: np.ndarray  # int32
    heuristic: np.ndarray    # bool: dissectors.rtp.looks_like_rtp would accept it
    ts: np.ndarray           # float64 capture time
    ident: np.ndarray | None = None   # kept for the client of a set decoded apart (voipwatch.cluster.stitch)
    macs: np.ndarray | None = None    # ... which drops the SPAN copies of the whole set (voipwatch.batch.copies)

    def __len__(self) -> int:
        return len(self.index)


@dataclass
class DecodedCandidates:
    """RTP candidate columns of one chunk in record order, before group_candidates groups them."""
    index: np.ndarray        # int64 record index within the chunk
    keys: list[np.ndarray]   # the KEY_COLUMNS columns of each candidate's stream key
    seq: np.ndarray
    rtp_ts: np.ndarray
    b1: np.ndarray
    payload_len: np.ndarray
    heuristic: np.ndarray
    ts: np.ndarray
    ident: np.ndarray | None = None   # uint32 IPv4 identification or IPv6 flow label (voipwatch.batch.copies)
    macs: np.ndarray | None = None    # (n, 2) uint64: destination and source MAC

    def __len__(self) -> int:
        return len(self.index)

    def take(self, rows: np.ndarray) -> DecodedCandidates:
        """These candidates' rows `rows` only."""
        return DecodedCandidates(
            self.index[rows], [key[rows] for key in self.keys], self.seq[rows], self.rtp_ts[rows], self.b1[rows],
            self.payload_len[rows], self.heuristic[rows], self.ts[rows],
            None if self.ident is None else self.ident[rows], None if self.macs is None else self.macs[rows])


def decode_vlan(code: int) -> tuple[int, ...]:
    """The VLAN stack (outer -> inner) of a link code: depth << 36, then 12 bits per tag."""
    depth = (code >> 36) & 0xF
    return tuple((code >> (12 * (depth - 1 - i))) & 0xFFF for i in range(depth))


def flow_of(key: tuple[int, ...]) -> tuple[tuple[int, ...], str, int, str, int]:
    """(vlan, src, sport, dst, dport) of a flow key (a row of Candidates.flows), with the addresses in
    the text the dissectors give them (dissectors.ip.ntop)."""
    code, src_high, src_low, dst_high, dst_low, ports = key
    if code & IPV6_FLOW:
        src, dst = ((src_high << 64) | src_low).to_bytes(16, "big"), ((dst_high << 64) | dst_low).to_bytes(16, "big")
    else:
        src, dst = src_low.to_bytes(4, "big"), dst_low.to_bytes(4, "big")
    return decode_vlan(code), ntop(src), ports >> 16, ntop(dst), ports & 0xFFFF


def _be(h: np.ndarray, at: int, width: int) -> np.ndarray:
    """The big-endian `width`-octet field at column `at` of every row of h (a view)."""
    return h[:, at:at + width].view(f">u{width}")[:, 0]


def rtp_candidates(rec: Records) -> Candidates:
    """The chunk's RTP candidates, grouped by stream; every other record is left to the per-frame path."""
    return group_candidates(decode_candidates(rec))


def _stated_ethertype(protocol: str, field: np.ndarray) -> np.ndarray | int:
    """The EtherType (0: none decoded here) a link header states by `protocol`
    (dissectors.link.FixedHeader), from the 4 octets at its protocol_at."""
    if protocol == "ethertype":
        return _be(field, 0, 2).astype(np.int64)
    if protocol == "ip_version":
        version = field[:, 0] >> 4
        return np.where(version == 4, ETHERTYPE_IPV4, np.where(version == 6, ETHERTYPE_IPV6, 0))
    if protocol == "family":
        # BSD loopback: the address family in the capturing host's order; upper bits set mean the other one.
        family = field.view("<u4")[:, 0]
        family = np.where(family & 0xFFFF0000, field.view(">u4")[:, 0], family)
        return np.where(family == AF_INET, ETHERTYPE_IPV4,
                        np.where(np.isin(family, sorted(AF_INET6)), ETHERTYPE_IPV6, 0))
    return ETHERTYPE_IPV4 if protocol == "ipv4" else ETHERTYPE_IPV6


def _network_layer(rec: Records) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per record, as dissectors.link.decode_link finds them: the EtherType of its network layer (0 when
    the link type or the protocol is left to the per-frame path), where that layer starts, and the
    VLAN stack's code (decode_vlan)."""
    linktype, n = rec.linktype, len(rec.linktype)
    head = gather_rows(rec.buf, rec.data_off, LINK_HEAD)
    ethertype, length = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    tags = np.zeros((n, 4 * MAX_TAGS), dtype=np.uint8)      # the octets after the link header
    may_tag = np.zeros(n, dtype=bool)
    one = n and (linktype == linktype[0]).all()              # the usual chunk: one link type
    for value in ([int(linktype[0])] if one else np.unique(linktype).tolist()):
        header = FIXED_HEADERS.get(value)
        if header is None:
            continue
        rows = slice(None) if one else np.flatnonzero(linktype == value)
        at = header.protocol_at
        ethertype[rows] = _stated_ethertype(header.protocol, head[rows, at:at + 4])
        length[rows] = header.length
        tags[rows] = head[rows, header.length:header.length + 4 * MAX_TAGS]
        may_tag[rows] = header.protocol == "ethertype"
    # IEEE 802.1Q/802.1ad tags after an EtherType-stating header: tag t's TCI at 4t, then the next EtherType.
    vlan = np.zeros(n, dtype=np.int64)
    depth = np.zeros(n, dtype=np.int64)
    tagged = may_tag
    for t in range(MAX_TAGS):
        tagged &= IS_TPID[ethertype]
        if not tagged.any():
            break
        vlan = np.where(tagged, (vlan << 12) | (_be(tags, 4 * t, 2) & 0x0FFF), vlan)
        ethertype = np.where(tagged, _be(tags, 4 * t + 2, 2), ethertype)
        depth += tagged
    return ethertype, length + 4 * depth, vlan | (depth << 36)


def decode_candidates(rec: Records) -> DecodedCandidates:
    """Decode the chunk's RTP candidates, in record order.

    Gathers give every record's link header fields, IP header and UDP + RTP headers as rows of fixed
    layout (each at the offset its record's link header, VLAN tags and IP header put it), decoded
    column-wise. Whatever a gather reads past a record's end never makes it a candidate: a
    candidate's IP datagram is wholly captured.
    """
    data, caplen = rec.data_off, rec.caplen
    ethertype, l3, link_code = _network_layer(rec)
    ip = gather_rows(rec.buf, data + l3, 40)
    ip_version = ip[:, 0] >> 4
    # IPv4 (RFC 791): IHL >= 5, not a fragment (MF clear, offset 0), protocol UDP.
    ihl = (ip[:, 0] & 0x0F).astype(np.int64) * 4
    v4 = ((ethertype == ETHERTYPE_IPV4) & (ip_version == 4) & (ihl >= 20) & ((_be(ip, 6, 2) & 0x3FFF) == 0)
          & (ip[:, 9] == PROTO_UDP))
    # IPv6 (RFC 8200 §3): next header UDP (extension headers and fragments go per-frame), payload length
    # not 0 (a jumbogram or a TSO capture, which the per-frame path takes as captured).
    payload_v6 = _be(ip, 4, 2).astype(np.int64)
    v6 = (ethertype == ETHERTYPE_IPV6) & (ip_version == 6) & (ip[:, 6] == PROTO_UDP) & (payload_v6 > 0)
    ip_header = np.where(v6, 40, ihl)
    datagram = np.where(v6, 40 + payload_v6, _be(ip, 2, 2))        # the IP datagram's length, by its header
    # The whole datagram captured: truncated or padded-short packets go per-frame, which names them.
    ok = (v4 | v6) & (l3 + datagram <= caplen)
    # UDP (RFC 768): a length that disagrees with the IP datagram is an anomaly the per-frame path
    # reports. RTP (RFC 3550 §5.1): version 2; a second octet 192..223 is multiplexed RTCP (RFC 5761 §4).
    p = l3 + ip_header + 8                               # the RTP header's offset in the packet
    udp = gather_rows(rec.buf, data + p - 8, 8 + 12)     # UDP header, then RTP fixed header
    ulen = _be(udp, 4, 2).astype(np.int64)
    flags = port_flags()
    ports = flags[_be(udp, 0, 2)] | flags[_be(udp, 2, 2)]
    b0, b1 = udp[:, 8], udp[:, 9]
    header = 12 + 4 * (b0 & CC_MASK).astype(np.int64)
    has_ext = (b0 & EXTENSION_BIT) != 0
    ok &= ((ulen == datagram - ip_header) & (ulen >= 8 + 12) & ((ports & OWNED_PORT) == 0) & ((b0 >> 6) == VERSION)
           & ((b1 < RTCP_MUX_FIRST) | (b1 > RTCP_MUX_LAST)) & (header <= ulen - 8)
           & (~has_ext | (p + header + 4 <= HEAD)))
    u8 = np.frombuffer(rec.buf, dtype=np.uint8)
    # RFC 3550 §5.3.1: the extension header's length counts 32-bit words after its 4 octets.
    ext = np.flatnonzero(ok & has_ext)
    if len(ext):
        at = data[ext] + p[ext] + header[ext] + 2
        header[ext] += 4 + 4 * ((u8[at].astype(np.int64) << 8) | u8[at + 1])
        ok &= header <= ulen - 8
    body = ulen - 8 - header
    pt = b1 & PT_MASK
    heuristic = ((pt < RTCP_CONFLICT_PT_FIRST) | (pt > RTCP_CONFLICT_PT_LAST)) & ((ports & EXCLUDED_PORT) == 0)
    padded = np.flatnonzero(ok & ((b0 & PADDING_BIT) != 0))
    if len(padded):
        # RFC 3550 §5.1: with P set, the last octet counts the padding octets (itself included).
        count = u8[data[padded] + p[padded] + ulen[padded] - 8 - 1].astype(np.int64)
        heuristic[padded] &= (count != 0) & (count <= body[padded])
        body[padded] = np.maximum(0, body[padded] - count)

    index = np.flatnonzero(ok)
    ip, six = ip[index], v6[index]
    if six.any():                       # addresses as high and low 64 bits
        zero = np.uint64(0)
        addresses = [np.where(six, _be(ip, 8, 8), zero), np.where(six, _be(ip, 16, 8), _be(ip, 12, 4)),
                     np.where(six, _be(ip, 24, 8), zero), np.where(six, _be(ip, 32, 8), _be(ip, 16, 4))]
    else:                               # IPv4 alone: the high halves take no memory (kept with --jobs)
        zero = np.broadcast_to(np.uint64(0), len(index))
        addresses = [zero, _be(ip, 12, 4).astype(np.uint32), zero, _be(ip, 16, 4).astype(np.uint32)]
    # What tells SPAN copies apart (voipwatch.batch.copies): the IPv4 identification or the IPv6 flow
    # label (RFC 8200 §6), and the Ethernet destination and source MACs (IEEE 802.3 §3.1.1; 0 for
    # other link types).
    ident = np.where(six, _be(ip, 0, 4) & 0xFFFFF, _be(ip, 4, 2)).astype(np.uint32)
    mac = gather_rows(rec.buf, data[index], 12)
    macs = np.stack([(_be(mac, 0, 4).astype(np.uint64) << 16) | _be(mac, 4, 2),
                     (_be(mac, 6, 2).astype(np.uint64) << 32) | _be(mac, 8, 4)], axis=1)
    macs[rec.linktype[index] != LINKTYPE_ETHERNET] = 0
    return DecodedCandidates(
        index=index,
        keys=[(link_code[index] | np.where(six, IPV6_FLOW, 0)).astype(np.uint64), *addresses,
              _be(udp, 0, 4)[index].astype(np.uint32), _be(udp, 16, 4)[index].astype(np.uint32)],
        seq=_be(udp, 10, 2)[index].astype(np.uint16), rtp_ts=_be(udp, 12, 4)[index].astype(np.uint32),
        b1=b1[index], payload_len=body[index].astype(np.int32), heuristic=heuristic[index], ts=rec.ts[index],
        ident=ident, macs=macs)


def group_candidates(decoded: DecodedCandidates, streams: KeyIds | None = None) -> Candidates:
    """Rows grouped by stream (flow, SSRC), in record order within each: the statistics at the end of
    input read each stream's rows in runs rather than one row here and one there.

    `streams` numbers the streams of every chunk of the capture (streams seen in earlier chunks are
    found by one vectorised lookup); the streams of a chunk come in the order of those numbers.
    """
    keys = decoded.keys
    try:
        stream = (streams if streams is not None else KeyIds(KEY_COLUMNS)).ids(keys)
    except HashCollision:
        stream = _factorize_rows(keys)[0]
    grouped = stable_order(stream)
    n = len(grouped)
    in_order = stream[grouped]
    starts = np.flatnonzero(np.r_[True, in_order[1:] != in_order[:-1]]) if n else np.zeros(0, dtype=np.int64)
    first = grouped[starts]                               # each stream's first row
    flow_of_stream, flow_first = _factorize_rows([key[first] for key in keys[:-1]])
    return Candidates(
        index=decoded.index[grouped], flow=np.repeat(flow_of_stream, np.diff(np.r_[starts, n])),
        flows=np.stack([key[first[flow_first]].astype(np.uint64) for key in keys[:-1]], axis=1),
        ssrc=keys[-1][grouped], seq=decoded.seq[grouped], rtp_ts=decoded.rtp_ts[grouped], b1=decoded.b1[grouped],
        payload_len=decoded.payload_len[grouped], heuristic=decoded.heuristic[grouped], ts=decoded.ts[grouped],
        ident=None if decoded.ident is None else decoded.ident[grouped],
        macs=None if decoded.macs is None else decoded.macs[grouped])


def _factorize_rows(columns: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Codes (int32, in order of first appearance) of the rows of equal-length integer columns, and
    the row where each code first appears."""
    # One hash per row; if two distinct rows share a hash, each column is factorized in turn instead.
    mixed = mix_columns(columns)
    codes, first = factorize(mixed)
    if not all((column[first][codes] == column).all() for column in columns):
        codes = np.zeros(len(mixed), dtype=np.int64)
        for column in columns:
            column_codes, column_first = factorize(column)
            codes, first = factorize(codes * len(column_first) + column_codes)
    return codes.astype(np.int32), first
