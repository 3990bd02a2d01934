"""The HTML of `voipwatch report`: one self-contained page from a Report and its figures.

Everything is inline: CSS in a <style> element, figures as data: URIs. There is no JavaScript, and a
Content-Security-Policy meta element forbids scripts and every load that is not a data: image, so the
page opens offline and cannot reach out even if a capture smuggled markup into a SIP header (every
value from the capture is HTML-escaped as well).
"""
from __future__ import annotations

import base64
import html
import math
from numbers import Number

import pandas as pd

from voipwatch.report import guide
from voipwatch.report.data import MAX_PER_GROUP, SEVERITIES, FindingGroup, Report, TableView, time_text
from voipwatch.report.figures import Image
from voipwatch.safe_text import markup_text

DETAILED_PER_GROUP = 3           # alerts of a finding group shown with all their evidence, the rest in a table
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

CSS = """
:root {
  --ink: #101828; --ink-2: #344054; --muted: #667085; --line: #e4e7ec; --bg: #f6f7f9; --card: #ffffff;
  --accent: #2f6fdb; --critical: #b42318; --high: #e8590c; --medium: #d99a06; --low: #2f6fdb; --info: #6b7280;
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; background: var(--bg); color: var(--ink); font: 14px/1.5 -apple-system, BlinkMacSystemFont,
  "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", "DejaVu Sans", sans-serif; }
code, .mono, td.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace;
  font-size: 12px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.topbar { background: #0f1b2d; color: #fff; }
.topbar .wrap { display: flex; align-items: center; gap: 28px; padding-top: 12px; padding-bottom: 12px; }
.brand { font-weight: 700; font-size: 17px; letter-spacing: .2px; white-space: nowrap; }
.brand span { color: #8fb3ff; font-weight: 500; }
.topbar nav { display: flex; flex-wrap: wrap; gap: 4px 18px; font-size: 13px; }
.topbar nav a { color: #c9d6ea; }
.wrap { max-width: 1180px; margin: 0 auto; padding: 0 24px; }
main.wrap { padding-top: 22px; padding-bottom: 40px; }
h1 { font-size: 24px; margin: 0 0 4px; letter-spacing: -.2px; }
h2 { font-size: 19px; margin: 0 0 14px; letter-spacing: -.1px; display: flex; align-items: baseline; gap: 10px; }
h2 .sub { font-size: 13px; font-weight: 400; color: var(--muted); }
h3 { font-size: 15px; margin: 22px 0 10px; }
section.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 20px 22px;
  margin: 0 0 20px; box-shadow: 0 1px 2px rgba(16,24,40,.04); }
.lede { color: var(--ink-2); margin: 0 0 16px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 10px 0 18px; font-size: 13px; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; color: var(--ink-2); word-break: break-all; }
.kpis { display: grid; grid-template-columns: repeat(auto-fill, minmax(116px, 1fr)); gap: 10px; margin: 0 0 18px; }
.kpi { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; background: #fbfcfd; }
.kpi .label { font-size: 11.5px; text-transform: uppercase; letter-spacing: .5px; color: var(--muted); }
.kpi .value { font-size: 22px; font-weight: 700; font-variant-numeric: tabular-nums; line-height: 1.25; }
.kpi .note { font-size: 11.5px; color: var(--muted); min-height: 1em; }
.kpi.alarm { border-color: #f4c7c3; background: #fff6f5; }
.kpi.alarm .value { color: var(--critical); }
figure { margin: 6px 0 16px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { font-size: 12px; color: var(--muted); margin-top: 5px; }
.sev { display: inline-block; min-width: 62px; text-align: center; padding: 1px 8px; border-radius: 999px;
  font-size: 11px; font-weight: 700; text-transform: uppercase; letter-spacing: .4px; color: #fff; }
.sev.critical { background: var(--critical); } .sev.high { background: var(--high); }
.sev.medium { background: var(--medium); } .sev.low { background: var(--low); } .sev.info { background: var(--info); }
.chips { display: flex; flex-wrap: wrap; gap: 8px; margin: 0 0 14px; }
.chip { border: 1px solid var(--line); border-radius: 8px; padding: 6px 12px; display: flex; gap: 8px;
  align-items: center; background: #fbfcfd; }
.chip b { font-size: 18px; font-variant-numeric: tabular-nums; }
.empty { color: var(--muted); background: #f9fafb; border: 1px dashed #d0d5dd; border-radius: 8px; padding: 14px 16px;
  margin: 6px 0 14px; }
table { border-collapse: collapse; width: 100%; font-size: 12.5px; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: baseline; }
th { background: #f2f4f7; color: var(--ink-2); font-weight: 600; white-space: nowrap; position: sticky; top: 0; }
tbody tr:nth-child(even) td { background: #fafbfc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.data td { white-space: nowrap; }
table.data td.wrap { white-space: normal; word-break: break-word; overflow-wrap: anywhere; min-width: 110px; }
td.mono { font-size: 11.5px; }
.scroll { overflow-x: auto; border: 1px solid var(--line); border-radius: 8px; margin: 0 0 6px; }
.scroll table th:first-child, .scroll table td:first-child { padding-left: 12px; }
.count { font-size: 12px; color: var(--muted); margin: 0 0 14px; }
.count b { color: var(--ink-2); }
table.matrix td.num { min-width: 64px; }
td.cell-critical { background: #fde8e7 !important; color: var(--critical); font-weight: 700; }
td.cell-high { background: #fff0e6 !important; color: #b9470a; font-weight: 700; }
td.cell-medium { background: #fff8e1 !important; color: #8a6100; font-weight: 700; }
td.cell-low { background: #eaf1ff !important; color: #1f4fa8; font-weight: 700; }
td.cell-info { background: #f2f4f7 !important; color: #475467; font-weight: 700; }
.parts { display: grid; grid-template-columns: 1fr 1fr; gap: 12px 20px; margin: 12px 0 4px; }
.part { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.part h4 { margin: 0 0 6px; font-size: 13.5px; }
.part h4 span { color: var(--muted); font-weight: 400; }
.part ul { margin: 0; padding-left: 18px; font-size: 12.5px; }
.part li { margin: 3px 0; }
.part .ref { color: var(--muted); }
details.group { border: 1px solid var(--line); border-left: 5px solid var(--info); border-radius: 8px; margin: 0 0 12px;
  background: #fff; }
details.group.critical { border-left-color: var(--critical); } details.group.high { border-left-color: var(--high); }
details.group.medium { border-left-color: var(--medium); } details.group.low { border-left-color: var(--low); }
details.group > summary { cursor: pointer; list-style: none; padding: 10px 14px; display: flex; gap: 10px;
  align-items: center; flex-wrap: wrap; }
details.group > summary::-webkit-details-marker { display: none; }
details.group > summary::before { content: "\\25B8"; color: var(--muted); font-size: 12px; }
details.group[open] > summary::before { content: "\\25BE"; }
summary .check { font-weight: 700; font-family: ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace;
  font-size: 13px; }
summary .gtitle { font-weight: 600; }
summary .name { color: var(--muted); font-size: 12px; }
summary .n { margin-left: auto; color: var(--ink-2); font-size: 12px; white-space: nowrap; }
.group-body { padding: 0 16px 12px 16px; }
.advice { background: #f4f8ff; border: 1px solid #d6e4ff; border-radius: 6px; padding: 8px 12px; margin: 0 0 10px;
  font-size: 13px; color: var(--ink-2); }
.advice .where { font-weight: 600; color: #1f4fa8; }
.finding { border-top: 1px solid var(--line); padding: 9px 0 6px; }
.finding .msg { margin: 0 0 6px; }
.facts { display: flex; flex-wrap: wrap; gap: 4px 18px; font-size: 12px; color: var(--ink-2); margin: 0 0 6px; }
.facts span i { font-style: normal; color: var(--muted); }
dl.ev { display: grid; grid-template-columns: 150px minmax(0, 1fr) 150px minmax(0, 1fr); gap: 2px 12px;
  margin: 0 0 4px; font-size: 12px; background: #fafbfc; border: 1px solid var(--line); border-radius: 6px;
  padding: 6px 10px; }
dl.ev dt.wide { grid-column: 1; }
dl.ev dd.wide { grid-column: 2 / -1; }
td.nw { white-space: nowrap; }
table.alerts td.mono { word-break: break-all; }
dl.ev dt { color: var(--muted); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
dl.ev dd { margin: 0; word-break: break-all; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas,
  "DejaVu Sans Mono", monospace; }
.compact { margin-top: 10px; }
table.alerts { font-size: 12px; }
table.alerts th { position: static; }
.more { font-size: 12px; color: var(--muted); margin: 8px 0 0; }
.totals { display: flex; flex-wrap: wrap; gap: 6px 20px; font-size: 13px; color: var(--ink-2); margin: 0 0 12px; }
.totals b { font-variant-numeric: tabular-nums; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
.ladder img { max-width: 100%; }
footer { color: var(--muted); font-size: 12px; padding: 4px 0 30px; }
@media (max-width: 820px) { .parts, .two { grid-template-columns: 1fr; } .topbar .wrap { flex-direction: column;
  align-items: flex-start; gap: 6px; } }
@media print { body { background: #fff; } section.card { box-shadow: none; break-inside: avoid-page; }
  .topbar { display: none; } details.group > summary::before { content: none; } }
"""

NAV = (("summary", "Summary"), ("incidents", "Incidents"), ("findings", "Findings"), ("calls", "Calls"), ("registrations", "Registrations"),
       ("streams", "Media"), ("network", "VLANs"), ("ladder", "Ladder"), ("anomalies", "Anomalies"))


def e(value) -> str:
    """Escaped text of any cell value; missing values are empty. Controls and other invisible
    characters from the capture are shown as visible escapes (safe_text.markup_text)."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return html.escape(markup_text(str(value)), quote=True)


def fmt(value) -> str:
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Number) and not isinstance(value, bool):
        if isinstance(value, float) or (hasattr(value, "dtype") and value.dtype.kind == "f"):
            v = float(value)
            if math.isnan(v):
                return ""
            return f"{v:,.2f}" if abs(v) < 1e6 else f"{v:,.0f}"
        return f"{int(value):,}"
    return str(value)


def img(image: Image | None, caption: str = "") -> str:
    if image is None:
        return ""
    data = base64.b64encode(image.png).decode("ascii")
    cap = f"<figcaption>{e(caption)}</figcaption>" if caption else ""
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{e(image.alt)}" title="{e(image.title)}" '
            f'width="{image.width}" height="{image.height}" loading="eager" decoding="sync">{cap}</figure>')


def empty(text: str) -> str:
    return f'<p class="empty">{e(text)}</p>'


def data_table(view: TableView, name: str, noun: str, mono: set[str] = frozenset(),
               wrap: set[str] = frozenset()) -> str:
    """A top-N table with its "showing N of M" line (data-total and data-shown carry the counts)."""
    frame = view.frame
    numeric = {c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c].dtype)
               and not pd.api.types.is_bool_dtype(frame[c].dtype)}
    sev = frame.attrs.get("severity")
    head = "".join(f'<th class="num">{e(c)}</th>' if c in numeric else f"<th>{e(c)}</th>" for c in frame.columns)
    body = []
    for i, row in enumerate(frame.itertuples(index=False, name=None)):
        cells = []
        for col, value in zip(frame.columns, row):
            text = e(fmt(value))
            if col == "findings" and sev and text:
                cells.append(f'<td><span class="sev {e(sev[i])}">{text}</span></td>')
            elif col in numeric:
                cells.append(f'<td class="num">{text}</td>')
            elif col in mono:
                cells.append(f'<td class="mono">{text}</td>')
            elif col in wrap:
                cells.append(f'<td class="wrap">{text}</td>')
            else:
                cells.append(f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    count = (f'<p class="count">Showing <b>{view.shown:,}</b> of <b>{view.total:,}</b> {e(noun)}'
             + (f", {e(view.order)}" if view.order else "") + ".</p>")
    return (f'<div class="scroll"><table class="data" data-table="{e(name)}" data-total="{view.total}" '
            f'data-shown="{view.shown}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
            + count)


# ------------------------------------------------------------------------------------ sections

def section_summary(r: Report, figures: dict[str, Image]) -> str:
    meta = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in r.meta)
    kpis = []
    for label, value, note in r.kpis:
        alarm = label == "Findings" and (r.severity_counts.get("critical") or r.severity_counts.get("high"))
        shown = f"{value:,}" if isinstance(value, int) else e(value)
        kpis.append(f'<div class="kpi{" alarm" if alarm else ""}"><div class="label">{e(label)}</div>'
                    f'<div class="value">{shown}</div><div class="note">{e(note)}</div></div>')
    return (f'<section class="card" id="summary"><h1>{e(r.title)}</h1>'
            f'<p class="lede">Passive SIP/RTP security analysis, judged against the NSA guide '
            f'<i>{e(guide.GUIDE_TITLE)}</i>.</p>'
            f'<dl class="meta">{meta}</dl><div class="kpis">{"".join(kpis)}</div>'
            f'{img(figures.get("summary"))}</section>')


def section_incidents(r: Report, figures: dict[str, Image]) -> str:
    """The incident timeline and one card per incident, the most important first."""
    out = ['<section class="card" id="incidents"><h2>Incidents</h2>']
    if "incidents" in r.notes:
        out.append(empty(r.notes["incidents"]) + "</section>")
        return "".join(out)
    out.append(f'<p class="lede">Findings grouped by the actor behind them (address, account, MAC) and time '
               f'(voipwatch.incidents): showing {len(r.incidents)} of {r.incident_total} incidents, attacks '
               f'before hygiene, then by severity.</p>')
    out.append(img(figures.get("timeline")))
    for c in r.incidents:
        rows = "".join(f'<tr><td class="mono">{e(time_text(first)[11:19])}</td><td><span class="sev {e(sev)}">{e(sev)}'
                       f'</span></td><td class="mono">{e(name)}</td><td class="wrap">{e(msg)}</td></tr>'
                       for first, _, sev, name, msg in c.findings)
        more = (f'<p class="count">Showing <b>{len(c.findings)}</b> of <b>{c.total:,}</b> findings.</p>'
                if c.total > len(c.findings) else "")
        out.append(
            f'<div class="incident" data-incident="{e(c.id)}"><h3><span class="sev {e(c.severity)}">{e(c.severity)}'
            f'</span> {e(c.id)}: {e(" > ".join(c.phases))}</h3><dl class="meta">'
            f'<dt>Time (UTC)</dt><dd>{e(time_text(c.first_ts))} to {e(time_text(c.last_ts))}</dd>'
            f'<dt>Actors</dt><dd class="mono">{e(", ".join(c.actors) or "-")}</dd>'
            f'<dt>Victims</dt><dd class="mono">{e(", ".join(c.victims) or "-")}</dd>'
            f'<dt>Evidence</dt><dd class="mono">voipwatch incident {e(c.id)} CAPTURE -o DIR</dd></dl>'
            f'<div class="scroll"><table class="data"><thead><tr><th>first</th><th>severity</th><th>alert</th>'
            f'<th>message</th></tr></thead><tbody>{rows}</tbody></table></div>{more}</div>')
    out.append("</section>")
    return "".join(out)


def _facts(f) -> str:
    facts = []
    if f.ts is not None:
        facts.append(f"<span><i>time</i> {e(time_text(f.ts))} UTC</span>")
    if f.identifier:
        facts.append(f'<span><i>identifier</i> <code>{e(f.identifier)}</code></span>')
    if f.src or f.dst:
        facts.append(f'<span><i>src → dst</i> <code>{e(f.src or "-")} → {e(f.dst or "-")}</code></span>')
    if f.vlan:
        facts.append(f"<span><i>VLAN</i> <code>{e(f.vlan)}</code></span>")
    if f.call_id:
        facts.append(f'<span><i>Call-ID</i> <code>{e(f.call_id)}</code></span>')
    return f'<div class="facts">{"".join(facts)}</div>'


def _group_html(g: FindingGroup) -> str:
    is_open = " open" if g.severity in ("critical", "high", "medium") else ""
    parts = []
    for f in g.findings[:DETAILED_PER_GROUP]:
        evidence = "".join(f'<dt class="wide">{e(k)}</dt><dd class="wide">{e(v)}</dd>' if len(v) > 48 else
                           f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in f.evidence)
        parts.append(f'<div class="finding"><p class="msg">{e(f.msg)}</p>{_facts(f)}'
                     + (f'<dl class="ev">{evidence}</dl>' if evidence else "") + "</div>")
    rest = g.findings[DETAILED_PER_GROUP:]
    if rest:
        rows = "".join(
            f'<tr><td class="mono nw">{e(time_text(f.ts)[:19])}</td><td>{e(f.msg)}</td>'
            f'<td class="mono">{e(f.identifier)}</td><td class="mono nw">{e(f.src or "-")} → {e(f.dst or "-")}</td>'
            f'<td class="mono">{e(f.vlan)}</td><td class="mono">{e(f.call_id)}</td></tr>' for f in rest)
        parts.append('<div class="scroll compact"><table class="alerts"><thead><tr><th>time (UTC)</th><th>message</th>'
                     '<th>identifier</th><th>src → dst</th><th>VLAN</th><th>Call-ID</th></tr></thead>'
                     f"<tbody>{rows}</tbody></table></div>")
    listed = len(g.findings)
    more = (f'<p class="more">{g.total:,} alert{"s" if g.total != 1 else ""}: '
            + (f"the first {min(listed, DETAILED_PER_GROUP)} with their evidence" if listed > 1
               else "shown with its evidence")
            + (f", the next {len(rest):,} in the table" if rest else "")
            + (f"; {g.total - listed:,} more are in alerts.jsonl" if g.total > listed else "") + ".</p>")
    where = g.advice.where if g.advice.part else (g.guide_ref or "NSA guide")
    ref = f" (alert reference: {e(g.guide_ref)})" if g.guide_ref and g.guide_ref != g.advice.where else ""
    return (f'<details class="group {e(g.severity)}" id="{e(g.anchor)}"{is_open}><summary>'
            f'<span class="sev {e(g.severity)}">{e(g.severity)}</span><span class="check">{e(g.check)}</span>'
            f'<span class="gtitle">{e(g.title or g.name)}</span><span class="name">{e(g.name)}</span>'
            f'<span class="n">{g.total:,} alert{"s" if g.total != 1 else ""}</span></summary>'
            f'<div class="group-body"><div class="advice"><span class="where">NSA guide, {e(where)}.</span> '
            f'{e(g.advice.text)}{ref}</div>{"".join(parts)}{more}</div></details>')


def section_findings(r: Report) -> str:
    total = sum(r.severity_counts.values())
    out = [f'<section class="card" id="findings"><h2>Findings <span class="sub">{total:,} alerts in '
           f'{len(r.groups):,} groups</span></h2>']
    if "findings" in r.notes:
        out.append(empty(r.notes["findings"]))
        out.append("</section>")
        return "".join(out)
    chips = "".join(f'<div class="chip"><span class="sev {s}">{s}</span><b>{n:,}</b></div>'
                    for s, n in r.severity_counts.items())
    out.append(f'<div class="chips">{chips}</div>')
    # by guide part: a matrix, then the check groups of each part
    cols = [c for c in r.part_matrix.columns if c != "total"]
    head = ("<th>NSA guide part</th>" + "".join(f'<th class="num">{e(c)}</th>' for c in cols)
            + '<th class="num">total</th>')
    rows = []
    for part, row in r.part_matrix.iterrows():
        title = guide.PARTS.get(part, "not mapped to a part")
        cells = "".join(f'<td class="num{" cell-" + c if row[c] else ""}">{int(row[c]):,}</td>' if row[c]
                        else '<td class="num">·</td>' for c in cols)
        rows.append(f"<tr><td><b>{e(part)}</b> · {e(title)}</td>{cells}"
                    f'<td class="num"><b>{int(row["total"]):,}</b></td></tr>')
    out.append('<h3>By NSA guide part</h3><div class="scroll"><table class="matrix" data-table="findings-by-part">'
               f'<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')
    parts = {}
    for g in r.groups:
        parts.setdefault(g.part or "other", []).append(g)
    boxes = []
    for part in list(guide.PARTS) + ["other"]:
        groups = parts.get(part)
        if not groups:
            continue
        items = "".join(f'<li><a href="#{e(g.anchor)}"><span class="sev {e(g.severity)}">{e(g.severity)}</span></a> '
                        f'<b>{e(g.check)}</b> {e(g.title or g.name)} — {g.total:,} · '
                        f'<span class="ref">{e(g.advice.heading or g.guide_ref)}</span></li>' for g in groups)
        boxes.append(f'<div class="part"><h4>{e(part)} <span>· {e(guide.PARTS.get(part, "not mapped"))}</span></h4>'
                     f"<ul>{items}</ul></div>")
    out.append(f'<div class="parts">{"".join(boxes)}</div>')
    # by severity, each group with the guide's advice and its evidence
    out.append("<h3>By severity, with evidence and the guide's advice</h3>")
    for sev in reversed(SEVERITIES):
        groups = [g for g in r.groups if g.severity == sev]
        if groups:
            out.append("".join(_group_html(g) for g in groups))
    out.append(f'<p class="count">Each group lists at most {MAX_PER_GROUP} alerts, the earliest first; '
               "alerts.jsonl holds all of them.</p></section>")
    return "".join(out)


def _totals(items) -> str:
    return '<div class="totals">' + "".join(f"<span>{e(k)} <b>{e(fmt(v))}</b></span>" for k, v in items) + "</div>"


def section_calls(r: Report, figures: dict[str, Image]) -> str:
    out = ['<section class="card" id="calls"><h2>Calls</h2>']
    if "activity" in r.notes:
        out.append(empty(r.notes["activity"]))
    else:
        out.append(img(figures.get("activity"), "Calls by start time and REGISTER requests, counted per time bin."))
    if "calls" in r.notes:
        out.append(empty(r.notes["calls"]))
    else:
        out.append(img(figures.get("destinations")))
        out.append(_totals([("calls", r.calls.total)] + list(r.call_states.items())))
        out.append(data_table(r.calls, "calls", "calls", mono={"start (UTC)", "VLAN"},
                              wrap={"Call-ID", "caller → dialled", "signalling"}))
    out.append("</section>")
    return "".join(out)


def section_registrations(r: Report, figures: dict[str, Image]) -> str:
    out = ['<section class="card" id="registrations"><h2>Registrations</h2>']
    if "register_rates" in r.notes:
        out.append(empty(r.notes["register_rates"]))
    else:
        out.append(img(figures.get("register_rates"),
                       "Sources sending the most REGISTER requests; answers 401/403 are counted per source."))
    if "registrations" in r.notes:
        out.append(empty(r.notes["registrations"]))
    else:
        out.append(_totals(list(r.registration_totals.items())))
        out.append(data_table(r.registrations, "registrations", "registrations (AOR, source, VLAN)",
                              mono={"source", "first (UTC)", "last (UTC)", "VLAN"}, wrap={"AOR", "user agent"}))
    out.append("</section>")
    return "".join(out)


def section_streams(r: Report, figures: dict[str, Image]) -> str:
    out = ['<section class="card" id="streams"><h2>Media streams</h2>']
    if "streams" in r.notes:
        out.append(empty(r.notes["streams"]))
    else:
        out.append(img(figures.get("quality"),
                       "MOS is the ITU-T G.107 E-model estimate from loss and jitter (voipwatch.call.quality); one-way "
                       "delay is not measured, so it is an upper bound."))
        out.append(_totals(list(r.stream_totals.items())))
        out.append(data_table(r.streams, "rtp_streams", "RTP streams",
                              mono={"stream", "SSRC", "start (UTC)", "VLAN", "jitter ms mean / max"},
                              wrap={"Call-ID"}))
    out.append("</section>")
    return "".join(out)


def section_network(r: Report, figures: dict[str, Image]) -> str:
    out = ['<section class="card" id="network"><h2>VLANs by protocol</h2>']
    if "vlans" in r.notes:
        out.append(empty(r.notes["vlans"]))
    else:
        out.append(img(figures.get("vlans"), "Shading is per column (log scale); numbers are counts."))
        m = r.vlan_matrix
        head = "<th>VLAN</th>" + "".join(f'<th class="num">{e(c)}</th>' for c in m.columns)
        rows = "".join(f'<tr><td class="mono">{e(v)}</td>' + "".join(f'<td class="num">{int(x):,}</td>' for x in row)
                       + "</tr>" for v, row in zip(m.index, m.to_numpy()))
        out.append(f'<div class="scroll"><table class="data" data-table="vlans" data-total="{r.vlan_total_rows}" '
                   f'data-shown="{len(m)}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'
                   f'<p class="count">Showing <b>{len(m):,}</b> of <b>{r.vlan_total_rows:,}</b> VLAN stacks '
                   f"(outer/inner tags; untagged frames as “untagged”).</p>")
    out.append("</section>")
    return "".join(out)


def section_ladder(r: Report, figures: dict[str, Image]) -> str:
    out = ['<section class="card ladder" id="ladder"><h2>Ladder of the most severe call</h2>']
    lv = r.ladder
    if lv is None:
        out.append(empty(r.notes.get("ladder", "No ladder.")))
    else:
        capped = (f" The first {lv.drawn:,} of its {lv.messages:,} SIP messages are drawn."
                  if lv.drawn < lv.messages else "")
        out.append(f'<p class="lede">Call <code>{e(lv.call_id)}</code>, named by a '
                   f'<span class="sev {e(lv.severity)}">{e(lv.severity)}</span> finding: {e(lv.reason)}{e(capped)}</p>')
        out.append(img(figures.get("ladder"), "Retransmissions are dashed and red. Times are seconds since the call's first "
                                 "message."))
    out.append("</section>")
    return "".join(out)


def section_anomalies(r: Report) -> str:
    out = ['<section class="card" id="anomalies"><h2>Anomalies</h2>']
    if "anomalies" in r.notes:
        out.append(empty(r.notes["anomalies"]))
    else:
        out.append(_totals(r.anomaly_reasons[:12]))
        out.append(data_table(r.anomalies, "anomalies", "anomalies", mono={"time (UTC)", "source", "destination"},
                              wrap={"detail"}))
    out.append("</section>")
    return "".join(out)


def render(r: Report, figures: dict[str, Image]) -> str:
    nav = "".join(f'<a href="#{k}">{e(v)}</a>' for k, v in NAV)
    inputs = dict(r.meta).get("Inputs", "")
    body = "".join([section_summary(r, figures), section_incidents(r, figures), section_findings(r), section_calls(r, figures),
                    section_registrations(r, figures), section_streams(r, figures), section_network(r, figures),
                    section_ladder(r, figures), section_anomalies(r)])
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta name="color-scheme" content="light">'
            f"<title>{e(r.title)} — {e(inputs)}</title><style>{CSS}</style></head><body>"
            f'<header class="topbar"><div class="wrap"><div class="brand">voipwatch <span>report</span></div>'
            f"<nav>{nav}</nav></div></header>"
            f'<main class="wrap">{body}</main>'
            f'<footer class="wrap">Generated by voipwatch from passively captured traffic. Advice paraphrases '
            f"{e(guide.GUIDE_TITLE)}, U/OO/153515-21; the checks it maps to are voipwatch's, not NSA's.</footer>"
            "</body></html>\n")


def write_report(report: Report, figures: dict[str, Image], path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(render(report, figures))
