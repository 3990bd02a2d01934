"""TCP reassembly: real SIP-over-TCP captures and generated reordering, loss and table limits."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from dissectors.net import Datagram, NetworkDecoder
from dissectors.tcp import ANOMALIES, Splitter, TcpReassembler
from voipwatch.capture import read_capture
from voipwatch.records import Anomaly, PacketMeta

SYN, FIN, RST, ACK, PSH = 0x02, 0x01, 0x04, 0x10, 0x08


def content_length_framer(buf: bytes) -> tuple[list[bytes], int]:
    """Minimal SIP framing for the tests (RFC 3261 §18.3): headers, blank line, Content-Length body."""
    messages, pos = [], 0
    while True:
        while buf.startswith(b"\r\n", pos):                 # keep-alive CRLFs between messages
            pos += 2
        head_end = buf.find(b"\r\n\r\n", pos)
        if head_end < 0:
            return messages, pos
        length = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d+)", buf[pos:head_end + 2])
        end = head_end + 4 + (int(length.group(1)) if length else 0)
        if end > len(buf):
            return messages, pos
        messages.append(buf[pos:end])
        pos = end


# Stateless, so one instance may serve every direction.
FRAMER = Splitter(content_length_framer)


def sip(first_line: str, body: bytes = b"") -> bytes:
    return (f"{first_line}\r\nCall-ID: abc\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def seg(payload: bytes, seq: int, flags: int = ACK | PSH, n: int = 1, ts: float | None = None,
        src: str = "10.0.0.1", sport: int = 40000, dst: str = "10.0.0.2", dport: int = 5060) -> Datagram:
    meta = PacketMeta(float(n) if ts is None else ts, n, (), src, sport, dst, dport, "tcp")
    return Datagram(meta, payload, tcp_seq=seq, tcp_flags=flags)


def feed_all(reassembler: TcpReassembler, segments: list[Datagram]):
    out, anomalies = [], []
    for s in segments:
        messages, found = reassembler.feed(s, FRAMER)
        out += [(meta.frame, m) for meta, m in messages]
        anomalies += found
    assert {a.name for a in anomalies} <= ANOMALIES.keys()
    return out, anomalies


def sip_over_tcp(path: Path):
    decoder, reassembler = NetworkDecoder(), TcpReassembler()
    messages, anomalies = [], []
    for f in read_capture(str(path)):
        result = decoder.decode(f)
        if type(result) is Datagram and result.meta.transport == "tcp":
            found, bad = reassembler.feed(result, FRAMER)
            messages += found
            anomalies += bad
    return messages, anomalies


def tshark_sip(tshark: str, path: Path) -> list[tuple[int, str]]:
    out = subprocess.run([tshark, "-r", str(path), "-Y", "sip", "-T", "fields", "-e", "frame.number",
                          "-e", "sip.Request-Line", "-e", "sip.Status-Line"],
                         capture_output=True, text=True, check=True).stdout
    return [(int(n), req or status) for n, req, status in (line.split("\t") for line in out.splitlines())]


# --- real captures --------------------------------------------------------------------------------

@pytest.mark.parametrize("rel", [
    "suricata-verify/sip-body-large/sip-body-large.pcap", "sipnab/sip-over-tcp.pcap",
    "suricata-verify/sip-tcp-method/sip-tcp.pcap", "suricata-verify/sip-tcp-pattern-matching/sip.pcap",
    "sngrep/ipip.pcap",
])
@pytest.mark.peer
def test_sip_over_tcp_matches_tshark(public_captures: Path, tshark: str, rel: str) -> None:
    path = public_captures / rel
    messages, anomalies = sip_over_tcp(path)
    assert anomalies == []
    got = [(meta.frame, m.split(b"\r\n", 1)[0].decode()) for meta, m in messages]
    assert got == tshark_sip(tshark, path)


def test_large_body_over_many_segments(public_captures: Path) -> None:
    messages, _ = sip_over_tcp(public_captures / "suricata-verify/sip-body-large/sip-body-large.pcap")
    (meta, invite), (_, trying) = messages
    head, body = invite.split(b"\r\n\r\n", 1)
    assert int(re.search(rb"Content-Length: (\d+)", head).group(1)) == len(body) > 65000
    assert meta.frame == 9 and meta.dport == 5060 and meta.transport == "tcp"   # the segment completing it
    assert trying.startswith(b"SIP/2.0 100 Trying")


# --- generated ------------------------------------------------------------------------------------

def test_several_messages_in_one_segment_and_one_split_over_three() -> None:
    a, b, c = sip("OPTIONS sip:a SIP/2.0"), sip("OPTIONS sip:b SIP/2.0"), sip("INVITE sip:c SIP/2.0", b"v=0\r\n" * 50)
    stream = a + b + c
    r = TcpReassembler()
    out, bad = feed_all(r, [seg(b"", 99, SYN, n=1), seg(stream[:len(a) + len(b) + 10], 100, n=2),
                            seg(stream[len(a) + len(b) + 10:len(a) + len(b) + 100], 100 + len(a) + len(b) + 10, n=3),
                            seg(stream[len(a) + len(b) + 100:], 100 + len(a) + len(b) + 100, n=4)])
    assert out == [(2, a), (2, b), (4, c)] and bad == []


def test_out_of_order_and_retransmitted_segments() -> None:
    msg = sip("INVITE sip:x SIP/2.0", b"m=audio 4000 RTP/AVP 0\r\n" * 20)
    parts = [msg[i:i + 100] for i in range(0, len(msg), 100)]
    seqs = [1000 + i * 100 for i in range(len(parts))]
    order = [0, 2, 3, 2, 1] + list(range(4, len(parts))) + [1]     # reordering, a duplicate, a late copy
    r = TcpReassembler()
    out, bad = feed_all(r, [seg(parts[i], seqs[i], n=k + 1) for k, i in enumerate(order)])
    assert [m for _, m in out] == [msg] and bad == []
    # a retransmission overlapping old and new bytes contributes only the new ones
    r2 = TcpReassembler()
    out, _ = feed_all(r2, [seg(msg[:150], 1000, n=1), seg(msg[100:], 1100, n=2)])
    assert out == [(2, msg)]


def test_missing_syn_starts_at_the_first_byte_seen() -> None:
    msg = sip("REGISTER sip:x SIP/2.0")
    out, bad = feed_all(TcpReassembler(), [seg(b"", 5, ACK, n=1), seg(msg, 123456, n=2)])
    assert out == [(2, msg)] and bad == []


def test_syn_data_and_retransmitted_syn() -> None:
    msg = sip("OPTIONS sip:x SIP/2.0")
    out, bad = feed_all(TcpReassembler(), [seg(msg[:10], 500, SYN, n=1), seg(msg[:10], 500, SYN, n=2),
                                           seg(msg[10:], 511, n=3)])
    assert out == [(3, msg)] and bad == []


def test_sequence_wraparound() -> None:
    msg = sip("INVITE sip:wrap SIP/2.0", bytes(300))
    start = (1 << 32) - 150
    pieces = [(msg[i:i + 100], (start + i) % (1 << 32)) for i in range(0, len(msg), 100)]
    order = [0, 2, 1] + list(range(3, len(pieces)))
    out, bad = feed_all(TcpReassembler(), [seg(pieces[i][0], pieces[i][1], n=k + 1) for k, i in enumerate(order)])
    assert [m for _, m in out] == [msg] and bad == []


def test_gap_that_never_fills_is_skipped_after_the_time_bound() -> None:
    first, lost, after = sip("OPTIONS sip:1 SIP/2.0"), sip("OPTIONS sip:2 SIP/2.0"), sip("OPTIONS sip:3 SIP/2.0")
    r = TcpReassembler(gap_s=2.0)
    base = 1000
    out, bad = feed_all(r, [seg(first + lost[:20], base, n=1, ts=0.0),
                            seg(after, base + len(first) + len(lost), n=2, ts=0.5),
                            seg(b"", base, ACK, n=3, ts=1.0)])
    assert out == [(1, first)] and bad == []
    out, bad = feed_all(r, [seg(b"\r\n", base + len(first) + len(lost) + len(after), n=4, ts=3.0)])
    assert out == [(4, after)]
    (gap,) = bad
    assert (gap.layer, gap.name, gap.frame) == ("tcp", "tcp.gap", 4)
    assert f"{len(lost) - 20} bytes never seen" in gap.detail and "dropping 20 unframed" in gap.detail


def test_gap_is_skipped_when_held_bytes_exceed_the_buffer() -> None:
    r = TcpReassembler(max_buffer_bytes=150)   # three held 60-byte messages pass it
    msgs = [sip(f"OPTIONS sip:{i} SIP/2.0") for i in range(6)]
    seq, segments = 0, []
    for i, m in enumerate(msgs):
        if i != 1:                                                   # message 1 is lost for good
            segments.append(seg(m, seq, n=i + 1, ts=0.0))
        seq += len(m)
    out, bad = feed_all(r, segments)
    assert [m for _, m in out] == [msgs[0]] + msgs[2:]
    assert [a.name for a in bad] == ["tcp.gap"]


def test_unframeable_buffer_overflows() -> None:
    r = TcpReassembler(max_buffer_bytes=100)
    out, bad = feed_all(r, [seg(b"INVITE sip:x SIP/2.0\r\nContent-Length: 5000\r\n\r\n" + bytes(100), 1)])
    assert out == [] and [a.name for a in bad] == ["tcp.buffer_overflow"]


def test_fin_and_rst_clear_state() -> None:
    r = TcpReassembler()
    partial = b"INVITE sip:x SIP/2.0\r\nContent-Len"
    _, bad = feed_all(r, [seg(partial, 1, n=1), seg(b"", 1 + len(partial), FIN | ACK, n=2)])
    assert len(r) == 0 and [a.name for a in bad] == ["tcp.unframed_bytes"]
    msg = sip("BYE sip:x SIP/2.0")
    out, bad = feed_all(r, [seg(msg, 1, FIN | ACK | PSH, n=3)])                      # data with the FIN
    assert out == [(3, msg)] and bad == [] and len(r) == 0
    feed_all(r, [seg(partial, 1, n=4), seg(partial, 7, n=5, src="10.0.0.2", sport=5060, dst="10.0.0.1", dport=40000)])
    assert len(r) == 2
    _, bad = feed_all(r, [seg(b"", 0, RST, n=6, src="10.0.0.2", sport=5060, dst="10.0.0.1", dport=40000)])
    assert len(r) == 0 and len(bad) == 2                                             # both directions


def test_new_syn_on_the_same_ports_restarts_the_direction() -> None:
    r = TcpReassembler()
    msg = sip("OPTIONS sip:x SIP/2.0")
    out, bad = feed_all(r, [seg(b"", 10, SYN, n=1), seg(b"OPTIONS", 11, n=2), seg(b"", 9000, SYN, n=3),
                            seg(msg, 9001, n=4)])
    assert out == [(4, msg)] and [a.name for a in bad] == ["tcp.unframed_bytes"]


def test_flow_table_cap_evicts_the_oldest() -> None:
    r = TcpReassembler(max_flows=2)
    out, bad = feed_all(r, [seg(b"A", 1, n=1, sport=1), seg(b"B", 1, n=2, sport=2), seg(b"A", 2, n=3, sport=1),
                            seg(b"C", 1, n=4, sport=3)])
    assert len(r) == 2 and [a.name for a in bad] == ["tcp.flow_table_full"]
    assert "10.0.0.1:2 -> 10.0.0.2:5060" in bad[0].detail                            # least recently active


def test_expire_uses_capture_time_and_reports_pending_bytes() -> None:
    r = TcpReassembler(idle_s=60.0)
    feed_all(r, [seg(b"INVITE", 1, n=1, ts=100.0, sport=1), seg(sip("BYE sip:x SIP/2.0"), 1, n=2, ts=150.0, sport=2)])
    assert r.expire(160.0) == [] and len(r) == 2
    (gone,) = r.expire(161.0)
    assert isinstance(gone, Anomaly) and (gone.name, gone.frame, gone.ts) == ("tcp.unframed_bytes", 1, 161.0)
    assert r.expire(211.0) == [] and len(r) == 0                                     # nothing was pending


def test_bare_acks_hold_no_state() -> None:
    r = TcpReassembler()
    feed_all(r, [seg(b"", 1, ACK, n=i, sport=i) for i in range(1, 50)])
    assert len(r) == 0
