"""Tables written straight from records (tables.write_records) against pandas, their peer: the CSV and
JSON lines bytes must be those of DataFrame.to_csv / the DataFrame rows, for awkward values too."""
from __future__ import annotations

import dataclasses
import json
import random
from types import SimpleNamespace

import pandas as pd
import pytest

from voipwatch.records import Column
from voipwatch.tables import TABLES, to_frame, write_records


def write_with_pandas(records: list, out_dir, table: str, fmt: str):
    """The peer: to_frame()'s DataFrame written by pandas (DataFrame.to_csv; rows of DataFrame.to_dict,
    missing values as null, for JSON lines)."""
    df, path = to_frame(records, table), out_dir / f"{table}.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    else:
        with open(path, "w", encoding="utf-8") as fh:
            for row in df.to_dict(orient="records"):
                fh.write(json.dumps({k: (None if pd.isna(v) else v) for k, v in row.items()}, ensure_ascii=False) + "\n")
    return path


AWKWARD_TEXT = ["", " ", "a,b", 'say "hi"', "line\nbreak", "cr\rlf\r\n", "tab\there", "ünïcødé ✓", "'", ";", None,
                "trailing space ", "=1+1", "\x00nul", "comma, quote\" and\nnewline"]
AWKWARD_FLOATS = [0.0, -0.0, 1e-05, 0.0001, 123456.5, 1700000000.011956, 1e16, 2.5e-07, -3.75, 0.1 + 0.2, 7.0, None]


def _value(rng: random.Random, dtype: str):
    if dtype == "string":
        return rng.choice(AWKWARD_TEXT)
    if dtype == "Float64":
        return rng.choice(AWKWARD_FLOATS)
    if dtype == "Int64":
        return rng.choice([0, -1, 5060, 2**40, None])
    if dtype == "boolean":
        return rng.choice([True, False])
    raise AssertionError(dtype)


def _records(table: str, rng: random.Random, n: int) -> list[SimpleNamespace]:
    """Rows of awkward values of each column's type, in row order (i)."""
    return [SimpleNamespace(i=i, values={col: _value(rng, dtype) for col, dtype, _ in TABLES[table].columns})
            for i in range(n)]


@pytest.fixture
def plain_schemas(monkeypatch):
    """Each table's columns and dtypes, its extractors reading _records' values, sorted by row number."""
    from voipwatch import tables
    monkeypatch.setattr(tables, "TABLES", {
        name: dataclasses.replace(spec, sort=lambda r: (r.i,), columns=tuple(
            Column(col, dtype, lambda r, col=col: r.values[col]) for col, dtype, _ in spec.columns))
        for name, spec in TABLES.items()})


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("table", list(TABLES))
def test_written_as_pandas_writes_them(plain_schemas, table, fmt, tmp_path):
    records = _records(table, random.Random(f"{table}{fmt}"), 300)
    (tmp_path / "ours").mkdir()
    (tmp_path / "pandas").mkdir()
    ours = write_records(records, tmp_path / "ours", table, fmt)
    peer = write_with_pandas(records, tmp_path / "pandas", table, fmt)
    assert ours.read_bytes() == peer.read_bytes()
    assert len(ours.read_bytes()) > 1000


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_empty_tables(fmt, tmp_path):
    for table in TABLES:
        (tmp_path / table).mkdir()
        (tmp_path / f"{table}-pandas").mkdir()
        assert write_records([], tmp_path / table, table, fmt).read_bytes() == \
            write_with_pandas([], tmp_path / f"{table}-pandas", table, fmt).read_bytes()
