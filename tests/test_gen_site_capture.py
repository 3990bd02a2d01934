"""scripts/gen_site_capture.py: deterministic, valid, and its truth file agrees with tshark."""
from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GEN = REPO / "scripts" / "gen_site_capture.py"

# Small but complete: calls that end, fail and are cancelled, registrations, OPTIONS, DNS on three
# VLAN stacks, QinQ, a misplaced phone, and a scan (OPTIONS sweep + REGISTER guessing).
SMALL = ["--packets", "20000", "--phones", "60", "--calls-concurrent", "30", "--call-duration-s", "3", "8",
         "--scan-every-s", "8", "--scan-guesses", "40", "--options-every-s", "5", "--qinq-every-s", "2",
         "--data-dns-per-s", "2"]
# The soak profile on a short morning stretch: busy-hour arrivals, thinned RTP, registrations.
SOAK = ["--profile", "soak", "--duration-s", "900", "--start", "1700038800", "--phones", "80",
        "--calls-concurrent", "12", "--call-duration-s", "20", "60", "--rtp-every", "10",
        "--scan-every-s", "600", "--scan-guesses", "30", "--expires", "300"]

SEVERITY_ERROR = 0x00800000     # _ws.expert.severity of PI_ERROR


def generate(out: Path, args: list[str], seed: int = 7) -> dict:
    subprocess.run([sys.executable, str(GEN), "-o", str(out), "--seed", str(seed), "-q", *args],
                   check=True, timeout=60)
    return json.loads(out.with_suffix(".truth.json").read_text())


@pytest.fixture(scope="module", params=["bench", "soak"])
def case(request, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp(f"site-{request.param}") / "site.pcap"
    truth = generate(out, SMALL if request.param == "bench" else SOAK)
    return out, truth


def tshark_fields(tshark: str, pcap: Path) -> list[list[str]]:
    fields = ["vlan.id", "ieee8021ad.id", "sip.Method", "sip.Status-Code", "sip.CSeq.method",
              "dns.flags.response", "dns.qry.type", "ip.checksum.status", "udp.checksum.status",
              "_ws.expert.severity", "_ws.malformed", "sip.User-Agent"]
    cmd = [tshark, "-n", "-r", str(pcap), "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
           "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    return [line.split("|") for line in out.splitlines()]


def tshark_streams(tshark: str, pcap: Path) -> dict[tuple, tuple[int, int]]:
    out = subprocess.run([tshark, "-q", "-n", "-r", str(pcap), "-z", "rtp,streams"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    rx = re.compile(r"^\s*\S+\s+\S+\s+(\S+)\s+(\d+)\s+(\S+)\s+(\d+)\s+(0x[0-9A-Fa-f]+)\s+.+?\s+(\d+)\s+(-?\d+)\s+\(")
    streams = {}
    for line in out.splitlines():
        m = rx.match(line)
        if m:
            streams[(m[1], int(m[2]), m[3], int(m[4]), int(m[5], 16))] = (int(m[6]), int(m[7]))
    return streams


def test_same_seed_is_byte_identical(tmp_path):
    a, b, c = tmp_path / "a" / "site.pcap", tmp_path / "b" / "site.pcap", tmp_path / "c" / "site.pcap"
    generate(a, SMALL)
    generate(b, SMALL)
    generate(c, SMALL, seed=8)
    assert a.read_bytes() == b.read_bytes()
    assert a.with_suffix(".truth.json").read_bytes() == b.with_suffix(".truth.json").read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_pcap_layout_and_time_order(case):
    pcap, truth = case
    data = pcap.read_bytes()
    magic, major, minor, _, _, snaplen, linktype = struct.unpack_from("<IHHiIII", data, 0)
    assert (magic, major, minor, snaplen, linktype) == (0xA1B2C3D4, 2, 4, 65535, 1)
    off, n, last = 24, 0, (0, 0)
    while off < len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, off)
        assert incl == orig and usec < 1_000_000 and (sec, usec) >= last
        last = (sec, usec)
        off += 16 + incl
        n += 1
    assert off == len(data)
    assert n == truth["capture"]["packets"]
    assert len(data) == truth["capture"]["bytes"]


def test_truth_is_rich_enough(case):
    """The small cases exercise what the truth file is for (else the agreement test proves little)."""
    _, t = case
    assert t["calls"]["total"] >= 10 and t["calls"]["by_state"].get("ended", 0) >= 3
    assert t["rtp"]["streams"] >= 10 and t["rtp"]["lost"] > 0 and t["rtcp"]["packets"] > 0
    assert t["registrations"]["successes"] >= 40 and t["registrations"]["challenges"] >= 40
    assert t["dns"]["by_qtype"].get("SRV", 0) > 0 and t["dns"]["by_qtype"].get("A", 0) > 0
    assert {k for s in t["scans"] for k in [s["kind"]]} == {"options_sweep", "register_guess"}
    assert t["vlans"]["qinq_frames"] > 0 and t["vlans"]["untagged_frames"] > 0
    if t["generator"]["params"]["profile"] == "bench":
        statuses = t["calls"]["by_final_status"]
        assert statuses.get("200", 0) and statuses.get("486", 0) + statuses.get("404", 0) + statuses.get("487", 0)


@pytest.mark.peer
def test_tshark_agrees_with_truth(case, tshark):
    pcap, t = case
    rows = tshark_fields(tshark, pcap)
    assert len(rows) == t["capture"]["packets"]

    requests, responses, qtypes = Counter(), Counter(), Counter()
    dns_q = dns_r = 0
    stacks, vlan_ids = Counter(), set()
    scanner_requests = 0
    names = {1: "A", 28: "AAAA", 33: "SRV"}
    for vlan, outer, method, status, _cseq_m, dns_resp, qtype, ipck, udpck, sev, malformed, ua in rows:
        assert ipck == "1" and udpck == "1", "every IPv4 and UDP checksum is good"
        assert not malformed
        assert not any(int(x) >= SEVERITY_ERROR for x in sev.split(",") if x), "no expert error"
        inner = [int(x) for x in vlan.split(",") if x]
        outer_ids = [int(x) for x in outer.split(",") if x]
        stack = outer_ids + inner
        vlan_ids.update(stack)
        stacks[".".join(map(str, stack)) or "untagged"] += 1
        if method:
            requests[method] += 1
            scanner_requests += ua == "friendly-scanner"
        if status:
            responses[status] += 1
        if dns_resp == "0":
            dns_q += 1
            qtypes[names[int(qtype)]] += 1
        elif dns_resp == "1":
            dns_r += 1

    assert dict(requests) == t["sip"]["requests"]
    assert dict(responses) == t["sip"]["responses"]
    assert requests["INVITE"] == t["calls"]["total"]
    assert requests["REGISTER"] == (t["registrations"]["register_requests"]
                                    + sum(s["requests"] for s in t["scans"] if s["kind"] == "register_guess"))
    assert scanner_requests == sum(s["requests"] for s in t["scans"])
    assert (dns_q, dns_r) == (t["dns"]["queries"], t["dns"]["responses"])
    assert dict(qtypes) == t["dns"]["by_qtype"]
    assert sorted(vlan_ids) == t["vlans"]["ids"]
    assert dict(stacks) == t["vlans"]["frames_by_stack"]

    streams = tshark_streams(tshark, pcap)
    expected = {(s["src"], s["sport"], s["dst"], s["dport"], s["ssrc"]): (s["packets"], s["lost"])
                for s in t["rtp"]["streams_detail"]}
    assert len(streams) == t["rtp"]["streams"]
    assert streams == expected
    assert sum(p for p, _ in streams.values()) == t["rtp"]["packets"]
