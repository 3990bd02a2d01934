"""SDP dissector: byte-literal unit tests (one behaviour each), public captures against tshark, fuzzing."""
from __future__ import annotations

import base64
import hashlib
import random
import subprocess
from pathlib import Path

import dpkt
import pytest

from dissectors.sdp import MAX_MEDIA, STATIC_PAYLOAD_TYPES, line_protection, parse_sdp, session_protection
from dissectors.sip import looks_like_sip, parse_sip
from voipwatch.records import PacketMeta


def sdp(text: str) -> bytes:
    """Bodies are written with \\n in the tests and sent with CRLF line ends (RFC 4566 §5)."""
    return text.replace("\n", "\r\n").encode()


HEAD = """v=0
o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5
s=SDP Seminar
c=IN IP4 224.2.17.12/127
t=2873397496 2873404696
"""

KEY_SALT = bytes(range(30))  # AES_CM_128: 16-byte master key || 14-byte master salt (RFC 4568 §6.2)
INLINE = base64.b64encode(KEY_SALT).decode()


def test_basic_session_and_media():
    session, anomalies = parse_sdp(sdp(HEAD + """a=recvonly
m=audio 49170 RTP/AVP 0
m=video 51372 RTP/AVP 99
c=IN IP4 198.51.100.7
a=rtpmap:99 h263-1998/90000
a=sendonly
"""))
    assert anomalies == []
    assert (session.origin_user, session.origin_addr, session.connection, session.direction) == (
        "jdoe", "10.47.16.5", "224.2.17.12", "recvonly")
    audio, video = session.media
    assert (audio.kind, audio.port, audio.proto, audio.formats, audio.connection, audio.direction) == (
        "audio", 49170, "RTP/AVP", ("0",), None, None)
    assert (video.kind, video.port, video.formats, video.connection, video.direction) == (
        "video", 51372, ("99",), "198.51.100.7", "sendonly")
    assert video.rtpmap == ((99, "h263-1998", 90000),)


def test_static_payload_types_fill_missing_rtpmap():
    session, _ = parse_sdp(sdp(HEAD + """m=audio 49170 RTP/AVP 0 8 9 18 96 101
a=rtpmap:101 telephone-event/8000
a=rtpmap:0 PCMU/8000
"""))
    assert session.media[0].rtpmap == ((0, "PCMU", 8000), (8, "PCMA", 8000), (9, "G722", 8000),
                                       (18, "G729", 8000), (101, "telephone-event", 8000))


def test_static_payload_table_is_rfc3551():
    assert sorted(STATIC_PAYLOAD_TYPES) == [0, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
                                            25, 26, 28, 31, 32, 33, 34]
    assert STATIC_PAYLOAD_TYPES[9] == ("G722", 8000)  # RFC 3551 §4.5.2: the clock rate stays 8000
    assert STATIC_PAYLOAD_TYPES[6] == ("DVI4", 16000) and STATIC_PAYLOAD_TYPES[17] == ("DVI4", 22050)
    assert STATIC_PAYLOAD_TYPES[10] == ("L16", 44100) and STATIC_PAYLOAD_TYPES[34] == ("H263", 90000)


def test_rtpmap_with_channels():
    session, _ = parse_sdp(sdp(HEAD + "m=audio 5004 RTP/AVP 111\na=rtpmap:111 opus/48000/2\n"))
    assert session.media[0].rtpmap == ((111, "opus", 48000),)


@pytest.mark.parametrize("line, address", [
    ("c=IN IP4 224.2.1.1/127/3", "224.2.1.1"), ("c=IN IP6 FF15::101/3", "FF15::101"),
    ("c=IN IP6 2001:db8::1", "2001:db8::1"), ("c=IN IP4 0.0.0.0", "0.0.0.0"),
])
def test_connection_address_without_ttl_or_count(line, address):
    session, _ = parse_sdp(sdp(f"v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\n{line}\nt=0 0\nm=audio 1 RTP/AVP 0\n"))
    assert session.connection == address


def test_port_with_count():
    session, _ = parse_sdp(sdp(HEAD + "m=video 49170/2 RTP/AVP 31\n"))
    assert (session.media[0].port, session.media[0].rtpmap) == (49170, ((31, "H261", 90000),))


@pytest.mark.parametrize("proto", ["RTP/AVP", "RTP/SAVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVPF", "RTP/AVPF"])
def test_rtp_protos(proto):
    session, _ = parse_sdp(sdp(HEAD + f"m=audio 5004 {proto} 0\n"))
    assert (session.media[0].proto, session.media[0].rtpmap) == (proto, ((0, "PCMU", 8000),))


def test_udptl_t38_formats_are_not_payload_types():
    session, anomalies = parse_sdp(sdp(HEAD + "m=image 6000 udptl t38\na=T38FaxVersion:0\n"))
    assert anomalies == []
    assert (session.media[0].kind, session.media[0].proto, session.media[0].formats, session.media[0].rtpmap) == (
        "image", "udptl", ("t38",), ())


def test_crypto_key_is_hashed_never_kept():
    session, anomalies = parse_sdp(sdp(HEAD + f"""m=audio 5004 RTP/SAVP 0
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}|2^20|1:32 UNENCRYPTED_SRTCP KDR=1
a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{INLINE}
"""))
    assert anomalies == []
    first, second = session.media[0].crypto
    assert (first.tag, first.suite, first.key_len) == (1, "AES_CM_128_HMAC_SHA1_80", 30)
    assert first.key_sha256 == hashlib.sha256(KEY_SALT).hexdigest()
    assert first.session_params == ("UNENCRYPTED_SRTCP", "KDR=1")
    assert (second.tag, second.suite, second.session_params) == (2, "AES_CM_128_HMAC_SHA1_32", ())
    assert INLINE not in repr(session) and INLINE[:20] not in repr(session)


def test_crypto_key_without_padding():
    key = base64.b64encode(bytes(range(46))).decode().rstrip("=")  # AES_256: 32 + 14 bytes
    session, anomalies = parse_sdp(sdp(HEAD + "m=audio 5004 RTP/SAVP 0\n"
                                              f"a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:{key}\n"))
    assert anomalies == [] and session.media[0].crypto[0].key_len == 46


def test_crypto_fec_key_parameter_keeps_its_name_only():
    session, _ = parse_sdp(sdp(HEAD + f"m=audio 5004 RTP/SAVP 0\n"
                                      f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE} FEC_KEY=inline:{INLINE}\n"))
    assert session.media[0].crypto[0].session_params == ("FEC_KEY",)


def test_crypto_bad_key():
    session, anomalies = parse_sdp(sdp(HEAD + "m=audio 5004 RTP/SAVP 0\n"
                                              "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:!!notbase64\n"))
    assert anomalies == ["sdp.bad_crypto_key"]
    assert (session.media[0].crypto[0].key_sha256, session.media[0].crypto[0].key_len) == (None, None)


def test_crypto_short_line():
    session, anomalies = parse_sdp(sdp(HEAD + "m=audio 5004 RTP/SAVP 0\na=crypto:x AES_CM_128_HMAC_SHA1_80\n"))
    assert anomalies == ["sdp.bad_crypto_line"]
    assert session.media[0].crypto[0].tag is None


def test_dtls_fingerprint_hash_name_and_setup():
    session, anomalies = parse_sdp(sdp(HEAD + """a=fingerprint:SHA-256 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB:3A:5E:28:8E
a=setup:actpass
m=audio 9 UDP/TLS/RTP/SAVPF 111
a=setup:active
a=rtcp:9 IN IP4 0.0.0.0
m=video 9 UDP/TLS/RTP/SAVPF 96
a=fingerprint:sha-1 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB
"""))
    assert anomalies == []
    assert session.fingerprint == "sha-256"
    audio, video = session.media
    assert (audio.fingerprint, audio.setup, audio.rtcp_port) == (None, "active", 9)
    assert (video.fingerprint, video.setup) == ("sha-1", "actpass")  # RFC 4145 §4: session-level default
    assert "4A:AD" not in repr(session)


def test_zrtp_hash_session_and_media():
    session, _ = parse_sdp(sdp(HEAD + "a=zrtp-hash:1.10 fe30efd0\nm=audio 5004 RTP/AVP 0\na=zrtp-hash:1.10 ab\n"))
    assert session.zrtp_hash and session.media[0].zrtp_hash


def test_session_level_crypto():
    session, _ = parse_sdp(sdp(HEAD + f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}\nm=audio 5004 RTP/SAVP 0\n"))
    assert [c.tag for c in session.crypto] == [1] and session.media[0].crypto == ()


def test_rtcp_attribute_bad_port():
    _, anomalies = parse_sdp(sdp(HEAD + "m=audio 5004 RTP/AVP 0\na=rtcp:99999\n"))
    assert anomalies == ["sdp.bad_rtcp_line"]


def test_bad_lines_are_skipped():
    session, anomalies = parse_sdp(sdp(HEAD + "garbage\nm=audio 5004 RTP/AVP 0\nxx=1\n"))
    assert anomalies == ["sdp.bad_line"] and session.media[0].port == 5004


def test_bad_media_line_does_not_take_the_next_attributes():
    session, anomalies = parse_sdp(sdp(HEAD + "m=audio 5004 RTP/AVP 0\nm=video x RTP/AVP 31\na=sendonly\n"))
    assert anomalies == ["sdp.bad_media_line"]
    assert len(session.media) == 1 and session.media[0].direction is None


def test_bad_rtpmap():
    session, anomalies = parse_sdp(sdp(HEAD + "m=audio 5004 RTP/AVP 96\na=rtpmap:96 opus\na=rtpmap:300 x/8000\n"))
    assert anomalies == ["sdp.bad_rtpmap"] and session.media[0].rtpmap == ()


def test_bad_origin_and_connection():
    _, anomalies = parse_sdp(sdp("v=0\no=only-user\ns=-\nc=IN IP4\nt=0 0\nm=audio 1 RTP/AVP 0\n"))
    assert anomalies == ["sdp.bad_origin_line", "sdp.bad_connection_line"]


def test_missing_version():
    session, anomalies = parse_sdp(sdp("o=- 1 1 IN IP4 192.0.2.1\nm=audio 1 RTP/AVP 0\n"))
    assert anomalies == ["sdp.bad_version"] and session.media[0].port == 1


def test_no_media():
    session, anomalies = parse_sdp(sdp(HEAD))
    assert session.media == () and anomalies == ["sdp.no_media"]


@pytest.mark.parametrize("body, expected", [(b"", ["sdp.empty"]), (b"\r\n \r\n", ["sdp.empty"]),
                                             (b"\x00\x01\x02 not sdp", ["sdp.bad_line"])])
def test_not_sdp_returns_none(body, expected):
    assert parse_sdp(body) == (None, expected)


def test_text_input_and_bare_lf():
    session, anomalies = parse_sdp("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nm=audio 7078 RTP/AVP 8\n")
    assert anomalies == [] and session.media[0].rtpmap == ((8, "PCMA", 8000),)


def test_non_utf8_body():
    session, anomalies = parse_sdp(sdp(HEAD + "s=caf\xe9\nm=audio 5004 RTP/AVP 0\n").replace(b"\xc3\xa9", b"\xe9"))
    assert anomalies == ["sdp.non_utf8"] and session.media[0].port == 5004


def test_too_many_media_sections():
    session, anomalies = parse_sdp(sdp(HEAD + "m=audio 5004 RTP/AVP 0\n" * (MAX_MEDIA + 3)))
    assert len(session.media) == MAX_MEDIA and anomalies == ["sdp.too_many_media"]


# ---------------------------------------------------------------- public captures against tshark

def udp_payloads(path: Path) -> list[tuple[int, bytes]]:
    """(frame number, payload) of every UDP datagram in an Ethernet pcap."""
    out = []
    with path.open("rb") as fh:
        for frame, (_, buf) in enumerate(dpkt.pcap.Reader(fh), 1):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(getattr(ip, "data", None), dpkt.udp.UDP):
                out.append((frame, bytes(ip.data.data)))
    return out


SEP = "\x1f"
SDP_CAPTURES = [
    "suricata-verify/sip-sdp/sdp.pcap",
    "sipnab/sip-rtp-g711.pcap",
    "zeek/Traces/sip/wireshark.pcap",
    "pcapplusplus/sdp.pcap",
    "snort3_demo/inspectors/sip/SIP_Eyebeam2Eyebeam_Video_Audio.pcap",
    "sipnab/Asterisk_ZFONE_XLITE.pcap",
    "rtp-pcap/sip-rtp-opus.pcap",
    "rtp-pcap/sip-rtp-l16.pcap",
    "rtp-pcap/sip-rtp-speex.pcap",
    "sipnab/codec-negotiation.pcap",
    "sipnab/sip-proxy.pcap",
    "voipshark/SIP-RTP-Normal_Call_two_parties.pcap",
]


def _tshark_sdp(tshark: str, path: Path) -> dict[int, dict[str, list[str]]]:
    fields = ["sdp.media", "sdp.media.port", "sdp.media.proto", "sdp.media_attr", "sdp.connection_info.address"]
    cmd = [tshark, "-n", "-r", str(path), "-Y", "sdp && udp", "-T", "fields", "-E", f"aggregator={SEP}",
           "-e", "frame.number"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, check=True).stdout.decode("utf-8", "replace")
    rows = {}
    for line in out.splitlines():
        frame, *values = line.split("\t")
        rows[int(frame)] = {f: (v.split(SEP) if v else []) for f, v in zip(fields, values)}
    return rows


def _expected_rtpmap(formats: list[str], proto: str, attrs: list[str]) -> tuple:
    """a=rtpmap values as tshark lists them, else the RFC 3551 static assignment, in format order."""
    given = {}
    for attr in attrs:
        if attr.startswith("rtpmap:"):
            pt, _, enc = attr[7:].partition(" ")
            name, clock = enc.split("/")[:2]
            given.setdefault(int(pt), (name, int(clock)))
    if "RTP/" not in proto:
        return ()
    out = []
    for fmt in dict.fromkeys(formats):
        entry = given.get(int(fmt)) or STATIC_PAYLOAD_TYPES.get(int(fmt))
        if entry:
            out.append((int(fmt), *entry))
    return tuple(out)


@pytest.mark.peer
@pytest.mark.parametrize("capture", SDP_CAPTURES)
def test_sdp_media_agree_with_tshark(capture, public_captures, tshark):
    path = public_captures / capture
    rows = _tshark_sdp(tshark, path)
    assert rows
    payloads = dict(udp_payloads(path))
    meta = PacketMeta(0.0, 0, (), "192.0.2.1", 5060, "192.0.2.2", 5060, "udp")
    for frame, row in rows.items():
        assert looks_like_sip(payloads[frame])
        msg, _ = parse_sip(meta, payloads[frame])
        session = msg.sdp
        assert [(m.port, m.proto) for m in session.media] == list(
            zip(map(int, row["sdp.media.port"]), row["sdp.media.proto"])), (capture, frame)
        assert [" ".join((m.kind, m.proto, *m.formats)) for m in session.media] == [
            " ".join(line.split()[:1] + line.split()[2:]) for line in row["sdp.media"]], (capture, frame)
        addresses = [session.connection] + [m.connection for m in session.media]
        assert [a for a in addresses if a] == row["sdp.connection_info.address"], (capture, frame)
        if len(session.media) == 1:  # tshark's attribute list is flat: compare rtpmap per single-media body
            m = session.media[0]
            assert m.rtpmap == _expected_rtpmap(list(m.formats), m.proto, row["sdp.media_attr"]), (capture, frame)


def test_suricata_sdp_capture(public_captures):
    """sip-sdp test.yaml origin and connection. Suricata also lists the m= section, which lies beyond
    Content-Length 272; RFC 3261 §18.3 discards those bytes on UDP, as tshark does, so no media here."""
    frames = udp_payloads(public_captures / "suricata-verify/sip-sdp/sdp.pcap")
    msg, anomalies = parse_sip(PacketMeta(0.0, 1, (), "a", 0, "b", 0, "udp"), frames[0][1])
    session = msg.sdp
    assert (session.origin_user, session.origin_addr, session.connection) == ("SIPPS", "192.168.1.2", "192.168.1.2")
    assert session.direction is None  # a=sendrecv follows the cut as well
    assert [a.name for a in anomalies] == ["sip.trailing_data", "sdp.no_media"]
    full, _ = parse_sdp(frames[0][1].partition(b"\r\n\r\n")[2])
    assert (full.direction, full.media[0].port) == ("sendrecv", 30000)
    assert full.media[0].formats == ("0", "8", "97", "2", "3")
    assert full.media[0].rtpmap[0] == (0, "pcmu", 8000) and full.media[0].connection == "192.168.1.2"


def test_multi_media_rtpmap_from_capture(public_captures):
    """Eyebeam offer frame 1: BV32/SPEEX audio with static PCMU/PCMA/GSM/DVI4 and H264/H263 video."""
    payloads = dict(udp_payloads(public_captures / "snort3_demo/inspectors/sip/SIP_Eyebeam2Eyebeam_Video_Audio.pcap"))
    msg, _ = parse_sip(PacketMeta(0.0, 1, (), "a", 0, "b", 0, "udp"), payloads[1])
    audio, video = msg.sdp.media
    assert [pt for pt, _, _ in audio.rtpmap] == [107, 100, 106, 6, 0, 105, 8, 18, 3, 5, 101]
    assert audio.rtpmap[3] == (6, "DVI4", 16000) and audio.rtpmap[0] == (107, "BV32", 16000)
    assert video.rtpmap[-1] == (34, "H263", 90000)


# ---------------------------------------------------------------- fuzzing

_TOKENS = ["\r\n", "\n", "=", " ", "/", ":", "|", "m=", "a=crypto:", "inline:", "a=rtpmap:", "c=IN IP4 ",
           "99999999999", "-1", "\x00", "\ufffd", "RTP/AVP", "a=rtcp:", "a=fingerprint:", "/"]


def test_fuzz_never_raises():
    rng = random.Random(4566)
    seeds = [HEAD + "m=audio 49170 RTP/AVP 0 8 101\na=rtpmap:101 telephone-event/8000\na=sendrecv\n",
             HEAD + f"m=audio 5004 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}|2^20|1:32 KDR=1\n",
             HEAD + "a=fingerprint:sha-256 AB:CD\na=setup:actpass\nm=video 9 UDP/TLS/RTP/SAVPF 96\na=rtcp:9\n"]
    for _ in range(2000):
        text = list(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(len(text) + 1)
            op = rng.randrange(4)
            if op == 0:
                text[pos:pos] = rng.choice(_TOKENS)
            elif op == 1:
                del text[pos:pos + rng.randint(1, 20)]
            elif op == 2 and text:
                text[min(pos, len(text) - 1)] = chr(rng.randrange(256))
            else:
                text[pos:pos] = text[pos:pos + rng.randint(1, 80)] * rng.randint(1, 5)
        body = "".join(text)
        for candidate in (body, body.encode("utf-8", "replace"), body.encode("latin-1", "replace")):
            session, anomalies = parse_sdp(candidate)
            assert session is not None or anomalies
            assert all(a.startswith("sdp.") for a in anomalies)


# -- media protection (one home for the calls table, the unencrypted_media detector and `voipwatch call`) --

FP = "a=fingerprint:sha-256 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB:3B:FD:0A:1A:4D:04:6B:5F:C4:1E:F2:A0"
CRYPTO = f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}"
ZRTP = "a=zrtp-hash:1.10 fe30efd02423cb054e50efd0248742ac7a52c8f91bc2df881ae642c371ba46df"


@pytest.mark.parametrize("proto, attributes, line, session", [
    ("RTP/AVP", [], "clear", "none"),                                # RFC 3551: plain RTP
    ("RTP/AVPF", [], "clear", "none"),                               # RFC 4585
    ("RTP/AVP", [ZRTP], "zrtp", "zrtp"),                             # RFC 6189 §8: ZRTP over RTP/AVP
    ("RTP/SAVP", [CRYPTO, ZRTP], "zrtp", "zrtp"),
    ("RTP/SAVP", [CRYPTO], "sdes", "sdes"),                          # RFC 4568
    ("RTP/SAVPF", [CRYPTO], "sdes", "sdes"),                         # RFC 5124
    ("UDP/TLS/RTP/SAVP", [FP], "dtls", "dtls"),                      # RFC 5763 §5, RFC 5764 §8
    ("UDP/TLS/RTP/SAVPF", [FP, CRYPTO], "dtls", "dtls"),             # a=crypto has no meaning on a DTLS transport
    ("RTP/SAVPF", [FP], "dtls", "dtls"),                             # DTLS-SRTP as early WebRTC offered it
    ("RTP/SAVP", [FP, CRYPTO], "sdes", "sdes"),                      # RTP/SAVP is SDES's transport
    ("RTP/SAVP", [], "srtp", "unknown"),                             # keys exchanged outside SDP (MIKEY...)
    # best-effort SRTP: keying attributes on a plain profile. Named by their keying for the
    # unencrypted_media detector (nsa-checks UM-01 exempts them); unprotected for RFC 4568/5763.
    ("RTP/AVP", [CRYPTO], "sdes", "none"),
    ("RTP/AVP", [FP], "dtls", "none"),
])
def test_protection_of_one_line(proto, attributes, line, session):
    parsed, _ = parse_sdp(sdp(HEAD + f"m=audio 49170 {proto} 0\n" + "".join(a + "\n" for a in attributes)))
    assert line_protection(parsed, parsed.media[0]) == line
    assert session_protection(parsed) == session


def test_session_level_keying_applies_to_every_line():
    parsed, _ = parse_sdp(sdp(HEAD + CRYPTO + "\nm=audio 49170 RTP/SAVP 0\nm=video 51372 RTP/SAVP 99\n"))
    assert [line_protection(parsed, m) for m in parsed.media] == ["sdes", "sdes"]
    assert session_protection(parsed) == "sdes"


def test_session_protection_over_several_lines():
    def session_of(*lines: str) -> str:
        return session_protection(parse_sdp(sdp(HEAD + "".join(lines)))[0])
    audio_sdes = f"m=audio 49170 RTP/SAVP 0\n{CRYPTO}\n"
    assert session_of(audio_sdes, "m=video 51372 RTP/AVP 99\n") == "none"          # one plain line is enough
    assert session_of(audio_sdes, f"m=video 51372 UDP/TLS/RTP/SAVP 99\n{FP}\n") == "unknown"   # keyed two ways
    assert session_of(audio_sdes, "m=video 0 RTP/AVP 99\n") == "sdes"              # RFC 3264 §6: port 0 is no media
    assert session_of(audio_sdes, "m=image 6000 udptl t38\n") == "sdes"            # T.38 is not RTP
    assert session_of("m=audio 0 RTP/AVP 0\n") == "unknown"
    assert session_protection(None) == "unknown"
