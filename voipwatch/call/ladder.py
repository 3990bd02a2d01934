"""The SIP ladder (sequence diagram) of one call, for the terminal and as PNG/SVG figures.

A drawing is bounded whatever the call holds (a dialog can carry thousands of messages from hundreds
of ports): at most MAX_LIFELINES lifelines (addresses are grouped by host beyond that, and the hosts
after the first ones merged into one "others" lifeline) and MAX_ROWS messages (the first and the last
ones, with one row counting those between). Every drawing states the limits it applied. Labels are
attacker-controlled text: they are drawn with controls as visible escapes (voipwatch.safe_text) and
cut at MAX_LABEL characters.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from voipwatch.records import SipMessage
from voipwatch.safe_text import visible

RETRANS_MARK = "[retrans]"
PNG_DPI = 100
AGG_MAX_PIXELS = 2 ** 16 - 1   # Agg refuses images of 2^16 pixels or more in either direction
MAX_LIFELINES = 6              # lifelines drawn
MAX_ROWS = 100                 # messages drawn
MAX_LABEL = 60                 # characters of a drawn label


@dataclass(frozen=True, slots=True)
class LadderRow:
    """One SIP message as an arrow between two parties."""
    ts: float                      # capture time, seconds since the epoch
    frame: int
    src: int                       # index into Ladder.parties
    dst: int                       # index into Ladder.parties
    label: str                     # "INVITE (SDP)", "180 Ringing", "200 OK (SDP)", "ACK", ...
    is_retransmission: bool        # same transaction and message as an earlier row


@dataclass(frozen=True, slots=True)
class Ladder:
    """The parties of one call and its messages between them, in capture order."""
    parties: list[str]             # "ip:port" ("[ip6]:port"), in order of first appearance
    rows: list[LadderRow]          # sorted by (ts, frame)


def _address(ip: str, port: int) -> str:
    # RFC 3986 §3.2.2: an IPv6 literal is bracketed before a port.
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _branch(via: tuple[str, ...]) -> str | None:
    """The top Via's branch (RFC 3261 §8.1.1.7), else the whole top Via (RFC 2543 peers send none)."""
    if not via:
        return None
    for param in via[0].split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "branch":
            return value.strip()
    return via[0]


def _message_key(msg: SipMessage) -> tuple:
    """What a retransmission repeats (RFC 3261 §17.1.1.2, §17.2.1): a request's transaction id, or
    a response's status and To tag within the transaction. The top Via branch in the response key
    keeps the two legs through a proxy (same Call-ID, CSeq and tags) apart."""
    branch = _branch(msg.via)
    if msg.is_request:
        return ("request", msg.call_id, msg.cseq, msg.method, branch)
    return ("response", msg.call_id, msg.cseq, msg.cseq_method, msg.status, msg.to_tag, branch)


def _label(msg: SipMessage) -> str:
    text = (msg.method or "?") if msg.is_request else f"{msg.status} {msg.reason or ''}".rstrip()
    return f"{text} (SDP)" if msg.sdp is not None else text


def build_ladder(messages: list[SipMessage]) -> Ladder:
    """The ladder of one call's messages; retransmissions are marked, never dropped."""
    parties: dict[str, int] = {}
    seen: set[tuple] = set()
    rows = []
    for msg in sorted(messages, key=lambda m: (m.pkt.ts, m.pkt.frame)):
        src = parties.setdefault(_address(msg.pkt.src, msg.pkt.sport), len(parties))
        dst = parties.setdefault(_address(msg.pkt.dst, msg.pkt.dport), len(parties))
        key = _message_key(msg)
        rows.append(LadderRow(msg.pkt.ts, msg.pkt.frame, src, dst, _label(msg), key in seen))
        seen.add(key)
    return Ladder(list(parties), rows)


# ------------------------------------------------------------------------------- bounded view

@dataclass(frozen=True, slots=True)
class Gap:
    """Messages left out of a drawing, between the drawn rows before and after it."""
    count: int
    first_frame: int
    last_frame: int


@dataclass(frozen=True, slots=True)
class View:
    """What a drawing of a ladder shows: its lifelines, each party's lifeline, the rows drawn."""
    lifelines: list[str]
    lane: list[int]                # Ladder.parties index -> lifelines index
    rows: list[LadderRow | Gap]    # at most one Gap
    grouping: str                  # "address", "host" or "host, others merged"
    messages: int                  # messages of the ladder
    addresses: int                 # parties of the ladder

    @property
    def drawn(self) -> int:
        return sum(1 for row in self.rows if type(row) is LadderRow)

    def limits(self) -> list[str]:
        """The limits this drawing applied, in words (none when it shows every party and message)."""
        notes = []
        if self.grouping != "address":
            merged = (f", the hosts after the first {MAX_LIFELINES - 1} merged as \"others\""
                      if "others" in self.grouping else "")
            notes.append(f"{self.addresses} addresses drawn as {len(self.lifelines)} lifelines, grouped by "
                         f"host{merged} (at most {MAX_LIFELINES} lifelines)")
        gap = next((row for row in self.rows if type(row) is Gap), None)
        if gap is not None:
            head = self.rows.index(gap)
            notes.append(f"{self.drawn} of {self.messages} messages drawn, the first {head} and the last "
                         f"{self.drawn - head}; the {gap.count} between them are one row (at most {MAX_ROWS} drawn)")
        return notes

    def summary(self) -> dict:
        """The limits as summary.json states them."""
        return {"max_lifelines": MAX_LIFELINES, "max_rows": MAX_ROWS, "max_label_chars": MAX_LABEL,
                "addresses": self.addresses, "lifelines": self.lifelines, "grouping": self.grouping,
                "messages": self.messages, "messages_drawn": self.drawn, "limits": self.limits()}


def _host(address: str) -> str:
    """The host of an "ip:port" or "[ip6]:port" party (a party without a port is its own host)."""
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit():
        return address
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _lifelines(parties: list[str]) -> tuple[list[str], list[int], str]:
    if len(parties) <= MAX_LIFELINES:
        return list(parties), list(range(len(parties))), "address"
    hosts: dict[str, list[int]] = {}
    for i, party in enumerate(parties):
        hosts.setdefault(_host(party), []).append(i)
    names, lane = [], [0] * len(parties)
    kept = list(hosts.items())
    grouping = "host"
    if len(kept) > MAX_LIFELINES:
        rest = kept[MAX_LIFELINES - 1:]
        kept = kept[:MAX_LIFELINES - 1] + [
            (f"others ({len(rest)} hosts)", [i for _, m in rest for i in m])]
        grouping = "host, others merged"
    for n, (host, members) in enumerate(kept):
        names.append(parties[members[0]] if len(members) == 1 else
                     host if host.startswith("others (") else f"{host} ({len(members)} ports)")
        for i in members:
            lane[i] = n
    return names, lane, grouping


def bounded_view(ladder: Ladder) -> View:
    """The lifelines and rows a drawing of `ladder` shows (see the module's docstring)."""
    names, lane, grouping = _lifelines(ladder.parties)
    rows: list[LadderRow | Gap] = list(ladder.rows)
    if len(rows) > MAX_ROWS:
        head, tail = ladder.rows[:MAX_ROWS // 2], ladder.rows[len(ladder.rows) - (MAX_ROWS - MAX_ROWS // 2):]
        left_out = ladder.rows[len(head):len(ladder.rows) - len(tail)]
        rows = head + [Gap(len(left_out), left_out[0].frame, left_out[-1].frame)] + tail
    return View(names, lane, rows, grouping, len(ladder.rows), len(ladder.parties))


def shown_label(label: str, room: int = MAX_LABEL) -> str:
    """A label as drawn: controls as visible escapes, cut to `room` characters."""
    return _fit(visible(label), room)


def _fit(label: str, room: int) -> str:
    return label if len(label) <= room else label[:max(room - 1, 0)] + "…"


def _gap_text(gap: Gap) -> str:
    return f"… {gap.count} messages not drawn (frames {gap.first_frame}-{gap.last_frame}) …"


# ------------------------------------------------------------------------------------ terminal

def render_text(ladder: Ladder, width: int = 100) -> str:
    """One line per message: time since the first (s.mmm), lifelines '│' and an arrow
    '──INVITE (SDP)──▶' or '◀──200 OK──' between the two parties; a header line names them.
    Lifelines are spread over `width` columns, never closer than the longest party name. A bounded
    view (bounded_view): left-out messages are one '┆' line, and a last line states the limits."""
    if not ladder.parties:
        return ""
    view = bounded_view(ladder)
    t0 = ladder.rows[0].ts if ladder.rows else 0.0
    times = [f"{row.ts - t0:.3f}" if type(row) is LadderRow else "…" for row in view.rows]
    prefix = max(map(len, times), default=len("0.000")) + 2
    name_len = max(map(len, view.lifelines))
    margin = math.ceil(name_len / 2)
    n = len(view.lifelines)
    spare = width - prefix - 2 * margin - len(RETRANS_MARK) - 2
    spacing = max(name_len + 2, 12, spare // (n - 1) if n > 1 else 0)
    cols = [prefix + margin + i * spacing for i in range(n)]
    line_len = cols[-1] + 1

    header = [" "] * (line_len + margin)
    for col, name in zip(cols, view.lifelines):
        start = col - len(name) // 2
        header[start:start + len(name)] = name
    lines = ["".join(header).rstrip()]
    for when, row in zip(times, view.rows):
        chars = [" "] * line_len
        chars[:prefix - 2] = when.rjust(prefix - 2)
        if type(row) is Gap:
            for col in cols:
                chars[col] = "┆"
            lines.append("".join(chars) + "  " + _gap_text(row))
            continue
        for col in cols:
            chars[col] = "│"
        a, b = cols[view.lane[row.src]], cols[view.lane[row.dst]]
        if a == b:
            tail = f" ↻ {shown_label(row.label)}"
        else:
            lo, hi = min(a, b), max(a, b)
            chars[lo + 1:hi] = "─" * (hi - lo - 1)
            head, shaft = (hi - 1, lo + 1) if b > a else (lo + 1, lo + 2)
            chars[head] = "▶" if b > a else "◀"
            body = hi - lo - 2                      # shaft length, without the arrowhead
            label = shown_label(row.label, body - 4)   # at least two dashes each side
            start = shaft + (body - len(label)) // 2
            chars[start:start + len(label)] = label
            tail = ""
        mark = f"  {RETRANS_MARK}" if row.is_retransmission else ""
        lines.append(("".join(chars) + tail + mark).rstrip())
    lines += [f"(ladder limited: {note})" for note in view.limits()]
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------- figure

def render_figure(ladder: Ladder) -> Figure:
    """Lifelines per party, one labeled arrow per message top to bottom, times on the left;
    retransmissions dashed, in red, with the label suffixed by [retrans]. A bounded view
    (bounded_view): left-out messages are one dotted row, and a caption states the limits."""
    view = bounded_view(ladder)
    limits = view.limits()
    n, m = len(view.lifelines), len(view.rows)
    fig = Figure(figsize=(1.2 + 2.8 * max(n, 1), 1.2 + 0.45 * max(m, 1) + 0.3 * len(limits)))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(-0.75, max(n, 1) - 0.5)
    ax.set_ylim(m + 0.3 + 0.67 * len(limits), -1.4)
    ax.axis("off")
    # Labels are text from the capture: parse_math=False keeps matplotlib from reading "$...$" as TeX.
    text = {"parse_math": False}
    for i, name in enumerate(view.lifelines):
        ax.vlines(i, -0.9, m, colors="0.6", linewidth=1.0)
        ax.text(i, -1.05, name, ha="center", va="center", fontsize=9, **text,
                bbox={"boxstyle": "round", "facecolor": "0.93", "edgecolor": "0.6"})
    t0 = ladder.rows[0].ts if ladder.rows else 0.0
    for y, row in enumerate(view.rows):
        if type(row) is Gap:
            ax.hlines(y, -0.5, max(n, 1) - 0.5, colors="0.4", linestyles=":", linewidth=1.0)
            ax.text((n - 1) / 2, y - 0.08, _gap_text(row), ha="center", va="bottom", fontsize=8, color="0.3", **text)
            continue
        color = "tab:red" if row.is_retransmission else "black"
        label = shown_label(row.label)
        label = f"{label} {RETRANS_MARK}" if row.is_retransmission else label
        ax.text(-0.72, y, f"{row.ts - t0:.3f} s", ha="left", va="center", fontsize=8, family="monospace", **text)
        style = {"arrowstyle": "-|>", "color": color, "linestyle": "--" if row.is_retransmission else "-",
                 "shrinkA": 0, "shrinkB": 0}
        src, dst = view.lane[row.src], view.lane[row.dst]
        if src == dst:
            ax.annotate("", xy=(src, y + 0.25), xytext=(src, y - 0.05),
                        arrowprops={**style, "connectionstyle": "arc3,rad=-1.2"})
            ax.text(src + 0.15, y, label, ha="left", va="center", fontsize=8, color=color, **text)
        else:
            ax.annotate("", xy=(dst, y), xytext=(src, y), arrowprops=style)
            ax.text((src + dst) / 2, y - 0.08, label, ha="center", va="bottom", fontsize=8, color=color, **text)
    for k, note in enumerate(limits):
        ax.text(-0.72, m + 0.3 + 0.67 * k, f"Ladder limited: {note}.", ha="left", va="top", fontsize=8,
                color="0.3", **text)
    return fig


def save_ladder(ladder: Ladder, path_png: str | os.PathLike, path_svg: str | os.PathLike) -> None:
    """The figure as PNG and as SVG with text kept as text (searchable labels) and stable ids."""
    fig = render_figure(ladder)
    dpi = min(PNG_DPI, AGG_MAX_PIXELS / max(fig.get_size_inches()))
    fig.savefig(path_png, format="png", dpi=dpi)
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "voipwatch"}):
        fig.savefig(path_svg, format="svg", metadata={"Date": None})
