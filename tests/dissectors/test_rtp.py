"""RTP header dissector: byte-literal cases, the header heuristic against tshark 4.0, fuzzing."""
from __future__ import annotations

import struct
import subprocess

import dpkt
import pytest

from dissectors import rtp
from voipwatch.records import PacketMeta
from frames import udp_frame
from mutate import mutations

META = PacketMeta(ts=1700000000.0, frame=7, vlan=(110,), src="10.0.0.1", sport=40000, dst="10.0.0.2",
                  dport=40002, transport="udp")


def header(b0=0x80, b1=0, seq=1, ts=160, ssrc=0x11223344) -> bytes:
    return struct.pack("!BBHII", b0, b1, seq, ts, ssrc)


def test_fixed_header_fields():
    pkt = rtp.parse_rtp(META, header(b1=0x88, seq=0xBEEF, ts=0xDEADBEEF, ssrc=0xCAFEBABE) + b"\x55" * 160, True)
    assert (pkt.seq, pkt.rtp_ts, pkt.ssrc, pkt.pt, pkt.marker) == (0xBEEF, 0xDEADBEEF, 0xCAFEBABE, 8, True)
    assert pkt.payload_len == 160 and pkt.negotiated and pkt.pkt is META


def test_csrc_extension_and_padding_are_not_payload():
    # V=2 P=1 X=1 CC=2 | two CSRCs | RFC 5285 one-byte extension of 1 word | 5 payload octets | 3 padding
    data = (header(b0=0xB2, b1=0x60) + b"\x00\x00\x00\x01\x00\x00\x00\x02" + b"\xbe\xde\x00\x01" + b"\x10\xff\x00\x00"
            + b"ABCDE" + b"\x00\x00\x03")
    pkt = rtp.parse_rtp(META, data, False)
    assert pkt.pt == 96 and not pkt.marker and pkt.payload_len == 5 and not pkt.negotiated
    assert rtp.looks_like_rtp(data)


def test_padding_count_larger_than_payload_is_clipped():
    # Wireshark clips such a padding count; the heuristic rejects the packet.
    data = header(b0=0xA0) + b"\x01\x02\x03\x40"
    assert rtp.parse_rtp(META, data, True).payload_len == 0
    assert not rtp.looks_like_rtp(data)


@pytest.mark.parametrize("data", [
    b"", b"\x80", header()[:11],                                  # shorter than the fixed header
    header(b0=0x40), header(b0=0xC0), header(b0=0x00),             # versions 1, 3, 0
    header(b0=0x8F) + b"\x00" * 20,                                # 15 CSRCs overrun the datagram
    header(b0=0x90) + b"\xbe\xde",                                 # extension header cut
    header(b0=0x90) + b"\xbe\xde\x00\x09" + b"\x00" * 8,            # extension longer than the datagram
    header(b1=200) + b"\x00" * 16,                                 # RTCP SR multiplexed on the port
])
def test_not_rtp(data):
    assert rtp.parse_rtp(META, data, True) is None
    assert not rtp.looks_like_rtp(data)


def test_rtcp_demultiplexing_rfc5761():
    assert all(rtp.is_rtcp_payload(bytes([0x80, b])) for b in range(192, 224))
    assert not any(rtp.is_rtcp_payload(bytes([0x80, b])) for b in (*range(0, 192), *range(224, 256)))
    assert not rtp.is_rtcp_payload(b"\x80") and not rtp.is_rtcp_payload(b"\x00\xc8")


def test_static_payload_types_and_rtpmap():
    assert rtp.STATIC_PAYLOAD_TYPES[0] == ("PCMU", 8000) and rtp.STATIC_PAYLOAD_TYPES[9] == ("G722", 8000)
    assert rtp.codec_name(8) == "PCMA" and rtp.clock_rate(8) == 8000
    assert rtp.codec_name(111) is None and rtp.clock_rate(111) is None
    rtpmap = {111: ("opus", 48000), 0: ("PCMU", 8000), 100: ("weird", 0)}
    assert rtp.codec_name(111, rtpmap) == "opus" and rtp.clock_rate(111, rtpmap) == 48000
    assert rtp.codec_name(18, rtpmap) == "G729" and rtp.clock_rate(100, rtpmap) is None
    assert rtp.codec_name(20) is None and rtp.codec_name(72) is None


# Payloads probing each clause of Wireshark 4.0's dissect_rtp_heur (packet-rtp.c).
HEURISTIC_CASES = [
    header() + b"\x00" * 20,                              # plain PCMU
    header(b1=72) + b"\x00" * 20,                         # PT 72..76 rejected
    header(b1=76) + b"\x00" * 20,
    header(b1=77) + b"\x00" * 20,                         # 64..71 and 77..95 accepted without marker
    header(b1=64) + b"\x00" * 20,
    header(b1=0x80) + b"\x00" * 20,                       # marker
    header(b0=0xA0) + b"\x00" * 20,                       # padding count 0
    header(b0=0xA0) + b"\x00" * 19 + b"\x05",             # padding count 5
    header(b0=0xA0) + b"\x00" * 19 + b"\x14",             # padding count == octets after the header
    header(b0=0xA0) + b"\x00" * 19 + b"\x15",             # one more
    header(b0=0x90) + b"\xbe\xde\x00\x01" + b"\x00" * 12,  # extension fits
    header(b0=0x90) + b"\xbe\xde\x00\x01" + b"\x00" * 4,   # extension ends the datagram
    header(b0=0x90) + b"\xbe\xde\x00\x09" + b"\x00" * 4,   # extension overruns
    header(b0=0x90) + b"\xbe",                            # extension header cut
    header(b0=0x8F) + b"\x00" * 20,                       # CSRC list overruns
    header(b0=0x82) + b"\x00" * 8,                        # CSRC list ends the datagram
    header()[:11], b"\x80\x00", b"\x80",                  # short
    header(b0=0x40) + b"\x00" * 20, header(b0=0xC0) + b"\x00" * 20, header(b0=0x00) + b"\x00" * 20,
    header(),                                             # header only
]


@pytest.mark.peer
def test_heuristic_matches_tshark(tmp_path, tshark):
    """Each crafted payload is RTP for tshark --enable-heuristic rtp_udp exactly when looks_like_rtp says so."""
    path = tmp_path / "heuristic.pcap"
    with open(path, "wb") as f:
        writer = dpkt.pcap.Writer(f)
        for i, payload in enumerate(HEURISTIC_CASES):
            # high ports no dissector claims; odd and even destinations (4.0 has no even-port rule)
            writer.writepkt(udp_frame(payload, 30000 + 4 * i, 30002 + 4 * i + i % 2), ts=1700000000 + i)
    out = subprocess.run([tshark, "-n", "-r", str(path), "--enable-heuristic", "rtp_udp", "-T", "fields",
                          "-e", "frame.protocols", "-e", "rtp.payload"], capture_output=True, text=True,
                         check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    theirs = [protocols.endswith(":rtp") for protocols, _ in rows]
    ours = [rtp.looks_like_rtp(p) for p in HEURISTIC_CASES]
    assert ours == theirs
    assert ours == [True, False, False, True, True, True, False, True, True, False, True, True, False, False,
                    False, True, False, False, False, False, False, False, True]
    for payload, (protocols, media) in zip(HEURISTIC_CASES, rows):
        if protocols.endswith(":rtp"):      # payload length net of CSRCs, extension and padding
            assert rtp.parse_rtp(META, payload, False).payload_len == len(media) // 2


# Captures whose UDP flows tshark classifies through its heuristic alone (SDP disabled).
HEURISTIC_CAPTURES = [
    "sipnab/SIP_CALL_RTP_G711", "rtp-pcap/marseillaise-srtp.pcap", "sipp/dtmf_2833_1.pcap", "sipp/g711a.pcap",
    "voipshark/SIP-over-TLS-RSA-SRTP_Normal_Call_two_parties.pcap", "ndpi/pcap/stun.pcap", "ndpi/pcap/webex.pcap",
    "ndpi/pcap/stun_dtls_rtp.pcapng", "snort3_demo/inspectors/sip/SIP_Eyebeam2Eyebeam_Video_Audio.pcap",
    "ndpi/pcap/skinny.pcap", "sngrep/aaa.pcap",
]


@pytest.mark.peer
@pytest.mark.parametrize("capture", HEURISTIC_CAPTURES)
def test_heuristic_agrees_with_tshark_on_public_captures(capture, public_captures, tshark):
    out = subprocess.run([tshark, "-n", "-r", str(public_captures / capture), "--enable-heuristic", "rtp_udp",
                          "--disable-protocol", "sdp", "-Y", "udp && !icmp", "-T", "fields", "-e", "frame.number",
                          "-e", "frame.protocols", "-e", "udp.payload"], capture_output=True, text=True,
                         check=True).stdout
    disagree, compared = [], 0
    for line in out.splitlines():
        frame, protocols, payload = (line.split("\t") + ["", ""])[:3]
        if ":rtp" in protocols and ":rtcp" not in protocols:
            expected = True
        elif protocols.endswith((":udp", ":udp:data")):
            expected = False
        else:
            continue                       # another dissector took it (SIP, RTCP, STUN, ...)
        compared += 1
        if rtp.looks_like_rtp(bytes.fromhex(payload)) != expected:
            disagree.append(frame)
    assert compared and not disagree


@pytest.mark.parametrize("capture,heuristic", [
    ("sipnab/SIP_CALL_RTP_G711", False), ("rtp-pcap/sip-rtp-opus.pcap", False), ("sipp/dtmf_2833_1.pcap", True),
    ("snort3_demo/inspectors/sip/SIP_Eyebeam2Eyebeam_Video_Audio.pcap", False),
])
@pytest.mark.peer
def test_header_fields_agree_with_tshark(capture, heuristic, public_captures, tshark):
    args = [tshark, "-n", "-r", str(public_captures / capture), "-Y", "rtp.ssrc", "-T", "fields",
            "-e", "udp.payload", "-e", "rtp.seq", "-e", "rtp.timestamp", "-e", "rtp.ssrc", "-e", "rtp.p_type",
            "-e", "rtp.marker", "-e", "rtp.payload"]
    if heuristic:
        args[1:1] = ["--enable-heuristic", "rtp_udp"]
    rows = subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines()
    assert rows
    for line in rows:
        payload, seq, ts, ssrc, pt, marker, media = line.split("\t")
        pkt = rtp.parse_rtp(META, bytes.fromhex(payload), True)
        assert (pkt.seq, pkt.rtp_ts, pkt.ssrc, pkt.pt, pkt.marker) == (
            int(seq), int(ts), int(ssrc, 16), int(pt), marker in ("1", "True"))
        assert pkt.payload_len == len(media) // 2


def test_fuzz_never_raises():
    seeds = [header(b0=0xB2, b1=0x60) + b"\x00" * 8 + b"\xbe\xde\x00\x01\x10\xff\x00\x00ABCDE\x00\x00\x03",
             *HEURISTIC_CASES]
    for data in mutations(1, seeds, 20000):
        pkt = rtp.parse_rtp(META, data, False)
        heuristic = rtp.looks_like_rtp(data)
        rtp.is_rtcp_payload(data)
        assert pkt is not None or not heuristic          # what the heuristic accepts always parses
        if pkt is not None:
            assert 0 <= pkt.payload_len <= len(data) - 12
