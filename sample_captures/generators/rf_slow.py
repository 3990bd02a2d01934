"""Writes sample_captures/rf-slow.pcap: two low-and-slow registration attacks shaped like the public captures
issue 12 describes, each under every 60-s threshold, against a registrar 10.1.10.5 (untagged).

- 203.0.113.77 (User-Agent PolycomSoundPointIP-SPIP_550-UA/4.0.1) sends 1,623 REGISTERs for 45 accounts
  (100-144) in 17 bursts 1,900 s apart over 8.5 h, 611 of them with credentials, answered 805 x 401,
  42 x 403 and 163 x 503 (613 unanswered): per try, a REGISTER challenged 401 then re-sent with a wrong
  password (401 again: 381 tries, or 403: 42), a REGISTER answered 503 (163), one only challenged (1), one
  unanswered without credentials (425) or with them (188).
- 198.51.100.88 (User-Agent Cisco-SIPGateway/IOS-15.x) sends 892 REGISTERs for 13 accounts without
  credentials, one every 4.84 s over 1.2 h, answered 500 x 403, 312 x 404 and 80 x 501.

Tests compare voipwatch's totals with tshark's counts of the same packets.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rf_attacks import ESC, Net  # noqa: E402

SLOW, GATEWAY = "203.0.113.77", "198.51.100.88"
SLOW_UA, GATEWAY_UA = "PolycomSoundPointIP-SPIP_550-UA/4.0.1", "Cisco-SIPGateway/IOS-15.x"
SLOW_ACCOUNTS = [str(n) for n in range(100, 145)]
GATEWAY_ACCOUNTS = ["100", "101", "200", "1000", "1001", "admin", "test", "guest", "sip", "voip", "operator",
                    "2000", "5000"]
# Tries of the slow source, by kind (see the docstring): 1,623 REGISTERs in all.
SLOW_TRIES = {"wrong_401": 381, "wrong_403": 42, "busy_503": 163, "challenged": 1, "lost": 425, "lost_auth": 188}


def slow_source(net: Net, rng: random.Random) -> None:
    tries = [kind for kind, n in SLOW_TRIES.items() for _ in range(n)]
    rng.shuffle(tries)
    per_burst = -(-len(tries) // 17)
    for i, kind in enumerate(tries):
        burst, k = divmod(i, per_burst)
        ts = 1000.0 + burst * 1900.0 + k * 2.5
        user = SLOW_ACCOUNTS[rng.randrange(len(SLOW_ACCOUNTS))]
        call_id = f"{net.token(12)}@{SLOW}"
        if kind == "lost_auth":
            net.request(ts, "REGISTER", SLOW, ESC, user, call_id, 2, ua=SLOW_UA, auth=True,
                        contact=f"<sip:{user}@{SLOW}>", expires=3600, vlan=0)
            continue
        h = net.request(ts, "REGISTER", SLOW, ESC, user, call_id, 1, ua=SLOW_UA, contact=f"<sip:{user}@{SLOW}>",
                        expires=3600, vlan=0)
        if kind == "lost":
            continue
        if kind == "busy_503":
            net.answer(ts + 0.01, h, "503 Service Unavailable", ESC, SLOW, vlan=0)
            continue
        net.answer(ts + 0.01, h, "401 Unauthorized", ESC, SLOW, vlan=0)
        if kind == "challenged":
            continue
        h = net.request(ts + 0.1, "REGISTER", SLOW, ESC, user, call_id, 2, ua=SLOW_UA, auth=True,
                        contact=f"<sip:{user}@{SLOW}>", expires=3600, vlan=0)
        net.answer(ts + 0.11, h, "401 Unauthorized" if kind == "wrong_401" else "403 Forbidden", ESC, SLOW, vlan=0)


def gateway_source(net: Net, rng: random.Random) -> None:
    answers = ["403 Forbidden"] * 500 + ["404 Not Found"] * 312 + ["501 Not Implemented"] * 80
    rng.shuffle(answers)
    for i, answer in enumerate(answers):
        ts = 40_000.0 + i * 4.84
        user = GATEWAY_ACCOUNTS[i % len(GATEWAY_ACCOUNTS)]
        h = net.request(ts, "REGISTER", GATEWAY, ESC, user, f"{net.token(12)}@{GATEWAY}", 1, ua=GATEWAY_UA,
                        contact=f"<sip:{user}@{GATEWAY}>", expires=3600, vlan=0)
        net.answer(ts + 0.02, h, answer, ESC, GATEWAY, vlan=0)


def build() -> Net:
    net, rng = Net(seed=5), random.Random(5)
    slow_source(net, rng)
    gateway_source(net, rng)
    return net


def main(out: str) -> None:
    build().pcap.save(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "rf-slow.pcap"))
