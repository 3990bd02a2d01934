"""The vectorised batch path against the per-frame readers and dissectors, on crafted captures.

reader.Scanner must find exactly the records voipwatch.capture reads (whatever the timestamps,
lengths, block types or record-like bytes inside packets), and every frame candidates.rtp_candidates
decodes must give the same fields through dissectors.net and dissectors.rtp.
"""
from __future__ import annotations

import random
import struct
from ipaddress import ip_address
from pathlib import Path

import numpy as np
import pytest

from dissectors import rtp
from dissectors import dispatch
from dissectors.net import Datagram, NetworkDecoder
from voipwatch.batch import candidates, reader, grouping
from voipwatch.analyze import analyze_files
from voipwatch.capture import read_capture
from voipwatch.batch.candidates import decode_candidates, group_candidates, rtp_candidates
from voipwatch.batch.driver import ChunkReader
from voipwatch.batch.reader import HEAD, Scanner
from voipwatch.records import Frame
from voipwatch.config import load_settings


# -- captures --------------------------------------------------------------------------------------

def pcap(rng: random.Random, order: str = "<", nano: bool = False, timestamps: str = "steady", n: int = 1500,
         tail: bytes = b"") -> bytes:
    """A pcap file of n records; 5 % of the packets hold record-like bytes (fake headers)."""
    units = 10**9 if nano else 10**6
    out = [struct.pack(order + "IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    sec = 1_700_000_000
    for _ in range(n):
        if timestamps == "random":
            sec = rng.randrange(2**32)
        elif timestamps == "steady":
            sec += rng.random() < 0.02 and rng.randrange(1, 600)
        frac = 0 if timestamps == "zero" else rng.randrange(units)
        size = rng.choice([60, 214, 218, rng.randrange(0, 400)])
        if rng.random() < 0.05:
            fake = b""
            while len(fake) < size:
                length = rng.randrange(0, 40)
                fake += struct.pack(order + "IIII", sec, frac, length, length) + bytes(length)
            data = fake[:size]
        else:
            data = rng.randbytes(size)
        wire = size + (rng.random() < 0.1 and rng.randrange(100)) - (rng.random() < 0.02 and min(size, 5))
        out.append(struct.pack(order + "IIII", sec, frac, size, max(wire, 0)) + data)
    return b"".join(out) + tail


def _block(btype: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def pcapng(rng: random.Random, n: int = 1500, jumpy: bool = False, tail: bytes = b"") -> bytes:
    """Two interfaces (µs, and ns with a snaplen of 100), statistics and custom blocks between packets."""
    out = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
           _block(1, struct.pack("<HHI", 1, 0, 0)),
           _block(1, struct.pack("<HHI", 1, 0, 100) + struct.pack("<HHB3x", 9, 1, 9) + bytes(4))]
    t = 1_700_000_000 * 10**6
    for _ in range(n):
        t += rng.randrange(2**40) if jumpy else rng.randrange(10**7)
        iface = rng.randrange(2)
        size = min(rng.choice([60, 90, 214, rng.randrange(0, 100)]), 100 if iface else 1000)
        data = rng.randbytes(size)
        if rng.random() < 0.05:
            fake = _block(6, struct.pack("<IIIII", 0, t >> 32, t & 0xFFFFFFFF, 8, 8) + bytes(8))
            data = (fake * (size // len(fake) + 1))[:size]
        out.append(_block(6, struct.pack("<IIIII", iface, t >> 32, t & 0xFFFFFFFF, size, size) + data))
        if rng.random() < 0.03:
            out.append(_block(5, bytes(16)) if rng.random() < 0.5 else _block(0x40000BAD, b"custom"))
    return b"".join(out) + tail


def scanned(path: Path, chunk: int) -> tuple[list[tuple], bool]:
    """(ts, linktype, data, wire_len, offset) per record the Scanner finds, reading `chunk` bytes at a
    time as driver.ChunkReader does, and whether it scanned the whole file."""
    data = path.read_bytes()
    scanner = Scanner(data[:64])
    base, rest, out = scanner.header_len, data[scanner.header_len:], []
    while rest and not scanner.irregular:
        buf = bytearray(rest[:chunk]) + bytearray(HEAD)
        end = min(chunk, len(rest))
        records, used = scanner.scan(buf, end, base)
        if used == 0:
            break
        for ts, lt, start, caplen, wire, off in zip(records.ts.tolist(), records.linktype.tolist(),
                                                   records.data_off.tolist(), records.caplen.tolist(),
                                                   records.wire_len.tolist(), records.file_off.tolist()):
            out.append((ts, lt, bytes(buf[start:start + caplen]), wire, off))
        base += used
        rest = rest[used:]
    return out, not rest and not scanner.irregular


CAPTURES = {
    "pcap": lambda rng: pcap(rng),
    "pcap-big-endian-ns": lambda rng: pcap(rng, ">", True),
    "pcap-random-ts": lambda rng: pcap(rng, timestamps="random"),
    "pcap-zero-ts": lambda rng: pcap(rng, ">", timestamps="zero"),
    "pcap-cut": lambda rng: pcap(rng, tail=struct.pack("<IIII", 1, 0, 100, 100) + bytes(10)),
    "pcap-bad-length": lambda rng: pcap(rng, tail=struct.pack("<IIII", 1, 0, 300_000, 300_000)),
    "pcapng": lambda rng: pcapng(rng),
    "pcapng-jumpy-ts": lambda rng: pcapng(rng, jumpy=True),
    "pcapng-simple-packet": lambda rng: pcapng(rng, tail=_block(3, struct.pack("<I", 4) + b"abcd")),
    "pcapng-short-interface-block": lambda rng: pcapng(rng, tail=_block(1, struct.pack("<HH", 1, 0)) + pcapng(rng, 5)),
    "pcapng-option-past-block": lambda rng: pcapng(rng, tail=_block(1, struct.pack("<HHIHH", 1, 0, 0, 14, 8))
                                                  + pcapng(rng, 5)[28:]),
    "pcapng-bad-byte-order": lambda rng: pcapng(rng, tail=_block(0x0A0D0D0A, struct.pack("<IHHq", 0x11223344, 1, 0, -1))),
}


@pytest.mark.parametrize("kind", sorted(CAPTURES))
@pytest.mark.parametrize("chunk", [4096, 20_000, 1 << 20])
def test_scanner_finds_the_records_capture_reads(kind, chunk, tmp_path, monkeypatch):
    # Small windows and short single-step runs, so that each way of walking meets each kind of record.
    monkeypatch.setattr(reader, "WINDOW_BYTES", 3000)
    monkeypatch.setattr(reader, "STEP_RECORDS", 16)
    path = tmp_path / f"{kind}.cap"
    path.write_bytes(CAPTURES[kind](random.Random(kind)))
    records, complete = scanned(path, chunk)
    frames = [(f.ts, f.linktype, f.data, f.wire_len, f.offset) for f in read_capture(str(path)) if type(f) is Frame]
    assert records == frames[:len(records)]
    assert complete == (kind in ("pcap", "pcap-big-endian-ns", "pcap-random-ts", "pcap-zero-ts", "pcapng",
                                 "pcapng-jumpy-ts"))
    if complete:
        assert len(records) == len(frames) > 1000


def test_chain_skips_starts_no_record_leads_to():
    starts = np.asarray([0, 5, 10, 12, 20, 22])
    nexts = np.asarray([10, 99, 20, 22, 25, 30])
    assert reader._chain(starts, nexts, 0).tolist() == [0, 10, 20]
    assert reader._chain(starts, nexts, 5).tolist() == []


# -- RTP candidates --------------------------------------------------------------------------------

ADDRESSES = [bytes([10, 0, 0, i]) for i in range(1, 5)] + [bytes([192, 168, 1, 200])]
ADDRESSES_V6 = [bytes.fromhex("fd000004000600000000000000000001"), bytes.fromhex("20010db8000000000000000000000002"),
                bytes(15) + b"\x01", bytes.fromhex("00000000000000000000ffff0a000001")]
PORTS = [53, 123, 5060, 5353, 10000, 10001, 40000, 40002]
# Link types of the vectorised path (dissectors.link.FIXED_HEADERS): Ethernet, Linux cooked v1/v2,
# raw IP (101, DLT_RAW 12 and 14, IPv4 228, IPv6 229), BSD null and loopback.
LINKTYPES = (1, 113, 276, 101, 12, 14, 228, 229, 0, 108)


DEFECTS = ("rtp_version", "rtcp_octet", "conflict_pt", "short_payload", "ext_overrun", "pad_zero",
           "pad_too_big", "udp_length", "ip_total", "ip_version", "fragment", "tcp", "wrong_protocol", "too_deep",
           "cut", "ether_pad", "ext_header", "jumbo", "llc")


def random_frame(rng: random.Random, linktype: int = 1) -> bytes:
    """An RTP/UDP/IP frame of random shape (IPv4 or IPv6, VLAN tags where the link type has an
    EtherType), half of them with one defect from DEFECTS."""
    defect = rng.choice(DEFECTS) if rng.random() < 0.5 else None
    cc = rng.choice([0, 0, 0, 1, 15])
    b0 = (0x40 if defect == "rtp_version" else 0x80) | cc
    extension = b""
    if rng.random() < 0.2 or defect == "ext_overrun":
        b0 |= 0x10
        words = 200 if defect == "ext_overrun" else rng.choice([0, 1, 3])
        extension = struct.pack("!HH", 0xBEDE, words) + rng.randbytes(4 * min(words, 3))
    body = rng.randbytes(rng.choice([0, 1, 20, 160]))
    if rng.random() < 0.15 or defect in ("pad_zero", "pad_too_big"):
        b0 |= 0x20
        body += bytes([{"pad_zero": 0, "pad_too_big": 250}.get(defect, rng.choice([1, len(body) + 1]))])
    b1 = {"rtcp_octet": 0xC8, "conflict_pt": 74}.get(defect, rng.choice([0, 8, 0x80, 18, 96, 101, 127, 0xE0]))
    payload = struct.pack("!BBHII", b0, b1, rng.randrange(65536), rng.randrange(2**32), rng.choice([1, 2, 3 << 30]))
    payload = payload + rng.randbytes(4 * cc) + extension + body
    if defect == "short_payload":
        payload = payload[:11]
    udp = struct.pack("!HHHH", rng.choice(PORTS), rng.choice(PORTS), 8 + len(payload) + (defect == "udp_length"), 0)
    udp += payload
    proto = 6 if defect == "tcp" else 17
    if linktype == 229 or linktype != 228 and rng.random() < 0.4:           # IPv6 (RFC 8200 §3)
        ext = b""
        if defect in ("fragment", "ext_header"):    # a Fragment (offset 0, M set) or hop-by-hop header
            ext = struct.pack("!BBHI", proto, 0, 1, 7) if defect == "fragment" else \
                struct.pack("!BB", proto, 0) + bytes(6)
        plen = 0 if defect == "jumbo" else len(ext) + len(udp) + (defect == "ip_total")
        first = 44 if defect == "fragment" else 0 if defect == "ext_header" else proto
        packet = (struct.pack("!IHBB16s16s", (0x4 if defect == "ip_version" else 0x6) << 28, plen, first, 64,
                              rng.choice(ADDRESSES_V6), rng.choice(ADDRESSES_V6)) + ext + udp)
        ethertype = 0x0800 if defect == "wrong_protocol" else 0x86DD
    else:                                           # IPv4 (RFC 791)
        ihl = rng.choice([5, 5, 5, 6, 15])
        packet = struct.pack("!BBHHHBBH4s4s", (0x60 if defect == "ip_version" else 0x40) | ihl, 0,
                             4 * ihl + len(udp) + (defect == "ip_total"), 0,
                             0x2000 if defect == "fragment" else rng.choice([0, 0x4000]), 64, proto, 0,
                             rng.choice(ADDRESSES), rng.choice(ADDRESSES)) + rng.randbytes(4 * ihl - 20) + udp
        ethertype = 0x86DD if defect == "wrong_protocol" else 0x0800
    depth = 4 if defect == "too_deep" else rng.choice([0, 1, 1, 2, 3])
    tags = b"".join(struct.pack("!HH", rng.choice([0x8100, 0x88A8, 0x9100]), rng.randrange(4096)) for _ in range(depth))
    protocol = struct.pack("!H", 0x0004 if defect == "llc" else ethertype)     # SLL: 4 is an 802.2 LLC frame
    if linktype == 1:
        link = bytes(11) + b"\x01" + tags + protocol
    elif linktype == 113:                           # the protocol field is the first tag's TPID, if any
        link = struct.pack("!HHH8s", 0, 1, 6, bytes(8)) + tags + protocol
    elif linktype == 276:
        chain = tags + protocol
        link = chain[:2] + struct.pack("!HIHBB8s", 0, 2, 1, 0, 6, bytes(8)) + chain[2:]
    elif linktype in (0, 108):
        # AF_INET 2; AF_INET6 of Linux, BSDs, macOS; another family. Either byte order on either type.
        family = 7 if defect == "wrong_protocol" else 2 if ethertype == 0x0800 else rng.choice([10, 24, 28, 30])
        link = struct.pack(rng.choice("<>") + "I", family)
    else:
        link = b""
    frame = link + packet + bytes(6 if defect == "ether_pad" else 0)
    return frame[:rng.randrange(len(link) + 1, len(frame))] if defect == "cut" else frame


def _mixed_records(tmp_path, seed: int = 7, n: int = 4000, linktype: int = 1):
    rng = random.Random(seed)
    frames = [random_frame(rng, linktype) for _ in range(n)]
    path = tmp_path / "mix.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype) + b"".join(
        struct.pack("<IIII", 1_700_000_000, i, len(f), len(f)) + f for i, f in enumerate(frames)))
    buf = bytearray(path.read_bytes()[24:]) + bytearray(HEAD)
    return frames, Scanner(path.read_bytes()[:64]).scan(buf, len(buf) - HEAD, 24)[0]


def test_grouping_survives_stream_hash_collisions(tmp_path, monkeypatch):
    """Streams numbered across chunks (grouping.KeyIds) group a chunk as the exact per-chunk path does,
    which is what group_candidates falls back to when two stream keys share a hash."""
    _, records = _mixed_records(tmp_path)
    decoded = decode_candidates(records)
    fields = ("index", "flow", "flows", "ssrc", "seq", "rtp_ts", "b1", "payload_len", "heuristic", "ts")
    usual = group_candidates(decoded)
    monkeypatch.setattr(grouping, "MIX", np.zeros(len(grouping.MIX), dtype=np.uint64))   # every key hashes to 0
    with pytest.raises(grouping.HashCollision):
        grouping.KeyIds(candidates.KEY_COLUMNS).ids(decoded.keys)
    colliding = group_candidates(decoded)
    assert all(np.array_equal(getattr(usual, f), getattr(colliding, f)) for f in fields)
    assert len(usual.flows) > 50


@pytest.mark.parametrize("linktype", LINKTYPES)
def test_rtp_candidates_decode_as_the_dissectors_do(linktype, tmp_path):
    frames, records = _mixed_records(tmp_path, linktype=linktype)
    cands = rtp_candidates(records)
    assert len(frames) // 6 < len(cands) < len(frames) // 2
    # Ports the dispatch table names are left to the per-frame pipeline (dissectors/dispatch.py).
    named = {port for entry in dispatch.udp_entries() for port in entry.ports | entry.home}
    assert named == {53, 5353, 5060, 5061, 69, 161, 162, 2427, 2727, 2944, 2945, 1719, 4569}   # DNS, SIP, TFTP, SNMP, MGCP, H.248, RAS, IAX2
    assert sorted(cands.index.tolist()) == sorted(set(cands.index.tolist()))
    flows = cands.flows.tolist()
    streams = list(zip(cands.flow.tolist(), cands.ssrc.tolist()))
    # Grouped by stream, in record order within each.
    assert [s for i, s in enumerate(streams) if i == 0 or s != streams[i - 1]] == list(dict.fromkeys(streams))
    assert all(a < b for (s, a), (t, b) in zip(zip(streams, cands.index), zip(streams[1:], cands.index[1:])) if s == t)
    versions, tagged = set(), 0
    for row, i in enumerate(cands.index.tolist()):
        decoded = NetworkDecoder().decode(Frame(1.0, i + 1, linktype, frames[i], len(frames[i])))
        assert type(decoded) is Datagram and decoded.anomaly is None and decoded.meta.transport == "udp"
        meta, payload = decoded.meta, decoded.payload
        pkt = rtp.parse_rtp(meta, payload, False)
        assert pkt is not None
        assert candidates.flow_of(tuple(flows[cands.flow[row]])) == (meta.vlan, meta.src, meta.sport, meta.dst,
                                                                     meta.dport)
        versions.add(ip_address(meta.src).version)
        tagged += bool(meta.vlan)
        assert (int(cands.ssrc[row]), int(cands.seq[row]), int(cands.rtp_ts[row]), int(cands.b1[row]) & 0x7F,
                bool(cands.b1[row] & 0x80), int(cands.payload_len[row])) == \
            (pkt.ssrc, pkt.seq, pkt.rtp_ts, pkt.pt, pkt.marker, pkt.payload_len)
        assert bool(cands.heuristic[row]) == \
            (rtp.looks_like_rtp(payload) and not {meta.sport, meta.dport} & rtp.HEURISTIC_EXCLUDED_PORTS)
        assert meta.sport not in named and meta.dport not in named
    assert versions == {228: {4}, 229: {6}}.get(linktype, {4, 6})
    assert (tagged > 50) == (linktype in (1, 113, 276))


def test_flow_codes_survive_hash_collisions(monkeypatch):
    rng = np.random.default_rng(3)
    columns = [rng.integers(0, 5, size=2000).astype(np.uint64) << np.uint64(40) for _ in range(3)]
    codes, first = candidates._factorize_rows(columns)
    monkeypatch.setattr(grouping, "MIX", np.zeros(len(grouping.MIX), dtype=np.uint64))   # every row hashes to 0
    assert [a.tolist() for a in candidates._factorize_rows(columns)] == [codes.tolist(), first.tolist()]
    rows = list(zip(*(c.tolist() for c in columns)))
    assert [rows[i] for i in first.tolist()] == list(dict.fromkeys(rows))
    assert [rows[i] for i in first[codes].tolist()] == rows


def test_streams_mixing_candidates_and_per_frame_packets(tmp_path):
    """A quarter of the packets carry IP options, CSRCs and an RTP header extension that end past the
    octets the vectorised path reads (reader.HEAD), which leaves them to the per-frame path: both
    paths, and --jobs 2, still give the same streams."""
    rng = random.Random(5)
    records = []
    slow = 0
    for i in range(8000):
        src, dst, ssrc = rng.choice([(1, 2, 7), (2, 1, 8), (3, 4, 9), (4, 3, 10)])
        ihl = 15 if rng.random() < 0.25 else 5
        slow += ihl == 15
        cc = 15 if ihl == 15 else 0                 # then 18 + 60 + 8 + 12 + 60 + 4 octets > HEAD
        rtp_packet = struct.pack("!BBHII", 0x80 | 0x10 * (cc > 0) | cc, 0, (i // 4) & 0xFFFF, i // 4 * 160, ssrc)
        rtp_packet += bytes(4 * cc) + (struct.pack("!HH", 0xBEDE, 0) if cc else b"") + bytes(160)
        udp = struct.pack("!HHHH", 40000 + src, 40000 + dst, 8 + len(rtp_packet), 0) + rtp_packet
        ip = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(udp), 0, 0, 64, 17, 0, bytes([10, 0, 0, src]),
                         bytes([10, 0, 0, dst])) + bytes(4 * ihl - 20) + udp
        frame = bytes(12) + struct.pack("!HHH", 0x8100, 10, 0x0800) + ip
        records.append(struct.pack("<IIII", 1_700_000_000 + i // 200, i % 200 * 5000, len(frame), len(frame)) + frame)
    path = tmp_path / "two-paths.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"".join(records))
    assert sum(chunk.n_cands for chunk in ChunkReader(str(path))) == 8000 - slow > 5000
    batch = analyze_files([str(path)])
    assert batch.summary["frames_by_class"] == {"rtp": 8000}
    streams = batch.tables["rtp_streams"]
    assert len(streams) == 4 and streams["packets"].sum() == 8000
    assert streams.equals(analyze_files([str(path)], mode="stream").tables["rtp_streams"])
    assert streams.equals(analyze_files([str(path)], jobs=2).tables["rtp_streams"])


@pytest.mark.parametrize("capture", ["sipnab/invite-opus-bye.pcap", "rtp-pcap/sip-rtp-opus.pcap"])
def test_media_outliving_its_binding(capture, public_captures):
    """Media going on longer than media_binding_max_s after its SDP: the later packets are no longer
    announced (no rtpmap clock for their dynamic payload type) in both paths alike."""
    settings = load_settings(None, ("pipeline.media_binding_max_s=0.5",))
    path = str(public_captures / capture)
    batch = analyze_files([path], settings).tables["rtp_streams"]
    assert batch.equals(analyze_files([path], settings, mode="stream").tables["rtp_streams"])
    assert not batch.equals(analyze_files([path]).tables["rtp_streams"])      # the binding's age matters here
