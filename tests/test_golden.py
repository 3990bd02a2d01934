"""Golden tests: the bundled sample captures, in both execution paths, against expected tables and alerts.

Each tests/golden/<case>/test.toml names a capture in sample_captures/ (and optionally a site
configuration there), then:
- `tables`: tables compared byte for byte with expected/<table>.csv, written by the batch path when the
  case was last reviewed (`pytest --update-goldens` rewrites them; review that diff like code);
- `[[alerts]]`: alert expectations (name, count, and optionally severity, check, src, vlan, call_id and a
  subset of evidence); with `exclusive = true` no other alert may fire.
Both paths must give the same tables and the same alerts.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from voipwatch.alerts import alert_event
from voipwatch.analyze import analyze_files, write_outputs
from voipwatch.settings import load_settings

GOLDEN = Path(__file__).resolve().parent / "golden"
SAMPLES = Path(__file__).resolve().parents[1] / "sample_captures"
CASES = sorted(p.parent.name for p in GOLDEN.glob("*/test.toml"))


def load_case(case: str) -> dict:
    with open(GOLDEN / case / "test.toml", "rb") as fh:
        return tomllib.load(fh)


def run_case(case: str, mode: str):
    spec = load_case(case)
    config = str(SAMPLES / spec["config"]) if "config" in spec else None
    return spec, analyze_files([str(SAMPLES / spec["capture"])], load_settings(config), mode=mode)


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


@pytest.mark.parametrize("mode", ["batch", "stream"])
@pytest.mark.parametrize("case", CASES)
def test_golden(case, mode, tmp_path, update_goldens):
    spec, result = run_case(case, mode)
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


@pytest.mark.parametrize("case", CASES)
def test_alerts_identical_in_both_paths(case):
    _, batch = run_case(case, "batch")
    _, stream = run_case(case, "stream")
    assert [alert_event(a) for a in batch.alerts] == [alert_event(a) for a in stream.alerts]
