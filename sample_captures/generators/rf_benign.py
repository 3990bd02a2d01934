"""Writes sample_captures/rf-benign.pcap: ordinary registration traffic built as registration_flood's traps.

Same site as rf-attacks.pcap (sample_captures/configs/registration_flood.toml): ESC 10.1.10.5 on voice
VLAN 110, monitoring host 10.1.10.7 (scanner_ips), SBC 10.1.10.9, PSTN gateway 10.1.10.20. What it holds:
- t=0-10: after an ESC failover 30 phones 10.1.10.101-130 (3001-3030) all register with digest at once.
- t=40: the PSTN gateway registers its trunk AOR and is accepted without a challenge (IP-trusted peer).
- t=100-940: 10.1.10.140 (3040) has a stale password and retries once a minute, 15 times, never succeeding.
- t=150: 10.1.10.141 (3041) mistypes its password 3 times, 5 s apart, then registers.
- t=300-480: a NATed branch office (10.1.40.1) with 20 phones (4001-4020) fails after a password rotation,
  each phone retrying every 60 s (4 tries each).
- t=1000: the monitoring host pings 25 phones with OPTIONS, User-Agent sipsak.
- t=1100: the ESC qualifies all 30 phones with OPTIONS (they answer 200).
- t=1200: the SBC sends 220 OPTIONS keep-alives to trunks in 10 s.
- t=1300: a presence server 10.1.10.8 subscribes to 32 users' dialog state (BLF).
- t=1800: phones 3001-3005 refresh with the previous nonce (Authorization, no new 401); 3010 refreshes with
  no Authorization and is accepted (the registrar challenged it 30 min earlier).
- t=2000: 3005 comes back from a new DHCP address 10.1.10.155, same phone model (RF-07 info only).
- t=2100: 3006 removes its own binding (Expires: 0); 3007 clears its bindings (Contact: *) from its own address.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rf_attacks import ESC, Net  # noqa: E402

MONITOR, PRESENCE, SBC, GATEWAY, NAT = "10.1.10.7", "10.1.10.8", "10.1.10.9", "10.1.10.20", "10.1.40.1"
PHONES = {str(3001 + n): f"10.1.10.{101 + n}" for n in range(30)}


def build() -> Net:
    net = Net(seed=7)
    for n, (user, ip) in enumerate(sorted(PHONES.items())):
        net.register(n / 3, ip, user)
    net.register(40, GATEWAY, "trunk", challenge=False, ua="SampleGW/3.1")
    for n in range(15):
        net.register(100 + 60 * n, "10.1.10.140", "3040", ok=False)
    for n in range(3):
        net.register(150 + 5 * n, "10.1.10.141", "3041", ok=False)
    net.register(165, "10.1.10.141", "3041")
    for round_ in range(4):
        for n in range(20):
            user, ts = str(4001 + n), 300 + 60 * round_ + n * 2.5
            h = net.request(ts, "REGISTER", NAT, ESC, user, f"nat-{user}@{NAT}", 10 + round_, auth=True,
                            contact=f"<sip:{user}@{NAT}:{5060 + n}>", expires=600, sport=5060 + n)
            net.answer(ts + 0.01, h, "403 Forbidden", ESC, NAT, dport=5060 + n)
    for n, (user, ip) in enumerate(sorted(PHONES.items())[:25]):
        h = net.request(1000 + n, "OPTIONS", MONITOR, ip, "monitor", net.token(16), 1, to=user, ua="sipsak 0.9.8")
        net.answer(1000.01 + n, h, "200 OK", ip, MONITOR)
    for n, (user, ip) in enumerate(sorted(PHONES.items())):
        h = net.request(1100 + n / 10, "OPTIONS", ESC, ip, "pbx", net.token(16), 1, to=user, ua="SamplePBX/2.0")
        net.answer(1100.01 + n / 10, h, "200 OK", ip, ESC)
    for n in range(220):
        net.request(1200 + n / 22, "OPTIONS", SBC, f"192.0.2.{1 + n % 4}", "ping", f"k{n}", 1, ua=None)
    for n in range(32):
        user = str(3001 + n)
        net.request(1300 + n / 4, "SUBSCRIBE", PRESENCE, ESC, "presence", net.token(16), 1, to=user,
                    ruri=f"sip:{user}@pbx.example.com", ua="SamplePresence/1.0")
    for user in ("3001", "3002", "3003", "3004", "3005"):
        net.register(1800 + int(user) % 10, PHONES[user], user, challenge=False, auth=True)
    net.register(1810, PHONES["3010"], "3010", challenge=False)
    net.register(2000, "10.1.10.155", "3005")
    net.register(2100, PHONES["3006"], "3006", expires=0)
    net.register(2110, PHONES["3007"], "3007", contact="*", expires=0)
    return net


def main(out: str) -> None:
    build().pcap.save(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "rf-benign.pcap"))
