"""Offline analysis of capture files: the library behind `voipwatch analyze`."""
from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from voipwatch import __version__
from voipwatch.capture import CaptureError, read_captures
from voipwatch.alerts import write_alerts
from voipwatch.detect import SEVERITIES, DetectorBus
from voipwatch.incidents import Incident
from voipwatch.batch.driver import feed_file
from voipwatch.batch.rtp import BatchRtp
from voipwatch.batch.workers import forked, map_forked
from voipwatch.pipeline import Analyzer
from voipwatch.records import Alert, Call, DnsMessage, Frame, Registration, RtcpPacket, RtpStream, SipMessage, TlsFlow
from voipwatch.config import Settings, load_settings
from voipwatch.tables import TABLES, to_frame, write_records


class Collector(dict):
    """A sink that keeps every record: a mapping from record type to its records, in arrival order.

    Read a table's records by the table's name (collector["calls"]) or any record type's by the type
    (collector[FlowSeen]); a type that never came reads as no records.
    """

    def emit(self, record) -> None:
        rows = self.get(type(record))
        if rows is None:
            self[type(record)] = [record]
        else:
            rows.append(record)

    def tick(self, now: float) -> None:
        pass

    def __missing__(self, key: str | type) -> list:
        return self[TABLES[key].type] if isinstance(key, str) else []


class Tee:
    """A sink that hands every record to several sinks, in order."""

    def __init__(self, *sinks):
        self._emits = tuple(sink.emit for sink in sinks)
        self._ticks = tuple(sink.tick for sink in sinks)

    def emit(self, record) -> None:
        for emit in self._emits:
            emit(record)

    def tick(self, now: float) -> None:
        for tick in self._ticks:
            tick(now)


class AnalysisResult:
    """Records, tables (name -> DataFrame, built when first read), alerts and summary of an analysis.

    With analyze --jobs the detectors may still be running in another process when the result is
    returned (the tables are written meanwhile): reading alerts or summary waits for them.
    """

    def __init__(self, records: Collector, summary: dict,
                 detectors: Callable[[], tuple[list[Alert], dict, dict, list, list]], started: float | None = None):
        self.records = records
        self._tables: dict | None = None
        self._summary = summary
        self._alerts: list[Alert] = []
        self._events: list[Alert] = []
        self._detectors = detectors           # () -> (alerts, counts, delivered, incidents, events), once
        self._started = started
        self._delivered: dict = {}

    @property
    def tables(self) -> dict:
        if self._tables is None:
            self.alerts                       # noqa: B018 - the incidents table comes with the alerts
            self._tables = {name: to_frame(self.records[name], name) for name in TABLES}
        return self._tables

    @property
    def alerts(self) -> list[Alert]:
        if self._detectors is not None:
            detectors, self._detectors = self._detectors, None
            self._alerts, counts, self._delivered, incidents, self._events = detectors()
            self.records[Incident] = incidents
            add_alert_counts(self._summary, self._alerts, counts, incidents)
            if self._started is not None:
                self._summary["run_s"] = round(time.perf_counter() - self._started, 3)
        return self._alerts

    @property
    def alert_events(self) -> list[Alert]:
        """--mode stream: every state reported (new, update, final) in the order monitor writes them."""
        self.alerts                           # noqa: B018 - known once the detectors have finished
        return self._events

    @property
    def incidents(self) -> list[Incident]:
        self.alerts                           # noqa: B018 - known once the detectors have finished
        return self.records[Incident]

    @property
    def records_delivered(self) -> dict[str, dict[str, int]]:
        """Detector name -> record type name -> records the detectors were given (an idle one is absent)."""
        self.alerts                           # noqa: B018 - known once the detectors have finished
        return self._delivered

    @property
    def summary(self) -> dict:
        self.alerts                           # noqa: B018 - the alert counts belong to the summary
        return self._summary


def analyze_files(paths: list[str], settings: Settings | None = None, mode: str = "batch",
                  progress: Callable[[Frame], None] | None = None, jobs: int = 1,
                  feed: Callable[[Analyzer, BatchRtp], None] | None = None,
                  failed: list[dict] | None = None, every_frame: bool = False) -> AnalysisResult:
    """Analyze capture files (merged in time order): records, tables, alerts and a summary.

    `jobs` > 1 lets the batch path use more processes (the results are the same): the detectors
    run in a second one, and a single uncompressed file is scanned in parallel. The stream mode
    uses one. `feed(analyzer, rtp)`, in batch mode, gives the analyzer the frames of `paths` instead
    of reading them here (analyze --cluster: voipwatch.cluster.stitch). `failed` lists the captures
    of the set that could not be read (summary.json captures_failed). `every_frame`: a set is read
    through the per-frame merge, so that `progress` sees every frame (the case store maps each frame
    back to its capture); otherwise each file of a set is decoded apart and only the frames the
    vectorised path does not take reach `progress`.
    """
    if mode not in ("batch", "stream"):
        raise ValueError(f"mode must be batch or stream, not {mode!r}")
    started = time.perf_counter()
    settings = settings or load_settings()
    sink = Collector()
    events: list[Alert] = []                  # every reported state of every finding (the streaming log)
    bus = detector_bus(settings, events.append, mode)
    rtp = BatchRtp(settings.pipeline, jobs) if mode == "batch" else None
    analyzer = Analyzer(Tee(sink, bus), settings.pipeline, rtp)
    vectorised = rtp is not None and len(paths) == 1 and paths[0] != "-"
    if feed is None and rtp is not None and len(paths) > 1 and "-" not in paths and not every_frame:
        feed = decoded_apart(paths, jobs, progress)
    if feed is not None and rtp is not None:
        feed(analyzer, rtp)
        analyzer.finish()
    elif vectorised and feed_file(paths[0], analyzer, rtp, progress):
        analyzer.finish()
    else:
        analyzer.run(read_captures(paths), progress)

    def detect() -> tuple[list[Alert], dict, dict[str, dict[str, int]], list[Incident], list[Alert]]:
        bus.finish()
        counts = {"alerts_suppressed": bus.suppressed, "findings_closed_early": bus.closed_early,
                  "incidents_dropped": bus.grouper.dropped, "caps_hit": bus.caps_hit()}
        return (final_alerts(events), counts, bus.records_delivered(), bus.incidents(),
                events if mode == "stream" else [])

    # With --jobs, the detectors run in a forked process while this one writes the tables.
    detectors = forked(detect) if mode == "batch" and jobs > 1 else None
    found = detect() if detectors is None else None
    sink[Call] = attach_streams(sink[Call], sink[RtpStream])
    summary = build_summary(paths, analyzer, sink, mode, time.perf_counter() - started, failed or [])
    if detectors is not None:                 # alerts, counts and deliveries come from the forked process
        return AnalysisResult(sink, summary, detectors=detectors, started=started)
    return AnalysisResult(sink, summary, detectors=lambda: found)


def decoded_apart(paths: list[str], jobs: int,
                  progress: Callable[[Frame], None] | None) -> Callable[[Analyzer, BatchRtp], None]:
    """A set of capture files in batch mode: each file decoded on its own (in `jobs` processes), then
    stitched into one run, as analyze --cluster does (voipwatch.cluster); the same records as the
    per-frame merge of voipwatch.capture.read_captures, with the vectorised RTP path."""
    from voipwatch.cluster.decode import decode_capture
    from voipwatch.cluster.stitch import feed_parts

    parts = map_forked(decode_capture, paths, jobs)
    for part in parts:
        if part.error is not None:
            raise CaptureError(part.path, part.offset, part.error)
    return lambda analyzer, rtp: feed_parts(parts, analyzer, rtp, progress)


def detector_bus(settings: Settings, on_alert: Callable[[Alert], None], mode: str) -> DetectorBus:
    """The detector bus of a run, with its [alerts] settings."""
    a, p = settings.alerts, settings.pipeline
    return DetectorBus(settings.detectors(), on_alert, mode, p.rtp_idle_timeout_s, p.call_idle_s, a.suppress_for_s,
                       call_linger_s=p.call_linger_s, update_every_s=a.update_every_s,
                       incident_gap_s=a.incident_gap_s, min_severity=a.min_severity, site=settings.site)


def final_alerts(events: list[Alert]) -> list[Alert]:
    """The final form of every finding, in time order of its activity (first packet of its evidence),
    then raise time, then the order in which they closed (the same in both paths, and whatever the
    addresses: alerts.jsonl)."""
    return sorted((a for a in events if a.state == "final"), key=lambda a: (a.ts, a.raised_ts))


def add_alert_counts(summary: dict, alerts: list[Alert], counts: dict, incidents: list[Incident]) -> None:
    """Alert and incident counts, and every cap hit: the pipeline's (its *_overflow anomalies) and the
    detectors'."""
    summary["caps_hit"] = {**{k: v for k, v in summary["anomalies_by_reason"].items() if k.endswith("_overflow")},
                           **{f"detector.{k}": v for k, v in counts["caps_hit"].items()}}
    summary["alerts_by_severity"] = {sev: n for sev in reversed(SEVERITIES)
                                     if (n := sum(1 for a in alerts if a.severity == sev))}
    summary["alerts_by_name"] = dict(sorted(Counter(a.name for a in alerts).items()))
    summary["alerts_suppressed"] = counts["alerts_suppressed"]       # raises merged into an open finding
    summary["incidents"] = len(incidents)
    # caps of the finding and incident state (voipwatch.detect, voipwatch.incidents): 0 unless hit
    summary["findings_closed_early"] = counts["findings_closed_early"]
    summary["incidents_dropped"] = counts["incidents_dropped"]


def attach_streams(calls: list[Call], streams: list[RtpStream]) -> list[Call]:
    """Count each call's streams, and let media extend a call that was answered but never hung up."""
    count: Counter[str] = Counter()
    media_end: dict[str, float] = {}
    for s in streams:
        if s.call_id is not None:
            count[s.call_id] += 1
            media_end[s.call_id] = max(media_end.get(s.call_id, s.last_ts), s.last_ts)
    out = []
    for c in calls:
        last_ts = max(c.last_ts, media_end.get(c.call_id, c.last_ts))
        duration = c.duration_s
        if c.state == "answered" and c.setup_s is not None:
            duration = round(last_ts - (c.first_ts + c.setup_s), 6)
        out.append(dataclasses.replace(c, n_streams=count[c.call_id], last_ts=last_ts, duration_s=duration))
    return out


def build_summary(paths: list[str], analyzer: Analyzer, sink: Collector, mode: str, run_s: float,
                  failed: list[dict]) -> dict:
    return {
        "tool": "voipwatch",
        "version": __version__,
        "inputs": [str(p) for p in paths],
        **({"captures_failed": failed} if failed else {}),
        "mode": mode,
        "frames_read": analyzer.frames_read,
        "frames_undecoded": analyzer.frames_undecoded,
        "frames_by_class": dict(sorted(analyzer.frame_classes.items())),
        "first_ts": analyzer.first_ts,
        "last_ts": analyzer.last_ts,
        "counts": {
            "sip_messages": len(sink[SipMessage]),
            "calls": len(sink[Call]),
            "registrations": len(sink[Registration]),
            "rtp_streams": len(sink[RtpStream]),
            "rtp_streams_negotiated": sum(1 for s in sink[RtpStream] if s.negotiated),
            "rtcp_packets": len(sink[RtcpPacket]),
            "dns_messages": len(sink[DnsMessage]),
            "tls_flows": len(sink[TlsFlow]),
        },
        "anomalies_by_reason": dict(sorted(analyzer.anomaly_counts.items())),
        "run_s": round(run_s, 3),
    }


def write_outputs(result: AnalysisResult, out_dir: str | Path, fmt: str = "csv", csv_raw: bool = False) -> list[Path]:
    """Tables, alerts.jsonl and summary.json; with CSV tables the summary states how their text cells
    were written (csv_cells: "neutralised", see tables.csv_cell, or "raw")."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.alerts                             # noqa: B018 - the incidents table comes with the alerts
    written = [write_records(result.records[name], out, name, fmt, csv_raw) for name in TABLES]
    write_alerts(result.alerts, out / "alerts.jsonl")
    written.append(out / "alerts.jsonl")
    summary = result.summary
    if fmt == "csv":
        summary = {**summary, "csv_cells": "raw" if csv_raw else "neutralised"}
    summary_path = out / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    written.append(summary_path)
    return written
