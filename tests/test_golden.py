"""Golden tests: tables of the bundled sample captures, in both execution paths, against expected files.

Each tests/golden/<case>/test.toml names a capture in sample_captures/ and the tables to compare;
expected/ holds the tables as the batch path wrote them when the case was last reviewed
(`pytest --update-goldens` rewrites them; review that diff like code). Both the batch and the
streaming path must reproduce them byte for byte.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from voipwatch.analyze import analyze_files, write_outputs

GOLDEN = Path(__file__).resolve().parent / "golden"
SAMPLES = Path(__file__).resolve().parents[1] / "sample_captures"
CASES = sorted(p.parent.name for p in GOLDEN.glob("*/test.toml"))


def _load(case: str) -> dict:
    with open(GOLDEN / case / "test.toml", "rb") as fh:
        return tomllib.load(fh)


@pytest.mark.parametrize("mode", ["batch", "stream"])
@pytest.mark.parametrize("case", CASES)
def test_golden_tables(case, mode, tmp_path, update_goldens):
    spec = _load(case)
    result = analyze_files([str(SAMPLES / spec["capture"])], mode=mode)
    write_outputs(result, tmp_path, "csv")
    expected_dir = GOLDEN / case / "expected"
    for table in spec["tables"]:
        produced = (tmp_path / f"{table}.csv").read_text(encoding="utf-8")
        expected_file = expected_dir / f"{table}.csv"
        if update_goldens and mode == "batch":
            expected_dir.mkdir(exist_ok=True)
            expected_file.write_text(produced, encoding="utf-8")
        assert expected_file.exists(), f"{expected_file} missing: run pytest --update-goldens and review it"
        assert produced == expected_file.read_text(encoding="utf-8"), f"{case}/{table}.csv differs ({mode} path)"
