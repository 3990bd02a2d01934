"""Writes sample_captures/tf-accounts-benign.pcap: ordinary traffic that looks like Wangiri or account takeover.

Same site, addresses and T0 (Tuesday 10:00 UTC) as tf_accounts.py, analysed with no site configuration; no
account_takeover or wangiri alert may fire, and no toll-fraud alert at all. The traps:
- T0: phones 1001-1010 register with a digest challenge; at T0+5 the softphone of 1003 (10.3.12.3, VLAN 120)
  registers the same account while the desk phone's binding is live (two internal devices of one user). At
  T0+60 the softphone calls +441632960123 (international, business hours; answered, 40 s) and at T0+120 the
  desk phone calls 3125550142 (national).
- A short inbound international call that was answered: at T0+300 the trunk delivers +442079460123 to 1004
  (trunk -> ESC -> phone), 180 then 200 after 2 s, BYE 6 s later.
- A single missed international call: at T0+400 +882161239999 (a high-risk range) rings 1005 and is cancelled
  1.5 s after its INVITE.
- Missed calls from three other ranges, one number each: +33140000123 (to 1006), +493012345678 (1008) and
  +81312345678 (1009), each cancelled 2 s after its INVITE; at T0+700 1006 calls +33140000123 back (answered).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pcapgen import PcapWriter  # noqa: E402
from tf_accounts import one_ring  # noqa: E402
from tf_attacks import ESC, T0, TRUNK, Capture, phone  # noqa: E402

SOFTPHONE = "10.3.12.3"


class SiteCapture(Capture):
    """The tf_attacks site plus a softphone VLAN 120 (10.3.12.0/24)."""

    @staticmethod
    def vlan(ip: str) -> tuple[int, ...]:
        return (120,) if ip.startswith("10.3.12.") else Capture.vlan(ip)


def registrations(cap: Capture) -> None:
    for i, ext in enumerate(f"{n}" for n in range(1001, 1011)):
        cap.register(T0 + 1 + i * 0.2, ext, phone(ext), f"reg-{ext}@acct")
    cap.register(T0 + 5, "1003", SOFTPHONE, "reg-1003-soft@acct")


def own_devices(cap: Capture) -> None:
    cap.call(T0 + 60, SOFTPHONE, ESC, "+441632960123", "soft-1003@acct", "1003", hold_s=40)
    cap.call(T0 + 120, phone("1003"), ESC, "3125550142", "desk-1003@acct", "1003", hold_s=20)


def answered_inbound(cap: Capture) -> None:
    """A short international call that was answered: trunk -> ESC -> phone, 2 s of ringing, 6 s of talk."""
    ts, caller, ext, cid = T0 + 300, "+442079460123", "1004", "inbound-answered@carrier"
    legs = [(TRUNK, ESC, cid, ts), (ESC, phone(ext), cid + "-leg2", ts + 0.03)]
    invites = [cap.request(t, "INVITE", src, dst, ext, c, 1, caller) for src, dst, c, t in legs]
    for (src, dst, c, t), inv in zip(legs, invites):
        cap.respond(t + 0.01, inv, dst, src, "100 Trying")
        cap.respond(t + 0.30, inv, dst, src, "180 Ringing", to_tag="ans")
        cap.respond(t + 2.0, inv, dst, src, "200 OK", to_tag="ans")
        cap.request(t + 2.02, "ACK", src, dst, ext, c, 1, caller, to_tag="ans")
        bye = cap.request(t + 8.0, "BYE", src, dst, ext, c, 2, caller, to_tag="ans")
        cap.respond(t + 8.01, bye, dst, src, "200 OK")


def missed_calls(cap: Capture) -> None:
    one_ring(cap, T0 + 400, "+882161239999", "1005", "missed-882@carrier")
    for i, (number, ext) in enumerate((("+33140000123", "1006"), ("+493012345678", "1008"), ("+81312345678", "1009"))):
        one_ring(cap, T0 + 500 + i * 30, number, ext, f"missed-{i}@carrier", ring_s=2.0)
    cap.call(T0 + 700, phone("1006"), ESC, "+33140000123", "callback-33@acct", "1006", hold_s=90)


def build() -> PcapWriter:
    cap = SiteCapture(20231116)
    for scenario in (registrations, own_devices, answered_inbound, missed_calls):
        scenario(cap)
    return cap.pcap


def main(out: str) -> None:
    build().save(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "tf-accounts-benign.pcap"))
