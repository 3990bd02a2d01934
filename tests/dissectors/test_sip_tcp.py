"""SIP over TCP: reassembly plus the resynchronising SIP framer, on crafted segmentations.

The four ways a connection used to be lost (issue 10): (a) a first segment holding only the start of a
message, (b) a connection opening with RFC 5626 CRLF keep-alives, (c) a capture begun mid-connection,
(d) junk after a message inside a segment. Each asserts the exact messages recovered and the named
anomalies; a seeded property test checks that any segmentation of a stream gives the same messages and
the same skipped-byte counts.
"""
from __future__ import annotations

import random
import re

from dissectors.ip import TCP_FIN, TCP_SYN
from dissectors.net import Datagram
from dissectors.sip import parse_sip
from dissectors.sip_stream import MAX_UNSYNCED_BYTES, PROBE_SEGMENTS, SipStreamFramer, SipStreamProbe
from dissectors.tcp import TcpReassembler
from voipwatch.records import PacketMeta

ACK_PSH = 0x18


def sip(start: str, call_id: str, body: bytes = b"") -> bytes:
    head = (f"{start}\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK-{call_id}\r\nFrom: <sip:a@x>;tag=1\r\n"
            f"To: <sip:b@x>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
INVITE = sip("INVITE sip:b@x SIP/2.0", "one@x", SDP)
RINGING = sip("SIP/2.0 180 Ringing", "one@x")
BYE = sip("BYE sip:b@x SIP/2.0", "two@x")


def segment(payload: bytes, seq: int, frame: int, flags: int = ACK_PSH) -> Datagram:
    meta = PacketMeta(float(frame), frame, (), "192.0.2.1", 40000, "192.0.2.2", 5060, "tcp")
    return Datagram(meta, payload, tcp_seq=seq, tcp_flags=flags)


def split(stream: bytes, cuts: list[int], seq: int = 1000, first_frame: int = 1) -> list[Datagram]:
    """The stream in segments ending at each cut, numbered from first_frame (no SYN: mid-connection)."""
    bounds = [0, *cuts, len(stream)]
    return [segment(stream[a:b], seq + a, first_frame + i) for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]


def feed(segments: list[Datagram], framer: SipStreamFramer | None = None, end: bool = True):
    """(frame, message) found and (frame, name, detail) of every anomaly, the end of input included."""
    framer = framer or SipStreamFramer()
    reassembler = TcpReassembler()
    messages, anomalies = [], []
    for seg in segments:
        found, notes = reassembler.feed(seg, framer)
        messages += [(meta.frame, m) for meta, m in found]
        anomalies += notes
    if end:
        anomalies += reassembler.finish()
    return messages, [(a.frame, a.name, a.detail) for a in anomalies]


def skipped(detail: str) -> int:
    return int(re.match(r"(\d+) bytes", detail).group(1))


# ---- (a) a first segment holding only the start of a message ----------------------------------

def test_a_first_segment_of_three_bytes():
    stream = INVITE + BYE
    messages, anomalies = feed([segment(b"", 999, 1, TCP_SYN), *split(stream, [3], first_frame=2)])
    assert messages == [(3, INVITE), (3, BYE)] and anomalies == []


def test_a_start_line_longer_than_a_segment():
    line = b"INVITE sip:" + b"9" * 3000 + b"@x SIP/2.0"
    long_invite = INVITE.replace(b"INVITE sip:b@x SIP/2.0", line)
    stream = long_invite + BYE
    messages, anomalies = feed(split(stream, list(range(1400, len(stream), 1400))))
    assert [m for _, m in messages] == [long_invite, BYE] and anomalies == []
    msg, _ = parse_sip(segment(b"", 0, 1).meta, messages[0][1])
    assert msg.method == "INVITE" and msg.ruri_user == "9" * 3000


def test_a_every_split_point_gives_the_same_messages():
    stream = INVITE + RINGING + BYE
    for cut in range(1, len(stream)):
        messages, anomalies = feed(split(stream, [cut]))
        assert [m for _, m in messages] == [INVITE, RINGING, BYE] and anomalies == [], cut


# ---- (b) CRLF keep-alives (RFC 5626 §4.4.1) -----------------------------------------------------

def test_b_keepalives_open_the_connection_and_sit_between_messages():
    stream = b"\r\n\r\n" + b"\r\n" + b"\r\n\r\n" + INVITE + b"\r\n\r\n" + BYE + b"\r\n"
    cuts = [4, 6, 10, 10 + len(INVITE), 14 + len(INVITE)]          # ping, pong, ping, INVITE, ping, BYE + pong
    framer = SipStreamFramer()
    messages, anomalies = feed(split(stream, cuts), framer)
    assert messages == [(4, INVITE), (6, BYE)] and anomalies == [] and framer.synced


def test_b_keepalives_alone_are_not_a_start_line():
    framer = SipStreamFramer()
    messages, anomalies = feed(split(b"\r\n\r\n" * 3, [4, 8]), framer)
    assert messages == [] and anomalies == [] and not framer.synced


# ---- (c) a capture begun in the middle of a connection -------------------------------------------

def test_c_first_segment_is_the_end_of_a_body():
    tail = INVITE[-30:]
    messages, anomalies = feed(split(tail + RINGING + BYE, [len(tail), len(tail) + len(RINGING)]))
    assert messages == [(2, RINGING), (3, BYE)]
    assert anomalies == [(2, "sip.resync_skipped_bytes",
                          f"30 bytes skipped before a SIP start line, starting {tail[:16]!r}")]


def test_c_first_segments_are_header_lines_then_a_body():
    tail = INVITE[INVITE.index(b"Via:"):]                   # headers (a Via holds "SIP/2.0/TCP"), then the SDP
    stream = tail + BYE
    messages, anomalies = feed(split(stream, [50, 120, len(tail)]))
    assert messages == [(4, BYE)]
    assert [(f, n, skipped(d)) for f, n, d in anomalies] == [(4, "sip.resync_skipped_bytes", len(tail))]


def test_c_status_line_at_the_first_byte_is_recovered():
    messages, anomalies = feed(split(RINGING + BYE, [len(RINGING)]))
    assert messages == [(1, RINGING), (2, BYE)] and anomalies == []


# ---- (d) junk after a message inside a segment --------------------------------------------------

def test_d_junk_between_two_messages_of_one_segment():
    junk = b"junk junk\r\n"
    messages, anomalies = feed([segment(INVITE + junk + BYE, 1000, 7)])
    assert messages == [(7, INVITE), (7, BYE)]
    assert anomalies == [(7, "sip.resync_skipped_bytes",
                          "11 bytes skipped before a SIP start line, starting b'junk junk\\r\\n'")]


def test_d_binary_junk_split_over_segments_is_one_run():
    junk = b"\x00\xff\x1b[2J garbage\r\n\x00\r\n"
    stream = INVITE + junk + BYE
    messages, anomalies = feed(split(stream, [len(INVITE) + 3, len(INVITE) + 9]))
    assert messages == [(1, INVITE), (3, BYE)]
    assert [(f, n, skipped(d)) for f, n, d in anomalies] == [(3, "sip.resync_skipped_bytes", len(junk))]
    assert "\\x1b" in anomalies[0][2] and "\x1b" not in anomalies[0][2]        # quoted, never raw


def test_d_junk_glued_to_a_start_line_is_skipped_up_to_the_method():
    messages, anomalies = feed([segment(INVITE + b"\x01\x02 BYE sip:b@x SIP/2.0" + BYE[BYE.index(b"\r\n"):], 1, 1)])
    assert [m[1][:4] for m in messages] == [b"INVI", b"BYE "]
    assert [(n, skipped(d)) for _, n, d in anomalies] == [("sip.resync_skipped_bytes", 3)]


def test_d_junk_with_no_start_line_after_it_is_reported_when_the_connection_ends():
    fin = segment(b"", 1000 + len(INVITE) + 6, 3, TCP_FIN | 0x10)
    messages, anomalies = feed([segment(INVITE + b"junk\r\n", 1000, 2), fin], end=False)
    assert messages == [(2, INVITE)]
    assert anomalies == [(3, "sip.resync_skipped_bytes",
                          "6 bytes skipped, starting b'junk\\r\\n'; no SIP start line followed (connection closed)")]


# ---- not SIP at all on a SIP port: bounded ----------------------------------------------------

def test_a_short_non_sip_stream_is_reported_at_the_end_of_the_capture():
    http = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    framer = SipStreamFramer()
    messages, anomalies = feed([segment(http, 1, 4)], framer)
    assert messages == [] and not framer.synced and not framer.abandoned
    assert anomalies == [(4, "sip.not_sip_on_sip_port",
                          f"{len(http)} bytes on a TCP connection to or from a SIP port, starting "
                          f"{http[:16]!r}, held no SIP start line (end of the capture)")]


def test_a_long_non_sip_stream_is_given_up_once():
    line = b"x" * 99 + b"\n"
    framer = SipStreamFramer()
    segments = [segment(line * 14, 1 + i * 1400, i + 1) for i in range(60)]       # 84,000 bytes
    messages, anomalies = feed(segments + [segment(BYE, 1 + 60 * 1400, 61)], framer)
    given_up = (MAX_UNSYNCED_BYTES + 1399) // 1400            # the segment that reached the limit
    assert messages == [] and framer.abandoned
    assert anomalies == [(given_up, "sip.not_sip_on_sip_port",
                          f"{given_up * 1400} bytes on a TCP connection to or from a SIP port, starting "
                          f"{(b'x' * 16)!r}, held no SIP start line (no longer read as SIP)")]


# ---- any segmentation, the same result ---------------------------------------------------------

def test_any_segmentation_gives_the_same_messages_and_skipped_bytes():
    junk = b"\x00\x16\x03\x01 not sip\r\nmore\r\n"
    stream = INVITE + b"\r\n\r\n" + RINGING + junk + BYE + b"\r\n" + INVITE
    # a capture may begin anywhere but inside a start line (see test_c_...: the framer cannot tell "ITE
    # sip:..." from a Request-Line, nor can tshark)
    starts = [m.start() for m in re.finditer(rb"INVITE sip|SIP/2.0 180|BYE sip", stream)]
    begins = [b for b in range(len(stream)) if not any(s < b < s + 23 for s in starts)]
    rng = random.Random(5626)
    for _ in range(300):
        begin = rng.choice(begins)
        data = stream[begin:]
        whole, whole_notes = feed([segment(data, 1, 1)])
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, min(12, len(data) - 1))))
        parts, part_notes = feed(split(data, cuts))
        assert [m for _, m in parts] == [m for _, m in whole], (begin, cuts)
        assert [(n, skipped(d)) for _, n, d in part_notes] == [(n, skipped(d)) for _, n, d in whole_notes], \
            (begin, cuts)


# ---- the probe outside the SIP ports ----------------------------------------------------------

def verdicts(probe: SipStreamProbe, segments: list[tuple[int, bytes]]) -> list[str]:
    meta = segment(b"", 0, 1).meta
    return [probe.check(meta, seq, payload)[0] for seq, payload in segments]


def test_probe_recognises_a_segment_that_starts_with_a_start_line():
    assert verdicts(SipStreamProbe(), [(1, b"\r\n\r\n"), (5, INVITE)]) == ["maybe", "sip"]


def test_probe_does_not_read_the_end_of_a_line_as_a_start_line():
    # "ITE sip:b@x SIP/2.0" continues "INV"; the BYE follows a segment that ended a line
    segments = [(1, b"INV"), (4, INVITE[3:]), (1 + len(INVITE), BYE)]
    assert verdicts(SipStreamProbe(), segments) == ["maybe", "maybe", "sip"]


def test_probe_trusts_a_segment_after_a_hole():
    assert verdicts(SipStreamProbe(), [(1, b"binary \x00 data"), (5000, BYE)]) == ["maybe", "sip"]


def test_probe_gives_up_silently_on_a_direction_without_sip():
    probe = SipStreamProbe()
    body = b"GET / HTTP/1.1\r\n" + b"x" * 1000
    keepalives = [(0, b"\r\n\r\n")] * 50                      # keep-alives are not counted
    seen = verdicts(probe, keepalives + [(i * 2000, body) for i in range(PROBE_SEGMENTS)])
    assert seen == ["maybe"] * (50 + PROBE_SEGMENTS - 1) + ["other"]


def test_probe_gives_up_with_an_anomaly_when_sip_was_inside_other_framing():
    probe = SipStreamProbe()
    framed = b"\x81\x7e\x01\x20" + RINGING                        # an RFC 7118 WebSocket frame carrying SIP
    meta = segment(b"", 0, 9).meta
    found = [probe.check(meta, i * 2000, framed) for i in range(PROBE_SEGMENTS)]
    assert [v for v, _ in found] == ["maybe"] * (PROBE_SEGMENTS - 1) + ["other"]
    note = found[-1][1]
    assert (note.name, note.frame, note.detail) == (
        "sip.probe_gave_up", 9, f"{PROBE_SEGMENTS} TCP segments probed, {PROBE_SEGMENTS} holding 'SIP/2.0' but "
        "none beginning with a SIP start line: no longer probed")
