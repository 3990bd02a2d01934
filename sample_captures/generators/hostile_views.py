"""Writes sample_captures/hostile-views.pcap: two calls that once broke `voipwatch call`'s views.

What it holds (the labels tests/test_hostile_views.py asserts):
- Call `wild-ts@views` (10.20.0.11 -> 10.20.0.12, direct): INVITE/100/180/200/ACK, 2 s of G.711 mu-law
  RTP each way at 20 ms (SSRC 0x77770001 caller, 0x77770002 callee), BYE/200. In the caller's
  stream, the packet with sequence number 40 carries an RTP timestamp 2^31 - 1 units (74 hours at
  8000 Hz) beyond where it belongs; every other timestamp is in step (160 units a packet).
- Call `ladder-bomb@views`: 10.20.0.11 calls the server 10.20.0.5 (INVITE/100/180/200/ACK from port
  5060), then 101 other source ports on 11 hosts (10.20.1.1-10.20.1.11, ports 6000 + k) send INFO
  requests in the dialog, three rounds of one INFO per port, each answered 200 OK; the first 8
  INFOs of the first round are retransmitted; BYE/200 from the caller. 5 + 606 + 8 + 2 = 621
  messages between 103 addresses on 13 hosts.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pcapgen import UdpCapture, rtp, sdp_body, sip_message, tone_ulaw  # noqa: E402

T0 = 1_700_300_000.0
CALLER, CALLEE, SERVER = "10.20.0.11", "10.20.0.12", "10.20.0.5"
WILD_SEQ = 40
WILD_JUMP = (1 << 31) - 1
INFO_HOSTS = [f"10.20.1.{h}" for h in range(1, 12)]
INFO_PORTS = 101
INFO_ROUNDS = 3
RETRANSMITTED = 8


def headers(call_id: str, src: str, sport: int, branch: str, cseq: str, to_tag: str = "") -> list[tuple[str, str]]:
    return [("Via", f"SIP/2.0/UDP {src}:{sport};branch=z9hG4bK{branch}"), ("Max-Forwards", "70"),
            ("From", f"<sip:1001@views.example>;tag=a{call_id[:4]}"),
            ("To", "<sip:1002@views.example>" + (f";tag={to_tag}" if to_tag else "")),
            ("Call-ID", call_id), ("CSeq", cseq)]


def reply(request: list[tuple[str, str]], status: str, to_tag: str = "", body: str = "") -> bytes:
    keep = [(n, v) for n, v in request if n in ("Via", "From", "Call-ID", "CSeq")]
    to = next(v for n, v in request if n == "To")
    if to_tag and ";tag=" not in to:
        to += f";tag={to_tag}"
    return sip_message(f"SIP/2.0 {status}", keep + [("To", to)], body)


def setup(cap: UdpCapture, t: float, call_id: str, peer: str) -> list[tuple[str, str]]:
    """INVITE/100/180/200/ACK from CALLER:5060 to peer:5060; returns the INVITE's headers."""
    invite = headers(call_id, CALLER, 5060, f"{call_id[:4]}inv", "1 INVITE")
    cap.udp(t, CALLER, 5060, peer, 5060, sip_message(f"INVITE sip:1002@{peer} SIP/2.0", invite,
                                                     sdp_body(CALLER, CALLER, 42000, session_id=31)))
    cap.udp(t + 0.01, peer, 5060, CALLER, 5060, reply(invite, "100 Trying"))
    cap.udp(t + 0.2, peer, 5060, CALLER, 5060, reply(invite, "180 Ringing", "b1"))
    cap.udp(t + 0.5, peer, 5060, CALLER, 5060, reply(invite, "200 OK", "b1", sdp_body(peer, peer, 43000, session_id=32)))
    ack = headers(call_id, CALLER, 5060, f"{call_id[:4]}ack", "1 ACK", "b1")
    cap.udp(t + 0.52, CALLER, 5060, peer, 5060, sip_message(f"ACK sip:1002@{peer}:5060 SIP/2.0", ack))
    return invite


def teardown(cap: UdpCapture, t: float, call_id: str, peer: str, cseq: int) -> None:
    bye = headers(call_id, CALLER, 5060, f"{call_id[:4]}bye", f"{cseq} BYE", "b1")
    cap.udp(t, CALLER, 5060, peer, 5060, sip_message(f"BYE sip:1002@{peer}:5060 SIP/2.0", bye))
    cap.udp(t + 0.01, peer, 5060, CALLER, 5060, reply(bye, "200 OK"))


def wild_timestamp_call(cap: UdpCapture) -> None:
    t = T0 + 1
    setup(cap, t, "wild-ts@views", CALLEE)
    for i in range(100):                    # 2 s each way at 20 ms (RFC 3551 §4.5.14: 160 units a packet)
        stamp = 160 * i + (WILD_JUMP if i == WILD_SEQ else 0)
        cap.udp(t + 0.55 + 0.02 * i, CALLER, 42000, CALLEE, 43000,
                rtp(i, stamp, 0x77770001, 0, tone_ulaw(1000, 0.5, 160, 160 * i), marker=i == 0))
        cap.udp(t + 0.551 + 0.02 * i, CALLEE, 43000, CALLER, 42000,
                rtp(i, 160 * i, 0x77770002, 0, tone_ulaw(440, 0.25, 160, 160 * i), marker=i == 0))
    teardown(cap, t + 2.7, "wild-ts@views", CALLEE, 2)


def ladder_bomb_call(cap: UdpCapture) -> None:
    t = T0 + 10
    call_id = "ladder-bomb@views"
    setup(cap, t, call_id, SERVER)
    cseq = 2
    t += 1.0
    for rnd in range(INFO_ROUNDS):
        for k in range(INFO_PORTS):
            host, port = INFO_HOSTS[k % len(INFO_HOSTS)], 6000 + k
            info = headers(call_id, host, port, f"info{rnd}-{k}", f"{cseq} INFO", "b1")
            message = sip_message(f"INFO sip:1002@{SERVER}:5060 SIP/2.0", info)
            cap.udp(t, host, port, SERVER, 5060, message)
            if rnd == 0 and k < RETRANSMITTED:
                cap.udp(t + 0.5, host, port, SERVER, 5060, message)      # RFC 3261 §17.1.2.2: T1 = 500 ms
            cap.udp(t + 0.6, SERVER, 5060, host, port, reply(info, "200 OK"))
            cseq += 1
            t += 0.01
    teardown(cap, t + 1.0, call_id, SERVER, cseq)


def main(out: str) -> None:
    cap = UdpCapture()
    wild_timestamp_call(cap)
    ladder_bomb_call(cap)
    cap.pcap.save(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "hostile-views.pcap"))
