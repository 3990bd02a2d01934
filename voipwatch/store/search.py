"""`voipwatch search`: calls, dialogs, streams and findings of a case store that match a query.

The SIP filters (--number, --user-agent, --method) select dialogs, the SIP messages of one Call-ID;
calls, streams and findings follow their dialog by Call-ID. --ip and the time window apply to each
record's own addresses and times (a call matches an address in any of its messages or streams), and
--alerts keeps the findings of that severity or higher and the calls, dialogs and streams that have
one. Every filter given must hold. Values are passed to DuckDB as parameters, never pasted into SQL.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from voipwatch.detect import SEVERITIES

KINDS = ("calls", "dialogs", "streams", "findings")


@dataclass(frozen=True)
class Query:
    number: str | None = None         # prefix of a From, To or Request-URI user
    ip: str | None = None
    user_agent: str | None = None     # a regular expression (RE2, as DuckDB's regexp_matches)
    method: str | None = None         # a request method; responses to it match too (CSeq method)
    since: float | None = None
    until: float | None = None
    alerts: str | None = None         # a severity: findings of it or higher

    def sip_filtered(self) -> bool:
        return any(v is not None for v in (self.number, self.user_agent, self.method))


def parse_time(text: str) -> float:
    """Capture time from epoch seconds or ISO 8601 (UTC unless it names its offset)."""
    if re.fullmatch(r"[0-9]+(\.[0-9]*)?", text.strip()):
        return float(text)
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither epoch seconds nor an ISO 8601 time (2023-11-14T22:13:20)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


class _Where:
    """AND-ed conditions with their parameters."""

    def __init__(self):
        self.parts: list[str] = []
        self.params: list = []

    def add(self, sql: str, *params) -> None:
        self.parts.append(sql)
        self.params += params

    def sql(self) -> str:
        return " AND ".join(self.parts) if self.parts else "TRUE"


def _sip_match(q: Query, w: _Where, with_ip: bool = False, with_time: bool = False) -> None:
    if q.number is not None:
        w.add("(starts_with(from_user, ?) OR starts_with(to_user, ?) OR starts_with(ruri_user, ?))", *[q.number] * 3)
    if q.user_agent is not None:
        w.add("regexp_matches(user_agent, ?)", q.user_agent)
    if q.method is not None:
        w.add("(upper(method) = ? OR (method IS NULL AND upper(cseq_method) = ?))", *[q.method.upper()] * 2)
    if with_ip and q.ip is not None:
        w.add("(src = ? OR dst = ?)", q.ip, q.ip)
    if with_time:
        _window(q, w, "ts", "ts")


def _window(q: Query, w: _Where, first: str, last: str) -> None:
    if q.since is not None:
        w.add(f"{last} >= ?", q.since)
    if q.until is not None:
        w.add(f"{first} <= ?", q.until)


def _severe(q: Query) -> list[str]:
    return list(SEVERITIES[SEVERITIES.index(q.alerts):]) if q.alerts else []


def _in_dialogs(q: Query, w: _Where, column: str = "call_id") -> None:
    if q.sip_filtered():
        inner = _Where()
        _sip_match(q, inner)
        w.add(f"{column} IN (SELECT call_id FROM sip_messages WHERE call_id IS NOT NULL AND {inner.sql()})",
              *inner.params)


def _with_findings(q: Query, w: _Where, column: str = "call_id") -> None:
    severe = _severe(q)
    if severe:
        marks = ", ".join("?" * len(severe))
        w.add(f"{column} IN (SELECT call_id FROM alerts WHERE call_id IS NOT NULL AND severity IN ({marks}))", *severe)


def queries(q: Query) -> dict[str, tuple[str, list]]:
    """kind -> (SQL, parameters)."""
    out = {}
    w = _Where()
    _in_dialogs(q, w)
    if q.ip is not None:
        w.add("(call_id IN (SELECT call_id FROM sip_messages WHERE src = ? OR dst = ?) OR "
              "call_id IN (SELECT call_id FROM rtp_streams WHERE src = ? OR dst = ?))", *[q.ip] * 4)
    _window(q, w, "first_ts", "last_ts")
    _with_findings(q, w)
    out["calls"] = (f"SELECT call_id, first_ts, last_ts, caller, callee, ruri_user, src, dst, vlan, state, final_status, "
                    f"duration_s, user_agent, media_protection, n_streams, run_id, capture_sha256, capture_frame "
                    f"FROM calls WHERE {w.sql()} ORDER BY first_ts, call_id", w.params)

    w = _Where()
    inner = _Where()
    _sip_match(q, inner, with_ip=True, with_time=True)
    w.add(f"call_id IN (SELECT call_id FROM sip_messages WHERE call_id IS NOT NULL AND {inner.sql()})", *inner.params)
    _window(q, w, "ts", "ts")           # a Call-ID reused for days (REGISTER refreshes): its messages in the window
    _with_findings(q, w)
    out["dialogs"] = ("SELECT call_id, min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS messages, "
                      "string_agg(DISTINCT coalesce(method, cseq_method), ',' ORDER BY coalesce(method, cseq_method)) "
                      "AS methods, arg_min(from_user, ts) AS from_user, arg_min(to_user, ts) AS to_user, "
                      "arg_min(src, ts) AS src, arg_min(dst, ts) AS dst, arg_min(user_agent, ts) AS user_agent, "
                      "max(status) AS max_status "
                      f"FROM sip_messages WHERE {w.sql()} GROUP BY call_id ORDER BY first_ts, call_id", w.params)

    w = _Where()
    _in_dialogs(q, w)
    if q.ip is not None:
        w.add("(src = ? OR dst = ?)", q.ip, q.ip)
    _window(q, w, "first_ts", "last_ts")
    _with_findings(q, w)
    out["streams"] = ("SELECT src, sport, dst, dport, vlan, ssrc, codec, packets, lost, jitter_ms_max, first_ts, "
                      "last_ts, call_id, negotiated, run_id, capture_sha256, capture_frame "
                      f"FROM rtp_streams WHERE {w.sql()} ORDER BY first_ts, src, sport, ssrc", w.params)

    w = _Where()
    severe = _severe(q)
    if severe:
        w.add(f"severity IN ({', '.join('?' * len(severe))})", *severe)
    _in_dialogs(q, w)
    if q.ip is not None:
        w.add("(src = ? OR dst = ? OR call_id IN (SELECT call_id FROM sip_messages WHERE src = ? OR dst = ?))",
              *[q.ip] * 4)
    _window(q, w, "ts", "ts")
    out["findings"] = ("SELECT ts, severity, name, call_id, src, dst, msg, run_id "
                       f"FROM alerts WHERE {w.sql()} ORDER BY ts, name, identifier", w.params)
    return out


@dataclass
class Rows:
    columns: list[str]
    rows: list[tuple]


def run_search(con, q: Query, kinds: tuple[str, ...] = KINDS) -> dict[str, Rows]:
    found = {}
    for kind, (sql, params) in queries(q).items():
        if kind in kinds:
            cur = con.execute(sql, params)
            found[kind] = Rows([d[0] for d in cur.description], cur.fetchall())
    return found


def run_sql(con, sql: str) -> Rows:
    cur = con.execute(sql)
    if cur.description is None:
        return Rows([], [])
    return Rows([d[0] for d in cur.description], cur.fetchall())
