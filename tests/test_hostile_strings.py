"""Header values that attack the analyst, through every command and output format.

sample_captures/hostile-strings.pcap (its generator says what it holds) carries spreadsheet formulas,
terminal escape sequences (OSC, CSI, BEL, BS, DEL, C1), XML-forbidden controls, invalid UTF-8 and
very long values. Whatever voipwatch writes from it: every CSV cell is safe in a spreadsheet, every
terminal line is free of control characters, every SVG/XML file parses, every HTML page parses and
holds no control character, and JSON lines, Parquet and the CSV read back hold the exact decoded
values (the CSV cells decoded, or written raw with --csv-raw).
"""
from __future__ import annotations

import csv
import importlib.util
import json
import re
import signal
import socket
from pathlib import Path
from urllib.parse import unquote

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import reader_safety as safety
from dissectors.sip import MAX_HEADER_LINE
from voipwatch.analyze import analyze_files
from voipwatch.cli import cli
from voipwatch.records import Alert
from voipwatch.report.data import build_report, from_result, load_dir
from voipwatch.report.figures import draw_figures
from voipwatch.report.html import render
from voipwatch.config import load_settings
from voipwatch.tables import TABLES, csv_text, read_table

SAMPLES = Path(__file__).resolve().parents[1] / "sample_captures"
CAPTURE = SAMPLES / "hostile-strings.pcap"
_spec = importlib.util.spec_from_file_location("hostile_strings", SAMPLES / "generators" / "hostile_strings.py")
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)

FORMULA_USER = "=cmd|' /C calc'!A0"
# The decoded values, from what the generator wrote: (table, column) -> values in table order.
EXACT = {
    ("calls", "call_id"): [gen.CALL1_ID, gen.CALL2_ID],
    ("calls", "caller"): [FORMULA_USER, gen.NOT_UTF8_USER.decode("utf-8", "replace")],
    ("calls", "callee"): [gen.E164, "1002"],
    ("calls", "user_agent"): [gen.TERMINAL_UA, gen.LONG_UA[:MAX_HEADER_LINE]],     # cut: sip.header_too_long
    ("registrations", "aor"): [gen.REGISTER_USER + "@evil.example"],
    ("dns", "qname"): [gen.DNS_LABEL.decode() + ".evil.example"] * 2,
    ("sip_messages", "reason"): [None, "Trying", gen.RINGING, gen.OK_REASON, None, None, "OK", None, gen.BUSY,
                                 None, None, "OK"],
    ("sip_messages", "contact"): [f"sip:{gen.CONTACT_USER}@{gen.PHONE}:5060"] + [None] * 2
    + [f"sip:{gen.E164}@{gen.CALLEE}:5060"] + [None] * 6 + [f"sip:x@{gen.PHONE}:5064", None],
}


def test_the_capture_holds_what_its_generator_says():
    assert unquote(gen.FORMULA_USER_ESCAPED) == FORMULA_USER
    assert len(gen.CALL2_ID) == 3000 and len(gen.LONG_UA) > MAX_HEADER_LINE
    result = analyze_files([str(CAPTURE)], load_settings())
    assert dict(result.summary["anomalies_by_reason"]) == {"sip.header_too_long": 1, "sip.non_utf8": 3, "sip.nul_byte": 1}
    for (table, col), values in EXACT.items():
        assert [None if v is None else v for v in result.tables[table][col].astype(object).where(
            result.tables[table][col].notna(), None)] == values, (table, col)


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    """analyze through the CLI in every table format, and CSV raw: (output dirs, terminal text)."""
    root = tmp_path_factory.mktemp("hostile")
    runner = CliRunner()
    dirs, texts = {}, []
    for name, args in {"csv": [], "csv-raw": ["--csv-raw"], "jsonl": ["--format", "jsonl"],
                       "parquet": ["--format", "parquet"], "csv-stream": ["--mode", "stream"]}.items():
        res = runner.invoke(cli, ["analyze", str(CAPTURE), "-o", str(root / name), *args])
        assert res.exit_code == 0, res.output
        dirs[name] = root / name
        texts.append(res.output)
    return dirs, texts


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_default_csv_cells_are_safe_in_a_spreadsheet(analyzed):
    dirs, _ = analyzed
    for name in ("csv", "csv-stream"):
        for table in TABLES:
            rows = csv_rows(dirs[name] / f"{table}.csv")
            assert all(safety.spreadsheet_safe(cell) for row in rows for cell in row.values()), (name, table)
    calls = csv_rows(dirs["csv"] / "calls.csv")
    assert [(c["call_id"], c["caller"], c["callee"]) for c in calls][0] == \
        ("'-2+3+cmd@evil", "'=cmd|' /C calc'!A0", "+15551234567")          # the E.164 number stays a number
    assert calls[0]["user_agent"] == ("\\x1b]0;owned\\x07\\x1b[2J\\x1b[1;31mEvilPhone\\x08\\x08\\x08\\x7f\\x9b31m"
                                      "\\u202egnp.exe")
    assert json.loads((dirs["csv"] / "summary.json").read_text())["csv_cells"] == "neutralised"
    assert (dirs["csv"] / "calls.csv").read_bytes() == (dirs["csv-stream"] / "calls.csv").read_bytes()


def test_raw_csv_holds_the_decoded_values(analyzed):
    dirs, _ = analyzed
    assert json.loads((dirs["csv-raw"] / "summary.json").read_text())["csv_cells"] == "raw"
    for (table, col), values in EXACT.items():
        cells = [row[col] for row in csv_rows(dirs["csv-raw"] / f"{table}.csv")]
        assert cells == [v or "" for v in values], (table, col)     # CSV writes a missing value empty


def test_every_format_reads_back_exact(analyzed):
    dirs, _ = analyzed
    jsonl = {t: [json.loads(line) for line in (dirs["jsonl"] / f"{t}.jsonl").read_text().splitlines()] for t in TABLES}
    parquet = {t: pq.read_table(dirs["parquet"] / f"{t}.parquet").to_pylist() for t in TABLES}
    for (table, col), values in EXACT.items():
        assert [row[col] for row in jsonl[table]] == values, (table, col)
        assert [row[col] for row in parquet[table]] == values, (table, col)
        for name in ("csv", "csv-raw", "jsonl", "parquet"):
            column = read_table(dirs[name], table)[col].astype(object)
            assert [None if v is None or v != v else v for v in column.where(column.notna(), None)] == values, \
                (name, table, col)
    # no raw DEL, C1 or other invisible character in a JSON lines file: they are \u escapes
    for table in TABLES:
        assert safety.terminal_clean((dirs["jsonl"] / f"{table}.jsonl").read_text(encoding="utf-8")), table


def test_alerts_keep_exact_values_in_escaped_json(analyzed):
    dirs, texts = analyzed
    text = (dirs["csv"] / "alerts.jsonl").read_text(encoding="utf-8")
    assert safety.terminal_clean(text)
    msgs = [json.loads(line)["alert"]["msg"] for line in text.splitlines()]
    aor = gen.REGISTER_USER + "@evil.example"
    assert any(f"a REGISTER for {aor} from" in m for m in msgs)
    assert any(f"Account {FORMULA_USER} at" in m for m in msgs)
    assert all(safety.terminal_clean(t) for t in texts)


def page(data) -> str:
    report = build_report(data)
    return render(report, draw_figures(data, report))


def test_report_pages_parse_and_read_the_same_from_every_format(analyzed, tmp_path):
    dirs, _ = analyzed
    run_time = re.compile(r"batch mode, [0-9.]+ s")
    from_memory = page(from_result(analyze_files([str(CAPTURE)], load_settings())))
    for name in ("csv", "csv-raw", "jsonl", "parquet"):
        assert run_time.sub("", page(load_dir(dirs[name]))) == run_time.sub("", from_memory), name
    res = CliRunner().invoke(cli, ["report", str(CAPTURE), "-o", str(tmp_path / "report.html")])
    assert res.exit_code == 0 and safety.terminal_clean(res.output), res.output
    text = safety.html_text(tmp_path / "report.html")
    assert "Call -2+3+cmd@evil, named by a" in text                     # the ladder of the most severe call
    assert "=1+1\\x1b[2J\\x07\\x9b@evil.example" in text                  # controls shown as visible escapes


def test_call_text_and_bundle(tmp_path):
    res = CliRunner().invoke(cli, ["call", str(CAPTURE), "--ip", gen.PHONE, "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert safety.terminal_clean(res.output)
    assert "180 Ringing \\x1b[1A" in res.output and "EvilPhone" not in res.output    # the UA is not in the view
    bundles = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    # _safe keeps 80 characters; the phone's REGISTER is a dialog of its own, with its bundle
    assert [p.name for p in bundles] == ["1--2_3_cmd@evil", "2-" + gen.CALL2_ID[:80], "3-reg-3@evil"]
    for bundle in bundles:
        summary_text = (bundle / "summary.json").read_text(encoding="utf-8")
        assert safety.terminal_clean(summary_text.replace("\n", ""))
        summary = json.loads(summary_text)
        assert summary["failed_parts"] == []
        safety.xml_parses(bundle / "ladder.svg")
        assert set(json.loads((bundle / "manifest.json").read_text())) == \
            {p.name for p in bundle.iterdir() if p.name != "manifest.json"}
    first = json.loads((bundles[0] / "summary.json").read_text())
    assert (first["call_id"], first["caller"], first["callee"]) == (gen.CALL1_ID, FORMULA_USER, gen.E164)
    assert [r["label"] for r in first["ladder"]][2:4] == [f"180 {gen.RINGING}", f"200 {gen.OK_REASON} (SDP)"]
    labels = [t.text for t in safety.xml_parses(bundles[0] / "ladder.svg").iter("{http://www.w3.org/2000/svg}text")]
    assert "180 Ringing \\x1b[1A\\x1b[2K\\x01\\x0c\\x00 <script>alert(1)</sc…" in labels    # cut at 60
    register = json.loads((bundles[2] / "summary.json").read_text())
    assert (register["method"], register["caller"], register["call_pcap_packets"]) == ("REGISTER", gen.REGISTER_USER, 2)


def test_call_list_is_one_escaped_line_per_dialog():
    res = CliRunner().invoke(cli, ["call", str(CAPTURE), "--ip", gen.PHONE, "--list"])
    assert res.exit_code == 0 and safety.terminal_clean(res.output), res.output
    header, *rows = res.output.rstrip("\n").split("\n")
    assert header.startswith("time (UTC)  Call-ID  method")
    # the phone's DNS query is a flow outside any dialog, listed in time order with the dialogs
    assert [row.split("  ")[2] for row in rows] == ["dns", "INVITE", "INVITE", "REGISTER"]
    assert rows[0].endswith("  dns  - -> -  203.0.113.66:40000 -> 192.0.2.53:53  replied")
    assert "REGISTER  =1+1\\x1b[2J\\x07\\x9b -> =1+1\\x1b[2J\\x07\\x9b  203.0.113.66 -> 192.0.2.5  200 OK" in rows[3]


@pytest.fixture
def own_signals():
    """monitor installs SIGINT/SIGTERM/SIGHUP handlers in the process that runs it (here pytest's):
    put the previous ones back, or a forked process of a later test would ignore terminate()."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_monitor_replay_tables_stdout_and_status(tmp_path, own_signals):
    for name, args in {"safe": [], "raw": ["--csv-raw"]}.items():
        out = tmp_path / name
        res = CliRunner().invoke(cli, ["monitor", "-r", str(CAPTURE), "-o", str(out), "--alerts-stdout", *args])
        assert res.exit_code == 0, res.output
        assert safety.terminal_clean(res.output)
        stdout_alerts = [json.loads(line) for line in res.stdout.splitlines()]
        assert stdout_alerts == [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
        assert any(f"a REGISTER for {gen.REGISTER_USER}@evil.example from" in a["alert"]["msg"] for a in stdout_alerts)
        calls = csv_rows(out / "calls-0001.csv")
        regs = csv_rows(out / "registrations-0001.csv")
        decode = csv_text if name == "safe" else str
        assert [decode(c["call_id"]) for c in calls] == EXACT[("calls", "call_id")]
        assert [decode(c["user_agent"]) for c in calls] == EXACT[("calls", "user_agent")]
        assert [decode(r["aor"]) for r in regs] == EXACT[("registrations", "aor")]
        if name == "safe":
            for path in out.glob("*.csv"):
                assert all(safety.spreadsheet_safe(cell) for row in csv_rows(path) for cell in row.values()), path


def test_syslog_messages_hold_visible_escapes(tmp_path, own_signals):
    """monitor --syslog to a Unix datagram socket this test binds (no traffic leaves the machine)."""
    path = tmp_path / "log.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(0.0)
    try:
        res = CliRunner().invoke(cli, ["monitor", "-r", str(CAPTURE), "-o", str(tmp_path / "out"), "--syslog", str(path)])
        assert res.exit_code == 0, res.output
        messages = []
        while True:
            try:
                messages.append(server.recv(65536).decode("utf-8"))
            except BlockingIOError:
                break
    finally:
        server.close()
    alerts = [json.loads(line) for line in (tmp_path / "out" / "alerts.jsonl").read_text().splitlines()]
    # one syslog line per finding, when first raised; alerts.jsonl has its new and final records
    assert len(messages) == sum(a["alert"]["state"] == "new" for a in alerts) == 8
    assert sum(a["alert"]["state"] == "final" for a in alerts) == 8
    # RFC 3164 framing: "<PRI>" first; logging.handlers.SysLogHandler ends each datagram with one NUL
    texts = [m[m.index(">") + 1:].removesuffix("\x00") for m in messages]
    assert all(safety.terminal_clean(t) for t in texts)
    assert any("a REGISTER for =1+1\\x1b[2J\\x07\\x9b@evil.example from" in t for t in texts)


def test_alert_writer_escapes_every_invisible_character_on_stdout(tmp_path, capsys):
    from voipwatch.live.monitor import AlertWriter
    writer = AlertWriter(tmp_path / "alerts.jsonl", True, None, "info")
    msg = "bell\x07 del\x7f c1\x85\x9b bidi\u202e sep\u2028 nul\x00"
    writer(Alert(1.0, "family", "family.name", "XX-01", "info", "ref", msg, "id", evidence={"value": msg}))
    writer.close()
    out = capsys.readouterr().out
    assert safety.terminal_clean(out.rstrip("\n"))
    assert json.loads(out)["alert"]["msg"] == json.loads(out)["alert"]["evidence"]["value"] == msg
    assert out.rstrip("\n") == (tmp_path / "alerts.jsonl").read_text().rstrip("\n")
