"""The case store on disk: Parquet files partitioned by table and capture day, read through DuckDB.

    CASE/runs/run-<id>.parquet                    one row per capture of each run (the run record)
    CASE/<table>/day=YYYY-MM-DD/run-<id>.parquet  a run's rows of <table> whose time falls on that UTC day
    CASE/superseded/run-<id>/<table>.parquet      earlier runs' rows that run <id> replaced when it
                                                  stitched onto them (put back if <id> is replaced)

Every table keeps the columns analyze writes (voipwatch.records declarations) and appends `run_id`,
`capture_sha256` and `capture_frame`: the capture file and the frame number within that file of the
row's packet (`frame`) or first packet (`first_frame`). `alerts` holds the findings (alerts.jsonl's
fields, and the whole event as `event`). A run's record is written last, and the views show only rows
of recorded runs, so a run cut short leaves nothing visible behind.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

import voipwatch.detect  # noqa: F401 - with the pipeline, declares every table a run writes (incidents)
import voipwatch.pipeline  # noqa: F401 - its dissectors and trackers declare the rest (bindings, ...)
from voipwatch.records import TABLES

ARROW_TYPES = {"string": pa.string(), "Int64": pa.int64(), "Float64": pa.float64(), "boolean": pa.bool_()}
STORE_COLUMNS = (("run_id", "string"), ("capture_sha256", "string"), ("capture_frame", "Int64"))
ALERT_COLUMNS = (
    ("ts", "Float64"), ("severity", "string"), ("name", "string"), ("family", "string"), ("check", "string"),
    ("call_id", "string"), ("src", "string"), ("sport", "Int64"), ("dst", "string"), ("dport", "Int64"),
    ("vlan", "string"), ("identifier", "string"), ("msg", "string"), ("guide_ref", "string"),
    ("event", "string"), ("run_id", "string"),
)
RUN_COLUMNS = (
    ("run_id", "string"), ("ingested_at", "string"), ("version", "string"), ("sensor", "string"),
    ("config_sha256", "string"), ("config", "string"), ("mode", "string"),
    ("previous_run", "string"), ("chain", "string"), ("reread", "string"),
    ("run_first_ts", "Float64"), ("run_last_ts", "Float64"),
    ("capture_index", "Int64"), ("capture_path", "string"), ("capture_name", "string"),
    ("capture_sha256", "string"), ("capture_size", "Int64"), ("capture_first_ts", "Float64"),
    ("capture_last_ts", "Float64"), ("capture_frames", "Int64"), ("capture_status", "string"),
    ("capture_error", "string"), ("summary", "string"),
)


def stored_tables() -> tuple[str, ...]:
    """Every declared table, then alerts. Asked at run time: a table declared outside voipwatch.records
    (bindings, incidents) is registered when its module is imported."""
    return tuple(TABLES) + ("alerts",)


class StoreError(Exception):
    """The store cannot do what was asked (the message says why)."""


def columns_of(table: str) -> tuple[tuple[str, str], ...]:
    """(name, dtype) of a stored table, in order."""
    if table == "alerts":
        return ALERT_COLUMNS
    if table == "runs":
        return RUN_COLUMNS
    return tuple((c.name, c.dtype) for c in TABLES[table].columns) + STORE_COLUMNS


def schema_of(table: str) -> pa.Schema:
    return pa.schema([(name, ARROW_TYPES[dtype]) for name, dtype in columns_of(table)])


def time_column(table: str) -> str:
    """The column that places a row in time (its day partition): ts, else first_ts, else the table's
    first column ending in _ts (e.g. the bindings table's first_seen_ts)."""
    names = [name for name, _ in columns_of(table)]
    for name in ("ts", "first_ts"):
        if name in names:
            return name
    return next(name for name in names if name.endswith("_ts"))


def day_of(ts: float | None) -> str:
    """The UTC day of a capture time, the partition of a row."""
    if ts is None:
        return "unknown"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d")


def arrow_table(table: str, columns: dict[str, list]) -> pa.Table:
    return pa.table({name: pa.array(columns[name], type=ARROW_TYPES[dtype]) for name, dtype in columns_of(table)},
                    schema=schema_of(table))


def write_run_rows(store: Path, table: str, run_id: str, columns: dict[str, list]) -> list[Path]:
    """Write a run's rows of one table, one file per capture day (nothing when there are no rows)."""
    days: dict[str, list[int]] = {}
    for i, ts in enumerate(columns[time_column(table)]):
        days.setdefault(day_of(ts), []).append(i)
    written = []
    for day, rows in sorted(days.items()):
        part = {name: [values[i] for i in rows] for name, values in columns.items()}
        path = store / table / f"day={day}" / f"run-{run_id}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(arrow_table(table, part), path)
        written.append(path)
    return written


def run_files(store: Path, table: str, run_id: str) -> list[Path]:
    return sorted((store / table).glob(f"day=*/run-{run_id}.parquet"))


def write_run_record(store: Path, run_id: str, columns: dict[str, list]) -> Path:
    path = store / "runs" / f"run-{run_id}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(arrow_table("runs", columns), path)
    return path


def read_runs(store: Path) -> list[dict]:
    """Every capture row of every recorded run, in run then capture order."""
    rows: list[dict] = []
    for path in sorted((store / "runs").glob("run-*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return sorted(rows, key=lambda r: (r["run_first_ts"] or 0.0, r["run_id"], r["capture_index"]))


def connect(store: Path):
    """A DuckDB connection (in memory) with one view per stored table and `runs`; each view shows the
    rows of recorded runs only, with the partition's `day` column."""
    import duckdb

    con = duckdb.connect(":memory:")
    runs_glob = store / "runs" / "run-*.parquet"
    if list((store / "runs").glob("run-*.parquet")):
        con.execute(f"CREATE VIEW runs AS SELECT * FROM read_parquet({_sql_text(str(runs_glob))})")
    else:
        con.register("_empty_runs", arrow_table("runs", {n: [] for n, _ in RUN_COLUMNS}))
        con.execute("CREATE VIEW runs AS SELECT * FROM _empty_runs")
    for table in stored_tables():
        if list((store / table).glob("day=*/run-*.parquet")):
            glob = str(store / table / "day=*" / "run-*.parquet")
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({_sql_text(glob)}, hive_partitioning = true, "
                        f"hive_types = {{'day': VARCHAR}}, union_by_name = true) "
                        f"WHERE run_id IN (SELECT run_id FROM runs)")
        else:
            con.register(f"_empty_{table}", arrow_table(table, {n: [] for n, _ in columns_of(table)}))
            con.execute(f"CREATE VIEW {table} AS SELECT *, CAST(NULL AS VARCHAR) AS day FROM _empty_{table}")
    return con


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@contextmanager
def locked(store: Path) -> Iterator[None]:
    """One writer at a time: a lock file created exclusively, removed when done."""
    store.mkdir(parents=True, exist_ok=True)
    lock = store / ".lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        raise StoreError(f"{store}: another ingest holds {lock} (remove it if no ingest is running)") from None
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
