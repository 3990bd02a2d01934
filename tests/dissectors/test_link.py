"""Link layers: VLAN stacks against tshark, every LINKTYPE, non-IP buckets and link anomalies."""
from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from dissectors import link
from dissectors.net import ANOMALIES, BUCKETS, NOT_FRAMES, Datagram, NetworkDecoder, Skipped
from voipwatch.capture import read_capture
from voipwatch.records import Anomaly, Frame

MAC_A, MAC_B = bytes.fromhex("0011223344aa"), bytes.fromhex("0066778899bb")
IPV4_UDP = (struct.pack("!BBHHHBBH4s4s", 0x45, 0, 32, 1, 0, 64, 17, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
            + struct.pack("!HHHH", 5060, 5061, 12, 0) + b"ping")
IPV6_UDP = (struct.pack("!IHBB16s16s", 6 << 28, 12, 17, 64, bytes(15) + b"\x01", bytes(15) + b"\x02")
            + struct.pack("!HHHH", 5060, 5061, 12, 0) + b"ping")


def frame(data: bytes, linktype: int = 1) -> Frame:
    return Frame(1.0, 1, linktype, data, len(data))


def decode(data: bytes, linktype: int = 1) -> Datagram | Skipped | Anomaly:
    return NetworkDecoder().decode(frame(data, linktype))


def eth(ethertype: int, payload: bytes, tags: tuple[tuple[int, int], ...] = ()) -> bytes:
    head = MAC_B + MAC_A
    for tpid, vid in tags:
        head += struct.pack("!HH", tpid, vid)
    return head + struct.pack("!H", ethertype) + payload


def vlan_of(result: Datagram | Skipped | Anomaly) -> tuple[int, ...]:
    return result.meta.vlan if type(result) is Datagram else result.vlan


def tshark_fields(tshark: str, path: Path, *fields: str) -> list[list[str]]:
    cmd = [tshark, "-r", str(path), "-T", "fields"] + [a for f in fields for a in ("-e", f)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


@pytest.mark.parametrize("rel", [
    "zeek/Traces/vlan-collisions.pcap", "zeek/Traces/q-in-q.pcap", "zeek/Traces/vlan-qinqinq.pcap",
    "tcpdump/802.1ad_QinQ.pcap", "snort3_demo/codecs/vlan/double_tagging_0x88A8_0x8100.pcap",
    "arkime/twovlan.pcap", "pcapplusplus/QinQ_802.1_AD.pcapng", "ipfixprobe/inputs/vlan.pcap",
    "ndpi/pcap/stun.pcap", "ndpi/pcap/gre.pcapng",
])
@pytest.mark.peer
def test_vlan_stacks_match_tshark(public_captures: Path, tshark: str, rel: str) -> None:
    path = public_captures / rel
    expected = []
    for row in tshark_fields(tshark, path, "ieee8021ad.id", "vlan.id"):
        ids = [int(v) for cell in row for v in cell.split(",") if v]   # 802.1ad S-tag first, then C-tags
        expected.append(tuple(ids))
    decoder = NetworkDecoder()
    got = [vlan_of(decoder.decode(f)) for f in read_capture(str(path)) if type(f) is Frame]
    assert got == expected
    assert any(expected)


@pytest.mark.peer
def test_macs_match_tshark(public_captures: Path, tshark: str) -> None:
    path = public_captures / "zeek/Traces/vlan-collisions.pcap"
    expected = [tuple(r) for r in tshark_fields(tshark, path, "eth.src", "eth.dst")]
    decoder = NetworkDecoder()
    got = [(r.src_mac, r.dst_mac) for r in map(decoder.decode, read_capture(str(path)))]
    assert got == expected


@pytest.mark.peer
def test_linux_cooked_keeps_sender_mac(public_captures: Path, tshark: str) -> None:
    path = public_captures / "sngrep/ipv6frag.pcap"
    expected = [r[0] for r in tshark_fields(tshark, path, "sll.src.eth")]
    got = [link.decode_link(f.linktype, f.data) for f in read_capture(str(path))]
    assert [lk.src_mac for lk in got] == expected
    assert {(lk.ethertype, lk.offset, lk.dst_mac) for lk in got} == {(link.ETHERTYPE_IPV6, 16, None)}


@pytest.mark.parametrize("rel,linktype", [
    ("ndpi/pcap/rtcp_multiple_pkts_in_the_same_datagram.pcap", 113), ("heplify/ipip0.pcap", 101),
    ("suricata-verify/dns/dns-udp-eve-log-srv/input.pcap", 101),
    ("zeek/Traces/sip/sip-long-request-response-paths.pcap", 228),
    ("suricata-verify/sip-body-large/sip-body-large.pcap", 0), ("sipnab/h263-over-rtp.pcap", 0),
])
@pytest.mark.peer
def test_public_link_types_reach_the_transport(public_captures: Path, tshark: str, rel: str, linktype: int) -> None:
    path = public_captures / rel
    expected = [(r[0] or r[1], int(r[2] or r[3])) for r in
                tshark_fields(tshark, path, "udp.srcport", "tcp.srcport", "udp.dstport", "tcp.dstport")]
    decoder = NetworkDecoder()
    got = []
    for f in read_capture(str(path)):
        assert f.linktype == linktype
        result = decoder.decode(f)
        assert type(result) is Datagram, result
        got.append((str(result.meta.sport), result.meta.dport))
    assert got == expected


def test_ethernet_tags_of_every_tpid_and_depth() -> None:
    tags = ((0x88A8, 0x2000 | 7), (0x9100, 8), (0x8100, 0xE000 | 9))   # priority bits are not the id
    result = decode(eth(0x0800, IPV4_UDP, tags))
    assert type(result) is Datagram and result.meta.vlan == (7, 8, 9)
    assert (result.src_mac, result.dst_mac) == ("00:11:22:33:44:aa", "00:66:77:88:99:bb")
    assert result.payload == b"ping" and result.meta.sport == 5060
    deep = decode(eth(0x0800, IPV4_UDP, ((0x8100, 1),) * (link.MAX_VLAN_TAGS + 1)))
    assert type(deep) is Anomaly and (deep.layer, deep.name) == ("link", "link.vlan_too_deep")


def test_linux_cooked_v1_and_v2_with_vlan_tags() -> None:
    sll = struct.pack("!HHH8sH", 0, 1, 6, MAC_A + b"\0\0", 0x8100) + struct.pack("!HH", 42, 0x0800) + IPV4_UDP
    result = decode(sll, 113)
    assert type(result) is Datagram and result.meta.vlan == (42,) and result.src_mac == "00:11:22:33:44:aa"
    sll2 = struct.pack("!HHIHBB8s", 0x86DD, 0, 3, 1, 4, 6, MAC_A + b"\0\0") + IPV6_UDP
    result = decode(sll2, 276)
    assert type(result) is Datagram and result.meta.src == "::1" and result.src_mac == "00:11:22:33:44:aa"
    # a non-Ethernet hardware type has no MAC to report (here: ARPHRD_IPGRE)
    sll_gre = struct.pack("!HHH8sH", 0, 778, 4, bytes(8), 0x0800) + IPV4_UDP
    assert decode(sll_gre, 113).src_mac is None


@pytest.mark.parametrize("header,linktype", [
    (struct.pack("<I", 2), 0), (struct.pack(">I", 2), 0), (struct.pack(">I", 2), 108), (struct.pack("<I", 2), 108),
])
def test_bsd_loopback_ipv4_both_byte_orders(header: bytes, linktype: int) -> None:
    result = decode(header + IPV4_UDP, linktype)
    assert type(result) is Datagram and result.meta.src == "10.0.0.1"


@pytest.mark.parametrize("family", [10, 24, 28, 30])
def test_bsd_loopback_ipv6_families(family: int) -> None:
    for packed in (struct.pack("<I", family), struct.pack(">I", family)):
        result = decode(packed + IPV6_UDP, 0)
        assert type(result) is Datagram and result.meta.dst == "::2"


def test_bsd_loopback_other_family_is_a_bucket() -> None:
    assert decode(struct.pack("<I", 7) + b"xx", 0) == Skipped("other_family")


@pytest.mark.parametrize("linktype", [101, 12, 14])
def test_raw_ip_by_version_nibble(linktype: int) -> None:
    assert decode(IPV4_UDP, linktype).meta.src == "10.0.0.1"
    assert decode(IPV6_UDP, linktype).meta.src == "::1"
    bad = decode(b"\x55" + IPV4_UDP[1:], linktype)
    assert type(bad) is Anomaly and bad.name == "ip.bad_version"


def test_ipv4_and_ipv6_linktypes() -> None:
    assert decode(IPV4_UDP, 228).meta.dst == "10.0.0.2"
    assert decode(IPV6_UDP, 229).meta.dst == "::2"


def test_ppp_with_and_without_compression() -> None:
    for head in (b"\xff\x03\x00\x21", b"\x00\x21", b"\x21"):
        assert decode(head + IPV4_UDP, 9).meta.src == "10.0.0.1"
    assert decode(b"\xff\x03\x00\x57" + IPV6_UDP, 9).meta.src == "::1"
    assert decode(b"\xc0\x21\x01\x01\x00\x04", 9) == Skipped("ppp.other_proto")
    assert decode(b"\xff\x03", 9).name == "link.truncated"


def test_pppoe_session_carries_ip(public_captures: Path) -> None:
    """nb6-startup resolves the SIP P-CSCF (DNS SRV) inside PPPoE: those queries must surface."""
    decoder = NetworkDecoder()
    results = {f.frame: decoder.decode(f) for f in read_capture(str(public_captures / "rtp-pcap/nb6-startup.pcap"))}
    srv = [r for r in results.values() if type(r) is Datagram and r.meta.dport == 53 and b"_sip" in r.payload]
    assert srv and all(r.meta.transport == "udp" for r in srv)
    buckets = {r.bucket for r in results.values() if type(r) is Skipped}
    assert {"pppoe_discovery", "ppp.other_proto", "arp"} <= buckets


@pytest.mark.peer
def test_non_ip_buckets_keep_lldp_and_cdp_payloads(public_captures: Path, tshark: str) -> None:
    lldp_payload = b"\x02\x07\x04" + MAC_A + b"\x00\x00"
    lldp = decode(eth(0x88CC, lldp_payload, ((0x8100, 30),)))
    assert lldp == Skipped("lldp", lldp_payload, "00:11:22:33:44:aa", (30,))
    assert decode(eth(0x0806, bytes(28))) == Skipped("arp", b"", "00:11:22:33:44:aa")
    assert decode(eth(0x88B5, b"x")).bucket == "other_ethertype"
    # CDP (802.3 + LLC/SNAP) and STP (LLC) in a real capture, counted like tshark does
    path = public_captures / "sipnab/SIP_CALL_RTP_G711"
    decoder = NetworkDecoder()
    results = [decoder.decode(f) for f in read_capture(str(path))]
    cdp = [r for r in results if type(r) is Skipped and r.bucket == "cdp"]
    stp = [r for r in results if type(r) is Skipped and r.bucket == "stp"]
    expected = tshark_fields(tshark, path, "frame.protocols")
    assert len(cdp) == sum(p[0].endswith(":cdp") for p in expected)
    assert len(stp) == sum(p[0].endswith(":stp") for p in expected)
    assert all(r.payload[:1] in (b"\x01", b"\x02") and r.src_mac for r in cdp)   # CDP version byte
    assert all(r.payload == b"" for r in stp)


def test_snap_encapsulated_ip() -> None:
    llc = struct.pack("!BBB3sH", 0xAA, 0xAA, 3, b"\0\0\0", 0x0800) + IPV4_UDP
    result = decode(MAC_B + MAC_A + struct.pack("!H", len(llc)) + llc)
    assert type(result) is Datagram and result.payload == b"ping"
    other = decode(MAC_B + MAC_A + struct.pack("!H", 3) + b"\xe0\xe0\x03")
    assert other.bucket == "llc"


def test_link_anomalies() -> None:
    for data, linktype, name in [
        (b"\0" * 10, 1, "link.truncated"), (b"\0" * 15, 113, "link.truncated"),
        (b"\0" * 19, 276, "link.truncated"), (b"\0\0", 0, "link.truncated"), (b"", 101, "link.truncated"),
        (eth(0x8100, b"\0\x01"), 1, "link.truncated"), (b"\0" * 64, 147, "link.unknown_linktype"),
        (eth(0x8864, b"\x11\x00"), 1, "link.truncated"),
    ]:
        result = decode(data, linktype)
        assert type(result) is Anomaly and (result.layer, result.name) == ("link", name), (data, linktype)
        assert (result.ts, result.frame) == (1.0, 1)


def test_link_decoder_never_raises_on_mutations(public_captures: Path) -> None:
    """R2 fuzz: cut and corrupt real frames of every link type; results only, never exceptions."""
    import random
    rng = random.Random(7)
    samples = []
    for rel in ("sngrep/ipv6frag.pcap", "ndpi/pcap/gre.pcapng", "zeek/Traces/vlan-qinqinq.pcap",
                "sipnab/h263-over-rtp.pcap", "heplify/ipip0.pcap", "sipnab/SIP_CALL_RTP_G711"):
        samples += [f for f in read_capture(str(public_captures / rel)) if type(f) is Frame][:40]
    decoder = NetworkDecoder()
    for _ in range(5000):
        f = rng.choice(samples)
        data = bytearray(f.data[:rng.randrange(len(f.data) + 1)])
        for _ in range(rng.randrange(4)):
            if data:
                data[rng.randrange(min(len(data), 80))] = rng.randrange(256)
        result = decoder.decode(Frame(f.ts, f.frame, f.linktype, bytes(data), len(data)))
        if type(result) is Skipped:
            assert result.bucket in BUCKETS
        elif type(result) is Anomaly:
            assert result.name in ANOMALIES and result.name not in NOT_FRAMES
        else:
            assert type(result) is Datagram and (result.anomaly is None or result.anomaly.name in NOT_FRAMES)
