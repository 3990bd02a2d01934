"""The vectorised batch path: RTP over Ethernet[/802.1Q]/IPv4/UDP decoded with numpy, chunk by chunk.

A capture file is scanned in chunks (batch.reader). In each chunk the RTP candidates, frames whose
headers numpy can decode exactly as the per-frame dissectors would, are decoded column-wise; every
other frame (SIP, DNS, TCP, IPv6, fragments, other link types, anything unusual) goes through the
per-frame pipeline in frame order. Candidates are classified once every SDP announced before their
frames is known (at the end of input, or with --jobs as the per-frame path's SDP log grows): a
candidate sent to or from an SDP-announced endpoint set up before its frame is negotiated RTP,
otherwise the header heuristic decides (dissectors.rtp.looks_like_rtp, mirrored here). The result is
the same records the streaming path gives; tests/test_parity.py holds both to that.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Callable, Iterable, Iterator

import numpy as np

from dissectors.dns import DNS_PORTS
from dissectors.ip import PROTO_UDP
from dissectors.link import ETHERTYPE_IPV4, LINKTYPE_ETHERNET, VLAN_TPIDS
from dissectors.rtp import (CC_MASK, EXTENSION_BIT, HEURISTIC_EXCLUDED_PORTS, PADDING_BIT, PT_MASK,
                           RTCP_CONFLICT_PT_FIRST, RTCP_CONFLICT_PT_LAST, RTCP_MUX_FIRST, RTCP_MUX_LAST, VERSION)
from voipwatch.capture import read_capture
from voipwatch.batch.reader import HEAD, Records, Scanner, ScanError, gather_rows
from voipwatch.batch.workers import Producer
from voipwatch.records import Frame
from voipwatch.batch.grouping import HashCollision, KeyIds, factorize, mix_columns, stable_order

MAX_TAGS = 3                            # deeper VLAN stacks go per-frame (the headers must fit in HEAD)
# Per UDP port: DNS_PORT when dissectors.dns.looks_like_dns may claim it (such datagrams go per-frame),
# EXCLUDED_PORT when dissectors.rtp.heuristic_ports_ok refuses it.
DNS_PORT, EXCLUDED_PORT = 1, 2
PORT_FLAGS = np.zeros(1 << 16, dtype=np.uint8)
PORT_FLAGS[list(DNS_PORTS)] |= DNS_PORT
PORT_FLAGS[sorted(HEURISTIC_EXCLUDED_PORTS)] |= EXCLUDED_PORT
IS_TPID = np.zeros(1 << 16, dtype=bool)
IS_TPID[sorted(VLAN_TPIDS)] = True
CHUNK_BYTES = 8 << 20                   # file bytes read and scanned at a time


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

    def __len__(self) -> int:
        return len(self.index)


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
    port_flags = PORT_FLAGS[_be(udp, 0, 2)] | PORT_FLAGS[_be(udp, 2, 2)]
    b0, b1 = udp[:, 8], udp[:, 9]
    header = 12 + 4 * (b0 & CC_MASK).astype(np.int64)
    has_ext = (b0 & EXTENSION_BIT) != 0
    ok &= ((ulen == total - ihl) & (ulen >= 8 + 12) & ((port_flags & DNS_PORT) == 0) & ((b0 >> 6) == VERSION)
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
    heuristic = ((pt < RTCP_CONFLICT_PT_FIRST) | (pt > RTCP_CONFLICT_PT_LAST)) & ((port_flags & EXCLUDED_PORT) == 0)
    padded = np.flatnonzero(ok & ((b0 & PADDING_BIT) != 0))
    if len(padded):
        # RFC 3550 §5.1: with P set, the last octet counts the padding octets (itself included).
        count = u8[data[padded] + p[padded] + ulen[padded] - 8 - 1].astype(np.int64)
        heuristic[padded] &= (count != 0) & (count <= body[padded])
        body[padded] = np.maximum(0, body[padded] - count)

    keep = np.flatnonzero(ok)
    index = rows[keep]
    # Per candidate: VLAN code (decode_vlan), src << 32 | dst, sport << 16 | dport, SSRC.
    return DecodedCandidates(
        index=index, keys=[(vlan | (depth << 36))[keep], _be(ip, 12, 8)[keep].astype(np.uint64),
                           _be(udp, 0, 4)[keep].astype(np.uint64), _be(udp, 16, 4)[keep].astype(np.uint32)],
        seq=_be(udp, 10, 2)[keep].astype(np.uint16), rtp_ts=_be(udp, 12, 4)[keep].astype(np.uint32), b1=b1[keep],
        payload_len=body[keep].astype(np.int32), heuristic=heuristic[keep], ts=rec.ts[index])


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


@dataclass
class Chunk:
    """One scanned chunk, independent of the read buffer (so another process can produce it)."""
    records: int                  # records in the chunk
    cands: Candidates | DecodedCandidates | None   # None once another process keeps them (KeptCandidates)
    n_cands: int
    cand_span: tuple[float, float]                 # earliest and latest capture time of the candidates
    slow: list[tuple[int, float, int, bytes, int, int]]   # (index, ts, linktype, data, wire_len, file offset)
    last: tuple[float, int, int, int]                      # (ts, linktype, wire_len, file offset) of the last record


class ChunkReader:
    """An uncompressed pcap/pcapng file as a sequence of Chunks.

    Raises OSError or ScanError when the file cannot be opened or is not such a file. Iteration stops
    before the first irregular record; `complete` then tells whether every record was scanned (if
    not, the rest of the file is for voipwatch.capture, which reports it exactly).
    """

    def __init__(self, path: str, grouped: bool = True):
        self.path = path
        self.grouped = grouped        # Chunk.cands grouped by stream (else DecodedCandidates)
        self.streams = KeyIds(4)      # the stream keys of every chunk (group_candidates)
        with open(path, "rb") as fh:
            self.scanner = Scanner(fh.read(64))
        self.complete = False

    def __iter__(self) -> Iterator[Chunk]:
        scanner = self.scanner
        with open(self.path, "rb") as fh:
            fh.seek(scanner.header_len)
            base = scanner.header_len
            # One reusable buffer: unconsumed bytes move to its front, the file fills the rest, and the
            # HEAD bytes past the data stay zero (gathers may reach into them).
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
                if len(records.ts):
                    yield _chunk(records, self.streams if self.grouped else None)
                base += used
                kept = end - used
                buf[:kept] = buf[used:end]
        self.complete = not scanner.irregular and not kept


def _chunk(records: Records, streams: KeyIds | None) -> Chunk:
    """The chunk's candidates grouped with `streams`, or (None) decoded only."""
    decoded = decode_candidates(records)
    cands = group_candidates(decoded, streams) if streams is not None else decoded
    is_cand = np.zeros(len(records.ts), dtype=bool)
    is_cand[cands.index] = True
    slow = np.flatnonzero(~is_cand)
    buf = records.buf
    data = [bytes(buf[start:start + caplen])
            for start, caplen in zip(records.data_off[slow].tolist(), records.caplen[slow].tolist())]
    last = len(records.ts) - 1
    span = (float(cands.ts.min()), float(cands.ts.max())) if len(cands) else (0.0, 0.0)
    return Chunk(len(records.ts), cands, len(cands), span,
                 list(zip(slow.tolist(), records.ts[slow].tolist(), records.linktype[slow].tolist(), data,
                          records.wire_len[slow].tolist(), records.file_off[slow].tolist())),
                 (float(records.ts[last]), int(records.linktype[last]), int(records.wire_len[last]),
                  int(records.file_off[last])))


def feed_file(path: str, analyzer, progress: Callable[[Frame], None] | None = None, jobs: int = 1) -> bool:
    """Feed one capture file to a batch-mode Analyzer through the vectorised path.

    Returns False, having fed nothing, when the file is not an uncompressed pcap/pcapng file (the
    caller then uses the generic reader). With jobs > 1, another process scans the file and keeps
    the RTP candidates while this one runs the per-frame path; at the end of input the analyzer's
    BatchRtp hands its share to that process, which computes the streams (with `jobs` processes).
    """
    try:
        reader = ChunkReader(path, grouped=jobs == 1)
    except (OSError, ScanError):
        return False
    analyzer.rtp.jobs = jobs
    source: ChunkReader | KeptCandidates = reader
    chunks: Iterable[Chunk] = reader
    if jobs > 1:
        source = KeptCandidates(reader, analyzer.rtp)
        chunks = producer = Producer(source, KeptCandidates.finish, KeptCandidates.settle, KeptCandidates.hear)
        analyzer.rtp.remote = producer.ask
        analyzer.rtp.tell = producer.tell
    done = 0
    for chunk in chunks:
        done = _feed_chunk(chunk, done, analyzer, progress)
    if not source.complete:
        for item in islice(read_capture(path), done, None):
            analyzer.process(item)
            if progress is not None and type(item) is Frame:
                progress(item)
    return True


class KeptCandidates:
    """The chunks of a ChunkReader (grouped=False), in the process that scans them (analyze --jobs):
    each chunk's RTP candidates stay in this process, the rest of the chunk goes on. Once every chunk
    is sent, settle() groups them into this process's copy of the analyzer's BatchRtp while the
    consumer still works through the last chunks."""

    def __init__(self, reader: ChunkReader, rtp):
        self.reader, self.rtp = reader, rtp
        self.complete = False
        self._kept: list[tuple[DecodedCandidates, int]] = []    # (candidates, records before their chunk)

    def __iter__(self) -> Iterator[Chunk]:
        done = 0
        for chunk in self.reader:
            if chunk.n_cands:
                self._kept.append((chunk.cands, done))
            chunk.cands = None
            done += chunk.records
            yield chunk
        self.complete = self.reader.complete

    def settle(self) -> None:
        kept, self._kept = self._kept, []
        for decoded, done in kept:
            cands = group_candidates(decoded, self.reader.streams)
            self.rtp.add_candidates(cands, done + 1 + cands.index)

    def hear(self, notes: list) -> None:
        """The analyzer's SDP announcements so far (BatchRtp.share): the candidates they cover are
        classified while the per-frame process goes on."""
        self.rtp.hear(notes)

    def finish(self, handover: dict) -> tuple[list, int]:
        """The analyzer's BatchRtp.finish, here: its per-frame packets and SDP log join the candidates."""
        self.rtp.take_over(handover)
        streams: list = []
        not_rtp = self.rtp.finish(streams.extend)
        return streams, not_rtp


def _feed_chunk(chunk: Chunk, done: int, analyzer, progress) -> int:
    """Per-frame path for the non-candidates, in order; candidates handed over as columns (or, kept
    by the scanning process, counted)."""
    for i, ts, linktype, data, wire_len, offset in chunk.slow:
        analyzer.process(Frame(ts, done + 1 + i, linktype, data, wire_len, 0, offset))
    if chunk.n_cands:
        analyzer.count_candidates(chunk.n_cands, *chunk.cand_span)
        if chunk.cands is not None:
            analyzer.rtp.add_candidates(chunk.cands, done + 1 + chunk.cands.index)
    analyzer.rtp.share(done + chunk.records)
    if progress is not None:
        ts, linktype, wire_len, offset = chunk.last
        progress(Frame(ts, done + chunk.records, linktype, b"", wire_len, 0, offset))
    return done + chunk.records
