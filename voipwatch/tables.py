"""Output tables: rows from records, written as CSV, Parquet or JSON lines.

Each table's name, columns (names, order, dtypes, values) and row order are declared with its record
type (voipwatch.records.declare); TABLES is that registry, by table name. Column names and order are
a contract (later tools read them). Rows are sorted by time then frame, floats are rounded to
microseconds, and no run metadata goes into a table, so outputs are deterministic and golden files
need no canonifiers.
"""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, TextIO

from voipwatch.records import TABLES
from voipwatch.safe_text import INVISIBLE_CHARS, json_line, visible

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("csv", "parquet", "jsonl")


# ------------------------------------------------------------------------------------ CSV cells
# Header values are attacker-controlled, and a spreadsheet runs a cell that starts with = + - or @ as
# a formula (OWASP, "CSV Injection"; TAB and CR count too, and they are escaped first here). CSV cells
# are therefore neutralised, losslessly (read_table undoes it): see csv_cell. Parquet and JSON lines
# keep exact values.
CSV_FORMULA_START = "=+-@"
_QUOTED_START = CSV_FORMULA_START + "'"        # a leading quote is quoted too, so that csv_text can undo it
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# A backslash that would read as the start of an escape: before another backslash, before x and two
# lowercase hex digits, u and four, or before a character that is about to be escaped.
_AMBIGUOUS_BACKSLASH = re.compile(rf"\\(?=\\|x[0-9a-f]{{2}}|u[0-9a-f]{{4}}|[{INVISIBLE_CHARS}])")
_CSV_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4})")
# What step 1 or 2 of csv_cell changes: a backslash or an invisible character.
_ESCAPED = re.compile(rf"[\\{INVISIBLE_CHARS}]")


def csv_cell(text: str) -> str:
    """A text cell as written to CSV by default, in three steps:
    1. a backslash is doubled where it would otherwise read as the start of an escape (step 2);
    2. each control character (C0, DEL, C1), bidirectional control, line or paragraph separator and
       lone surrogate becomes \\xHH (up to U+00FF) or \\uHHHH, lowercase hex (voipwatch.safe_text);
    3. a cell that then starts with = + - @ or ' gets one more ' in front, unless the whole cell is a
       plain number (optional sign, ASCII digits, optional decimal part and exponent), so that E.164
       numbers such as +15551234567 and negative numbers stay as they are.
    csv_text() reverses it exactly."""
    if "\\" in text:
        text = _AMBIGUOUS_BACKSLASH.sub(r"\\\\", text)
    text = visible(text)
    if text and text[0] in _QUOTED_START and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_text(cell: str) -> str:
    """The value csv_cell(value) was made from."""
    if cell[:1] == "'":
        cell = cell[1:]
    if "\\" not in cell:
        return cell
    return _CSV_ESCAPE.sub(lambda m: "\\" if m.group(1) == "\\" else chr(int(m.group(1)[1:], 16)), cell)


def csv_values(values: list) -> list:
    """Values (a row) with each text cell as csv_cell writes it. Only the cells csv_cell changes are
    visited: those that start with a quoted character and are not a plain number (which has nothing
    to escape), and, when the values hold any, those with a backslash or an invisible character."""
    texts = [v for v in values if type(v) is str]
    joined = "".join(texts)
    # str.isprintable is False for every invisible character (controls, format characters, line and
    # paragraph separators, surrogates), so printable text without a backslash has nothing to escape.
    escapes = not (joined.isprintable() and "\\" not in joined) and _ESCAPED.search(joined) is not None
    if not escapes and {v[:1] for v in texts}.isdisjoint(_QUOTED_START):
        return values
    return [csv_cell(v) if type(v) is str and (escapes and _ESCAPED.search(v) or v[:1] in _QUOTED_START
                                                and not _PLAIN_NUMBER.fullmatch(v)) else v
            for v in values]


def table_columns(records: Iterable[Any], table: str) -> dict[str, list]:
    """The table as Python values, column by column (None where a value is missing), rows sorted."""
    spec = TABLES[table]
    rows = sorted(records, key=spec.sort)
    return {name: [get(r) for r in rows] for name, _, get in spec.columns}


def to_frame(records: Iterable[Any], table: str) -> pd.DataFrame:
    import pandas as pd      # pandas is imported when first needed: CSV and JSON lines are written without it
    dtypes = {name: dtype for name, dtype, _ in TABLES[table].columns}
    data = {col: pd.array(values, dtype=dtypes[col]) for col, values in table_columns(records, table).items()}
    return pd.DataFrame(data, columns=list(dtypes))


def write_csv_columns(fh: TextIO, columns: list[list], csv_raw: bool = False) -> None:
    """The one CSV writer of every table (analyze's and monitor's), as pandas.DataFrame.to_csv writes:
    the csv module's minimal quoting, "\n" line ends, missing values empty, floats as repr() (the
    shortest text that reads back the same), booleans True/False. It takes the rows column by column
    (a header is a one-row table of names), so that text cells are neutralised one column at a time
    (csv_values looks at a whole column at once) unless `csv_raw`; then a row with a bare CR in a cell
    is quoted as if CR ended lines: the csv module, like pandas, quotes only the line terminator's
    characters, and a bare CR would split the row for RFC 4180 readers."""
    writer = csv.writer(fh, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    if not csv_raw:
        writer.writerows(zip(*(csv_values(column) for column in columns)))
        return
    if not any("\r" in v for column in columns for v in column if type(v) is str):
        writer.writerows(zip(*columns))
        return
    buffer = io.StringIO()
    quoting = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    for row in zip(*columns):
        if any(type(v) is str and "\r" in v for v in row):
            quoting.writerow(row)
            fh.write(buffer.getvalue()[:-2] + "\n")
            buffer.seek(0)
            buffer.truncate()
        else:
            writer.writerow(row)


def write_records(records: Iterable[Any], out_dir: Path, name: str, fmt: str, csv_raw: bool = False) -> Path:
    """Write a table straight from its records. CSV and JSON lines are written without pandas, byte for
    byte as pandas writes to_frame()'s DataFrame (tests/test_tables.py holds them to that), except that
    CSV text cells are neutralised unless `csv_raw` (write_csv_columns), and JSON lines escape DEL, C1 and
    the other invisible characters (safe_text.json_line); Parquet goes through the DataFrame."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; choose one of {', '.join(FORMATS)}")
    path = out_dir / f"{name}.{fmt}"
    if fmt == "parquet":
        to_frame(records, name).to_parquet(path, index=False)
        return path
    columns = table_columns(records, name)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        if fmt == "csv":
            write_csv_columns(fh, [[name] for name in columns])
            write_csv_columns(fh, list(columns.values()), csv_raw)
        else:
            names = list(columns)
            for row in zip(*columns.values()):
                fh.write(json_line(dict(zip(names, row))) + "\n")
    return path


def read_table(out_dir: Path, name: str) -> pd.DataFrame:
    """Read a table back with its declared dtypes and exact values, whatever format it was written in.

    CSV cells are decoded (csv_text) unless the directory's summary.json says they were written raw. CSV
    cannot tell an empty string from a missing value, so an empty string reads back as missing in
    every format: the same table then reads back the same whatever its format.
    """
    import pandas as pd
    dtypes = {col: dtype for col, dtype, _ in TABLES[name].columns}
    strings = [col for col, dtype in dtypes.items() if dtype == "string"]
    for fmt in FORMATS:
        path = Path(out_dir) / f"{name}.{fmt}"
        if path.exists():
            if fmt == "csv":
                df = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=[""])
                if csv_cells_of(Path(out_dir)) == "neutralised":
                    for col in strings:
                        encoded = (df[col].str.startswith("'") | df[col].str.contains("\\", regex=False)).fillna(False)
                        if encoded.any():
                            df.loc[encoded, col] = df.loc[encoded, col].map(csv_text)
                return df
            if fmt == "parquet":
                df = pd.read_parquet(path)
            elif path.stat().st_size == 0:             # no rows: JSON lines keep no column names
                df = to_frame([], name)
            else:
                df = pd.read_json(path, lines=True, dtype=dtypes)
            df[strings] = df[strings].replace("", pd.NA)
            return df
    raise FileNotFoundError(f"no {name} table in {out_dir}")


def csv_cells_of(out_dir: Path) -> str:
    """How an analyze output directory wrote its CSV cells, "neutralised" (the default) or "raw", as
    its summary.json states (key csv_cells)."""
    summary = out_dir / "summary.json"
    if not summary.exists():
        return "neutralised"
    return json.loads(summary.read_text(encoding="utf-8")).get("csv_cells", "neutralised")
