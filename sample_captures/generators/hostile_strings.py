"""Writes sample_captures/hostile-strings.pcap: SIP and DNS whose text attacks the analyst reading voipwatch's
outputs (spreadsheet formulas, terminal escape sequences, invalid UTF-8, very long values).

What it holds (the labels tests/test_hostile_strings.py asserts; every value below is what the
dissectors decode, byte for byte):
- Call 1, Call-ID `-2+3+cmd@evil` (a legal word@word Call-ID that a spreadsheet reads as a formula),
  from 203.0.113.66 through the PBX 192.0.2.5: the From user is the percent-escaped
  `=cmd|' /C calc'!A0` (RFC 3261 §19.1.2 escapes, which the dissector resolves because the result is
  printable), the R-URI and To user the E.164 number +15551234567, a Contact user `@SUM(1+1)`, a
  User-Agent holding OSC (retitle), CSI (clear screen), BEL, backspaces, DEL, C1 CSI and a
  right-to-left override; 180 and 200 carry reason phrases with CSI, C0 controls XML 1.0 forbids,
  NUL, markup and TeX ("$...$"), and a =HYPERLINK formula. 1 s of G.711 mu-law RTP each way, BYE.
- Call 2: a 3,000-character Call-ID, From user bytes that are not UTF-8, a User-Agent of 20,000
  characters (cut at the dissector's 16,384, sip.header_too_long), rejected 486 with a reason phrase
  of escape sequences.
- A REGISTER whose address-of-record user is `=1+1` followed by CSI, BEL and a C1 CSI, and a 200
  answering it (the registrar finding quotes the address-of-record).
- A DNS query and answer for a name whose first label holds ESC ] 0 ; BEL (an OSC).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pcapgen import UdpCapture, rtp, sdp_body, tone_ulaw  # noqa: E402

T0 = 1_700_200_000.0
PHONE, PBX, CALLEE, RESOLVER = "203.0.113.66", "192.0.2.5", "192.0.2.20", "192.0.2.53"

CALL1_ID = "-2+3+cmd@evil"
FORMULA_USER_ESCAPED = "%3Dcmd%7C%27%20%2FC%20calc%27%21A0"        # =cmd|' /C calc'!A0
E164 = "+15551234567"
CONTACT_USER = "@SUM(1+1)"
TERMINAL_UA = "\x1b]0;owned\x07\x1b[2J\x1b[1;31mEvilPhone\x08\x08\x08\x7f\x9b31m\u202egnp.exe"
RINGING = "Ringing \x1b[1A\x1b[2K\x01\x0c\x00 <script>alert(1)</script> & $\\frac{1}{0}$"
OK_REASON = "OK =HYPERLINK(\"http://evil.example/\",\"x\")"
CALL2_ID = "long-" + "0123456789" * 299 + "@evil"                # 3,000 characters
NOT_UTF8_USER = b"\xff\xfe\xc3(bad"
LONG_UA = "U" * 20_000
BUSY = "Busy \x1b[5m\x1b[8mhidden\x1b[0m\x85"
REGISTER_USER = "=1+1\x1b[2J\x07\x9b"           # a formula, CSI erase display, BEL, a C1 CSI
DNS_LABEL = b"\x1b]0;dns\x07"


def sip(start_line: str, headers: list[tuple[str, str | bytes]], body: str = "") -> bytes:
    """A SIP message from text or raw bytes (for values that are not UTF-8), CRLF line ends, correct
    Content-Length (RFC 3261 §7)."""
    lines = [start_line.encode()] + [name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
                                     for name, value in headers]
    if body:
        lines.append(b"Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body.encode()


def reply(request: list[tuple[str, str | bytes]], status: str, to_tag: str = "", body: str = "",
          extra: tuple = ()) -> bytes:
    keep = [(n, v) for n, v in request if n in ("Via", "From", "Call-ID", "CSeq")]
    to = next(v for n, v in request if n == "To") + (f";tag={to_tag}" if to_tag else "")
    return sip(f"SIP/2.0 {status}", keep + [("To", to), *extra], body)


def call1(cap: UdpCapture) -> None:
    t = T0 + 1
    invite = [("Via", f"SIP/2.0/UDP {PHONE}:5060;branch=z9hG4bKh1"), ("Max-Forwards", "70"),
              ("From", f"\"Mallory\" <sip:{FORMULA_USER_ESCAPED}@evil.example>;tag=m1"),
              ("To", f"<sip:{E164}@{PBX}>"), ("Call-ID", CALL1_ID), ("CSeq", "1 INVITE"),
              ("Contact", f"<sip:{CONTACT_USER}@{PHONE}:5060>"), ("User-Agent", TERMINAL_UA)]
    cap.udp(t, PHONE, 5060, PBX, 5060, sip(f"INVITE sip:{E164}@{PBX} SIP/2.0", invite,
                                           sdp_body(PHONE, PHONE, 30000, session_id=11)))
    cap.udp(t + 0.01, PBX, 5060, PHONE, 5060, reply(invite, "100 Trying"))
    cap.udp(t + 0.2, PBX, 5060, PHONE, 5060, reply(invite, f"180 {RINGING}", "p1"))
    cap.udp(t + 0.5, PBX, 5060, PHONE, 5060, reply(invite, f"200 {OK_REASON}", "p1",
                                                   sdp_body(CALLEE, CALLEE, 31000, session_id=12),
                                                   (("Contact", f"<sip:{E164}@{CALLEE}:5060>"),)))
    ack = [("Via", f"SIP/2.0/UDP {PHONE}:5060;branch=z9hG4bKh1ack"), ("From", invite[2][1]),
           ("To", f"<sip:{E164}@{PBX}>;tag=p1"), ("Call-ID", CALL1_ID), ("CSeq", "1 ACK")]
    cap.udp(t + 0.52, PHONE, 5060, PBX, 5060, sip(f"ACK sip:{E164}@{CALLEE}:5060 SIP/2.0", ack))
    for i in range(50):                          # 1 s of 20 ms G.711 mu-law each way (RFC 3551 §4.5.14)
        cap.udp(t + 0.55 + 0.02 * i, PHONE, 30000, CALLEE, 31000,
                rtp(i, 160 * i, 0x66660001, 0, tone_ulaw(1000, 0.5, 160, 160 * i), marker=i == 0))
        cap.udp(t + 0.551 + 0.02 * i, CALLEE, 31000, PHONE, 30000,
                rtp(i, 160 * i, 0x66660002, 0, tone_ulaw(440, 0.25, 160, 160 * i), marker=i == 0))
    bye = [("Via", f"SIP/2.0/UDP {CALLEE}:5060;branch=z9hG4bKh1bye"), ("From", f"<sip:{E164}@{PBX}>;tag=p1"),
           ("To", invite[2][1]), ("Call-ID", CALL1_ID), ("CSeq", "2 BYE")]
    cap.udp(t + 1.6, CALLEE, 5060, PHONE, 5060, sip(f"BYE sip:{CONTACT_USER}@{PHONE}:5060 SIP/2.0", bye))
    cap.udp(t + 1.61, PHONE, 5060, CALLEE, 5060, sip("SIP/2.0 200 OK", bye))


def call2(cap: UdpCapture) -> None:
    t = T0 + 5
    invite = [("Via", f"SIP/2.0/UDP {PHONE}:5062;branch=z9hG4bKh2"), ("Max-Forwards", "70"),
              ("From", b"<sip:" + NOT_UTF8_USER + b"@evil.example>;tag=m2"), ("To", f"<sip:1002@{PBX}>"),
              ("Call-ID", CALL2_ID), ("CSeq", "1 INVITE"), ("User-Agent", LONG_UA)]
    cap.udp(t, PHONE, 5062, PBX, 5060, sip(f"INVITE sip:1002@{PBX} SIP/2.0", invite,
                                           sdp_body(PHONE, PHONE, 30010, session_id=21)))
    cap.udp(t + 0.1, PBX, 5060, PHONE, 5062, reply(invite, f"486 {BUSY}", "p2"))
    ack = [invite[0], invite[2], ("To", f"<sip:1002@{PBX}>;tag=p2"), ("Call-ID", CALL2_ID), ("CSeq", "1 ACK")]
    cap.udp(t + 0.12, PHONE, 5062, PBX, 5060, sip(f"ACK sip:1002@{PBX} SIP/2.0", ack))


def registration(cap: UdpCapture) -> None:
    t = T0 + 8
    register = [("Via", f"SIP/2.0/UDP {PHONE}:5064;branch=z9hG4bKh3"), ("Max-Forwards", "70"),
                ("From", f"<sip:{REGISTER_USER}@evil.example>;tag=r3"), ("To", f"<sip:{REGISTER_USER}@evil.example>"),
                ("Call-ID", "reg-3@evil"), ("CSeq", "1 REGISTER"), ("Contact", f"<sip:x@{PHONE}:5064>"),
                ("Expires", "60")]
    cap.udp(t, PHONE, 5064, PBX, 5060, sip("REGISTER sip:evil.example SIP/2.0", register))
    cap.udp(t + 0.02, PBX, 5060, PHONE, 5064, reply(register, "200 OK", "r3", extra=(("Expires", "60"),)))


def dns(cap: UdpCapture) -> None:
    """RFC 1035 §4.1: a label is any 1-63 octets."""
    t = T0 + 0.1
    name = bytes([len(DNS_LABEL)]) + DNS_LABEL + b"\x04evil\x07example\x00"
    question = name + b"\x00\x01\x00\x01"
    cap.udp(t, PHONE, 40000, RESOLVER, 53, b"\x66\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + question)
    answer = b"\xc0\x0c\x00\x01\x00\x01" + (60).to_bytes(4, "big") + b"\x00\x04" + bytes([198, 51, 100, 7])
    cap.udp(t + 0.003, RESOLVER, 53, PHONE, 40000, b"\x66\x01\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + question + answer)


def main(out: str) -> None:
    cap = UdpCapture()
    dns(cap)
    call1(cap)
    call2(cap)
    registration(cap)
    cap.pcap.save(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "hostile-strings.pcap"))
