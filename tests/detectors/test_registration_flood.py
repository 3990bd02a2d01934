"""registration_flood on real captures (scanners, a cracked password, a SIPp load test, ordinary phones) and
on hand-built records for behaviour no capture shows (a stale password fixed, retransmitted answers)."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from voipwatch.analyze import analyze_files
from voipwatch.detect import SEVERITIES, load_detectors
from voipwatch.records import PacketMeta, SipAuth, SipMessage
from voipwatch.config import load_settings

import peer

FAMILY = "registration_flood"


def _alerts(path: Path, mode: str = "batch") -> list:
    result = analyze_files([str(path)], load_settings(None), mode=mode)
    return [a for a in result.alerts if a.family == FAMILY]


def _zeek_notice_sources(path: Path) -> set[str]:
    lines = [line.split("\t") for line in path.read_text().splitlines() if not line.startswith("#")]
    return {fields[2] for fields in lines if fields and len(fields) > 10 and fields[10] == "SIP::BadUserAgent"}


def test_sipvicious_options_scans_are_scanners(public_captures):
    """Every source the peer (Zeek sip-attacks) flags is flagged, including the one that claims User-Agent
    'Zeeko' but carries SIPVicious's From tag; one alert per source per suppression hour, nothing else."""
    alerts = _alerts(public_captures / "sip-attacks/Traces/BadUserAgent-sipvicious.pcap")
    assert {a.name for a in alerts} == {f"{FAMILY}.scanner"}
    assert all(a.severity == "medium" and a.check == "RF-01" for a in alerts)   # no ESC role configured
    peer = _zeek_notice_sources(public_captures / "sip-attacks/Baseline/sip-attacks.BadUserAgent-sipvicious/notice.log")
    assert {a.src for a in alerts} == peer and len(peer) == 11
    zeeko = [a for a in alerts if a.src == "27.164.15.39"]
    assert [(a.evidence["user_agent"], a.evidence["matched"]) for a in zeeko] == [("Zeeko", "from_tag")]
    assert len(alerts) == 22


def test_friendly_scanner_cracks_a_password(public_captures):
    """ipfixprobe sip.pcap: a friendly-scanner INVITE sweep of 3 hosts x 3 ports (below sweep thresholds),
    4 users guessed (below enumeration), then svcrack guesses 6001's password and gets 200 after 7 failures;
    the 200 OK lists the binding svcrack leaves, <sip:123@1.1.1.1>;expires=3599 (a rogue binding).
    The scanner finding covers the whole activity: 24 requests (tshark: 9 INVITEs, then 15 REGISTERs to
    195.113.172.39, which the detector has by then learned is a registrar: high from a public source)."""
    alerts = _alerts(public_captures / "ipfixprobe/inputs/sip.pcap")
    assert [(a.name, a.severity) for a in alerts] == [(f"{FAMILY}.scanner", "high"),
                                                      (f"{FAMILY}.lockout_not_enforced", "critical"),
                                                      (f"{FAMILY}.rogue_binding", "critical")]
    scanner, lockout, rogue = alerts
    assert (rogue.evidence["contact"], rogue.evidence["registered_from"], rogue.evidence["aor"]) == (
        "sip:123@1.1.1.1", "147.32.77.113", "6001@195.113.172.39")
    assert rogue.evidence["expires_ts"] - rogue.ts == pytest.approx(3599)
    assert scanner.src == "147.32.77.113" and scanner.evidence["user_agent"] == "friendly-scanner"
    assert scanner.evidence["requests"] == 24 and scanner.evidence["target_is_registrar"] is True
    assert lockout.src == "147.32.77.113" and lockout.dst == "195.113.172.39"
    assert lockout.evidence["user"] == "6001" and lockout.evidence["failures"] == 7
    assert lockout.evidence["scanner_source"] is True
    # svcrack writes "user:password" hex-encoded into its From tag; no evidence may carry it.
    text = json.dumps([a.evidence for a in alerts]) + " ".join(a.msg for a in alerts)
    assert "123456" not in text and "363030313a313233343536" not in text


def test_sipp_load_test(public_captures):
    """SIPp from 127.0.0.1 at 10 calls/s (REGISTER, INVITE, BYE: ~29 requests/s) against a UAS that accepts
    every REGISTER unchallenged and answers 1148 INVITEs 403. What fires, honestly: a request flood (medium:
    internal source, no 503) and an unauthenticated registration (high). The 403s answer INVITEs that carry
    no credentials, so they are call refusals, not failed logins: no brute force."""
    alerts = _alerts(public_captures / "sipnab/sipp-branch-scenario.pcapng")
    assert sorted((a.name, a.severity) for a in alerts) == [
        (f"{FAMILY}.request_flood", "medium"), (f"{FAMILY}.unauthenticated_registration", "high")]
    flood = next(a for a in alerts if a.name.endswith("request_flood"))
    # the whole run (tshark: 3907 requests from 127.0.0.1), not the 200 of the window that first fired
    assert flood.src == "127.0.0.1" and flood.evidence["requests"] == 3907 and flood.evidence["responses_503"] == 0
    assert flood.evidence["methods"] == {"REGISTER": 1334, "INVITE": 1334, "BYE": 1135, "ACK": 104}
    assert flood.evidence["public_source"] is False
    unauth = next(a for a in alerts if a.name.endswith("unauthenticated_registration"))
    assert unauth.evidence["aor"] == "ua1@nnl.cym:5061" and unauth.evidence["registrar"] == "127.0.0.1"


def test_sipcli_toll_fraud_probe_is_a_scanner_not_a_brute_force(public_captures):
    """SIP-3700: sipcli probes international prefixes; the peer (Zeek) counts any 401/403/503 as brute force,
    this detector counts only rejected credentials (one 403 here) and reports the tool."""
    alerts = _alerts(public_captures / "sip-attacks/Traces/SIP-3700-unauthorized-401.pcap")
    assert {(a.name, a.severity, a.src) for a in alerts} == {(f"{FAMILY}.scanner", "medium", "40.129.198.250")}


@pytest.mark.parametrize("capture", ["sngrep/aaa.pcap", "zeek/Traces/sip/wireshark.pcap", "ndpi/pcap/sip_hello.pcapng",
                                     "ndpi/pcap/sip.pcap", "sipnab/Asterisk_ZFONE_XLITE.pcap", "ndpi/pcap/webex.pcap",
                                     "ndpi/pcap/fuzz-2006-06-26-2594.pcap"])
def test_ordinary_phones_raise_nothing_above_low(public_captures, capture):
    """Registrations with 401 challenges, slow re-tries after 403/401, a de-registration from its own
    source, 401 then 200, unanswered REGISTERs, a fuzzed copy of aaa.pcap: nothing above low."""
    alerts = _alerts(public_captures / capture)
    assert [a for a in alerts if SEVERITIES.index(a.severity) > SEVERITIES.index("low")] == []


@pytest.mark.parametrize("capture,aor", [
    ("sipnab/SIP_CALL_RTP_G711", "Ivan@Verso.com"), ("sipnab/sip-register.pcap", None),
    ("sipnab/register-invite-reinvite-bye.pcap", None), ("suricata-verify/sip-tcp-method/sip-tcp.pcap", None),
    ("suricata-verify/sip-body-frames/public-cloudshark-sip-s0.pcap", None),
    ("snort3_demo/inspectors/sip/SIP_Eyebeam2Eyebeam_Video_Audio.pcap", None)])
def test_registrars_that_never_challenge(public_captures, capture, aor):
    """Lab and sample captures whose registrar answers a REGISTER without credentials 200 with no 401/407
    anywhere: RF-06 high (the guide's 'disable automatic registration'), and nothing else. A site whose
    registrar trusts a gateway by address lists it in [roles] pstn_gw/sbc/trusted_trunks."""
    alerts = _alerts(public_captures / capture)
    assert alerts and {(a.name, a.severity) for a in alerts} == {(f"{FAMILY}.unauthenticated_registration", "high")}
    assert all(a.evidence["status"] == 200 for a in alerts)
    if aor:
        assert aor in {a.evidence["aor"] for a in alerts}


def test_high_rate_capture_gives_the_same_alerts_in_both_paths(public_captures):
    path = public_captures / "ipfixprobe/inputs/sip.pcap"
    assert _alerts(path, "batch") == _alerts(path, "stream")


# -- hand-built records --------------------------------------------------------------------------------
REGISTRAR, PHONE = "10.0.0.5", "10.0.0.21"


def _register(ts, frame, cseq, *, auth):
    creds = (SipAuth("authorization", "Digest", username="2001", realm="pbx", response_sha256=f"{cseq:064x}",
                     response_len=32),) if auth else ()
    return SipMessage(PacketMeta(ts, frame, (), PHONE, 5060, REGISTRAR, 5060, "udp"), True, "REGISTER",
                      "sip:pbx", None, None, None, "phone-1", cseq, "REGISTER", "sip:2001@pbx", "2001", "t1",
                      "sip:2001@pbx", "2001", None, contact=(f"sip:2001@{PHONE}",), expires=3600,
                      user_agent="Desk/1.0", auth=creds)


def _answer(ts, frame, cseq, status):
    return SipMessage(PacketMeta(ts, frame, (), REGISTRAR, 5060, PHONE, 5060, "udp"), False, None, None, None,
                      status, "x", "phone-1", cseq, "REGISTER", "sip:2001@pbx", "2001", "t1", "sip:2001@pbx",
                      "2001", "r1")


def _run(messages):
    settings = load_settings(None)
    det = load_detectors()[FAMILY](settings.detector_configs[FAMILY], settings.site)
    out = [a for m in messages for a in det.on_sip_message(m) or ()]
    return out + list(det.finish())


def test_stale_password_fixed_after_slow_failures_is_high_not_critical():
    """A phone fails once a minute for 12 minutes, then its password is fixed: lockout was not enforced
    (RF-05), but nothing suggests guessing (slow, one source, no scanner), so high rather than critical."""
    msgs, frame = [], 0
    for n in range(13):
        ts, frame = 1000.0 + 60 * n, frame + 2
        msgs += [_register(ts, frame, n + 1, auth=True), _answer(ts + 0.01, frame + 1, n + 1, 200 if n == 12 else 403)]
    alerts = _run(msgs)
    assert [(a.name, a.severity) for a in alerts] == [(f"{FAMILY}.lockout_not_enforced", "high")]
    assert alerts[0].evidence["failures"] == 12 and alerts[0].evidence["brute_force_rate"] is False


@pytest.mark.parametrize("stale,brute_force", [(True, False), (None, True)])
def test_stale_nonce_rechallenges_are_not_failed_logins(stale, brute_force):
    """RFC 7616 §3.3: a 401 with stale=true answers valid credentials whose nonce expired (a registrar with
    short-lived nonces re-challenges every refresh); twelve of them in a minute are no brute force, while
    twelve plain 401s to credentials are."""
    challenge = (SipAuth("www-authenticate", "Digest", realm="pbx", stale=stale),)
    msgs = []
    for n in range(12):
        msgs += [_register(1000.0 + 4 * n, 2 * n + 1, n + 1, auth=True),
                 dataclasses.replace(_answer(1000.01 + 4 * n, 2 * n + 2, n + 1, 401), auth=challenge)]
    names = [a.name for a in _run(msgs)]
    assert (f"{FAMILY}.brute_force" in names) is brute_force


def test_retransmitted_final_responses_count_once():
    """RFC 3261 §17.2.1: a UAS re-sends its final response for every retransmitted request; ten copies of one
    403 to one guess are one failure, not a brute force."""
    msgs = [_register(1000.0, 1, 1, auth=True)]
    msgs += [_answer(1000.01 + n, 2 + n, 1, 403) for n in range(12)]
    assert _run(msgs) == []


def test_scan_in_the_generated_site_capture(tmp_path):
    """scripts/gen_site_capture.py writes an independent truth file: a friendly-scanner OPTIONS sweep of 254
    hosts from the data VLAN, then 30 REGISTER guesses all answered 404. Expected: scanner, sweep and an
    enumeration that revealed nothing (medium); the 2-s burst is not a flood; ordinary phones raise nothing."""
    out = tmp_path / "site.pcap"
    subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "scripts" / "gen_site_capture.py"),
                    "-o", str(out), "--seed", "7", "-q", "--packets", "20000", "--phones", "60", "--calls-concurrent", "30",
                    "--call-duration-s", "3", "8", "--scan-every-s", "8", "--scan-guesses", "30"], check=True, timeout=120)
    scan = json.loads(out.with_suffix(".truth.json").read_text())["scans"]
    alerts = _alerts(out)
    assert sorted((a.name, a.severity) for a in alerts) == [
        (f"{FAMILY}.enumeration", "medium"), (f"{FAMILY}.scanner", "medium"), (f"{FAMILY}.sweep", "medium")]
    assert {a.src for a in alerts} == {s["scanner"] for s in scan}
    enum = next(a for a in alerts if a.name.endswith("enumeration"))
    guess = next(s for s in scan if s["kind"] == "register_guess")
    assert enum.evidence["responses"] == guess["responses_by_status"] and enum.evidence["valid_users"] == []


@pytest.mark.peer
@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_registrations_table_counts_failed_logins_as_the_detector_does(public_captures, tshark, mode):
    """ipfixprobe sip.pcap: svcrack cracks 6001. The registrations row of 6001 from the cracker counts failed
    logins (401/403/407 to a REGISTER carrying credentials) by the same definition as RF-05 (voipwatch.sip_auth):
    both equal tshark's count of such answers, RF-05's up to the 200 and the row's over the whole capture."""
    path = public_captures / "ipfixprobe/inputs/sip.pcap"
    rows = peer.run(tshark, ["-r", str(path), "-Y", "sip.CSeq.method == REGISTER", "-T", "fields", "-e", "frame.number",
                             "-e", "sip.Method", "-e", "sip.Status-Code", "-e", "sip.Call-ID", "-e", "sip.CSeq.seq",
                             "-e", "sip.Via.branch", "-e", "sip.auth.username", "-e", "sip.to.user"])
    with_auth, outcomes, success_frame = {}, [], None
    for line in rows.splitlines():
        frame, method, status, call_id, cseq, branch, auth_user, to_user = (line.split("\t") + [""] * 8)[:8]
        key = (call_id, cseq, branch.split(",")[0])
        if method == "REGISTER":
            with_auth[key] = (bool(auth_user), to_user)
        elif key in with_auth and with_auth[key][1] == "6001":
            outcomes.append((int(frame), int(status), with_auth[key][0]))
    success_frame = next(f for f, s, _ in outcomes if s == 200)
    failed = [f for f, s, creds in outcomes if creds and s in (401, 403, 407)]
    result = analyze_files([str(path)], load_settings(None), mode=mode)
    lockout = next(a for a in result.alerts if a.name == f"{FAMILY}.lockout_not_enforced")
    row = next(r for r in result.records["registrations"] if r.aor.startswith("6001@") and r.src == "147.32.77.113")
    assert lockout.evidence["failures"] == sum(1 for f in failed if f < success_frame) == 7
    assert row.failures == len(failed) == 8 and row.successes == 1
    assert row.challenges == sum(1 for _, s, creds in outcomes if s == 401 and not creds)


def _invite(ts, frame, callee, cseq, *, src=PHONE, proxy_auth=False, call_id=None):
    creds = (SipAuth("proxy-authorization", "Digest", username="2001", realm="pbx", response_sha256=f"{frame:064x}",
                     response_len=32),) if proxy_auth else ()
    return SipMessage(PacketMeta(ts, frame, (), src, 5060, REGISTRAR, 5060, "udp"), True, "INVITE",
                      f"sip:{callee}@pbx", callee, None, None, call_id or f"call-{callee}", cseq, "INVITE",
                      "sip:2001@pbx", "2001", "t1", f"sip:{callee}@pbx", callee, None, user_agent="Desk/1.0",
                      auth=creds)


def _invite_answer(invite, frame, status):
    p = invite.pkt
    return SipMessage(PacketMeta(p.ts + 0.01, frame, (), p.dst, 5060, p.src, 5060, "udp"), False, None, None, None,
                      status, "x", invite.call_id, invite.cseq, "INVITE", invite.from_uri, invite.from_user, "t1",
                      invite.to_uri, invite.to_user, "r1")


def _dialling(callees, *, log_in, with_credentials, src=PHONE):
    """src calls each callee: INVITE -> 407, then (with_credentials) INVITE with Proxy-Authorization -> 404/200."""
    msgs, frame, ts = [], 0, 1000.0
    if log_in:
        msgs += [_register(ts, 1, 1, auth=False), _answer(ts + 0.01, 2, 1, 401),
                 _register(ts + 0.1, 3, 2, auth=True), _answer(ts + 0.11, 4, 2, 200)]
        frame = 4
    for n, callee in enumerate(callees):
        ts += 1.0
        first = _invite(ts, frame + 1, callee, 1, src=src)
        msgs += [first, _invite_answer(first, frame + 2, 407)]
        frame += 2
        if with_credentials:
            second = _invite(ts + 0.2, frame + 1, callee, 2, src=src, proxy_auth=True)
            msgs += [second, _invite_answer(second, frame + 2, 404 if n % 3 else 200)]
            frame += 2
    return msgs


@pytest.mark.parametrize("callees,log_in,with_credentials", [
    ([f"0044207946{n:04d}" for n in range(40)], False, True),   # external numbers
    ([f"{3000 + n}" for n in range(40)], True, False),            # extensions dialled from a source that logged in
    ([f"{3000 + n}" for n in range(40)], False, True),            # extensions dialled with Proxy-Authorization
])
def test_destinations_dialled_by_an_authenticated_account_are_not_enumeration(callees, log_in, with_credentials):
    """Issue 12: the 407s to an authenticated user's INVITEs were counted as 'valid users revealed'. A 407 asks
    the caller to log in (RFC 3261 §22.3); what an account dials is no identity probe."""
    names = [a.name for a in _run(_dialling(callees, log_in=log_in, with_credentials=with_credentials))]
    assert f"{FAMILY}.enumeration" not in names


def test_unauthenticated_invites_to_extensions_are_enumeration():
    """The same 40 INVITEs to extensions from a source that never logs in, answered 407 for some and 404 for
    others, are enumeration that revealed the 407 ones (svwar's INVITE mode)."""
    msgs, frame = [], 0
    for n in range(40):
        invite = _invite(1000.0 + n, frame + 1, f"{3000 + n}", 1, src="10.0.0.66")
        msgs += [invite, _invite_answer(invite, frame + 2, 407 if n % 4 == 0 else 404)]
        frame += 2
    enum = [a for a in _run(msgs) if a.name == f"{FAMILY}.enumeration"]
    assert len(enum) == 1 and enum[0].severity == "high" and enum[0].evidence["users_tried"] == 40
    assert enum[0].evidence["valid_users"] == [f"{3000 + n}" for n in range(0, 40, 4)]


@pytest.mark.peer
@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_enumeration_on_a_capture_with_dialled_destinations(analysis, tshark, mode):
    """sample_captures/rf-dialling.pcap: a phone that logged in dials 40 external numbers, each first answered
    407 (RFC 3261 §22.3: log in), then re-sent with Proxy-Authorization; a prober INVITEs 40 extensions without
    credentials and is answered 407 for the 10 that exist, 404 for the rest. Only the prober enumerates, and
    its evidence equals tshark's reading of the same packets."""
    samples = Path(__file__).resolve().parents[2] / "sample_captures"
    capture, config = samples / "rf-dialling.pcap", samples / "configs" / "registration_flood.toml"
    rows = peer.run(tshark, ["-r", str(capture), "-Y", 'sip.CSeq.method == "INVITE"', "-T", "fields",
                             "-e", "ip.src", "-e", "ip.dst", "-e", "sip.Method", "-e", "sip.Status-Code",
                             "-e", "sip.r-uri.user", "-e", "sip.to.user"])
    to_phone = Counter(f[3] for f in (r.split("\t") for r in rows.splitlines()) if f[1] == "10.1.10.31" and f[3])
    assert to_phone["407"] == 40                                 # what was miscounted as users revealed
    probed = {f[4] for f in (r.split("\t") for r in rows.splitlines()) if f[0] == "198.51.100.99" and f[2] == "INVITE"}
    answers = [(f[5], f[3]) for f in (r.split("\t") for r in rows.splitlines()) if f[1] == "198.51.100.99"]
    alerts = [a for a in analysis(capture, config, mode).alerts if a.name == f"{FAMILY}.enumeration"]
    assert [(a.src, a.severity) for a in alerts] == [("198.51.100.99", "high")]
    ev = alerts[0].evidence
    assert ev["users_tried"] == len(probed) == 40
    assert ev["responses"] == dict(sorted(Counter(s for _, s in answers).items())) == {"404": 30, "407": 10}
    assert ev["valid_users"] == sorted(u for u, s in answers if s == "407")
