"""IP layer: IPv4/IPv6 headers and extension headers, fragments, tunnels, UDP/TCP headers, buckets."""
from __future__ import annotations

import random
import re
import struct
import subprocess
from pathlib import Path

import pytest

from dissectors import ip
from dissectors.ipfrag import FragmentReassembler
from dissectors.net import ANOMALIES, BUCKETS, NOT_FRAMES, Datagram, NetworkDecoder, Skipped
from voipwatch.capture import read_capture
from voipwatch.records import Anomaly, Frame, PacketMeta

A4, B4 = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
A6, B6 = bytes.fromhex("20010db8" + "0" * 23 + "1"), bytes.fromhex("20010db8" + "0" * 23 + "2")
MAC = bytes.fromhex("0066778899bb0011223344aa")


def ipv4(proto: int, payload: bytes, *, ident: int = 1, flags_offset: int = 0, options: bytes = b"",
         total: int | None = None, src: bytes = A4, dst: bytes = B4, version_ihl: int | None = None) -> bytes:
    ihl = 5 + len(options) // 4
    length = 20 + len(options) + len(payload) if total is None else total
    head = struct.pack("!BBHHHBBH4s4s", (4 << 4 | ihl) if version_ihl is None else version_ihl, 0, length,
                       ident, flags_offset, 64, proto, 0xBEEF, src, dst)   # checksum deliberately wrong
    return head + options + payload


def ipv6(nh: int, payload: bytes, *, plen: int | None = None) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload) if plen is None else plen, nh, 64, A6, B6) + payload


def udp(payload: bytes, sport: int = 5060, dport: int = 5060, length: int | None = None) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload) if length is None else length, 0) + payload


def tcp(payload: bytes, seq: int = 1000, flags: int = 0x18, offset_words: int = 5, options: bytes = b"") -> bytes:
    return struct.pack("!HHIIHHHH", 40000, 5060, seq, 0, offset_words << 12 | flags, 65535, 0, 0) + options + payload


def eth(payload: bytes, ethertype: int = 0x0800) -> bytes:
    return MAC + struct.pack("!H", ethertype) + payload


def frame(data: bytes, n: int = 1, ts: float = 100.0, linktype: int = 1, wire_len: int | None = None) -> Frame:
    return Frame(ts, n, linktype, data, len(data) if wire_len is None else wire_len)


def decode(data: bytes, linktype: int = 1, decoder: NetworkDecoder | None = None):
    return (decoder or NetworkDecoder()).decode(frame(data, linktype=linktype))


def fragments_v4(payload: bytes, size: int, ident: int = 7) -> list[bytes]:
    pieces = []
    for start in range(0, len(payload), size):
        more = 0x2000 if start + size < len(payload) else 0
        pieces.append(eth(ipv4(17, payload[start:start + size], ident=ident, flags_offset=more | start // 8)))
    return pieces


def tshark_fields(tshark: str, path: Path, *fields: str, display: str | None = None) -> list[list[str]]:
    cmd = [tshark, "-r", str(path), "-T", "fields"] + [a for f in fields for a in ("-e", f)]
    if display:
        cmd += ["-Y", display]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def call_id(message: bytes) -> str:
    found = re.search(rb"(?im)^(?:call-id|i)[ \t]*:[ \t]*([^\r\n]+)", message)
    return found.group(1).decode() if found else ""


# --- real captures --------------------------------------------------------------------------------

@pytest.mark.peer
def test_ipv6_fragments_reassemble_to_the_sip_messages_tshark_shows(public_captures: Path, tshark: str) -> None:
    path = public_captures / "sngrep/ipv6frag.pcap"
    rows = tshark_fields(tshark, path, "frame.number", "udp.length", "sip.Request-Line", "sip.Status-Line",
                         "sip.Call-ID", display="sip")
    decoder = NetworkDecoder()
    got = {}
    pending = []
    for f in read_capture(str(path)):
        result = decoder.decode(f)
        if type(result) is Datagram:
            got[f.frame] = result
        else:
            assert result == Skipped("ip.fragment_pending", b"", result.src_mac, ())
            pending.append(f.frame)
    assert pending == [1, 4]
    assert len(got) == len(rows) == 32
    for number, udp_len, request, status, cid in rows:
        dgram = got[int(number)]
        assert dgram.meta.frame == int(number) and dgram.meta.transport == "udp"
        assert len(dgram.payload) == int(udp_len) - 8
        assert dgram.payload.split(b"\r\n", 1)[0].decode() == (request or status)
        assert call_id(dgram.payload) == cid
    assert got[2].meta.src == "fd17:625c:f037:2:a00:27ff:feb9:1521" and got[2].anomaly is None


@pytest.mark.peer
def test_ip_in_ip_uses_the_inner_addresses(public_captures: Path, tshark: str) -> None:
    path = public_captures / "sngrep/ipip.pcap"
    rows = tshark_fields(tshark, path, "ip.src", "ip.dst", "tcp.srcport", "tcp.len")
    decoder = NetworkDecoder()
    for row, f in zip(rows, read_capture(str(path)), strict=True):
        srcs, dsts = row[0].split(","), row[1].split(",")
        result = decoder.decode(f)
        assert (result.meta.src, result.meta.dst, result.meta.sport) == (srcs[-1], dsts[-1], int(row[2]))
        assert len(result.payload) == int(row[3])
        assert result.tunnels == tuple(("ipip", s, d) for s, d in zip(srcs[:-1], dsts[:-1]))


def test_gre_ppp_to_sip(public_captures: Path) -> None:
    (f,) = read_capture(str(public_captures / "ndpi/pcap/gre.pcapng"))
    result = NetworkDecoder().decode(f)
    assert type(result) is Datagram
    assert result.meta == PacketMeta(f.ts, 1, (142,), "192.168.10.210", 5060, "192.168.103.40", 5060, "udp")
    assert result.tunnels == (("gre", "109.105.228.253", "10.177.98.84"),)
    assert result.payload.startswith(b"SIP/2.0 100 Trying\r\n") and len(result.payload) == 298
    assert result.src_mac == "9c:37:f4:7c:6e:91"


@pytest.mark.peer
def test_icmp_and_igmp_buckets_match_tshark(public_captures: Path, tshark: str) -> None:
    path = public_captures / "ipfixprobe/inputs/sip.pcap"
    protocols = [r[0] for r in tshark_fields(tshark, path, "frame.protocols")]
    decoder = NetworkDecoder()
    buckets = [r.bucket for r in map(decoder.decode, read_capture(str(path))) if type(r) is Skipped]
    assert buckets.count("icmp") == sum(p.startswith("eth:ethertype:ip:icmp") for p in protocols)
    assert buckets.count("igmp") == sum(":igmp" in p for p in protocols)
    assert buckets.count("icmp") > 0


def test_fast_path_equals_general_path(public_captures: Path) -> None:
    """The straight-line Ethernet/IPv4/UDP path is an optimisation, never a different answer."""
    checked = 0
    for path in sorted(public_captures.rglob("*.pcap*")):
        if path.suffix not in (".pcap", ".pcapng"):
            continue
        fast, general = NetworkDecoder(), NetworkDecoder()
        for f in read_capture(str(path)):
            if type(f) is not Frame:
                continue
            a, b = fast.decode(f), general._decode(f)
            assert a == b, (path, f.frame)
            if type(a) is Skipped:
                assert a.bucket in BUCKETS
            elif type(a) is Anomaly:
                assert a.name in ANOMALIES and a.name not in NOT_FRAMES
            if type(a) is Datagram:
                m = a.meta
                assert m == PacketMeta(m.ts, m.frame, m.vlan, m.src, m.sport, m.dst, m.dport, m.transport)
            checked += 1
    assert checked > 40000


# --- IPv4 -----------------------------------------------------------------------------------------

def test_ipv4_options_and_bad_checksum_are_no_reason_to_drop() -> None:
    result = decode(eth(ipv4(17, udp(b"hello"), options=b"\x94\x04\x00\x00")))   # router alert
    assert type(result) is Datagram and result.payload == b"hello" and result.anomaly is None


def test_ipv4_header_anomalies() -> None:
    cases = [
        (eth(ipv4(17, udp(b"x"), version_ihl=0x65)), "ip.bad_version"),
        (eth(ipv4(17, udp(b"x"), version_ihl=0x44)), "ip.bad_header_length"),
        (eth(ipv4(17, udp(b"x"), total=12)), "ip.bad_header_length"),
        (eth(ipv4(17, b"")[:12]), "ip.truncated"),
        (eth(ipv4(17, b"", options=b"\x01" * 8)[:24]), "ip.truncated"),
    ]
    for data, name in cases:
        result = decode(data)
        assert type(result) is Anomaly and (result.layer, result.name) == ("ip", name), data


def test_ipv4_total_length_zero_is_tso() -> None:
    result = decode(eth(ipv4(17, udp(b"offloaded"), total=0)))
    assert type(result) is Datagram and result.payload == b"offloaded"


def test_capture_cut_short_keeps_what_is_there() -> None:
    whole = eth(ipv4(17, udp(b"0123456789" * 10)))
    result = NetworkDecoder().decode(frame(whole[:80], wire_len=len(whole)))
    assert type(result) is Datagram and result.truncated and result.anomaly is None
    assert result.payload == (b"0123456789" * 10)[:80 - 42]


def test_ipv4_fragments_out_of_order() -> None:
    message = b"INVITE sip:bob@example.com SIP/2.0\r\n" + bytes(range(256)) * 12
    pieces = fragments_v4(udp(message), 1480)
    assert len(pieces) == 3
    decoder = NetworkDecoder()
    order = [2, 0, 0, 1]                                        # third, first, first again (duplicate), second
    results = [decoder.decode(frame(pieces[i], n=10 + k, ts=50.0 + k)) for k, i in enumerate(order)]
    assert [type(r) for r in results[:3]] == [Skipped] * 3
    assert all(r.bucket == "ip.fragment_pending" for r in results[:3])
    done = results[3]
    assert type(done) is Datagram and done.payload == message
    assert (done.meta.frame, done.meta.ts, done.meta.sport) == (13, 53.0, 5060)
    assert len(decoder.fragments) == 0


def test_ipv4_overlapping_fragments_are_refused() -> None:
    payload = udp(bytes(64))
    first = eth(ipv4(17, payload[:48], ident=9, flags_offset=0x2000))
    overlapping = eth(ipv4(17, b"\xff" * 24, ident=9, flags_offset=0x2000 | 5))   # bytes 40-64 over 0-48
    decoder = NetworkDecoder()
    assert decoder.decode(frame(first)).bucket == "ip.fragment_pending"
    bad = decoder.decode(frame(overlapping, n=2))
    assert type(bad) is Anomaly and (bad.name, bad.frame, bad.src) == ("ip.fragment_overlap", 2, "10.0.0.1")
    assert len(decoder.fragments) == 0                          # the whole datagram is dropped


def test_fragment_bounds() -> None:
    decoder = NetworkDecoder()
    oversize = eth(ipv4(17, bytes(16), flags_offset=0x1FFF))   # offset 65528 + 16 bytes
    assert decoder.decode(frame(oversize)).name == "ip.fragment_oversize"
    small = NetworkDecoder(FragmentReassembler(max_datagrams=2))
    for ident in range(3):
        result = small.decode(frame(fragments_v4(udp(bytes(100)), 56, ident=ident)[0], n=ident + 1))
    assert type(result) is Anomaly and result.name == "ip.fragment_table_full"
    assert len(small.fragments) == 2
    cut = eth(ipv4(17, bytes(40), flags_offset=0x2000))
    assert NetworkDecoder().decode(frame(cut[:40], wire_len=len(cut))).name == "ip.truncated"


def test_fragment_timeout_is_capture_time() -> None:
    decoder = NetworkDecoder()
    first, second = fragments_v4(udp(bytes(100)), 56)
    decoder.decode(frame(first, n=1, ts=10.0))
    assert decoder.expire(40.0) == []                           # 30 s not yet exceeded
    (late,) = decoder.expire(40.5)
    assert (late.name, late.frame, late.ts) == ("ip.fragment_timeout", 1, 10.0)
    assert decoder.decode(frame(second, n=2, ts=41.0)).bucket == "ip.fragment_pending"


def test_stale_fragments_do_not_join_a_later_datagram() -> None:
    decoder = NetworkDecoder()
    old_first, _ = fragments_v4(udp(b"a" * 100), 56)
    first, second = fragments_v4(udp(b"b" * 100), 56)
    decoder.decode(frame(old_first, n=1, ts=0.0))
    decoder.decode(frame(first, n=2, ts=100.0))                 # same key, 100 s later: the old one expired
    done = decoder.decode(frame(second, n=3, ts=100.1))
    assert type(done) is Datagram and done.payload == b"b" * 100
    assert [a.name for a in decoder.expire(100.2)] == ["ip.fragment_timeout"]


def test_reassembler_rejects_inconsistent_last_fragments() -> None:
    r = FragmentReassembler()
    assert r.add("k", 0, True, 17, bytes(16), 0.0, 1) is None
    assert r.add("k", 32, False, 17, bytes(8), 0.0, 2) is None
    assert r.add("k", 48, False, 17, bytes(8), 0.0, 3)[0] == "ip.fragment_overlap"
    assert r.add("j", 16, True, 17, bytes(32), 0.0, 4) is None
    assert r.add("j", 0, False, 17, bytes(16), 0.0, 5)[0] == "ip.fragment_overlap"   # held bytes pass the end
    assert len(r) == 0


# --- IPv6 -----------------------------------------------------------------------------------------

def test_ipv6_extension_headers() -> None:
    hop = bytes([60, 0]) + b"\x01\x04\x00\x00\x00\x00"                     # -> destination options
    dst = bytes([43, 1]) + bytes(14)                                        # 16 bytes -> routing
    routing = bytes([51, 0, 0, 0]) + bytes(4)                               # -> AH
    ah = bytes([17, 4]) + bytes(22)                                         # (4 + 2) * 4 = 24 bytes -> UDP
    result = decode(eth(ipv6(0, hop + dst + routing + ah + udp(b"deep")), 0x86DD))
    assert type(result) is Datagram and result.payload == b"deep"
    assert (result.meta.src, result.meta.dst) == ("2001:db8::1", "2001:db8::2")


def test_ipv6_atomic_fragment_is_a_whole_packet() -> None:
    frag = struct.pack("!BBHI", 17, 0, 0, 77)
    result = decode(eth(ipv6(44, frag + udp(b"atomic")), 0x86DD))
    assert type(result) is Datagram and result.payload == b"atomic"


def test_ipv6_fragments_with_headers_after_the_fragment_header() -> None:
    body = bytes([17, 0]) + bytes(6) + udp(b"x" * 120)                      # dest options, then UDP
    decoder = NetworkDecoder()
    first = ipv6(44, struct.pack("!BBHI", 60, 0, 0 | 1, 5) + body[:64])
    second = ipv6(44, struct.pack("!BBHI", 60, 0, 64, 5) + body[64:])
    assert decoder.decode(frame(eth(second, 0x86DD))).bucket == "ip.fragment_pending"
    done = decoder.decode(frame(eth(first, 0x86DD), n=2))
    assert type(done) is Datagram and done.payload == b"x" * 120 and done.meta.frame == 2


def test_ipv6_bad_extension_headers() -> None:
    for payload in (bytes([17]), bytes([17, 3]) + bytes(10),
                    (bytes([60, 0]) + bytes(6)) * 17 + udp(b"")):
        result = decode(eth(ipv6(60, payload), 0x86DD))
        assert type(result) is Anomaly and (result.layer, result.name) == ("ip", "ipv6.bad_ext_header")
    short = decode(eth(ipv6(17, b"")[:30], 0x86DD))
    assert short.name == "ip.truncated"
    assert decode(eth(b"\x45" + ipv6(17, udp(b""))[1:], 0x86DD)).name == "ip.bad_version"


# --- tunnels --------------------------------------------------------------------------------------

def gre(proto: int, payload: bytes, flags: int = 0, extra: bytes = b"") -> bytes:
    return struct.pack("!HH", flags, proto) + extra + payload


def test_gre_version0_with_checksum_key_sequence() -> None:
    inner = ipv4(17, udp(b"in gre"), src=bytes([192, 168, 0, 1]), dst=bytes([192, 168, 0, 2]))
    outer = eth(ipv4(47, gre(0x0800, inner, 0xB000, bytes(12))))
    result = decode(outer)
    assert result.meta.src == "192.168.0.1" and result.payload == b"in gre"
    assert result.tunnels == (("gre", "10.0.0.1", "10.0.0.2"),)


def test_gre_transparent_ethernet_keeps_inner_tags_and_macs() -> None:
    inner_eth = bytes.fromhex("020000000002020000000001") + struct.pack("!HH", 0x8100, 77) + b"\x08\x00" \
        + ipv4(17, udp(b"bridged"))
    outer = MAC + struct.pack("!HH", 0x8100, 5) + b"\x08\x00" + ipv4(47, gre(0x6558, inner_eth))
    result = decode(outer)
    assert result.meta.vlan == (5, 77) and result.payload == b"bridged"
    assert (result.src_mac, result.dst_mac) == ("02:00:00:00:00:01", "02:00:00:00:00:02")


def test_gre_ipv6_and_ipv6_in_ipv4() -> None:
    assert decode(eth(ipv4(47, gre(0x86DD, ipv6(17, udp(b"v6")))))).meta.src == "2001:db8::1"
    sixin4 = decode(eth(ipv4(41, ipv6(17, udp(b"6in4")))))
    assert sixin4.payload == b"6in4" and sixin4.tunnels == (("ipip", "10.0.0.1", "10.0.0.2"),)


def test_gre_anomalies() -> None:
    for payload, name in [
        (gre(0x88BE, bytes(8)), "gre.unsupported"),               # ERSPAN: not decoded
        (gre(0x0800, bytes(30), 0x4000), "gre.unsupported"),      # RFC 1701 routing
        (gre(0x0800, bytes(30), 0x0002), "gre.unsupported"),      # version 2
        (gre(0x0800, b"", 0x2001), "gre.unsupported"),            # version 1 must carry PPP
        (b"\x00", "gre.truncated"),
        (gre(0x0800, b"", 0xB000), "gre.truncated"),
    ]:
        result = decode(eth(ipv4(47, payload)))
        assert type(result) is Anomaly and (result.layer, result.name) == ("ip", name), payload


def test_nested_tunnels_are_bounded() -> None:
    packet = ipv4(17, udp(b"core"))
    for _ in range(6):
        packet = ipv4(4, packet)
    result = decode(eth(packet))
    assert type(result) is Anomaly and result.name == "ip.encap_too_deep"


# --- transport headers and buckets ------------------------------------------------------------------

def test_udp_length_sanity() -> None:
    long_claim = decode(eth(ipv4(17, udp(b"abc", length=50))))
    assert type(long_claim) is Datagram and long_claim.payload == b"abc"
    note = long_claim.anomaly
    assert note is not None and (note.layer, note.name, note.frame) == ("udp", "udp.bad_length", 1)
    tiny = decode(eth(ipv4(17, udp(b"abc", length=4))))
    assert tiny.anomaly.name == "udp.bad_length" and tiny.payload == b"abc"
    trimmed = decode(eth(ipv4(17, udp(b"abc", length=10) + b"pad")))
    assert trimmed.payload == b"ab" and trimmed.anomaly is None
    short = decode(eth(ipv4(17, b"\x13\xc4\x13")))
    assert type(short) is Anomaly and (short.layer, short.name) == ("udp", "udp.truncated")


def test_tcp_header_fields() -> None:
    result = decode(eth(ipv4(6, tcp(b"REGISTER", seq=0xFFFFFFF0, flags=0x19, offset_words=8, options=bytes(12)))))
    assert type(result) is Datagram and result.meta.transport == "tcp"
    assert (result.tcp_seq, result.tcp_flags, result.payload) == (0xFFFFFFF0, 0x19, b"REGISTER")
    assert decode(eth(ipv4(6, tcp(b"", offset_words=4)))).name == "tcp.bad_header_length"
    assert decode(eth(ipv4(6, tcp(b"")[:12]))).name == "tcp.truncated"
    assert decode(eth(ipv4(6, tcp(b"", offset_words=15)))).name == "tcp.truncated"


def test_other_protocols_are_named_buckets() -> None:
    assert decode(eth(ipv4(1, b"\x08\x00" + bytes(6)))).bucket == "icmp"
    assert decode(eth(ipv4(2, bytes(8)))).bucket == "igmp"
    assert decode(eth(ipv6(58, bytes(8)), 0x86DD)).bucket == "icmpv6"
    assert decode(eth(ipv4(132, bytes(12)))).bucket == "ip.other_proto"    # SCTP
    assert decode(eth(ipv6(59, b""), 0x86DD)).bucket == "ip.other_proto"   # no next header


def test_address_cache_is_bounded() -> None:
    for i in range(ip._ADDR_CACHE_MAX + 500):
        assert ip.ntop(struct.pack("!I", 0x0A000000 + i)) == f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
    assert len(ip._addr_cache) <= ip._ADDR_CACHE_MAX
    assert ip.ntop(A6) == "2001:db8::1"


def test_ip_decoding_never_raises_on_mutations(public_captures: Path) -> None:
    """R2 fuzz on the IP/transport bytes of real frames (fragments and tunnels included)."""
    rng = random.Random(11)
    samples = []
    for rel in ("sngrep/ipv6frag.pcap", "sngrep/ipip.pcap", "ndpi/pcap/gre.pcapng", "sngrep/aaa.pcap"):
        samples += [f for f in read_capture(str(public_captures / rel)) if type(f) is Frame][:60]
    decoder = NetworkDecoder()
    names: set[str] = set()
    for n in range(20000):
        f = rng.choice(samples)
        data = bytearray(f.data)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(14, min(len(data), 120))] = rng.randrange(256)
        result = decoder.decode(Frame(f.ts + n, n, f.linktype, bytes(data), len(data)))
        names.add(result.bucket if type(result) is Skipped else result.name if type(result) is Anomaly
                  else result.anomaly.name if result.anomaly else "datagram")
    names |= {a.name for a in decoder.expire(1e12)}
    assert names - {"datagram"} <= BUCKETS.keys() | ANOMALIES.keys()
    assert {"ip.fragment_pending", "ip.fragment_overlap", "udp.bad_length", "ip.bad_version"} <= names
    assert len(decoder.fragments) == 0
