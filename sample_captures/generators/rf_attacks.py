"""Writes sample_captures/rf-attacks.pcap: registration attacks on a small site, each from its own source.

Voice VLAN 110: ESC/registrar 10.1.10.5 (digest auth), a legacy registrar 10.1.10.6 that auto-registers,
phones 10.1.10.11-16 (1001-1006). Data VLAN 20: 10.1.20.0/24. Public attackers reach the ESC on VLAN 110.
The site model is sample_captures/configs/registration_flood.toml. What it holds (the labels tests assert):
- t=0-20: phones 1001-1004 and 1006 register with digest (401, then 200); 1005 registers at the legacy
  registrar, answered 200 with no challenge (RF-06).
- t=100: 203.0.113.10 sends OPTIONS with User-Agent friendly-scanner to the ESC (RF-01, high: public source
  reaching the ESC); t=105: 203.0.113.11 claims User-Agent "Zoiper rv2.8" but uses SIPVicious's From tag
  (RF-01, matched by from_tag); t=110: 10.1.20.60 sends OPTIONS with User-Agent sipsak (RF-01, low).
- t=200: 198.51.100.20 sends OPTIONS to 25 hosts 10.1.10.100-124 in 24 s (RF-01 sweep, hosts);
  t=260: 198.51.100.21 sends OPTIONS to the ESC on ports 5060-5071 (RF-01 sweep, ports).
- t=400: 198.51.100.30 sends REGISTER for users 1000-1039 in 20 s; the ESC answers 401 for 1001-1006 and
  1010 and 404 for the rest (RF-02, high: the answers reveal the valid extensions).
- t=600: 198.51.100.40 tries 15 wrong passwords for 1002, one every 2 s, each answered 403 (RF-03).
- t=800: six sources 198.51.100.51-56 each try 1003 twice, 20 s apart (RF-04 distributed).
- t=1200: 198.51.100.60 tries one password for each of 2000-2024, 4 s apart (RF-04 spraying).
- t=1500: 198.51.100.70 fails 12 times for 1004 in 12 s, then gets 200 (RF-03 and RF-05 critical; the new
  binding from a public source beside the phone's is RF-07 high).
- t=1800: 10.1.20.66 on the data VLAN registers 1001 with valid credentials (RF-07 high, data zone);
  t=1900: 10.1.20.67 removes 1006's bindings with Contact: * and Expires: 0 (RF-07 high, deregister).
- t=2100: 203.0.113.90 sends 230 OPTIONS to the ESC in 10 s; the ESC answers 503 to every other one
  from the 41st on (RF-08 high).
"""
from __future__ import annotations

import hashlib
import ipaddress
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pcapgen import ETH_IPV4, PcapWriter, ethernet, ipv4, mac, sip_message, udp  # noqa: E402

T0 = 1_700_000_000.0
VOICE, DATA = 110, 20
DOMAIN = "pbx.example.com"
ESC, LEGACY = "10.1.10.5", "10.1.10.6"
PHONE_UA = "SamplePhone/1.0"
PHONES = {f"100{i}": f"10.1.10.1{i}" for i in range(1, 7)}
VALID = {*PHONES, "1010"} | {str(n) for n in range(2000, 2025)}


class Net:
    """UDP SIP between hosts on tagged VLANs, with deterministic Call-IDs, tags and branches."""

    def __init__(self, seed: int):
        self.pcap = PcapWriter()
        self.rng = random.Random(seed)
        self.ident = 0

    def token(self, n: int = 8) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(n))

    def send(self, ts, src, dst, payload, vlan=VOICE, sport=5060, dport=5060):
        self.ident += 1
        frame = ethernet(ipv4(src, dst, 17, udp(src, sport, dst, dport, payload), ident=self.ident & 0xFFFF),
                         ETH_IPV4, _mac(src), _mac(dst), (vlan,) if vlan else ())
        self.pcap.add(T0 + ts, frame)

    def request(self, ts, method, src, dst, user, call_id, cseq, *, to=None, ruri=None, ua=PHONE_UA, auth=False,
                contact=None, expires=None, tag=None, vlan=VOICE, sport=5060, dport=5060):
        """Send a request; returns its headers for the answer. `auth` adds a digest Authorization."""
        to = to or user
        ruri = ruri or (f"sip:{DOMAIN}" if method == "REGISTER" else f"sip:{to}@{dst}")
        headers = [("Via", f"SIP/2.0/UDP {src}:{sport};branch=z9hG4bK{self.token()}"),
                   ("From", f"<sip:{user}@{DOMAIN}>;tag={tag or self.token()}"), ("To", f"<sip:{to}@{DOMAIN}>"),
                   ("Call-ID", call_id), ("CSeq", f"{cseq} {method}")]
        if contact:
            headers.append(("Contact", contact))
        if expires is not None:
            headers.append(("Expires", str(expires)))
        if ua:
            headers.append(("User-Agent", ua))
        if auth:
            response = hashlib.md5(f"{call_id}:{cseq}:{self.token()}".encode()).hexdigest()
            headers.append(("Authorization", f'Digest username="{user}", realm="{DOMAIN}", nonce="n{cseq}", '
                                             f'uri="sip:{DOMAIN}", response="{response}", algorithm=MD5'))
        self.send(ts, src, dst, sip_message(f"{method} {ruri} SIP/2.0", headers), vlan, sport, dport)
        return headers

    def answer(self, ts, headers, status, src, dst, vlan=VOICE, sport=5060, dport=5060, contact=None, expires=None):
        keep = [(n, v) for n, v in headers if n in ("Via", "From", "Call-ID", "CSeq")]
        to = next(v for n, v in headers if n == "To") + f";tag={self.token()}"
        extra = [("To", to)]
        if status == "401 Unauthorized":
            extra.append(("WWW-Authenticate", f'Digest realm="{DOMAIN}", nonce="{self.token(16)}", algorithm=MD5'))
        if contact:
            extra.append(("Contact", f"{contact};expires={expires}"))
        self.send(ts, src, dst, sip_message(f"SIP/2.0 {status}", keep + extra + [("Server", "SamplePBX/2.0")]),
                  vlan, sport, dport)

    def register(self, ts, src, user, *, registrar=ESC, vlan=VOICE, ua=PHONE_UA, challenge=True, auth=None,
                 contact=None, expires=3600, ok=True):
        """A registration: REGISTER, 401, REGISTER with credentials (`auth`, default: after a challenge), 200
        (or 403 when not ok)."""
        call_id = f"{self.token(12)}@{src}"
        contact = contact or f"<sip:{user}@{src}:5060>"
        cseq = 1
        if challenge:
            h = self.request(ts, "REGISTER", src, registrar, user, call_id, cseq, ua=ua, contact=contact,
                             expires=expires, vlan=vlan)
            self.answer(ts + 0.01, h, "401 Unauthorized", registrar, src, vlan)
            cseq, ts = cseq + 1, ts + 0.05
        h = self.request(ts, "REGISTER", src, registrar, user, call_id, cseq, ua=ua, contact=contact,
                         expires=expires, vlan=vlan, auth=challenge if auth is None else auth)
        if ok:
            bound = None if contact == "*" else contact.strip("<>")     # RFC 3261 §10.3 step 8: remaining bindings
            self.answer(ts + 0.01, h, "200 OK", registrar, src, vlan, contact=bound, expires=expires)
        else:
            self.answer(ts + 0.01, h, "403 Forbidden", registrar, src, vlan)


def _mac(ip: str) -> bytes:
    return mac(int(ipaddress.ip_address(ip)) & 0xFFFFFFFF)


def build() -> Net:
    net = Net(seed=3)
    for i, (user, ip) in enumerate(sorted(PHONES.items())):
        if user == "1005":
            net.register(2 + i, ip, user, registrar=LEGACY, challenge=False)
        else:
            net.register(2 + i, ip, user)

    # RF-01: tool fingerprints
    h = net.request(100, "OPTIONS", "203.0.113.10", ESC, "100", "1736251880113", 1, ua="friendly-scanner",
                    tag="3833663330303031313363340131393939383835373034", sport=5071)
    net.answer(100.01, h, "200 OK", ESC, "203.0.113.10", dport=5071)
    net.request(105, "OPTIONS", "203.0.113.11", ESC, "100", "9417235", 1, ua="Zoiper rv2.8",
                tag="6333373161633236313363340133383235363338373938", sport=5072)
    h = net.request(110, "OPTIONS", "10.1.20.60", ESC, "sipsak", "sipsak-1", 1, ua="sipsak 0.9.8", vlan=DATA)
    net.answer(110.01, h, "200 OK", ESC, "10.1.20.60", vlan=DATA)
    # RF-01: sweeps (hosts, then ports)
    for n in range(25):
        net.request(200 + n, "OPTIONS", "198.51.100.20", f"10.1.10.{100 + n}", "100", net.token(16), 1,
                    ua="Asterisk PBX 16.2")
    for n in range(12):
        h = net.request(260 + n, "OPTIONS", "198.51.100.21", ESC, "100", net.token(16), 1, ua="Asterisk PBX 16.2",
                        dport=5060 + n)
        if n == 0:
            net.answer(260.01, h, "200 OK", ESC, "198.51.100.21")
    # RF-02: extension enumeration with REGISTER
    for n in range(40):
        user, ts = str(1000 + n), 400 + n * 0.5
        h = net.request(ts, "REGISTER", "198.51.100.30", ESC, user, net.token(16), 1, ua="Grandstream GXP2000",
                        contact=f"<sip:{user}@198.51.100.30>")
        net.answer(ts + 0.01, h, "401 Unauthorized" if user in VALID else "404 Not Found", ESC, "198.51.100.30")
    # RF-03: brute force of 1002 from one source, never succeeding
    net.register(600, "198.51.100.40", "1002", ua="Yealink SIP-T46S", ok=False)
    for n in range(14):
        h = net.request(602 + 2 * n, "REGISTER", "198.51.100.40", ESC, "1002", net.token(16), 2, ua="Yealink SIP-T46S",
                        auth=True, contact="<sip:1002@198.51.100.40>")
        net.answer(602.01 + 2 * n, h, "403 Forbidden", ESC, "198.51.100.40")
    # RF-04: one user failing from six sources, twice each
    for n in range(12):
        net.register(800 + 20 * n, f"198.51.100.{51 + n % 6}", "1003", ua="Yealink SIP-T46S", ok=False)
    # RF-04: one source, one password per user for 25 users
    for n in range(25):
        net.register(1200 + 4 * n, "198.51.100.60", str(2000 + n), ua="PolycomVVX-VVX_410-UA/5.9", ok=False)
    # RF-05 (and RF-03, RF-07): 12 failures for 1004, then a success
    call_id = "lock-1004@198.51.100.70"
    h = net.request(1500, "REGISTER", "198.51.100.70", ESC, "1004", call_id, 1, ua="Yealink SIP-T46S",
                    contact="<sip:1004@198.51.100.70>", expires=3600)
    net.answer(1500.01, h, "401 Unauthorized", ESC, "198.51.100.70")
    for n in range(13):
        h = net.request(1501 + n, "REGISTER", "198.51.100.70", ESC, "1004", call_id, 2 + n, ua="Yealink SIP-T46S",
                        auth=True, contact="<sip:1004@198.51.100.70>", expires=3600)
        if n < 12:
            net.answer(1501.01 + n, h, "403 Forbidden", ESC, "198.51.100.70")
        else:
            net.answer(1501.01 + n, h, "200 OK", ESC, "198.51.100.70", contact="sip:1004@198.51.100.70", expires=3600)
    # RF-07: a data-VLAN host takes over 1001; another removes 1006's bindings
    net.register(1800, "10.1.20.66", "1001", vlan=DATA, ua="Linphone/3.12.0")
    net.register(1900, "10.1.20.67", "1006", vlan=DATA, ua="Linphone/3.12.0", contact="*", expires=0)
    # RF-08: an OPTIONS flood, 23 requests/s for 10 s, answered 503 once the ESC is overloaded
    for n in range(230):
        ts = 2100 + n / 23
        h = net.request(ts, "OPTIONS", "203.0.113.90", ESC, "flood", f"f{n}", 1, ua=None, sport=5090)
        if n >= 40 and n % 2 == 0:
            net.answer(ts + 0.002, h, "503 Service Unavailable", ESC, "203.0.113.90", dport=5090)
    return net


def main(out: str) -> None:
    build().pcap.save(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "rf-attacks.pcap"))
