"""RTCP dissector: byte-literal compound packets, SRTCP framing, peers (tshark 4.0), fuzzing."""
from __future__ import annotations

import struct
import subprocess

import dpkt
import pytest

from dissectors import rtcp
from voipwatch.records import PacketMeta, RtcpReportBlock
from frames import udp_frame
from mutate import mutations

META = PacketMeta(ts=1700000000.5, frame=3, vlan=(), src="10.0.0.1", sport=40001, dst="10.0.0.2",
                  dport=40003, transport="udp")


def packet(pt: int, count: int, body: bytes, padding: bool = False) -> bytes:
    """One RTCP packet: the RFC 3550 §6.4.1 common header with the length field filled in."""
    assert len(body) % 4 == 0
    return struct.pack("!BBH", 0x80 | (0x20 if padding else 0) | count, pt, len(body) // 4) + body


def block(ssrc, fraction, cumulative, highest, jitter, lsr, dlsr) -> bytes:
    return struct.pack("!IIIIII", ssrc, fraction << 24 | cumulative & 0xFFFFFF, highest, jitter, lsr, dlsr)


SENDER_INFO = struct.pack("!IIIII", 0xE1C2A3B4, 0x80000000, 160000, 1000, 160000)
BLOCK_1 = block(0x01932DB4, 16, -3, 0x1BEEF, 42, 0x11223344, 0x10000)
BLOCK_2 = block(0x0A0B0C0D, 255, 70000, 65536 * 2 + 5, 7, 0, 0)
SDES = packet(202, 1, struct.pack("!I", 0x5D931534) + b"\x01\x0balice@host1" + b"\x00\x00\x00")
SR = packet(200, 1, struct.pack("!I", 0x5D931534) + SENDER_INFO + BLOCK_1)


def test_compound_sr_sdes():
    pkt, anomalies = rtcp.parse_rtcp(META, SR + SDES)
    assert anomalies == []
    assert pkt.kinds == ("SR", "SDES") and pkt.sender_ssrc == 0x5D931534 and not pkt.encrypted
    assert pkt.reports == (RtcpReportBlock(ssrc=0x01932DB4, fraction_lost=16, cumulative_lost=-3, highest_seq=0x1BEEF,
                                           jitter=42, lsr=0x11223344, dlsr=0x10000),)
    assert pkt.cnames == ("alice@host1",) and pkt.pkt is META


def test_rr_with_two_report_blocks_then_bye_with_padding():
    rr = packet(201, 2, struct.pack("!I", 0xFEEDF00D) + BLOCK_1 + BLOCK_2)
    bye = packet(203, 1, struct.pack("!I", 0xFEEDF00D) + b"\x04ciao\x00\x00\x00" + b"\x00\x00\x00\x04", padding=True)
    pkt, anomalies = rtcp.parse_rtcp(META, rr + bye)
    assert anomalies == [] and pkt.kinds == ("RR", "BYE") and pkt.sender_ssrc == 0xFEEDF00D
    assert [(b.ssrc, b.fraction_lost, b.cumulative_lost, b.highest_seq) for b in pkt.reports] == [
        (0x01932DB4, 16, -3, 0x1BEEF), (0x0A0B0C0D, 255, 70000, 131077)]


def test_packet_type_names():
    body = struct.pack("!II", 1, 2)
    kinds = [packet(pt, 1, body) for pt in (204, 205, 206, 207, 210)]
    pkt, anomalies = rtcp.parse_rtcp(META, packet(201, 0, struct.pack("!I", 9)) + b"".join(kinds))
    assert anomalies == [] and pkt.kinds == ("RR", "APP", "RTPFB", "PSFB", "XR", "210") and pkt.reports == ()


# A real SRTCP packet (voipshark SIP-over-TLS-RSA-SRTP capture, frame 104): an RR in clear, the SDES
# encrypted, then E=1 with SRTCP index 1 and an 80-bit HMAC-SHA1 tag (RFC 3711 §3.4).
SRTCP = bytes.fromhex(
    "81c90007002948236932ca2f2d029b4b1998fe061d6ef89a09dea7d88b7c9e4e0a847fe15262de113484863ce6185a"
    "5df71b32d223c673b665fa863a80000001400ef9efbba278292d31")


def test_srtcp_trailer_marks_encrypted():
    pkt, anomalies = rtcp.parse_rtcp(META, SRTCP)
    assert anomalies == [] and pkt.encrypted
    assert pkt.kinds == ("RR",) and pkt.sender_ssrc == 0x00294823 and pkt.reports == () and pkt.cnames == ()
    # E flag and index straight after a one-packet compound, with a 32-bit tag.
    pkt, _ = rtcp.parse_rtcp(META, SR + b"\x80\x00\x00\x07" + b"\xaa" * 4)
    assert pkt.encrypted and pkt.kinds == ("SR",) and pkt.reports == ()


@pytest.mark.parametrize("data,name", [
    (b"", "rtcp.bad_length"),
    (b"\x80\xc8", "rtcp.bad_length"),
    (b"\x40\xc8\x00\x01\x00\x00\x00\x01", "rtcp.bad_version"),
    (SR[:40], "rtcp.bad_length"),                           # length field overruns the datagram
    (packet(201, 0, b"")[:2] + b"\x00\x05" + b"\x00" * 8, "rtcp.bad_length"),
])
def test_undecodable(data, name):
    pkt, anomalies = rtcp.parse_rtcp(META, data)
    assert pkt is None and [a.name for a in anomalies] == [name]
    assert anomalies[0].layer == "rtcp" and anomalies[0].frame == 3 and anomalies[0].src == "10.0.0.1"


def test_partial_damage_keeps_the_rest():
    short_blocks = packet(200, 3, struct.pack("!I", 1) + SENDER_INFO + BLOCK_1)     # RC=3, one block
    pkt, anomalies = rtcp.parse_rtcp(META, short_blocks + SDES)
    assert pkt.kinds == ("SR", "SDES") and pkt.reports == () and pkt.cnames == ("alice@host1",)
    assert [a.name for a in anomalies] == ["rtcp.bad_length"]
    bad_sdes = packet(202, 1, struct.pack("!I", 5) + b"\x01\x20ab")                 # item longer than packet
    pkt, anomalies = rtcp.parse_rtcp(META, SR + bad_sdes)
    assert pkt.kinds == ("SR", "SDES") and len(pkt.reports) == 1 and [a.name for a in anomalies] == ["rtcp.bad_sdes"]
    pkt, anomalies = rtcp.parse_rtcp(META, SR + b"\x00\x00")                        # 2 stray octets
    assert pkt.kinds == ("SR",) and not pkt.encrypted and [a.name for a in anomalies] == ["rtcp.bad_length"]


RR_ONLY = packet(201, 0, struct.pack("!I", 0x1234))
HEURISTIC_CASES = [
    RR_ONLY, SR + SDES, packet(202, 1, struct.pack("!I", 1)), packet(205, 1, struct.pack("!II", 1, 2)),
    packet(206, 1, struct.pack("!II", 1, 2)), packet(207, 0, struct.pack("!I", 1)), RR_ONLY + b"\x00",
    RR_ONLY[:2] + b"\x00\x09" + RR_ONLY[4:], packet(203, 1, struct.pack("!I", 1)),
    packet(204, 1, struct.pack("!I", 1) + b"abcd"), b"\x40" + RR_ONLY[1:], b"\x80\xc9", RR_ONLY[:4],
]


@pytest.mark.peer
def test_heuristic_matches_tshark(tmp_path, tshark):
    """tshark 4.0's rtcp_udp heuristic (on by default) takes the same payloads, but for a bare 4-octet
    header, which looks_like_rtcp refuses since every first packet type it accepts carries an SSRC."""
    path = tmp_path / "rtcp.pcap"
    with open(path, "wb") as f:
        writer = dpkt.pcap.Writer(f)
        for i, payload in enumerate(HEURISTIC_CASES):
            writer.writepkt(udp_frame(payload, 41000 + 4 * i, 41002 + 4 * i + i % 2), ts=1700000000 + i)
    out = subprocess.run([tshark, "-n", "-r", str(path), "-T", "fields", "-e", "frame.protocols"],
                         capture_output=True, text=True, check=True).stdout
    theirs = [line.endswith(":rtcp") for line in out.splitlines()]
    ours = [rtcp.looks_like_rtcp(p) for p in HEURISTIC_CASES]
    assert theirs[:-1] == ours[:-1] and theirs[-1] and not ours[-1]
    assert ours == [True, True, False, False, True, False, False, True, True, True, False, False, False]


NAMES = {str(pt): name for pt, name in rtcp.PACKET_TYPES.items()}


@pytest.mark.parametrize("capture", [
    "ndpi/pcap/rtcp_multiple_pkts_in_the_same_datagram.pcap", "sipnab/SIP_CALL_RTP_G711",
    "voipshark/SIP-RTP-Normal_Call_two_parties.pcap", "sngrep/aaa.pcap",
])
@pytest.mark.peer
def test_agrees_with_tshark(capture, public_captures, tshark):
    fields = ["udp.payload", "rtcp.pt", "rtcp.senderssrc", "rtcp.ssrc.identifier", "rtcp.ssrc.fraction",
              "rtcp.ssrc.cum_nr", "rtcp.ssrc.high_cycles", "rtcp.ssrc.high_seq", "rtcp.ssrc.jitter",
              "rtcp.ssrc.lsr", "rtcp.ssrc.dlsr",
              "rtcp.sdes.type", "rtcp.sdes.text", "_ws.expert.message"]
    args = [tshark, "-n", "-r", str(public_captures / capture), "-Y", "rtcp", "-T", "fields",
            "-E", "occurrence=a", "-E", "aggregator=\x1f"]
    for name in fields:
        args += ["-e", name]
    rows = subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines()
    assert rows
    for line in rows:
        payload, pts, senders, ids, *blocks, sdes_types, sdes_texts, expert = \
            [v.split("\x1f") if v else [] for v in line.split("\t")]
        data = bytes.fromhex(payload[0])
        pkt, anomalies = rtcp.parse_rtcp(META, data)
        # Two SIP_CALL_RTP_G711 datagrams end with 2 stray octets after their SDES; tshark is silent.
        assert [a.name for a in anomalies] == ([] if len(data) % 4 == 0 else ["rtcp.bad_length"])
        assert not expert and not pkt.encrypted
        assert pkt.kinds == tuple(NAMES.get(pt, pt) for pt in pts)
        if pkt.kinds[0] in ("SR", "RR"):
            assert pkt.sender_ssrc == int(senders[0], 16)
        ours = [(b.ssrc, b.fraction_lost, b.cumulative_lost, b.highest_seq, b.jitter, b.lsr, b.dlsr)
                for b in pkt.reports]
        theirs = [(int(i, 16), int(fraction), int(lost), int(cycles) << 16 | int(seq), *map(int, rest))
                  for i, fraction, lost, cycles, seq, *rest in zip(ids, *blocks)]
        assert ours == theirs
        items = [kind for kind in sdes_types if kind != "0"]         # the END item (0) has no text
        texts = sdes_texts or [""] * len(items)                     # tshark prints one empty text as nothing
        assert list(pkt.cnames) == [text for kind, text in zip(items, texts) if kind == "1"]


@pytest.mark.peer
def test_srtcp_of_a_real_call_is_flagged(public_captures, tshark):
    """SIP over TLS with SRTP/SRTCP: tshark cannot see the SDP; every SR/RR-looking datagram is SRTCP."""
    capture = public_captures / "voipshark/SIP-over-TLS-RSA-SRTP_Normal_Call_two_parties.pcap"
    out = subprocess.run([tshark, "-n", "-r", str(capture), "-Y", "udp", "-T", "fields", "-e", "udp.payload"],
                         capture_output=True, text=True, check=True).stdout
    datagrams = [bytes.fromhex(h) for h in out.split()]
    candidates = [d for d in datagrams if len(d) >= 2 and d[0] >> 6 == 2 and d[1] in (200, 201)]
    assert len(candidates) == 26
    for data in candidates:
        pkt, anomalies = rtcp.parse_rtcp(META, data)
        assert pkt.encrypted and anomalies == [] and pkt.kinds in (("SR",), ("RR",))


def test_fuzz_never_raises():
    seeds = [SR + SDES, SRTCP, *HEURISTIC_CASES,
             packet(201, 2, struct.pack("!I", 0xFEEDF00D) + BLOCK_1 + BLOCK_2)]
    for data in mutations(2, seeds, 20000):
        pkt, anomalies = rtcp.parse_rtcp(META, data)
        rtcp.looks_like_rtcp(data)
        assert pkt is not None or anomalies
        assert all(a.layer == "rtcp" and a.name.startswith("rtcp.") for a in anomalies)
