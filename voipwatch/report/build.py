"""`voipwatch report`: the data and figures of a one-page HTML report of an analysis.

The report is built from what `voipwatch analyze` writes (the tables, alerts.jsonl and summary.json), read
back from an output directory or taken from an in-memory analysis normalised to the same form, so both
give the same page. Everything here is bounded for large captures: tables are cut to the top N rows by
relevance (the totals are kept), time series are binned (at most about 120 bins), the VLAN matrix and the
destination chart keep their largest rows, and the ladder of the most severe call is capped.

Figures use matplotlib's object API on the Agg canvas (no pyplot, no global state) and are returned as
PNG bytes; voipwatch.report.html turns a Report into the HTML page.
"""
from __future__ import annotations

import io
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd
from matplotlib import colors as mcolors
from matplotlib import dates as mdates
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from voipwatch import __version__
from voipwatch.call import quality
from voipwatch.report import guide
from voipwatch.alerts import dump_alert
from voipwatch.call.ladder import AGG_MAX_PIXELS, Ladder, LadderRow, render_figure
from voipwatch.site import Site
from voipwatch.tables import TABLES, read_table

SEVERITIES = ("info", "low", "medium", "high", "critical")          # ascending, as voipwatch.detect
SEVERITY_COLORS = {"critical": "#b42318", "high": "#e8590c", "medium": "#d99a06", "low": "#2f6fdb",
                   "info": "#6b7280"}
PARTS = tuple(guide.PARTS)                                           # "Part I" .. "Part IV"
DEFAULT_TOP = 50                 # rows of the calls, registrations and streams tables
MAX_PER_GROUP = 15               # alerts listed per (severity, check, alert name) group
DETAILED_PER_GROUP = 3           # of which shown with all their evidence
MAX_LADDER_ROWS = 60             # messages drawn in the ladder of the most severe call
MAX_VLAN_ROWS = 25               # VLAN stacks in the VLAN-by-protocol matrix
MAX_DEST_CLASSES = 12            # destination classes/prefixes in the destinations chart
TARGET_BINS = 120                # time bins of the time-series plots, at most about
TOP_SOURCES = 5                  # sources in the REGISTER / 401-403 rate plot
DPI = 100
NICE_BIN_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
PALETTE = ("#2f6fdb", "#e8590c", "#12b886", "#ae3ec9", "#f59f00", "#1098ad", "#d6336c", "#5c7cfa")
STYLE = {
    "font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 10, "axes.titleweight": "bold",
    "axes.titlelocation": "left", "axes.titlepad": 8, "axes.spines.top": False, "axes.spines.right": False,
    "axes.edgecolor": "#9aa4b2", "axes.labelcolor": "#344054", "axes.grid": True, "axes.axisbelow": True,
    "grid.color": "#e4e7ec", "grid.linewidth": 0.8, "xtick.color": "#475467", "ytick.color": "#475467",
    "legend.frameon": False, "legend.fontsize": 8, "figure.facecolor": "white", "savefig.facecolor": "white",
}


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
    tables = {name: read_table(out, name) for name in TABLES}
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
class Image:
    title: str
    alt: str
    png: bytes
    width: int                 # pixels
    height: int


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
class LadderView:
    call_id: str
    reason: str                # the alert that made it the most severe call
    severity: str
    image: Image
    messages: int              # messages of the call in sip_messages
    drawn: int                 # rows drawn (capped)
    parties: list[str]


@dataclass
class Report:
    title: str
    meta: list[tuple[str, str]]
    kpis: list[tuple[str, int | str, str]]           # label, value, note
    severity_counts: dict[str, int]                    # every severity, highest first
    part_matrix: pd.DataFrame                          # guide part x severity -> count
    groups: list[FindingGroup]
    calls: TableView
    call_states: dict[str, int]
    registrations: TableView
    registration_totals: dict[str, int]
    streams: TableView
    stream_totals: dict[str, float]
    vlan_matrix: pd.DataFrame
    vlan_total_rows: int
    anomalies: TableView
    anomaly_reasons: list[tuple[str, int]]
    frames_by_class: list[tuple[str, int]]
    ladder: LadderView | None
    images: dict[str, Image | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)   # section -> why it is empty


def build_report(data: ReportData, top: int = DEFAULT_TOP) -> Report:
    """Every section's data and figures. Sections without data carry a note instead of failing."""
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

    report = Report(
        title="voipwatch report", meta=meta, kpis=kpis, severity_counts=severity_counts,
        part_matrix=_part_matrix(index), groups=_groups(index), calls=calls_view, call_states=states,
        registrations=regs_view, registration_totals=reg_totals, streams=streams_view,
        stream_totals=stream_totals, vlan_matrix=vlan_matrix, vlan_total_rows=vlan_rows,
        anomalies=anomalies_view, anomaly_reasons=reasons, frames_by_class=frames_by_class,
        ladder=None)

    images = report.images
    images["summary"] = _png(summary_figure, frames_by_class, severity_counts,
                             title="Frames by class and findings by severity",
                             alt="Bar charts: frames read by class, and findings by severity")
    if not alerts:
        report.notes["findings"] = "No findings: no detector raised an alert on this capture."
    if len(t["calls"]) == 0 and _count(t["sip_messages"], "REGISTER") == 0:
        report.notes["activity"] = "No calls and no REGISTER requests in this capture."
        images["activity"] = None
    else:
        images["activity"] = _png(activity_figure, t["calls"], t["sip_messages"], span,
                                  title="Calls and registrations over time",
                                  alt="Calls started and REGISTER requests per time bin")
    if len(t["calls"]) == 0:
        report.notes["calls"] = "No calls (no Call-ID with an INVITE) in this capture."
        images["destinations"] = None
    else:
        images["destinations"] = _png(destinations_figure, t["calls"], data.site,
                                      title="Call destinations", alt="Calls by destination class and outcome")
    if _count(t["sip_messages"], "REGISTER") == 0:
        report.notes["register_rates"] = "No REGISTER requests in this capture."
        images["register_rates"] = None
    else:
        images["register_rates"] = _png(register_rates_figure, t["sip_messages"], span,
                                        title="REGISTER and 401/403 rates of the top sources",
                                        alt="REGISTER requests and 401/403 answers per minute, top 5 sources")
    if len(t["registrations"]) == 0:
        report.notes["registrations"] = "No registrations in this capture."
    if quality_frame.empty:
        report.notes["streams"] = "No RTP streams in this capture."
        images["quality"] = None
    else:
        images["quality"] = _png(quality_figure, quality_frame, title="Stream quality distribution",
                                 alt="Histograms of packet loss, mean jitter and MOS over all RTP streams")
    if vlan_matrix.empty:
        report.notes["vlans"] = "No SIP, RTP, DNS or calls in this capture."
        images["vlans"] = None
    else:
        images["vlans"] = _png(vlan_figure, vlan_matrix, title="VLAN by protocol",
                               alt="Matrix of VLAN stacks by SIP messages, RTP packets, DNS messages and calls")
    report.ladder = _ladder_view(alerts, t["sip_messages"])
    if report.ladder is None:
        report.notes["ladder"] = ("No ladder: no finding names a call whose SIP messages are in the capture."
                                  if alerts else
                                  "No ladder: there are no findings, so no call stands out.")
    if len(t["anomalies"]) == 0:
        report.notes["anomalies"] = "No anomalies: everything in the capture was decoded whole."
    return report


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
        a = e.get("alert") or {}
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
                identifier=str(a.get("identifier") or ""), src=_endpoint(e.get("src"), e.get("sport")),
                dst=_endpoint(e.get("dst"), e.get("dport")), vlan=_vlan_text(e.get("vlan")),
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
        return {f"{cls.family}.{key}": spec.title for cls in load_detectors().values()
                for key, spec in cls.alerts.items()}
    except Exception:          # a detector being edited must not break the report
        return {}


def _endpoint(ip, port) -> str | None:
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


def _dialled(calls: pd.DataFrame) -> pd.Series:
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
    classes = destination_classes(_dialled(calls), site)
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
                             for a, b in zip(sel["caller"], _dialled(sel))],
        "class": classes.loc[order],
        "signalling": [f"{_endpoint(s, None) or '-'} → {_endpoint(d, None) or '-'}"
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
        "stream": [f"{_endpoint(a, p)} → {_endpoint(b, q)}"
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
        rows = rows.sort_values(["ts", "frame"], kind="stable")
        ladder = ladder_from_rows(rows.head(MAX_LADDER_ROWS))
        fig = render_figure(ladder)
        a = _alert(e)
        image = _figure_png(fig, f"SIP ladder of call {cid}", f"SIP ladder of call {cid}", dpi_cap=True)
        return LadderView(cid, a.get("msg") or a.get("name") or "", a.get("severity", "info"), image, len(rows),
                          len(ladder.rows), ladder.parties)
    return None


def ladder_from_rows(rows: pd.DataFrame) -> Ladder:
    """A voipwatch.call.ladder.Ladder from sip_messages table rows of one call (sorted by time, frame).

    Labels as build_ladder makes them. Without the Via branch (not in the table), a retransmission is
    the same request (CSeq, method) or response (CSeq, method, status, To tag) between the same two
    addresses as an earlier row."""
    parties: dict[str, int] = {}
    seen: set[tuple] = set()
    out = []
    for r in rows.itertuples(index=False):
        src_addr, dst_addr = _endpoint(r.src, r.sport) or "?", _endpoint(r.dst, r.dport) or "?"
        src = parties.setdefault(src_addr, len(parties))
        dst = parties.setdefault(dst_addr, len(parties))
        method = None if pd.isna(r.method) else str(r.method)
        if method is not None:
            label = method
            key = ("request", r.cseq if not pd.isna(r.cseq) else None, method, src_addr, dst_addr)
        else:
            status = "?" if pd.isna(r.status) else str(int(r.status))
            label = f"{status} {'' if pd.isna(r.reason) else r.reason}".rstrip()
            key = ("response", r.cseq if not pd.isna(r.cseq) else None,
                   None if pd.isna(r.cseq_method) else r.cseq_method, status,
                   None if pd.isna(r.to_tag) else r.to_tag, src_addr, dst_addr)
        if not pd.isna(r.has_sdp) and bool(r.has_sdp):
            label += " (SDP)"
        ts = float(r.ts) if not pd.isna(r.ts) else 0.0
        frame = int(r.frame) if not pd.isna(r.frame) else 0
        out.append(LadderRow(ts, frame, src, dst, label, key in seen))
        seen.add(key)
    return Ladder(list(parties), out)


# ---------------------------------------------------------------------------------- figures

def _png(builder: Callable[..., Figure], *args, title: str, alt: str) -> Image:
    with rc_context(STYLE):
        fig = builder(*args)
        return _figure_png(fig, title, alt)


def _figure_png(fig: Figure, title: str, alt: str, dpi_cap: bool = False) -> Image:
    if fig.canvas is None or not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    dpi = DPI
    if dpi_cap:
        dpi = min(DPI, AGG_MAX_PIXELS / max(fig.get_size_inches()))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    w, h = fig.get_size_inches() * dpi
    return Image(title, alt, buf.getvalue(), int(round(w)), int(round(h)))


def _new_figure(width: float, height: float) -> Figure:
    """A figure laid out by hand (inches, see _axes): constrained layout would double the drawing time."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _axes(fig: Figure, left: float, bottom: float, width: float, height: float, **kw):
    """Axes at a position given in inches from the lower left corner."""
    w, h = fig.get_size_inches()
    return fig.add_axes((left / w, bottom / h, width / w, height / h), **kw)


def _label_in(labels, size: float = 9.0) -> float:
    """Inches a column of tick labels needs (a DejaVu Sans character is about 0.6 em wide)."""
    longest = max((len(str(x)) for x in labels), default=1)
    return 0.25 + longest * 0.6 * size / 72


def summary_figure(frames_by_class: list[tuple[str, int]], severity_counts: dict[str, int]) -> Figure:
    fig = _new_figure(11.0, 3.0)
    shown = frames_by_class[:10]
    if len(frames_by_class) > 10:
        shown = shown + [("other classes", sum(n for _, n in frames_by_class[10:]))]
    names = [n for n, _ in shown][::-1]
    lab = _label_in(names)
    ax1 = _axes(fig, lab, 0.55, 5.9 - lab, 2.05)
    if shown:
        values = [v for _, v in shown][::-1]
        bars = ax1.barh(names, values, color="#2f6fdb", height=0.65)
        ax1.set_xscale("log")
        ax1.set_xlim(0.8, max(values) * 8)
        ax1.bar_label(bars, labels=[f"{v:,}" for v in values], padding=3, fontsize=8, color="#344054")
    else:
        ax1.text(0.5, 0.5, "no frames", ha="center", va="center", transform=ax1.transAxes, color="#667085")
    ax1.grid(axis="y", visible=False)
    ax1.set_title("Frames by class")
    ax1.set_xlabel("frames (log scale)")
    sevs = list(severity_counts)[::-1]
    values = [severity_counts[s] for s in sevs]
    ax2 = _axes(fig, 6.35 + _label_in(sevs), 0.55, 10.8 - 6.35 - _label_in(sevs), 2.05)
    bars = ax2.barh(sevs, values, color=[SEVERITY_COLORS[s] for s in sevs], height=0.65)
    ax2.bar_label(bars, labels=[f"{v:,}" for v in values], padding=3, fontsize=8, color="#344054")
    ax2.set_xlim(0, max(max(values), 1) * 1.18)
    ax2.xaxis.get_major_locator().set_params(integer=True)
    ax2.grid(axis="y", visible=False)
    ax2.set_title("Findings by severity")
    ax2.set_xlabel("alerts")
    return fig


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
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _table_clock(span) -> Callable:
    """Times in tables: the time of day when the whole capture falls on one UTC day (the date is in the
    page header), else date and time; to the second either way."""
    if span is not None and int(span[0] // 86400) == int(span[1] // 86400):
        return lambda ts: time_text(ts)[11:19]
    return lambda ts: time_text(ts)[:19]


def time_text(ts) -> str:
    if ts is None or ts is pd.NA or (isinstance(ts, float) and math.isnan(ts)):
        return ""
    return pd.Timestamp(float(ts), unit="s").strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def time_bins(span: tuple[float, float] | None, values: list[np.ndarray]) -> tuple[float, float, int]:
    """(start, bin width s, number of bins): a round bin width giving at most about TARGET_BINS bins."""
    if span is None:
        allv = np.concatenate([v for v in values if len(v)]) if any(len(v) for v in values) else np.zeros(1)
        span = (float(allv.min()), float(allv.max()))
    first, last = span
    width = max(last - first, 1e-9)
    bw = next((b for b in NICE_BIN_S if width / b <= TARGET_BINS), None)
    if bw is None:
        bw = 86400 * math.ceil(width / 86400 / TARGET_BINS)
    start = math.floor(first / bw) * bw
    n = max(1, int(math.floor((last - start) / bw)) + 1)
    return start, float(bw), n


def _binned(values: np.ndarray, start: float, bw: float, n: int) -> np.ndarray:
    values = values[np.isfinite(values)]
    idx = np.clip(((values - start) // bw).astype(np.int64), 0, n - 1)
    return np.bincount(idx, minlength=n)


def _bin_times(start: float, bw: float, n: int) -> np.ndarray:
    """Bin edges as matplotlib date numbers (days since the epoch, UTC)."""
    return (start + bw * np.arange(n + 1)) / 86400.0


def _bin_label(bw: float) -> str:
    if bw < 60:
        return f"{bw:g} s"
    if bw < 3600:
        return f"{bw / 60:g} min"
    if bw < 86400:
        return f"{bw / 3600:g} h"
    return f"{bw / 86400:g} d"


def _time_axis(ax) -> None:
    locator = mdates.AutoDateLocator(minticks=4, maxticks=9, tz="UTC")
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz="UTC"))


def _floats(series: pd.Series) -> np.ndarray:
    return series.astype("Float64").to_numpy(dtype=float, na_value=np.nan)


def activity_figure(calls: pd.DataFrame, sip: pd.DataFrame, span) -> Figure:
    call_ts = _floats(calls["first_ts"]) if len(calls) else np.zeros(0)
    is_reg = (sip["method"] == "REGISTER").fillna(False).to_numpy(dtype=bool) if len(sip) else np.zeros(0, bool)
    reg_ts = _floats(sip["ts"])[is_reg] if len(sip) else np.zeros(0)
    ok = ((sip["cseq_method"] == "REGISTER") & (sip["status"] == 200)).fillna(False).to_numpy(dtype=bool) \
        if len(sip) else np.zeros(0, bool)
    ok_ts = _floats(sip["ts"])[ok] if len(sip) else np.zeros(0)
    start, bw, n = time_bins(span, [call_ts, reg_ts])
    edges = _bin_times(start, bw, n)
    fig = _new_figure(11.0, 4.4)
    ax2 = _axes(fig, 0.8, 0.55, 10.0, 1.45)
    ax1 = _axes(fig, 0.8, 2.55, 10.0, 1.45, sharex=ax2)
    answered = calls["state"].isin(["answered", "ended"]).fillna(False).to_numpy(dtype=bool) \
        if len(calls) else np.zeros(0, bool)
    c_all = _binned(call_ts, start, bw, n)
    c_ans = _binned(call_ts[answered], start, bw, n)
    ax1.stairs(c_all, edges, fill=True, color="#b2ccf5", label=f"calls started ({len(call_ts):,})")
    ax1.stairs(c_ans, edges, fill=True, color="#2f6fdb", label=f"of which answered ({int(answered.sum()):,})")
    ax1.set_ylabel("calls")
    ax1.set_title(f"Calls started per {_bin_label(bw)}")
    ax1.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, borderaxespad=0.2)
    ax1.set_ylim(0, max(1, c_all.max()) * 1.15)
    ax1.tick_params(labelbottom=False)
    r_all = _binned(reg_ts, start, bw, n)
    r_ok = _binned(ok_ts, start, bw, n)
    ax2.stairs(r_all, edges, fill=True, color="#b9e9d8", label=f"REGISTER requests ({len(reg_ts):,})")
    ax2.stairs(r_ok, edges, color="#0c8a61", linewidth=1.4, label=f"200 OK to REGISTER ({len(ok_ts):,})")
    ax2.set_ylabel("requests")
    ax2.set_title(f"Registrations per {_bin_label(bw)}")
    ax2.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, borderaxespad=0.2)
    ax2.set_ylim(0, max(1, r_all.max(), r_ok.max()) * 1.15)
    ax2.set_xlim(edges[0], edges[-1])
    for ax in (ax1, ax2):
        ax.yaxis.get_major_locator().set_params(integer=True)
    _time_axis(ax2)
    return fig


def register_rates_figure(sip: pd.DataFrame, span) -> Figure:
    """REGISTER requests and 401/403 answers (to those sources) per minute, for the TOP_SOURCES sources
    that sent the most REGISTER requests."""
    is_reg = (sip["method"] == "REGISTER").fillna(False).to_numpy(dtype=bool)
    reg = sip.loc[is_reg, ["ts", "src"]]
    fails = ((sip["cseq_method"] == "REGISTER") & sip["status"].isin([401, 403])).fillna(False).to_numpy(dtype=bool)
    rej = sip.loc[fails, ["ts", "dst"]]
    top = reg["src"].value_counts().head(TOP_SOURCES)
    start, bw, n = time_bins(span, [_floats(reg["ts"])])
    edges = _bin_times(start, bw, n)
    per_min = 60.0 / bw
    labels = [f"{src} ({int(total):,})" for src, total in top.items()]
    right = min(3.2, _label_in(labels, 8) + 0.5)
    fig = _new_figure(11.0, 4.6)
    ax2 = _axes(fig, 0.8, 0.7, 10.8 - 0.8 - right, 1.5)
    ax1 = _axes(fig, 0.8, 2.75, 10.8 - 0.8 - right, 1.5, sharex=ax2)
    reg_src = reg["src"].astype("object").to_numpy()
    reg_ts = _floats(reg["ts"])
    all_r = _binned(reg_ts, start, bw, n) * per_min
    all_f = _binned(_floats(rej["ts"]), start, bw, n) * per_min
    ax1.stairs(all_r, edges, fill=True, color="#eaecf0", label=f"all sources ({len(reg):,})")
    ax2.stairs(all_f, edges, fill=True, color="#eaecf0", label=f"all sources ({len(rej):,})")
    peak1, peak2 = float(all_r.max()), float(all_f.max())
    rej_dst = rej["dst"].astype("object").to_numpy()
    rej_ts = _floats(rej["ts"])
    for i, (src, total) in enumerate(top.items()):
        color = PALETTE[i % len(PALETTE)]
        r = _binned(reg_ts[reg_src == src], start, bw, n) * per_min
        mine = rej_ts[rej_dst == src]
        f = _binned(mine, start, bw, n) * per_min
        ax1.stairs(r, edges, color=color, linewidth=1.5, label=f"{src} ({int(total):,})")
        ax2.stairs(f, edges, color=color, linewidth=1.5, label=f"{src} ({len(mine):,})")
        peak1, peak2 = max(peak1, r.max()), max(peak2, f.max())
    ax1.set_title(f"REGISTER requests per minute: all sources (grey) and the top {len(top)}")
    ax1.set_ylabel("REGISTER / min")
    ax1.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="source (requests)", title_fontsize=8,
               alignment="left")
    ax1.tick_params(labelbottom=False)
    ax2.set_title("401 Unauthorized and 403 Forbidden answers to REGISTER per minute, by the source they answer")
    ax2.set_ylabel("401+403 / min")
    ax2.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="source (answers)", title_fontsize=8,
               alignment="left")
    ax1.set_ylim(0, max(peak1, 1) * 1.15)
    ax2.set_ylim(0, max(peak2, 1) * 1.15)
    ax2.set_xlim(edges[0], edges[-1])
    ax2.set_xlabel(f"time (UTC), {_bin_label(bw)} bins")
    _time_axis(ax2)
    return fig


def destinations_figure(calls: pd.DataFrame, site: Site | None) -> Figure:
    classes = destination_classes(_dialled(calls), site)
    state = calls["state"].astype("object").fillna("unknown")
    outcome = np.where(state.isin(["answered", "ended"]), "answered",
                       np.where(state.isin(["failed", "cancelled", "rejected"]), "failed or cancelled", "other"))
    table = pd.crosstab(classes.to_numpy(), outcome)
    for col in ("answered", "failed or cancelled", "other"):
        if col not in table:
            table[col] = 0
    table = table[["answered", "failed or cancelled", "other"]]
    table = table.loc[table.sum(axis=1).sort_values(ascending=False, kind="stable").index]
    if len(table) > MAX_DEST_CLASSES:
        rest = table.iloc[MAX_DEST_CLASSES - 1:].sum()
        table = pd.concat([table.iloc[:MAX_DEST_CLASSES - 1], rest.to_frame("other prefixes").T])
    table = table.iloc[::-1]
    labels = [str(x) for x in table.index]
    lab = _label_in(labels)
    height = 0.3 * len(table) + 0.2
    fig = _new_figure(11.0, height + 0.95)
    ax = _axes(fig, lab, 0.5, 10.8 - lab - 1.9, height)
    left = np.zeros(len(table))
    colors = {"answered": "#2f6fdb", "failed or cancelled": "#e8590c", "other": "#c2c8d0"}
    for col in table.columns:
        vals = table[col].to_numpy()
        if vals.sum():
            ax.barh(labels, vals, left=left, color=colors[col], height=0.62, label=col)
        left += vals
    for y, total in enumerate(left):
        ax.text(total, y, f"  {int(total):,}", va="center", fontsize=8, color="#344054")
    ax.set_xlim(0, max(left.max(), 1) * 1.1)
    ax.set_ylim(-0.6, len(table) - 0.4)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(axis="y", visible=False)
    how = "dial-plan class from the site configuration" if site is not None else "leading digits of the dialled number"
    ax.set_title(f"Calls by destination ({how})")
    ax.set_xlabel("calls")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


LOSS_BINS = (0.0, 1e-9, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, math.inf)
LOSS_LABELS = ("0", "<0.5", "0.5–1", "1–2", "2–5", "5–10", "10–20", "≥20")


def quality_figure(q: pd.DataFrame) -> Figure:
    fig = _new_figure(11.0, 3.0)
    ax1, ax2, ax3 = (_axes(fig, 0.65 + i * 3.5, 0.6, 2.85, 2.0) for i in range(3))
    loss = q["loss_pct"].to_numpy(dtype=float)
    idx = np.searchsorted(np.asarray(LOSS_BINS[1:-1]), loss, side="right")
    counts = np.bincount(idx, minlength=len(LOSS_LABELS))
    colors = ["#12b886", "#94d82d", "#fcc419", "#fcc419", "#fd7e14", "#f03e3e", "#c92a2a", "#862e2e"]
    ax1.bar(LOSS_LABELS, counts, color=colors, width=0.75)
    ax1.set_title("Packet loss")
    ax1.set_xlabel("loss %")
    ax1.set_ylabel("streams")
    ax1.tick_params(axis="x", labelsize=7.5)
    ax1.grid(axis="x", visible=False)
    jit = q["jitter_ms"].dropna().to_numpy(dtype=float)
    if len(jit):
        hi = max(float(np.percentile(jit, 99)), 1.0)
        ax2.hist(np.minimum(jit, hi), bins=30, range=(0, hi), color="#2f6fdb")
        ax2.set_xlabel("mean jitter, ms" + (" (top 1 % clipped)" if jit.max() > hi else ""))
    ax2.set_title("Interarrival jitter")
    mos = q["mos"].dropna().to_numpy(dtype=float)
    edges = np.round(np.arange(1.0, 4.55, 0.1), 2)
    hist, _ = np.histogram(np.clip(mos, 1.0, 4.5), bins=edges)
    centers = (edges[:-1] + edges[1:]) / 2
    band = ["#c92a2a" if c < 3.1 else "#fd7e14" if c < 3.6 else "#fcc419" if c < 4.0 else "#12b886" for c in centers]
    ax3.bar(centers, hist, width=0.09, color=band)
    ax3.set_xlim(1.0, 4.5)
    ax3.set_title("Estimated MOS (E-model)")
    ax3.set_xlabel("MOS (green ≥ 4.0, red < 3.1)")
    for ax in (ax1, ax2, ax3):
        ax.yaxis.get_major_locator().set_params(integer=True)
    return fig


def vlan_figure(matrix: pd.DataFrame) -> Figure:
    rows = len(matrix)
    labels = [str(v) for v in matrix.index]
    lab = _label_in(labels) + 0.3
    height = 0.34 * rows
    fig = _new_figure(11.0, height + 0.55)
    ax = _axes(fig, lab, 0.1, 10.8 - lab, height)
    values = matrix.to_numpy(dtype=float)
    colmax = np.maximum(values.max(axis=0), 1.0)
    shade = np.log1p(values) / np.log1p(colmax)          # each column on its own log scale
    cmap = mcolors.LinearSegmentedColormap.from_list("vw", ["#f5f8ff", "#2f6fdb"])
    ax.imshow(shade, cmap=cmap, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(matrix.shape[1]), labels=list(matrix.columns))
    ax.set_yticks(range(rows), labels=labels)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    ax.grid(False)
    for s in ax.spines.values():
        s.set_visible(False)
    for i in range(rows):
        for j in range(matrix.shape[1]):
            v = int(values[i, j])
            ax.text(j, i, f"{v:,}" if v else "·", ha="center", va="center", fontsize=8.5,
                    color="white" if shade[i, j] > 0.6 else "#1d2939")
    ax.set_ylabel("VLAN stack")
    return fig
