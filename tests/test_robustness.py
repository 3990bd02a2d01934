"""The whole pipeline under seeded random damage, at scale: no exception, batch = streaming, every frame counted.

The payloads of every UDP datagram and TCP segment in the bundled samples and the public captures are
mutated (overwrites, cuts, duplicated runs, hostile tokens) and written into fresh captures: UDP
datagrams keep their ports (so every content probe and port rule is exercised), TCP flows are cut at
random points, some from the middle of a message, with keep-alives and junk in between. More than
100,000 SIP messages go through both execution paths, which must write byte-identical tables and
account for every frame in exactly one class.
"""
from __future__ import annotations

import random
import re
import struct
from collections import defaultdict
from pathlib import Path

import pytest
from mutate import sip_damage

from dissectors.net import Datagram, NetworkDecoder
from dissectors.sip import looks_like_sip
from voipwatch.analyze import analyze_files, write_outputs
from voipwatch.capture import CaptureError, read_captures
from voipwatch.records import Frame

REPO = Path(__file__).resolve().parents[1]
SUMMARY_KEYS = ("frames_read", "frames_undecoded", "frames_by_class", "counts", "anomalies_by_reason",
                "first_ts", "last_ts")
T0 = 1_700_000_000
UDP_FRAMES = 90_000
TCP_CONNECTIONS = 3_000
pytestmark = pytest.mark.slow                # about a minute of CPU: not in the core tier


def _corpus() -> tuple[list[tuple[int, int, bytes]], list[bytes], list[bytes]]:
    """(sport, dport, payload) of every UDP datagram; every SIP payload; the bytes of each TCP flow direction."""
    paths = sorted((REPO / "sample_captures").glob("*.pcap"))
    shared = (REPO / ".." / "shared" / "captures").resolve()
    paths += sorted(p for p in shared.rglob("*") if p.suffix in (".pcap", ".pcapng", ".cap"))
    udp, sip, tcp = [], [], defaultdict(bytearray)
    decoder = NetworkDecoder()
    for path in paths:
        try:
            items = list(read_captures([str(path)]))
        except CaptureError:
            continue                      # a format voipwatch names and refuses (tests/test_capture.py)
        for item in items:
            if type(item) is not Frame:
                continue
            dgram = decoder.decode(item)
            if type(dgram) is not Datagram or not dgram.payload:
                continue
            meta = dgram.meta
            if meta.transport == "udp":
                udp.append((meta.sport, meta.dport, dgram.payload))
                if looks_like_sip(dgram.payload):
                    sip.append(dgram.payload)
            else:
                flow = tcp[(str(path), meta.src, meta.sport, meta.dst, meta.dport)]
                if len(flow) < 200_000:
                    flow += dgram.payload
    return udp, sip, [bytes(b) for b in tcp.values()]


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    total = (total & 0xFFFF) + (total >> 16)
    return ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF


def _ipv4(src: int, dst: int, proto: int, transport: bytes, ident: int) -> bytes:
    """Ethernet II + IPv4 (RFC 791, header checksum set) around a transport header and payload."""
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(transport), ident & 0xFFFF, 0, 64, proto, 0,
                         struct.pack("!I", src), struct.pack("!I", dst))
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00" + header + transport


def _udp_frame(src: int, dst: int, sport: int, dport: int, payload: bytes, ident: int) -> bytes:
    # RFC 768: a zero checksum over IPv4 means "not computed".
    return _ipv4(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload, ident)


def _tcp_frame(src: int, dst: int, sport: int, dport: int, seq: int, flags: int, payload: bytes, ident: int) -> bytes:
    # RFC 9293 §3.1: data offset 5 (no options), the checksum left zero (not checked by a passive reader).
    header = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, 0, 5 << 4, flags, 65535, 0, 0)
    return _ipv4(src, dst, 6, header + payload, ident)


def _pcap(path: Path, frames: list[bytes]) -> None:
    """Classic little-endian µs pcap, one frame per millisecond from T0 (capture time only)."""
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for i, frame in enumerate(frames):
            fh.write(struct.pack("<IIII", T0 + i // 1000, (i % 1000) * 1000, len(frame), len(frame)) + frame)


def _udp_capture(rng: random.Random, udp: list, sip: list) -> tuple[list[bytes], int]:
    """Mostly SIP, the rest any datagram of the corpus with its own ports; 3 in 4 damaged."""
    frames, sip_messages = [], 0
    for i in range(UDP_FRAMES):
        if rng.random() < 0.8:
            sport, dport, payload = rng.choice((5060, 40000 + i % 2000)), 5060, rng.choice(sip)
            sip_messages += 1
        else:
            sport, dport, payload = rng.choice(udp)
        if rng.random() < 0.75:
            payload = sip_damage(rng, payload)
        src, dst = 0x0A000001 + rng.randrange(64), 0x0A000101 + rng.randrange(64)
        frames.append(_udp_frame(src, dst, sport, dport, payload, i))
    return frames, sip_messages


def _tcp_capture(rng: random.Random, sip: list, flows: list) -> tuple[list[bytes], int]:
    """Connections carrying SIP (messages, keep-alives, junk, damage) or a real flow's bytes, cut at
    random points; some start mid-stream (no SYN, first byte inside a message)."""
    frames, sip_messages, ident = [], 0, 0
    for conn in range(TCP_CONNECTIONS):
        if rng.random() < 0.8:
            parts = []
            for _ in range(rng.randint(1, 30)):
                roll = rng.random()
                if roll < 0.1:
                    parts.append(rng.choice((b"\r\n\r\n", b"\r\n")))          # RFC 5626 §4.4.1 keep-alives
                elif roll < 0.15:
                    parts.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))))
                else:
                    message = rng.choice(sip)
                    parts.append(sip_damage(rng, message) if rng.random() < 0.3 else message)
                    sip_messages += 1
            stream = b"".join(parts)
        else:
            stream = rng.choice(flows)
        if rng.random() < 0.3:
            stream = stream[rng.randrange(len(stream) + 1):]                      # the capture starts mid-stream
        src, dst = 0x0A010001 + conn % 200, 0x0A020001 + conn % 50
        sport, dport = 20000 + conn, rng.choice((5060, 5060, 5061, 15060))
        seq = rng.randrange(1 << 32)
        if rng.random() < 0.5:
            frames.append(_tcp_frame(src, dst, sport, dport, seq, 0x02, b"", ident))       # SYN
            seq += 1
            ident += 1
        at = 0
        while at < len(stream):
            size = rng.choice((1, 3, 7, rng.randint(1, 200), rng.randint(200, 1460), 1460))
            frames.append(_tcp_frame(src, dst, sport, dport, seq + at, 0x18, stream[at:at + size], ident))
            at += size
            ident += 1
    return frames, sip_messages


def _run(path: Path, mode: str, out: Path) -> tuple[dict[str, bytes], dict]:
    result = analyze_files([str(path)], mode=mode)
    write_outputs(result, out, "csv")
    tables = {p.name: p.read_bytes() for p in sorted(out.glob("*.csv"))}
    tables["alerts.jsonl"] = (out / "alerts.jsonl").read_bytes()
    return tables, {k: result.summary[k] for k in SUMMARY_KEYS}


@pytest.fixture(scope="module")
def corpus():
    udp, sip, flows = _corpus()
    assert len(sip) > 1000 and len(flows) > 50 and len(udp) > 10_000
    return udp, sip, flows


@pytest.mark.parametrize("shape", ["udp", "tcp"])
def test_damaged_traffic_at_scale(shape, corpus, tmp_path):
    udp, sip, flows = corpus
    rng = random.Random(f"voipwatch-robustness-{shape}")
    frames, sip_messages = _udp_capture(rng, udp, sip) if shape == "udp" else _tcp_capture(rng, sip, flows)
    capture = tmp_path / f"{shape}.pcap"
    _pcap(capture, frames)
    batch, batch_summary = _run(capture, "batch", tmp_path / "batch")
    stream, stream_summary = _run(capture, "stream", tmp_path / "stream")
    assert batch_summary == stream_summary
    for name in batch:
        assert batch[name] == stream[name], f"{name} differs between the batch and streaming paths"
    summary = batch_summary
    # Every frame is decoded into exactly one named class, or counted as undecoded with a reason.
    assert summary["frames_read"] == len(frames) == sum(summary["frames_by_class"].values())
    assert all(re.fullmatch(r"[a-z0-9]+(\.[a-z0-9_]+)+", name) for name in summary["anomalies_by_reason"])
    assert summary["counts"]["sip_messages"] > 0.3 * sip_messages       # damage costs some, not most
    if shape == "udp":
        assert sip_messages > 70_000                                      # with tcp: > 100,000 in all
    else:
        assert sip_messages > 30_000
