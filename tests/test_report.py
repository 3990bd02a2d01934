"""`voipwatch report`: sections, table counts against the analyze tables, embedded PNGs, no external
resources, the same page from captures and from an output directory, guide advice, empty captures."""
from __future__ import annotations

import base64
import html
import io
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image as PILImage

from voipwatch.report import guide
from voipwatch.analyze import write_outputs
from voipwatch.cli import cli
from voipwatch.call.ladder import build_ladder
from voipwatch.report.data import DEFAULT_TOP, ReportData, build_report, destination_classes, from_result, load_dir
from voipwatch.report.figures import draw_figures, ladder_from_rows
from voipwatch.report.html import render
from voipwatch.config import load_settings
from voipwatch.tables import TABLES, to_frame, write_records

REPO = Path(__file__).resolve().parents[1]
OFFICE = REPO / "sample_captures" / "small-office.pcap"
TOLL_CONFIG = REPO / "sample_captures" / "configs" / "toll_fraud.toml"
GUIDE_DIR = (REPO / ".." / "shared" / "reference" / "nsa-uc-vvoip-guide").resolve()
SECTIONS = ("summary", "incidents", "findings", "calls", "registrations", "streams", "network", "ladder", "anomalies")
# table in the page -> analyze table it shows
PAGE_TABLES = {"calls": "calls", "registrations": "registrations", "rtp_streams": "rtp_streams",
               "anomalies": "anomalies"}
PUBLIC = ("sipnab/sip-rtp-g711.pcap", "sipnab/sip-register.pcap", "arkime/twovlan.pcap")


class Page(HTMLParser):
    """What the tests look at: section ids, images, every src/href, and the data tables' rows."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.sections: list[str] = []
        self.images: list[dict] = []
        self.links: list[str] = []
        self.tables: dict[str, dict] = {}
        self.tags: set[str] = set()
        self._table: str | None = None
        self._in_body = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "section":
            self.sections.append(a.get("id", ""))
        if tag == "img":
            self.images.append(a)
        for key in ("src", "href", "action", "srcset", "poster", "data"):
            if key in a:
                self.links.append(a[key] or "")
        if tag == "table" and a.get("data-table"):
            self._table = a["data-table"]
            self.tables[self._table] = {"total": a.get("data-total"), "shown": a.get("data-shown"), "rows": 0}
        if tag == "tbody":
            self._in_body = True
        if tag == "tr" and self._table and self._in_body:
            self.tables[self._table]["rows"] += 1

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        if tag == "table":
            self._table = None


def report_html(data: ReportData, top: int = DEFAULT_TOP) -> str:
    report = build_report(data, top=top)
    return render(report, draw_figures(data, report))


@pytest.fixture(scope="module")
def office(tmp_path_factory, analysis):
    out = tmp_path_factory.mktemp("office") / "out"
    result = analysis(OFFICE)
    write_outputs(result, out)
    return result, out, report_html(from_result(result)), report_html(load_dir(out))


def check_page(text: str, result) -> Page:
    """The checks every report passes: sections, counts, images, no external resources."""
    page = Page(text)
    assert page.sections == list(SECTIONS)
    # no script, no external resource, a CSP that forbids both
    assert not page.tags & {"script", "link", "iframe", "object", "embed", "base", "form"}
    assert 'http-equiv="Content-Security-Policy"' in text and "default-src 'none'" in text
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", text, re.I)
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"url\s*\(|@import", text, re.I)
    for link in page.links:
        assert link.startswith(("data:image/png;base64,", "#")), link[:60]
    # every image a data: URI decoding to a valid PNG of the declared size
    assert page.images, "the summary figure at least"
    for img in page.images:
        src = img["src"]
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        with PILImage.open(io.BytesIO(png)) as im:
            im.verify()
        with PILImage.open(io.BytesIO(png)) as im:
            assert im.format == "PNG" and im.size == (int(img["width"]), int(img["height"]))
        assert img.get("alt")
    # the tables: "showing N of M" where M is the analyze table's length
    for name, table in PAGE_TABLES.items():
        total = len(result.tables[table])
        if total == 0:
            assert name not in page.tables
            continue
        seen = page.tables[name]
        assert int(seen["total"]) == total
        assert int(seen["shown"]) == seen["rows"] == min(total, DEFAULT_TOP)
        assert f"Showing <b>{min(total, DEFAULT_TOP):,}</b> of <b>{total:,}</b>" in text
    return page


def test_small_office_sections_counts_images(office):
    result, _, text, _ = office
    page = check_page(text, result)
    counts = result.summary["counts"]
    for label, key in (("Calls", "calls"), ("Registrations", "registrations"), ("RTP streams", "rtp_streams"),
                       ("SIP messages", "sip_messages"), ("DNS messages", "dns_messages")):
        assert re.search(rf'<div class="label">{label}</div><div class="value">{counts[key]:,}</div>', text), label
    assert f'<div class="label">Frames</div><div class="value">{result.summary["frames_read"]:,}</div>' in text
    assert f'<div class="label">Findings</div><div class="value">{len(result.alerts):,}</div>' in text
    # summary, incident timeline, activity, destinations, register rates, quality, VLANs, ladder
    assert len(page.images) == 8
    assert page.images[1]["title"] == "Incident timeline: findings over capture time by actor"
    # the cleartext SIP and RTP roll-ups from 10.1.10.11, and the SDES key exposure of 10.1.10.12's call
    assert text.count('class="incident"') == len(result.incidents) == 2
    # the VLAN matrix: SIP messages per VLAN equal the sip_messages table
    sip = result.tables["sip_messages"]
    vlan110 = int((sip["vlan"] == "110").sum())
    assert re.search(rf'<td class="mono">110</td><td class="num">{vlan110:,}</td>', text)


def test_findings_grouped_with_evidence_and_advice(office):
    result, _, text, _ = office
    for sev, n in result.summary["alerts_by_severity"].items():
        assert re.search(rf'<span class="sev {sev}">{sev}</span><b>{n:,}</b>', text)
    # every alert's message and every check's advice, with its guide part and heading
    for alert in result.alerts:
        assert html.escape(alert.msg, quote=True) in text
        advice = guide.advice_for(alert.check, alert.guide_ref)
        assert f"NSA guide, {advice.where}." in text
    assert "By NSA guide part" in text and "Part I</b> · Network security" in text
    # the critical SDES finding comes first and shows its Call-ID, VLAN, src/dst and evidence keys
    first = text.index('<details class="group')
    assert text.index("UM-02", first) < text.index("UM-04", first)
    assert "<i>Call-ID</i> <code>call-c@small-office</code>" in text
    assert "<i>VLAN</i> <code>110</code>" in text
    assert "<i>src → dst</i> <code>10.1.10.12:5060 → 10.1.10.5:5060</code>" in text
    assert "<dt>sip_transport</dt><dd>udp</dd>" in text
    # the SRTP key itself is never in an alert, so never in the page
    assert "inline:" not in text


def test_same_page_from_captures_and_from_output_dir(office, tmp_path):
    result, out, from_memory, from_dir = office
    assert from_memory == from_dir
    # the CLI, both ways (run times differ between two analyses: mask them)
    runner = CliRunner()
    a, b = tmp_path / "a.html", tmp_path / "b.html"
    res = runner.invoke(cli, ["report", str(OFFICE), "-o", str(a)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["report", "--from-dir", str(out), "-o", str(b)])
    assert res.exit_code == 0, res.output
    assert "report written to" in res.output and "critical 1" in res.output
    mask = re.compile(r"batch mode, [0-9.]+ s")
    assert mask.sub("", a.read_text()) == mask.sub("", b.read_text()) == mask.sub("", from_dir)


def test_same_page_from_every_table_format(office, tmp_path):
    result, _, _, from_dir = office
    for fmt in ("parquet", "jsonl"):
        out = tmp_path / fmt
        out.mkdir()
        for name in TABLES:
            write_records(result.records[name], out, name, fmt)
        for extra in ("alerts.jsonl", "summary.json"):
            (out / extra).write_bytes((office[1] / extra).read_bytes())
        assert report_html(load_dir(out)) == from_dir, fmt


def test_ladder_of_the_most_severe_call(office):
    result, _, text, _ = office
    # the critical UM-02 alert names call-c: its ladder is drawn from the sip_messages rows
    assert "Ladder of the most severe call" in text
    assert re.search(r'Call <code>call-c@small-office</code>, named by a <span class="sev critical">', text)
    sip = result.tables["sip_messages"]
    for call_id in ("call-a@small-office", "call-c@small-office"):
        rows = sip[sip["call_id"] == call_id].sort_values(["ts", "frame"])
        from_table = ladder_from_rows(rows)
        messages = [m for m in result.records["sip_messages"] if m.call_id == call_id]
        from_records = build_ladder(messages)
        assert from_table.parties == from_records.parties
        assert [(r.src, r.dst, r.label, r.is_retransmission, r.frame) for r in from_table.rows] == \
            [(r.src, r.dst, r.label, r.is_retransmission, r.frame) for r in from_records.rows]


def test_top_n_keeps_the_totals(office):
    result, out, _, _ = office
    text = report_html(load_dir(out), top=2)
    page = Page(text)
    assert page.tables["calls"] == {"total": "4", "shown": "2", "rows": 2}
    assert "Showing <b>2</b> of <b>4</b> calls" in text
    # the calls named by findings come first: call-c (critical) then call-a (high)
    calls = text[text.index('data-table="calls"'):]
    assert calls.index("call-c@small-office") < calls.index("call-a@small-office")
    assert "call-b@small-office" not in calls.split("</table>")[0]


@pytest.mark.parametrize("name", PUBLIC)
def test_public_captures(public_captures, tmp_path, name, analysis):
    capture = public_captures / name
    result = analysis(capture)
    out = tmp_path / "out"
    write_outputs(result, out)
    text = report_html(from_result(result))
    assert text == report_html(load_dir(out))
    check_page(text, result)
    if not result.alerts:
        assert "No findings: no detector raised an alert" in text
        assert "No ladder: there are no findings" in text
    if len(result.tables["calls"]) == 0:
        assert "No calls (no Call-ID with an INVITE) in this capture." in text
    if len(result.tables["rtp_streams"]) == 0:
        assert "No RTP streams in this capture." in text


def test_empty_analysis_says_so_in_every_section():
    tables = {name: to_frame([], name) for name in TABLES}
    summary = {"version": "0", "mode": "batch", "inputs": ["empty.pcap"], "frames_read": 0, "frames_undecoded": 0,
               "frames_by_class": {}, "first_ts": None, "last_ts": None, "counts": {}, "anomalies_by_reason": {},
               "run_s": 0.0}
    text = report_html(ReportData(tables, [], summary))
    page = Page(text)
    assert page.sections == list(SECTIONS)
    for note in ("No findings", "No calls and no REGISTER requests", "No calls (no Call-ID", "No REGISTER requests",
                 "No registrations", "No RTP streams", "No SIP, RTP, DNS or calls", "No ladder", "No anomalies"):
        assert note in text, note
    assert len(page.images) == 1          # the summary figure, with empty bars


def test_capture_text_is_escaped():
    tables = {name: to_frame([], name) for name in TABLES}
    evil = '<script>alert(1)</script><img src="https://example.com/x.png">'
    event = {"ts": 1700000000.0, "src": "10.0.0.1", "sport": 5060, "dst": "10.0.0.2", "dport": 5060, "vlan": [],
             "call_id": evil, "alert": {"family": "toll_fraud", "name": "toll_fraud.x", "check": "TF-04",
                                        "severity": "high", "guide_ref": "Part III: Audit and logging apparatus",
                                        "msg": evil, "identifier": evil, "evidence": {evil: evil}}}
    summary = {"inputs": [evil], "counts": {}, "frames_by_class": {evil: 1}}
    text = report_html(ReportData(tables, [event], summary))
    assert "<script" not in text and 'src="https://' not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    page = Page(text)
    assert all(link.startswith(("data:image/png;base64,", "#")) for link in page.links)


def test_destination_classes():
    numbers = pd.Series(["+441632960001", "0044163296", "1001", "18005550100", "alice", None, "911"], dtype="string")
    assert list(destination_classes(numbers, None)) == ["+44…", "004…", "ext 1…", "180…", "name", "unknown",
                                                        "ext 9…"]
    site = load_settings(str(TOLL_CONFIG)).site
    assert list(destination_classes(numbers, site)) == ["international", "international", "internal",
                                                        "national/other", "national/other", "unknown", "emergency"]


def test_report_with_site_config_uses_the_dial_plan(public_captures, tmp_path):
    out = tmp_path / "r.html"
    res = CliRunner().invoke(cli, ["report", str(REPO / "sample_captures" / "tf-attacks.pcap"), "-o", str(out),
                                   "--config", str(TOLL_CONFIG)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "site dial plan (--config)" in text
    assert re.search(r"<td>(international|high_risk|premium)</td>", text)


def test_cli_usage_and_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["report", "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "either capture files or --from-dir" in res.output
    res = runner.invoke(cli, ["report", str(OFFICE), "--from-dir", str(tmp_path), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 2
    res = runner.invoke(cli, ["report", "--from-dir", str(tmp_path / "missing"), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 1 and "not a directory" in res.output
    res = runner.invoke(cli, ["report", "--from-dir", str(tmp_path), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 1 and "no sip_messages table" in res.output
    assert not (tmp_path / "r.html").exists()


# Every check of the catalogue has the guide's advice, so that a new detector family finds it there.
CATALOGUE = (REPO / ".." / "shared" / "design" / "nsa-checks.md").resolve()
REQUIRED_CHECKS = sorted(set(re.findall(r"^\*\*([A-Z]{2}-\d{2}) ", CATALOGUE.read_text(encoding="utf-8"), re.M)))
PART_FILES = {"Part I": "part1-network.md", "Part II": "part2-perimeter.md", "Part III": "part3-esc.md",
              "Part IV": "part4-endpoints.md"}


@pytest.mark.parametrize("check", REQUIRED_CHECKS)
def test_guide_advice_for_every_check(check):
    advice = guide.ADVICE[check]
    assert advice.part in guide.PARTS
    sentences = [s for s in re.split(r"(?<=[.;:])\s+(?=[A-Z])", advice.text) if s]
    assert len(sentences) in (1, 2, 3) and 40 <= len(advice.text) <= 320
    # the heading is one of the guide's headings, in the named part
    if not GUIDE_DIR.is_dir():
        pytest.fail(f"NSA guide reference not found at {GUIDE_DIR}: the checkout must sit beside shared/")
    part_text = (GUIDE_DIR / PART_FILES[advice.part]).read_text(encoding="utf-8")
    # a heading as the guide writes it, or with a parenthesis naming the subsection ("(DHCP)")
    headings = (advice.heading, re.sub(r"\s*\(.*\)$", "", advice.heading))
    assert any(re.search(rf"^#+ \*?{re.escape(h)}\*?\s*$", part_text, re.M) for h in headings), (check, headings)


def test_the_advice_covers_the_catalogue_and_nothing_else():
    assert len(REQUIRED_CHECKS) == 70 and sorted(guide.ADVICE) == REQUIRED_CHECKS


def test_every_detector_check_has_advice():
    from voipwatch.detect import load_detectors
    for cls in load_detectors().values():
        for key, spec in cls.alerts.items():
            advice = guide.advice_for(spec.check, spec.guide_ref)
            assert not advice.text.startswith("No specific advice"), (cls.name, key, spec.check)


def test_unknown_check_points_to_the_guide_part():
    advice = guide.advice_for("ZZ-99", "Part IV: Telnet")
    assert advice.part == "Part IV" and advice.heading == "Telnet"
    assert "ZZ-99" in advice.text and "Part IV: Telnet" in advice.text
    assert guide.advice_for(None, None).text.startswith("No specific advice")


def test_report_data_is_built_without_matplotlib():
    # the report's data (voipwatch.report.data) draws nothing: only voipwatch.report.figures imports matplotlib
    probe = "import sys, voipwatch.report.data; print(sorted(m for m in sys.modules if m.startswith('matplotlib')))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
