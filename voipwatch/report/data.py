"""The data of `voipwatch report`: its input read back, and every section's tables, counts and notes.

The input is what `voipwatch analyze` writes (the tables, alerts.jsonl and summary.json), read back from
an output directory or taken from an in-memory analysis normalised to the same form, so both give the
same page. Everything here is bounded for large captures: tables are cut to the top N rows by relevance
(the totals are kept), the VLAN matrix keeps its largest rows and the ladder of the most severe call is
capped. voipwatch.report.figures draws from a Report, voipwatch.report.html lays it out.
"""
from __future__ import annotations

import io
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd

from voipwatch import __version__
from voipwatch.alerts import dump_alert
from voipwatch.call import quality
from voipwatch.incidents import Incident, by_importance
from voipwatch.report import guide
from voipwatch.site import Site
from voipwatch.tables import TABLES, read_table

SEVERITIES = ("info", "low", "medium", "high", "critical")          # ascending, as voipwatch.detect
PARTS = tuple(guide.PARTS)                                           # "Part I" .. "Part IV"
DEFAULT_TOP = 50                 # rows of the calls, registrations and streams tables
MAX_PER_GROUP = 15               # alerts listed per (severity, check, alert name) group
MAX_LADDER_ROWS = 60             # messages drawn in the ladder of the most severe call
MAX_VLAN_ROWS = 25               # VLAN stacks in the VLAN-by-protocol matrix
MAX_INCIDENTS = 15               # incidents drawn on the timeline and given a card
MAX_CARD_FINDINGS = 12           # findings listed per incident card
TIME_UNITS = (("s", 1), ("min", 60), ("h", 3600), ("d", 86400))  # name, seconds


# ------------------------------------------------------------------------------------------ input

@dataclass
class ReportData:
    """What a report is made of: the analyze tables, the alerts as alerts.jsonl events, the summary."""
    tables: dict[str, pd.DataFrame]
    alerts: list[dict]
    summary: dict
    site: Site | None = None           # the configured site model (destination classes), if a config was given
    source: str = ""                   # where the data came from, for the page header


def load_dir(out_dir: str | Path, site: Site | None = None) -> ReportData:
    """Read an analyze output directory: every table (any format), alerts.jsonl and summary.json."""
    out = Path(out_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"{out}: not a directory")
    tables = {name: read_table(out, name) for name in TABLES if name != "incidents"}
    try:
        tables["incidents"] = read_table(out, "incidents")
    except FileNotFoundError:            # written by a voipwatch before incidents: the page says "no incident"
        tables["incidents"] = None
    alerts = []
    alerts_path = out / "alerts.jsonl"
    if not alerts_path.exists():
        raise FileNotFoundError(f"no alerts.jsonl in {out}")
    with open(alerts_path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    alerts.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{alerts_path}: line {n}: not JSON ({exc.msg})") from exc
    summary_path = out / "summary.json"
    if not summary_path.exists():
        raise FileNotFoundError(f"no summary.json in {out}")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    return ReportData(tables, alerts, summary, site, str(out))


def from_result(result, site: Site | None = None, source: str = "") -> ReportData:
    """An in-memory analysis (voipwatch.analyze.AnalysisResult) in the form an output directory reads back.

    Alerts go through the alerts.jsonl serialisation and tables get read_table's convention (an empty
    string is missing), so a report from captures equals the report from their output directory.
    """
    tables = {}
    for name, df in result.tables.items():
        df = df.copy()
        strings = [col for col in df.columns if str(df[col].dtype) == "string"]
        if strings:
            df[strings] = df[strings].replace("", pd.NA)
        tables[name] = df
    buf = io.StringIO()
    for alert in result.alerts:
        dump_alert(alert, buf)
    alerts = [json.loads(line) for line in buf.getvalue().splitlines() if line]
    summary = json.loads(json.dumps(result.summary))
    return ReportData(tables, alerts, summary, site, source)


# ------------------------------------------------------------------------------------ the report

@dataclass
class TableView:
    """The first rows of a table by relevance, and how many there are in all."""
    frame: pd.DataFrame        # display columns, already ordered and cut
    total: int
    order: str                 # how rows were ordered, said under the table

    @property
    def shown(self) -> int:
        return len(self.frame)


@dataclass
class Finding:
    ts: float | None
    severity: str
    check: str
    name: str
    msg: str
    identifier: str
    src: str | None
    dst: str | None
    vlan: str
    call_id: str | None
    evidence: list[tuple[str, str]]


@dataclass
class FindingGroup:
    """Alerts of one severity, check and alert name, with the guide's advice for the check."""
    severity: str
    check: str
    name: str
    title: str
    guide_ref: str
    part: str | None
    advice: guide.Advice
    total: int
    findings: list[Finding]    # the first MAX_PER_GROUP, by time

    @property
    def anchor(self) -> str:
        return "f-" + re.sub(r"[^a-z0-9]+", "-", f"{self.severity}-{self.check}-{self.name}".lower()).strip("-")


@dataclass
class IncidentCard:
    """One incident (the incidents table) with the findings of alerts.jsonl that belong to it."""
    id: str
    severity: str
    first_ts: float
    last_ts: float
    actors: list[str]
    victims: list[str]
    phases: list[str]
    total: int                 # findings in the incident
    findings: list[tuple[float, float, str, str, str]]   # (first, last, severity, name, msg), by time, the first N


@dataclass
class LadderView:
    """The call named by the most severe finding, and its first SIP messages to draw."""
    call_id: str
    reason: str                # the alert that made it the most severe call
    severity: str
    rows: pd.DataFrame         # its sip_messages rows by (ts, frame), the first MAX_LADDER_ROWS
    messages: int              # messages of the call in sip_messages

    @property
    def drawn(self) -> int:
        return len(self.rows)


@dataclass
class Report:
    title: str
    meta: list[tuple[str, str]]
    kpis: list[tuple[str, int | str, str]]           # label, value, note
    span: tuple[float, float] | None                   # capture time, first and last
    severity_counts: dict[str, int]                    # every severity, highest first
    part_matrix: pd.DataFrame                          # guide part x severity -> count
    groups: list[FindingGroup]
    calls: TableView
    call_states: dict[str, int]
    registrations: TableView
    registration_totals: dict[str, int]
    streams: TableView
    stream_totals: dict[str, float]
    stream_quality: pd.DataFrame                       # every stream: loss %, mean jitter, MOS
    vlan_matrix: pd.DataFrame
    vlan_total_rows: int
    anomalies: TableView
    anomaly_reasons: list[tuple[str, int]]
    frames_by_class: list[tuple[str, int]]
    ladder: LadderView | None
    notes: dict[str, str]                              # section -> why it is empty
    incidents: list[IncidentCard]                      # the most important first, at most MAX_INCIDENTS
    incident_total: int


def build_report(data: ReportData, top: int = DEFAULT_TOP) -> Report:
    """Every section's data. Sections without data carry a note instead of failing."""
    t = data.tables
    summary = data.summary
    index = _index(data.alerts)              # highest severity first, then time
    alerts = [row.event for row in index]
    counts = summary.get("counts", {})
    anomalies_total = int(sum(summary.get("anomalies_by_reason", {}).values())) or len(t["anomalies"])
    by_severity = Counter(row.severity for row in index)
    severity_counts = {s: by_severity.get(s, 0) for s in reversed(SEVERITIES)}
    span = _span(summary, t)
    meta = [("Inputs", ", ".join(summary.get("inputs", [])) or data.source or "-"),
            ("Capture time (UTC)", _span_text(span)),
            ("Analysis", f"voipwatch {summary.get('version', '?')}, {summary.get('mode', '?')} mode, "
                         f"{summary.get('run_s', 0):.2f} s; report by voipwatch {__version__}"),
            ("Destination classes", "site dial plan (--config)" if data.site is not None else
             "leading digits of the dialled number (no --config)")]
    kpis = [("Frames", int(summary.get("frames_read", 0)), f"{int(summary.get('frames_undecoded', 0)):,} undecoded"),
            ("Calls", int(counts.get("calls", len(t["calls"]))), ""),
            ("Registrations", int(counts.get("registrations", len(t["registrations"]))), "AOR, source, VLAN"),
            ("RTP streams", int(counts.get("rtp_streams", len(t["rtp_streams"]))),
             f"{int(counts.get('rtp_streams_negotiated', 0)):,} announced in SDP"),
            ("SIP messages", int(counts.get("sip_messages", len(t["sip_messages"]))), ""),
            ("DNS messages", int(counts.get("dns_messages", len(t["dns"]))), ""),
            ("Anomalies", anomalies_total, "undecodable input"),
            ("Findings", len(alerts), ", ".join(f"{n} {s}" for s, n in severity_counts.items() if n) or "none")]

    call_alerts = _call_alerts(index)
    clock = _table_clock(span)
    calls_view, states = _calls_view(t["calls"], call_alerts, data.site, top, clock)
    regs_view, reg_totals = _registrations_view(t["registrations"], top, clock)
    streams_view, stream_totals, quality_frame = _streams_view(t["rtp_streams"], top, clock)
    vlan_matrix, vlan_rows = _vlan_matrix(t)
    anomalies_view = _anomalies_view(t["anomalies"], top, clock)
    reasons = sorted(summary.get("anomalies_by_reason", {}).items(), key=lambda kv: (-kv[1], kv[0]))
    frames_by_class = sorted(summary.get("frames_by_class", {}).items(), key=lambda kv: (-kv[1], kv[0]))

    ladder = _ladder_view(alerts, t["sip_messages"])
    incidents, incident_total = _incident_cards(t.get("incidents"), data.alerts)
    notes = _notes(t, bool(alerts), quality_frame, vlan_matrix, ladder)
    if t.get("incidents") is None:
        notes["incidents"] = "This output directory has no incidents table (written by an older voipwatch)."
    elif not incidents:
        notes["incidents"] = "No incident: no finding was raised."
    return Report(
        title="voipwatch report", meta=meta, kpis=kpis, span=span, severity_counts=severity_counts,
        part_matrix=_part_matrix(index), groups=_groups(index), calls=calls_view, call_states=states,
        registrations=regs_view, registration_totals=reg_totals, streams=streams_view,
        stream_totals=stream_totals, stream_quality=quality_frame, vlan_matrix=vlan_matrix,
        vlan_total_rows=vlan_rows, anomalies=anomalies_view, anomaly_reasons=reasons,
        frames_by_class=frames_by_class, ladder=ladder, notes=notes, incidents=incidents,
        incident_total=incident_total)


def _incident_cards(table: pd.DataFrame | None, events: list[dict]) -> tuple[list[IncidentCard], int]:
    """The most important incidents (voipwatch.incidents.by_importance) with their findings."""
    if table is None or not len(table):
        return [], 0
    rows = []
    for n, row in enumerate(table.itertuples(index=False)):
        words = lambda v: [] if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else str(v).split()
        rows.append(Incident(str(row.id), tuple(words(row.actors)), tuple(words(row.victims)), float(row.first_ts),
                             float(row.last_ts), tuple(words(row.phases)), str(row.max_severity), (),
                             int(row.n_findings), tuple(words(row.names)), tuple(words(row.merged_ids)), n))
    ranked = by_importance(rows)[:MAX_INCIDENTS]
    alias = {m: i.id for i in ranked for m in (i.id, *i.merged_ids)}
    members: dict[str, list] = {i.id: [] for i in ranked}
    for e in events:
        owner = alias.get(e.get("incident"))
        if owner is not None:
            a = _alert(e)
            members[owner].append((float(e.get("ts") or 0.0), float(e.get("last_ts") or e.get("ts") or 0.0),
                                   a.get("severity") or "info", a.get("name") or "-", a.get("msg") or ""))
    cards = [IncidentCard(i.id, i.max_severity, i.first_ts, i.last_ts, list(i.actors), list(i.victims),
                          list(i.phases), i.n_findings, sorted(members[i.id])[:MAX_CARD_FINDINGS]) for i in ranked]
    return cards, len(rows)


def _notes(t: dict[str, pd.DataFrame], any_alerts: bool, quality_frame: pd.DataFrame, vlan_matrix: pd.DataFrame,
           ladder: LadderView | None) -> dict[str, str]:
    """Section -> why it is empty, for each section without data (it shows the note, and no figure)."""
    registers = _count(t["sip_messages"], "REGISTER")
    notes = {}
    if not any_alerts:
        notes["findings"] = "No findings: no detector raised an alert on this capture."
    if len(t["calls"]) == 0 and registers == 0:
        notes["activity"] = "No calls and no REGISTER requests in this capture."
    if len(t["calls"]) == 0:
        notes["calls"] = "No calls (no Call-ID with an INVITE) in this capture."
    if registers == 0:
        notes["register_rates"] = "No REGISTER requests in this capture."
    if len(t["registrations"]) == 0:
        notes["registrations"] = "No registrations in this capture."
    if quality_frame.empty:
        notes["streams"] = "No RTP streams in this capture."
    if vlan_matrix.empty:
        notes["vlans"] = "No SIP, RTP, DNS or calls in this capture."
    if ladder is None:
        notes["ladder"] = ("No ladder: no finding names a call whose SIP messages are in the capture."
                           if any_alerts else "No ladder: there are no findings, so no call stands out.")
    if len(t["anomalies"]) == 0:
        notes["anomalies"] = "No anomalies: everything in the capture was decoded whole."
    return notes


# ------------------------------------------------------------------------------- findings

def _alert(event: dict) -> dict:
    return event.get("alert") or {}


class _Row(NamedTuple):
    """The fields of an alert event the report sorts and groups on, read once."""
    rank: int
    ts: float
    severity: str
    check: str
    name: str
    guide_ref: str
    call_id: str | None
    event: dict


def _index(events: list[dict]) -> list[_Row]:
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    rows = []
    for e in events:
        a = _alert(e)
        sev = a.get("severity") or "info"
        ts = e.get("ts")
        rows.append(_Row(rank.get(sev, -1), float(ts) if isinstance(ts, (int, float)) else 0.0, sev,
                         a.get("check") or "-", a.get("name") or "-", a.get("guide_ref") or "",
                         e.get("call_id") or None, e))
    rows.sort(key=lambda r: (-r.rank, r.ts))
    return rows


def _vlan_text(vlan) -> str:
    if isinstance(vlan, (list, tuple)):
        return "/".join(str(v) for v in vlan)
    return "" if vlan is None or (isinstance(vlan, float) and math.isnan(vlan)) else str(vlan)


def _evidence_value(value, key: str = "", limit: int = 300) -> str:
    if key.endswith("_ts") and isinstance(value, (int, float)) and not isinstance(value, bool) and value > 1e8:
        return f"{time_text(value)} UTC"
    if isinstance(value, float):
        text = f"{value:.6f}".rstrip("0").rstrip(".") if abs(value) < 1e15 else repr(value)
    elif isinstance(value, (list, tuple)) and all(not isinstance(v, (dict, list, tuple)) for v in value):
        shown = [str(v) for v in value[:20]]
        text = ", ".join(shown) + (f" … (+{len(value) - 20} more)" if len(value) > 20 else "")
    elif isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    else:
        text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _groups(index: list[_Row]) -> list[FindingGroup]:
    titles = _alert_titles()
    buckets: dict[tuple[str, str, str], list[_Row]] = {}
    for row in index:
        buckets.setdefault((row.severity, row.check, row.name), []).append(row)
    sev_rank = {s: i for i, s in enumerate(SEVERITIES)}
    groups = []
    for (sev, check, name), rows in buckets.items():
        ref = rows[0].guide_ref
        findings = []
        for row in sorted(rows, key=lambda r: r.ts)[:MAX_PER_GROUP]:
            e = row.event
            a = _alert(e)
            evidence = a.get("evidence") or {}
            findings.append(Finding(
                ts=e.get("ts"), severity=sev, check=check, name=name, msg=a.get("msg") or "",
                identifier=str(a.get("identifier") or ""), src=endpoint_text(e.get("src"), e.get("sport")),
                dst=endpoint_text(e.get("dst"), e.get("dport")), vlan=_vlan_text(e.get("vlan")),
                call_id=e.get("call_id"),
                evidence=[(str(k), _evidence_value(v, str(k)))
                          for k, v in (evidence.items() if isinstance(evidence, dict) else [("evidence", evidence)])
                          if v not in (None, "", [], {})]))
        groups.append(FindingGroup(sev, check, name, titles.get(name, ""), ref, guide.part_of(check, ref),
                                   guide.advice_for(check, ref), len(rows), findings))
    groups.sort(key=lambda g: (-sev_rank.get(g.severity, -1), -g.total, g.check, g.name))
    return groups


def _part_matrix(index: list[_Row]) -> pd.DataFrame:
    """Guide part x severity -> number of findings (rows: the four parts, then "other" if any)."""
    cols = list(reversed(SEVERITIES))
    counts: dict[str, dict[str, int]] = {p: {s: 0 for s in cols} for p in PARTS}
    for (check, ref, sev), n in Counter((r.check, r.guide_ref, r.severity) for r in index).items():
        part = guide.part_of(check, ref) or "other"
        counts.setdefault(part, {s: 0 for s in cols})
        if sev in cols:
            counts[part][sev] += n
    frame = pd.DataFrame.from_dict(counts, orient="index", columns=cols)
    frame["total"] = frame.sum(axis=1)
    return frame


def _alert_titles() -> dict[str, str]:
    """Alert name -> its one-line title from the detectors' AlertSpecs (empty if detectors cannot load)."""
    try:
        from voipwatch.detect import load_detectors
        return {f"{cls.name}.{key}": spec.title for cls in load_detectors().values()
                for key, spec in cls.alerts.items()}
    except Exception:          # a detector being edited must not break the report
        return {}


def endpoint_text(ip, port) -> str | None:
    """ip:port, an IPv6 literal bracketed (RFC 3986 §3.2.2); the ip alone without a port; None without an ip."""
    if ip is None or (isinstance(ip, float) and math.isnan(ip)):
        return None
    ip = str(ip)
    if port is None or (isinstance(port, float) and math.isnan(port)) or port is pd.NA:
        return ip
    return f"[{ip}]:{int(port)}" if ":" in ip else f"{ip}:{int(port)}"


# ---------------------------------------------------------------------------------- tables

def _call_alerts(index: list[_Row]) -> dict[str, tuple[int, int, str]]:
    """Call-ID -> (highest severity rank, number of alerts, highest severity) over alerts naming a call."""
    out: dict[str, tuple[int, int, str]] = {}
    for row in index:                  # highest severity first: the first row of a call sets its severity
        if row.call_id:
            r, n, s = out.get(row.call_id, (row.rank, 0, row.severity))
            out[row.call_id] = (r, n + 1, s)
    return out


def dialled_numbers(calls: pd.DataFrame) -> pd.Series:
    """Per call, the Request-URI user where the table has it, else the callee."""
    return calls["ruri_user"].fillna(calls["callee"]) if "ruri_user" in calls else calls["callee"]


def destination_classes(numbers: pd.Series, site: Site | None) -> pd.Series:
    """A class per dialled number: the site's dial plan class (emergency, premium, high_risk, international,
    internal, else national/other) when a site is configured, else the number's first digits ("+44…",
    "001…", short extensions "ext 1…"), "name" for non-numeric users and "unknown" when missing."""
    values = numbers.astype("object").where(numbers.notna(), None)
    unique = pd.unique(values.to_numpy(dtype=object))
    mapping = {}
    for number in unique:
        if number is None:
            mapping[number] = "unknown"
        elif site is not None:
            mapping[number] = site.number_class(str(number)) or "national/other"
        else:
            mapping[number] = _prefix_class(str(number))
    return values.map(mapping)


def _prefix_class(number: str) -> str:
    text = number.strip()
    if text.lower().startswith("tel:"):
        text = text[4:]
    digits = re.sub(r"[\s\-.()]", "", text)
    if not re.fullmatch(r"\+?[0-9*#]+", digits):
        return "name"
    if digits.startswith("+"):
        return digits[:3] + "…"
    if len(digits) <= 6:
        return f"ext {digits[0]}…"
    return digits[:3] + "…"


def _calls_view(calls: pd.DataFrame, call_alerts: dict, site: Site | None, top: int,
                clock: Callable) -> tuple[TableView, dict]:
    states = calls["state"].fillna("unknown").value_counts().to_dict() if len(calls) else {}
    states = {str(k): int(v) for k, v in sorted(states.items(), key=lambda kv: (-kv[1], str(kv[0])))}
    if calls.empty:
        return TableView(pd.DataFrame(), 0, ""), states
    ids = calls["call_id"].astype("object")
    info = ids.map(lambda cid: call_alerts.get(cid, (-1, 0, "")))
    sev_rank = info.map(lambda x: x[0])
    n_alerts = info.map(lambda x: x[1])
    classes = destination_classes(dialled_numbers(calls), site)
    class_rank = classes.map({"high_risk": 5, "premium": 4, "international": 3, "emergency": 2}).fillna(0)
    key = pd.DataFrame({"sev": sev_rank, "n": n_alerts, "cls": class_rank,
                        "dur": calls["duration_s"].astype("Float64").fillna(-1.0).astype(float),
                        "ts": calls["first_ts"].astype("Float64").fillna(0.0).astype(float)})
    order = key.sort_values(["sev", "n", "cls", "dur", "ts"], ascending=[False, False, False, False, True],
                            kind="stable").index[:top]
    sel = calls.loc[order]
    findings = info.loc[order].map(lambda x: f"{x[2]} ×{x[1]}" if x[1] else "")
    outcome = [f"{st if not pd.isna(st) else '?'}{'' if pd.isna(fs) else f' {int(fs)}'}"
               for st, fs in zip(sel["state"], sel["final_status"])]
    frame = pd.DataFrame({
        "start (UTC)": sel["first_ts"].map(clock),
        "Call-ID": sel["call_id"],
        "caller → dialled": [f"{'' if pd.isna(a) else a} → {'' if pd.isna(b) else b}"
                             for a, b in zip(sel["caller"], dialled_numbers(sel))],
        "class": classes.loc[order],
        "signalling": [f"{endpoint_text(s, None) or '-'} → {endpoint_text(d, None) or '-'}"
                       + ("" if pd.isna(tr) else f" {str(tr).upper()}")
                       for s, d, tr in zip(sel["src"], sel["dst"], sel["transport"])],
        "VLAN": sel["vlan"].fillna(""),
        "outcome": outcome,
        "duration s": sel["duration_s"],
        "media (streams)": [f"{'' if pd.isna(m) else m} ({0 if pd.isna(n) else int(n)})"
                            for m, n in zip(sel["media_protection"], sel["n_streams"])],
        "findings": findings,
    })
    frame.attrs["severity"] = [x[2] for x in info.loc[order]]
    return TableView(frame.reset_index(drop=True), len(calls),
                     "calls named by findings first (highest severity, most findings), then external "
                     "destinations, then the longest"), states


def _registrations_view(regs: pd.DataFrame, top: int, clock: Callable) -> tuple[TableView, dict]:
    if regs.empty:
        return TableView(pd.DataFrame(), 0, ""), {}
    num = {c: regs[c].astype("Int64").fillna(0).astype("int64")
           for c in ("attempts", "challenges", "successes", "failures")}
    totals = {c: int(v.sum()) for c, v in num.items()}
    totals["AORs"] = int(regs["aor"].nunique())
    totals["sources"] = int(regs["src"].nunique())
    key = pd.DataFrame({"f": num["failures"], "a": num["attempts"], "c": num["challenges"],
                        "ts": regs["first_ts"].astype("Float64").fillna(0.0).astype(float)})
    order = key.sort_values(["f", "a", "c", "ts"], ascending=[False, False, False, True], kind="stable").index[:top]
    sel = regs.loc[order]
    frame = pd.DataFrame({
        "AOR": sel["aor"], "source": sel["src"], "VLAN": sel["vlan"].fillna(""),
        "attempts": sel["attempts"], "challenges": sel["challenges"], "successes": sel["successes"],
        "failures": sel["failures"], "first (UTC)": sel["first_ts"].map(clock),
        "last (UTC)": sel["last_ts"].map(clock), "user agent": sel["user_agent"],
    })
    return TableView(frame.reset_index(drop=True), len(regs), "most failures first, then most attempts"), totals


def stream_quality_frame(streams: pd.DataFrame) -> pd.DataFrame:
    """Per stream: loss % (lost / expected, negative lost as 0), mean jitter ms and the E-model MOS
    (voipwatch.call.quality, the same estimate as `voipwatch call`)."""
    if streams.empty:
        return pd.DataFrame({"loss_pct": [], "jitter_ms": [], "mos": []}, dtype=float)
    lost = streams["lost"].astype("Int64").fillna(0).astype("int64").clip(lower=0).to_numpy()
    expected = streams["expected"].astype("Int64").fillna(0).astype("int64").to_numpy() \
        if "expected" in streams else streams["packets"].astype("Int64").fillna(0).astype("int64").to_numpy()
    loss = np.where(expected > 0, np.minimum(1.0, lost / np.maximum(expected, 1)), 0.0)
    jitter = streams["jitter_ms_mean"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    codecs = streams["codec"].astype("object").where(streams["codec"].notna(), None).to_numpy(dtype=object)
    mos = np.full(len(streams), np.nan)
    cache: dict[tuple, float] = {}
    for i, (codec, lf, j) in enumerate(zip(codecs, loss, jitter)):
        if not math.isfinite(j) or j < 0:
            continue
        k = (codec, round(float(lf), 5), round(float(j), 3))
        if k not in cache:
            cache[k] = quality.mos_from_r(quality.r_factor(codec, k[1], k[2]))
        mos[i] = cache[k]
    return pd.DataFrame({"loss_pct": 100.0 * loss, "jitter_ms": jitter, "mos": mos}, index=streams.index)


def _streams_view(streams: pd.DataFrame, top: int, clock: Callable) -> tuple[TableView, dict, pd.DataFrame]:
    q = stream_quality_frame(streams)
    if streams.empty:
        return TableView(pd.DataFrame(), 0, ""), {}, q
    packets = streams["packets"].astype("Int64").fillna(0).astype("int64")
    totals = {"packets": int(packets.sum()),
              "lost": int(streams["lost"].astype("Int64").fillna(0).astype("int64").clip(lower=0).sum()),
              "with a call": int(streams["call_id"].notna().sum()),
              "announced in SDP": int(streams["negotiated"].fillna(False).astype(bool).sum()),
              "median MOS": float(np.nanmedian(q["mos"])) if q["mos"].notna().any() else float("nan"),
              "MOS below 3.6": int((q["mos"] < 3.6).sum())}
    key = pd.DataFrame({"mos": q["mos"].fillna(5.0), "loss": q["loss_pct"],
                        "jit": q["jitter_ms"].fillna(0.0), "pk": packets.astype(float)})
    order = key.sort_values(["mos", "loss", "jit", "pk"], ascending=[True, False, False, False],
                            kind="stable").index[:top]
    sel = streams.loc[order]
    jit_mean = sel["jitter_ms_mean"].astype("Float64")
    jit_max = sel["jitter_ms_max"].astype("Float64")
    frame = pd.DataFrame({
        "start (UTC)": sel["first_ts"].map(clock),
        "stream": [f"{endpoint_text(a, p)} → {endpoint_text(b, q)}"
                   for a, p, b, q in zip(sel["src"], sel["sport"], sel["dst"], sel["dport"])],
        "VLAN": sel["vlan"].fillna(""), "SSRC": sel["ssrc"],
        "codec": sel["codec"].astype("object").where(sel["codec"].notna(), sel["payload_type"].astype("object")),
        "packets": sel["packets"], "lost": sel["lost"], "loss %": q.loc[order, "loss_pct"].round(2),
        "jitter ms mean / max": [("" if pd.isna(a) else f"{a:.2f}") + " / " + ("" if pd.isna(b) else f"{b:.2f}")
                                 for a, b in zip(jit_mean, jit_max)],
        "MOS": q.loc[order, "mos"].round(2),
        "Call-ID": sel["call_id"],
        "SDP": sel["negotiated"].map(lambda v: "yes" if v is True else ("no" if v is False else "")),
    })
    return (TableView(frame.reset_index(drop=True), len(streams),
                      "worst estimated MOS first, then highest loss and jitter"), totals, q)


def _anomalies_view(anomalies: pd.DataFrame, top: int, clock: Callable) -> TableView:
    if anomalies.empty:
        return TableView(pd.DataFrame(), 0, "")
    sel = anomalies.head(top)
    frame = pd.DataFrame({"time (UTC)": sel["ts"].map(clock), "frame": sel["frame"], "layer": sel["layer"],
                          "reason": sel["name"], "detail": sel["detail"], "source": sel["src"],
                          "destination": sel["dst"]})
    return TableView(frame.reset_index(drop=True), len(anomalies), "in frame order")


def _vlan_matrix(t: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, int]:
    """VLAN stack x (SIP messages, RTP packets, DNS messages, calls); the largest MAX_VLAN_ROWS rows."""
    def by_vlan(df: pd.DataFrame, weight: str | None = None) -> pd.Series:
        if df.empty:
            return pd.Series(dtype="int64")
        vlan = df["vlan"].astype("object").where(df["vlan"].notna(), "untagged")
        if weight is None:
            return vlan.value_counts()
        return df[weight].astype("Int64").fillna(0).astype("int64").groupby(vlan).sum()
    cols = {"SIP messages": by_vlan(t["sip_messages"]), "RTP packets": by_vlan(t["rtp_streams"], "packets"),
            "DNS messages": by_vlan(t["dns"]), "calls": by_vlan(t["calls"])}
    frame = pd.DataFrame(cols).fillna(0).astype("int64")
    if frame.empty:
        return frame, 0
    frame = frame[frame.sum(axis=1) > 0]
    total_rows = len(frame)
    order = frame.assign(_sip=frame["SIP messages"] + frame["calls"], _all=frame.sum(axis=1)) \
        .sort_values(["_all", "_sip"], ascending=False, kind="stable").index
    frame = frame.loc[order[:MAX_VLAN_ROWS]]
    frame = frame.loc[sorted(frame.index, key=_vlan_sort_key)]
    frame.index.name = "VLAN"
    return frame, total_rows


def _vlan_sort_key(v: str):
    if v == "untagged":
        return (0, ())
    return (1, tuple(int(x) if x.isdigit() else 0 for x in str(v).split("/")))


def _count(sip: pd.DataFrame, method: str) -> int:
    return int((sip["method"] == method).sum()) if len(sip) else 0


# ---------------------------------------------------------------------------------- ladder

def _ladder_view(alerts: list[dict], sip: pd.DataFrame) -> LadderView | None:
    """The ladder of the call named by the most severe alert (earliest first among equals) whose
    messages are in the sip_messages table."""
    if not alerts or sip.empty:
        return None
    tried = set()
    by_call = None
    for e in alerts:                     # already sorted: highest severity first, then time
        cid = e.get("call_id")
        if not cid or cid in tried:
            continue
        tried.add(cid)
        if by_call is None:
            by_call = sip["call_id"].astype("object")
        rows = sip[by_call == cid]
        if rows.empty:
            continue
        a = _alert(e)
        return LadderView(cid, a.get("msg") or a.get("name") or "", a.get("severity", "info"),
                          rows.sort_values(["ts", "frame"], kind="stable").head(MAX_LADDER_ROWS), len(rows))
    return None


# ------------------------------------------------------------------------------------ time

def _span(summary: dict, t: dict[str, pd.DataFrame]) -> tuple[float, float] | None:
    first, last = summary.get("first_ts"), summary.get("last_ts")
    if first is None or last is None:
        times = [df[c].astype("Float64").dropna() for df, c in
                 ((t["sip_messages"], "ts"), (t["calls"], "first_ts"), (t["rtp_streams"], "first_ts"))]
        times = [s for s in times if len(s)]
        if not times:
            return None
        first = min(float(s.min()) for s in times)
        last = max(float(s.max()) for s in times)
    return float(first), float(last)


def _span_text(span) -> str:
    if span is None:
        return "-"
    first, last = span
    return f"{time_text(first)} to {time_text(last)} ({_duration_text(last - first)})"


def _duration_text(seconds: float) -> str:
    value, unit = in_time_unit(seconds, at_least=2, units=TIME_UNITS[:3])      # days read as hours
    return f"{value:.1f} {unit}"


def in_time_unit(seconds: float, at_least: float, units: tuple = TIME_UNITS) -> tuple[float, str]:
    """The seconds as a number of the largest of `units` that they make at least `at_least` of."""
    value, name = seconds, "s"
    for unit, size in units:
        if seconds >= at_least * size:
            value, name = seconds / size, unit
    return value, name


def _table_clock(span) -> Callable:
    """Times in tables: the time of day when the whole capture falls on one UTC day (the date is in the
    page header), else date and time; to the second either way."""
    if span is not None and int(span[0] // 86400) == int(span[1] // 86400):
        return lambda ts: time_text(ts)[11:19]
    return lambda ts: time_text(ts)[:19]


def time_text(ts) -> str:
    """A capture time as UTC "YYYY-MM-DD HH:MM:SS.mmm"; empty when missing."""
    if ts is None or ts is pd.NA or (isinstance(ts, float) and math.isnan(ts)):
        return ""
    return pd.Timestamp(float(ts), unit="s").strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]

