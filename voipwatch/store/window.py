"""A time window of the case store written as an analyze output directory, for `voipwatch report --store`.

The tables (Parquet, the declared columns and dtypes, the declared row order), alerts.jsonl and a
summary.json, so that the report reads them back through the same path as `report --from-dir`
(voipwatch.tables.read_table). A packet row is in the window when its time is; a call, stream or
registration when its span meets the window; a finding when its time is. The summary counts the rows
of the window; frames read and frames by class are those of the runs that meet the window (the
store keeps no per-frame counts).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from voipwatch import __version__
from voipwatch.records import TABLES
from voipwatch.store.layout import time_column


def _window_sql(table: str, since: float | None, until: float | None) -> tuple[str, list]:
    names = [c.name for c in TABLES[table].columns] if table in TABLES else []
    first = time_column(table)
    last = "last_ts" if "last_ts" in names else first
    parts, params = [], []
    if since is not None:
        parts.append(f"{last} >= ?")
        params.append(since)
    if until is not None:
        parts.append(f"{first} <= ?")
        params.append(until)
    return (" AND ".join(parts) or "TRUE"), params


def write_window(con, out: Path, since: float | None, until: float | None, label: str) -> dict:
    """Write the window's tables, alerts.jsonl and summary.json into `out`; return the summary."""
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for table, spec in TABLES.items():
        where, params = _window_sql(table, since, until)
        cols = ", ".join(f'"{c.name}"' for c in spec.columns)
        df = con.execute(f"SELECT {cols} FROM {table} WHERE {where}", params).df()
        df = df.astype({c.name: c.dtype for c in spec.columns})
        keys = [k for k in ("ts", "first_ts", "frame", "first_frame") if k in df.columns][:2]
        df = df.sort_values(keys, kind="stable").reset_index(drop=True) if keys else df
        df.to_parquet(out / f"{table}.parquet", index=False)
        counts[table] = len(df)
    where, params = _window_sql("alerts", since, until)
    events = con.execute(f"SELECT event, severity, name FROM alerts WHERE {where} ORDER BY ts, name, identifier",
                         params).fetchall()
    (out / "alerts.jsonl").write_text("".join(e[0] + "\n" for e in events), encoding="utf-8")
    anomalies = Counter(r[0] for r in con.execute(
        f"SELECT name FROM anomalies WHERE {_window_sql('anomalies', since, until)[0]}",
        _window_sql("anomalies", since, until)[1]).fetchall())
    runs = con.execute(
        "SELECT DISTINCT run_id, summary, run_first_ts, run_last_ts FROM runs WHERE summary IS NOT NULL "
        "AND (? IS NULL OR run_last_ts >= ?) AND (? IS NULL OR run_first_ts <= ?)",
        [since, since, until, until]).fetchall()
    frames_by_class: Counter = Counter()
    frames_read = frames_undecoded = 0
    for _, text, _, _ in runs:
        s = json.loads(text)
        frames_read += s.get("frames_read", 0)
        frames_undecoded += s.get("frames_undecoded", 0)
        frames_by_class.update(s.get("frames_by_class", {}))
    firsts = [r[2] for r in runs if r[2] is not None]
    lasts = [r[3] for r in runs if r[3] is not None]
    summary = {
        "tool": "voipwatch", "version": __version__, "inputs": [label], "mode": "store",
        "frames_read": frames_read, "frames_undecoded": frames_undecoded,
        "frames_by_class": dict(sorted(frames_by_class.items())),
        "first_ts": max([since] + firsts) if since is not None and firsts else min(firsts, default=None),
        "last_ts": min([until] + lasts) if until is not None and lasts else max(lasts, default=None),
        "counts": {"sip_messages": counts.get("sip_messages", 0), "calls": counts.get("calls", 0),
                   "registrations": counts.get("registrations", 0), "rtp_streams": counts.get("rtp_streams", 0),
                   "dns_messages": counts.get("dns", 0)},
        "anomalies_by_reason": dict(sorted(anomalies.items())),
        "alerts_by_severity": dict(Counter(e[1] for e in events)),
        "alerts_by_name": dict(sorted(Counter(e[2] for e in events).items())),
        "run_s": 0.0,
        "runs": len(runs),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
