"""Tables written straight from records (tables.write_records) against pandas, their peer: the raw CSV and
the JSON lines bytes must be those of DataFrame.to_csv / the DataFrame rows, for awkward values too. The
default CSV neutralises cells for spreadsheets (OWASP CSV injection) and reads back exact."""
from __future__ import annotations

import csv
import dataclasses
import json
import random
from types import SimpleNamespace

import pandas as pd
import pytest

from reader_safety import CONTROL, spreadsheet_safe
from voipwatch.records import Column
from voipwatch.tables import TABLES, csv_cell, csv_text, csv_values, read_table, to_frame, write_records


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
    ours = write_records(records, tmp_path / "ours", table, fmt, csv_raw=True)
    peer = write_with_pandas(records, tmp_path / "pandas", table, fmt)
    assert ours.read_bytes() == peer.read_bytes()
    assert len(ours.read_bytes()) > 1000


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_empty_tables(fmt, tmp_path):
    for table in TABLES:
        (tmp_path / table).mkdir()
        (tmp_path / f"{table}-pandas").mkdir()
        assert write_records([], tmp_path / table, table, fmt, csv_raw=True).read_bytes() == \
            write_with_pandas([], tmp_path / f"{table}-pandas", table, fmt).read_bytes()


# ---------------------------------------------------------------- neutralised CSV cells

@pytest.mark.parametrize("value, cell", [
    ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
    ("-2+3+cmd@evil", "'-2+3+cmd@evil"),
    ("+15551234567", "+15551234567"),                 # an E.164 number stays a number
    ("-42", "-42"), ("+1.5e3", "+1.5e3"), ("-.5", "-.5"),
    ("+1 555 123", "'+1 555 123"), ("-1-1", "'-1-1"), ("+", "'+"), ("-", "'-"),
    ("@SUM(A1)", "'@SUM(A1)"), ("'quoted", "''quoted"), ("", ""),
    ("\t=1+1", "\\x09=1+1"), ("\r-1", "\\x0d-1"),       # TAB and CR are escaped, so nothing is run
    ("title\x1b]0;owned\x07", "title\\x1b]0;owned\\x07"),
    ("a\x9bb\x7fc\u202ed", "a\\x9bb\\x7fc\\u202ed"),
    ("line\nbreak", "line\\x0abreak"),
    ("DNSKEY \\# 136", "DNSKEY \\# 136"),               # a backslash that starts no escape stays single
    ("C:\\x41", "C:\\\\x41"), ("a\\\\b", "a\\\\\\b"), ("end\\", "end\\"), ("\\\x1b", "\\\\\\x1b"),
    ("١٢٣", "١٢٣"),                                     # Arabic-Indic digits: not a number, not a formula
    ("٣-", "٣-"),
])
def test_csv_cell_rule(value, cell):
    assert csv_cell(value) == cell
    assert csv_text(cell) == value
    assert spreadsheet_safe(cell)


def test_csv_cells_read_back_exact_for_random_hostile_text():
    rng = random.Random(10)
    alphabet = "=+-@'\\x0u1a9 .eE\t\r\n\x00\x1b\x07\x08\x7f\x85\x9b\u202e\u2028é✓"
    for _ in range(20_000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        cell = csv_cell(value)
        assert csv_text(cell) == value, (value, cell)
        assert spreadsheet_safe(cell), (value, cell)


def test_a_column_is_written_as_its_cells_one_by_one():
    """csv_values looks at a whole row or column at once: it must change exactly the cells csv_cell changes."""
    rng = random.Random(11)
    alphabet = ["=", "+", "-", "@", "'", "\\", "x1b", "1", "5", ".", "e", "a", " ", "\x1b", "\x85", "\uffff", "é"]
    for _ in range(3000):
        column = [rng.choice([None, 7, 2.5]) if rng.random() < 0.1 else
                  "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4))) for _ in range(rng.randint(0, 6))]
        assert csv_values(column) == [csv_cell(v) if type(v) is str else v for v in column], column


def test_printable_text_never_holds_an_invisible_character():
    """csv_values and safe_text.visible skip the regular expression for text that str.isprintable
    accepts: that shortcut is right only if no character they escape is printable."""
    from voipwatch.safe_text import INVISIBLE
    escaped_yet_printable = [hex(c) for c in range(0x110000) if INVISIBLE.match(chr(c)) and chr(c).isprintable()]
    assert escaped_yet_printable == []
    assert INVISIBLE.match("\u202e") and INVISIBLE.match("\x85")     # the class is not empty

HOSTILE_TEXT = ["=cmd|' /C calc'!A0", "-2+3+cmd@evil", "+15551234567", "@SUM(1)", "'already quoted", "\x1b[2J\x1b]0;x\x07",
                "del\x7f c1\x85\x9b", "bidi \u202egnp.exe", "a\\x41 b\\\\", "\ttab", "\rcr", "new\nline", None, "plain"]


def _hostile_records(table: str, seed: str, n: int) -> list[SimpleNamespace]:
    """_records with every text value drawn from HOSTILE_TEXT."""
    rng = random.Random(seed)
    records = _records(table, rng, n)
    for r in records:
        for col, dtype, _ in TABLES[table].columns:
            if dtype == "string":
                r.values[col] = rng.choice(HOSTILE_TEXT)
    return records


@pytest.mark.parametrize("table", list(TABLES))
def test_neutralised_csv_is_safe_and_reads_back_exact(plain_schemas, table, tmp_path):
    records = _hostile_records(table, f"hostile {table}", 200)
    path = write_records(records, tmp_path, table, "csv")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 201
    assert all(spreadsheet_safe(cell) for row in rows for cell in row)
    assert len(path.read_text(encoding="utf-8").split("\n")) == 202      # one line a row: no cell spans lines
    pd.testing.assert_frame_equal(read_table(tmp_path, table), _as_read(to_frame(records, table)))


@pytest.mark.parametrize("table", list(TABLES))
def test_json_lines_keep_exact_values_and_escape_invisible_characters(plain_schemas, table, tmp_path):
    records = _hostile_records(table, f"jsonl {table}", 100)
    path = write_records(records, tmp_path, table, "jsonl")
    text = path.read_text(encoding="utf-8")
    assert CONTROL.search(text.replace("\n", "")) is None
    frame = to_frame(records, table)
    for line, expected in zip(text.splitlines(), frame.to_dict(orient="records")):
        assert json.loads(line) == {k: (None if pd.isna(v) else v) for k, v in expected.items()}


def test_raw_csv_quotes_a_lone_carriage_return(plain_schemas, tmp_path):
    """pandas and the csv module quote only "\n" here: a bare CR splits the row for RFC 4180 readers."""
    records = _records("dns", random.Random("cr"), 20)
    for r in records[::3]:
        r.values["qname"] = "_sip._udp.s\rp.example"
    path = write_records(records, tmp_path, "dns", "csv", csv_raw=True)
    (tmp_path / "summary.json").write_text('{"csv_cells": "raw"}')
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 21 and rows[1][5] == "_sip._udp.s\rp.example"
    pd.testing.assert_frame_equal(read_table(tmp_path, "dns"), _as_read(to_frame(records, "dns")))


def _as_read(df: pd.DataFrame) -> pd.DataFrame:
    """A table as read_table gives it back: an empty string is missing (CSV cannot tell them apart)."""
    strings = [c for c in df.columns if str(df[c].dtype) == "string"]
    df[strings] = df[strings].replace("", pd.NA)
    return df
