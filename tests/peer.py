"""tshark as the reference peer: run it on a capture and parse what it says about SIP and RTP."""
from __future__ import annotations

import re
import subprocess
from collections import Counter

# One row of `tshark -q -z rtp,streams` (Wireshark 4.0 ui/cli/tap-rtp.c): start, end, src, sport, dst,
# dport, SSRC, payload name (may contain spaces), packets, lost "(pct%)", min/mean/max delta,
# min/mean/max jitter, problem flag.
_STREAM_ROW = re.compile(
    r"^\s*(?P<start>[\d.]+)\s+(?P<end>[\d.]+)\s+(?P<src>\S+)\s+(?P<sport>\d+)\s+(?P<dst>\S+)\s+(?P<dport>\d+)\s+"
    r"(?P<ssrc>0x[0-9A-Fa-f]+)\s+(?P<payload>.+?)\s+(?P<packets>\d+)\s+(?P<lost>-?\d+)\s+\((?P<lost_pct>[-\d.]+)%\)\s+"
    r"(?P<min_delta>-?[\d.]+)\s+(?P<mean_delta>-?[\d.]+)\s+(?P<max_delta>-?[\d.]+)\s+"
    r"(?P<min_jitter>-?[\d.]+)\s+(?P<mean_jitter>-?[\d.]+)\s+(?P<max_jitter>-?[\d.]+)\s*(?P<problem>X?)\s*$")


def run(tshark: str, args: list[str]) -> str:
    proc = subprocess.run([tshark, "-n", *args], capture_output=True, text=True, errors="replace", timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"tshark {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def rtp_streams(tshark: str, capture: str, heuristic: bool = False) -> dict[tuple, dict]:
    """(src, sport, dst, dport, ssrc) -> figures, from `-z rtp,streams`."""
    args = ["-q", "-r", capture, "-z", "rtp,streams"]
    if heuristic:
        args[:0] = ["--enable-heuristic", "rtp_udp"]
    streams: dict[tuple, dict] = {}
    for line in run(tshark, args).splitlines():
        m = _STREAM_ROW.match(line)
        if not m:
            continue
        key = (m["src"], int(m["sport"]), m["dst"], int(m["dport"]), int(m["ssrc"], 16))
        streams[key] = {"packets": int(m["packets"]), "lost": int(m["lost"]),
                        "max_delta_ms": float(m["max_delta"]), "mean_jitter_ms": float(m["mean_jitter"]),
                        "max_jitter_ms": float(m["max_jitter"]), "payload": m["payload"]}
    return streams


def sip_messages(tshark: str, capture: str) -> Counter:
    """Multiset of (frame, "kind", method-or-status) and (frame, "call_id", Call-ID) over every SIP message.

    A frame carrying several SIP messages (TCP) lists each field's values in order; kinds and Call-IDs
    are compared per frame as multisets, which does not depend on how tshark orders them.
    """
    out = run(tshark, ["-r", capture, "-Y", "sip", "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a",
                       "-E", "aggregator=\x1f", "-e", "frame.number", "-e", "sip.Method", "-e", "sip.Status-Code",
                       "-e", "sip.Call-ID"])
    facts: Counter = Counter()
    for line in out.splitlines():
        frame, methods, statuses, call_ids = (line.split("\t") + [""] * 4)[:4]
        for kind in [v for v in methods.split("\x1f") + statuses.split("\x1f") if v]:
            facts[(int(frame), "kind", kind)] += 1
        for call_id in [v for v in call_ids.split("\x1f") if v]:
            facts[(int(frame), "call_id", call_id)] += 1
    return facts


def frame_counts(tshark: str, capture: str, display_filters: list[str], args: tuple[str, ...] = ()) -> list[int]:
    """Frames matching each display filter, all counted in one pass (`-z io,stat,0,FILTER,...`);
    `args` are more tshark options (e.g. --enable-heuristic rtp_udp)."""
    for display_filter in display_filters:
        if "," in display_filter:
            raise ValueError(f"io,stat splits filters on commas: {display_filter!r}")
    out = run(tshark, [*args, "-q", "-r", capture, "-z", ",".join(["io,stat,0", *display_filters])])
    # The one interval row: "| 0.0 <> 2110.1 | frames | bytes | frames | bytes | ... |" (padded to the
    # width of the header box with empty cells).
    row = next(line for line in out.splitlines() if "<>" in line)
    cells = [cell.strip() for cell in row.split("|")[2:2 + 2 * len(display_filters)]]
    return [int(frames) for frames in cells[0::2]]


def distinct_values(tshark: str, capture: str, display_filter: str, fields: list[str],
                    args: tuple[str, ...] = ()) -> int:
    """How many distinct combinations of `fields` the frames matching `display_filter` carry."""
    command = [*args, "-r", capture, "-Y", display_filter, "-T", "fields", "-E", "separator=\t"]
    for name in fields:
        command += ["-e", name]
    return len({line for line in run(tshark, command).splitlines() if line.strip()})
