"""The figures of `voipwatch report`, drawn from a Report and returned as PNG bytes to embed.

matplotlib's object API on the Agg canvas (no pyplot, no global state), each figure laid out by hand in
inches. Time series are binned (at most about TARGET_BINS bins), the destination chart keeps its largest
classes, and the ladder is drawn from the capped rows the Report chose.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from matplotlib import colors as mcolors
from matplotlib import dates as mdates
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from voipwatch.call.ladder import AGG_MAX_PIXELS, Ladder, LadderRow, render_figure
from voipwatch.report.data import (LadderView, Report, ReportData, destination_classes, dialled_numbers, endpoint_text,
                                   in_time_unit)
from voipwatch.safe_text import visible
from voipwatch.site import Site

SEVERITY_COLORS = {"critical": "#b42318", "high": "#e8590c", "medium": "#d99a06", "low": "#2f6fdb",
                   "info": "#6b7280"}
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
    "text.parse_math": False,        # labels may hold text from the capture: "$...$" is not TeX here
}


@dataclass
class Image:
    """A figure as the page embeds it."""
    title: str
    alt: str
    png: bytes
    width: int                 # pixels
    height: int


def draw_figures(data: ReportData, report: Report) -> dict[str, Image]:
    """The report's figures by name. A section with a note (it has no data) has no figure."""
    t = data.tables
    notes = report.notes
    figures = {"summary": _png(summary_figure, report.frames_by_class, report.severity_counts,
                               title="Frames by class and findings by severity",
                               alt="Bar charts: frames read by class, and findings by severity")}
    if report.incidents:
        figures["timeline"] = _png(timeline_figure, report.incidents, report.span,
                                   title="Incident timeline: findings over capture time by actor",
                                   alt="One row per incident, labelled with its first actor; each finding a bar "
                                       "from its first to its last packet, coloured by severity")
    if "activity" not in notes:
        figures["activity"] = _png(activity_figure, t["calls"], t["sip_messages"], report.span,
                                   title="Calls and registrations over time",
                                   alt="Calls started and REGISTER requests per time bin")
    if "calls" not in notes:
        figures["destinations"] = _png(destinations_figure, t["calls"], data.site,
                                       title="Call destinations", alt="Calls by destination class and outcome")
    if "register_rates" not in notes:
        figures["register_rates"] = _png(register_rates_figure, t["sip_messages"], report.span,
                                         title="REGISTER and 401/403 rates of the top sources",
                                         alt="REGISTER requests and 401/403 answers per minute, top 5 sources")
    if "streams" not in notes:
        figures["quality"] = _png(quality_figure, report.stream_quality, title="Stream quality distribution",
                                  alt="Histograms of packet loss, mean jitter and MOS over all RTP streams")
    if "vlans" not in notes:
        figures["vlans"] = _png(vlan_figure, report.vlan_matrix, title="VLAN by protocol",
                                alt="Matrix of VLAN stacks by SIP messages, RTP packets, DNS messages and calls")
    if report.ladder is not None:
        figures["ladder"] = _ladder_png(report.ladder)
    return figures


# ---------------------------------------------------------------------------------- ladder

def _ladder_png(view: LadderView) -> Image:
    """The call's ladder at the page's resolution, lowered if it would exceed what Agg can draw."""
    title = f"SIP ladder of call {view.call_id}"
    return _figure_png(render_figure(ladder_from_rows(view.rows)), title, title, dpi_cap=True)


def ladder_from_rows(rows: pd.DataFrame) -> Ladder:
    """A voipwatch.call.ladder.Ladder from sip_messages table rows of one call (sorted by time, frame).

    Labels as build_ladder makes them. Without the Via branch (not in the table), a retransmission is
    the same request (CSeq, method) or response (CSeq, method, status, To tag) between the same two
    addresses as an earlier row."""
    parties: dict[str, int] = {}
    seen: set[tuple] = set()
    out = []
    for r in rows.itertuples(index=False):
        src_addr, dst_addr = endpoint_text(r.src, r.sport) or "?", endpoint_text(r.dst, r.dport) or "?"
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


def timeline_figure(cards, span) -> Figure:
    """One row per incident (most important at the top), each finding a bar from its first to its last
    packet (a dot when it is one instant), coloured by severity; the capture's span is the x range."""
    def actor(card) -> str:              # an address names the actor best, then an account or MAC
        ips = [a for a in card.actors if a.startswith("ip:")]
        return (ips or card.actors or ["no actor"])[0][:40] + (f" +{len(card.actors) - 1}" if len(card.actors) > 1 else "")
    labels = [visible(f"{c.id}  {actor(c)}") for c in cards]
    fig = _new_figure(11.0, 0.9 + 0.32 * len(cards))
    lab = _label_in(labels, 8.0)
    ax = _axes(fig, lab, 0.5, 10.8 - lab, 0.32 * len(cards) + 0.1)
    for y, card in enumerate(cards):
        for first, last, severity, _, _ in card.findings:
            color = SEVERITY_COLORS.get(severity, "#6b7280")
            if last - first > 0:
                ax.plot([first / 86400.0, last / 86400.0], [y, y], color=color, linewidth=6, solid_capstyle="butt")
            ax.plot([first / 86400.0], [y], marker="o", markersize=5, color=color, linestyle="none")
    ax.set_yticks(range(len(cards)), labels=labels, fontsize=8)
    ax.set_ylim(len(cards) - 0.5, -0.5)
    if span is not None and span[1] > span[0]:
        pad = (span[1] - span[0]) * 0.01
        ax.set_xlim((span[0] - pad) / 86400.0, (span[1] + pad) / 86400.0)
    _time_axis(ax)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("capture time (UTC)")
    shown = [sev for sev in SEVERITY_COLORS if any(f[2] == sev for c in cards for f in c.findings)]
    ax.legend(handles=[Line2D([], [], color=SEVERITY_COLORS[sev], marker="o", linestyle="none", label=sev)
                       for sev in shown], loc="lower right", ncols=len(shown) or 1)
    return fig


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
    value, unit = in_time_unit(bw, at_least=1)
    return f"{value:g} {unit}"


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
    classes = destination_classes(dialled_numbers(calls), site)
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