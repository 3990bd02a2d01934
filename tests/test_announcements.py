"""The media-expectation lookup in its two forms gives the same answers.

MediaExpectations.lookup (the streaming table, asked packet by packet as frames come) and its
vectorised twin batch.announcements.AnnouncementIndex (every announcement of the capture at once)
both apply sessions.endpoints_in_lookup_order and sessions.binding_holds. Random SDP announcements
(calls reusing ports, a=rtcp, RTCP on port + 1, held and non-IPv4 addresses, addresses not written
as packets write them) and random IPv4 packets between them are looked up both ways.
"""
from __future__ import annotations

import random

import numpy as np
import pytest

from dissectors.sip import parse_sip
from voipwatch.batch.announcements import AnnouncementIndex
from voipwatch.records import PacketMeta
from voipwatch.sessions import MediaExpectations, binding_holds, endpoints_in_lookup_order

ADDRESSES = ["10.0.0.1", "10.0.0.2", "192.0.2.7", "192.0.2.8", "2001:db8::1", "2001:db8::2"]
PORTS = [4000, 4001, 4002, 4003, 5004, 5005]


def invite(rng: random.Random, frame: int, ts: float) -> bytes:
    """An INVITE whose SDP announces one or two m= lines on the addresses and ports above."""
    lines = []
    for _ in range(rng.choice((1, 2))):
        port = rng.choice(PORTS)
        lines.append(f"m=audio {port} RTP/AVP 0 8\r\n")
        if rng.random() < 0.3:
            lines.append(f"a=rtcp:{rng.choice(PORTS)}\r\n")          # RFC 3605: RTCP not on port + 1
    # and addresses no packet's text equals: the tables match the text itself
    connection = rng.choice(ADDRESSES + ["0.0.0.0", "010.0.0.1", "10.0.0.01", "2001:DB8::1", "2001:db8:0::2"])
    family = "IP6" if ":" in connection else "IP4"
    body = f"v=0\r\no=- 1 1 IN {family} {connection}\r\ns=-\r\nc=IN {family} {connection}\r\nt=0 0\r\n" + "".join(lines)
    return (f"INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK{frame}\r\n"
            f"From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: call-{frame}\r\n"
            f"CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()


@pytest.mark.parametrize("seed", range(8))
def test_streaming_table_and_vectorised_index_agree(seed):
    rng = random.Random(seed)
    max_age_s = rng.choice((0.5, 3.0, 21600.0))
    log: list = []
    table = MediaExpectations(100_000, max_age_s, log=log)
    packets, expected = [], []
    ts = 1_700_000_000.0
    for frame in range(1, 3001):
        ts += rng.choice((0.0, 0.001, 0.02, 0.3))
        if rng.random() < 0.05:
            meta = PacketMeta(ts, frame, (), "10.0.0.9", 5060, "10.0.0.10", 5060, "udp")
            msg, _ = parse_sip(meta, invite(rng, frame, ts))
            table.announce(msg)
            continue
        if rng.random() < 0.01:
            table.expire(ts)                           # the Analyzer's ticks forget stale bindings
        src, dst = rng.sample(ADDRESSES, 2)
        sport, dport = rng.choice(PORTS), rng.choice(PORTS)
        packets.append((src, sport, dst, dport, frame, ts))
        expected.append(table.lookup(src, sport, dst, dport, frame, ts))
    found = sum(e is not None for e in expected)
    assert len(log) > 100 and 20 < found < len(expected) - 20, (len(log), found)

    flows = sorted({p[:4] for p in packets})
    flow_of = {f: i for i, f in enumerate(flows)}
    index = AnnouncementIndex(log, max_age_s)
    src_keys = index.keys([(s, sp) for s, sp, _, _ in flows])
    dst_keys = index.keys([(d, dp) for _, _, d, dp in flows])
    flow = np.asarray([flow_of[p[:4]] for p in packets], dtype=np.int64)
    frames = np.asarray([p[4] for p in packets], dtype=np.int64)
    times = np.asarray([p[5] for p in packets], dtype=np.float64)

    def endpoints(found: np.ndarray) -> list:
        return [None if i < 0 else log[i][1] for i in found.tolist()]

    assert all(a is b for a, b in zip(endpoints(index.lookup(src_keys, dst_keys, flow, frames, times)), expected))
    # lookup_block: blocks of consecutive packets, each with its own flow table, as batch.rtp classifies them
    for start in range(0, len(packets), 97):
        rows = np.arange(start, min(start + 97, len(packets)))
        block_flows, local = np.unique(flow[rows], return_inverse=True)
        found = index.lookup_block(src_keys, dst_keys, block_flows, local, frames[rows], times[rows])
        assert all(a is b for a, b in zip(endpoints(found), expected[start:start + 97]))


def test_the_rule_itself():
    assert endpoints_in_lookup_order(("10.0.0.1", 4000), ("10.0.0.2", 5004)) == (("10.0.0.2", 5004), ("10.0.0.1", 4000))
    assert binding_holds(10, 100.0, 11, 160.0, 60.0)
    assert not binding_holds(10, 100.0, 10, 100.0, 60.0)            # not in the frame that set it up
    assert not binding_holds(10, 100.0, 11, 160.5, 60.0)            # too old
    holds = binding_holds(np.array([10, 10, 10]), np.array([100.0] * 3), np.array([11, 10, 11]),
                          np.array([160.0, 100.0, 160.5]), 60.0)
    assert holds.tolist() == [True, False, False]


def test_only_addresses_written_as_packets_write_them_have_a_key():
    """The streaming table matches the announced text itself: "010.0.0.1" or "2001:DB8::2" never equals
    a packet's address (dissectors.ip.ntop), so the index gives them no key a flow could have."""
    log: list = []
    table = MediaExpectations(100, 60.0, log=log)
    for frame, connection in enumerate(["10.0.0.1", "010.0.0.2", "2001:db8::1", "2001:DB8::2"], start=1):
        family = "IP6" if ":" in connection else "IP4"
        body = f"v=0\r\nc=IN {family} {connection}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
        message = (f"INVITE sip:b@example.com SIP/2.0\r\nCall-ID: call-{frame}\r\nCSeq: 1 INVITE\r\n"
                   f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}")
        meta = PacketMeta(1.0, frame, (), "10.0.0.9", 5060, "10.0.0.10", 5060, "udp")
        table.announce(parse_sip(meta, message.encode())[0])
    index = AnnouncementIndex(log, 60.0)
    assert len(index.endpoints) == 8                 # each announcement's RTP and RTCP port
    keys = index.keys([("10.0.0.1", 4000), ("10.0.0.1", 4001), ("2001:db8::1", 4000), ("10.0.0.1", 4002),
                       ("10.0.0.2", 4000), ("2001:db8::2", 4000)])
    assert len(set(keys[:3].tolist())) == 3 and (keys[:3] >= 0).all()
    assert keys[3:].tolist() == [-1, -1, -1]
