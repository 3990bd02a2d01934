"""Writes sample_captures/rf-dialling.pcap: destinations an authenticated account dials next to a real
INVITE enumeration, for RF-02 (registrar 10.1.10.5 on voice VLAN 110, site model
sample_captures/configs/registration_flood.toml).

- t=0: phone 10.1.10.31 registers 3001 with digest (401, then 200).
- t=10-49: the phone calls 40 external numbers 00442079460000-39, one a second: each INVITE is answered
  407 Proxy Authentication Required (ACKed), and the INVITE re-sent with Proxy-Authorization is answered
  404 (every third number), else 200 (then ACK and BYE). The 40 x 407 ask the caller to log in; they reveal
  no user (issue 12: they were counted as "valid users revealed").
- t=100-139: 198.51.100.99 (no credentials, no User-Agent) sends INVITEs to extensions 3000-3039, one a
  second; the proxy answers 407 for the existing ones (3001-3010) and 404 for the rest: INVITE enumeration
  that reveals 10 valid extensions (svwar's INVITE mode).
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pcapgen import sip_message  # noqa: E402
from rf_attacks import DOMAIN, ESC, PHONE_UA, Net  # noqa: E402

PHONE, PROBER = "10.1.10.31", "198.51.100.99"
NUMBERS = [f"0044207946{n:04d}" for n in range(40)]
EXTENSIONS = [str(3000 + n) for n in range(40)]
VALID = {str(n) for n in range(3001, 3011)}


def invite(net: Net, ts, src, callee, call_id, cseq, *, tag, branch, proxy_auth=False, ua=PHONE_UA):
    headers = [("Via", f"SIP/2.0/UDP {src}:5060;branch=z9hG4bK{branch}"),
               ("From", f"<sip:3001@{DOMAIN}>;tag={tag}"), ("To", f"<sip:{callee}@{DOMAIN}>"),
               ("Call-ID", call_id), ("CSeq", f"{cseq} INVITE"), ("Contact", f"<sip:3001@{src}:5060>")]
    if ua:
        headers.append(("User-Agent", ua))
    if proxy_auth:
        response = hashlib.md5(f"{call_id}:{cseq}".encode()).hexdigest()
        headers.append(("Proxy-Authorization", f'Digest username="3001", realm="{DOMAIN}", nonce="n{cseq}", '
                                               f'uri="sip:{callee}@{DOMAIN}", response="{response}", algorithm=MD5'))
    net.send(ts, src, ESC, sip_message(f"INVITE sip:{callee}@{DOMAIN} SIP/2.0", headers))
    return headers


def respond(net: Net, ts, headers, status, dst, *, to_tag):
    keep = [(n, v) for n, v in headers if n in ("Via", "From", "Call-ID", "CSeq")]
    to = next(v for n, v in headers if n == "To") + f";tag={to_tag}"
    extra = [("Proxy-Authenticate", f'Digest realm="{DOMAIN}", nonce="{net.token(16)}", algorithm=MD5')] \
        if status.startswith("407") else []
    net.send(ts, ESC, dst, sip_message(f"SIP/2.0 {status}", keep + [("To", to)] + extra + [("Server", "SamplePBX/2.0")]))


def in_dialog(net: Net, ts, method, headers, cseq, to_tag, src):
    keep = [("Via", f"SIP/2.0/UDP {src}:5060;branch=z9hG4bK{net.token()}")]
    keep += [(n, v) for n, v in headers if n in ("From", "Call-ID")]
    keep += [("To", next(v for n, v in headers if n == "To") + f";tag={to_tag}"), ("CSeq", f"{cseq} {method}")]
    callee = next(v for n, v in headers if n == "To").split("sip:")[1].split("@")[0]
    net.send(ts, src, ESC, sip_message(f"{method} sip:{callee}@{DOMAIN} SIP/2.0", keep))


def build() -> Net:
    net = Net(seed=21)
    net.register(0, PHONE, "3001")
    for n, number in enumerate(NUMBERS):
        ts, call_id, tag = 10.0 + n, f"{net.token(12)}@{PHONE}", net.token()
        h = invite(net, ts, PHONE, number, call_id, 1, tag=tag, branch=net.token())
        rejected_tag = net.token()
        respond(net, ts + 0.01, h, "407 Proxy Authentication Required", PHONE, to_tag=rejected_tag)
        in_dialog(net, ts + 0.02, "ACK", h, 1, rejected_tag, PHONE)
        h = invite(net, ts + 0.1, PHONE, number, call_id, 2, tag=tag, branch=net.token(), proxy_auth=True)
        answer_tag = net.token()
        if n % 3 == 0:
            respond(net, ts + 0.2, h, "404 Not Found", PHONE, to_tag=answer_tag)
            in_dialog(net, ts + 0.21, "ACK", h, 2, answer_tag, PHONE)
        else:
            respond(net, ts + 0.3, h, "200 OK", PHONE, to_tag=answer_tag)
            in_dialog(net, ts + 0.31, "ACK", h, 2, answer_tag, PHONE)
            in_dialog(net, ts + 0.6, "BYE", h, 3, answer_tag, PHONE)
    for n, ext in enumerate(EXTENSIONS):
        ts = 100.0 + n
        h = invite(net, ts, PROBER, ext, f"{net.token(12)}@{PROBER}", 1, tag=net.token(), branch=net.token(), ua=None)
        respond(net, ts + 0.01, h, "407 Proxy Authentication Required" if ext in VALID else "404 Not Found",
                PROBER, to_tag=net.token())
    return net


def main(out: str) -> None:
    build().pcap.save(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "rf-dialling.pcap"))
