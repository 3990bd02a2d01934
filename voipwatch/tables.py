"""Output tables: one schema per table, rows from records, written as CSV, Parquet or JSON lines.

Column names and order are a contract (later tools read them). Rows are sorted by time then frame,
floats are rounded to microseconds, and no run metadata goes into a table, so outputs are
deterministic and golden files need no canonifiers.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("csv", "parquet", "jsonl")


def vlan_text(vlan: tuple[int, ...]) -> str:
    """A VLAN stack outer -> inner as text: "" untagged, "110", "10/20" for QinQ."""
    return "/".join(str(v) for v in vlan)


def _r6(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


# Each schema: column -> (pandas dtype, extractor). Extractors take the record.
Schema = dict[str, tuple[str, Callable[[Any], Any]]]

SIP_MESSAGES: Schema = {
    "ts": ("Float64", lambda m: _r6(m.pkt.ts)),
    "frame": ("Int64", lambda m: m.pkt.frame),
    "src": ("string", lambda m: m.pkt.src),
    "sport": ("Int64", lambda m: m.pkt.sport),
    "dst": ("string", lambda m: m.pkt.dst),
    "dport": ("Int64", lambda m: m.pkt.dport),
    "vlan": ("string", lambda m: vlan_text(m.pkt.vlan)),
    "transport": ("string", lambda m: m.pkt.transport),
    "method": ("string", lambda m: m.method),
    "status": ("Int64", lambda m: m.status),
    "call_id": ("string", lambda m: m.call_id),
    "cseq": ("Int64", lambda m: m.cseq),
    "cseq_method": ("string", lambda m: m.cseq_method),
    "from_user": ("string", lambda m: m.from_user),
    "to_user": ("string", lambda m: m.to_user),
    "ruri_user": ("string", lambda m: m.ruri_user),
    "user_agent": ("string", lambda m: m.user_agent or m.server),
    "reason": ("string", lambda m: m.reason),
    "from_tag": ("string", lambda m: m.from_tag),
    "to_tag": ("string", lambda m: m.to_tag),
    "contact": ("string", lambda m: ",".join(m.contact) or None),
    "expires": ("Int64", lambda m: m.expires),
    "auth_user": ("string", lambda m: next((a.username for a in m.auth if a.username), None)),
    "has_sdp": ("boolean", lambda m: m.sdp is not None),
    "body_len": ("Int64", lambda m: m.body_len),
}

CALLS: Schema = {
    "call_id": ("string", lambda c: c.call_id),
    "first_ts": ("Float64", lambda c: _r6(c.first_ts)),
    "last_ts": ("Float64", lambda c: _r6(c.last_ts)),
    "caller": ("string", lambda c: c.caller),
    "callee": ("string", lambda c: c.callee),
    "src": ("string", lambda c: c.src),
    "dst": ("string", lambda c: c.dst),
    "vlan": ("string", lambda c: vlan_text(c.vlan)),
    "transport": ("string", lambda c: c.transport),
    "state": ("string", lambda c: c.state),
    "final_status": ("Int64", lambda c: c.final_status),
    "setup_s": ("Float64", lambda c: _r6(c.setup_s)),
    "duration_s": ("Float64", lambda c: _r6(c.duration_s)),
    "user_agent": ("string", lambda c: c.user_agent),
    "media_protection": ("string", lambda c: c.media_protection),
    "n_streams": ("Int64", lambda c: c.n_streams),
    "ruri_user": ("string", lambda c: c.ruri_user),
    "first_frame": ("Int64", lambda c: c.first_frame),
}

REGISTRATIONS: Schema = {
    "aor": ("string", lambda r: r.aor),
    "src": ("string", lambda r: r.src),
    "vlan": ("string", lambda r: vlan_text(r.vlan)),
    "attempts": ("Int64", lambda r: r.attempts),
    "challenges": ("Int64", lambda r: r.challenges),
    "successes": ("Int64", lambda r: r.successes),
    "failures": ("Int64", lambda r: r.failures),
    "first_ts": ("Float64", lambda r: _r6(r.first_ts)),
    "last_ts": ("Float64", lambda r: _r6(r.last_ts)),
    "user_agent": ("string", lambda r: r.user_agent),
    "first_frame": ("Int64", lambda r: r.first_frame),
}

RTP_STREAMS: Schema = {
    "src": ("string", lambda s: s.src),
    "sport": ("Int64", lambda s: s.sport),
    "dst": ("string", lambda s: s.dst),
    "dport": ("Int64", lambda s: s.dport),
    "vlan": ("string", lambda s: vlan_text(s.vlan)),
    "ssrc": ("string", lambda s: f"0x{s.ssrc:08x}"),
    "payload_type": ("Int64", lambda s: s.payload_type),
    "codec": ("string", lambda s: s.codec),
    "packets": ("Int64", lambda s: s.packets),
    "lost": ("Int64", lambda s: s.lost),
    "duplicates": ("Int64", lambda s: s.duplicates),
    "out_of_order": ("Int64", lambda s: s.out_of_order),
    "jitter_ms_mean": ("Float64", lambda s: _r6(s.jitter_ms_mean)),
    "jitter_ms_max": ("Float64", lambda s: _r6(s.jitter_ms_max)),
    "first_ts": ("Float64", lambda s: _r6(s.first_ts)),
    "last_ts": ("Float64", lambda s: _r6(s.last_ts)),
    "call_id": ("string", lambda s: s.call_id),
    "negotiated": ("boolean", lambda s: s.negotiated),
    "expected": ("Int64", lambda s: s.expected),
    "max_delta_ms": ("Float64", lambda s: _r6(s.max_delta_ms)),
    "payload_types": ("string", lambda s: ",".join(str(p) for p in s.payload_types)),
    "bytes": ("Int64", lambda s: s.bytes),
    "first_frame": ("Int64", lambda s: s.first_frame),
}

DNS: Schema = {
    "ts": ("Float64", lambda d: _r6(d.pkt.ts)),
    "frame": ("Int64", lambda d: d.pkt.frame),
    "src": ("string", lambda d: d.pkt.src),
    "dst": ("string", lambda d: d.pkt.dst),
    "vlan": ("string", lambda d: vlan_text(d.pkt.vlan)),
    "qname": ("string", lambda d: d.qname),
    "qtype": ("string", lambda d: d.qtype),
    "rcode": ("string", lambda d: d.rcode),
    "answers": ("string", lambda d: "; ".join(d.answers) or None),
    "qid": ("Int64", lambda d: d.qid),
    "is_response": ("boolean", lambda d: d.is_response),
    "transport": ("string", lambda d: d.pkt.transport),
    "malformed": ("string", lambda d: d.malformed),
}

ANOMALIES: Schema = {
    "ts": ("Float64", lambda a: _r6(a.ts)),
    "frame": ("Int64", lambda a: a.frame),
    "layer": ("string", lambda a: a.layer),
    "name": ("string", lambda a: a.name),
    "detail": ("string", lambda a: a.detail),
    "src": ("string", lambda a: a.src),
    "dst": ("string", lambda a: a.dst),
}

# table name -> (schema, sort key of its records)
TABLES: dict[str, tuple[Schema, Callable[[Any], tuple]]] = {
    "sip_messages": (SIP_MESSAGES, lambda m: (m.pkt.ts, m.pkt.frame)),
    "calls": (CALLS, lambda c: (c.first_ts, c.first_frame, c.call_id)),
    "registrations": (REGISTRATIONS, lambda r: (r.first_ts, r.first_frame, r.aor, r.src)),
    "rtp_streams": (RTP_STREAMS, lambda s: (s.first_ts, s.first_frame, s.ssrc)),
    "dns": (DNS, lambda d: (d.pkt.ts, d.pkt.frame)),
    "anomalies": (ANOMALIES, lambda a: (a.frame, a.name)),
}


def table_columns(records: Iterable[Any], table: str) -> dict[str, list]:
    """The table as Python values, column by column (None where a value is missing), rows sorted."""
    schema, key = TABLES[table]
    rows = sorted(records, key=key)
    return {col: [get(r) for r in rows] for col, (_, get) in schema.items()}


def to_frame(records: Iterable[Any], table: str) -> pd.DataFrame:
    import pandas as pd      # pandas is imported when first needed: CSV and JSON lines are written without it
    schema, _ = TABLES[table]
    data = {col: pd.array(values, dtype=schema[col][0]) for col, values in table_columns(records, table).items()}
    return pd.DataFrame(data, columns=list(schema))


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
            # pandas.DataFrame.to_csv: the csv module's minimal quoting, "\n" line ends, missing values
            # empty, floats as repr() (the shortest text that reads back the same), booleans True/False.
            writer = csv.writer(fh, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
            writer.writerow(columns)
            writer.writerows(rows)
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
    schema, _ = TABLES[name]
    dtypes = {col: dtype for col, (dtype, _) in schema.items()}
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

