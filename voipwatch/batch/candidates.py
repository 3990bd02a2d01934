"""RTP candidates: the frames of a chunk whose headers numpy decodes exactly as the dissectors would.

RTP over Ethernet[/802.1Q]/IPv4/UDP, decoded column-wise from a chunk's records (batch.reader)
without building per-packet objects; every other frame is left to the per-frame pipeline. Whether a
candidate is RTP is decided later, once the SDP announced before it is known (batch.rtp): announced,
or accepted by the header heuristic (dissectors.rtp.looks_like_rtp, mirrored here).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from dissectors import dispatch
from dissectors.ip import PROTO_UDP
from dissectors.link import ETHERTYPE_IPV4, LINKTYPE_ETHERNET, VLAN_TPIDS
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


@functools.cache
def port_flags() -> np.ndarray:
    """Each UDP port's flags, from the combined dispatch table (a site's entries too), computed once."""
    flags = np.zeros(1 << 16, dtype=np.uint8)
    flags[sorted({port for entry in dispatch.udp_entries() for port in entry.ports | entry.home})] |= OWNED_PORT
    flags[sorted(HEURISTIC_EXCLUDED_PORTS)] |= EXCLUDED_PORT
    return flags


IS_TPID = np.zeros(1 << 16, dtype=bool)
IS_TPID[sorted(VLAN_TPIDS)] = True


@dataclass
class Candidates:
    """RTP candidate columns of one chunk: one row per candidate, grouped by stream (flow, SSRC) and in
    record order within a stream; and the chunk's distinct flows."""
    index: np.ndarray        # int64 record index within the chunk
    flow: np.ndarray         # int32 row of `flows`
    flows: np.ndarray        # (n, 3) uint64 per distinct flow: VLAN code (decode_vlan), src << 32 | dst, ports
    ssrc: np.ndarray         # uint32
    seq: np.ndarray          # uint16
    rtp_ts: np.ndarray       # uint32
    b1: np.ndarray           # uint8 second RTP octet: marker bit and payload type
    payload_len: np.ndarray  # int32
    heuristic: np.ndarray    # bool: dissectors.rtp.looks_like_rtp would accept it
    ts: np.ndarray           # float64 capture time

    def __len__(self) -> int:
        return len(self.index)


@dataclass
class DecodedCandidates:
    """RTP candidate columns of one chunk in record order, before group_candidates groups them."""
    index: np.ndarray        # int64 record index within the chunk
    keys: list[np.ndarray]   # per stream key part: VLAN code, src << 32 | dst, ports, SSRC
    seq: np.ndarray
    rtp_ts: np.ndarray
    b1: np.ndarray
    payload_len: np.ndarray
    heuristic: np.ndarray
    ts: np.ndarray
    ident: np.ndarray | None = None   # uint16 IPv4 identification (voipwatch.batch.copies)
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
    """The VLAN stack (outer -> inner) of rtp_candidates' code: depth << 36, then 12 bits per tag."""
    depth = code >> 36
    return tuple((code >> (12 * (depth - 1 - i))) & 0xFFF for i in range(depth))


def _be(h: np.ndarray, at: int, width: int) -> np.ndarray:
    """The big-endian `width`-octet field at column `at` of every row of h (a view)."""
    return h[:, at:at + width].view(f">u{width}")[:, 0]


def rtp_candidates(rec: Records) -> Candidates:
    """The chunk's RTP candidates, grouped by stream; every other record is left to the per-frame path."""
    return group_candidates(decode_candidates(rec))


def decode_candidates(rec: Records) -> DecodedCandidates:
    """Decode the chunk's RTP candidates, in record order.

    Three gathers give every record's link header tail, IPv4 header and UDP + RTP headers as rows of
    fixed layout (each at the offset its record's VLAN tags and IHL put it), decoded column-wise.
    """
    ethernet = (rec.linktype == LINKTYPE_ETHERNET) & (rec.caplen >= 14)
    if ethernet.all():
        rows, data, caplen = np.arange(len(ethernet)), rec.data_off, rec.caplen
    else:
        rows, data, caplen = np.flatnonzero(ethernet), rec.data_off[ethernet], rec.caplen[ethernet]
    # IEEE 802.1Q/802.1ad tags: tag t's TCI at 14 + 4t, followed by the next EtherType (l2 holds
    # octets 12..27, so column c is octet 12 + c).
    l2 = gather_rows(rec.buf, data + 12, 16)
    ethertype = _be(l2, 0, 2).astype(np.int64)
    vlan = np.zeros(len(rows), dtype=np.int64)
    depth = np.zeros(len(rows), dtype=np.int64)
    tagged = np.ones(len(rows), dtype=bool)
    for t in range(MAX_TAGS):
        at = 14 + 4 * t
        tagged &= IS_TPID[ethertype] & (caplen >= at + 4)
        if not tagged.any():
            break
        vlan = np.where(tagged, (vlan << 12) | (_be(l2, at - 12, 2) & 0x0FFF), vlan)
        ethertype = np.where(tagged, _be(l2, at - 10, 2), ethertype)
        depth += tagged
    l3 = 14 + 4 * depth
    # IPv4 (RFC 791): version 4, IHL >= 5, not a fragment (MF clear, offset 0), protocol UDP, the whole
    # datagram captured (truncated or padded-short packets go per-frame, which names them), and the
    # headers the batch path reads within HEAD octets.
    ip = gather_rows(rec.buf, data + l3, 20)
    ihl = (ip[:, 0] & 0x0F).astype(np.int64) * 4
    total = _be(ip, 2, 2).astype(np.int64)
    ok = ((ethertype == ETHERTYPE_IPV4) & ((ip[:, 0] >> 4) == 4) & (ihl >= 20) & (l3 + ihl + 8 + 12 + 4 * 15 <= HEAD)
          & ((_be(ip, 6, 2) & 0x3FFF) == 0) & (ip[:, 9] == PROTO_UDP) & (l3 + total <= caplen))
    # UDP (RFC 768): a length that disagrees with the IP datagram is an anomaly the per-frame path
    # reports. RTP (RFC 3550 §5.1): version 2; a second octet 192..223 is multiplexed RTCP (RFC 5761 §4).
    p = l3 + ihl + 8                                     # the RTP header's offset in the packet
    udp = gather_rows(rec.buf, data + p - 8, 8 + 12)     # UDP header, then RTP fixed header
    ulen = _be(udp, 4, 2).astype(np.int64)
    flags = port_flags()
    ports = flags[_be(udp, 0, 2)] | flags[_be(udp, 2, 2)]
    b0, b1 = udp[:, 8], udp[:, 9]
    header = 12 + 4 * (b0 & CC_MASK).astype(np.int64)
    has_ext = (b0 & EXTENSION_BIT) != 0
    ok &= ((ulen == total - ihl) & (ulen >= 8 + 12) & ((ports & OWNED_PORT) == 0) & ((b0 >> 6) == VERSION)
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

    keep = np.flatnonzero(ok)
    index = rows[keep]
    mac = gather_rows(rec.buf, data[keep], 12)            # Ethernet destination, then source (IEEE 802.3 §3.1.1)
    # Per candidate: VLAN code (decode_vlan), src << 32 | dst, sport << 16 | dport, SSRC.
    return DecodedCandidates(
        index=index, keys=[(vlan | (depth << 36))[keep], _be(ip, 12, 8)[keep].astype(np.uint64),
                           _be(udp, 0, 4)[keep].astype(np.uint64), _be(udp, 16, 4)[keep].astype(np.uint32)],
        seq=_be(udp, 10, 2)[keep].astype(np.uint16), rtp_ts=_be(udp, 12, 4)[keep].astype(np.uint32), b1=b1[keep],
        payload_len=body[keep].astype(np.int32), heuristic=heuristic[keep], ts=rec.ts[index],
        ident=_be(ip, 4, 2)[keep], macs=np.stack([(_be(mac, 0, 4).astype(np.uint64) << 16) | _be(mac, 4, 2),
                                                  (_be(mac, 6, 2).astype(np.uint64) << 32) | _be(mac, 8, 4)], axis=1))


def group_candidates(decoded: DecodedCandidates, streams: KeyIds | None = None) -> Candidates:
    """Rows grouped by stream (flow, SSRC), in record order within each: the statistics at the end of
    input read each stream's rows in runs rather than one row here and one there.

    `streams` numbers the streams of every chunk of the capture (streams seen in earlier chunks are
    found by one vectorised lookup); the streams of a chunk come in the order of those numbers.
    """
    keys = decoded.keys
    try:
        stream = (streams if streams is not None else KeyIds(len(keys))).ids(keys)
    except HashCollision:
        stream = _factorize_rows(keys)[0]
    grouped = stable_order(stream)
    n = len(grouped)
    in_order = stream[grouped]
    starts = np.flatnonzero(np.r_[True, in_order[1:] != in_order[:-1]]) if n else np.zeros(0, dtype=np.int64)
    first = grouped[starts]                               # each stream's first row
    flow_of_stream, flow_first = _factorize_rows([key[first] for key in keys[:3]])
    return Candidates(
        index=decoded.index[grouped], flow=np.repeat(flow_of_stream, np.diff(np.r_[starts, n])),
        flows=np.stack([key[first[flow_first]].astype(np.uint64) for key in keys[:3]], axis=1),
        ssrc=keys[3][grouped], seq=decoded.seq[grouped], rtp_ts=decoded.rtp_ts[grouped], b1=decoded.b1[grouped],
        payload_len=decoded.payload_len[grouped], heuristic=decoded.heuristic[grouped], ts=decoded.ts[grouped])


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
