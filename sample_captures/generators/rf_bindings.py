"""Writes sample_captures/rf-bindings.pcap: a registrar that lists every binding in its 200 OKs (RFC 3261 §10.3
step 8), a password cracked from the internet, and the binding the cracker leaves behind.

Voice VLAN 110, registrar 10.1.10.5 (digest auth), site model sample_captures/configs/registration_flood.toml.
What it holds (the labels tests assert, against tshark's reading of the 200 OKs):
- t=0: phone 10.1.10.21 registers 2001 (401, then 200 listing sip:2001@10.1.10.21:5060;expires=3600);
  t=1: phone 10.1.10.22 registers 2002 for 120 s and never refreshes it (its binding expires at t=121);
  t=2: phone 10.1.10.23 registers 2003.
- t=100: 203.0.113.50 (public, User-Agent friendly-scanner) fails 12 times for 2001 (401 to each guess),
  then registers it with Contact sip:123@1.1.1.1: the 200 OK lists the phone's binding and the cracker's
  (RF-05 critical, RF-07 high, rogue binding critical).
- t=300: the phone de-registers its own contact (Expires: 0): the 200 OK still lists sip:123@1.1.1.1.
- t=600: the phone registers again: the 200 OK lists both bindings.
- t=700: 10.1.10.24 removes 2003's bindings with Contact: * (RF-07, deregister): the 200 OK lists none.
- t=1000: an OPTIONS keep-alive ends the capture; sip:123@1.1.1.1 is still bound.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pcapgen import sip_message  # noqa: E402
from rf_attacks import ESC, Net  # noqa: E402

PHONE_UA, CRACKER_UA = "SamplePhone/1.0", "friendly-scanner"
CRACKER, ROGUE_CONTACT = "203.0.113.50", "sip:123@1.1.1.1"


class Registrar:
    """The bindings of each AOR, listed in full in every 200 OK."""

    def __init__(self, net: Net):
        self.net = net
        self.bindings: dict[str, dict[str, float]] = {}      # user -> contact -> expiry time

    def ok(self, ts, headers, dst, user, contact, expires):
        bound = self.bindings.setdefault(user, {})
        for c in list(bound):
            if bound[c] <= ts:
                del bound[c]
        if contact == "*":
            bound.clear()
        elif expires == 0:
            bound.pop(contact, None)
        else:
            bound[contact] = ts + expires
        keep = [(n, v) for n, v in headers if n in ("Via", "From", "Call-ID", "CSeq")]
        to = next(v for n, v in headers if n == "To") + f";tag={self.net.token()}"
        listed = [("Contact", f"<{c}>;expires={round(exp - ts)}") for c, exp in bound.items()]
        self.net.send(ts, ESC, dst, sip_message("SIP/2.0 200 OK", keep + [("To", to)] + listed
                                                 + [("Server", "SamplePBX/2.0")]))

    def register(self, ts, src, user, contact, expires, ua=PHONE_UA, failures=0):
        """REGISTER, 401, then `failures` rejected guesses (401 each), then a REGISTER answered 200."""
        net = self.net
        call_id = f"{net.token(12)}@{src}"
        wire_contact = "*" if contact == "*" else f"<{contact}>"
        h = net.request(ts, "REGISTER", src, ESC, user, call_id, 1, ua=ua, contact=wire_contact, expires=expires)
        net.answer(ts + 0.01, h, "401 Unauthorized", ESC, src)
        cseq = 2
        for n in range(failures):
            h = net.request(ts + 1 + n, "REGISTER", src, ESC, user, call_id, cseq, ua=ua, auth=True,
                            contact=wire_contact, expires=expires)
            net.answer(ts + 1.01 + n, h, "401 Unauthorized", ESC, src)
            cseq += 1
        ts += 1 + failures
        h = net.request(ts, "REGISTER", src, ESC, user, call_id, cseq, ua=ua, auth=True, contact=wire_contact,
                        expires=expires)
        self.ok(ts + 0.01, h, src, user, contact, expires)


def build() -> Net:
    net = Net(seed=12)
    reg = Registrar(net)
    reg.register(0, "10.1.10.21", "2001", "sip:2001@10.1.10.21:5060", 3600)
    reg.register(1, "10.1.10.22", "2002", "sip:2002@10.1.10.22:5060", 120)
    reg.register(2, "10.1.10.23", "2003", "sip:2003@10.1.10.23:5060", 3600)
    reg.register(100, CRACKER, "2001", ROGUE_CONTACT, 3600, ua=CRACKER_UA, failures=12)
    reg.register(300, "10.1.10.21", "2001", "sip:2001@10.1.10.21:5060", 0)
    reg.register(600, "10.1.10.21", "2001", "sip:2001@10.1.10.21:5060", 3600)
    reg.register(700, "10.1.10.24", "2003", "*", 0, ua="Linphone/3.12.0")
    h = net.request(1000, "OPTIONS", "10.1.10.21", ESC, "2001", "keepalive@10.1.10.21", 1)
    net.answer(1000.01, h, "200 OK", ESC, "10.1.10.21")
    return net


def main(out: str) -> None:
    build().pcap.save(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "rf-bindings.pcap"))
