"""SIP dissector: byte-literal unit tests (one behaviour each), public captures against tshark, fuzzing."""
from __future__ import annotations

import hashlib
import random
import socket
import subprocess
from pathlib import Path

import dpkt
import pytest
from mutate import sip_damage

from dissectors.sip import MAX_HEADER_LINE, MAX_HEADERS, MAX_VIA, looks_like_sip, parse_sip
from dissectors.sip_stream import SipStreamFramer
from voipwatch.records import PacketMeta


def meta(transport: str = "udp", frame: int = 1) -> PacketMeta:
    return PacketMeta(1700000000.0, frame, (), "192.0.2.1", 5060, "192.0.2.2", 5060, transport)


def crlf(text: str) -> bytes:
    """Messages are written with \\n in the tests and sent with CRLF line ends (RFC 3261 §7)."""
    return text.replace("\n", "\r\n").encode()


def names(anomalies) -> list[str]:
    return [a.name for a in anomalies]


def frame_sip_stream(buf: bytes) -> tuple[list[bytes], int]:
    """One call of a fresh direction's framer: (whole messages, bytes consumed)."""
    messages, used, _ = SipStreamFramer().frame(buf, meta("tcp"))
    return messages, used


SDP = crlf("""v=0
o=alice 2890844526 2890844526 IN IP4 198.51.100.1
s=-
c=IN IP4 198.51.100.1
t=0 0
m=audio 49170 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
""")

INVITE = crlf(f"""INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.example.com>
User-Agent: softphone/1.0
Content-Type: application/sdp
Content-Length: {len(SDP)}

""") + SDP

RESPONSE = crlf("""SIP/2.0 180 Ringing
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Server: pbx/2.3
Content-Length: 0

""")


def register(extra: str = "", first_line: str = "REGISTER sip:registrar.example.com SIP/2.0") -> bytes:
    return crlf(f"""{first_line}
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds7
To: <sip:bob@example.com>
From: <sip:bob@example.com>;tag=456248
Call-ID: 843817637684230@998sdasdh09
CSeq: 1826 REGISTER
{extra}Content-Length: 0

""")


# ---------------------------------------------------------------- probe

@pytest.mark.parametrize("payload", [
    INVITE, RESPONSE, b"OPTIONS sip:x SIP/2.0", b"INVITE1 sip:bob@example.com SIP/2.0\r\n\r\n",
    b"a" * 300 + b" sip:tori@localhost SIP/2.0\r\n", b"SIP/2.0 200 \r\n", b"SIP/2.0 487\r\n",
    b"\r\n\r\n" + register(),
])
def test_probe_accepts_request_and_status_lines(payload):
    assert looks_like_sip(payload)


@pytest.mark.parametrize("payload", [
    b"", b"\r\n\r\n", b"\x80\x00\x12\x34" + bytes(160), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n", b"INVITE sip:x sip/2.0\r\n", b"SIP/2.0 20 OK\r\n", b"sip/2.0 200 OK\r\n",
    b"INVITE SIP/2.0\r\n", b"\x00\x00\x00\x00REGISTER sip:1.1.1.1:5060 SIP/2.0\r\n\r\n",
    b"Via: SIP/2.0/UDP host\r\n",
])
def test_probe_rejects_other_first_lines(payload):
    assert not looks_like_sip(payload)


# ---------------------------------------------------------------- start line and basic fields

def test_request_fields():
    msg, anomalies = parse_sip(meta(), INVITE)
    assert anomalies == []
    assert (msg.is_request, msg.method, msg.request_uri, msg.ruri_user) == (
        True, "INVITE", "sip:bob@biloxi.example.com", "bob")
    assert (msg.call_id, msg.cseq, msg.cseq_method) == ("a84b4c76e66710@pc33.atlanta.example.com", 314159, "INVITE")
    assert (msg.from_uri, msg.from_user, msg.from_tag) == ("sip:alice@atlanta.example.com", "alice", "1928301774")
    assert (msg.to_uri, msg.to_user, msg.to_tag) == ("sip:bob@biloxi.example.com", "bob", None)
    assert msg.contact == ("sip:alice@pc33.atlanta.example.com",)
    assert (msg.user_agent, msg.content_type, msg.content_length, msg.body_len) == (
        "softphone/1.0", "application/sdp", len(SDP), len(SDP))
    assert msg.sdp.media[0].port == 49170


def test_response_fields():
    msg, anomalies = parse_sip(meta(), RESPONSE)
    assert anomalies == []
    assert (msg.is_request, msg.method, msg.request_uri, msg.status, msg.reason) == (False, None, None, 180, "Ringing")
    assert (msg.cseq_method, msg.to_tag, msg.server) == ("INVITE", "a6c85cf", "pbx/2.3")


def test_status_outside_rfc_classes_is_described():
    msg, anomalies = parse_sip(meta(), RESPONSE.replace(b"180 Ringing", b"999 Odd"))
    assert msg.status == 999 and names(anomalies) == ["sip.bad_status_code"]


def test_no_start_line_returns_none():
    msg, anomalies = parse_sip(meta(), b"\x00\x01binary junk\r\nnothing here\r\n")
    assert msg is None and names(anomalies) == ["sip.malformed_start_line"]
    assert anomalies[0].layer == "sip" and anomalies[0].src == "192.0.2.1" and anomalies[0].frame == 1


def test_unknown_method_is_kept():
    msg, anomalies = parse_sip(meta(), register(first_line="INVITE1 sip:bob@example.com SIP/2.0"))
    assert msg.method == "INVITE1" and names(anomalies) == ["sip.cseq_method_mismatch"]


def test_bare_lf_line_ends():
    head, _, body = INVITE.partition(b"\r\n\r\n")
    msg, anomalies = parse_sip(meta(), head.replace(b"\r\n", b"\n") + b"\n\n" + body)
    assert anomalies == [] and msg.call_id and msg.sdp.media[0].port == 49170


def test_bare_cr_ends_a_line():
    msg, _ = parse_sip(meta(), register().replace(b"SIP/2.0\r\nVia", b"SIP/2.0\rVia", 1))
    assert msg.method == "REGISTER" and msg.via == ("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds7",)


# ---------------------------------------------------------------- header forms

def test_compact_forms():
    payload = crlf("""MESSAGE sip:bob@example.com SIP/2.0
v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1
f: <sip:alice@example.com>;tag=1
t: <sip:bob@example.com>
i: compact@192.0.2.1
CSeq: 1 MESSAGE
m: <sip:alice@192.0.2.1>
r: <sip:carol@example.com>
o: presence
s: hi
k: 100rel
c: text/plain
l: 5

hello""")
    msg, anomalies = parse_sip(meta(), payload)
    assert anomalies == []
    assert (msg.call_id, msg.from_user, msg.from_tag, msg.to_user) == ("compact@192.0.2.1", "alice", "1", "bob")
    assert msg.via == ("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1",) and msg.contact == ("sip:alice@192.0.2.1",)
    assert (msg.refer_to, msg.content_type, msg.content_length, msg.body_len) == (
        "sip:carol@example.com", "text/plain", 5, 5)


def test_header_names_are_case_insensitive():
    msg, anomalies = parse_sip(meta(), register().replace(b"Call-ID", b"cALL-iD").replace(b"CSeq", b"CSEQ"))
    assert anomalies == [] and msg.call_id == "843817637684230@998sdasdh09" and msg.cseq == 1826


def test_folded_header_lines():
    payload = register("Subject: first\n  second\n").replace(
        b"From: <sip:bob@example.com>;tag=456248", b"From: Bob\r\n\t<sip:bob@example.com>\r\n ;tag=456248")
    msg, anomalies = parse_sip(meta(), payload)
    assert anomalies == [] and (msg.from_uri, msg.from_tag) == ("sip:bob@example.com", "456248")


def test_continuation_before_any_header_is_described():
    payload = register().replace(b"SIP/2.0\r\nVia", b"SIP/2.0\r\n folded\r\nVia", 1)
    msg, anomalies = parse_sip(meta(), payload)
    assert msg.call_id and names(anomalies) == ["sip.bad_header_line"]


def test_via_and_contact_lists_with_quoted_commas():
    payload = crlf("""REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com;branch=z9hG4bK2
Via: SIP/2.0/UDP c.example.com;branch=z9hG4bK3
To: <sip:bob@example.com>
From: <sip:bob@example.com>;tag=1
Call-ID: list@example.com
CSeq: 2 REGISTER
Contact: "Doe, John" <sip:john@192.0.2.3>;expires=60, <sip:a,b@192.0.2.4>
Contact: sip:bob@192.0.2.5;expires=30
Content-Length: 0

""")
    msg, anomalies = parse_sip(meta(), payload)
    assert anomalies == []
    assert msg.via == ("SIP/2.0/UDP a.example.com;branch=z9hG4bK1", "SIP/2.0/TCP b.example.com;branch=z9hG4bK2",
                       "SIP/2.0/UDP c.example.com;branch=z9hG4bK3")
    assert msg.contact == ("sip:john@192.0.2.3", "sip:a,b@192.0.2.4", "sip:bob@192.0.2.5")
    assert msg.expires == 60


def test_expires_header_wins_over_contact_param():
    msg, _ = parse_sip(meta(), register("Contact: <sip:bob@192.0.2.1>;expires=60\nExpires: 3600\n"))
    assert msg.expires == 3600


def test_unterminated_quote_in_display_name():
    msg, _ = parse_sip(meta(), register().replace(b"From: <sip", b'From: "Bob <sip'))
    assert (msg.from_uri, msg.from_tag) == ("sip:bob@example.com", "456248")


def test_duplicate_singleton_header_keeps_the_first():
    msg, anomalies = parse_sip(meta(), register("To: <sip:mallory@example.com>\n"))
    assert msg.to_user == "bob" and names(anomalies) == ["sip.duplicate_header"]


def test_header_line_without_colon():
    msg, anomalies = parse_sip(meta(), register("this is not a header\n"))
    assert msg.call_id and names(anomalies) == ["sip.bad_header_line"]


# ---------------------------------------------------------------- URIs and identities

def test_tel_uri_user_is_the_number():
    payload = register().replace(b"To: <sip:bob@example.com>", b"To: <tel:+1-201-555-0123;phone-context=example.com>")
    msg, _ = parse_sip(meta(), payload.replace(b"REGISTER sip:registrar.example.com", b"REGISTER tel:+15551234"))
    assert (msg.to_user, msg.ruri_user) == ("+1-201-555-0123", "+15551234")


def test_escaped_user_part_is_unescaped():
    msg, _ = parse_sip(meta(), register().replace(b"From: <sip:bob@", b"From: <sip:b%6Fb%20x@"))
    assert msg.from_user == "bob x"


def test_undecodable_escape_is_kept_as_written():
    msg, _ = parse_sip(meta(), register().replace(b"From: <sip:bob@", b"From: <sip:b%FFb@"))
    assert msg.from_user == "b%FFb"


def test_uri_password_is_not_kept():
    msg, _ = parse_sip(meta(), register().replace(b"From: <sip:bob@", b"From: <sip:bob:hunter2@"))
    assert msg.from_uri == "sip:bob:***@example.com" and msg.from_user == "bob"
    assert "hunter2" not in repr(msg)


def test_pai_diversion_refer_to():
    msg, anomalies = parse_sip(meta(), register(
        'P-Asserted-Identity: "Alice" <sip:alice@example.com>, <tel:+15551234>\n'
        "Diversion: <sip:100@example.com>;reason=unconditional\n"
        "Refer-To: <sip:carol@example.com?Replaces=abc%40host>\n"))
    assert anomalies == []
    assert msg.pai == ("sip:alice@example.com", "tel:+15551234")
    assert msg.diversion == ("sip:100@example.com",)
    assert msg.refer_to == "sip:carol@example.com?Replaces=abc%40host"


# ---------------------------------------------------------------- authentication

DIGEST_RESPONSE = "6629fae49393a05397450978507c4ef1"


def test_digest_authorization_response_is_hashed_never_kept():
    msg, anomalies = parse_sip(meta(), register(
        'Authorization: Digest username="bob", realm="example.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",'
        f' uri="sip:registrar.example.com", qop=auth, nc=00000001, cnonce="0a4f113b",'
        f' response="{DIGEST_RESPONSE}", algorithm=MD5, opaque="5ccc069c403ebaf9f0171e9517f40e41"\n'))
    (auth,) = msg.auth
    assert (auth.header, auth.scheme, auth.username, auth.realm) == ("authorization", "Digest", "bob", "example.com")
    assert (auth.algorithm, auth.qop, auth.uri) == ("MD5", "auth", "sip:registrar.example.com")
    assert auth.response_sha256 == hashlib.sha256(DIGEST_RESPONSE.encode()).hexdigest()
    assert auth.response_len == 32
    assert DIGEST_RESPONSE not in repr(msg) and DIGEST_RESPONSE not in repr(anomalies)


def test_challenges_with_quoted_comma_lists():
    msg, _ = parse_sip(meta(), RESPONSE.replace(b"180 Ringing", b"407 Proxy Authentication Required").replace(
        b"Server:", b'Proxy-Authenticate: Digest realm="a.example", qop="auth,auth-int", nonce="x",'
        b' algorithm=SHA-256, Digest realm="a.example", nonce="y", algorithm=MD5\r\nServer:'))
    assert [(a.header, a.realm, a.qop, a.algorithm) for a in msg.auth] == [
        ("proxy-authenticate", "a.example", "auth,auth-int", "SHA-256"),
        ("proxy-authenticate", "a.example", None, "MD5")]


def test_stale_flag_of_challenges():
    """RFC 7616 §3.3: stale=TRUE (any case) on a challenge; absent, or on credentials, it is None."""
    msg, _ = parse_sip(meta(), RESPONSE.replace(b"180 Ringing", b"401 Unauthorized").replace(
        b"Server:", b'WWW-Authenticate: Digest realm="a", nonce="n2", stale=TRUE, algorithm=MD5, '
        b'Digest realm="a", nonce="n3", stale="false", Digest realm="a", nonce="n4"\r\nServer:'))
    assert [a.stale for a in msg.auth] == [True, False, None]
    msg, _ = parse_sip(meta(), register('Authorization: Digest username="bob", realm="a", nonce="n", stale=true,'
                                        ' response="00"\n'))
    assert [a.stale for a in msg.auth] == [None]


def test_basic_credentials_are_not_kept():
    msg, _ = parse_sip(meta(), register("Authorization: Basic Ym9iOmh1bnRlcjI=\n"))
    assert [(a.scheme, a.username, a.response_sha256) for a in msg.auth] == [("Basic", None, None)]
    assert "Ym9iOmh1bnRlcjI" not in repr(msg)


# ---------------------------------------------------------------- junk and mandatory headers

def test_junk_before_request_is_described_and_skipped():
    msg, anomalies = parse_sip(meta(), b"\x00\x00\x00\x00" + register())
    assert msg.method == "REGISTER" and msg.call_id == "843817637684230@998sdasdh09"
    assert names(anomalies) == ["sip.junk_before_request"]
    assert "\\x00\\x00\\x00\\x00" in anomalies[0].detail


def test_junk_lines_before_response():
    msg, anomalies = parse_sip(meta(), b"garbage\r\nmore garbage\r\n" + RESPONSE)
    assert msg.status == 180 and names(anomalies) == ["sip.junk_before_response"]


def test_leading_keepalive_crlf_is_not_junk():
    msg, anomalies = parse_sip(meta(), b"\r\n\r\n" + register())
    assert msg.method == "REGISTER" and anomalies == []


def test_missing_call_id_and_cseq():
    payload = b"REGISTER sip:1.1.1.1:5060 SIP/2.0\r\nExpires: 3600\r\n\r\n"
    msg, anomalies = parse_sip(meta(), payload)
    assert (msg.call_id, msg.cseq, msg.expires) == (None, None, 3600)
    assert names(anomalies) == ["sip.missing_call_id", "sip.missing_cseq"]


@pytest.mark.parametrize("cseq", ["x REGISTER", "1826", "4294967296 REGISTER", "1 2 3"])
def test_bad_cseq(cseq):
    _, anomalies = parse_sip(meta(), register().replace(b"1826 REGISTER", cseq.encode()))
    assert "sip.bad_cseq" in names(anomalies)


def test_missing_empty_line():
    msg, anomalies = parse_sip(meta(), register().rstrip(b"\r\n"))
    assert msg.call_id and names(anomalies) == ["sip.headers_unterminated"]


def test_non_utf8_header_is_replaced():
    msg, anomalies = parse_sip(meta(), register("Subject: cafe\n").replace(b"cafe", b"caf\xe9"))
    assert msg.call_id and names(anomalies) == ["sip.non_utf8"]


# ---------------------------------------------------------------- bodies and Content-Length

def test_invalid_content_length_uses_rest_of_datagram():
    msg, anomalies = parse_sip(meta(), INVITE.replace(f"Content-Length: {len(SDP)}".encode(), b"Content-Length: bad"))
    assert (msg.content_length, msg.body_len) == (None, len(SDP))
    assert names(anomalies) == ["sip.invalid_content_length"] and "bad" in anomalies[0].detail


def test_content_length_beyond_datagram_udp():
    msg, anomalies = parse_sip(meta(), INVITE[:-10])
    assert (msg.content_length, msg.body_len) == (len(SDP), len(SDP) - 10)
    assert names(anomalies) == ["sip.invalid_content_length", "sdp.bad_rtpmap"]  # the cut a=rtpmap line


def test_content_length_beyond_message_tcp_is_truncation():
    _, anomalies = parse_sip(meta("tcp"), INVITE[:-10])
    assert names(anomalies) == ["sip.body_truncated", "sdp.bad_rtpmap"]


def test_content_length_shorter_trailing_whitespace_is_fine():
    msg, anomalies = parse_sip(meta(), INVITE + b"\r\n\r\n  ")
    assert msg.body_len == len(SDP) and anomalies == []


def test_content_length_shorter_trailing_data_is_described():
    msg, anomalies = parse_sip(meta(), INVITE + b"m=video 5 RTP/AVP 31\r\n")
    assert msg.body_len == len(SDP) and len(msg.sdp.media) == 1
    assert names(anomalies) == ["sip.trailing_data"]


def test_missing_content_length_udp_takes_rest_of_datagram():
    msg, anomalies = parse_sip(meta(), INVITE.replace(f"Content-Length: {len(SDP)}\r\n".encode(), b""))
    assert (msg.content_length, msg.body_len) == (None, len(SDP)) and anomalies == []
    assert msg.sdp.media[0].port == 49170


def test_missing_content_length_tcp_is_described():
    _, anomalies = parse_sip(meta("tcp"), register().replace(b"Content-Length: 0\r\n", b""))
    assert names(anomalies) == ["sip.missing_content_length"]


def test_multipart_body_sdp_part():
    body = (b"--unique-boundary-1\r\nContent-Type: application/sdp\r\n\r\n" + SDP +
            b"\r\n--unique-boundary-1\r\nContent-Type: application/isup;version=itu-t92+\r\n"
            b"Content-Disposition: signal; handling=optional\r\n\r\n\x01\x00\x49\x00\x00\x03\x02\x00\x07\r\n"
            b"--unique-boundary-1--\r\n")
    payload = INVITE.split(b"Content-Type")[0] + (
        f"Content-Type: multipart/mixed;boundary=unique-boundary-1\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    msg, anomalies = parse_sip(meta(), payload)
    assert anomalies == [] and msg.body_len == len(body)
    assert msg.content_type == "multipart/mixed;boundary=unique-boundary-1"
    assert msg.sdp.media[0].rtpmap == ((0, "PCMU", 8000), (101, "telephone-event", 8000))


def test_sdp_anomalies_carry_the_sdp_layer():
    payload = INVITE.replace(b"m=audio 49170 RTP/AVP 0 101", b"m=audio port RTP/AVP 0 101 ")
    msg, anomalies = parse_sip(meta(), payload)
    assert [(a.layer, a.name) for a in anomalies] == [("sdp", "sdp.bad_media_line"), ("sdp", "sdp.no_media")]


def test_info_dtmf_relay_digits_not_kept():
    body = b"Signal=7\r\nDuration=160\r\n"
    payload = crlf(f"""INFO sip:bob@example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK9
To: <sip:bob@example.com>;tag=2
From: <sip:alice@example.com>;tag=1
Call-ID: dtmf@example.com
CSeq: 3 INFO
Content-Type: application/dtmf-relay
Content-Length: {len(body)}

""") + body
    msg, anomalies = parse_sip(meta(), payload)
    assert msg.body_has_dtmf_relay and anomalies == []
    assert "Signal=7" not in repr(msg)


# ---------------------------------------------------------------- limits

def test_header_longer_than_limit_is_cut():
    msg, anomalies = parse_sip(meta(), register("User-Agent: " + "u" * (MAX_HEADER_LINE + 10) + "\n"))
    assert len(msg.user_agent) == MAX_HEADER_LINE and names(anomalies) == ["sip.header_too_long"]


def test_too_many_headers_keeps_the_first():
    msg, anomalies = parse_sip(meta(), register("".join(f"X-H{i}: {i}\n" for i in range(MAX_HEADERS))))
    assert msg.call_id and names(anomalies) == ["sip.too_many_headers"]


def test_too_many_via_entries():
    vias = ", ".join(f"SIP/2.0/UDP h{i}.example.com" for i in range(MAX_VIA + 5))
    msg, anomalies = parse_sip(meta(), register(f"Via: {vias}\n"))
    assert len(msg.via) == MAX_VIA and names(anomalies) == ["sip.too_many_via"]


def test_repeated_anomalies_are_counted_once():
    _, anomalies = parse_sip(meta(), register("bad line one\nbad line two\n"))
    assert names(anomalies) == ["sip.bad_header_line"] and anomalies[0].detail.endswith("(x2)")


# ---------------------------------------------------------------- TCP framing (RFC 3261 §18.3)

def test_stream_two_messages_in_one_buffer():
    messages, used = frame_sip_stream(INVITE + RESPONSE)
    assert messages == [INVITE, RESPONSE] and used == len(INVITE + RESPONSE)


def test_stream_message_split_across_calls():
    stream = INVITE + RESPONSE
    messages, used = frame_sip_stream(stream[:50])
    assert (messages, used) == ([], 0)
    messages, used = frame_sip_stream(stream[:len(INVITE) - 3])
    assert (messages, used) == ([], 0)
    messages, used = frame_sip_stream(stream[:len(INVITE) + 20])
    assert (messages, used) == ([INVITE], len(INVITE))
    assert frame_sip_stream(stream[used:]) == ([RESPONSE], len(RESPONSE))


def test_stream_keepalives_are_skipped():
    messages, used = frame_sip_stream(b"\r\n\r\n" + register() + b"\r\n" + RESPONSE + b"\r\n\r\n")
    assert messages == [register(), RESPONSE] and used == len(b"\r\n\r\n" + register() + b"\r\n" + RESPONSE) + 4


def test_stream_missing_content_length_means_empty_body():
    msg = register().replace(b"Content-Length: 0\r\n", b"")
    assert frame_sip_stream(msg + msg) == ([msg, msg], 2 * len(msg))


def test_stream_garbage_before_message_is_consumed_and_counted():
    messages, used, notes = SipStreamFramer().frame(b"\x16\x03\x01garbage\r\nmore\r\n" + RESPONSE, meta("tcp"))
    assert messages == [RESPONSE] and used == len(b"\x16\x03\x01garbage\r\nmore\r\n" + RESPONSE)
    assert [(a.name, a.detail) for a in notes] == [
        ("sip.resync_skipped_bytes", "18 bytes skipped before a SIP start line, starting b'\\x16\\x03\\x01garbage\\r\\nmore'")]


def test_stream_garbage_without_sip_keeps_unfinished_line():
    framer = SipStreamFramer()
    messages, used, notes = framer.frame(b"not sip\r\nstill not\r\nINVITE sip:x", meta("tcp"))
    assert (messages, used, notes) == ([], len(b"not sip\r\nstill not\r\n"), [])
    (end,) = framer.end(1.0, 9, "a", "b", "connection closed")
    assert (end.name, end.frame, end.detail) == (
        "sip.not_sip_on_sip_port", 9, "20 bytes on a TCP connection to or from a SIP port, starting "
        "b'not sip\\r\\nstill n', held no SIP start line (connection closed)")


def test_stream_large_body():
    body = b"v=0\r\n" + b"a=x-filler:" + b"X" * 65520 + b"\r\n"
    invite = INVITE.replace(f"Content-Length: {len(SDP)}".encode(), f"Content-Length: {len(body)}".encode())
    invite = invite[:-len(SDP)] + body
    assert frame_sip_stream(invite[:-1]) == ([], 0)
    assert frame_sip_stream(invite) == ([invite], len(invite))
    msg, _ = parse_sip(meta("tcp"), invite)
    assert msg.body_len == len(body) > 65536


# ---------------------------------------------------------------- public captures

def _raw_ip(buf: bytes):
    return dpkt.ip.IP(buf) if buf[:1] and buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)


# pcap LINKTYPE_* -> function returning the network-layer packet
_LINKS = {1: lambda b: dpkt.ethernet.Ethernet(b).data, 0: lambda b: dpkt.loopback.Loopback(b).data,
          101: _raw_ip, 228: _raw_ip, 12: _raw_ip}


def packets(path: Path) -> list[tuple[int, PacketMeta, bytes, int]]:
    """(frame number, meta, L4 payload, TCP sequence number or 0) of every IPv4/IPv6 UDP and TCP packet."""
    out = []
    with path.open("rb") as fh:
        magic = fh.read(4)
        fh.seek(0)
        reader = dpkt.pcapng.Reader(fh) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(fh)
        decode = _LINKS[reader.datalink()]
        for frame, (ts, buf) in enumerate(reader, 1):
            ip = decode(buf)
            l4 = getattr(ip, "data", None)
            if not isinstance(l4, (dpkt.udp.UDP, dpkt.tcp.TCP)):
                continue
            family = socket.AF_INET if isinstance(ip, dpkt.ip.IP) else socket.AF_INET6
            transport = "udp" if isinstance(l4, dpkt.udp.UDP) else "tcp"
            pm = PacketMeta(ts, frame, (), socket.inet_ntop(family, ip.src), l4.sport,
                            socket.inet_ntop(family, ip.dst), l4.dport, transport)
            out.append((frame, pm, bytes(l4.data), getattr(l4, "seq", 0)))
    return out


def tshark_rows(tshark: str, path: Path, display_filter: str, fields: list[str]) -> dict[int, list[str]]:
    """frame number -> first occurrence of each field, as tshark prints it."""
    cmd = [tshark, "-n", "-r", str(path), "-Y", display_filter, "-T", "fields", "-E", "occurrence=f"]
    for f in ["frame.number", *fields]:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, check=True).stdout.decode("utf-8", "replace")
    return {int(row.split("\t")[0]): row.split("\t")[1:] for row in out.splitlines()}


def _first_auth(msg, attr):
    return getattr(msg.auth[0], attr) if msg.auth else None


# tshark field -> the same value from a SipMessage
COMPARED = {
    "sip.Method": lambda m: m.method,
    "sip.Status-Code": lambda m: m.status,
    "sip.Call-ID": lambda m: m.call_id,
    "sip.CSeq.seq": lambda m: m.cseq,
    "sip.CSeq.method": lambda m: m.cseq_method,
    "sip.r-uri.user": lambda m: m.ruri_user,
    "sip.from.user": lambda m: m.from_user,
    "sip.from.tag": lambda m: m.from_tag,
    "sip.to.user": lambda m: m.to_user,
    "sip.to.tag": lambda m: m.to_tag,
    "sip.contact.uri": lambda m: m.contact[0] if m.contact else None,
    "sip.User-Agent": lambda m: m.user_agent,
    "sip.Server": lambda m: m.server,
    "sip.Content-Length": lambda m: m.content_length,
    "sip.auth.username": lambda m: _first_auth(m, "username"),
    "sip.auth.realm": lambda m: _first_auth(m, "realm"),
}

UDP_CAPTURES = [
    "suricata-verify/sip-compact-form/sip_compact_form.pcap",
    "suricata-verify/sip-header-multi-value/sip_header_multi_val.pcap",
    "suricata-verify/sip-sdp/sdp.pcap",
    "suricata-verify/sip-options-method/input.pcap",
    "suricata-verify/sip-body-frames/public-cloudshark-sip-s0.pcap",
    "zeek/Traces/sip/wireshark.pcap",
    "zeek/Traces/sip/sip-junk-before-request.pcap",
    "zeek/Traces/sip/invalid-content-length.pcap",
    "zeek/Traces/sip/sip-long-request-response-paths.pcap",
    "sipnab/sip-rtp-g711.pcap",
    "sipnab/sip-488-codec-reject.pcapng",
    "sip-attacks/Traces/BadUserAgent-sipvicious.pcap",
    "sip-attacks/Traces/SIP-3700-unauthorized-401.pcap",
    "snort3_demo/inspectors/binder/user_defined_method.pcap",
    "heplify/ipip0.pcap",
    "voipshark/SIP-RTP-Normal_Call_two_parties.pcap",
]

# (capture, frame, tshark field) -> why tshark's value is not the right one
TSHARK_WRONG = {
    ("zeek/Traces/sip/invalid-content-length.pcap", 1, "sip.Content-Length"):
        "tshark shows the unparsable 'Content-Length: bad' as 0; we keep None and report the anomaly",
    ("zeek/Traces/sip/invalid-content-length.pcap", 2, "sip.Content-Length"):
        "tshark shows the unparsable 'Content-Length: xyz' as 0; we keep None and report the anomaly",
    ("sipnab/sip-488-codec-reject.pcapng", 5, "sip.r-uri.user"):
        "tshark 4.0 drops the one-letter user of sip:s@176.132.182.27 (RFC 3261 §19.1.1: user is 's')",
    ("sipnab/sip-488-codec-reject.pcapng", 5, "sip.to.user"):
        "same one-letter user 's' in To: sip:s@176.132.182.27;line=qynrfeg",
    ("sipnab/sip-488-codec-reject.pcapng", 6, "sip.to.user"):
        "same one-letter user 's' in the response's To",
}


def _compare_with_tshark(tshark: str, path: Path, label: str, udp_packets) -> int:
    rows = tshark_rows(tshark, path, "sip", list(COMPARED))
    ours = {}
    for frame, pm, payload, _ in udp_packets:
        if looks_like_sip(payload):
            msg, _ = parse_sip(pm, payload)
            ours[frame] = msg
    assert sorted(ours) == sorted(rows), label
    for frame, msg in ours.items():
        for field, value in zip(COMPARED, rows[frame]):
            mine = COMPARED[field](msg)
            mine = "" if mine is None else str(mine)
            theirs = value.strip('"') if field.startswith("sip.auth.") else value
            if (label, frame, field) in TSHARK_WRONG:
                assert mine != theirs, (label, frame, field, "listed as a tshark error but now agrees")
            else:
                assert mine == theirs, (label, frame, field)
    return len(ours)


@pytest.mark.peer
@pytest.mark.parametrize("capture", UDP_CAPTURES)
def test_capture_fields_agree_with_tshark(capture, public_captures, tshark):
    path = public_captures / capture
    udp = [p for p in packets(path) if p[1].transport == "udp"]
    assert _compare_with_tshark(tshark, path, capture, udp) > 0


@pytest.mark.peer
def test_protos_c07_fuzz_capture(public_captures, tshark, tmp_path):
    """PROTOS c07-sip-r2 (NetMon 2.x, converted to pcap for dpkt): never raises; agrees with tshark."""
    converted = tmp_path / "c07-sip-r2.pcap"
    subprocess.run([str(Path(tshark).with_name("editcap")), "-F", "pcap",
                    str(public_captures / "sipnab/c07-sip-r2.cap"), str(converted)], check=True,
                   capture_output=True)
    udp = packets(converted)
    for _, pm, payload, _ in udp:
        parse_sip(pm, payload)
    assert _compare_with_tshark(tshark, converted, "sipnab/c07-sip-r2.cap", udp) == 12


def _flows(path: Path) -> dict[tuple, bytes]:
    """Client and server byte streams of each TCP flow, segments ordered by sequence number."""
    segments: dict[tuple, dict[int, bytes]] = {}
    for _, pm, payload, seq in packets(path):
        if pm.transport == "tcp" and payload:
            segments.setdefault((pm.src, pm.sport, pm.dst, pm.dport), {})[seq] = payload
    return {key: b"".join(segs[s] for s in sorted(segs)) for key, segs in segments.items()}


def test_tcp_large_body_capture(public_captures):
    """suricata-verify sip-body-large: INVITE over TCP with a 65536-byte body, fed in 1400-byte pieces."""
    flows = _flows(public_captures / "suricata-verify/sip-body-large/sip-body-large.pcap")
    stream = flows[("127.0.0.1", 59809, "127.0.0.1", 5060)]
    found, pending = [], b""
    for i in range(0, len(stream), 1400):
        pending += stream[i:i + 1400]
        messages, used = frame_sip_stream(pending)
        found += messages
        pending = pending[used:]
    assert pending == b"" and len(found) == 1
    msg, _ = parse_sip(meta("tcp"), found[0])
    assert (msg.method, msg.content_length, msg.body_len) == ("INVITE", 65536, 65536)


@pytest.mark.peer
@pytest.mark.parametrize("capture", ["sipnab/sip-over-tcp.pcap", "suricata-verify/sip-tcp-method/sip-tcp.pcap",
                                     "suricata-verify/sip-tcp-pattern-matching/sip.pcap"])
def test_tcp_captures_agree_with_tshark(capture, public_captures, tshark):
    path = public_captures / capture
    ours = []
    for stream in _flows(path).values():
        messages, used = frame_sip_stream(stream)
        assert used == len(stream)
        ours += [parse_sip(meta("tcp"), m)[0] for m in messages]
    rows = tshark_rows(tshark, path, "sip", ["sip.Method", "sip.Status-Code", "sip.Call-ID", "sip.CSeq.seq"])
    theirs = sorted(tuple(r) for r in rows.values())
    mine = sorted(tuple("" if v is None else str(v) for v in (m.method, m.status, m.call_id, m.cseq)) for m in ours)
    assert mine == theirs


def test_zeek_junk_capture_as_one_flow(public_captures):
    """Zeek's trace: 4 NUL bytes, then REGISTER; Zeek's weird is sip_junk_before_request with \\x00 x4."""
    payloads = [p for _, _, p, _ in packets(public_captures / "zeek/Traces/sip/sip-junk-before-request.pcap")]
    assert payloads[0] == b"\x00\x00\x00\x00" and not looks_like_sip(payloads[0])
    msg, anomalies = parse_sip(meta(), payloads[0] + payloads[1])
    assert (msg.method, msg.request_uri) == ("REGISTER", "sip:1.1.1.1:5060")
    assert names(anomalies)[0] == "sip.junk_before_request" and "\\x00\\x00\\x00\\x00" in anomalies[0].detail


def test_zeek_invalid_content_length_capture(public_captures):
    """Zeek's weird.log: invalid_SIP_request_body_len 'bad' and invalid_SIP_response_body_len 'xyz'."""
    found = []
    for _, pm, payload, _ in packets(public_captures / "zeek/Traces/sip/invalid-content-length.pcap"):
        msg, anomalies = parse_sip(pm, payload)
        found.append((msg.method or msg.status, [(a.name, a.detail) for a in anomalies]))
    assert found == [("INVITE", [("sip.invalid_content_length", "not a number: 'bad'")]),
                     (200, [("sip.invalid_content_length", "not a number: 'xyz'")])]


def test_suricata_compact_and_multi_value_captures(public_captures):
    """Content-Length 272 with a 372-byte body: per RFC 3261 §18.3 (and tshark) the rest is discarded."""
    (_, pm, payload, _), = packets(public_captures / "suricata-verify/sip-header-multi-value/sip_header_multi_val.pcap")
    msg, anomalies = parse_sip(pm, payload)
    assert (msg.to_user, msg.from_user, msg.content_type, msg.body_len) == ("97239287044", "816666",
                                                                            "application/sdp", 272)
    assert names(anomalies) == ["sip.duplicate_header", "sip.trailing_data", "sdp.no_media"]


def test_suricata_compact_form_capture(public_captures):
    """sip-compact-form: v:, f:, t:, c:, l: are read as Via, From, To, Content-Type, Content-Length."""
    (_, pm, payload, _), = packets(public_captures / "suricata-verify/sip-compact-form/sip_compact_form.pcap")
    msg, _ = parse_sip(pm, payload)
    assert msg.via == ("SIP/2.0/UDP 192.168.1.2:5060;branch=z9hG4bKnp104984053-44ce4a41192.168.1.2;rport",)
    assert (msg.from_uri, msg.from_tag, msg.to_uri) == ("sip:816666@voip.brurjula.net", "6433ef9",
                                                         "sip:97239287044@voip.brujula.net")
    assert (msg.content_type, msg.content_length, msg.contact) == ("application/sdp", 272, ("sip:816666@192.168.1.2",))


def test_suricata_pattern_matching_capture(public_captures):
    """test.yaml: REGISTER sip:sip.cybercity.dk SIP/2.0, then SIP/2.0 401 Unauthorized."""
    capture = public_captures / "suricata-verify/sip-pattern-matching/sip.pcap"
    found = [parse_sip(pm, p)[0] for _, pm, p, _ in packets(capture)]
    assert [(m.method, m.request_uri, m.status, m.reason) for m in found] == [
        ("REGISTER", "sip:sip.cybercity.dk", None, None), (None, None, 401, "Unauthorized")]
    assert [(a.header, a.scheme, a.algorithm) for a in found[1].auth] == [("www-authenticate", "Digest", "MD5")]


# ---------------------------------------------------------------- fuzzing

def _seeds(public_captures: Path) -> list[bytes]:
    seeds = [INVITE, RESPONSE, register("Authorization: Digest username=\"a\", response=\"b\"\n")]
    for capture in ("zeek/Traces/sip/wireshark.pcap", "suricata-verify/sip-sdp/sdp.pcap"):
        seeds += [p for _, _, p, _ in packets(public_captures / capture) if looks_like_sip(p)]
    return seeds


def test_fuzz_never_raises(public_captures):
    rng = random.Random(3261)
    seeds = _seeds(public_captures)
    for _ in range(2000):
        data = sip_damage(rng, rng.choice(seeds))
        probe = looks_like_sip(data)
        for transport in ("udp", "tcp"):
            msg, anomalies = parse_sip(meta(transport), data)
            assert msg is not None or names(anomalies) == ["sip.malformed_start_line"]
            assert msg is not None or not probe
        stream = data + rng.choice(seeds)
        messages, used = frame_sip_stream(stream)
        assert 0 <= used <= len(stream) and sum(map(len, messages)) <= used


def test_nul_in_a_quoted_pair_is_legal():
    """RFC 3261 §25.1: quoted-pair = "\\" (%x00-09 / %x0B-0C / %x0E-7F): an escaped NUL inside a quoted-string
    (here a display name) or a comment (User-Agent) is allowed, so it is no sip.nul_byte."""
    message = INVITE.replace(b"To: Bob <", b'To: "B\\\x00b" <').replace(b"softphone/1.0",
                                                                         b"softphone/1.0 (build \\\x00 1)")
    msg, anomalies = parse_sip(meta(), message)
    assert msg.to_user == "bob" and msg.user_agent == "softphone/1.0 (build \\\x00 1)"
    assert "sip.nul_byte" not in names(anomalies)


def test_nul_outside_a_quoted_pair_is_counted():
    """A NUL escaped outside any quoted-string or comment, or bare inside one, is still an anomaly."""
    message = INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: 7\\\x000").replace(
        b"To: Bob <", b'To: "B\x00b" <')
    _, anomalies = parse_sip(meta(), message)
    found = [a for a in anomalies if a.name == "sip.nul_byte"]
    assert [a.detail for a in found] == ["2 NUL bytes in the start line and header fields"]


# -- what the per-leg model reads (voipwatch.legs) ---------------------------------------------------------
def _response(extra: str) -> bytes:
    return crlf("SIP/2.0 183 Session Progress\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\nFrom: <sip:a@x>;tag=1\n"
                "To: <sip:b@x>;tag=2\nCall-ID: leg-b@x\nCSeq: 1 INVITE\n" + extra + "Content-Length: 0\n\n")


@pytest.mark.parametrize("extra, reliable", [
    ("Require: 100rel\nRSeq: 1\n", True),
    ("Require: precondition, 100REL\nRSeq: 7\n", True),      # RFC 3261 §7.3.1: option tags compare as tokens
    ("Require: 100rel\n", False),                            # RFC 3262 §3: no RSeq, not sent reliably
    ("RSeq: 1\n", False),
])
def test_reliable_provisional_needs_require_100rel_and_rseq(extra, reliable):
    msg, _ = parse_sip(meta(), _response(extra))
    assert msg.reliable is reliable


def test_session_id_uuids_and_leg_references():
    """RFC 7989 §4: the local UUID, then remote=; the null UUID and malformed ones are left out. X-CID-like
    headers name another Call-ID (this message's own Call-ID is no reference)."""
    msg, _ = parse_sip(meta(), _response("Session-ID: AB30317F1A784DC48FF824D0D3715D86;remote=00000000000000000000000000000000\n"
                                         "X-CID: leg-a@x\nX-Orig-Call-ID: leg-b@x\n"))
    assert (msg.session_ids, msg.leg_refs) == (("ab30317f1a784dc48ff824d0d3715d86",), ("leg-a@x",))
    msg, _ = parse_sip(meta(), _response("Session-ID: 47755a9de7794ba387653f2099600ef2;remote=ab30317f1a784dc48ff824d0d3715d86\n"))
    assert msg.session_ids == ("47755a9de7794ba387653f2099600ef2", "ab30317f1a784dc48ff824d0d3715d86")
    msg, _ = parse_sip(meta(), _response("Session-ID: not-a-uuid;remote=1234\n"))
    assert msg.session_ids == ()
