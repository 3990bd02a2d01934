"""Living findings (voipwatch.detect) and incidents (voipwatch.incidents).

Unit tests drive the DetectorBus with a scripted detector; regression tests check that RF-08's and
TF-05's totals equal tshark's counts of the same packets, in both paths, on the sample capture and on
labeled generated captures (the flood of issue 12: 1,200 requests in 8 s; six concurrent calls).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from peer import frame_counts, run
from voipwatch.alerts import alert_event
from voipwatch.analyze import analyze_files
from voipwatch.config import load_settings
from voipwatch.detect import AlertSpec, Detector, DetectorBus, Tally
from voipwatch.incidents import Grouper
from voipwatch.records import PacketMeta, SipMessage
from voipwatch.site import Site

SAMPLES = Path(__file__).resolve().parents[1] / "sample_captures"
sys.path.insert(0, str(SAMPLES / "generators"))


# -- the finding updater -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _NoConfig:
    pass


class _Scripted(Detector):
    """Raises what the script says for the frame of each SIP message it is given."""
    name = "scripted"
    consumes = (SipMessage,)
    alerts = {"thing": AlertSpec("RF-08", "medium", "Part I", "a scripted finding")}
    Config = _NoConfig

    def __init__(self, script: dict[int, list[dict]]):
        super().__init__(_NoConfig(), Site({}))
        self.script = script

    def on_sip_message(self, msg: SipMessage):
        for kw in self.script.get(msg.pkt.frame, ()):
            yield self.alert("thing", ts=msg.pkt.ts, msg=f"frame {msg.pkt.frame}", src=msg.pkt.src, **kw)


def _sip(ts: float, frame: int, src: str = "192.0.2.1") -> SipMessage:
    meta = PacketMeta(ts, frame, (), src, 5060, "192.0.2.2", 5060, "udp")
    return SipMessage(meta, True, "OPTIONS", "sip:a@b", "a", None, None, "c@x", 1, "OPTIONS", None, None, None,
                      None, None, None)


def _run(script: dict, times: dict[int, float], mode: str, suppress_for_s: float = 100.0, floor: str = "info",
         update_every_s: float = 60.0) -> list:
    events: list = []
    bus = DetectorBus([_Scripted(script)], events.append, mode, 5.0, 60.0, suppress_for_s,
                      update_every_s=update_every_s, min_severity=floor)
    for frame, ts in sorted(times.items()):
        bus.emit(_sip(ts, frame))
        bus.tick(ts)
    bus.finish()
    return events


def test_raises_of_one_activity_update_one_finding_with_the_latest_totals():
    script = {1: [dict(identifier="x", first_ts=0.5, totals={"requests": 10})],
              2: [dict(identifier="x", first_ts=0.5, totals={"requests": 25})],
              3: [dict(identifier="x", first_ts=0.5, totals={"requests": 40}, severity="high")]}
    events = _run(script, {1: 1.0, 2: 2.0, 3: 3.0}, "batch")
    final = [e for e in events if e.state == "final"]
    assert len(final) == 1
    f = final[0]
    assert (f.ts, f.first_ts, f.last_ts, f.raised_ts) == (0.5, 0.5, 3.0, 1.0)
    assert (f.raises, f.repeats, f.severity, f.msg) == (3, 0, "high", "frame 3")
    assert f.totals == {"requests": 40} and f.evidence["requests"] == 40


def test_a_repeat_within_the_window_sums_its_totals_and_a_later_one_is_a_new_finding():
    script = {1: [dict(identifier="x", first_ts=1.0, totals={"failures": 10})],
              2: [dict(identifier="x", first_ts=50.0, totals={"failures": 12})],       # a second activity
              3: [dict(identifier="x", first_ts=300.0, totals={"failures": 3})]}       # 250 s later: new finding
    final = [e for e in _run(script, {1: 1.0, 2: 50.0, 3: 300.0}, "batch", suppress_for_s=100.0)
             if e.state == "final"]
    assert [(f.first_ts, f.last_ts, f.repeats, f.totals["failures"]) for f in final] == [
        (1.0, 50.0, 1, 22), (300.0, 300.0, 0, 3)]
    assert "Seen 2 times" in final[0].msg and "22 failures" in final[0].msg


def test_stream_reports_new_then_throttled_updates_then_final_and_batch_keeps_only_final():
    script = {i: [dict(identifier="x", first_ts=0.0, totals={"n": i})] for i in range(1, 8)}
    script[5] = [dict(identifier="x", first_ts=0.0, totals={"n": 5}, severity="critical")]
    times = {1: 0.0, 2: 10.0, 3: 70.0, 4: 80.0, 5: 85.0, 6: 90.0, 7: 200.0}
    stream = _run(script, times, "stream", suppress_for_s=1000.0, update_every_s=60.0)
    # new at 0; update at 70 (60 s later); at 85 the severity rose; at 200 (115 s after 85) again; final at end
    assert [(e.state, e.totals["n"]) for e in stream] == [
        ("new", 1), ("update", 3), ("update", 5), ("update", 7), ("final", 7)]
    batch = _run(script, times, "batch", suppress_for_s=1000.0)
    assert [alert_event(e) for e in batch if e.state == "final"] == [alert_event(stream[-1])]


def test_a_finding_below_min_severity_is_reported_from_when_it_rises_above_it():
    script = {1: [dict(identifier="x", severity="low")], 2: [dict(identifier="x", severity="high")]}
    events = _run(script, {1: 1.0, 2: 2.0}, "stream", floor="medium")
    assert [(e.state, e.severity) for e in events] == [("new", "high"), ("final", "high")]
    assert _run({1: [dict(identifier="x", severity="low")]}, {1: 1.0}, "stream", floor="medium") == []


def test_idle_findings_close_at_the_same_point_of_the_timeline_in_both_paths():
    script = {1: [dict(identifier="a")], 2: [dict(identifier="b")], 3: [dict(identifier="a")]}
    times = {1: 0.0, 2: 500.0, 3: 1000.0}
    for mode in ("batch", "stream"):
        finals = [(e.identifier, e.first_ts) for e in _run(script, times, mode, suppress_for_s=100.0)
                  if e.state == "final"]
        # "a" closed when frame 2 was released (500 s > 100 s idle), "b" when frame 3 was, then the rest
        assert finals == [("a", 0.0), ("b", 500.0), ("a", 1000.0)], mode


def test_tally_keeps_first_time_counts_peak_and_bounded_distinct_values():
    t = Tally(10.0, max_distinct=2)
    t.add(12.0, requests=3).add(11.0, requests=1)
    for host in ("a", "b", "a", "c"):
        t.see("hosts", host)
    assert (t.first_ts, t.last_ts, t.counts["requests"], t.peak_at(2.5), t.peak_at(1.0)) == (10.0, 12.0, 4, 2.5, 2.5)
    assert t.distinct["hosts"] == {"a", "b"} and t.capped == {"hosts"}


# -- grouping --------------------------------------------------------------------------------------
def _add(g: Grouper, fid: str, name: str, check: str, first: float, last: float, *actors: str, victim=None):
    return g.add(fid, name, check, None, "high", first, last, tuple(actors), victim)


def test_findings_sharing_an_actor_within_the_gap_form_one_incident_with_its_phases():
    g = Grouper(Site({"roles": {"esc": ["10.0.0.5"]}}), gap_s=3600.0)
    _add(g, "F-1", "registration_flood.sweep", "RF-01", 0, 60, "ip:203.0.113.9", victim="10.0.0.5")
    _add(g, "F-2", "registration_flood.lockout_not_enforced", "RF-05", 600, 700, "ip:203.0.113.9", "account:1001")
    _add(g, "F-3", "toll_fraud.toll_call_volume", "TF-04", 2000, 2500, "ip:198.51.100.7", "account:1001")  # same account
    _add(g, "F-4", "registration_flood.request_flood", "RF-08", 9000, 9010, "ip:203.0.113.9")   # > 1 h after: new
    _add(g, "F-5", "unencrypted_media.cleartext_sip", "UM-04", 1, 2, "ip:10.0.0.5")              # the ESC: no link
    _add(g, "F-6", "unencrypted_media.cleartext_sip", "UM-04", 3, 4, "ip:10.0.0.5")
    incidents = g.incidents()
    assert [(i.findings, i.phases) for i in incidents] == [
        (("F-1", "F-2", "F-3"), ("recon", "credential_access", "fraud")),
        (("F-5",), ("hygiene",)), (("F-6",), ("hygiene",)), (("F-4",), ("dos",))]
    first = incidents[0]
    assert first.actors == ("account:1001", "ip:198.51.100.7", "ip:203.0.113.9")
    assert first.victims == ("10.0.0.5",) and (first.first_ts, first.last_ts) == (0, 2500)
    assert first.id == Grouper(None, 3600.0).add("F-1", "x", "RF-01", None, "info", 0, 0, (), None).id


def test_a_finding_that_joins_two_incidents_keeps_the_older_id_and_lists_the_other():
    g = Grouper(None, gap_s=100.0)
    _add(g, "F-1", "a.a", "RF-01", 0, 10, "ip:192.0.2.1")
    _add(g, "F-2", "a.a", "RF-01", 5, 20, "ip:192.0.2.2")
    _add(g, "F-3", "a.a", "RF-03", 30, 40, "ip:192.0.2.2", "ip:192.0.2.1")
    (incident,) = g.incidents()
    ids = {fid: Grouper(None, 1.0).add(fid, "a.a", "RF-01", None, "info", 0, 0, (), None).id for fid in ("F-1", "F-2")}
    assert incident.id == ids["F-1"] and incident.merged_ids == (ids["F-2"],)
    assert incident.findings == ("F-1", "F-3", "F-2") and incident.n_findings == 3


# -- real totals against tshark ------------------------------------------------------------------------
def _only(alerts, name: str, src: str):
    found = [a for a in alerts if a.name == name and a.src == src]
    assert len(found) == 1, [(a.name, a.src) for a in alerts]
    return found[0]


@pytest.mark.peer
@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_rf08_totals_equal_tshark_on_the_sample_flood(mode, tshark, analysis):
    capture = SAMPLES / "rf-attacks.pcap"
    result = analysis(capture, SAMPLES / "configs/registration_flood.toml", mode)
    flood = _only(result.alerts, "registration_flood.request_flood", "203.0.113.90")
    requests, answered_503 = frame_counts(tshark, str(capture), ["ip.src==203.0.113.90 && sip.Method",
                                                                 "ip.dst==203.0.113.90 && sip.Status-Code==503"])
    first, last = _first_last(tshark, capture, "ip.src==203.0.113.90 && sip.Method || ip.dst==203.0.113.90 && sip.Status-Code==503")
    assert (flood.evidence["requests"], flood.evidence["responses_503"]) == (requests, answered_503) == (230, 95)
    assert (flood.first_ts, flood.last_ts) == (first, last)
    assert flood.raised_ts > flood.first_ts and flood.state == "final"


def _first_last(tshark: str, capture: Path, display_filter: str) -> tuple[float, float]:
    times = [float(t) for t in run(tshark, ["-r", str(capture), "-Y", display_filter, "-T", "fields",
                                             "-e", "frame.time_epoch"]).split()]
    return round(times[0], 6), round(times[-1], 6)


@pytest.fixture(scope="module")
def flood_capture(tmp_path_factory) -> Path:
    """Labeled generated capture: 1,200 OPTIONS in 8 s (150/s) from public 203.0.113.66 to 10.1.10.5,
    the server answering 200 to the first 400 and 503 to the rest."""
    from pcapgen import UdpCapture, sip_message
    cap = UdpCapture()
    t0 = 1_700_000_000.0
    for i in range(1200):
        ts = t0 + i * 8.0 / 1200
        call_id = f"flood-{i}@x"
        via = ("Via", f"SIP/2.0/UDP 203.0.113.66:5060;branch=z9hG4bK{i:08d}")
        common = [via, ("From", f"<sip:probe@203.0.113.66>;tag={i}"), ("To", "<sip:100@10.1.10.5>"),
                  ("Call-ID", call_id), ("CSeq", "1 OPTIONS")]
        cap.udp(ts, "203.0.113.66", 5060, "10.1.10.5", 5060,
                sip_message("OPTIONS sip:100@10.1.10.5 SIP/2.0", [*common, ("Max-Forwards", "70")]))
        status = "200 OK" if i < 400 else "503 Service Unavailable"
        cap.udp(ts + 0.001, "10.1.10.5", 5060, "203.0.113.66", 5060, sip_message(f"SIP/2.0 {status}", common))
    path = tmp_path_factory.mktemp("flood") / "flood-1200.pcap"
    cap.pcap.save(path)
    return path


@pytest.mark.peer
@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_rf08_counts_a_whole_flood_not_the_window_that_first_fired(mode, flood_capture, tshark):
    result = analyze_files([str(flood_capture)], load_settings(), mode=mode)
    flood = _only(result.alerts, "registration_flood.request_flood", "203.0.113.66")
    requests, answered_503 = frame_counts(tshark, str(flood_capture), [
        "ip.src==203.0.113.66 && sip.Method==\"OPTIONS\"", "ip.dst==203.0.113.66 && sip.Status-Code==503"])
    assert (requests, answered_503) == (1200, 800)
    assert flood.evidence["requests"] == requests and flood.evidence["responses_503"] == answered_503
    # the busiest 10 s window (flood_window_s) held all 1,200: 120/s averaged over it
    assert flood.evidence["peak_rate_per_s"] == requests / 10.0
    # its evidence runs from the first request to the last 503 answer
    assert (flood.first_ts, flood.last_ts) == _first_last(tshark, flood_capture, "ip.addr==203.0.113.66")
    assert "1200 SIP requests in 8.0 s" in flood.msg
    # it first fired after flood_min_span_s (5 s), on fewer requests than the flood held
    assert flood.raised_ts - flood.first_ts == pytest.approx(5.0, abs=0.01) and flood.raises > 400


@pytest.fixture(scope="module")
def concurrent_capture(tmp_path_factory) -> Path:
    """Labeled generated capture: phone 1007 (10.3.10.7) starts six external calls 5 s apart through the
    ESC, each challenged, answered and held 60 s, on the site of configs/toll_fraud.toml."""
    import tf_attacks
    cap = tf_attacks.Capture(12)
    tf_attacks.registrations(cap)
    for i in range(6):
        cap.call(tf_attacks.T0 + 900 + i * 5, tf_attacks.phone("1007"), tf_attacks.ESC, f"202555010{i + 1}",
                 f"conc-{i}@tf", "1007", hold_s=60)
    path = tmp_path_factory.mktemp("tf05") / "tf05-six.pcap"
    cap.pcap.save(path)
    return path


def _peak_concurrent(tshark: str, capture: Path, src: str) -> tuple[int, int]:
    """From tshark: the most calls of `src` answered (200 to its INVITE) and not yet ended (BYE) at once,
    and how many such calls there were."""
    out = run(tshark, ["-r", str(capture), "-Y", f"(ip.dst=={src} && sip.Status-Code==200 && sip.CSeq.method==\"INVITE\")"
                       f" || (ip.src=={src} && sip.Method==\"BYE\")", "-T", "fields", "-e", "frame.time_epoch",
                       "-e", "sip.Method", "-e", "sip.Call-ID"])
    live, peak, calls = set(), 0, set()
    for line in out.splitlines():
        _, method, call_id = line.split("\t")
        if method == "BYE":
            live.discard(call_id)
        else:
            live.add(call_id)
            calls.add(call_id)
        peak = max(peak, len(live))
    return peak, len(calls)


@pytest.mark.peer
@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_tf05_reports_the_peak_of_concurrent_calls_not_the_first_over_the_limit(mode, concurrent_capture, tshark):
    result = analyze_files([str(concurrent_capture)], load_settings(str(SAMPLES / "configs/toll_fraud.toml")), mode=mode)
    (velocity,) = [a for a in result.alerts if a.name == "toll_fraud.call_velocity"]
    peak, calls = _peak_concurrent(tshark, concurrent_capture, "10.3.10.7")
    assert (peak, calls) == (6, 6)
    assert velocity.evidence["calls"] == peak and len(velocity.evidence["call_ids"]) == calls
    assert "up to 6 external calls in progress at once" in velocity.msg


# -- alerts.jsonl, parity of the event log, incidents ---------------------------------------------------
CASES = [("rf-attacks.pcap", "configs/registration_flood.toml"), ("tf-attacks.pcap", "configs/toll_fraud.toml"),
         ("xv-attacks.pcap", "configs/cross_vlan.toml"), ("small-office.pcap", None)]


@pytest.mark.parametrize("capture,config", CASES)
def test_stream_final_records_equal_batch_and_alerts_are_in_activity_order(capture, config, analysis):
    cfg = SAMPLES / config if config else None
    batch, stream = analysis(SAMPLES / capture, cfg, "batch"), analysis(SAMPLES / capture, cfg, "stream")
    finals = sorted((alert_event(a) for a in stream.alert_events if a.state == "final"),
                    key=lambda e: (e["ts"], e["raised_ts"]))          # stable: ties stay in closing order
    assert finals == [alert_event(a) for a in batch.alerts]
    assert [a.ts for a in batch.alerts] == sorted(a.ts for a in batch.alerts)
    assert all(a.raised_ts >= a.first_ts and a.last_ts >= a.first_ts for a in batch.alerts)
    news = [a for a in stream.alert_events if a.state == "new"]
    assert len(news) == len(batch.alerts)               # every finding was announced once, when first raised
    assert all(a.incident for a in batch.alerts)
    incident_ids = {i.id for i in batch.incidents}
    assert {a.incident for a in batch.alerts} <= incident_ids | {m for i in batch.incidents for m in i.merged_ids}
    assert batch.incidents == stream.incidents


def test_an_attack_chain_from_one_source_is_one_incident_with_its_phases(analysis):
    result = analysis(SAMPLES / "rf-attacks.pcap", SAMPLES / "configs/registration_flood.toml")
    mine = [i for i in result.incidents if "ip:198.51.100.70" in i.actors]
    assert len(mine) == 1
    (incident,) = mine
    # 198.51.100.70 guessed 1004's password (12 x 403, then 200) and so displaced the phone's binding
    assert {"registration_flood.brute_force", "registration_flood.lockout_not_enforced",
            "registration_flood.binding_hijack"} <= set(incident.names)
    assert {"credential_access", "persistence"} <= set(incident.phases) and incident.max_severity == "critical"
    assert "account:1004" in incident.actors
    others = [i for i in result.incidents if "ip:198.51.100.40" in i.actors]
    assert len(others) == 1 and others[0].id != incident.id       # another brute forcer, another incident
    assert {a.incident for a in result.alerts if a.src == "198.51.100.70"} == {incident.id}


# -- terminal summary, report, incident bundle ---------------------------------------------------------
RF = str(SAMPLES / "rf-attacks.pcap")
RF_CONFIG = str(SAMPLES / "configs/registration_flood.toml")


def _cli(*args):
    from click.testing import CliRunner
    from voipwatch.cli import cli
    return CliRunner().invoke(cli, list(args))


def test_analyze_summary_ends_with_top_incidents_and_collapses_idle_notices(tmp_path):
    result = _cli("analyze", RF, "-o", str(tmp_path / "out"), "--no-progress")
    assert result.exit_code == 0, result.output
    notices = [line for line in result.stderr.splitlines() if line.startswith("notice:")]
    assert len(notices) == 1 and "--verbose lists them" in notices[0]
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("top incidents (5 of "))
    assert len(lines) == start + 6 and all(line.startswith("  I-") for line in lines[start + 1:])
    incidents = (tmp_path / "out" / "incidents.csv").read_text().splitlines()
    assert lines[start].startswith(f"top incidents (5 of {len(incidents) - 1};")


def test_verbose_lists_every_idle_check_and_quiet_prints_nothing(tmp_path):
    verbose = _cli("analyze", RF, "-o", str(tmp_path / "v"), "--no-progress", "--verbose")
    from voipwatch.cli import idle_notices
    reasons = idle_notices(load_settings())
    assert len(reasons) > 1
    assert [line for line in verbose.stderr.splitlines() if line.startswith("notice:")] == [f"notice: {r}" for r in reasons]
    quiet = _cli("analyze", RF, "-o", str(tmp_path / "q"), "--quiet")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""
    assert (tmp_path / "q" / "alerts.jsonl").exists()
    broken = _cli("analyze", str(tmp_path / "missing.pcap"), "-o", str(tmp_path / "x"), "--quiet")
    assert broken.exit_code == 1 and broken.stdout == "" and broken.stderr.startswith("error:")


def test_an_account_name_cannot_break_the_summary_line():
    from voipwatch.cli import terminal_summary
    from voipwatch.incidents import Incident
    evil = Incident("I-0", ("account:\x1b[2J\nfake line",), (), 0.0, 1.0, ("fraud",), "high", ("F-1",), 1, ("x.y",))
    summary = {"version": "0", "frames_read": 1, "run_s": 0.0, "frames_undecoded": 0, "anomalies_by_reason": {},
               "counts": {"calls": 0, "registrations": 0, "rtp_streams": 0, "rtp_streams_negotiated": 0,
                          "sip_messages": 0, "dns_messages": 0}}
    text = terminal_summary(summary, "out", [evil])
    assert "\x1b" not in text and text.splitlines()[-1].endswith("account:\\x1b[2J\\x0afake line: fraud (1 finding)")


def test_report_opens_with_the_incident_timeline_and_cards(tmp_path):
    out = tmp_path / "report.html"
    result = _cli("report", RF, "--config", RF_CONFIG, "-o", str(out))
    assert result.exit_code == 0, result.output
    page = out.read_text()
    incidents, findings = page.index('id="incidents"'), page.index('id="findings"')
    assert page.index('id="summary"') < incidents < findings          # after the header card, before the guide view
    section = page[incidents:findings]
    assert 'alt="One row per incident' in section
    assert section.count('class="incident"') == 15                    # MAX_INCIDENTS of the 20
    assert 'data-incident="I-2437244b0a"' in section


@pytest.mark.peer
@pytest.mark.parametrize("command", ["incident", "call"])
def test_incident_bundle_holds_every_packet_of_the_incident(command, tmp_path, tshark, analysis):
    result = analysis(SAMPLES / "rf-attacks.pcap", SAMPLES / "configs/registration_flood.toml")
    (incident,) = [i for i in result.incidents if "ip:198.51.100.70" in i.actors]
    out = tmp_path / "bundle"
    args = (["incident", incident.id, RF] if command == "incident" else ["call", RF, "--incident", incident.id])
    run_ = _cli(*args, "--config", RF_CONFIG, "-o", str(out))
    assert run_.exit_code == 0, run_.output
    span = f"frame.time_epoch >= {incident.first_ts - 5e-7:.7f} && frame.time_epoch <= {incident.last_ts + 5e-7:.7f}"
    (expected,) = frame_counts(tshark, RF, [f"(ip.addr==198.51.100.70) && (udp || tcp) && {span}"])
    (bundled,) = frame_counts(tshark, str(out / "incident.pcap"), ["frame"])
    assert bundled == expected == 28
    findings = (out / "findings.jsonl").read_text().splitlines()
    # perimeter bypass, cleartext SIP and its public path, brute force, lockout, the rogue binding the crack
    # left, the binding hijack and the account takeover (TF-11): one actor, one incident
    assert len(findings) == incident.n_findings == 8
    import json
    summary = json.loads((out / "summary.json").read_text())
    assert summary["incident_pcap_packets"] == 28 and summary["phases"] == list(incident.phases)
    assert set(json.loads((out / "manifest.json").read_text())) == {"incident.pcap", "findings.jsonl", "timeline.png",
                                                                    "summary.json"}
    assert _cli("incident", "I-0000000000", RF, "--config", RF_CONFIG).exit_code == 1
