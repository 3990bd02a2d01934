"""Writes sample_captures/tf-attacks.pcap: toll-fraud attacks on a small site, each from its own source.

Site (sample_captures/configs/toll_fraud.toml): extension 10NN at 10.3.10.NN on voice VLAN 110; ESC 10.3.30.5,
SBC 10.3.30.10 and PSTN gateway 10.3.30.20 on the UC DMZ VLAN 300; carrier trunk 203.0.113.50;
Internet hosts (198.51.100.0/24) arrive untagged. T0 is Tuesday 2023-11-14 10:00 UTC (business hours).
What it holds (the labels the tf-* golden cases assert):
- T0: phones 1001-1011 register with a digest challenge; 1012 registers and is accepted unchallenged.
- TF-01: 198.51.100.11 sends an INVITE for 0114420794600001 straight to the gateway, which answers 183
  (attempt, then progress; also an unauthenticated call, TF-02); phone 10.3.10.21 (1021) also INVITEs the gateway directly and gets 403.
- TF-02: 198.51.100.21 calls 01133123456789 at the ESC with no challenge: 180, 200, BYE (no onward leg).
- TF-03: 198.51.100.31 dials 972599501806 as '', 0, 00 (404 each) then + (407, retry, 200).
- TF-04: 1005 dials premium 19005550123 (business hours); 1006 dials five international numbers in
  3 minutes; at T0+15 h (01:00, off-hours) 1004 dials high-risk 011881612345678.
- TF-05: 1007 has three answered external calls at once; 1008 makes ten 3-second external calls.
- TF-06: 198.51.100.61 INVITEs the SBC for 011447700900555 with no credentials and the SBC relays it to the
  gateway 30 ms later (the caller also gets 183 unauthenticated, TF-02).
- TF-07: 1009 REFERs a call to 011447911123456; the ESC sends the gateway an INVITE for 0116112345678
  with Diversion from 1010; 1010 dials the forwarding code *72011493012345678.
- TF-08: 1011 re-registers from 198.51.100.81 (binding moved voice -> public) and calls 01190212345678
  through the SBC with credentials (a remote user, so not a TF-06 relay);
  the unchallenged 1012 calls 4155550100; 1013 first registers at T0+26 h and calls 01133987654321.
Every external call by a phone is challenged (407) and retried with Proxy-Authorization, and the ESC
carries it on to the gateway (a second leg with its own Call-ID) unless noted.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pcapgen import ETH_IPV4, PcapWriter, ethernet, ipv4, mac, sip_message, udp  # noqa: E402

T0 = 1_699_956_000.0            # Tue 2023-11-14 10:00:00 UTC
DOMAIN = "example.com"
ESC, SBC, GW, TRUNK = "10.3.30.5", "10.3.30.10", "10.3.30.20", "203.0.113.50"


def phone(ext: str) -> str:
    """Extension 10NN sits at 10.3.10.NN."""
    return f"10.3.10.{int(ext) - 1000}"


class Capture:
    """SIP over UDP between the site's hosts, tagged with the VLAN of the sender's segment."""

    def __init__(self, seed: int):
        self.pcap = PcapWriter()
        self.rng = random.Random(seed)
        self.ident = 0

    @staticmethod
    def vlan(ip: str) -> tuple[int, ...]:
        if ip.startswith("10.3.10."):
            return (110,)
        return (300,) if ip.startswith("10.3.30.") else ()

    def send(self, ts: float, src: str, dst: str, payload: bytes) -> None:
        self.ident += 1
        octets = [int(x) for x in src.split(".")] + [int(x) for x in dst.split(".")]
        frame = ethernet(ipv4(src, dst, 17, udp(src, 5060, dst, 5060, payload), ident=self.ident & 0xFFFF),
                         ETH_IPV4, mac(octets[2] * 256 + octets[3]), mac(octets[6] * 256 + octets[7]), self.vlan(src))
        self.pcap.add(ts, frame)

    def digest(self, header: str, user: str, uri: str) -> tuple[str, str]:
        return (header, f'Digest username="{user}", realm="{DOMAIN}", nonce="{self.rng.getrandbits(64):016x}", '
                        f'uri="{uri}", response="{self.rng.getrandbits(128):032x}", algorithm=MD5')

    def request(self, ts: float, method: str, src: str, dst: str, ruri_user: str, call_id: str, cseq: int,
                from_user: str, to_user: str | None = None, to_tag: str | None = None, extra=(),
                cseq_method: str | None = None) -> list[tuple[str, str]]:
        headers = [("Via", f"SIP/2.0/UDP {src}:5060;branch=z9hG4bK{self.rng.getrandbits(40):010x}"),
                   ("Max-Forwards", "70"), ("From", f"<sip:{from_user}@{DOMAIN}>;tag=f{call_id[:8]}"),
                   ("To", f"<sip:{to_user or ruri_user}@{DOMAIN}>" + (f";tag={to_tag}" if to_tag else "")),
                   ("Call-ID", call_id), ("CSeq", f"{cseq} {cseq_method or method}"),
                   ("Contact", f"<sip:{from_user}@{src}:5060>"), ("User-Agent", "SamplePhone/2.0"), *extra]
        self.send(ts, src, dst, sip_message(f"{method} sip:{ruri_user}@{DOMAIN} SIP/2.0", headers))
        return headers

    def respond(self, ts: float, request: list[tuple[str, str]], src: str, dst: str, status: str,
                to_tag: str | None = None, extra=()) -> None:
        keep = [(n, v) for n, v in request if n in ("Via", "From", "Call-ID", "CSeq")]
        to = next(v for n, v in request if n == "To")
        if to_tag and ";tag=" not in to:
            to += f";tag={to_tag}"
        self.send(ts, src, dst, sip_message(f"SIP/2.0 {status}", keep + [("To", to), *extra]))

    def register(self, ts: float, ext: str, src: str, call_id: str, challenge: bool = True,
                 expires: int = 3600, server: str = ESC) -> None:
        cseq = 1
        req = self.request(ts, "REGISTER", src, server, ext, call_id, cseq, ext, extra=[("Expires", str(expires))])
        if challenge:
            self.respond(ts + 0.01, req, server, src, "401 Unauthorized",
                         extra=[("WWW-Authenticate", f'Digest realm="{DOMAIN}", nonce="n{ext}", algorithm=MD5')])
            cseq += 1
            req = self.request(ts + 0.02, "REGISTER", src, server, ext, call_id, cseq, ext,
                               extra=[("Expires", str(expires)), self.digest("Authorization", ext, f"sip:{DOMAIN}")])
        self.respond(ts + 0.03, req, server, src, "200 OK",
                     extra=[("Contact", f"<sip:{ext}@{src}:5060>;expires={expires}")])

    def call(self, ts: float, src: str, dst: str, number: str, call_id: str, account: str, *,
             challenge: bool = True, outcome: str = "200 OK", hold_s: float = 30.0, early: str = "180 Ringing",
             onward: str | None = GW, extra=(), final_extra=()) -> float:
        """One INVITE dialog from src via dst; returns when it was answered (or failed).

        With `challenge`, the first INVITE gets 407 and is retried with Proxy-Authorization (RFC 3261 §22.3).
        With `onward`, dst carries the call on to that host as a second leg (B2BUA) with its own Call-ID.
        """
        cseq, t = 1, ts
        req = self.request(t, "INVITE", src, dst, number, call_id, cseq, account, extra=extra)
        if challenge:
            self.respond(t + 0.01, req, dst, src, "407 Proxy Authentication Required", to_tag="auth",
                         extra=[("Proxy-Authenticate", f'Digest realm="{DOMAIN}", nonce="p{call_id[:6]}", algorithm=MD5')])
            self.request(t + 0.02, "ACK", src, dst, number, call_id, cseq, account, to_tag="auth")
            cseq, t = cseq + 1, t + 0.05
            req = self.request(t, "INVITE", src, dst, number, call_id, cseq, account,
                               extra=[*extra, self.digest("Proxy-Authorization", account, f"sip:{number}@{DOMAIN}")])
        self.respond(t + 0.01, req, dst, src, "100 Trying")
        if onward:
            self.call(t + 0.03, dst, onward, number, call_id + "-out", account, challenge=False, outcome=outcome,
                      hold_s=hold_s, early=early, onward=None)
        answered = t + 1.0
        if early:
            self.respond(t + 0.5, req, dst, src, early, to_tag="callee")
        self.respond(answered, req, dst, src, outcome, to_tag="callee", extra=final_extra)
        self.request(answered + 0.02, "ACK", src, dst, number, call_id, cseq, account, to_tag="callee")
        if outcome.startswith("2"):
            bye = self.request(answered + hold_s, "BYE", src, dst, number, call_id, cseq + 1, account,
                               to_tag="callee")
            self.respond(answered + hold_s + 0.01, bye, dst, src, "200 OK")
        return answered


def registrations(cap: Capture) -> None:
    for i, ext in enumerate(f"{n}" for n in range(1001, 1012)):
        cap.register(T0 + 1 + i * 0.2, ext, phone(ext), f"reg-{ext}@tf")
    cap.register(T0 + 4, "1012", phone("1012"), "reg-1012@tf", challenge=False)


def tf01_gateway(cap: Capture) -> None:
    cap.call(T0 + 60, "198.51.100.11", GW, "0114420794600001", "tf01-direct@attacker", "anonymous",
             challenge=False, early="183 Session Progress", onward=None)
    cap.call(T0 + 70, phone("1021"), GW, "2025550199", "tf01-phone@tf", "1021", challenge=False,
             outcome="403 Forbidden", early="", onward=None)


def tf02_unauthenticated(cap: Capture) -> None:
    cap.call(T0 + 120, "198.51.100.21", ESC, "01133123456789", "tf02-open@attacker", "guest", challenge=False,
             onward=None)


def tf03_walking(cap: Capture) -> None:
    src = "198.51.100.31"
    for i, prefix in enumerate(("", "0", "00")):
        cap.call(T0 + 200 + i * 2, src, SBC, prefix + "972599501806", f"tf03-walk-{i}@attacker", "100",
                 challenge=False, outcome="404 Not Found", early="", onward=None)
    cap.call(T0 + 208, src, SBC, "+972599501806", "tf03-walk-3@attacker", "100", onward=None)


def tf04_destinations(cap: Capture) -> None:
    cap.call(T0 + 400, phone("1005"), ESC, "19005550123", "tf04-premium@tf", "1005")
    for i in range(5):
        cap.call(T0 + 450 + i * 40, phone("1006"), ESC, f"01144207946000{i}", f"tf04-intl-{i}@tf", "1006",
                 hold_s=20)
    cap.call(T0 + 15 * 3600, phone("1004"), ESC, "011881612345678", "tf04-night@tf", "1004")


def tf05_velocity(cap: Capture) -> None:
    for i in range(3):
        cap.call(T0 + 900 + i * 5, phone("1007"), ESC, f"202555010{i + 1}", f"tf05-conc-{i}@tf", "1007", hold_s=60)
    for i in range(10):
        cap.call(T0 + 1000 + i * 20, phone("1008"), ESC, "3125550142", f"tf05-short-{i}@tf", "1008", hold_s=3)


def tf06_relay(cap: Capture) -> None:
    cap.call(T0 + 1250, "198.51.100.61", SBC, "011447700900555", "tf06-relay@attacker", "anonymous",
             challenge=False, early="183 Session Progress", onward=GW)


def tf07_forwarding(cap: Capture) -> None:
    cap.call(T0 + 1300, phone("1009"), ESC, "1002", "tf07-refer@tf", "1009", hold_s=40, onward=None)
    cap.request(T0 + 1310, "REFER", phone("1009"), ESC, "1002", "tf07-refer@tf", 3, "1009", to_tag="callee",
                extra=[("Refer-To", f"<sip:011447911123456@{DOMAIN}>"), ("Referred-By", f"<sip:1009@{DOMAIN}>")])
    cap.call(T0 + 1320, ESC, GW, "0116112345678", "tf07-diversion@tf", "1010", challenge=False, onward=None,
             extra=[("Diversion", f"<sip:1010@{DOMAIN}>;reason=unconditional")])
    cap.call(T0 + 1340, phone("1010"), ESC, "*72011493012345678", "tf07-code@tf", "1010", onward=None, hold_s=2)


def tf08_accounts(cap: Capture) -> None:
    hijacker = "198.51.100.81"
    cap.register(T0 + 1500, "1011", hijacker, "tf08-hijack-reg@attacker")
    cap.call(T0 + 1520, hijacker, SBC, "01190212345678", "tf08-hijack@attacker", "1011")
    cap.call(T0 + 1600, phone("1012"), ESC, "4155550100", "tf08-unchallenged@tf", "1012")
    cap.register(T0 + 26 * 3600, "1013", phone("1013"), "reg-1013@tf")
    cap.call(T0 + 26 * 3600 + 60, phone("1013"), ESC, "01133987654321", "tf08-new@tf", "1013")


def build() -> PcapWriter:
    cap = Capture(20231114)
    for scenario in (registrations, tf01_gateway, tf02_unauthenticated, tf03_walking, tf04_destinations,
                     tf05_velocity, tf06_relay, tf07_forwarding, tf08_accounts):
        scenario(cap)
    return cap.pcap


def main(out: str) -> None:
    build().save(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "tf-attacks.pcap"))
