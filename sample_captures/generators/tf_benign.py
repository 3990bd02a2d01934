"""Writes sample_captures/tf-benign.pcap: ordinary traffic that looks like toll fraud, on the tf-attacks site.

Same site, addresses and T0 (Tuesday 10:00 UTC) as tf_attacks.py; no toll-fraud alert may fire. The traps:
- T0: phones 1001-1010 register with a digest challenge; 1008 re-registers from another voice-VLAN address
  (DHCP renumbering, same zone); 1009 de-registers (Expires: 0).
- TF-01: the ESC and the carrier trunk send INVITEs to the gateway; the ESC pings it with OPTIONS.
- TF-02: 1001 is challenged (407) and retries with credentials; 1002 is challenged on one call and places
  another 30 s later without credentials (nonce reuse); the trusted trunk delivers a DID call unchallenged.
- TF-03: 1003 dials 913125550199 (404) then 13125550199: two variants only.
- TF-04: 1004 places four international calls in four minutes; at 01:00 (off-hours) 1005 dials 911 and the
  trunk delivers a DID call in E.164 (+13015550100) that the SBC passes to the ESC.
- TF-05: 1006 has two external calls at once (the limit); 1007 makes nine 3-second external calls.
- TF-06: every phone call goes phone -> ESC -> gateway (internal first leg); the DID calls go trunk -> SBC -> ESC.
- TF-07: 1010 transfers a call to extension 1003; the ESC forwards a call to the allowlisted mobile
  +447700900123 (Diversion); a call to 1003 is redirected (302) to extension 1004.
- TF-08: the renumbered 1008 calls 4155550111 (its binding moved within the voice zone only).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pcapgen import PcapWriter  # noqa: E402
from tf_attacks import DOMAIN, ESC, GW, SBC, T0, TRUNK, Capture, phone  # noqa: E402


def registrations(cap: Capture) -> None:
    for i, ext in enumerate(f"{n}" for n in range(1001, 1011)):
        cap.register(T0 + 1 + i * 0.2, ext, phone(ext), f"reg-{ext}@tf")
    cap.register(T0 + 300, "1008", "10.3.10.48", "reg-1008b@tf")
    cap.register(T0 + 310, "1009", phone("1009"), "reg-1009@tf", expires=0)


def tf01_gateway(cap: Capture) -> None:
    cap.call(T0 + 60, ESC, GW, "2025550111", "b01-esc@tf", "1001", challenge=False, onward=None)
    cap.call(T0 + 70, TRUNK, GW, "+13015550100", "b01-trunk@carrier", "2125550177", challenge=False, onward=None)
    ping = cap.request(T0 + 80, "OPTIONS", ESC, GW, "ping", "b01-options@tf", 1, "esc")
    cap.respond(T0 + 80.01, ping, GW, ESC, "200 OK", to_tag="gw")


def tf02_authentication(cap: Capture) -> None:
    cap.call(T0 + 120, phone("1001"), ESC, "011442079460100", "b02-auth@tf", "1001")
    cap.call(T0 + 140, phone("1002"), ESC, "2025550112", "b02-first@tf", "1002", hold_s=10)
    cap.call(T0 + 170, phone("1002"), ESC, "2025550113", "b02-reuse@tf", "1002", challenge=False)
    cap.call(T0 + 200, TRUNK, SBC, "+13015550100", "b02-did@carrier", "2125550188", challenge=False, onward=ESC)


def tf03_redial(cap: Capture) -> None:
    cap.call(T0 + 250, phone("1003"), ESC, "913125550199", "b03-nine@tf", "1003", outcome="404 Not Found",
             early="", onward=None)
    cap.call(T0 + 260, phone("1003"), ESC, "13125550199", "b03-plain@tf", "1003")


def tf04_destinations(cap: Capture) -> None:
    for i in range(4):
        cap.call(T0 + 400 + i * 60, phone("1004"), ESC, f"01133140{i}123456", f"b04-intl-{i}@tf", "1004", hold_s=40)
    cap.call(T0 + 15 * 3600, phone("1005"), ESC, "911", "b04-911@tf", "1005", challenge=False)
    cap.call(T0 + 15 * 3600 + 60, TRUNK, SBC, "+13015550100", "b04-did-night@carrier", "+442071234567",
             challenge=False, onward=ESC)


def tf05_velocity(cap: Capture) -> None:
    for i in range(2):
        cap.call(T0 + 900 + i * 5, phone("1006"), ESC, f"202555020{i}", f"b05-conc-{i}@tf", "1006", hold_s=60)
    for i in range(9):
        cap.call(T0 + 1000 + i * 20, phone("1007"), ESC, "3125550143", f"b05-short-{i}@tf", "1007", hold_s=3)


def tf07_forwarding(cap: Capture) -> None:
    cap.call(T0 + 1300, phone("1010"), ESC, "1002", "b07-refer@tf", "1010", hold_s=40, onward=None)
    cap.request(T0 + 1310, "REFER", phone("1010"), ESC, "1002", "b07-refer@tf", 3, "1010", to_tag="callee",
                extra=[("Refer-To", f"<sip:1003@{DOMAIN}>"), ("Referred-By", f"<sip:1010@{DOMAIN}>")])
    cap.call(T0 + 1320, ESC, GW, "+447700900123", "b07-diversion@tf", "1010", challenge=False, onward=None,
             extra=[("Diversion", f"<sip:1010@{DOMAIN}>;reason=no-answer")])
    cap.call(T0 + 1340, phone("1001"), ESC, "1003", "b07-redirect@tf", "1001", challenge=False, onward=None,
             outcome="302 Moved Temporarily", early="", final_extra=[("Contact", f"<sip:1004@{DOMAIN}>")])


def tf08_renumbered(cap: Capture) -> None:
    cap.call(T0 + 1500, "10.3.10.48", ESC, "4155550111", "b08-renumbered@tf", "1008")


def build() -> PcapWriter:
    cap = Capture(20231115)
    for scenario in (registrations, tf01_gateway, tf02_authentication, tf03_redial, tf04_destinations,
                     tf05_velocity, tf07_forwarding, tf08_renumbered):
        scenario(cap)
    return cap.pcap


def main(out: str) -> None:
    build().save(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "tf-benign.pcap"))
