"""Writes sample_captures/um-attacks.pcap: unencrypted media and signalling, plus the traps beside them.

Voice VLAN 110 (phones 10.20.1.x, PBX 10.20.1.5, media gateway 10.20.1.6); trunk VLAN 300 to a public
carrier (203.0.113.10) and to an MPLS carrier (198.51.100.20). Each scenario uses its own phones and
Call-ID, so a golden case can pick one by Call-ID or address. Media runs 1 s (50 packets at 20 ms).
- um-clear@attacks: 10.20.1.11 -> 8500 (voicemail) via the PBX, RTP/AVP PCMU, media 10.20.1.11 <->
  10.20.1.12; the caller's stream carries 5 RFC 4733 telephone-event packets (PT 101) mid-call.
- um-sdes@attacks: 10.20.1.21 -> 10.20.1.22, RTP/SAVP with SDES keys in both offer and answer over SIP/UDP,
  SRTP payloads of 160 + 10 random bytes; telephone-event is mapped but travels inside SRTP.
- um-downgrade@attacks: 10.20.1.31 offers RTP/SAVP + a=crypto, the answer is RTP/AVP without crypto;
  cleartext PCMU follows.
- um-weak@attacks: 10.20.1.41 <-> 10.20.1.42, SDES with AES_CM_128_HMAC_SHA1_32 and UNENCRYPTED_SRTCP.
- REGISTER of 10.20.1.51 (401 then 200 with digest).
- um-trunk@attacks: 203.0.113.10 (public carrier) calls 2000; media 203.0.113.10:30000 <-> 10.20.1.6:20000
  in cleartext PCMA. 198.51.100.20 (an MPLS carrier) sends two OPTIONS keepalives.
- um-info@attacks: 10.20.1.61 -> 7000 (conference bridge), answered, four SIP INFO application/dtmf-relay;
  its media is not in the capture.
- An unannounced PCMA exchange 10.20.1.71:16000 <-> 10.20.1.72:16002 (no SIP at all).
Traps (must not read as cleartext media):
- um-zrtp@attacks: RTP/AVP without a=zrtp-hash, ZRTP Hello/HelloACK on the media ports, then SRTP
  payloads of 160 + 4 bytes (10.20.1.81 <-> 10.20.1.82).
- um-zrtphash@attacks: RTP/AVP with a=zrtp-hash, SRTP payloads (10.20.1.91 <-> 10.20.1.92).
- um-hold@attacks: DTLS-SRTP (UDP/TLS/RTP/SAVP + a=fingerprint) 10.20.1.101 <-> 10.20.1.102, then a hold
  re-INVITE whose answer switches to RTP/AVP with a=inactive.
"""
from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pcapgen import ETH_IPV4, PcapWriter, ethernet, ipv4, mac, rtp, tone_ulaw, udp  # noqa: E402

T0 = 1_700_100_000.0
VOICE, TRUNK = 110, 300
PBX, MGW, CARRIER, MPLS = "10.20.1.5", "10.20.1.6", "203.0.113.10", "198.51.100.20"
KEY_A = "inline:YUJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0"
KEY_B = "inline:MDEyMzQ1Njc4OUFCQ0RFRkdISUpLTE1OT1BRUlNU"
TE = ((101, "telephone-event/8000"),)


class Capture:
    def __init__(self):
        self.pcap = PcapWriter()
        self.ident = 0

    def udp(self, ts: float, src: str, sport: int, dst: str, dport: int, payload: bytes, vlan: int = VOICE) -> None:
        self.ident += 1
        frame = ipv4(src, dst, 17, udp(src, sport, dst, dport, payload), ident=self.ident & 0xFFFF)
        self.pcap.add(ts, ethernet(frame, ETH_IPV4, mac(int(src.split(".")[-1])), mac(int(dst.split(".")[-1])), (vlan,)))


def sip(start: str, headers: list[tuple[str, str]], body: str = "", ctype: str = "application/sdp") -> bytes:
    """RFC 3261 §7 message with CRLF line ends and a correct Content-Length."""
    lines = [start] + [f"{k}: {v}" for k, v in headers] + ([f"Content-Type: {ctype}"] if body else [])
    return ("\r\n".join(lines + [f"Content-Length: {len(body.encode())}"]) + "\r\n\r\n" + body).encode()


def sdp(ip: str, port: int, proto: str = "RTP/AVP", formats=((0, "PCMU/8000"),), extra=(), direction="sendrecv") -> str:
    """RFC 4566 body with one audio m= line."""
    lines = ["v=0", f"o=- {port} 1 IN IP4 {ip}", "s=-", f"c=IN IP4 {ip}", "t=0 0",
             f"m=audio {port} {proto} {' '.join(str(pt) for pt, _ in formats)}"]
    return "\r\n".join(lines + [f"a=rtpmap:{pt} {name}" for pt, name in formats] + list(extra) + [f"a={direction}"]) + "\r\n"


def dialog(cap: Capture, t: float, caller: str, callee_user: str, cid: str, offer: str, answer: str | None,
           vlan: int = VOICE, server: str = PBX, cseq: int = 1) -> list[tuple[str, str]]:
    """INVITE/100/180/200/ACK between caller and server; returns the dialog headers for later requests."""
    base = [("Via", f"SIP/2.0/UDP {caller}:5060;branch=z9hG4bK{cid[:8]}{cseq}"), ("Max-Forwards", "70"),
            ("From", f"<sip:{caller}@site.example>;tag=f{cid[:6]}"), ("To", f"<sip:{callee_user}@site.example>"),
            ("Call-ID", cid)]
    cap.udp(t, caller, 5060, server, 5060, sip(f"INVITE sip:{callee_user}@site.example SIP/2.0",
                                                base + [("CSeq", f"{cseq} INVITE"), ("Contact", f"<sip:{caller}:5060>")], offer), vlan)
    resp = [h if h[0] != "To" else ("To", h[1] + ";tag=t" + cid[:6]) for h in base if h[0] != "Max-Forwards"]
    cap.udp(t + 0.01, server, 5060, caller, 5060, sip("SIP/2.0 100 Trying", resp + [("CSeq", f"{cseq} INVITE")]), vlan)
    if cseq == 1:
        cap.udp(t + 0.2, server, 5060, caller, 5060, sip("SIP/2.0 180 Ringing", resp + [("CSeq", f"{cseq} INVITE")]), vlan)
    cap.udp(t + 0.5, server, 5060, caller, 5060, sip("SIP/2.0 200 OK", resp + [("CSeq", f"{cseq} INVITE"),
                                                                                ("Contact", f"<sip:{server}:5060>")], answer or ""), vlan)
    cap.udp(t + 0.52, caller, 5060, server, 5060, sip(f"ACK sip:{server}:5060 SIP/2.0", resp + [("CSeq", f"{cseq} ACK")]), vlan)
    return resp


def bye(cap: Capture, t: float, caller: str, resp, cseq: int, vlan: int = VOICE, server: str = PBX) -> None:
    cap.udp(t, caller, 5060, server, 5060, sip(f"BYE sip:{server}:5060 SIP/2.0", resp + [("CSeq", f"{cseq} BYE")]), vlan)
    cap.udp(t + 0.01, server, 5060, caller, 5060, sip("SIP/2.0 200 OK", resp + [("CSeq", f"{cseq} BYE")]), vlan)


def media(cap: Capture, t: float, src: str, sport: int, dst: str, dport: int, ssrc: int, pt: int, payload_for,
          n: int = 50, vlan: int = VOICE, events: range = range(0)) -> None:
    for i in range(n):
        if i in events:     # RFC 4733 §2.3: event, E bit on the last, volume 10, duration in timestamp units
            packet = rtp(i, events.start * 160, ssrc, 101,
                         struct.pack("!BBH", 5, (0x80 if i == events.stop - 1 else 0) | 10, (i - events.start + 1) * 160),
                         marker=i == events.start)
        else:
            packet = rtp(i, i * 160, ssrc, pt, payload_for(i), marker=i == 0)
        cap.udp(t + i * 0.02, src, sport, dst, dport, packet, vlan)


def tone(freq: float):
    return lambda i: tone_ulaw(freq, 0.4, 160, i * 160)


def clear_call(cap: Capture, t: float) -> None:
    a, b, cid = "10.20.1.11", "10.20.1.12", "um-clear@attacks"
    resp = dialog(cap, t, a, "8500", cid, sdp(a, 40000, formats=((0, "PCMU/8000"),) + TE),
                  sdp(b, 40002, formats=((0, "PCMU/8000"),) + TE))
    media(cap, t + 0.6, a, 40000, b, 40002, 0x0C1EA001, 0, tone(700), events=range(20, 25))
    media(cap, t + 0.61, b, 40002, a, 40000, 0x0C1EA002, 0, tone(400))
    bye(cap, t + 1.8, a, resp, 2)


def sdes_call(cap: Capture, t: float, rng: random.Random) -> None:
    a, b, cid = "10.20.1.21", "10.20.1.22", "um-sdes@attacks"
    fm = ((0, "PCMU/8000"),) + TE
    resp = dialog(cap, t, a, "2200", cid, sdp(a, 40010, "RTP/SAVP", fm, (f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 {KEY_A}",)),
                  sdp(b, 40012, "RTP/SAVP", fm, (f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 {KEY_B}",)))
    # SRTP (RFC 3711 §3.1): ciphertext of the 160-byte frame, then the 10-byte HMAC-SHA1-80 tag; the
    # telephone-events inside are 4 + 10 bytes.
    media(cap, t + 0.6, a, 40010, b, 40012, 0x5DE5A001, 0, lambda i: rng.randbytes(170))
    media(cap, t + 0.61, b, 40012, a, 40010, 0x5DE5A002, 0, lambda i: rng.randbytes(170))
    for i in range(5):
        cap.udp(t + 1.7 + i * 0.02, a, 40010, b, 40012, rtp(50 + i, 8000, 0x5DE5A001, 101, rng.randbytes(14)))
    bye(cap, t + 1.9, a, resp, 2)


def downgrade_call(cap: Capture, t: float) -> None:
    a, b, cid = "10.20.1.31", "10.20.1.32", "um-downgrade@attacks"
    resp = dialog(cap, t, a, "3300", cid, sdp(a, 40020, "RTP/SAVP", extra=(f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 {KEY_A[:-4]}QUJD",)),
                  sdp(b, 40022))
    media(cap, t + 0.6, a, 40020, b, 40022, 0xD0A90001, 0, tone(500))
    media(cap, t + 0.61, b, 40022, a, 40020, 0xD0A90002, 0, tone(600))
    bye(cap, t + 1.8, a, resp, 2)


def weak_call(cap: Capture, t: float, rng: random.Random) -> None:
    a, b, cid = "10.20.1.41", "10.20.1.42", "um-weak@attacks"
    weak = "a=crypto:1 AES_CM_128_HMAC_SHA1_32 {} UNENCRYPTED_SRTCP"
    resp = dialog(cap, t, a, "4400", cid, sdp(a, 40030, "RTP/SAVP", extra=(weak.format(KEY_B[:-4] + "WFla"),)),
                  sdp(b, 40032, "RTP/SAVP", extra=(weak.format(KEY_A[:-4] + "WFlb"),)))
    media(cap, t + 0.6, a, 40030, b, 40032, 0x3EA70001, 0, lambda i: rng.randbytes(164))
    media(cap, t + 0.61, b, 40032, a, 40030, 0x3EA70002, 0, lambda i: rng.randbytes(164))
    bye(cap, t + 1.8, a, resp, 2)


def registration(cap: Capture, t: float) -> None:
    phone, cid = "10.20.1.51", "um-reg@attacks"
    hdrs = [("Via", f"SIP/2.0/UDP {phone}:5060;branch=z9hG4bKreg"), ("From", "<sip:5100@site.example>;tag=r51"),
            ("To", "<sip:5100@site.example>"), ("Call-ID", cid)]
    cap.udp(t, phone, 5060, PBX, 5060, sip("REGISTER sip:site.example SIP/2.0", hdrs + [("CSeq", "1 REGISTER"), ("Expires", "3600")]))
    cap.udp(t + 0.01, PBX, 5060, phone, 5060, sip("SIP/2.0 401 Unauthorized", hdrs + [
        ("CSeq", "1 REGISTER"), ("WWW-Authenticate", 'Digest realm="site.example", nonce="n51", algorithm=MD5')]))
    cap.udp(t + 0.02, phone, 5060, PBX, 5060, sip("REGISTER sip:site.example SIP/2.0", hdrs + [
        ("CSeq", "2 REGISTER"), ("Expires", "3600"), ("Authorization", 'Digest username="5100", realm="site.example", '
                                                        'nonce="n51", uri="sip:site.example", response="0123456789abcdef0123456789abcdef", algorithm=MD5')]))
    cap.udp(t + 0.03, PBX, 5060, phone, 5060, sip("SIP/2.0 200 OK", hdrs + [("CSeq", "2 REGISTER")]))


def trunk(cap: Capture, t: float) -> None:
    cid = "um-trunk@attacks"
    resp = dialog(cap, t, CARRIER, "2000", cid, sdp(CARRIER, 30000, formats=((8, "PCMA/8000"),)),
                  sdp(MGW, 20000, formats=((8, "PCMA/8000"),)), vlan=TRUNK)
    media(cap, t + 0.6, CARRIER, 30000, MGW, 20000, 0x7A0C0001, 8, tone(300), vlan=TRUNK)
    media(cap, t + 0.61, MGW, 20000, CARRIER, 30000, 0x7A0C0002, 8, tone(900), vlan=TRUNK)
    bye(cap, t + 1.8, CARRIER, resp, 2, vlan=TRUNK)
    for i in range(2):
        hdrs = [("Via", f"SIP/2.0/UDP {MPLS}:5060;branch=z9hG4bKopt{i}"), ("From", "<sip:ping@mpls.example>;tag=o1"),
                ("To", "<sip:site.example>"), ("Call-ID", f"um-options-{i}@attacks"), ("CSeq", "1 OPTIONS")]
        cap.udp(t + i * 0.5, MPLS, 5060, PBX, 5060, sip("OPTIONS sip:site.example SIP/2.0", hdrs), TRUNK)
        cap.udp(t + i * 0.5 + 0.01, PBX, 5060, MPLS, 5060, sip("SIP/2.0 200 OK", hdrs), TRUNK)


def info_call(cap: Capture, t: float) -> None:
    a, cid = "10.20.1.61", "um-info@attacks"
    resp = dialog(cap, t, a, "7000", cid, sdp(a, 40040), sdp(PBX, 41000))
    for i, digit in enumerate("1234"):
        cap.udp(t + 1 + i * 0.3, a, 5060, PBX, 5060, sip(f"INFO sip:{PBX}:5060 SIP/2.0", resp + [("CSeq", f"{2 + i} INFO")],
                                                         f"Signal={digit}\r\nDuration=160\r\n", "application/dtmf-relay"))
        cap.udp(t + 1.01 + i * 0.3, PBX, 5060, a, 5060, sip("SIP/2.0 200 OK", resp + [("CSeq", f"{2 + i} INFO")]))
    bye(cap, t + 2.5, a, resp, 6)


def unannounced(cap: Capture, t: float) -> None:
    a, b = "10.20.1.71", "10.20.1.72"
    media(cap, t, a, 16000, b, 16002, 0x0A0A0001, 8, tone(800))
    media(cap, t + 0.01, b, 16002, a, 16000, 0x0A0A0002, 8, tone(350))


def zrtp_packet(seq: int, ssrc: int, kind: bytes, rng: random.Random) -> bytes:
    """RFC 6189 §5: 0x10, 0x00, sequence, magic 'ZRTP', SSRC, then the message (preamble 0x505a) and a CRC."""
    body = struct.pack("!HH", 0x505A, 22) + kind + rng.randbytes(76)
    return struct.pack("!BBH4sI", 0x10, 0, seq, b"ZRTP", ssrc) + body + rng.randbytes(4)


def zrtp_calls(cap: Capture, t: float, rng: random.Random) -> None:
    a, b, cid = "10.20.1.81", "10.20.1.82", "um-zrtp@attacks"
    resp = dialog(cap, t, a, "8200", cid, sdp(a, 40050), sdp(b, 40052))
    for i, (src, sp, dst, dp, kind) in enumerate(((a, 40050, b, 40052, b"Hello   "), (b, 40052, a, 40050, b"Hello   "),
                                                  (a, 40050, b, 40052, b"HelloACK"))):
        cap.udp(t + 0.55 + i * 0.01, src, sp, dst, dp, zrtp_packet(i, 0x2E7F0001 + i % 2, kind, rng))
    # After ZRTP the media is SRTP with a 32-bit tag (RFC 6189 §5.1.4 offers HS32 and HS80).
    media(cap, t + 0.6, a, 40050, b, 40052, 0x2E7F0001, 0, lambda i: rng.randbytes(164))
    media(cap, t + 0.61, b, 40052, a, 40050, 0x2E7F0002, 0, lambda i: rng.randbytes(164))
    bye(cap, t + 1.8, a, resp, 2)
    a, b, cid = "10.20.1.91", "10.20.1.92", "um-zrtphash@attacks"
    zh = ("a=zrtp-hash:1.10 7e4c5a93c4a2f6d5b1e0c9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8",)
    resp = dialog(cap, t + 3, a, "9200", cid, sdp(a, 40060, extra=zh), sdp(b, 40062, extra=zh))
    media(cap, t + 3.6, a, 40060, b, 40062, 0x2E7F0101, 0, lambda i: rng.randbytes(170))
    media(cap, t + 3.61, b, 40062, a, 40060, 0x2E7F0102, 0, lambda i: rng.randbytes(170))
    bye(cap, t + 4.8, a, resp, 2)


def hold_call(cap: Capture, t: float, rng: random.Random) -> None:
    a, b, cid = "10.20.1.101", "10.20.1.102", "um-hold@attacks"
    fp = ("a=fingerprint:sha-256 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB:4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF",
          "a=setup:actpass")
    resp = dialog(cap, t, a, "1020", cid, sdp(a, 40070, "UDP/TLS/RTP/SAVP", extra=fp), sdp(b, 40072, "UDP/TLS/RTP/SAVP", extra=fp))
    media(cap, t + 0.6, a, 40070, b, 40072, 0x401D0001, 0, lambda i: rng.randbytes(170))
    media(cap, t + 0.61, b, 40072, a, 40070, 0x401D0002, 0, lambda i: rng.randbytes(170))
    # Hold (RFC 3264 §8.4): the re-INVITE's answer marks the line inactive and drops to RTP/AVP.
    dialog(cap, t + 2, a, "1020", cid, sdp(a, 40070, "UDP/TLS/RTP/SAVP", extra=fp, direction="inactive"),
           sdp(b, 40072, direction="inactive"), cseq=2)
    bye(cap, t + 3, a, resp, 3)


def build() -> PcapWriter:
    rng = random.Random(20261201)
    cap = Capture()
    clear_call(cap, T0 + 1)
    sdes_call(cap, T0 + 5, rng)
    downgrade_call(cap, T0 + 9)
    weak_call(cap, T0 + 13, rng)
    registration(cap, T0 + 17)
    trunk(cap, T0 + 19)
    info_call(cap, T0 + 23)
    unannounced(cap, T0 + 27)
    zrtp_calls(cap, T0 + 30, rng)
    hold_call(cap, T0 + 37, rng)
    return cap.pcap


def main(out: str) -> None:
    build().save(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "um-attacks.pcap"))
