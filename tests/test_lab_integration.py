"""Real traffic from real tools: kamailio, SIPp phones, sipvicious and SIPp attacks on an isolated
namespace network, captured 802.1Q-tagged on a trunk, then `voipwatch analyze` on that capture.

The lab (tests/lab/lab.py) runs once per module (about 40 s); every test below checks one aspect of
the same run. It needs root and the tools (kamailio, sipp, svmap/svwar/svcrack, tcpdump, tshark):
without them it fails with the reason, it never skips (CI runs as root, scripts/test.sh installs them).
"""
from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from lab.lab import (ATTACKER_IPS, CRACKED_USER, DATA_HOST_IP, DATA_VLAN, DMZ_VLAN, FLOODER_IP, FRAUD_IP,
                     INTL_NUMBERS, KAMAILIO_IP, LAB_CIDRS, OUTSIDE_NET, PHONE_CALLS, PHONES, PSTN_GW_IP,
                     SCANNER_IP, USERS, VOICE_VLAN, preflight, running_lab, site_toml)

pytestmark = [pytest.mark.lab, pytest.mark.peer]   # network namespaces; tshark reads the lab capture

REPO = Path(__file__).resolve().parents[1]
TIME_BUDGET_S = 180            # lab + analysis, the whole module
PHONE_IPS = {p.ip for p in PHONES}
BENIGN_ONLY = PHONE_IPS | {DATA_HOST_IP}      # hosts that only ever send benign traffic

# What the attacks must raise (family.name as declared in detectors/*.py `alerts = {...}`).
EXPECTED_ATTACK_ALERTS = {
    "registration_flood.scanner": SCANNER_IP,          # svmap/svwar/svcrack User-Agent friendly-scanner
    "registration_flood.sweep": SCANNER_IP,            # svmap over hosts and ports
    "registration_flood.enumeration": SCANNER_IP,      # svwar 1000-1039; the registrar answers 404 vs 401
    "registration_flood.brute_force": SCANNER_IP,      # svcrack on 1005
    "registration_flood.lockout_not_enforced": SCANNER_IP,   # ... and it succeeded after 18 failures
    "registration_flood.request_flood": FLOODER_IP,    # SIPp REGISTER + INVITE floods at 30/s each
    "toll_fraud.prefix_walking": FRAUD_IP,             # 442071234567 dialled with 6 prefixes, 4 rejected
    "toll_fraud.high_risk_destination": None,          # +882 / +269 (dialplan.high_risk)
    "toll_fraud.toll_call_volume": None,               # 12 answered international calls in seconds
    "toll_fraud.call_velocity": None,                  # up to 6 at once, all shorter than 10 s
}
EXPECTED_MEDIA_ALERTS = {"unencrypted_media.cleartext_rtp", "unencrypted_media.cleartext_sip",
                         "unencrypted_media.cleartext_on_public_path"}
# The lab makes these impossible: firing would be a false positive on real traffic.
MUST_NOT_FIRE = {
    "registration_flood.unauthenticated_registration",   # kamailio challenges every REGISTER
    "toll_fraud.unauthenticated_call",                   # ... and every INVITE
    "toll_fraud.unauthorized_gateway_access",            # only the ESC sends to the PSTN gateway
    "toll_fraud.external_relay",                         # the proxy is no open relay
    "cross_vlan.vlan_hopping",                           # the switch drops tagged frames on access ports
    "cross_vlan.voip_in_data_zone",                      # no SIP/RTP in VLAN 20
    "cross_vlan.direct_data_voice_flow",                 # the data host talks only to its gateway
}


@dataclass
class LabRun:
    work: Path
    pcap: Path
    out: Path
    report: dict
    switch_stats: dict | None
    lab_s: float
    analyze_s: float
    analyze: subprocess.CompletedProcess

    def table(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.out / f"{name}.csv", dtype=str, keep_default_na=False)

    def alerts(self) -> list[dict]:
        path = self.out / "alerts.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def tshark(self, *args: str) -> list[str]:
        cp = subprocess.run(["tshark", "-n", "-r", str(self.pcap), *args], capture_output=True, text=True, timeout=120)
        assert cp.returncode == 0, cp.stderr
        return cp.stdout.splitlines()


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory) -> LabRun:
    problems = preflight()
    if problems:
        pytest.fail("real-traffic lab cannot run: " + "; ".join(problems))
    work = tmp_path_factory.mktemp("lab")
    pcap, out, site = work / "trunk.pcap", work / "out", work / "site.toml"
    t0 = time.monotonic()
    with running_lab(work, pcap=pcap, max_seconds=150) as lab:
        report = lab.run_scenario()
    lab_s = time.monotonic() - t0
    site.write_text(site_toml())
    t1 = time.monotonic()
    analyze = subprocess.run([sys.executable, "-m", "voipwatch", "analyze", str(pcap), "-o", str(out),
                              "--config", str(site)], capture_output=True, text=True, timeout=120, cwd=REPO)
    run = LabRun(work, pcap, out, report, lab.switch_stats, lab_s, time.monotonic() - t1, analyze)
    print(f"\nlab {lab_s:.1f} s (scenario {report['scenario_s']} s), analyze {run.analyze_s:.1f} s; "
          f"switch {json.dumps({k: v for k, v in (lab.switch_stats or {}).items() if k != 'ports'})}\n"
          f"{analyze.stdout}")
    assert analyze.returncode == 0, f"voipwatch analyze failed:\n{analyze.stdout}\n{analyze.stderr}"
    raised = Counter((a["alert"]["name"], a["src"], a["dst"]) for a in run.alerts())
    print("alerts:\n" + "\n".join(f"  {n:3d} {name} {src} -> {dst}" for (name, src, dst), n in sorted(raised.items())))
    return run


def test_lab_runs_within_budget(lab_run):
    assert lab_run.lab_s + lab_run.analyze_s < TIME_BUDGET_S, (lab_run.lab_s, lab_run.analyze_s)


def test_tools_did_what_the_scenario_says(lab_run):
    tools = lab_run.report["tools"]
    assert all(rc == 0 for rc in tools["register"].values()), tools["register"]
    for name in ("uac_ph1", "uac_ph3", "register_flood", "invite_flood", "intl_burst", "safety_probe"):
        assert tools[name]["rc"] == 0, (name, tools[name])
    assert KAMAILIO_IP in tools["svmap"]["found"], tools["svmap"]
    assert tools["svwar"]["extensions"] == sorted(USERS), tools["svwar"]
    assert tools["svcrack"]["cracked"] == {CRACKED_USER: USERS[CRACKED_USER]}, tools["svcrack"]


def test_trunk_capture_is_8021q_tagged(lab_run):
    vids = lab_run.tshark("-T", "fields", "-e", "vlan.id")
    counts = Counter(vids)
    assert "" not in counts, f"{counts['']} untagged frames on the trunk"
    assert set(counts) == {str(VOICE_VLAN), str(DATA_VLAN), str(DMZ_VLAN)}, counts
    assert counts[str(VOICE_VLAN)] > 1000, counts
    # SIP and RTP on the voice VLAN, ICMP and HTTP on the data VLAN, never SIP/RTP there
    by_vlan = Counter(tuple(line.split("\t")) for line in lab_run.tshark(
        "-d", "udp.port==6000,rtp", "-T", "fields", "-e", "vlan.id", "-e", "_ws.col.Protocol"))
    assert by_vlan[(str(VOICE_VLAN), "SIP")] > 500 and by_vlan[(str(VOICE_VLAN), "RTP")] > 2000, by_vlan
    assert by_vlan[(str(DATA_VLAN), "ICMP")] >= 40 and by_vlan[(str(DATA_VLAN), "HTTP")] >= 2, by_vlan
    assert not {k for k in by_vlan if k[0] == str(DATA_VLAN) and k[1] in ("SIP", "RTP", "SDP")}, by_vlan
    stats = lab_run.switch_stats
    assert stats and stats["mirrored"] == len(vids), (stats and stats["mirrored"], len(vids))
    assert all(p["errors"] == 0 for p in stats["ports"].values()), stats


def test_lab_never_leaves_its_networks(lab_run):
    # svcrack registered 1005 at sip:123@1.1.1.1; the safety probe called 1005: kamailio refused the hop
    report = lab_run.report
    assert any("1005 contact sip:123@1.1.1.1" in line for line in report["kamailio_registered"]), report
    assert any("refused next hop 1.1.1.1" in line for line in report["kamailio_safety_log"]), report
    nets = [ipaddress.ip_network(n) for n in LAB_CIDRS + (OUTSIDE_NET,)]
    addrs = set()
    for line in lab_run.tshark("-Y", "ip", "-T", "fields", "-e", "ip.src", "-e", "ip.dst"):
        addrs.update(a for field in line.split("\t") for a in field.split(","))   # ICMP errors: inner header too
    stray = sorted(a for a in addrs if not any(ipaddress.ip_address(a) in n for n in nets))
    assert not stray, f"packets to/from outside the lab networks: {stray}"


def test_phone_calls_completed_with_bound_rtp(lab_run):
    calls, streams = lab_run.table("calls"), lab_run.table("rtp_streams")
    phone_calls = calls[calls.src.isin(PHONE_IPS) & (calls.callee == "1002")]
    assert len(phone_calls) == 2 * PHONE_CALLS, phone_calls
    for _, call in phone_calls.iterrows():
        assert call.final_status == "200" and call.state == "ended", call.to_dict()
        assert call.media_protection == "none" and int(call.n_streams) >= 2, call.to_dict()
        assert call.vlan == str(VOICE_VLAN) and 5.0 < float(call.duration_s) < 8.0, call.to_dict()
        mine = streams[streams.call_id == call.call_id]
        assert len(mine) == 2, mine       # one each way
        assert set(mine.negotiated) == {"True"} and set(mine.codec) == {"PCMU"}, mine
        assert {(s.src, s.dst) for s in mine.itertuples()} == {(call.src, "10.110.0.12"), ("10.110.0.12", call.src)}
        assert all(int(n) >= 250 for n in mine.packets) and all(int(n) <= 2 for n in mine["lost"]), mine


def test_international_burst_in_calls_table(lab_run):
    calls = lab_run.table("calls")
    fraud = calls[(calls.src == FRAUD_IP) & (calls.caller == CRACKED_USER) & (calls.callee != CRACKED_USER)]
    assert len(fraud) == len(INTL_NUMBERS), fraud
    answered = fraud[fraud.final_status == "200"]
    assert set(answered.ruri_user) == {n for n in INTL_NUMBERS if n.startswith(("00", "011"))}, answered
    assert set(fraud[fraud.final_status == "404"].ruri_user) == {n for n in INTL_NUMBERS
                                                               if not n.startswith(("00", "011"))}


def test_registrations_challenged_then_accepted(lab_run):
    regs = lab_run.table("registrations")
    for phone in PHONES:
        row = regs[(regs.src == phone.ip) & regs.aor.str.startswith(phone.user + "@")]
        assert len(row) == 1, (phone, row)
        r = row.iloc[0]
        assert (r.attempts, r.challenges, r.successes, r.failures) == ("2", "1", "1", "0"), r.to_dict()
    flood = regs[regs.src == FLOODER_IP]
    assert len(flood) == len(USERS) and flood.challenges.astype(int).sum() >= 300, flood
    enum = regs[(regs.src == SCANNER_IP)]
    assert enum.aor.str.split("@").str[0].isin([str(n) for n in range(1000, 1040)]).sum() == 40, enum


def test_cracked_registration_is_counted(lab_run):
    # svcrack sends every guess as CSeq 2 of one Call-ID with a new Via branch: RFC 3261 §17.2.3 makes
    # each a new transaction, so every guess is an attempt and the last one a success.
    regs = lab_run.table("registrations")
    row = regs[(regs.src == SCANNER_IP) & regs.aor.str.startswith(CRACKED_USER + "@")].iloc[0]
    assert int(row.attempts) >= 19 and int(row.successes) == 1, row.to_dict()


def test_attacks_raise_the_expected_alerts(lab_run):
    alerts = lab_run.alerts()
    names = Counter(a["alert"]["name"] for a in alerts)
    missing = sorted(set(EXPECTED_ATTACK_ALERTS) - set(names))
    assert not missing, f"expected alerts not raised: {missing}; raised: {dict(names)}"
    for name, src in EXPECTED_ATTACK_ALERTS.items():
        if src is not None:
            assert any(a["src"] == src for a in alerts if a["alert"]["name"] == name), (name, src)
    for a in alerts:
        family = a["alert"]["family"]
        if family == "registration_flood":
            assert a["src"] in ATTACKER_IPS, a
        if family == "toll_fraud":
            # the cracked account is the only one that calls out; a proxied call shares its Call-ID on
            # both hops, so an alert may name the ESC->gateway hop instead of the fraudster's
            assert a["alert"]["evidence"].get("account") == CRACKED_USER, a
            assert {a["src"], a["dst"]} & {FRAUD_IP, KAMAILIO_IP, PSTN_GW_IP}, a
    fired = sorted(MUST_NOT_FIRE & set(names))
    assert not fired, f"alerts that the lab makes impossible were raised: {fired}"


def test_cleartext_calls_raise_unencrypted_media(lab_run):
    alerts = lab_run.alerts()
    names = {a["alert"]["name"] for a in alerts}
    assert EXPECTED_MEDIA_ALERTS <= names, names
    # cleartext media is rolled up per pair of places: the calls' host pairs are its evidence
    rtp = {tuple(pair["hosts"]) for a in alerts if a["alert"]["name"] == "unencrypted_media.cleartext_rtp"
           for pair in a["alert"]["evidence"]["top_host_pairs"]}
    for phone in ("10.110.0.11", "10.110.0.13"):
        assert (phone, "10.110.0.12") in rtp or ("10.110.0.12", phone) in rtp, rtp
    public = {a["dst"] for a in alerts if a["alert"]["name"] == "unencrypted_media.cleartext_on_public_path"} | \
             {a["src"] for a in alerts if a["alert"]["name"] == "unencrypted_media.cleartext_on_public_path"}
    assert public & set(ATTACKER_IPS), public


def test_no_alerts_from_benign_only_sources(lab_run):
    for a in lab_run.alerts():
        ends = {a["src"], a["dst"]}
        assert DATA_HOST_IP not in ends, f"alert on the benign data host: {a}"
        if a["src"] in BENIGN_ONLY and a["alert"]["family"] != "unencrypted_media":
            # a phone may appear only because an attacker reached it (svmap's OPTIONS)
            assert a["dst"] in ATTACKER_IPS, f"alert from a benign phone: {a}"
        if a["alert"]["family"] in ("registration_flood", "toll_fraud"):
            accounts = {a["alert"]["evidence"].get(k) for k in ("user", "account")}
            assert not accounts & {p.user for p in PHONES}, f"attack alert on a phone's account: {a}"
