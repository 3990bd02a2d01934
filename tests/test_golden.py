"""Golden tests: the bundled sample captures, in both execution paths, against expected tables and alerts.

Each tests/golden/<case>/test.toml names a capture in sample_captures/ (and optionally a site
configuration there), then:
- `tables`: tables compared byte for byte with expected/<table>.csv, written by the batch path when the
  case was last reviewed (`pytest --update-goldens` rewrites them; review that diff like code);
- `[[alerts]]`: alert expectations (name, count, and optionally severity, check, src, vlan, call_id and a
  subset of evidence); with `exclusive = true` no other alert may fire;
- `[delivered.<detector>]`: the records the detector bus handed that detector, by record type (it ran,
  and on what);
- `[[records]]`: positive facts, what the case's traffic put in the capture: rows of an output `table`
  matching `where` (column = value; `distinct` counts distinct column values instead), a `summary` entry
  (a key path into summary.json) or a `delivered` count ("detector.RecordType"), equal to `count`.
  `tshark` is the display filter under which tshark counts the same thing on the same capture (frames,
  or with `tshark_distinct` distinct field values; `tshark_args` adds options such as a heuristic):
  test_records_agree_with_tshark checks those counts against the peer.
A case whose alerts are all expected not to fire must state `delivered` and tshark-checked `records`, so
that it cannot pass on an empty capture or with its detector disabled. Both paths must give the same
tables and the same alerts. Each (capture, config, mode) is analysed once per run (conftest `analysis`).
"""
from __future__ import annotations

import csv
import tomllib
from pathlib import Path

import pytest

from peer import distinct_values, frame_counts
from voipwatch.alerts import alert_event
from voipwatch.analyze import write_outputs

GOLDEN = Path(__file__).resolve().parent / "golden"
SAMPLES = Path(__file__).resolve().parents[1] / "sample_captures"
CASES = sorted(p.parent.name for p in GOLDEN.glob("*/test.toml"))


def load_case(case: str) -> dict:
    with open(GOLDEN / case / "test.toml", "rb") as fh:
        return tomllib.load(fh)


def run_case(case: str, mode: str, analysis):
    spec = load_case(case)
    config = SAMPLES / spec["config"] if "config" in spec else None
    return spec, analysis(SAMPLES / spec["capture"], config, mode)


def _matches(event: dict, expect: dict) -> bool:
    alert = event["alert"]
    for key in ("name", "severity", "check"):
        if key in expect and alert[key] != expect[key]:
            return False
    for key in ("src", "dst", "call_id"):
        if key in expect and event[key] != expect[key]:
            return False
    if "vlan" in expect and event["vlan"] != list(expect["vlan"]):
        return False
    evidence = expect.get("evidence", {})
    return all(alert["evidence"].get(k) == v for k, v in evidence.items())


def voipwatch_count(fact: dict, result, out_dir: Path) -> int:
    """What voipwatch says about one `[[records]]` fact: table rows, a summary entry or a delivery count."""
    if "table" in fact:
        with open(out_dir / f"{fact['table']}.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        where = {column: str(value) for column, value in fact.get("where", {}).items()}
        rows = [row for row in rows if all(row[column] == value for column, value in where.items())]
        if "distinct" in fact:
            return len({tuple(row[column] for column in fact["distinct"]) for row in rows})
        return len(rows)
    if "summary" in fact:
        value = result.summary
        for key in fact["summary"]:
            value = value.get(key, 0)
        return value
    detector, record_type = fact["delivered"].split(".")
    return result.records_delivered[detector][record_type]


@pytest.mark.parametrize("mode", ["batch", "stream"])
@pytest.mark.parametrize("case", CASES)
def test_golden(case, mode, tmp_path, update_goldens, analysis):
    spec, result = run_case(case, mode, analysis)
    write_outputs(result, tmp_path, "csv")
    expected_dir = GOLDEN / case / "expected"
    for table in spec.get("tables", []):
        produced = (tmp_path / f"{table}.csv").read_text(encoding="utf-8")
        expected_file = expected_dir / f"{table}.csv"
        if update_goldens and mode == "batch":
            expected_dir.mkdir(exist_ok=True)
            expected_file.write_text(produced, encoding="utf-8")
        assert expected_file.exists(), f"{expected_file} missing: run pytest --update-goldens and review it"
        assert produced == expected_file.read_text(encoding="utf-8"), f"{case}/{table}.csv differs ({mode} path)"
    events = [alert_event(a) for a in result.alerts]
    for expect in spec.get("alerts", []):
        found = [e for e in events if _matches(e, expect)]
        assert len(found) == expect.get("count", 1), (
            f"{case}: expected {expect.get('count', 1)} x {expect}, found {len(found)}; all alerts: "
            f"{[(e['alert']['name'], e['alert']['severity'], e['alert']['evidence']) for e in events]}")
    if spec.get("exclusive"):
        listed = {e["name"] for e in spec.get("alerts", []) if e.get("count", 1) > 0}
        others = sorted({e["alert"]["name"] for e in events} - listed)
        assert not others, f"{case}: unexpected alerts {others}"
    for detector, expected in spec.get("delivered", {}).items():
        assert result.records_delivered.get(detector) == expected, f"{case}: records delivered to {detector}"
    for fact in spec.get("records", []):
        assert voipwatch_count(fact, result, tmp_path) == fact["count"], f"{case}: {fact} ({mode} path)"


@pytest.mark.parametrize("case", CASES)
def test_alerts_identical_in_both_paths(case, analysis):
    _, batch = run_case(case, "batch", analysis)
    _, stream = run_case(case, "stream", analysis)
    assert [alert_event(a) for a in batch.alerts] == [alert_event(a) for a in stream.alerts]


@pytest.mark.parametrize("case", CASES)
def test_a_case_that_expects_no_alert_expects_something_else(case):
    """A benign case passes only on the traffic it describes, with its detector running on it."""
    spec = load_case(case)
    if spec.get("tables") or any(expect.get("count", 1) > 0 for expect in spec.get("alerts", [])):
        return                                  # it already asserts what it finds
    families = {expect["name"].split(".")[0] for expect in spec["alerts"]}
    assert families <= set(spec.get("delivered", {})), f"{case}: say what its detector(s) {families} were given"
    assert all(sum(counts.values()) > 0 for counts in spec["delivered"].values())
    checked = [fact for fact in spec.get("records", []) if fact["count"] > 0 and "tshark" in fact]
    assert checked, f"{case}: state the records the capture holds, counted by tshark too"


def _peer_facts(capture: str) -> list[dict]:
    """The tshark-checked facts of every case on one capture, each once."""
    facts = {}
    for case in CASES:
        spec = load_case(case)
        if spec["capture"] == capture:
            for fact in spec.get("records", []):
                if "tshark" in fact:
                    key = (fact["tshark"], tuple(fact.get("tshark_distinct", ())), tuple(fact.get("tshark_args", ())))
                    facts.setdefault(key, []).append((case, fact))
    return [dict(key=key, uses=uses) for key, uses in facts.items()]


@pytest.mark.peer
@pytest.mark.parametrize("capture", sorted({load_case(case)["capture"] for case in CASES
                                            if any("tshark" in fact for fact in load_case(case).get("records", []))}))
def test_records_agree_with_tshark(capture, tshark):
    """The golden cases' counts are protocol facts: tshark counts the same on the same capture."""
    path = str(SAMPLES / capture)
    facts = _peer_facts(capture)
    by_args: dict[tuple, list[dict]] = {}
    for fact in facts:
        display_filter, distinct, args = fact["key"]
        if distinct:
            fact["tshark"] = distinct_values(tshark, path, display_filter, list(distinct), args)
        else:
            by_args.setdefault(args, []).append(fact)
    for args, group in by_args.items():          # plain frame counts: one tshark pass per option set
        for fact, count in zip(group, frame_counts(tshark, path, [f["key"][0] for f in group], args)):
            fact["tshark"] = count
    for fact in facts:
        for case, spec in fact["uses"]:
            assert spec["count"] == fact["tshark"], f"{case}: tshark counts {fact['tshark']} for {spec}"
