"""TLS/DTLS handshake dissector: framing across records and segments, field decoding, hostile input."""
from __future__ import annotations

import random
import struct

from dissectors import tls
from voipwatch.records import PacketMeta

META = PacketMeta(1.0, 7, (), "10.0.0.1", 40000, "10.0.0.2", 5061, "tcp")


def vec(data: bytes, n: int) -> bytes:
    return len(data).to_bytes(n, "big") + data


def ext(ext_type: int, data: bytes) -> bytes:
    return struct.pack("!H", ext_type) + vec(data, 2)


def client_hello(dtls: bool = False) -> bytes:
    """A ClientHello (RFC 8446 §4.1.2) with SNI, ALPN, groups, signature algorithms, versions, key_share."""
    exts = (ext(0, vec(b"\x00" + vec(b"sbc.example.net", 2), 2))
            + ext(10, vec(struct.pack("!HH", 0x001D, 0x0018), 2))
            + ext(13, vec(struct.pack("!HH", 0x0403, 0x0804), 2))
            + ext(16, vec(vec(b"sip", 1) + vec(b"h2", 1), 2))
            + ext(43, vec(struct.pack("!HH", 0x0304, 0x0303), 1))
            + ext(51, vec(struct.pack("!H", 0x001D) + vec(bytes(32), 2), 2)))
    body = (struct.pack("!H", 0xFEFD if dtls else 0x0303) + bytes(range(32)) + vec(b"", 1)
            + (vec(b"", 1) if dtls else b"") + vec(struct.pack("!HHH", 0x1302, 0xC02C, 0x002F), 2)
            + vec(b"\x00", 1) + vec(exts, 2))
    return body


def handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def record(ctype: int, fragment: bytes) -> bytes:
    return struct.pack("!BHH", ctype, 0x0303, len(fragment)) + fragment


def feed(framer, chunks):
    """Feed byte chunks as the TCP reassembler does (unconsumed bytes are given again with the next)."""
    messages, notes, buf = [], [], b""
    for chunk in chunks:
        buf += chunk
        got, used, anomalies = framer.frame(buf, META)
        messages += got
        notes += anomalies
        buf = buf[used:]
    return messages, notes, buf


def test_a_hello_spanning_records_and_segments_is_joined_and_decoded():
    message = handshake(1, client_hello())
    stream = record(22, message[:50]) + record(22, message[50:])
    framer = tls.TlsRecordFramer()
    messages, notes, rest = feed(framer, [stream[i:i + 7] for i in range(0, len(stream), 7)])
    assert messages == [message] and notes == [] and rest == b"" and framer.synced
    h, anomalies = tls.parse_tls(META, messages[0])
    assert anomalies == []
    assert h.messages == ("client_hello",) and h.protocol == "tls"
    hello = h.hello
    assert hello.role == "client" and hello.legacy_version == 0x0303
    assert hello.cipher_suites == (0x1302, 0xC02C, 0x002F)
    assert hello.sni == "sbc.example.net" and hello.alpn == ("sip", "h2")
    assert hello.groups == (0x001D, 0x0018) and hello.signature_algorithms == (0x0403, 0x0804)
    assert hello.versions == (0x0304, 0x0303) and hello.key_share_groups == (0x001D,)
    assert hello.extensions == (0, 10, 13, 16, 43, 51)


def test_two_messages_in_one_record_and_nothing_after_change_cipher_spec():
    done = handshake(14, b"")
    stream = record(22, handshake(1, client_hello()) + done) + record(20, b"\x01") + record(22, b"\x99" * 40)
    framer = tls.TlsRecordFramer()
    messages, notes, rest = feed(framer, [stream])
    assert [m[0] for m in messages] == [1, 14] and framer.encrypted and rest == b""


def test_a_server_hello_retry_request_and_the_chosen_version():
    hrr = (struct.pack("!H", 0x0303) + tls.HRR_RANDOM + vec(b"", 1) + struct.pack("!HB", 0x1302, 0)
           + vec(ext(43, struct.pack("!H", 0x0304)) + ext(51, struct.pack("!H", 0x0018)), 2))
    h, notes = tls.parse_tls(META, handshake(2, hrr))
    assert notes == [] and h.hello.role == "hello_retry_request"
    assert h.hello.versions == (0x0304,) and h.hello.key_share_groups == (0x0018,) and h.hello.cipher_suites == (0x1302,)


def test_a_record_header_that_is_not_tls_gives_the_direction_up_once():
    framer = tls.TlsRecordFramer()
    messages, notes, rest = feed(framer, [record(22, handshake(14, b"")) + b"GET / HTTP/1.1\r\n\r\n"])
    assert [a.name for a in notes] == ["tls.bad_record"] and framer.abandoned
    assert feed(framer, [b"more"])[1] == []
    # never synced: no anomaly, the framer just declines
    other = tls.TlsRecordFramer()
    assert feed(other, [b"\x16\x03\x01\xff\xff" + b"x" * 10])[1] == [] and other.abandoned


def test_an_over_long_handshake_message_is_named_and_not_buffered():
    framer = tls.TlsRecordFramer()
    header = b"\x0b" + (tls.MAX_HANDSHAKE_MESSAGE + 1).to_bytes(3, "big")
    messages, notes, _ = feed(framer, [record(22, header + b"\0" * 100)])
    assert messages == [] and [a.name for a in notes] == ["tls.handshake_too_long"] and framer.pending == b""


def test_a_direction_ending_inside_a_message_is_reported():
    framer = tls.TlsRecordFramer()
    feed(framer, [record(22, handshake(1, client_hello())[:60])])
    assert [a.name for a in framer.end(2.0, 9, "a", "b", "connection closed")] == ["tls.truncated_handshake"]
    assert framer.end(2.0, 9, "a", "b", "again") == []


def test_malformed_hello_and_certificate_are_named_anomalies():
    h, notes = tls.parse_tls(META, handshake(1, client_hello()[:-3]))
    assert [a.name for a in notes] == ["tls.malformed_hello"] and h.hello is None and h.messages == ("client_hello",)
    h, notes = tls.parse_tls(META, handshake(11, vec(vec(b"\x30\x03\x02\x01\x00", 3), 3)))
    assert [a.name for a in notes] == ["tls.malformed_certificate"] and h.certificates == ()
    h, notes = tls.parse_tls(META, handshake(11, vec(b"", 3)))       # an empty chain: declined client auth
    assert notes == [] and h.certificates == ()


def dtls_record(fragment: bytes, seq: int = 0) -> bytes:
    return struct.pack("!BHH", 22, 0xFEFD, 0) + seq.to_bytes(6, "big") + vec(fragment, 2)


def dtls_fragment(msg_type: int, body: bytes, offset: int, size: int, seq: int = 0) -> bytes:
    return (bytes([msg_type]) + len(body).to_bytes(3, "big") + struct.pack("!H", seq) + offset.to_bytes(3, "big")
            + size.to_bytes(3, "big") + body[offset:offset + size])


def test_dtls_fragments_are_reassembled_in_any_order():
    parser = tls.DtlsParser()
    body = client_hello(dtls=True)
    udp = PacketMeta(1.0, 1, (), "10.0.0.1", 5000, "10.0.0.2", 6000, "udp")
    h, notes = parser(udp, dtls_record(dtls_fragment(1, body, 60, len(body) - 60)))
    assert h is None and notes == []
    h, notes = parser(udp, dtls_record(dtls_fragment(1, body, 0, 60), 1))
    assert notes == [] and h.protocol == "dtls" and h.hello.sni == "sbc.example.net"
    assert h.hello.legacy_version == 0xFEFD and h.hello.cipher_suites == (0x1302, 0xC02C, 0x002F)


def test_dtls_hostile_fragments_are_dropped_and_counted():
    parser = tls.DtlsParser()
    udp = PacketMeta(1.0, 1, (), "10.0.0.1", 5000, "10.0.0.2", 6000, "udp")
    # a fragment beyond its message's length, and a message longer than the cap
    bad = b"\x01" + (10).to_bytes(3, "big") + b"\0\0" + (8).to_bytes(3, "big") + (5).to_bytes(3, "big") + b"x" * 5
    assert [a.name for a in parser(udp, dtls_record(bad))[1]] == ["dtls.fragments_dropped"]
    huge = (b"\x0b" + (tls.MAX_HANDSHAKE_MESSAGE + 1).to_bytes(3, "big") + b"\0\0" + (0).to_bytes(3, "big")
            + (4).to_bytes(3, "big") + b"abcd")
    assert [a.name for a in parser(udp, dtls_record(huge))[1]] == ["dtls.fragments_dropped"]
    # more open messages than the cap: the oldest is dropped, each time counted
    names = []
    for seq in range(tls.MAX_DTLS_MESSAGES + 3):
        part = b"\x0b" + (100).to_bytes(3, "big") + struct.pack("!H", seq) + (0).to_bytes(3, "big") + (4).to_bytes(3, "big") + b"abcd"
        names += [a.name for a in parser(udp, dtls_record(part))[1]]
    assert names == ["dtls.fragments_dropped"] * 3 and len(parser.reassembly._open) == tls.MAX_DTLS_MESSAGES
    # a record that claims more than the datagram holds
    assert [a.name for a in parser(udp, dtls_record(b"abc")[:-1])[1]] == ["dtls.malformed_record"]


def test_mutated_handshakes_never_raise():
    rng = random.Random(8446)
    tls_message = handshake(1, client_hello())
    dtls_datagram = dtls_record(dtls_fragment(1, client_hello(dtls=True), 0, len(client_hello(dtls=True))))
    udp = PacketMeta(1.0, 1, (), "10.0.0.1", 5000, "10.0.0.2", 6000, "udp")
    parser = tls.DtlsParser()
    seen = set()
    for sample in range(3000):
        data = bytearray(tls_message if sample % 2 else dtls_datagram)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data[:rng.randint(4, len(data))])
        if sample % 2:
            record_, notes = tls.parse_tls(META, data)
            assert record_ is not None
            notes += feed(tls.TlsRecordFramer(), [record(22, data), record(22, data[::-1])])[1]
        else:
            notes = parser(udp, data)[1]
        assert all(a.name in tls.ANOMALIES for a in notes)
        seen.update(a.name for a in notes)
    assert {"tls.malformed_hello", "dtls.malformed_record"} <= seen
