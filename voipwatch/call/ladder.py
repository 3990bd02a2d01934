"""The SIP ladder (sequence diagram) of one call, for the terminal and as PNG/SVG figures."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from voipwatch.records import SipMessage

RETRANS_MARK = "[retrans]"
PNG_DPI = 100
AGG_MAX_PIXELS = 2 ** 16 - 1   # Agg refuses images of 2^16 pixels or more in either direction


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


# ------------------------------------------------------------------------------------ terminal

def _fit(label: str, room: int) -> str:
    return label if len(label) <= room else label[:max(room - 1, 0)] + "…"


def render_text(ladder: Ladder, width: int = 100) -> str:
    """One line per message: time since the first (s.mmm), lifelines '│' and an arrow
    '──INVITE (SDP)──▶' or '◀──200 OK──' between the two parties; a header line names them.
    Lifelines are spread over `width` columns, never closer than the longest party name."""
    if not ladder.parties:
        return ""
    t0 = ladder.rows[0].ts if ladder.rows else 0.0
    times = [f"{row.ts - t0:.3f}" for row in ladder.rows]
    prefix = max(map(len, times), default=len("0.000")) + 2
    name_len = max(map(len, ladder.parties))
    margin = math.ceil(name_len / 2)
    n = len(ladder.parties)
    spare = width - prefix - 2 * margin - len(RETRANS_MARK) - 2
    spacing = max(name_len + 2, 12, spare // (n - 1) if n > 1 else 0)
    cols = [prefix + margin + i * spacing for i in range(n)]
    line_len = cols[-1] + 1

    header = [" "] * (line_len + margin)
    for col, name in zip(cols, ladder.parties):
        start = col - len(name) // 2
        header[start:start + len(name)] = name
    lines = ["".join(header).rstrip()]
    for when, row in zip(times, ladder.rows):
        chars = [" "] * line_len
        chars[:prefix - 2] = when.rjust(prefix - 2)
        for col in cols:
            chars[col] = "│"
        a, b = cols[row.src], cols[row.dst]
        if a == b:
            tail = f" ↻ {row.label}"
        else:
            lo, hi = min(a, b), max(a, b)
            chars[lo + 1:hi] = "─" * (hi - lo - 1)
            head, shaft = (hi - 1, lo + 1) if b > a else (lo + 1, lo + 2)
            chars[head] = "▶" if b > a else "◀"
            body = hi - lo - 2                      # shaft length, without the arrowhead
            label = _fit(row.label, body - 4)       # at least two dashes each side
            start = shaft + (body - len(label)) // 2
            chars[start:start + len(label)] = label
            tail = ""
        mark = f"  {RETRANS_MARK}" if row.is_retransmission else ""
        lines.append(("".join(chars) + tail + mark).rstrip())
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------- figure

def render_figure(ladder: Ladder) -> Figure:
    """Lifelines per party, one labeled arrow per message top to bottom, times on the left;
    retransmissions dashed, in red, with the label suffixed by [retrans]."""
    n, m = len(ladder.parties), len(ladder.rows)
    fig = Figure(figsize=(1.2 + 2.8 * max(n, 1), 1.2 + 0.45 * max(m, 1)))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(-0.75, max(n, 1) - 0.5)
    ax.set_ylim(m + 0.3, -1.4)
    ax.axis("off")
    for i, name in enumerate(ladder.parties):
        ax.vlines(i, -0.9, m, colors="0.6", linewidth=1.0)
        ax.text(i, -1.05, name, ha="center", va="center", fontsize=9,
                bbox={"boxstyle": "round", "facecolor": "0.93", "edgecolor": "0.6"})
    t0 = ladder.rows[0].ts if ladder.rows else 0.0
    for y, row in enumerate(ladder.rows):
        color = "tab:red" if row.is_retransmission else "black"
        label = f"{row.label} {RETRANS_MARK}" if row.is_retransmission else row.label
        ax.text(-0.72, y, f"{row.ts - t0:.3f} s", ha="left", va="center", fontsize=8, family="monospace")
        style = {"arrowstyle": "-|>", "color": color, "linestyle": "--" if row.is_retransmission else "-",
                 "shrinkA": 0, "shrinkB": 0}
        if row.src == row.dst:
            ax.annotate("", xy=(row.src, y + 0.25), xytext=(row.src, y - 0.05),
                        arrowprops={**style, "connectionstyle": "arc3,rad=-1.2"})
            ax.text(row.src + 0.15, y, label, ha="left", va="center", fontsize=8, color=color)
        else:
            ax.annotate("", xy=(row.dst, y), xytext=(row.src, y), arrowprops=style)
            ax.text((row.src + row.dst) / 2, y - 0.08, label, ha="center", va="bottom", fontsize=8,
                    color=color)
    return fig


def save_ladder(ladder: Ladder, path_png: str | os.PathLike, path_svg: str | os.PathLike) -> None:
    """The figure as PNG and as SVG with text kept as text (searchable labels) and stable ids."""
    fig = render_figure(ladder)
    dpi = min(PNG_DPI, AGG_MAX_PIXELS / max(fig.get_size_inches()))
    fig.savefig(path_png, format="png", dpi=dpi)
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "voipwatch"}):
        fig.savefig(path_svg, format="svg", metadata={"Date": None})
