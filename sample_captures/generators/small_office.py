"""Writes sample_captures/small-office.pcap: a labeled, deterministic small VoIP site.

Voice VLAN 110 (phones 10.1.10.11-13, PBX 10.1.10.5, voice DNS 10.1.10.53), data VLAN 20 (a PC at
10.1.20.50 and the data DNS 10.1.20.53). What it holds (the labels tests assert):
- REGISTER with digest: alice (1001) and bob (1002) over UDP each get 401 then 200; carol (1003)
  registers over TCP, her REGISTER split across two segments and the 401 and a 200 for a second
  REGISTER sharing one segment.
- DNS: each phone asks SRV _sip._udp.pbx.example.com of the voice resolver; the PC asks A www.example.com
  of the data resolver.
- Call A (call-a@small-office): alice -> bob, G.711 mu-law RTP/AVP, 100/180/200/ACK, 5 s of RTP each
  way at 20 ms: alice sends a 1000 Hz tone, bob a 440 Hz tone; bob's stream loses packet 100 and
  repeats packet 150 (a duplicate); BYE/200.
- Call B (call-b@small-office): alice -> 1003, answered 486 Busy Here, ACK.
- Call C (call-c@small-office): bob -> alice with SDES-SRTP (RTP/SAVP + a=crypto), 2 s of SRTP each way.
- A 3-packet RTP burst on the data VLAN that no SDP announced (found by the heuristic).
- An INVITE whose Content-Length exceeds its body (anomaly sip.invalid_content_length), and a
  garbage UDP datagram to port 5060 that is not SIP.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pcapgen import (ETH_IPV4, PcapWriter, ethernet, ipv4, mac, rtp, sdp_body, sip_message,  # noqa: E402
                     tcp, tone_ulaw, udp)

T0 = 1_700_000_000.0
VOICE, DATA = 110, 20
PBX, DNS_VOICE, DNS_DATA, PC = "10.1.10.5", "10.1.10.53", "10.1.20.53", "10.1.20.50"
PHONES = {"1001": ("10.1.10.11", "alice"), "1002": ("10.1.10.12", "bob"), "1003": ("10.1.10.13", "carol")}
MACS = {PBX: mac(5), DNS_VOICE: mac(53), DNS_DATA: mac(153), PC: mac(150),
        "10.1.10.11": mac(11), "10.1.10.12": mac(12), "10.1.10.13": mac(13)}


class Site:
    def __init__(self):
        self.pcap = PcapWriter()
        self.ident = 0

    def udp(self, ts, src, sport, dst, dport, payload, vlan=VOICE):
        self.ident += 1
        frame = ethernet(ipv4(src, dst, 17, udp(src, sport, dst, dport, payload), ident=self.ident & 0xFFFF),
                         ETH_IPV4, MACS.get(src, mac(99)), MACS.get(dst, mac(98)), (vlan,))
        self.pcap.add(ts, frame)

    def tcp(self, ts, src, sport, dst, dport, seq, ack, flags, payload=b"", vlan=VOICE):
        self.ident += 1
        frame = ethernet(ipv4(src, dst, 6, tcp(src, sport, dst, dport, seq, ack, flags, payload),
                              ident=self.ident & 0xFFFF), ETH_IPV4, MACS.get(src, mac(99)),
                         MACS.get(dst, mac(98)), (vlan,))
        self.pcap.add(ts, frame)


def via(ip: str, branch: str, transport: str = "UDP") -> tuple[str, str]:
    return ("Via", f"SIP/2.0/{transport} {ip}:5060;branch=z9hG4bK{branch}")


def register(ext: str, cseq: int, call_id: str, auth: bool, transport: str = "UDP") -> bytes:
    ip, name = PHONES[ext]
    headers = [via(ip, f"reg{ext}{cseq}", transport), ("Max-Forwards", "70"),
               ("From", f"\"{name}\" <sip:{ext}@pbx.example.com>;tag=r{ext}"),
               ("To", f"<sip:{ext}@pbx.example.com>"), ("Call-ID", call_id), ("CSeq", f"{cseq} REGISTER"),
               ("Contact", f"<sip:{ext}@{ip}:5060>"), ("Expires", "3600"), ("User-Agent", "SamplePhone/1.0")]
    if auth:
        headers.append(("Authorization", f"Digest username=\"{ext}\", realm=\"pbx.example.com\", "
                        f"nonce=\"abc{cseq}\", uri=\"sip:pbx.example.com\", "
                        f"response=\"{'%032x' % (int(ext) * 7919 + cseq)}\", algorithm=MD5"))
    return sip_message("REGISTER sip:pbx.example.com SIP/2.0", headers)


def reply(request_headers: list[tuple[str, str]], status: str, extra=(), body: str = "",
          to_tag: str | None = None) -> bytes:
    keep = [(n, v) for n, v in request_headers if n in ("Via", "From", "Call-ID", "CSeq")]
    to = next(v for n, v in request_headers if n == "To")
    if to_tag:
        to += f";tag={to_tag}"
    return sip_message(f"SIP/2.0 {status}", keep + [("To", to)] + list(extra) + [("Server", "SamplePBX/2.0")], body)


def register_headers(ext, cseq, call_id, transport="UDP"):
    ip, name = PHONES[ext]
    return [via(ip, f"reg{ext}{cseq}", transport), ("From", f"\"{name}\" <sip:{ext}@pbx.example.com>;tag=r{ext}"),
            ("To", f"<sip:{ext}@pbx.example.com>"), ("Call-ID", call_id), ("CSeq", f"{cseq} REGISTER")]


def registrations(site: Site) -> None:
    challenge = ("WWW-Authenticate", "Digest realm=\"pbx.example.com\", nonce=\"abc1\", algorithm=MD5")
    for i, ext in enumerate(("1001", "1002")):
        ip = PHONES[ext][0]
        t = T0 + 1 + i
        cid = f"reg-{ext}@small-office"
        site.udp(t, ip, 5060, PBX, 5060, register(ext, 1, cid, False))
        site.udp(t + 0.01, PBX, 5060, ip, 5060, reply(register_headers(ext, 1, cid), "401 Unauthorized", [challenge]))
        site.udp(t + 0.02, ip, 5060, PBX, 5060, register(ext, 2, cid, True))
        site.udp(t + 0.03, PBX, 5060, ip, 5060, reply(register_headers(ext, 2, cid), "200 OK",
                                                         [("Contact", f"<sip:{ext}@{ip}:5060>;expires=3600")]))


def tcp_registration(site: Site) -> None:
    """carol over TCP: the first REGISTER split in two segments; the 401 and a later 200 share a segment."""
    ip, t = PHONES["1003"][0], T0 + 3
    cid = "reg-1003@small-office"
    first = register("1003", 1, cid, False, "TCP")
    second = register("1003", 2, cid, True, "TCP")
    c_isn, s_isn = 1000, 5000
    site.tcp(t, ip, 40001, PBX, 5060, c_isn, 0, 0x02)
    site.tcp(t + 0.001, PBX, 5060, ip, 40001, s_isn, c_isn + 1, 0x12)
    site.tcp(t + 0.002, ip, 40001, PBX, 5060, c_isn + 1, s_isn + 1, 0x10)
    half = len(first) // 2
    site.tcp(t + 0.003, ip, 40001, PBX, 5060, c_isn + 1, s_isn + 1, 0x18, first[:half])
    site.tcp(t + 0.004, ip, 40001, PBX, 5060, c_isn + 1 + half, s_isn + 1, 0x18, first[half:])
    site.tcp(t + 0.005, ip, 40001, PBX, 5060, c_isn + 1 + len(first), s_isn + 1, 0x18, second)
    challenge = ("WWW-Authenticate", "Digest realm=\"pbx.example.com\", nonce=\"abc1\", algorithm=MD5")
    both = (reply(register_headers("1003", 1, cid, "TCP"), "401 Unauthorized", [challenge]) +
            reply(register_headers("1003", 2, cid, "TCP"), "200 OK"))
    site.tcp(t + 0.006, PBX, 5060, ip, 40001, s_isn + 1, c_isn + 1 + len(first) + len(second), 0x18, both)


def dns_exchanges(site: Site) -> None:
    def query(qid: int, name: str, qtype: int) -> bytes:
        labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
        return qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + labels + qtype.to_bytes(2, "big") + b"\x00\x01"

    def srv_answer(qid: int, name: str) -> bytes:
        q = query(qid, name, 33)
        target = b"\x03pbx\x07example\x03com\x00"
        rdata = (10).to_bytes(2, "big") + (60).to_bytes(2, "big") + (5060).to_bytes(2, "big") + target
        answer = b"\xc0\x0c" + b"\x00\x21\x00\x01" + (300).to_bytes(4, "big") + len(rdata).to_bytes(2, "big") + rdata
        return q[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + q[12:] + answer

    def a_answer(qid: int, name: str, addr: bytes) -> bytes:
        q = query(qid, name, 1)
        answer = b"\xc0\x0c\x00\x01\x00\x01" + (60).to_bytes(4, "big") + b"\x00\x04" + addr
        return q[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + q[12:] + answer

    for i, ext in enumerate(("1001", "1002", "1003")):
        ip = PHONES[ext][0]
        t = T0 + 0.2 + i * 0.1
        site.udp(t, ip, 33000 + i, DNS_VOICE, 53, query(0x1000 + i, "_sip._udp.pbx.example.com", 33))
        site.udp(t + 0.002, DNS_VOICE, 53, ip, 33000 + i, srv_answer(0x1000 + i, "_sip._udp.pbx.example.com"))
    site.udp(T0 + 0.6, PC, 34000, DNS_DATA, 53, query(0x2000, "www.example.com", 1), vlan=DATA)
    site.udp(T0 + 0.602, DNS_DATA, 53, PC, 34000, a_answer(0x2000, "www.example.com", bytes([93, 184, 216, 34])),
             vlan=DATA)


def invite_headers(caller: str, callee: str, call_id: str, cseq: int, branch: str):
    ip, name = PHONES[caller]
    return [via(ip, branch), ("Max-Forwards", "70"),
            ("From", f"\"{name}\" <sip:{caller}@pbx.example.com>;tag=f{call_id[:6]}"),
            ("To", f"<sip:{callee}@pbx.example.com>"), ("Call-ID", call_id), ("CSeq", f"{cseq} INVITE"),
            ("Contact", f"<sip:{caller}@{ip}:5060>"), ("User-Agent", "SamplePhone/1.0")]


def media(site: Site, t0: float, seconds: float, src: str, sport: int, dst: str, dport: int, ssrc: int,
          payload_for, drop=(), repeat=(), vlan=VOICE) -> None:
    n = int(seconds / 0.02)
    for i in range(n):
        if i in drop:
            continue
        packet = rtp(i, i * 160, ssrc, 0, payload_for(i), marker=i == 0)
        site.udp(t0 + i * 0.02, src, sport, dst, dport, packet, vlan)
        if i in repeat:
            site.udp(t0 + i * 0.02 + 0.001, src, sport, dst, dport, packet, vlan)


def call_a(site: Site) -> None:
    alice, bob = PHONES["1001"][0], PHONES["1002"][0]
    cid, t = "call-a@small-office", T0 + 10
    hdrs = invite_headers("1001", "1002", cid, 1, "inva")
    offer = sdp_body(alice, alice, 40000, session_id=1)
    answer = sdp_body(bob, bob, 40002, session_id=2)
    site.udp(t, alice, 5060, PBX, 5060, sip_message("INVITE sip:1002@pbx.example.com SIP/2.0", hdrs, offer))
    site.udp(t + 0.01, PBX, 5060, alice, 5060, reply(hdrs, "100 Trying"))
    site.udp(t + 0.5, PBX, 5060, alice, 5060, reply(hdrs, "180 Ringing", to_tag="bobtag"))
    site.udp(t + 2.0, PBX, 5060, alice, 5060, reply(hdrs, "200 OK", [("Contact", f"<sip:1002@{bob}:5060>")],
                                                     answer, to_tag="bobtag"))
    ack = [h if h[0] != "CSeq" else ("CSeq", "1 ACK") for h in hdrs if h[0] not in ("Contact", "User-Agent")]
    ack = [h if h[0] != "To" else ("To", h[1] + ";tag=bobtag") for h in ack]
    site.udp(t + 2.02, alice, 5060, PBX, 5060, sip_message("ACK sip:1002@10.1.10.12:5060 SIP/2.0", ack))
    media(site, t + 2.05, 5.0, alice, 40000, bob, 40002, 0x11110001, lambda i: tone_ulaw(1000, 0.5, 160, i * 160))
    media(site, t + 2.06, 5.0, bob, 40002, alice, 40000, 0x22220002, lambda i: tone_ulaw(440, 0.25, 160, i * 160),
          drop=(100,), repeat=(150,))
    bye = [via(PHONES["1002"][0], "byea"), ("From", "<sip:1002@pbx.example.com>;tag=bobtag"),
           ("To", f"<sip:1001@pbx.example.com>;tag=f{cid[:6]}"), ("Call-ID", cid), ("CSeq", "2 BYE")]
    site.udp(t + 7.2, bob, 5060, PBX, 5060, sip_message("BYE sip:1001@10.1.10.11:5060 SIP/2.0", bye))
    site.udp(t + 7.21, PBX, 5060, bob, 5060, reply(bye, "200 OK"))


def call_b(site: Site) -> None:
    alice = PHONES["1001"][0]
    cid, t = "call-b@small-office", T0 + 20
    hdrs = invite_headers("1001", "1003", cid, 1, "invb")
    site.udp(t, alice, 5060, PBX, 5060, sip_message("INVITE sip:1003@pbx.example.com SIP/2.0", hdrs,
                                                     sdp_body(alice, alice, 40010, session_id=3)))
    site.udp(t + 0.01, PBX, 5060, alice, 5060, reply(hdrs, "100 Trying"))
    site.udp(t + 0.3, PBX, 5060, alice, 5060, reply(hdrs, "486 Busy Here", to_tag="busy"))
    ack = [h if h[0] != "CSeq" else ("CSeq", "1 ACK") for h in hdrs if h[0] not in ("Contact", "User-Agent")]
    site.udp(t + 0.31, alice, 5060, PBX, 5060, sip_message("ACK sip:1003@pbx.example.com SIP/2.0", ack))


def call_c(site: Site, rng: random.Random) -> None:
    alice, bob = PHONES["1001"][0], PHONES["1002"][0]
    cid, t = "call-c@small-office", T0 + 30
    hdrs = invite_headers("1002", "1001", cid, 1, "invc")
    crypto = ("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",)
    offer = sdp_body(bob, bob, 40020, "RTP/SAVP", ((0, "PCMU/8000"),), crypto, session_id=4)
    answer = sdp_body(alice, alice, 40022, "RTP/SAVP", ((0, "PCMU/8000"),),
                      ("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk",),
                      session_id=5)
    site.udp(t, bob, 5060, PBX, 5060, sip_message("INVITE sip:1001@pbx.example.com SIP/2.0", hdrs, offer))
    site.udp(t + 0.3, PBX, 5060, bob, 5060, reply(hdrs, "180 Ringing", to_tag="alicetag"))
    site.udp(t + 1.0, PBX, 5060, bob, 5060, reply(hdrs, "200 OK", [("Contact", f"<sip:1001@{alice}:5060>")],
                                                   answer, to_tag="alicetag"))
    ack = [h if h[0] != "CSeq" else ("CSeq", "1 ACK") for h in hdrs if h[0] not in ("Contact", "User-Agent")]
    site.udp(t + 1.01, bob, 5060, PBX, 5060, sip_message("ACK sip:1001@10.1.10.11:5060 SIP/2.0", ack))
    # SRTP (RFC 3711 §3.1): the payload is ciphertext followed by a 10-byte authentication tag.
    media(site, t + 1.05, 2.0, bob, 40020, alice, 40022, 0x33330003, lambda i: rng.randbytes(170))
    media(site, t + 1.06, 2.0, alice, 40022, bob, 40020, 0x44440004, lambda i: rng.randbytes(170))


def odd_traffic(site: Site, rng: random.Random) -> None:
    alice = PHONES["1001"][0]
    # An RTP burst on the data VLAN that no SDP announced.
    for i in range(3):
        site.udp(T0 + 40 + i * 0.02, PC, 50000, alice, 50002, rtp(i, i * 160, 0x55550005, 8, bytes(160)), DATA)
    # Content-Length says 300 but only the SDP follows (RFC 3261 §20.14).
    hdrs = invite_headers("1002", "1001", "bad-length@small-office", 1, "invd")
    good = sip_message("INVITE sip:1001@pbx.example.com SIP/2.0", hdrs, sdp_body(PHONES["1002"][0],
                                                                               PHONES["1002"][0], 40030, session_id=6))
    head, body = good.split(b"\r\n\r\n", 1)
    head = head.replace(f"Content-Length: {len(body)}".encode(), b"Content-Length: 300")
    site.udp(T0 + 41, PHONES["1002"][0], 5060, PBX, 5060, head + b"\r\n\r\n" + body)
    site.udp(T0 + 42, PC, 5060, PBX, 5060, rng.randbytes(64), DATA)


def build() -> PcapWriter:
    rng = random.Random(20261129)
    site = Site()
    dns_exchanges(site)
    registrations(site)
    tcp_registration(site)
    call_a(site)
    call_b(site)
    call_c(site, rng)
    odd_traffic(site, rng)
    return site.pcap


def main(out: str) -> None:
    build().save(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "small-office.pcap"))
