"""Writes sample_captures/tf-accounts.pcap: an account taken over from the Internet, and a Wangiri campaign.

Same site and addresses as tf_attacks.py (extension 10NN at 10.3.10.NN on voice VLAN 110, ESC 10.3.30.5 on
VLAN 300, carrier trunk 203.0.113.50), analysed with no site configuration, as a first-time user would:
out of the box, +882 is high-risk (voipwatch/high_risk.py). T0 is Tuesday 2023-11-14 10:00 UTC.
What it holds (the labels the tf-10/tf-11 golden cases assert):
- T0: phones 1001-1010 register with a digest challenge (Expires 3600).
- Account takeover (TF-11): at T0+60 the desk phone of 1001 calls high-risk +882130000001 (answered, 60 s).
  At T0+300 198.51.100.90 registers 1001 (challenged, then accepted: the password was cracked) while the desk
  phone's binding is live, and from T0+320 places six calls, 45 s apart, to +8821612345000..+8821612345005
  through the ESC (which carries each on to the gateway), each challenged, retried with credentials and answered for 30 s.
- Wangiri (TF-10): from T0+1000 the trunk delivers eight calls from +882161234100..+882161234107 (one range,
  +88216123xxxx) to extensions 1002-1009; each is carried by the ESC to the phone, rings (180), and is
  cancelled by the caller 1.5 s after its INVITE (CANCEL, 200, 487, ACK on both legs). Two one-ring calls
  from +2693210001 and +2693210002 (another range, below the threshold) follow.
- At T0+2000 1007 calls +882161234103 back (challenged, answered, 120 s, carried on to the gateway): the callback the bait wanted.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pcapgen import PcapWriter  # noqa: E402
from tf_attacks import ESC, T0, TRUNK, Capture, phone  # noqa: E402

ATTACKER = "198.51.100.90"
WANGIRI = [f"+88216123410{i}" for i in range(8)]
OTHER_RANGE = ["+2693210001", "+2693210002"]


def registrations(cap: Capture) -> None:
    for i, ext in enumerate(f"{n}" for n in range(1001, 1011)):
        cap.register(T0 + 1 + i * 0.2, ext, phone(ext), f"reg-{ext}@acct")


def takeover(cap: Capture) -> None:
    cap.call(T0 + 60, phone("1001"), ESC, "+882130000001", "acct-desk@acct", "1001", hold_s=60)
    cap.register(T0 + 300, "1001", ATTACKER, "acct-takeover-reg@attacker")
    for i in range(6):
        cap.call(T0 + 320 + i * 45, ATTACKER, ESC, f"+882161234500{i}", f"acct-fraud-{i}@attacker", "1001")


def one_ring(cap: Capture, ts: float, caller: str, ext: str, call_id: str, ring_s: float = 1.5) -> None:
    """An inbound call that rings once: trunk -> ESC -> phone, cancelled by the caller ring_s after its INVITE
    (RFC 3261 §9: CANCEL, its 200, the INVITE's 487 and the ACK, on both legs)."""
    legs = [(TRUNK, ESC, call_id, ts), (ESC, phone(ext), call_id + "-leg2", ts + 0.03)]
    invites = [cap.request(t, "INVITE", src, dst, ext, cid, 1, caller) for src, dst, cid, t in legs]
    for (src, dst, cid, t), inv in zip(legs, invites):
        cap.respond(t + 0.01, inv, dst, src, "100 Trying")
    cap.respond(ts + 0.30, invites[1], phone(ext), ESC, "180 Ringing", to_tag="ring")
    cap.respond(ts + 0.31, invites[0], ESC, TRUNK, "180 Ringing", to_tag="ring")
    for k, (src, dst, cid, t) in enumerate(legs):
        when = ts + ring_s + k * 0.02
        cancel = cap.request(when, "CANCEL", src, dst, ext, cid, 1, caller)
        cap.respond(when + 0.01, cancel, dst, src, "200 OK")
        cap.respond(when + 0.02, invites[k], dst, src, "487 Request Terminated", to_tag="ring")
        cap.request(when + 0.03, "ACK", src, dst, ext, cid, 1, caller, to_tag="ring")


def wangiri(cap: Capture) -> None:
    for i, number in enumerate(WANGIRI):
        one_ring(cap, T0 + 1000 + i * 20, number, f"{1002 + i}", f"wangiri-{i}@carrier")
    for i, number in enumerate(OTHER_RANGE):
        one_ring(cap, T0 + 1200 + i * 20, number, "1010", f"ring-other-{i}@carrier")
    cap.call(T0 + 2000, phone("1007"), ESC, WANGIRI[3], "wangiri-callback@acct", "1007", hold_s=120)


def build() -> PcapWriter:
    cap = Capture(20231115)
    for scenario in (registrations, takeover, wangiri):
        scenario(cap)
    return cap.pcap


def main(out: str) -> None:
    build().save(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "tf-accounts.pcap"))
