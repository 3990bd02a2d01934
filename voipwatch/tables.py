"""Output tables: rows from records, written as CSV, Parquet or JSON lines.

Each table's name, columns (names, order, dtypes, values) and row order are declared with its record
type (voipwatch.records.declare); TABLES is that registry, by table name. Column names and order are
a contract (later tools read them). Rows are sorted by time then frame, floats are rounded to
microseconds, and no run metadata goes into a table, so outputs are deterministic and golden files
need no canonifiers.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, TextIO

from voipwatch.records import TABLES

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("csv", "parquet", "jsonl")


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


def write_csv_rows(fh: TextIO, rows: Iterable[Iterable[Any]]) -> None:
    """The one CSV writer of every table (analyze's and monitor's), as pandas.DataFrame.to_csv writes:
    the csv module's minimal quoting, "\n" line ends, missing values empty, floats as repr() (the
    shortest text that reads back the same), booleans True/False."""
    csv.writer(fh, lineterminator="\n", quoting=csv.QUOTE_MINIMAL).writerows(rows)


def write_records(records: Iterable[Any], out_dir: Path, name: str, fmt: str) -> Path:
    """Write a table straight from its records. CSV and JSON lines are written without pandas, byte for
    byte as pandas writes to_frame()'s DataFrame (tests/test_tables.py holds them to that); Parquet
    goes through the DataFrame."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; choose one of {', '.join(FORMATS)}")
    path = out_dir / f"{name}.{fmt}"
    if fmt == "parquet":
        to_frame(records, name).to_parquet(path, index=False)
        return path
    columns = table_columns(records, name)
    rows = zip(*columns.values())
    with open(path, "w", encoding="utf-8", newline="") as fh:
        if fmt == "csv":
            write_csv_rows(fh, [columns])
            write_csv_rows(fh, rows)
        else:
            names = list(columns)
            for row in rows:
                fh.write(json.dumps(dict(zip(names, row)), ensure_ascii=False) + "\n")
    return path


def read_table(out_dir: Path, name: str) -> pd.DataFrame:
    """Read a table back with its declared dtypes, whatever format it was written in.

    CSV cannot tell an empty string from a missing value, so an empty string reads back as missing
    in every format: the same table then reads back the same whatever its format.
    """
    import pandas as pd
    dtypes = {col: dtype for col, dtype, _ in TABLES[name].columns}
    for fmt in FORMATS:
        path = Path(out_dir) / f"{name}.{fmt}"
        if path.exists():
            if fmt == "csv":
                return pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=[""])
            if fmt == "parquet":
                df = pd.read_parquet(path)
            elif path.stat().st_size == 0:             # no rows: JSON lines keep no column names
                df = to_frame([], name)
            else:
                df = pd.read_json(path, lines=True, dtype=dtypes)
            strings = [col for col, dtype in dtypes.items() if dtype == "string"]
            df[strings] = df[strings].replace("", pd.NA)
            return df
    raise FileNotFoundError(f"no {name} table in {out_dir}")

