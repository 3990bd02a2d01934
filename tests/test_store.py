"""The case store (analyze --store), search, --pcap export, report --store and stitching across ingests."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from voipwatch.analyze import analyze_files
from voipwatch.call.select import select_calls
from voipwatch.config import load_settings
from voipwatch.records import TABLES
from voipwatch.store.export import export_pcap
from voipwatch.store.ingest import AlreadyStored, ingest
from voipwatch.store.layout import StoreError, connect
from voipwatch.store.search import Query, run_search, parse_time
from voipwatch.tables import table_columns

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_captures"
OFFICE = SAMPLES / "small-office.pcap"
RF = SAMPLES / "rf-attacks.pcap"
G711 = "sipnab/SIP_CALL_RTP_G711"        # public: a G.711 call with RTP, 4269 frames
STORE_ONLY = ("run_id", "capture_sha256", "capture_frame", "day")
FRAME_NUMBERS = ("frame", "first_frame")   # run-wide numbers: they differ between differently split runs


def stored(store: Path, table: str, drop=STORE_ONLY) -> list[tuple]:
    cur = connect(store).execute(f"SELECT * FROM {table}")
    keep = [i for i, d in enumerate(cur.description) if d[0] not in drop]
    return sorted((tuple(row[i] for i in keep) for row in cur.fetchall()), key=repr)


def analysed(paths: list[Path], table: str) -> list[tuple]:
    result = analyze_files([str(p) for p in paths])
    result.alerts                     # noqa: B018 - the incidents table comes with the detectors' results
    cols = table_columns(result.records[table], table)
    return sorted(zip(*cols.values()), key=repr)


def search(store: Path, **filters) -> dict[str, list[tuple]]:
    return {k: v.rows for k, v in run_search(connect(store), Query(**filters)).items()}


@pytest.fixture(scope="module")
def office_only(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("case") / "case"
    ingest(store, [str(OFFICE)], load_settings())
    return store


@pytest.fixture(scope="module")
def office_store(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("case") / "case"
    ingest(store, [str(OFFICE), str(RF)], load_settings())
    return store


# -- ingest --------------------------------------------------------------------------------------
def test_stored_tables_are_the_analysis_tables(office_store):
    for table in TABLES:
        assert stored(office_store, table) == analysed([OFFICE, RF], table), table
    alerts = analyze_files([str(OFFICE), str(RF)]).alerts
    assert sorted(json.loads(e)["alert"]["name"] for (e,) in connect(office_store).execute(
        "SELECT event FROM alerts").fetchall()) == sorted(a.name for a in alerts)


def test_every_row_names_its_capture_and_frame(office_store):
    con = connect(office_store)
    sha = {r[0]: r[1] for r in con.execute("SELECT capture_name, capture_sha256 FROM runs").fetchall()}
    # the INVITE of call-a is frame 24 of small-office.pcap (tshark -r small-office.pcap shows it there)
    assert con.execute("SELECT capture_sha256, capture_frame FROM calls WHERE call_id = 'call-a@small-office'"
                       ).fetchall() == [(sha["small-office.pcap"], 24)]
    # every packet row maps back to a frame of its own capture that holds the same time
    rows = con.execute("SELECT capture_sha256, capture_frame, ts FROM sip_messages").fetchall()
    assert {r[0] for r in rows} == set(sha.values())
    from voipwatch.capture import read_capture
    by_capture = {s: {f.frame: f.ts for f in read_capture(str(SAMPLES / name)) if hasattr(f, "data")}
                  for name, s in sha.items()}
    assert all(round(by_capture[s][n], 6) == ts for s, n, ts in rows)


def test_ingest_twice_is_refused_and_replace_does_not_double(tmp_path):
    store = tmp_path / "case"
    first = ingest(store, [str(OFFICE)], load_settings())
    with pytest.raises(AlreadyStored, match="small-office.pcap"):
        ingest(store, [str(OFFICE)], load_settings())
    copy = tmp_path / "renamed.pcap"                 # the same content under another name is the same capture
    shutil.copy(OFFICE, copy)
    with pytest.raises(AlreadyStored, match="renamed.pcap"):
        ingest(store, [str(copy)], load_settings())
    assert stored(store, "calls") == analysed([OFFICE], "calls")
    again = ingest(store, [str(copy)], load_settings(), replace=True)
    assert again.removed_runs == [first.run_id]
    assert stored(store, "calls") == analysed([OFFICE], "calls")
    assert stored(store, "sip_messages") == analysed([OFFICE], "sip_messages")
    runs = connect(store).execute("SELECT run_id, capture_path FROM runs").fetchall()
    assert runs == [(again.run_id, str(copy.resolve()))]


def test_replace_refuses_to_drop_other_captures_of_a_run(tmp_path):
    store = tmp_path / "case"
    ingest(store, [str(OFFICE), str(RF)], load_settings())
    with pytest.raises(StoreError, match="also holds .*rf-attacks.pcap"):
        ingest(store, [str(OFFICE)], load_settings(), replace=True)


def test_tables_hold_no_wall_clock(tmp_path):
    """The same captures give byte-identical table files in two stores (the run record alone has the time)."""
    a, b = tmp_path / "a", tmp_path / "b"
    ingest(a, [str(OFFICE)], load_settings())
    ingest(b, [str(OFFICE)], load_settings())
    files = sorted(p.relative_to(a) for p in a.rglob("*.parquet") if p.parts[-2] != "runs")
    # every table with rows and the alerts, one day each (the office capture holds no TLS, HTTP, TFTP, FTP,
    # Telnet, SNMP or VoIP control protocol but SIP: those tables are empty and write no file)
    empty = {"tls", "http", "file_transfers", "snmp", "ftp", "telnet", "voip_control"}
    assert [f.parts[0] for f in files] == sorted((set(TABLES) - empty) | {"alerts"})
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_a_corrupt_capture_among_several(tmp_path):
    corrupt = tmp_path / "corrupt.pcap"
    corrupt.write_bytes(b"this is no capture file at all")
    cut = tmp_path / "cut.pcap"
    cut.write_bytes((SAMPLES / "um-attacks.pcap").read_bytes()[:3000])
    store = tmp_path / "case"
    done = ingest(store, [str(SAMPLES / "xv-benign.pcap"), str(corrupt), str(cut), str(SAMPLES / "um-benign.pcap")],
                  load_settings())
    assert [c.path for c in done.failed] == [str(corrupt)]
    assert "unknown file format" in done.failed[0].error
    assert list(done.damaged) == [str(cut)]
    status = connect(store).execute("SELECT capture_name, capture_status, capture_frames FROM runs "
                                    "ORDER BY capture_index").fetchall()
    # cut.pcap: the 9 whole records of its first 3000 bytes (capinfos -c on the cut file says 9)
    assert status == [("xv-benign.pcap", "ok", 252), ("corrupt.pcap", "unreadable", None), ("cut.pcap", "damaged", 9),
                      ("um-benign.pcap", "ok", 445)]
    others = [SAMPLES / "xv-benign.pcap", cut, SAMPLES / "um-benign.pcap"]
    for table in ("calls", "rtp_streams", "sip_messages"):
        assert stored(store, table) == analysed(others, table), table


# -- search --------------------------------------------------------------------------------------
def test_search_by_number_prefix(office_store):
    found = search(office_store, number="1003")
    assert [r[0] for r in found["calls"]] == ["call-b@small-office"]
    result = analyze_files([str(OFFICE), str(RF)])
    expected = {m.call_id for m in result.records["sip_messages"]
                if any(u and u.startswith("1003") for u in (m.from_user, m.to_user, m.ruri_user))}
    assert {"call-b@small-office", "reg-1003@small-office"} < expected     # and rf-attacks' guesses at 1003
    assert {r[0] for r in found["dialogs"]} == expected
    # the other filters narrow it: call-b is an INVITE dialog, reg-1003 a REGISTER one
    registers = {m.call_id for m in result.records["sip_messages"] if m.call_id in expected
                 and "REGISTER" in (m.method, m.cseq_method)}
    assert "reg-1003@small-office" in registers and "call-b@small-office" not in registers
    assert {r[0] for r in search(office_store, number="1003", method="REGISTER")["dialogs"]} == registers
    assert search(office_store, number="1003", method="REGISTER")["calls"] == []


def test_search_by_address(office_store):
    # 10.1.10.12 is the callee of call-a (media only) and the caller of call-c and bad-length
    found = search(office_store, ip="10.1.10.12")
    assert [r[0] for r in found["calls"]] == ["call-a@small-office", "call-c@small-office", "bad-length@small-office"]
    assert all("10.1.10.12" in (r[0], r[2]) for r in found["streams"]) and len(found["streams"]) == 4
    result = analyze_files([str(OFFICE), str(RF)])
    assert {r[0] for r in found["dialogs"]} == {m.call_id for m in result.records["sip_messages"]
                                                if "10.1.10.12" in (m.pkt.src, m.pkt.dst)}


def test_search_by_user_agent_and_time(office_store):
    result = analyze_files([str(OFFICE), str(RF)])
    scanner = {m.call_id for m in result.records["sip_messages"] if m.user_agent and "friendly" in m.user_agent.lower()}
    assert scanner
    assert {r[0] for r in search(office_store, user_agent="(?i)friendly-scanner")["dialogs"]} == scanner
    since, until = parse_time("2023-11-14T22:13:40Z"), parse_time("2023-11-14T22:13:55")
    found = search(office_store, since=since, until=until)
    assert [r[0] for r in found["calls"]] == ["call-b@small-office", "call-c@small-office"]
    assert all(r[1] <= until and r[2] >= since for r in found["dialogs"])


def test_search_by_severity(office_store):
    found = search(office_store, alerts="critical")
    assert {r[1] for r in found["findings"]} == {"critical"}
    assert {r[0] for r in found["calls"]} <= {r[3] for r in found["findings"]}
    assert "call-c@small-office" in {r[0] for r in found["calls"]}      # SDES keys in cleartext SIP


def test_sql_over_the_tables(office_store):
    con = connect(office_store)
    # each call's n_streams is the count of its rows in rtp_streams (a join across two tables)
    rows = con.execute("SELECT c.call_id, c.n_streams, count(s.ssrc) FROM calls c LEFT JOIN rtp_streams s "
                       "ON s.call_id = c.call_id GROUP BY ALL ORDER BY 1").fetchall()
    assert rows and all(r[1] == r[2] for r in rows)
    assert con.execute("SELECT count(*) FROM sip_messages WHERE method = 'REGISTER'").fetchone()[0] == sum(
        1 for m in analyze_files([str(OFFICE), str(RF)]).records["sip_messages"] if m.method == "REGISTER")


# -- stitching -----------------------------------------------------------------------------------
def findings(store: Path) -> list[tuple]:
    return connect(store).execute("SELECT ts, name, identifier, severity FROM alerts ORDER BY ALL").fetchall()


def split(editcap: str, capture: Path, out: Path, *args: str) -> list[Path]:
    out.mkdir()
    subprocess.run([editcap, *args, str(capture), str(out / "part.pcap")], check=True, capture_output=True)
    return sorted(out.glob("part_*.pcap"))


@pytest.mark.peer
@pytest.mark.parametrize("how", [("-c", "372"), ("-i", "25")])
def test_two_ingests_give_the_whole_capture(tmp_path, editcap, how):
    parts = split(editcap, OFFICE, tmp_path / "parts", *how)
    assert len(parts) == 2
    whole, pieces = tmp_path / "whole", tmp_path / "pieces"
    ingest(whole, [str(OFFICE)], load_settings())
    first = ingest(pieces, [str(parts[0])], load_settings())
    second = ingest(pieces, [str(parts[1])], load_settings())
    assert second.previous_run == first.run_id and second.reread == [str(parts[0].resolve())]
    assert second.replaced_rows["calls"] >= 1          # a call was open at the end of the first ingest
    drop = STORE_ONLY + FRAME_NUMBERS
    for table in ("calls", "rtp_streams", "sip_messages", "dns"):
        assert stored(pieces, table, drop) == stored(whole, table, drop), table
    assert findings(pieces) == findings(whole)


@pytest.mark.peer
def test_three_ingests_of_a_public_call(tmp_path, editcap, public_captures):
    capture = public_captures / G711
    parts = split(editcap, capture, tmp_path / "parts", "-c", "1500")
    assert len(parts) == 3
    whole, pieces = tmp_path / "whole", tmp_path / "pieces"
    ingest(whole, [str(capture)], load_settings())
    for part in parts:
        done = ingest(pieces, [str(part)], load_settings())
    assert len(done.reread) == 2                       # the call began in the first part
    drop = STORE_ONLY + FRAME_NUMBERS
    for table in ("calls", "rtp_streams", "sip_messages"):
        assert stored(pieces, table, drop) == stored(whole, table, drop), table
    assert len(stored(pieces, "rtp_streams")) == 5
    assert findings(pieces) == findings(whole)


@pytest.mark.peer
def test_replacing_a_stitched_run_puts_back_what_it_replaced(tmp_path, editcap):
    parts = split(editcap, OFFICE, tmp_path / "parts", "-c", "372")
    store = tmp_path / "case"
    ingest(store, [str(parts[0])], load_settings())
    only_first = {t: stored(store, t) for t in ("calls", "rtp_streams", "anomalies", "alerts")}
    second = ingest(store, [str(parts[1])], load_settings())
    both = {t: stored(store, t) for t in ("calls", "rtp_streams", "anomalies", "alerts")}
    with pytest.raises(StoreError, match=f"run {second.run_id} stitched onto run"):
        ingest(store, [str(parts[0])], load_settings(), replace=True)
    # the second run taken out (by hand, as --replace does first) leaves the first run as it was stored
    from voipwatch.store.ingest import remove_runs
    from voipwatch.store.layout import read_runs
    from voipwatch.capture_check import sha256_file
    remove_runs(store, read_runs(store), {second.run_id}, {sha256_file(str(parts[1]))[0]})
    assert {t: stored(store, t) for t in only_first} == only_first
    again = ingest(store, [str(parts[1])], load_settings())
    assert again.run_id == second.run_id and {t: stored(store, t) for t in both} == both
    replaced = ingest(store, [str(parts[1])], load_settings(), replace=True)
    assert replaced.removed_runs == [second.run_id] and {t: stored(store, t) for t in both} == both


def test_a_run_from_another_sensor_is_not_stitched(tmp_path):
    store = tmp_path / "case"
    ingest(store, [str(OFFICE)], load_settings())
    done = ingest(store, [str(SAMPLES / "rf-benign.pcap")], load_settings(), sensor="branch")
    assert done.previous_run is None and done.reread == []


# -- --pcap export -------------------------------------------------------------------------------
def tshark_count(tshark: str, capture: Path, display_filter: str | None = None) -> int:
    args = [tshark, "-n", "-r", str(capture)] + (["-Y", display_filter] if display_filter else [])
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return len(out.splitlines())


@pytest.mark.peer
def test_export_of_a_call_is_its_call_pcap(tmp_path, tshark, office_store):
    con = connect(office_store)
    found = run_search(con, Query(number="1002", method="BYE"))
    assert [r[0] for r in found["calls"].rows] == ["call-a@small-office"]
    found = {"calls": found["calls"]}
    out = tmp_path / "out.pcap"
    done = export_pcap(office_store, con, found, out)
    # tshark on the original: the call's SIP and its two RTP streams (SDP-announced, so tshark decodes them)
    expected = tshark_count(tshark, OFFICE, 'sip.Call-ID == "call-a@small-office" or rtp.ssrc == 0x11110001 '
                                            'or rtp.ssrc == 0x22220002')
    assert expected == 507
    assert done.packets == tshark_count(tshark, out) == expected
    # byte for byte what `voipwatch call --call-id` writes as call.pcap
    from voipwatch.call.bundle import write_pcap
    from voipwatch.call.packets import collect
    views = select_calls(analyze_files([str(OFFICE)]), call_id="call-a@small-office")
    frames, _ = collect([str(OFFICE)], views)
    write_pcap(frames["call-a@small-office"], tmp_path / "call.pcap")
    assert out.read_bytes() == (tmp_path / "call.pcap").read_bytes()


@pytest.mark.peer
def test_export_of_register_dialogs(tmp_path, tshark, office_only):
    office_store = office_only
    con = connect(office_store)
    found = {"dialogs": run_search(con, Query(method="REGISTER", ip="10.1.10.11"))["dialogs"]}
    assert [r[0] for r in found["dialogs"].rows] == ["reg-1001@small-office"]
    out = tmp_path / "reg.pcap"
    done = export_pcap(office_store, con, found, out)
    expected = tshark_count(tshark, OFFICE, 'sip.Call-ID == "reg-1001@small-office"')
    assert done.packets == expected == tshark_count(tshark, out, "sip") == found["dialogs"].rows[0][3]


@pytest.mark.peer
def test_export_across_stitched_ingests(tmp_path, tshark, editcap, public_captures):
    capture = public_captures / G711
    parts = split(editcap, capture, tmp_path / "parts", "-c", "1500")
    store = tmp_path / "case"
    for part in parts:
        ingest(store, [str(part)], load_settings())
    con = connect(store)
    found = run_search(con, Query())
    assert len(found["calls"].rows) == 2
    out = tmp_path / "all-calls.pcap"
    export_pcap(store, con, {"calls": found["calls"]}, out)
    # the same packets `voipwatch call` takes from the whole capture for these calls: its views with a
    # Call record (it also selects the two REGISTER dialogs, which are no call: tshark -Y sip shows their
    # 4 + 2 messages, Call-IDs 46E1C3CB...@Verso.com and D3A26FC3...@bestel.com)
    views = [v for v in select_calls(analyze_files([str(capture)])) if v.call is not None]
    assert len(views) == 2
    from voipwatch.call.packets import collect
    frames, _ = collect([str(capture)], views)
    assert tshark_count(tshark, out) == sum(len(f) for f in frames.values()) > 1000


@pytest.mark.peer
def test_user_agent_search_on_a_public_capture(tmp_path, tshark, public_captures):
    capture = public_captures / "zeek/Traces/sip/wireshark.pcap"
    store = tmp_path / "case"
    ingest(store, [str(capture)], load_settings())
    out = subprocess.run([tshark, "-n", "-r", str(capture), "-Y", 'sip.User-Agent matches "^Nero SIPPS"',
                          "-T", "fields", "-e", "sip.Call-ID"], capture_output=True, text=True, check=True).stdout
    expected = set(out.split())
    assert len(expected) == 6
    assert {r[0] for r in search(store, user_agent="^Nero SIPPS")["dialogs"]} == expected


# -- the commands --------------------------------------------------------------------------------
def voipwatch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voipwatch", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.cli
@pytest.mark.slow
def test_commands_and_exit_codes(tmp_path):
    store = str(tmp_path / "case")
    assert voipwatch("analyze", str(OFFICE), "--store", store).returncode == 0
    again = voipwatch("analyze", str(OFFICE), "--store", store)
    assert again.returncode == 4 and "already in the store" in again.stderr
    assert voipwatch("analyze", str(OFFICE), "--store", store, "--replace").returncode == 0
    hit = voipwatch("search", "--store", store, "--number", "1001", "--kind", "calls", "--format", "jsonl")
    assert hit.returncode == 0
    assert [json.loads(line)["call_id"] for line in hit.stdout.splitlines()] == [
        "call-a@small-office", "call-b@small-office", "call-c@small-office", "bad-length@small-office"]
    assert voipwatch("search", "--store", store, "--number", "999").returncode == 3
    bad = voipwatch("search", "--store", store, "--user-agent", "(unclosed")
    assert bad.returncode == 1 and bad.stderr.startswith("error:")
    sql = voipwatch("search", "--store", store, "--sql", "SELECT count(*) AS n FROM calls", "--format", "csv")
    assert sql.stdout == "kind,n\nsql,4\n"
    corrupt = tmp_path / "corrupt.pcap"
    corrupt.write_bytes(b"\x00" * 64)
    partial = voipwatch("analyze", str(corrupt), str(SAMPLES / "xv-benign.pcap"), "--store", store)
    assert partial.returncode == 5 and f"error: {corrupt}" in partial.stderr
    report = tmp_path / "window.html"
    done = voipwatch("report", "--store", store, "--since", "2023-11-14T22:13:40", "--until", "2023-11-14T22:13:45",
                     "-o", str(report))
    assert done.returncode == 0, done.stderr
    html = report.read_text(encoding="utf-8")
    assert "call-b@small-office" in html and "call-a@small-office" not in html


@pytest.mark.cli
def test_search_output_is_safe(tmp_path):
    store = str(tmp_path / "case")
    assert voipwatch("analyze", str(SAMPLES / "hostile-strings.pcap"), "--store", store).returncode == 0
    shown = voipwatch("search", "--store", store, "--number", "+1555")
    assert shown.returncode == 0 and "-2+3+cmd@evil" in shown.stdout
    assert "\x1b" not in shown.stdout and "\u202e" not in shown.stdout and "\\x1b]0;owned" in shown.stdout
    csv = voipwatch("search", "--store", store, "--number", "+1555", "--kind", "calls", "--format", "csv")
    row = csv.stdout.splitlines()[1]
    assert row.startswith("calls,'-2+3+cmd@evil,") and ",'=cmd|' /C calc'!A0,+15551234567," in row
    assert "\x1b" not in csv.stdout


@pytest.mark.peer
def test_export_of_streams_without_signalling(tmp_path, tshark, public_captures):
    """RTP set up by SCCP (which voipwatch does not decode): streams found by the RTP heuristic, exported
    by flow and SSRC; tshark with its rtp_udp heuristic counts the same packets per SSRC."""
    capture = public_captures / "ndpi/pcap/skinny.pcap"
    store = tmp_path / "case"
    ingest(store, [str(capture)], load_settings())
    con = connect(store)
    found = run_search(con, Query(ip="192.168.193.24"), ("streams",))
    ssrcs = sorted(r[5] for r in found["streams"].rows)
    assert ssrcs == ["0x1e063b22", "0x7c1071e8", "0x7c1071f3", "0xf6bf57e2"]
    out = tmp_path / "streams.pcap"
    done = export_pcap(store, con, found, out)
    wanted = " or ".join(f"rtp.ssrc == {s}" for s in ssrcs)
    expected = subprocess.run([tshark, "-n", "-r", str(capture), "--enable-heuristic", "rtp_udp", "-Y", wanted],
                              capture_output=True, text=True, check=True).stdout.splitlines()
    # these four streams hold no SPAN copies (tshark: one frame per IP id), so the stored counts are tshark's
    assert done.packets == len(expected) == sum(r[7] for r in found["streams"].rows) == 66
    assert tshark_count(tshark, out) == 66
    # the 192.168.195.58 <-> .50 streams are captured twice (same IP id and MACs, microseconds apart: tshark
    # counts 36 and 33 frames of SSRC 0xf6bf57dc and 0x7c1071e2); the stored rows count each packet once
    # (voipwatch.dedup), the pcap keeps every copy as captured, as `voipwatch call`'s call.pcap does
    found = run_search(con, Query(ip="192.168.195.50"), ("streams",))
    ssrcs = sorted(r[5] for r in found["streams"].rows)
    assert ssrcs == ["0x7c1071e2", "0x7c1071e8", "0x7c1071f3", "0xf6bf57dc"]
    done = export_pcap(store, con, found, out)
    wanted = " or ".join(f"rtp.ssrc == {s}" for s in ssrcs)
    expected = subprocess.run([tshark, "-n", "-r", str(capture), "--enable-heuristic", "rtp_udp", "-Y", wanted],
                              capture_output=True, text=True, check=True).stdout.splitlines()
    assert done.packets == len(expected) == tshark_count(tshark, out) == 36 + 33 + 17 + 15
    assert sum(r[7] for r in found["streams"].rows) == 18 + 17 + 17 + 15
