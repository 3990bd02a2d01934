"""RTP stream statistics: hand-computed cases, tracker/table parity, and tshark 4.0 `-z rtp,streams` as peer."""
from __future__ import annotations

import dataclasses
import random
import re
import socket
import struct
import subprocess

import dpkt
import numpy as np
import pandas as pd
import pytest

from dissectors import rtp
from voipwatch.records import PacketMeta, RtpPacket, RtpStream
from voipwatch.batch.stream_stats import streams_from_table
from voipwatch.rtpstats import RtpStreamTracker, analysis_clock_rate

T0 = 1700000000.0
MS = 1e-3      # epoch seconds as doubles are exact to ~0.24 us: compare milliseconds to 1 us
FLOATS = ("jitter_ms_mean", "jitter_ms_max", "max_delta_ms")


def packet(ms: float, seq: int, ts: int, pt: int = 0, marker: bool = False, frame: int = 0, ssrc: int = 0x1234,
           src: str = "10.0.0.1", vlan: tuple[int, ...] = (), negotiated: bool = True, size: int = 160) -> RtpPacket:
    meta = PacketMeta(ts=T0 + ms / 1000, frame=frame, vlan=vlan, src=src, sport=4000, dst="10.0.0.2", dport=5000,
                      transport="udp")
    return RtpPacket(pkt=meta, ssrc=ssrc, seq=seq & 0xFFFF, rtp_ts=ts & 0xFFFFFFFF, pt=pt, marker=marker,
                     payload_len=size, negotiated=negotiated)


def table_of(packets: list[RtpPacket], rates: list[int | None], codecs: list[str | None],
             calls: list[str | None] | None = None) -> pd.DataFrame:
    return pd.DataFrame({"call_id": calls or [None] * len(packets),
        "ts": [p.pkt.ts for p in packets], "frame": [p.pkt.frame for p in packets],
        "vlan": [p.pkt.vlan for p in packets], "src": [p.pkt.src for p in packets],
        "sport": [p.pkt.sport for p in packets], "dst": [p.pkt.dst for p in packets],
        "dport": [p.pkt.dport for p in packets], "ssrc": [p.ssrc for p in packets],
        "seq": [p.seq for p in packets], "rtp_ts": [p.rtp_ts for p in packets], "pt": [p.pt for p in packets],
        "marker": [p.marker for p in packets], "payload_len": [p.payload_len for p in packets],
        "negotiated": [p.negotiated for p in packets], "clock_rate_hz": [r or 0 for r in rates], "codec": codecs})


def both(packets: list[RtpPacket], rates=None, codecs=None, idle_s: float = 60.0, calls=None) -> list[RtpStream]:
    """Run the tracker (expiring before each packet, as the pipeline does) and the table; they must agree."""
    packets = [dataclasses.replace(p, pkt=dataclasses.replace(p.pkt, frame=i + 1)) if p.pkt.frame == 0 else p
               for i, p in enumerate(packets)]
    rates = rates or [rtp.clock_rate(p.pt) for p in packets]
    codecs = codecs or [rtp.codec_name(p.pt) for p in packets]
    calls = calls or [None] * len(packets)
    tracker = RtpStreamTracker(idle_s=idle_s)
    incremental = []
    for p, rate, codec, call in zip(packets, rates, codecs, calls):
        incremental += tracker.expire(p.pkt.ts)
        tracker.add(p, rate, codec, call)
    incremental = sorted(incremental + tracker.finish(), key=lambda s: s.first_frame)
    vectorised = streams_from_table(table_of(packets, rates, codecs, calls), idle_s=idle_s)
    assert_same(incremental, vectorised)
    return incremental


def assert_same(a: list[RtpStream], b: list[RtpStream]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert dataclasses.replace(x, **{f: 0.0 for f in FLOATS}) == dataclasses.replace(y, **{f: 0.0 for f in FLOATS})
        for f in FLOATS:
            assert getattr(x, f) == pytest.approx(getattr(y, f), rel=1e-9, abs=1e-12)


def test_clock_rate_tshark_uses():
    assert analysis_clock_rate(0, None, None) == 8000
    assert analysis_clock_rate(9, 16000, "G722") == 8000        # static types: tshark's table, not SDP
    assert analysis_clock_rate(2, None, None) == 8000           # G.721, kept from RFC 1890
    assert analysis_clock_rate(11, None, None) == 44100 and analysis_clock_rate(20, None, None) is None
    assert analysis_clock_rate(96, 48000, "opus") == 48000
    assert analysis_clock_rate(101, 8000, "telephone-event") is None   # RFC 4733 §2.2.1
    assert analysis_clock_rate(101, 8000, "Telephone-Event") is None
    assert analysis_clock_rate(97, None, None) is None          # dynamic without rtpmap
    assert analysis_clock_rate(97, 0, "AMR-WB") == 16000 and analysis_clock_rate(97, 0, "amr") == 8000
    assert analysis_clock_rate(97, 500, "x") is None            # below 1 kHz tshark would divide by zero


def test_clean_stream():
    s, = both([packet(20 * i, 100 + i, 160 * i) for i in range(50)])
    assert (s.packets, s.expected, s.lost, s.duplicates, s.out_of_order) == (50, 50, 0, 0, 0)
    assert s.jitter_ms_max == pytest.approx(0, abs=MS) and s.jitter_ms_mean == pytest.approx(0, abs=MS)
    assert s.max_delta_ms == pytest.approx(20, abs=MS)
    assert (s.codec, s.payload_type, s.payload_types, s.bytes, s.first_frame) == ("PCMU", 0, (0,), 8000, 1)
    assert s.call_id is None and s.negotiated and s.first_ts == T0 and s.last_ts == pytest.approx(T0 + 0.98)


def test_jitter_by_hand():
    # arrivals 0, 20, 45, 60 ms, RTP steps of 20 ms: D = 0, 5, 5 -> J = 0, 5/16, (15*5/16 + 5)/16
    s, = both([packet(ms, i, 160 * i) for i, ms in enumerate((0, 20, 45, 60))])
    j2, j3 = 5 / 16, (15 * 5 / 16 + 5) / 16
    assert s.jitter_ms_max == pytest.approx(j3, abs=MS) and s.max_delta_ms == pytest.approx(25, abs=MS)
    # mean = (mean * (n - 1) + J) / n, n = packets before this one: 0, then j2 / 2, then (j2 + j3) / 3
    assert s.jitter_ms_mean == pytest.approx((j2 + j3) / 3, abs=MS)


def test_clock_rate_integer_division():
    # PT 11 (L16, 44100 Hz): tshark converts with 44100 // 1000 = 44 ticks per ms.
    s, = both([packet(20 * i, i, 882 * i, pt=11) for i in range(3)])
    d = abs(20 - 882 / 44)
    assert s.jitter_ms_max == pytest.approx((15 * d / 16 + d) / 16, abs=MS)


def test_sequence_wrap_duplicates_and_reordering():
    wrap, = both([packet(20 * i, 65534 + i, 160 * i) for i in range(4)])
    assert (wrap.expected, wrap.lost) == (4, 0)
    dup, = both([packet(20 * i, s, 160 * i) for i, s in enumerate((1, 2, 2, 3))])
    assert (dup.packets, dup.expected, dup.lost, dup.duplicates, dup.out_of_order) == (4, 3, -1, 1, 0)
    late, = both([packet(20 * i, s, 160 * (s - 1)) for i, s in enumerate((1, 3, 2, 4))])
    assert (late.lost, late.duplicates, late.out_of_order) == (0, 0, 1)
    loss, = both([packet(20 * i, s, 160 * s) for i, s in enumerate((1, 2, 5, 6))])
    assert (loss.expected, loss.lost) == (6, 2)


def test_marker_comfort_noise_and_events_are_not_regular():
    pkts = [packet(20 * i, i, 160 * i) for i in range(5)]
    pkts.append(packet(500, 5, 800, marker=True))                          # talkspurt start after silence
    pkts += [packet(520, 6, 960, pt=13), packet(900, 7, 1120)]             # CN, then a packet following CN
    pkts.append(packet(920, 8, 1280, pt=101))                              # telephone-event: no jitter
    codecs = [rtp.codec_name(p.pt) for p in pkts[:-1]] + ["telephone-event"]
    s, = both(pkts, rates=[rtp.clock_rate(p.pt) for p in pkts[:-1]] + [8000], codecs=codecs)
    assert s.max_delta_ms == pytest.approx(20, abs=MS) and s.payload_types == (0, 13, 101)
    assert s.jitter_ms_max == pytest.approx(0, abs=MS) and s.codec == "PCMU"


def test_timestamp_behind_the_first_is_out_of_time_sequence():
    pkts = [packet(0, 1, 1000), packet(20, 2, 1160), packet(40, 3, 100), packet(60, 4, 1480)]
    s, = both(pkts)
    assert s.max_delta_ms == pytest.approx(40, abs=MS) and s.lost == 0


def test_segments_by_idle_time_and_keys():
    pkts = [packet(20 * i, i, 160 * i) for i in range(3)]                               # frames 1, 2, 4
    pkts += [packet(30 + 20 * i, 50 + i, 160 * i, vlan=(10,)) for i in range(2)]         # frames 3, 5: VLAN 10
    pkts += [packet(100_000 + 20 * i, 3 + i, 480 + 160 * i) for i in range(3)]          # 100 s later: 6, 7, 8
    a, b, c = both(sorted(pkts, key=lambda p: p.pkt.ts), idle_s=60.0)
    assert (a.first_frame, a.packets, a.vlan, a.lost) == (1, 3, (), 0)
    assert (b.first_frame, b.packets, b.vlan) == (3, 2, (10,))
    assert (c.first_frame, c.packets, c.first_ts) == (6, 3, T0 + 100)


def test_tracker_expiry_and_overflow():
    tracker = RtpStreamTracker(idle_s=10.0, max_streams=2)
    tracker.add(packet(0, 1, 0, ssrc=1, frame=1), 8000)
    tracker.add(packet(5000, 1, 0, ssrc=2, frame=2), 8000)
    assert tracker.expire(T0 + 10.0) == [] and len(tracker) == 2
    expired = tracker.expire(T0 + 10.5)
    assert [s.ssrc for s in expired] == [1] and len(tracker) == 1
    tracker.add(packet(6000, 1, 0, ssrc=3, frame=3), 8000)
    tracker.add(packet(7000, 1, 0, ssrc=4, frame=4), 8000)               # evicts ssrc 2, least recently active
    assert tracker.overflows == 1 and [s.ssrc for s in tracker.expire(T0 + 7.0)] == [2]
    tracker.add(packet(30000, 2, 160, ssrc=3, frame=5), 8000)            # 24 s gap: a new segment
    assert [(s.ssrc, s.first_frame) for s in tracker.expire(T0 + 30.0)] == [(3, 3), (4, 4)]
    assert [(s.ssrc, s.first_frame) for s in tracker.finish()] == [(3, 5)] and len(tracker) == 0


def test_table_accepts_dicts_any_row_order_and_vlan_ids():
    pkts = [packet(20 * i, i, 160 * i, frame=i + 1, vlan=(7, 8)) for i in range(20)]
    reference = both(pkts)
    df = table_of(pkts, [8000] * 20, ["PCMU"] * 20).sample(frac=1.0, random_state=1)
    assert_same(streams_from_table(df), reference)
    columns = {name: df[name].to_numpy() for name in df.columns if name != "codec"}
    columns["vlan"] = np.zeros(20, dtype=np.int64)
    columns["clock_rate_hz"] = np.full(20, np.nan)                       # unknown rate: tshark's table for PT 0
    assert_same(streams_from_table(columns, vlans=[(7, 8)]), reference)
    assert streams_from_table(df.iloc[:0]) == []


def random_packets(seed: int) -> tuple[list[RtpPacket], list, list, list]:
    """Streams with losses, duplicates, reordering, marker bits, CN, events, timestamp jumps, idle gaps."""
    rng = random.Random(seed)
    out: list[tuple] = []
    for k in range(rng.randint(5, 15)):
        pt = rng.choice([0, 8, 9, 11, 16, 18, 26, 96])
        rate, codec = (48000, "opus") if pt == 96 else (rtp.clock_rate(pt), rtp.codec_name(pt))
        ms, seq, ts = rng.uniform(0, 1000), rng.choice([rng.randrange(65536), 65530]), rng.randrange(1 << 32)
        call = rng.choice([None, f"call-{k}@example.com"])
        for _ in range(rng.randint(1, 300)):
            r = rng.random()
            this_pt, this_rate, this_codec = ((13, 8000, "CN") if r < 0.03 else (101, 8000, "telephone-event")
                                              if r < 0.05 else (pt, rate, codec))
            pkt = packet(ms, seq, ts, pt=this_pt, marker=rng.random() < 0.03, ssrc=k, src=f"10.1.{k}.1")
            out.append((ms, pkt, this_rate, this_codec, call))
            seq += rng.choices([1, 2, 5, 0, -1, -3, 0xFF10, 40000], [90, 3, 2, 1, 1, 1, 1, 1])[0]
            ts += rng.choices([160, -480, 1 << 31, 0], [97, 1, 1, 1])[0]
            ms += rng.choices([20 + rng.gauss(0, 3), 90_000], [99, 1])[0]
            call = call if rng.random() < 0.99 else None         # a later packet's call does not matter
    out.sort(key=lambda item: item[0])
    pkts = [dataclasses.replace(item[1], pkt=dataclasses.replace(item[1].pkt, frame=i + 1))
            for i, item in enumerate(out)]
    return pkts, [item[2] for item in out], [item[3] for item in out], [item[4] for item in out]


@pytest.mark.parametrize("seed", range(12))
def test_tracker_and_table_agree(seed):
    pkts, rates, codecs, calls = random_packets(seed)
    streams = both(pkts, rates, codecs, idle_s=60.0, calls=calls)
    assert sum(s.packets for s in streams) == len(pkts)
    first_call = {p.pkt.frame: call for p, call in zip(pkts, calls)}
    assert all(s.call_id == first_call[s.first_frame] for s in streams)


def test_one_long_stream_among_many_short_ones():
    """Short streams make the vectorised jitter use narrow blocks: a long stream then carries over many."""
    rng = random.Random(5)
    pkts = [packet(20 * i + rng.gauss(0, 4), i, 160 * i) for i in range(3000)]
    starts = [rng.uniform(0, 60000) for _ in range(200)]
    pkts += [packet(ms + 20 * i, i, 160 * i, ssrc=100 + k) for k, ms in enumerate(starts) for i in range(2)]
    long_stream = [s for s in both(sorted(pkts, key=lambda p: p.pkt.ts)) if s.packets == 3000]
    assert len(long_stream) == 1 and long_stream[0].jitter_ms_max > 1


# -- tshark 4.0 as the peer -----------------------------------------------------------------------

STREAM_ROW = re.compile(
    r"^\s*(?P<start>[\d.]+)\s+(?P<end>[\d.]+)\s+(?P<src>\S+)\s+(?P<sport>\d+)\s+(?P<dst>\S+)\s+(?P<dport>\d+)\s+"
    r"(?P<ssrc>0x[0-9A-Fa-f]+)\s+(?P<payload>.+?)\s+(?P<packets>\d+)\s+(?P<lost>-?\d+)\s+\([-\d.]+%\)\s+"
    r"(?:-?[\d.]+\s+){2}(?P<max_delta>-?[\d.]+)\s+-?[\d.]+\s+(?P<mean_jitter>-?[\d.]+)\s+(?P<max_jitter>-?[\d.]+)"
    r"\s*X?\s*$")
RTPMAP = re.compile(r"rtpmap:(\d+) ([^/\s]+)/(\d+)")


def tshark_streams(tshark: str, path: str, heuristic: bool) -> dict[tuple, dict[str, float]]:
    """`tshark -q -z rtp,streams` (ui/cli/tap-rtp.c): (src, sport, dst, dport, ssrc) -> figures."""
    args = [tshark, "-n", "-q", "-r", path, "-z", "rtp,streams"]
    if heuristic:
        args += ["--enable-heuristic", "rtp_udp"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rows = {}
    for m in map(STREAM_ROW.match, out.splitlines()):
        if m:
            rows[(m["src"], int(m["sport"]), m["dst"], int(m["dport"]), int(m["ssrc"], 16))] = {
                k: float(m[k]) for k in ("start", "end", "packets", "lost", "max_delta", "mean_jitter", "max_jitter")}
    return rows


def tshark_packets(tshark: str, path: str, heuristic: bool) -> tuple[list[RtpPacket], list, list, float]:
    """Every RTP packet tshark decodes, parsed by dissectors.rtp from its UDP payload, with the rtpmap of
    the SDP that set its flow up (rtp.setup-frame) unless tshark shows it as an unmapped DynamicRTP-Type."""
    flags = ["--enable-heuristic", "rtp_udp"] if heuristic else []
    sdp = subprocess.run([tshark, "-n", "-r", path, *flags, "-Y", "sdp", "-T", "fields", "-E", "aggregator=\x1f",
                          "-E", "occurrence=a", "-e", "frame.number", "-e", "sdp.media_attr"],
                         capture_output=True, text=True, check=True).stdout
    rtpmaps = {}
    for line in sdp.splitlines():
        frame, _, attrs = line.partition("\t")
        rtpmaps[int(frame)] = {int(m[1]): (m[2], int(m[3])) for m in RTPMAP.finditer(attrs)}
    fields = ["frame.number", "frame.time_epoch", "ip.src", "ipv6.src", "udp.srcport", "ip.dst", "ipv6.dst",
              "udp.dstport", "rtp.setup-frame", "udp.payload", "_ws.col.Info"]
    args = [tshark, "-n", "-r", path, *flags, "-Y", "rtp.ssrc", "-T", "fields"]
    for name in fields:
        args += ["-e", name]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    first = subprocess.run([tshark, "-n", "-r", path, "-c", "1", "-T", "fields", "-e", "frame.time_epoch"],
                           capture_output=True, text=True, check=True).stdout
    pkts, rates, codecs = [], [], []
    for line in out.splitlines():
        frame, epoch, src4, src6, sport, dst4, dst6, dport, setup, payload, info = line.split("\t")
        meta = PacketMeta(ts=float(epoch), frame=int(frame), vlan=(), src=src4 or src6, sport=int(sport),
                          dst=dst4 or dst6, dport=int(dport), transport="udp")
        pkt = rtp.parse_rtp(meta, bytes.fromhex(payload), bool(setup))
        rtpmap = dict(rtpmaps.get(int(setup), {})) if setup else {}
        if f"PT=DynamicRTP-Type-{pkt.pt}," in info:
            rtpmap.pop(pkt.pt, None)
        pkts.append(pkt)
        rates.append(rtp.clock_rate(pkt.pt, rtpmap))
        codecs.append(rtp.codec_name(pkt.pt, rtpmap))
    return pkts, rates, codecs, float(first)


def assert_agree_with_tshark(tshark: str, path: str, heuristic: bool) -> int:
    pkts, rates, codecs, capture_start = tshark_packets(tshark, path, heuristic)
    ours = both(pkts, rates, codecs, idle_s=1e9)          # tshark neither segments nor keys by VLAN
    theirs = tshark_streams(tshark, path, heuristic)
    assert len(ours) == len(theirs)
    for s in ours:
        t = theirs[(s.src, s.sport, s.dst, s.dport, s.ssrc)]
        assert (s.packets, s.lost) == (t["packets"], t["lost"])
        for mine, key in ((s.max_delta_ms, "max_delta"), (s.jitter_ms_mean, "mean_jitter"),
                          (s.jitter_ms_max, "max_jitter")):
            assert abs(round(mine, 3) - t[key]) <= 0.0010001, (key, s)   # tshark prints %.3f
        assert abs(s.first_ts - capture_start - t["start"]) < 2e-6 and abs(s.last_ts - capture_start - t["end"]) < 2e-6
    return len(ours)


@pytest.mark.parametrize("capture,heuristic", [
    ("sipnab/sip-rtp-g711.pcap", False), ("rtp-pcap/sip-rtp-g722.pcap", False), ("rtp-pcap/sip-rtp-opus.pcap", False),
    ("rtp-pcap/sip-rtp-l16.pcap", False), ("rtp-pcap/sip-rtp-speex.pcap", False), ("sipnab/SIP_CALL_RTP_G711", False),
    ("voipshark/SIP-RTP-Normal_Call_two_parties.pcap", False), ("sipnab/rtp-protocol.pcap", False),
    ("snort3_demo/inspectors/sip/SIP_Eyebeam2Eyebeam_Video_Audio.pcap", False), ("sngrep/aaa.pcap", False),
    ("rtp-pcap/marseillaise-srtp.pcap", True), ("sipp/g711a.pcap", True), ("sipp/dtmf_2833_1.pcap", True),
    ("sipnab/SIP_CALL_RTP_G711", True), ("voipshark/SIP-over-TLS-RSA-SRTP_Normal_Call_two_parties.pcap", True),
    ("ndpi/pcap/stun.pcap", True), ("ndpi/pcap/skinny.pcap", True),
])
@pytest.mark.peer
def test_agrees_with_tshark(capture, heuristic, public_captures, tshark):
    assert assert_agree_with_tshark(tshark, str(public_captures / capture), heuristic) > 0


def udp_frame(payload: bytes, src: str, sport: int, dst: str, dport: int) -> bytes:
    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=17, data=udp)
    ip.len = len(ip)
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip))


def write_edge_capture(path, seed: int) -> None:
    """Streams of static payload types (tshark's heuristic knows their clock) with every oddity at once."""
    rng = random.Random(seed)
    frames = []
    for k in range(24):
        pt = [0, 8, 9, 11, 16, 18, 3, 26, 10, 5, 6, 17][k % 12]
        seq, ts = rng.choice([rng.randrange(65536), 65535 - rng.randrange(20)]), rng.randrange(1 << 32)
        t, ssrc, rows = T0 + rng.random(), rng.randrange(1 << 32), []
        for _ in range(rng.randint(50, 400)):
            r = rng.random()
            rows.append([t, seq & 0xFFFF, ts & 0xFFFFFFFF, 13 if r < 0.03 else 101 if r < 0.05 else pt,
                         rng.random() < 0.03])
            seq += rng.choices([1, 3, 0, -1, -3, 0xFF10, 0x8000, 40000], [91, 3, 1, 1, 1, 1, 1, 1])[0]
            ts += rng.choices([160, -480, (1 << 31) + 5, -(1 << 31) + 7, 0], [96, 1, 1, 1, 1])[0]
            t += 0.02 + rng.gauss(0, 0.004)
        for _ in range(len(rows) // 30):                   # swap neighbours: reordering on the wire
            j = rng.randrange(len(rows) - 1)
            rows[j][1:], rows[j + 1][1:] = rows[j + 1][1:], rows[j][1:]
        for when, s, stamp, p, marker in rows:
            payload = (struct.pack("!BBHII", 0x80, marker << 7 | p, s, stamp, ssrc)
                       + bytes(rng.randrange(256) for _ in range(20)))
            frames.append((when, udp_frame(payload, f"10.9.{k}.1", 20000 + 2 * k, f"10.8.{k}.2", 30000 + 2 * k)))
    frames.sort(key=lambda f: f[0])
    with open(path, "wb") as f:
        writer = dpkt.pcap.Writer(f, nano=True)
        for when, data in frames:
            writer.writepkt(data, ts=when)


@pytest.mark.peer
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_agrees_with_tshark_on_edge_cases(seed, tmp_path, tshark):
    path = tmp_path / f"edge-{seed}.pcap"
    write_edge_capture(path, seed)
    assert assert_agree_with_tshark(tshark, str(path), heuristic=True) == 24
