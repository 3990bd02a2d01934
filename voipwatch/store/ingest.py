"""`voipwatch analyze --store CASE`: a run appended to the case store, once per capture.

A run is identified by its captures' SHA-256 and the effective configuration (run_id = a hash of
both, so the same input gives the same rows). A capture already in the store is refused
(AlreadyStored), or with `replace` the run that holds it is taken out first. A capture that cannot be
read is named in the run record (status "unreadable") and the others are analysed; one the reader
stopped inside is "damaged" (its whole records before the damage are kept).

Stitching: a run continues the latest earlier run of the same sensor and configuration that ended
before it began, within the longest idle timeout. Calls and RTP streams still open at that run's end
(a call not yet closed by its linger or idle time, a stream whose last packet is less than the RTP
idle timeout before the end) are completed by analysing again the tail of the earlier captures,
from the capture holding the earliest open record's (or its call's) first packet, together with the
new captures. From that analysis the run keeps: packet rows (sip_messages, dns, anomalies) of the new
captures; calls and streams that start in the new captures; and each call or stream that starts in the
tail and continues an open stored row, which replaces that row (the row is moved to
CASE/superseded/run-<id>/). Findings raised from the first new packet on are kept, and the chain's
findings from the tail's start on that the analysis with the tail did not raise again (an earlier
run's end-of-input summaries) are superseded. Registrations are per run (from the new captures
alone). See the README ("Case store and search") for what is exact.
"""
from __future__ import annotations

import hashlib
import json
from array import array
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from voipwatch import __version__
from voipwatch.alerts import alert_line
from voipwatch.capture_check import CaptureCheck, check_capture, damage_of, sha256_file
from voipwatch.config import Settings, render_toml
from voipwatch.records import ENDED_STATES, Anomaly, TABLES, vlan_text
from voipwatch.store.layout import (RUN_COLUMNS, stored_tables, StoreError, arrow_table, columns_of, day_of, locked,
                                    read_runs, run_files, time_column, write_run_record, write_run_rows)
from voipwatch.tables import table_columns

STITCHED = ("calls", "rtp_streams")          # session tables whose open rows a later run completes
KEYS = {"calls": ("call_id", "first_ts"),
        "rtp_streams": ("src", "sport", "dst", "dport", "vlan", "ssrc", "first_ts")}


class AlreadyStored(StoreError):
    """Captures whose content is already in the store."""


@dataclass
class IngestResult:
    run_id: str
    checks: list[CaptureCheck]
    damaged: dict[str, str] = field(default_factory=dict)    # path -> where reading stopped
    previous_run: str | None = None
    reread: list[str] = field(default_factory=list)           # tail captures analysed again
    replaced_rows: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    removed_runs: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    analysis: object = None                                   # the AnalysisResult of the new captures

    @property
    def failed(self) -> list[CaptureCheck]:
        return [c for c in self.checks if not c.usable]


class FrameOrigins:
    """A progress hook that notes which capture each frame of a merged run came from, so that a run
    frame number maps back to (capture index, frame number within that capture)."""

    def __init__(self, n_paths: int, then: Callable | None = None):
        self.single = n_paths == 1
        self.sources = array("H")          # per run frame: index of its capture (65535 captures at most)
        self.local = array("Q")            # per run frame: its frame number within that capture
        self.counts = [0] * n_paths
        self.first_ts: list[float | None] = [None] * n_paths
        self.last_ts: list[float | None] = [None] * n_paths
        self.then = then
        self.new_only: list[tuple[int, int]] | None = None     # (source, local) of the frames of new captures

    def __call__(self, frame) -> None:
        if not self.single:
            s = frame.source
            self.counts[s] += 1
            self.sources.append(s)
            self.local.append(self.counts[s])
            if self.first_ts[s] is None:
                self.first_ts[s] = frame.ts
            self.last_ts[s] = frame.ts
        if self.then is not None:
            self.then(frame)

    def of(self, frame: int | None) -> tuple[int | None, int | None]:
        if frame is None or frame < 1:
            return None, None
        if self.single:
            return 0, frame
        if frame > len(self.sources):
            return None, None
        return self.sources[frame - 1], self.local[frame - 1]


def run_id_of(checks: list[CaptureCheck], config_sha: str) -> str:
    text = "\n".join([__version__, config_sha] + sorted(c.sha256 or c.path for c in checks))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ingest(store: str | Path, paths: list[str], settings: Settings, *, mode: str = "batch", jobs: int = 1,
           replace: bool = False, sensor: str = "default", progress: Callable | None = None) -> IngestResult:
    """Analyse `paths` and append the run to the store (see the module's documentation)."""
    from voipwatch.analyze import analyze_files

    store = Path(store)
    paths = [str(Path(p).resolve()) for p in paths]
    with locked(store):
        checks = [check_capture(p) for p in paths]
        usable = [c for c in checks if c.usable]
        seen: dict[str, str] = {}
        for c in usable:
            if c.sha256 in seen:
                raise StoreError(f"{c.path} has the same content (SHA-256 {c.sha256[:12]}...) as {seen[c.sha256]}")
            seen[c.sha256] = c.path
        config_text = render_toml(settings)
        config_sha = hashlib.sha256(config_text.encode()).hexdigest()
        result = IngestResult(run_id_of(checks, config_sha), checks)
        runs = read_runs(store)
        holders = {r["capture_sha256"]: r for r in runs if r["capture_status"] != "unreadable"}
        clash = [c for c in usable if c.sha256 in holders]
        if clash and not replace:
            raise AlreadyStored("already in the store: " + "; ".join(
                f"{c.path} (SHA-256 {c.sha256[:12]}..., run {holders[c.sha256]['run_id']}, as "
                f"{holders[c.sha256]['capture_path']})" for c in clash) + "; give --replace to analyse it again")
        if clash:
            result.removed_runs = remove_runs(store, runs, {holders[c.sha256]["run_id"] for c in clash},
                                              {c.sha256 for c in usable})
            runs = read_runs(store)
        new_paths = [c.path for c in usable]
        summary: dict = {}
        previous = None
        if new_paths:
            first_ts = min((c.first_ts for c in usable if c.first_ts is not None), default=None)
            previous = continued_run(runs, sensor, config_sha, first_ts, settings)
            tail, tail_shas, open_rows = stitch_plan(store, runs, previous, settings, result) if previous \
                else ([], [], {})
            origins = FrameOrigins(len(tail) + len(new_paths), progress)
            whole = analyze_files(tail + new_paths, settings, mode, origins, jobs, every_frame=True)
            alone = whole if not tail else analyze_files(new_paths, settings, mode, None, jobs)
            result.analysis = alone
            result.previous_run = previous["run_id"] if previous else None
            result.reread = tail
            summary = alone.summary
            shas = tail_shas + [c.sha256 for c in usable]
            anomalies = list(whole.records[Anomaly])
            result.damaged = {p: d for p in new_paths if (d := damage_of(anomalies, p))}
            replaced = write_tables(store, result.run_id, whole, alone, origins, shas, len(tail), open_rows,
                                    first_ts if tail else None)
            stitch = None
            if tail:
                stitch = Stitch(previous["run_id"], {r["run_id"] for r in runs if r["chain"] == previous["chain"]},
                                min(r["capture_first_ts"] for r in runs if r["capture_sha256"] in tail_shas), replaced,
                                {(round(a.ts, 6), a.name, a.identifier) for a in whole.alerts},
                                {(round(a.ts, 6), a.name, a.identifier) for a in kept_alerts(whole.alerts, first_ts)})
            result.replaced_rows = supersede(store, result.run_id, stitch)
            spans = capture_spans(origins, alone if not tail else None, len(tail), len(new_paths))
        else:
            spans = []
        result.rows = count_rows(store, result.run_id)
        write_run_record(store, result.run_id, run_record(result, checks, usable, spans, config_text, config_sha,
                                                          mode, sensor, previous, summary))
    return result


# -- stitching -------------------------------------------------------------------------------------
def continued_run(runs: list[dict], sensor: str, config_sha: str, first_ts: float | None,
                  settings: Settings) -> dict | None:
    """The run this one continues: of the same sensor and configuration, ended at or before first_ts and
    no longer before it than the longest idle timeout (else nothing it held can still be open)."""
    if first_ts is None:
        return None
    p = settings.pipeline
    reach = max(p.call_idle_s, p.call_linger_s, p.rtp_idle_timeout_s)
    best = None
    for r in runs:
        if r["sensor"] != sensor or r["config_sha256"] != config_sha or r["run_last_ts"] is None:
            continue
        if r["run_last_ts"] <= first_ts and first_ts - r["run_last_ts"] <= reach:
            if best is None or r["run_last_ts"] > best["run_last_ts"]:
                best = r
    return best


def stitch_plan(store: Path, runs: list[dict], previous: dict, settings: Settings,
                result: IngestResult) -> tuple[list[str], list[str], dict[str, set]]:
    """The tail captures to analyse again (paths and SHA-256) and the keys of the stored rows still
    open at the previous run's end (table -> keys)."""
    from voipwatch.store.layout import connect

    end = previous["run_last_ts"]
    chain = {r["run_id"] for r in runs if r["chain"] == previous["chain"]}
    p = settings.pipeline
    con = connect(store)
    ids = ", ".join(f"'{r}'" for r in sorted(chain))
    ended = ", ".join(f"'{s}'" for s in ENDED_STATES)
    calls = con.execute(
        f"SELECT call_id, first_ts FROM calls WHERE run_id IN ({ids}) AND last_ts + CASE WHEN state IN ({ended}) "
        f"THEN {p.call_linger_s} ELSE {p.call_idle_s} END > {end}").fetchall()
    streams = con.execute(
        f"SELECT s.src, s.sport, s.dst, s.dport, s.vlan, s.ssrc, s.first_ts, "
        f"(SELECT min(c.first_ts) FROM calls c WHERE c.call_id = s.call_id AND c.run_id IN ({ids})) "
        f"FROM rtp_streams s WHERE s.run_id IN ({ids}) AND s.last_ts + {p.rtp_idle_timeout_s} > {end}").fetchall()
    con.close()
    if not calls and not streams:
        return [], [], {}
    start = min([c[1] for c in calls] + [s[6] for s in streams] + [s[7] for s in streams if s[7] is not None])
    tail_rows = [r for r in runs if r["chain"] == previous["chain"] and r["capture_status"] != "unreadable"
                 and r["capture_last_ts"] is not None and r["capture_last_ts"] >= start]
    tail_rows.sort(key=lambda r: (r["capture_first_ts"], r["run_first_ts"], r["capture_index"]))
    for r in tail_rows:
        try:
            sha, _ = sha256_file(r["capture_path"])
        except OSError as exc:
            sha = f"unreadable ({exc.strerror or exc})"
        if sha != r["capture_sha256"]:
            result.notices.append(f"not stitched to run {previous['run_id']}: {r['capture_path']} is no longer "
                                  f"the capture it stored ({sha[:12]}...)")
            return [], [], {}
    opened = {"calls": {(c[0], c[1]) for c in calls}, "rtp_streams": {tuple(s[:7]) for s in streams}}
    return [r["capture_path"] for r in tail_rows], [r["capture_sha256"] for r in tail_rows], opened


def write_tables(store: Path, run_id: str, whole, alone, origins: FrameOrigins, shas: list[str], n_tail: int,
                 open_rows: dict[str, set], new_from: float | None) -> dict[str, set]:
    """Write the run's rows of every table; return the keys of the stored open rows its rows replace."""
    replaced: dict[str, set] = {t: set() for t in STITCHED}
    whole.alerts, alone.alerts        # noqa: B018 - the incidents table comes with the detectors' results
    for table in TABLES:
        names = [c.name for c in TABLES[table].columns]
        # packet rows and the stitched tables come from the analysis with the tail; the other summary
        # tables (registrations) from the new captures alone
        source = whole if table in STITCHED or "frame" in names else alone
        cols = table_columns(source.records[table], table)
        frame_col = "frame" if "frame" in cols else "first_frame" if "first_frame" in cols else None
        n = len(next(iter(cols.values()))) if cols else 0
        caps, local, keep = [None] * n, [None] * n, [True] * n
        for i in range(n):
            if frame_col is None:
                continue
            if source is whole:
                src, caps_frame = origins.of(cols[frame_col][i])
            else:
                src, caps_frame = alone_origin(origins, n_tail, cols[frame_col][i])
            caps[i] = shas[src] if src is not None else None
            local[i] = caps_frame
            if source is whole and n_tail and src is not None and src < n_tail:
                key = tuple(cols[k][i] for k in KEYS[table]) if table in STITCHED else None
                keep[i] = key is not None and key in open_rows.get(table, ())
                if keep[i]:
                    replaced[table].add(key)
        rows = {name: [v for v, k in zip(values, keep) if k] for name, values in cols.items()}
        rows["run_id"] = [run_id] * sum(keep)
        rows["capture_sha256"] = [c for c, k in zip(caps, keep) if k]
        rows["capture_frame"] = [f for f, k in zip(local, keep) if k]
        write_run_rows(store, table, run_id, rows)
    write_run_rows(store, "alerts", run_id, alert_columns(kept_alerts(whole.alerts, new_from), run_id))
    return replaced


def kept_alerts(alerts: list, new_from: float | None) -> list:
    """The findings a run stores: with a re-read tail, those whose activity reaches the new captures (a
    finding that began in the tail and went on is stored whole, superseding the earlier run's form)."""
    return [a for a in alerts if new_from is None or a.ts >= new_from or (a.last_ts or a.ts) >= new_from]


def alone_origin(origins: FrameOrigins, n_tail: int, frame: int | None) -> tuple[int | None, int | None]:
    """A frame number of the analysis of the new captures alone: which capture, and its frame there.
    heapq.merge keeps the relative order of the files it is not told about, so the k-th frame of the
    new captures in the whole analysis is frame k of the analysis alone."""
    if origins.single or n_tail == 0:
        return origins.of(frame)
    if origins.new_only is None:
        origins.new_only = [(s, f) for s, f in zip(origins.sources, origins.local) if s >= n_tail]
    if frame is None or not 1 <= frame <= len(origins.new_only):
        return None, None
    return origins.new_only[frame - 1]


def alert_columns(alerts, run_id: str) -> dict[str, list]:
    cols: dict[str, list] = {name: [] for name, _ in columns_of("alerts")}
    for a in sorted(alerts, key=lambda a: (a.ts, a.name, a.identifier)):
        values = {"ts": round(a.ts, 6), "severity": a.severity, "name": a.name, "family": a.family, "check": a.check,
                  "call_id": a.call_id, "src": a.src, "sport": a.sport, "dst": a.dst, "dport": a.dport,
                  "vlan": vlan_text(a.vlan), "identifier": a.identifier, "msg": a.msg, "guide_ref": a.guide_ref,
                  "event": alert_line(a), "run_id": run_id}
        for name in cols:
            cols[name].append(values[name])
    return cols


def _key_array(table: pa.Table, name: str) -> list[tuple]:
    columns = [table.column(k).to_pylist() for k in KEYS[name]]
    return list(zip(*columns))


@dataclass
class Stitch:
    """What a stitched run knows about the rows it completes."""
    previous: str                    # the run it continues
    chain: set[str]                  # the runs of that chain
    tail_start: float                # capture time of the first re-read packet
    replaced: dict[str, set]         # table -> keys of the open stored rows it replaced
    alerts: set[tuple]               # (ts, name, identifier) of every finding of the analysis with the tail
    kept: set[tuple]                 # ... and of those this run stores (kept_alerts)


def superseded_rows(table: str, data: pa.Table, run_id: str, stitch: Stitch) -> list[bool]:
    """Which stored rows of one run's file a stitched run supersedes: the open calls and streams it
    replaced; the end-of-input anomalies (`*_at_end`) of the run it continues; and the findings of
    the chain, from the start of the re-read tail on, that the analysis with the tail did not raise
    again (raised when an earlier run's input ended: a summary flushed at its end, say) or that this
    run stores in full (its activity went on into the new captures)."""
    if table in STITCHED:
        return [k in stitch.replaced[table] for k in _key_array(data, table)]
    if table == "anomalies":
        return [run_id == stitch.previous and n.endswith("_at_end") for n in data.column("name").to_pylist()]
    rows = zip(data.column("ts").to_pylist(), data.column("name").to_pylist(), data.column("identifier").to_pylist())
    return [ts >= stitch.tail_start and ((ts, name, ident) not in stitch.alerts or (ts, name, ident) in stitch.kept)
            for ts, name, ident in rows]


def supersede(store: Path, run_id: str, stitch: Stitch | None) -> dict[str, int]:
    """Move the stored rows a stitched run supersedes (superseded_rows) out of their runs' files into
    CASE/superseded/run-<id>/, from where replacing the run puts them back."""
    moved: dict[str, int] = {}
    if stitch is None:
        return moved
    out = store / "superseded" / f"run-{run_id}"
    for table in STITCHED + ("anomalies", "alerts"):
        taken = []
        for path in sorted((store / table).glob("day=*/run-*.parquet")):
            owner = path.stem[len("run-"):]
            if owner == run_id or owner not in stitch.chain:
                continue
            data = pq.read_table(path)
            hit = superseded_rows(table, data, owner, stitch)
            if not any(hit):
                continue
            mask = pa.array(hit)
            taken.append(data.filter(mask))
            rest = data.filter(pc.invert(mask))
            if rest.num_rows:
                pq.write_table(rest, path)
            else:
                path.unlink()
        if taken:
            out.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.concat_tables(taken), out / f"{table}.parquet")
            moved[table] = sum(t.num_rows for t in taken)
    return moved


def restore(store: Path, run_id: str) -> None:
    """Put back the rows run <id> superseded, into the files of the runs they came from."""
    folder = store / "superseded" / f"run-{run_id}"
    for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else ():
        table = path.stem
        data = pq.read_table(path)
        for owner in sorted(set(data.column("run_id").to_pylist())):
            write_appended(store, table, owner, data.filter(pc.equal(data.column("run_id"), owner)).to_pydict())
    if folder.is_dir():
        shutil.rmtree(folder)


def write_appended(store: Path, table: str, run_id: str, rows: dict[str, list]) -> None:
    """Add rows to a run's files of a table, each in its day's file."""
    days: dict[str, list[int]] = {}
    for i, ts in enumerate(rows[time_column(table)]):
        days.setdefault(day_of(ts), []).append(i)
    for day, picked in sorted(days.items()):
        path = store / table / f"day={day}" / f"run-{run_id}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        add = arrow_table(table, {name: [values[i] for i in picked] for name, values in rows.items()})
        data = pa.concat_tables([pq.read_table(path), add]) if path.exists() else add
        pq.write_table(data, path)


def remove_runs(store: Path, runs: list[dict], run_ids: set[str], replacing: set[str]) -> list[str]:
    """Take runs out of the store (for --replace), after checking that nothing is lost or left dangling."""
    for rid in sorted(run_ids):
        others = sorted({r["capture_path"] for r in runs if r["run_id"] == rid and r["capture_sha256"] not in replacing
                         and r["capture_status"] != "unreadable"})
        if others:
            raise StoreError(f"run {rid} also holds {', '.join(others)}: give those captures too to replace it")
        later = sorted({r["run_id"] for r in runs if r["previous_run"] == rid and r["run_id"] not in run_ids
                        and r["reread"]})
        if later:
            raise StoreError(f"run {', '.join(later)} stitched onto run {rid}: replace that run's captures first")
    for rid in sorted(run_ids):
        (store / "runs" / f"run-{rid}.parquet").unlink(missing_ok=True)     # the run is gone first
        for table in stored_tables():
            for path in run_files(store, table, rid):
                path.unlink()
        restore(store, rid)
    return sorted(run_ids)


# -- the run record --------------------------------------------------------------------------------
def capture_spans(origins: FrameOrigins, alone, n_tail: int, n_new: int) -> list[tuple]:
    """(first_ts, last_ts, frames) of each new capture."""
    if origins.single:
        s = alone.summary
        return [(s["first_ts"], s["last_ts"], s["frames_read"])]
    return [(origins.first_ts[i], origins.last_ts[i], origins.counts[i]) for i in range(n_tail, n_tail + n_new)]


def count_rows(store: Path, run_id: str) -> dict[str, int]:
    return {t: sum(pq.read_metadata(p).num_rows for p in run_files(store, t, run_id)) for t in stored_tables()}


def run_record(result: IngestResult, checks, usable, spans, config_text, config_sha, mode, sensor, previous,
               summary) -> dict[str, list]:
    span_of = {c.path: spans[i] for i, c in enumerate(usable)} if spans else {}
    firsts = [s[0] for s in spans if s[0] is not None]
    lasts = [s[1] for s in spans if s[1] is not None]
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")      # the run record only, never a table
    cols: dict[str, list] = {name: [] for name, _ in RUN_COLUMNS}
    for i, c in enumerate(checks):
        first, last, frames = span_of.get(c.path, (None, None, None))
        status = "unreadable" if not c.usable else "damaged" if c.path in result.damaged else "ok"
        values = {
            "run_id": result.run_id, "ingested_at": now, "version": __version__, "sensor": sensor,
            "config_sha256": config_sha, "config": config_text, "mode": mode,
            "previous_run": result.previous_run,
            "chain": previous["chain"] if previous else result.run_id,
            "reread": ",".join(result.reread) or None,
            "run_first_ts": min(firsts) if firsts else None, "run_last_ts": max(lasts) if lasts else None,
            "capture_index": i, "capture_path": c.path, "capture_name": os.path.basename(c.path),
            "capture_sha256": c.sha256, "capture_size": c.size, "capture_first_ts": first, "capture_last_ts": last,
            "capture_frames": frames, "capture_status": status,
            "capture_error": c.error if not c.usable else result.damaged.get(c.path),
            "summary": json.dumps(summary, sort_keys=True) if summary else None,
        }
        for name in cols:
            cols[name].append(values[name])
    return cols
