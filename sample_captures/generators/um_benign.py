"""Writes sample_captures/um-benign.pcap: a site whose voice is protected, with the media that looks odd.

Voice VLAN 120 (phones 10.30.1.x, PBX 10.30.1.5). Nothing here is cleartext voice, so the
unencrypted_media family must raise nothing:
- SIP over TLS: 10.30.1.11 and 10.30.1.12 each open TCP 5061 to the PBX, exchange TLS handshake and
  application-data records (the SIP inside is opaque, so are its SDES keys).
- Their call: SRTP PCMU 10.30.1.11:50000 <-> 10.30.1.12:50002 (160 + 10 bytes), with RFC 4733 events
  inside SRTP (4 + 10 bytes) and comfort-noise packets (PT 13, 1 + 10 bytes) mixed in.
- SRTP PCMA with a 32-bit tag (160 + 4 bytes): 10.30.1.13:50010 <-> 10.30.1.14:50012.
- WebRTC-style DTLS-SRTP: STUN binding, DTLS handshake records, then SRTP Opus (PT 111) of variable size
  (VBR) between 10.30.1.21:55000 and 10.30.1.22:55002.
- ZRTP without signalling: Hello/HelloACK, then SRTP PCMU of 160 + 4 bytes (10.30.1.41 <-> 10.30.1.42).
- A comfort-noise-only stream (PT 13, 1-byte payloads) 10.30.1.31:17000 -> 10.30.1.32:17002.
"""
from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pcapgen import ETH_IPV4, PcapWriter, ethernet, ipv4, mac, rtp, tcp, udp  # noqa: E402

T0 = 1_700_200_000.0
VOICE = 120
PBX = "10.30.1.5"
STUN_COOKIE = 0x2112A442     # RFC 5389 §6


class Capture:
    def __init__(self):
        self.pcap = PcapWriter()
        self.ident = 0

    def ip(self, ts: float, src: str, dst: str, proto: int, segment: bytes) -> None:
        self.ident += 1
        frame = ipv4(src, dst, proto, segment, ident=self.ident & 0xFFFF)
        self.pcap.add(ts, ethernet(frame, ETH_IPV4, mac(int(src.split(".")[-1])), mac(int(dst.split(".")[-1])), (VOICE,)))

    def udp(self, ts: float, src: str, sport: int, dst: str, dport: int, payload: bytes) -> None:
        self.ip(ts, src, dst, 17, udp(src, sport, dst, dport, payload))


def tls_session(cap: Capture, t: float, phone: str, sport: int, rng: random.Random) -> None:
    """TCP handshake to 5061, then TLS records (RFC 8446 §5.1: type, legacy version 0x0303, length)."""
    c, s = 1000, 9000
    cap.ip(t, phone, PBX, 6, tcp(phone, sport, PBX, 5061, c, 0, 0x02))
    cap.ip(t + 0.001, PBX, phone, 6, tcp(PBX, 5061, phone, sport, s, c + 1, 0x12))
    cap.ip(t + 0.002, phone, PBX, 6, tcp(phone, sport, PBX, 5061, c + 1, s + 1, 0x10))
    c, s = c + 1, s + 1
    for i, (kind, size) in enumerate(((0x16, 300), (0x16, 1200), (0x17, 900), (0x17, 700), (0x17, 400))):
        record = struct.pack("!BHH", kind, 0x0301 if i == 0 else 0x0303, size) + rng.randbytes(size)
        if i % 2 == 0:
            cap.ip(t + 0.01 * (i + 1), phone, PBX, 6, tcp(phone, sport, PBX, 5061, c, s, 0x18, record))
            c += len(record)
        else:
            cap.ip(t + 0.01 * (i + 1), PBX, phone, 6, tcp(PBX, 5061, phone, sport, s, c, 0x18, record))
            s += len(record)


def stream(cap: Capture, t: float, src: str, sport: int, dst: str, dport: int, ssrc: int, pt: int, size_for,
           n: int = 50, pt_for=None) -> None:
    for i in range(n):
        this_pt = pt_for(i) if pt_for else pt
        cap.udp(t + i * 0.02, src, sport, dst, dport, rtp(i, i * 160, ssrc, this_pt, size_for(i, this_pt), marker=i == 0))


def zrtp(seq: int, ssrc: int, kind: bytes, rng: random.Random) -> bytes:
    """RFC 6189 §5: 0x10, 0x00, sequence, magic 'ZRTP', SSRC, message (preamble 0x505a), CRC."""
    return struct.pack("!BBH4sI", 0x10, 0, seq, b"ZRTP", ssrc) + struct.pack("!HH", 0x505A, 22) + kind + rng.randbytes(80)


def build() -> PcapWriter:
    rng = random.Random(20261202)
    cap = Capture()
    tls_session(cap, T0 + 1, "10.30.1.11", 41000, rng)
    tls_session(cap, T0 + 1.5, "10.30.1.12", 41002, rng)
    a, b = "10.30.1.11", "10.30.1.12"
    # SRTP (RFC 3711 §3.1): every payload, events and comfort noise included, ends in a 10-byte tag.
    mixed = {0: 170, 101: 14, 13: 11}
    stream(cap, T0 + 3, a, 50000, b, 50002, 0x5EC00001, 0, lambda i, pt: rng.randbytes(mixed[pt]),
           pt_for=lambda i: 101 if 20 <= i < 25 else 13 if 40 <= i < 45 else 0)
    stream(cap, T0 + 3.01, b, 50002, a, 50000, 0x5EC00002, 0, lambda i, pt: rng.randbytes(170))
    stream(cap, T0 + 5, "10.30.1.13", 50010, "10.30.1.14", 50012, 0x5EC00003, 8, lambda i, pt: rng.randbytes(164))
    stream(cap, T0 + 5.01, "10.30.1.14", 50012, "10.30.1.13", 50010, 0x5EC00004, 8, lambda i, pt: rng.randbytes(164))
    w1, w2 = "10.30.1.21", "10.30.1.22"
    tid = rng.randbytes(12)
    cap.udp(T0 + 7, w1, 55000, w2, 55002, struct.pack("!HHI", 0x0001, 0, STUN_COOKIE) + tid)
    cap.udp(T0 + 7.001, w2, 55002, w1, 55000, struct.pack("!HHI", 0x0101, 0, STUN_COOKIE) + tid)
    for i in range(4):   # RFC 6347 §4.1: DTLS 1.2 records carry version 0xfefd
        src, sp, dst, dp = (w1, 55000, w2, 55002) if i % 2 == 0 else (w2, 55002, w1, 55000)
        cap.udp(T0 + 7.01 + i * 0.01, src, sp, dst, dp, struct.pack("!BHHIHH", 0x16, 0xFEFD, 0, 0, i, 200) + rng.randbytes(200))
    stream(cap, T0 + 7.1, w1, 55000, w2, 55002, 0x0E8C0001, 111, lambda i, pt: rng.randbytes(rng.randint(40, 130) + 10))
    stream(cap, T0 + 7.11, w2, 55002, w1, 55000, 0x0E8C0002, 111, lambda i, pt: rng.randbytes(rng.randint(40, 130) + 10))
    z1, z2 = "10.30.1.41", "10.30.1.42"
    for i, kind in enumerate((b"Hello   ", b"Hello   ", b"HelloACK")):
        src, sp, dst, dp = (z1, 52000, z2, 52002) if i != 1 else (z2, 52002, z1, 52000)
        cap.udp(T0 + 9 + i * 0.01, src, sp, dst, dp, zrtp(i, 0x2E700001 + (i == 1), kind, rng))
    stream(cap, T0 + 9.1, z1, 52000, z2, 52002, 0x2E700001, 0, lambda i, pt: rng.randbytes(164))
    stream(cap, T0 + 9.11, z2, 52002, z1, 52000, 0x2E700002, 0, lambda i, pt: rng.randbytes(164))
    stream(cap, T0 + 11, "10.30.1.31", 17000, "10.30.1.32", 17002, 0xC0F00001, 13, lambda i, pt: bytes([40]), n=20)
    return cap.pcap


def main(out: str) -> None:
    build().save(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "um-benign.pcap"))
