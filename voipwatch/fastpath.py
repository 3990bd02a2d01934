"""The vectorised batch path: RTP over Ethernet[/802.1Q]/IPv4/UDP decoded with numpy, chunk by chunk.

A capture file is scanned in chunks (fastscan). In each chunk the RTP candidates, frames whose
headers numpy can decode exactly as the per-frame dissectors would, are decoded column-wise; every
other frame (SIP, DNS, TCP, IPv6, fragments, other link types, anything unusual) goes through the
per-frame pipeline in frame order. Candidates are classified at the end, once every SDP is known:
a candidate sent to or from an SDP-announced endpoint set up before its frame is negotiated RTP,
otherwise the header heuristic decides (dissectors.rtp.looks_like_rtp, mirrored here). The result is
the same records the streaming path gives; tests/test_parity.py holds both to that.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from itertools import islice
from typing import Callable

import numpy as np

from dissectors.rtp import HEURISTIC_EXCLUDED_PORTS
from voipwatch.capture import read_capture
from voipwatch.fastscan import HEAD, Records, Scanner, ScanError
from voipwatch.records import Frame

ETHERTYPE_IPV4 = 0x0800
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)   # IEEE 802.1Q, 802.1ad, and the pre-standard QinQ tag
MAX_TAGS = 3
UDP = 17
DNS_PORTS = (53, 5353)                  # dissectors.dns.looks_like_dns may claim these: per-frame path
LINKTYPE_ETHERNET = 1
HEURISTIC_PORTS = np.asarray(sorted(HEURISTIC_EXCLUDED_PORTS))   # dissectors.rtp.heuristic_ports_ok


@dataclass
class Candidates:
    """RTP candidate columns of one chunk (all arrays of equal length)."""
    index: np.ndarray        # int64 record index within the chunk
    vlan: np.ndarray         # int64 encoded VLAN stack (see encode_vlan)
    src: np.ndarray          # uint32 IPv4 address
    dst: np.ndarray
    sport: np.ndarray        # int64
    dport: np.ndarray
    ssrc: np.ndarray         # int64
    seq: np.ndarray
    rtp_ts: np.ndarray
    pt: np.ndarray
    marker: np.ndarray       # bool
    payload_len: np.ndarray
    heuristic: np.ndarray    # bool: dissectors.rtp.looks_like_rtp would accept it


def _u8(h: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """h[rows, cols] through the flat view: one gather instead of two-axis fancy indexing."""
    return h.ravel()[rows * HEAD + cols]


def _be16(h: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    flat = h.ravel()
    at = rows * HEAD + cols
    return (flat[at].astype(np.int64) << 8) | flat[at + 1]


def _be32(h: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    flat = h.ravel()
    at = rows * HEAD + cols
    return ((flat[at].astype(np.int64) << 24) | (flat[at + 1].astype(np.int64) << 16)
            | (flat[at + 2].astype(np.int64) << 8) | flat[at + 3])


def encode_vlan(stack: tuple[int, ...]) -> int:
    """A VLAN stack (outer -> inner, at most MAX_TAGS) as one integer: depth in the top bits."""
    code = 0
    for vid in stack:
        code = (code << 12) | vid
    return (len(stack) << 36) | code


def decode_vlan(code: int) -> tuple[int, ...]:
    depth = code >> 36
    return tuple((code >> (12 * (depth - 1 - i))) & 0xFFF for i in range(depth))


def rtp_candidates(rec: Records) -> Candidates:
    """Decode the chunk's RTP candidates; every other record is left to the per-frame path."""
    h, caplen = rec.head, rec.caplen
    rows = np.nonzero(rec.linktype == LINKTYPE_ETHERNET)[0]
    rows = rows[caplen[rows] >= 14]
    l3 = np.full(len(rows), 14, dtype=np.int64)
    ethertype = _be16(h, rows, np.full(len(rows), 12, dtype=np.int64))
    vlan = np.zeros(len(rows), dtype=np.int64)
    depth = np.zeros(len(rows), dtype=np.int64)
    for _ in range(MAX_TAGS):
        tagged = np.isin(ethertype, VLAN_TPIDS) & (caplen[rows] >= l3 + 4)
        if not tagged.any():
            break
        t_rows, t_l3 = rows[tagged], l3[tagged]
        vlan[tagged] = (vlan[tagged] << 12) | (_be16(h, t_rows, t_l3) & 0x0FFF)
        ethertype[tagged] = _be16(h, t_rows, t_l3 + 2)
        depth[tagged] += 1
        l3[tagged] += 4
    keep = ethertype == ETHERTYPE_IPV4
    rows, l3, vlan, depth = rows[keep], l3[keep], vlan[keep], depth[keep]

    # IPv4 (RFC 791): version 4, IHL >= 5, not a fragment (MF clear, offset 0), protocol UDP, and the
    # whole datagram captured (truncated or padded-short packets go per-frame, which names them).
    vihl = _u8(h, rows, l3).astype(np.int64)
    ihl = (vihl & 0x0F) * 4
    total = _be16(h, rows, l3 + 2)
    frag = _be16(h, rows, l3 + 6)
    proto = _u8(h, rows, l3 + 9)
    keep = ((vihl >> 4) == 4) & (ihl >= 20) & ((frag & 0x3FFF) == 0) & (proto == UDP) \
        & (l3 + total <= caplen[rows]) & (l3 + ihl + 8 + 12 + 4 * 15 <= HEAD)
    rows, l3, vlan, depth, ihl, total = rows[keep], l3[keep], vlan[keep], depth[keep], ihl[keep], total[keep]
    udp = l3 + ihl
    ulen = _be16(h, rows, udp + 4)
    sport = _be16(h, rows, udp)
    dport = _be16(h, rows, udp + 2)
    # UDP (RFC 768): a length that disagrees with the IP datagram is an anomaly the per-frame path reports.
    keep = (ulen == total - ihl) & (ulen >= 8 + 12) & ~np.isin(sport, DNS_PORTS) & ~np.isin(dport, DNS_PORTS)
    rows, vlan, depth, l3, udp, ulen, sport, dport = (a[keep] for a in (rows, vlan, depth, l3, udp, ulen, sport, dport))

    # RTP (RFC 3550 §5.1): version 2; second octet 192..223 is multiplexed RTCP (RFC 5761 §4).
    p = udp + 8
    b0 = _u8(h, rows, p).astype(np.int64)
    b1 = _u8(h, rows, p + 1).astype(np.int64)
    plen = ulen - 8
    header = 12 + 4 * (b0 & 0x0F)
    has_ext = (b0 & 0x10) != 0
    keep = ((b0 >> 6) == 2) & ~((b1 >= 192) & (b1 <= 223)) & (header <= plen) \
        & (~has_ext | (p + header + 4 <= HEAD))
    rows, vlan, depth, l3, p, plen, b0, b1, header, has_ext, sport, dport = (
        a[keep] for a in (rows, vlan, depth, l3, p, plen, b0, b1, header, has_ext, sport, dport))
    # RFC 3550 §5.3.1: the extension header's length counts 32-bit words after its 4 octets.
    ext_rows = np.nonzero(has_ext)[0]
    header[ext_rows] += 4 + 4 * _be16(h, rows[ext_rows], p[ext_rows] + header[ext_rows] + 2)
    keep = header <= plen
    rows, vlan, depth, l3, p, plen, b0, b1, header, sport, dport = (
        a[keep] for a in (rows, vlan, depth, l3, p, plen, b0, b1, header, sport, dport))

    body = plen - header
    heuristic = ~(((b1 & 0x7F) >= 72) & ((b1 & 0x7F) <= 76)) & ~np.isin(sport, HEURISTIC_PORTS) \
        & ~np.isin(dport, HEURISTIC_PORTS)
    padded = np.nonzero(b0 & 0x20)[0]
    if len(padded):
        # RFC 3550 §5.1: with P set, the last octet counts the padding octets (itself included).
        u8 = np.frombuffer(rec.buf, dtype=np.uint8)
        count = u8[rec.data_off[rows[padded]] + p[padded] + plen[padded] - 1].astype(np.int64)
        heuristic[padded] &= (count != 0) & (count <= body[padded])
        body[padded] = np.maximum(0, body[padded] - count)

    return Candidates(
        index=rows, vlan=np.where(depth > 0, (depth << 36) | vlan, 0),
        src=_be32(h, rows, l3 + 12).astype(np.uint32), dst=_be32(h, rows, l3 + 16).astype(np.uint32),
        sport=sport.astype(np.uint16), dport=dport.astype(np.uint16),
        ssrc=_be32(h, rows, p + 8).astype(np.uint32), seq=_be16(h, rows, p + 2).astype(np.uint16),
        rtp_ts=_be32(h, rows, p + 4).astype(np.uint32), pt=(b1 & 0x7F).astype(np.uint8),
        marker=(b1 & 0x80) != 0, payload_len=body.astype(np.int32), heuristic=heuristic)


def ipv4_text(addresses: np.ndarray) -> list[str]:
    """Dotted-quad strings for an array of uint32 addresses (converted once per unique value)."""
    unique, inverse = np.unique(addresses, return_inverse=True)
    names = [str(ipaddress.IPv4Address(int(a))) for a in unique]
    return [names[i] for i in inverse]


CHUNK_BYTES = 8 << 20


def feed_file(path: str, analyzer, progress: Callable[[Frame], None] | None = None) -> bool:
    """Feed one capture file to a batch-mode Analyzer through the vectorised path.

    Returns False, having fed nothing, when the file is not an uncompressed pcap/pcapng file (the
    caller then uses the generic reader). From the first irregular record on, the rest of the file
    goes through voipwatch.capture, which reports it exactly.
    """
    try:
        fh = open(path, "rb")
    except OSError:
        return False
    with fh:
        head = fh.read(64)
        try:
            scanner = Scanner(head)
        except ScanError:
            return False
        fh.seek(scanner.header_len)
        base, done = scanner.header_len, 0
        # One reusable buffer: unconsumed bytes move to its front, the file fills the rest, and the
        # HEAD bytes past the data stay zero (the scanner's gather window may reach into them).
        buf = bytearray(CHUNK_BYTES + HEAD)
        view = memoryview(buf)
        kept = 0
        while not scanner.irregular:
            got = fh.readinto(view[kept:CHUNK_BYTES])
            if not got:
                break
            end = kept + got
            buf[end:end + HEAD] = bytes(HEAD)
            records, used = scanner.scan(buf, end, base)
            if used == 0 and end == CHUNK_BYTES:
                scanner.irregular = True      # a record longer than a chunk: leave it to the generic reader
                break
            done = _feed_records(records, done, analyzer, progress)
            base += used
            kept = end - used
            buf[:kept] = buf[used:end]
    if scanner.irregular or kept:
        for item in islice(read_capture(path), done, None):
            analyzer.process(item)
            if progress is not None and type(item) is Frame:
                progress(item)
    return True


def _feed_records(records: Records, done: int, analyzer, progress) -> int:
    """Per-frame path for the non-candidates, in order; candidates handed over as columns."""
    n = len(records.ts)
    if n == 0:
        return done
    cands = rtp_candidates(records)
    frames = np.arange(done + 1, done + n + 1, dtype=np.int64)
    is_cand = np.zeros(n, dtype=bool)
    is_cand[cands.index] = True
    buf = records.buf
    slow = np.flatnonzero(~is_cand)
    columns = zip(slow.tolist(), records.ts[slow].tolist(), records.linktype[slow].tolist(),
                  records.data_off[slow].tolist(), records.caplen[slow].tolist(), records.wire_len[slow].tolist(),
                  records.file_off[slow].tolist())
    for i, ts, linktype, start, caplen, wire_len, offset in columns:
        analyzer.process(Frame(ts, done + 1 + i, linktype, bytes(buf[start:start + caplen]), wire_len, 0, offset))
    analyzer.add_candidates(cands, frames[cands.index], records.ts[cands.index])
    if progress is not None:
        last = n - 1
        progress(Frame(float(records.ts[last]), done + n, int(records.linktype[last]), b"",
                       int(records.wire_len[last]), 0, int(records.file_off[last])))
    return done + n
