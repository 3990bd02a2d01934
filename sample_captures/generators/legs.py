"""Writes sample_captures/legs.pcap: calls through an SBC, B2BUAs and a proxy, each leg with its own SDP.

Untagged Ethernet/IPv4/UDP, SIP on 5060. Ground truth, per scenario (every SDP has one audio m= line):
- sbc-anchor@legs: an SBC (10.30.1.5) that keeps the Call-ID and anchors media. Leg 1 10.30.1.11 <-> SBC:
  offer UDP/TLS/RTP/SAVP + a=fingerprint at 10.30.1.11:40000, answer (200) UDP/TLS/RTP/SAVP at
  10.30.1.5:50000. Leg 2 SBC <-> 10.30.1.12: offer RTP/AVP at 10.30.1.5:50002, answer (200) RTP/AVP at
  10.30.1.12:40002. Media: 10.30.1.11:40000 <-> 10.30.1.5:50000 DTLS-SRTP (160 + 10 random bytes),
  10.30.1.5:50002 <-> 10.30.1.12:40002 cleartext PCMU. Only the inner leg's two streams are cleartext.
- b2bua-in@legs + b2bua-out@legs: a B2BUA (10.30.1.6) that starts a new dialog, joined by RFC 7989
  Session-ID (the caller's UUID passed on, the callee's UUID in the responses). In: 10.30.1.21 (2101) ->
  B2BUA (2202), offer 10.30.1.21:40010; a non-reliable 183 with SDP (ringback from the B2BUA,
  10.30.1.6:52004: a preview, not the answer); answer (200) 10.30.1.6:52000. Out: B2BUA -> 10.30.1.22,
  offer 10.30.1.6:52002, answer (200) 10.30.1.22:40012. Media anchored on both legs, cleartext PCMU.
- xcid-in@legs + xcid-out@legs: the same B2BUA; the outgoing INVITE names the incoming Call-ID in X-CID
  and the callee is rewritten (3303 -> +4930123456); no Session-ID. Answers 10.30.1.6:52010 (in) and
  10.30.1.32:40022 (out).
- num-in@legs + num-out@legs: the same B2BUA, no correlating header: same caller 4101 and callee 4202,
  outgoing INVITE 50 ms after the incoming one, sent by the host the first reached.
- direct@legs (negative): 10.30.1.51 calls 4202 directly at 10.30.1.52, 1 s after num-in@legs: same callee,
  but not sent on by the B2BUA, so not a leg of num-in@legs.
- late-offer@legs: through a proxy (10.30.1.7) with the same Call-ID, an INVITE without SDP: the callee
  10.30.1.42 offers in its 200 (10.30.1.42:40032), the proxy forwards it, the caller 10.30.1.41 answers
  in the ACK (10.30.1.41:40030), forwarded by the proxy. No media.
- srtp-inside@legs: a carrier (10.30.2.1) offers RTP/AVP to the SBC (answer RTP/AVP at 10.30.1.5:50010);
  the SBC offers UDP/TLS/RTP/SAVP + a=fingerprint to the phone 10.30.1.13, answered in kind (10.30.1.13:40062).
  Each leg's answer keeps its own offer's protection: no SRTP offer was answered with plain RTP. No media.
- srtp-refused-inside@legs: the same, but the phone 10.30.1.14 answers the SBC's DTLS-SRTP offer with
  RTP/AVP (a downgrade on the inner leg only).
- reg-legs@legs: REGISTER of 10.30.1.11 (401, then 200); opt-legs@legs: OPTIONS from 10.30.1.99 to the
  SBC, answered 200.
"""
from __future__ import annotations

import random
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pcapgen import UdpCapture, rtp, sdp_body, sip_message, tone_ulaw  # noqa: E402

T0 = 1765000000.0
SBC, B2BUA, PROXY = "10.30.1.5", "10.30.1.6", "10.30.1.7"
FINGERPRINT = ("a=fingerprint:sha-256 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB:3B:A1:"
               "6B:A2:61:9A:8F:1E:5A:E4:1C:7F", "a=setup:actpass")
UUID_CALLER, UUID_CALLEE = "ab30317f1a784dc48ff824d0d3715d86", "47755a9de7794ba387653f2099600ef2"


class Dialog:
    """One SIP dialog on one hop: requests from `uac`, responses from `uas`."""

    def __init__(self, cap: UdpCapture, cid: str, uac: str, uas: str, caller: str, callee: str,
                 extra: list[tuple[str, str]] = ()):
        self.cap, self.cid, self.uac, self.uas = cap, cid, uac, uas
        self.base = [("Via", f"SIP/2.0/UDP {uac}:5060;branch=z9hG4bK-{zlib.crc32((cid + uac).encode()):08x}"),
                     ("From", f"<sip:{caller}@legs.example>;tag=f-{caller}"), ("To", f"<sip:{callee}@legs.example>"),
                     ("Call-ID", cid)]
        self.callee, self.extra = callee, list(extra)
        self.resp = [h if h[0] != "To" else ("To", h[1] + f";tag=t-{callee}") for h in self.base]

    def request(self, t: float, method: str, cseq: int, body: str = "", headers=()) -> None:
        uri = f"sip:{self.callee}@{self.uas}:5060"
        hdrs = (self.base if method in ("INVITE", "REGISTER", "OPTIONS") else self.resp) + \
            [("Max-Forwards", "70"), ("CSeq", f"{cseq} {method}")] + self.extra + list(headers)
        self.cap.udp(t, self.uac, 5060, self.uas, 5060, sip_message(f"{method} {uri} SIP/2.0", hdrs, body))

    def response(self, t: float, status: str, cseq: int, method: str, body: str = "", headers=()) -> None:
        hdrs = (self.base if status.startswith("100") else self.resp) + [("CSeq", f"{cseq} {method}")] + list(headers)
        self.cap.udp(t, self.uas, 5060, self.uac, 5060, sip_message(f"SIP/2.0 {status}", hdrs, body))


def media(cap: UdpCapture, t: float, src: str, sport: int, dst: str, dport: int, ssrc: int, payload_for, n: int = 50):
    for i in range(n):
        cap.udp(t + i * 0.02, src, sport, dst, dport, rtp(i, i * 160, ssrc, 0, payload_for(i), marker=i == 0))


def tone(freq: float):
    return lambda i: tone_ulaw(freq, 0.4, 160, i * 160)


def sbc_anchor(cap: UdpCapture, t: float, rng: random.Random) -> None:
    a, b, cid = "10.30.1.11", "10.30.1.12", "sbc-anchor@legs"
    fm = ((0, "PCMU/8000"),)
    out = Dialog(cap, cid, a, SBC, "1101", "1202")
    inner = Dialog(cap, cid, SBC, b, "1101", "1202")
    out.request(t, "INVITE", 1, sdp_body(a, a, 40000, "UDP/TLS/RTP/SAVP", fm, FINGERPRINT))
    out.response(t + 0.01, "100 Trying", 1, "INVITE")
    inner.request(t + 0.02, "INVITE", 1, sdp_body(SBC, SBC, 50002, "RTP/AVP", fm))
    inner.response(t + 0.3, "200 OK", 1, "INVITE", sdp_body(b, b, 40002, "RTP/AVP", fm))
    out.response(t + 0.31, "200 OK", 1, "INVITE", sdp_body(SBC, SBC, 50000, "UDP/TLS/RTP/SAVP", fm, FINGERPRINT))
    out.request(t + 0.32, "ACK", 1)
    inner.request(t + 0.33, "ACK", 1)
    media(cap, t + 0.4, a, 40000, SBC, 50000, 0x5BC00001, lambda i: rng.randbytes(170))
    media(cap, t + 0.41, SBC, 50000, a, 40000, 0x5BC00002, lambda i: rng.randbytes(170))
    media(cap, t + 0.42, SBC, 50002, b, 40002, 0x5BC00003, tone(500))
    media(cap, t + 0.43, b, 40002, SBC, 50002, 0x5BC00004, tone(600))
    out.request(t + 1.6, "BYE", 2)
    out.response(t + 1.61, "200 OK", 2, "BYE")
    inner.request(t + 1.62, "BYE", 2)
    inner.response(t + 1.63, "200 OK", 2, "BYE")


def srtp_inside(cap: UdpCapture, t: float, cid: str = "srtp-inside@legs", phone: str = "10.30.1.13",
                phone_proto: str = "UDP/TLS/RTP/SAVP") -> None:
    """A carrier offers plain RTP to the SBC; the SBC offers DTLS-SRTP to the phone, which answers with
    `phone_proto`; the SBC answers the carrier with plain RTP."""
    carrier = "10.30.2.1"
    fm = ((0, "PCMU/8000"),)
    outer, inner = Dialog(cap, cid, carrier, SBC, "4930999", "1303"), Dialog(cap, cid, SBC, phone, "4930999", "1303")
    outer.request(t, "INVITE", 1, sdp_body(carrier, carrier, 30000, "RTP/AVP", fm))
    inner.request(t + 0.02, "INVITE", 1, sdp_body(SBC, SBC, 50012, "UDP/TLS/RTP/SAVP", fm, FINGERPRINT))
    secure = phone_proto != "RTP/AVP"
    inner.response(t + 0.3, "200 OK", 1, "INVITE", sdp_body(phone, phone, 40062, phone_proto, fm,
                                                                (FINGERPRINT[0], "a=setup:active") if secure else ()))
    outer.response(t + 0.31, "200 OK", 1, "INVITE", sdp_body(SBC, SBC, 50010, "RTP/AVP", fm))
    outer.request(t + 0.32, "ACK", 1)
    inner.request(t + 0.33, "ACK", 1)
    outer.request(t + 1.0, "BYE", 2)
    outer.response(t + 1.01, "200 OK", 2, "BYE")
    inner.request(t + 1.02, "BYE", 2)
    inner.response(t + 1.03, "200 OK", 2, "BYE")


def b2bua_call(cap: UdpCapture, t: float, tag: str, caller_ip: str, callee_ip: str, caller: str, callee: str,
               out_callee: str, ports: tuple[int, int, int, int], in_headers=(), out_headers=(),
               in_resp_headers=(), out_resp_headers=(), ringback: int | None = None, with_media: bool = True) -> None:
    """caller_ip -> B2BUA (Call-ID <tag>-in@legs) and B2BUA -> callee_ip (<tag>-out@legs), media anchored."""
    caller_port, in_port, out_port, callee_port = ports
    leg_in = Dialog(cap, f"{tag}-in@legs", caller_ip, B2BUA, caller, callee, list(in_headers))
    leg_out = Dialog(cap, f"{tag}-out@legs", B2BUA, callee_ip, caller, out_callee, list(out_headers))
    leg_in.request(t, "INVITE", 1, sdp_body(caller_ip, caller_ip, caller_port))
    leg_in.response(t + 0.01, "100 Trying", 1, "INVITE")
    leg_out.request(t + 0.05, "INVITE", 1, sdp_body(B2BUA, B2BUA, out_port))
    leg_out.response(t + 0.06, "100 Trying", 1, "INVITE")
    leg_out.response(t + 0.1, "180 Ringing", 1, "INVITE", headers=out_resp_headers)
    if ringback is not None:     # RFC 3261 §13.2.1: SDP in a non-reliable 18x previews the answer
        leg_in.response(t + 0.11, "183 Session Progress", 1, "INVITE", sdp_body(B2BUA, B2BUA, ringback),
                        headers=in_resp_headers)
    else:
        leg_in.response(t + 0.11, "180 Ringing", 1, "INVITE", headers=in_resp_headers)
    leg_out.response(t + 0.5, "200 OK", 1, "INVITE", sdp_body(callee_ip, callee_ip, callee_port), headers=out_resp_headers)
    leg_in.response(t + 0.51, "200 OK", 1, "INVITE", sdp_body(B2BUA, B2BUA, in_port), headers=in_resp_headers)
    leg_in.request(t + 0.52, "ACK", 1)
    leg_out.request(t + 0.53, "ACK", 1)
    if with_media:
        base = int(tag.encode().hex()[:4], 16) << 16
        media(cap, t + 0.6, caller_ip, caller_port, B2BUA, in_port, base | 1, tone(700))
        media(cap, t + 0.61, B2BUA, in_port, caller_ip, caller_port, base | 2, tone(400))
        media(cap, t + 0.62, B2BUA, out_port, callee_ip, callee_port, base | 3, tone(700))
        media(cap, t + 0.63, callee_ip, callee_port, B2BUA, out_port, base | 4, tone(400))
    leg_in.request(t + 1.8, "BYE", 2)
    leg_in.response(t + 1.81, "200 OK", 2, "BYE")
    leg_out.request(t + 1.82, "BYE", 2)
    leg_out.response(t + 1.83, "200 OK", 2, "BYE")


def direct_call(cap: UdpCapture, t: float) -> None:
    a, b = "10.30.1.51", "10.30.1.52"
    d = Dialog(cap, "direct@legs", a, b, "5101", "4202")
    d.request(t, "INVITE", 1, sdp_body(a, a, 40040))
    d.response(t + 0.3, "200 OK", 1, "INVITE", sdp_body(b, b, 40042))
    d.request(t + 0.31, "ACK", 1)
    d.request(t + 1.0, "BYE", 2)
    d.response(t + 1.01, "200 OK", 2, "BYE")


def late_offer(cap: UdpCapture, t: float) -> None:
    """RFC 3261 §13.2.1: an INVITE without SDP; the offer comes in the 2xx, the answer in the ACK."""
    a, b, cid = "10.30.1.41", "10.30.1.42", "late-offer@legs"
    leg1, leg2 = Dialog(cap, cid, a, PROXY, "6101", "6202"), Dialog(cap, cid, PROXY, b, "6101", "6202")
    leg1.request(t, "INVITE", 1)
    leg1.response(t + 0.01, "100 Trying", 1, "INVITE")
    leg2.request(t + 0.02, "INVITE", 1)
    offer = sdp_body(b, b, 40032)
    leg2.response(t + 0.3, "200 OK", 1, "INVITE", offer)
    leg1.response(t + 0.31, "200 OK", 1, "INVITE", offer)
    answer = sdp_body(a, a, 40030)
    leg1.request(t + 0.32, "ACK", 1, answer)
    leg2.request(t + 0.33, "ACK", 1, answer)
    leg1.request(t + 1.0, "BYE", 2)
    leg2.request(t + 1.01, "BYE", 2)
    leg2.response(t + 1.02, "200 OK", 2, "BYE")
    leg1.response(t + 1.03, "200 OK", 2, "BYE")


def registration_and_options(cap: UdpCapture, t: float) -> None:
    reg = Dialog(cap, "reg-legs@legs", "10.30.1.11", SBC, "1101", "1101")
    reg.request(t, "REGISTER", 1, headers=[("Contact", "<sip:1101@10.30.1.11:5060>"), ("Expires", "3600")])
    reg.response(t + 0.01, "401 Unauthorized", 1, "REGISTER",
                 headers=[("WWW-Authenticate", 'Digest realm="legs.example", nonce="6c65677331", algorithm=MD5')])
    reg.request(t + 0.05, "REGISTER", 2, headers=[
        ("Contact", "<sip:1101@10.30.1.11:5060>"), ("Expires", "3600"),
        ("Authorization", 'Digest username="1101", realm="legs.example", nonce="6c65677331", '
                          'uri="sip:legs.example", response="0123456789abcdef0123456789abcdef", algorithm=MD5')])
    reg.response(t + 0.06, "200 OK", 2, "REGISTER", headers=[("Contact", "<sip:1101@10.30.1.11:5060>;expires=3600")])
    opt = Dialog(cap, "opt-legs@legs", "10.30.1.99", SBC, "probe", "1101")
    opt.request(t + 1, "OPTIONS", 1)
    opt.response(t + 1.01, "200 OK", 1, "OPTIONS")


def build():
    rng = random.Random(20261208)
    cap = UdpCapture()
    registration_and_options(cap, T0)
    sbc_anchor(cap, T0 + 3, rng)
    b2bua_call(cap, T0 + 6, "b2bua", "10.30.1.21", "10.30.1.22", "2101", "2202", "2202", (40010, 52000, 52002, 40012),
               in_headers=[("Session-ID", f"{UUID_CALLER};remote=00000000000000000000000000000000")],
               out_headers=[("Session-ID", f"{UUID_CALLER};remote=00000000000000000000000000000000")],
               in_resp_headers=[("Session-ID", f"{UUID_CALLEE};remote={UUID_CALLER}")],
               out_resp_headers=[("Session-ID", f"{UUID_CALLEE};remote={UUID_CALLER}")], ringback=52004)
    b2bua_call(cap, T0 + 9, "xcid", "10.30.1.31", "10.30.1.32", "3101", "3303", "+4930123456",
               (40020, 52010, 52012, 40022), out_headers=[("X-CID", "xcid-in@legs")], with_media=False)
    b2bua_call(cap, T0 + 12, "num", "10.30.1.61", "10.30.1.62", "4101", "4202", "4202",
               (40050, 52020, 52022, 40052), with_media=False)
    direct_call(cap, T0 + 13)
    late_offer(cap, T0 + 16)
    srtp_inside(cap, T0 + 19)
    srtp_inside(cap, T0 + 21, "srtp-refused-inside@legs", "10.30.1.14", "RTP/AVP")
    return cap.pcap


def main(out: str) -> None:
    build().save(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "legs.pcap"))
