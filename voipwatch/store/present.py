"""Search results on the terminal (escaped), as CSV (neutralised as the tables are) or as JSON lines."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

from voipwatch.safe_text import json_line, visible
from voipwatch.store.search import Rows
from voipwatch.tables import csv_values

CELL_MAX = 48           # terminal cells are cut here; CSV and JSON lines keep exact values


def _shown(column: str, value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and (column == "ts" or column.endswith("_ts")):
        return datetime.fromtimestamp(value, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    text = visible(str(value))
    return text if len(text) <= CELL_MAX else text[:CELL_MAX - 3] + "..."


def as_table(found: dict[str, Rows]) -> str:
    """Each kind as an aligned table under a heading with its count; times in UTC."""
    out = []
    for kind, rows in found.items():
        out.append(f"{kind} ({len(rows.rows)})")
        if not rows.rows:
            out.append("")
            continue
        cells = [[visible(c) for c in rows.columns]] + [[_shown(c, v) for c, v in zip(rows.columns, r)]
                                                        for r in rows.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(rows.columns))]
        out += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in cells]
        out.append("")
    return "\n".join(out).rstrip("\n")


def as_csv(found: dict[str, Rows]) -> str:
    """One block per kind (a header row whose first cell is "kind", then its rows), blank line between;
    text cells neutralised as analyze's CSV tables (voipwatch.tables.csv_cell)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)      # as analyze's CSV tables
    for i, (kind, rows) in enumerate(found.items()):
        if i:
            buf.write("\n")
        writer.writerow(csv_values(["kind"] + rows.columns))
        writer.writerows(csv_values([kind] + list(r)) for r in rows.rows)
    return buf.getvalue()


def as_jsonl(found: dict[str, Rows]) -> str:
    """One JSON object per row with its kind first; invisible characters escaped (safe_text.json_line)."""
    lines = [json_line({"kind": kind, **dict(zip(rows.columns, r))}, default=str)
             for kind, rows in found.items() for r in rows.rows]
    return "".join(line + "\n" for line in lines)


FORMATTERS = {"table": as_table, "csv": as_csv, "jsonl": as_jsonl}
