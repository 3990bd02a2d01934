"""`voipwatch search --pcap`: the packets of the records a search found, read again from their captures.

Each stored row names its capture (SHA-256, path in the run record) and frame; the packets are found
by the rules that made the row, not by a list kept per row:
- a call: its captures (those of its run's chain whose time span meets the call's) are analysed again
  with the run's configuration, and voipwatch.call.packets.collect takes the call's SIP, RTP and RTCP
  packets exactly as `voipwatch call --call-id` does for its call.pcap;
- a dialog that is no call (REGISTER, OPTIONS, ...): the frames its stored SIP messages name (those
  the search found it with: within the time window when one is given);
- a stream of no exported call: the RTP packets the pipeline gives that stream (flow, SSRC, and its
  first to last packet time), from its captures read again, with every SPAN copy as captured;
- a finding: the call or dialog of its Call-ID; a finding without one has no packets of its own.
Every capture is checked against its stored SHA-256 before it is read. The packets are written in
capture-time order with their original link layer (voipwatch.call.bundle.write_pcap).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from voipwatch.capture import read_capture, read_captures
from voipwatch.capture_check import sha256_file
from voipwatch.config import Settings, load_settings
from voipwatch.pipeline import Analyzer
from voipwatch.records import Frame
from voipwatch.store.layout import StoreError, read_runs


@dataclass
class Export:
    packets: int = 0
    calls: int = 0
    dialogs: int = 0
    streams: int = 0
    notes: list[str] = field(default_factory=list)


class _StreamPackets:
    """The RTP collector of an Analyzer that notes the frames of chosen streams (flow, SSRC, time span)."""
    announcements = None
    overflows = 0

    def __init__(self, spans: dict[tuple, tuple[float, float]]):
        self.spans = spans
        self.frame: Frame | None = None
        self.kept: list[Frame] = []

    def emit(self, record) -> None:
        """Only RTP is wanted here."""

    def tick(self, now: float) -> None:
        """Nothing here depends on the passing of time."""

    def add(self, pkt, call_id, clock_rate_hz, codec) -> None:
        m = pkt.pkt
        span = self.spans.get((m.vlan, m.src, m.sport, m.dst, m.dport, pkt.ssrc))
        if span is not None and span[0] <= m.ts <= span[1]:
            self.kept.append(self.frame)

    def expire(self, now, emit) -> None:
        """Streams are the store's: none are made here."""

    def finish(self, emit) -> None:
        """Streams are the store's: none are made here."""


class _Captures:
    """The run records, and each capture's path once its content is checked against its stored hash."""

    def __init__(self, store: Path):
        self.runs = read_runs(store)
        self.by_run: dict[str, dict] = {}
        for r in self.runs:
            self.by_run.setdefault(r["run_id"], r)
        self.checked: dict[str, str] = {}

    def path(self, sha: str) -> str:
        if sha not in self.checked:
            row = next((r for r in self.runs if r["capture_sha256"] == sha and r["capture_status"] != "unreadable"), None)
            if row is None:
                raise StoreError(f"capture {sha[:12]}... is in no run of this store")
            try:
                found, _ = sha256_file(row["capture_path"])
            except OSError as exc:
                raise StoreError(f"{row['capture_path']}: cannot read the stored capture: {exc.strerror or exc}") from None
            if found != sha:
                raise StoreError(f"{row['capture_path']} is no longer the capture the store holds "
                                 f"(SHA-256 {found[:12]}..., stored {sha[:12]}...)")
            self.checked[sha] = row["capture_path"]
        return self.checked[sha]

    def spanning(self, run_id: str, first: float, last: float) -> list[str]:
        """The captures of a run's chain whose time span meets [first, last], in capture-time order."""
        chain = self.by_run[run_id]["chain"]
        rows = [r for r in self.runs if r["chain"] == chain and r["capture_status"] != "unreadable"
                and r["capture_first_ts"] is not None and r["capture_first_ts"] <= last and r["capture_last_ts"] >= first]
        rows.sort(key=lambda r: (r["capture_first_ts"], r["run_first_ts"], r["capture_index"]))
        seen, paths = set(), []
        for r in rows:
            if r["capture_sha256"] not in seen:
                seen.add(r["capture_sha256"])
                paths.append(self.path(r["capture_sha256"]))
        return paths

    def settings(self, run_id: str) -> Settings:
        with tempfile.NamedTemporaryFile("w", suffix=".toml", encoding="utf-8") as fh:
            fh.write(self.by_run[run_id]["config"])
            fh.flush()
            return load_settings(fh.name)


def export_pcap(store: Path, con, found: dict, out: Path) -> Export:
    """Write the packets of the calls, dialogs, streams and findings in `found` (search results) to `out`."""
    from voipwatch.analyze import analyze_files
    from voipwatch.call.bundle import write_pcap
    from voipwatch.call.packets import collect
    from voipwatch.call.select import select_calls

    caps = _Captures(store)
    result = Export()
    frames: dict[tuple[str, int], Frame] = {}        # (capture path, byte offset) -> frame
    call_ids = {r[0] for r in found.get("calls", _none()).rows}
    spans = {r[0]: (r[1], r[2]) for r in found.get("dialogs", _none()).rows}     # Call-ID -> first, last message
    dialog_ids = set(spans)
    without_call = 0
    for r in found.get("findings", _none()).rows:
        call_id = r[3]
        if call_id is None:
            without_call += 1
        else:
            dialog_ids.add(call_id)
    if dialog_ids:
        marks = ", ".join("?" * len(dialog_ids))
        call_ids |= {r[0] for r in con.execute(f"SELECT call_id FROM calls WHERE call_id IN ({marks})",
                                                sorted(dialog_ids)).fetchall()}
    dialog_ids -= call_ids

    # calls: analysed again, and their packets taken as `voipwatch call` takes them
    if call_ids:
        marks = ", ".join("?" * len(call_ids))
        rows = con.execute(f"SELECT call_id, run_id, first_ts, last_ts FROM calls WHERE call_id IN ({marks}) "
                           "ORDER BY first_ts", sorted(call_ids)).fetchall()
        for run_id, group in _by_run(rows, 1).items():
            paths = caps.spanning(run_id, min(r[2] for r in group), max(r[3] for r in group))
            settings = caps.settings(run_id)
            analysis = analyze_files(paths, settings)
            wanted = {r[0] for r in group}
            # a view names a call by its Call-IDs (a B2BUA call has one per side, voipwatch.legs); views of
            # dialogs that are no call (call None) hold none of the calls table's Call-IDs
            views = [v for v in select_calls(analysis) if wanted.intersection(v.call_ids)]
            by_call, _ = collect(paths, views, settings.pipeline)
            for call_frames in by_call.values():
                for f in call_frames:
                    frames[(paths[f.source], f.offset)] = f
            result.calls += len(views)

    # dialogs that are no call: the frames of their stored messages
    if dialog_ids:
        marks = ", ".join("?" * len(dialog_ids))
        rows = con.execute(f"SELECT call_id, ts, capture_sha256, capture_frame FROM sip_messages "
                           f"WHERE call_id IN ({marks})", sorted(dialog_ids)).fetchall()
        wanted: dict[str, set[int]] = {}
        for call_id, ts, sha, n in rows:
            if call_id not in spans or spans[call_id][0] <= ts <= spans[call_id][1]:
                wanted.setdefault(sha, set()).add(n)
        for sha, numbers in sorted(wanted.items()):
            path = caps.path(sha)
            for item in read_capture(path):
                if type(item) is Frame and item.frame in numbers:
                    frames[(path, item.offset)] = item
        result.dialogs = len(dialog_ids)

    # streams of no exported call: their RTP packets as the pipeline classifies them
    streams = [r for r in found.get("streams", _none()).rows if r[12] not in call_ids]
    if streams:
        by_name = found["streams"].columns
        rows = [dict(zip(by_name, r)) for r in streams]
        for run_id, group in _by_run(rows, "run_id").items():
            starts = [r["first_ts"] for r in group]
            call_starts = con.execute("SELECT min(first_ts) FROM calls WHERE call_id IN (SELECT unnest(?))",
                                      [[r["call_id"] for r in group if r["call_id"]]]).fetchone()[0]
            first = min(starts + ([call_starts] if call_starts is not None else []))   # the SDP that set them up
            paths = caps.spanning(run_id, first, max(r["last_ts"] for r in group))
            config = caps.settings(run_id).pipeline
            # A stored stream counted SPAN copies once (voipwatch.dedup): its last_ts is its last packet's
            # first copy, and the other copies of that packet came within the deduplication window after it.
            copies_s = config.dedup_window_s if config.deduplicate else 0.0
            spans = {(_vlan(r["vlan"]), r["src"], r["sport"], r["dst"], r["dport"], int(r["ssrc"], 16)):
                     (r["first_ts"], r["last_ts"] + copies_s) for r in group}
            picker = _StreamPackets(spans)
            # Every frame described as it is read (picker.frame is the frame being processed), so SPAN
            # copies are not held back and dropped: the pcap keeps each copy as captured, as call.pcap does
            # (voipwatch.call.packets.collect).
            analyzer = Analyzer(picker, replace(config, deduplicate=False), rtp=picker)
            for item in read_captures(paths):
                if type(item) is Frame:
                    picker.frame = item
                analyzer.process(item)
            analyzer.finish()
            for f in picker.kept:
                frames[(paths[f.source], f.offset)] = f
        result.streams = len(streams)
    if without_call:
        result.notes.append(f"{without_call} finding(s) name no call: they have no packets of their own in the pcap")
    order = {p: i for i, p in enumerate(sorted({k[0] for k in frames}))}
    ordered = [frames[k] for k in sorted(frames, key=lambda k: (frames[k].ts, order[k[0]], k[1]))]
    write_pcap(ordered, out)
    result.packets = len(ordered)
    return result


def _none():
    from voipwatch.store.search import Rows
    return Rows([], [])


def _by_run(rows, key) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in rows:
        out.setdefault(r[key], []).append(r)
    return out


def _vlan(text: str | None) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split("/")) if text else ()
