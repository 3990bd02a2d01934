"""`voipwatch monitor`: the streaming path on a live interface (or a capture replayed at full speed).

Alerts are written the moment the detectors raise them (alerts.jsonl, optionally stdout and syslog);
calls, registrations, streams and DNS are appended to CSV tables as they complete, rotated by capture
time or size; a stats record goes to stats.jsonl every interval. All analysis state is bounded by
the pipeline's caps and expires on capture time. SIGINT/SIGTERM flush everything open and exit;
SIGHUP reloads the configuration (detectors restart with the new settings).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import logging.handlers
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, TextIO

from voipwatch.alerts import alert_line, dump_alert
from voipwatch.analyze import Tee, detector_bus
from voipwatch.capture import read_captures
from voipwatch.detect import SEVERITIES
from voipwatch.pipeline import Analyzer
from voipwatch.bindings import Binding
from voipwatch.records import RECORDS, Alert, Anomaly, Call, DnsMessage, Frame, Registration, RtpStream
from voipwatch.config import Settings
from voipwatch.safe_text import visible
from voipwatch.tables import TABLES, write_csv_columns
from voipwatch.windows import BoundedMap

HOUSEKEEPING_EVERY = 256     # frames between checks of signals, reloads and the stats timer
IDLE_STEP_S = 0.5            # a live source yields None after this long without a packet (voipwatch.live.sources)


class RotatingTables:
    """Each completed record appended as a CSV row to <table>-<n>.csv; a new file after rotate_s of
    capture time or rotate_bytes, whichever comes first. Text cells are neutralised as analyze writes
    them (tables.write_csv_columns) unless csv_raw."""

    def __init__(self, out: Path, rotate_s: float, rotate_bytes: int, csv_raw: bool = False):
        self.out = out
        self.csv_raw = csv_raw
        self.rotate_s = rotate_s
        self.rotate_bytes = rotate_bytes
        self._files: dict[str, tuple[TextIO, float, int]] = {}
        self._serial: dict[str, int] = {}

    def write(self, table: str, record, ts: float) -> None:
        columns = TABLES[table].columns
        current = self._files.get(table)
        if current is not None and (ts - current[1] > self.rotate_s or current[0].tell() > self.rotate_bytes):
            current[0].close()
            current = None
        if current is None:
            self._serial[table] = self._serial.get(table, 0) + 1
            fh = open(self.out / f"{table}-{self._serial[table]:04d}.csv", "w", encoding="utf-8", newline="")
            write_csv_columns(fh, [[name] for name, _, _ in columns])
            current = (fh, ts, self._serial[table])
            self._files[table] = current
        write_csv_columns(current[0], [[get(record)] for _, _, get in columns], self.csv_raw)
        current[0].flush()

    def close(self) -> None:
        for fh, _, _ in self._files.values():
            fh.close()
        self._files.clear()


class LiveSink:
    """Writes tables as records complete; keeps only a bounded count of streams per call."""

    def __init__(self, tables: RotatingTables):
        self.tables = tables
        # record type -> its writer; the rotation time of each record is when it completed
        self._writers = {Call: self._call, Registration: lambda reg: self._put(reg, reg.last_ts),
                         Binding: lambda b: self._put(b, b.last_confirmed_ts if b.ended_ts is None else b.ended_ts),
                         RtpStream: self._stream, DnsMessage: lambda msg: self._put(msg, msg.pkt.ts)}
        self.counts = {RECORDS[t].table: 0 for t in self._writers}
        # A call's streams close (RTP idle timeout) before the call does (its linger), so they are counted first.
        self.call_streams: BoundedMap[list] = BoundedMap(100_000, 3 * 3600.0, lambda: [0])

    def emit(self, record) -> None:
        writer = self._writers.get(type(record))
        if writer is not None:
            writer(record)

    def tick(self, now: float) -> None:
        pass

    def _put(self, record, ts: float) -> None:
        table = RECORDS[type(record)].table
        self.counts[table] += 1
        self.tables.write(table, record, ts)

    def _call(self, call: Call) -> None:
        counted = self.call_streams.pop(call.call_id, [0])[0]
        self._put(dataclasses.replace(call, n_streams=counted), call.last_ts)

    def _stream(self, stream: RtpStream) -> None:
        if stream.call_id is not None:
            self.call_streams.touch(stream.call_id, stream.last_ts)[0] += 1
        self._put(stream, stream.last_ts)


class AlertWriter:
    def __init__(self, path: Path, to_stdout: bool, syslog: str | None, min_severity: str):
        self.fh = open(path, "a", encoding="utf-8")
        self.to_stdout = to_stdout
        self.floor = SEVERITIES.index(min_severity)
        self.count = 0
        self.logger = self.handler = None
        if syslog:
            self.logger = logging.getLogger("voipwatch.alerts")
            self.handler = logging.handlers.SysLogHandler(address=syslog)
            self.handler.setFormatter(logging.Formatter("voipwatch: %(message)s"))
            self.logger.addHandler(self.handler)
            self.logger.setLevel(logging.INFO)

    def __call__(self, alert: Alert) -> None:
        """One reported state of a finding (new, update, final): every one is written as it comes."""
        if SEVERITIES.index(alert.severity) < self.floor:
            return
        self.count += alert.state == "new"          # findings, not their updates
        dump_alert(alert, self.fh)
        self.fh.flush()
        if self.to_stdout:
            sys.stdout.write(alert_line(alert) + "\n")
            sys.stdout.flush()
        if self.logger and alert.state == "new":
            # One syslog line per finding, when it is first raised (its updates are in alerts.jsonl).
            # Log readers show syslog messages on terminals: the capture's text goes as visible escapes
            # (a newline would also forge a second log line).
            self.logger.warning("%s %s %s", alert.severity.upper(), alert.name, visible(alert.msg))

    def close(self) -> None:
        self.fh.close()
        if self.handler is not None:
            self.logger.removeHandler(self.handler)
            self.handler.close()


class Monitor:
    """The streaming pipeline wired to live writers, with status, signals and config reload."""

    def __init__(self, settings: Settings, out: Path, reload: Callable[[], Settings] | None = None,
                 alerts_stdout: bool = False, syslog: str | None = None, rotate_s: float = 3600.0,
                 rotate_bytes: int = 64 << 20, stats_every_s: float = 10.0, status: Callable[[str], None] | None = None,
                 csv_raw: bool = False):
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.settings = settings
        self.reload_settings = reload
        self.tables = RotatingTables(out, rotate_s, rotate_bytes, csv_raw)
        self.sink = LiveSink(self.tables)
        self.alerts = AlertWriter(out / "alerts.jsonl", alerts_stdout, syslog, settings.alerts.min_severity)
        self.stats_fh = open(out / "stats.jsonl", "a", encoding="utf-8")
        self.stats_every_s = stats_every_s
        self.status = status
        self.stop_requested = False
        self.reload_requested = False
        self._build(settings)

    def _build(self, settings: Settings) -> None:
        self.bus = detector_bus(settings, self.alerts, "stream")
        if not hasattr(self, "analyzer"):
            self.analyzer = Analyzer(Tee(self.sink, self.bus), settings.pipeline)
        else:
            self.analyzer.connect(Tee(self.sink, self.bus))

    def install_signals(self) -> None:
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "stop_requested", True))
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stop_requested", True))
        signal.signal(signal.SIGHUP, lambda *_: setattr(self, "reload_requested", True))

    def run(self, frames: Iterable[Frame | None], on_stats: Callable[[], dict] | None = None) -> dict:
        """Process frames until the source ends or a stop is requested; returns the last stats record."""
        next_stats = time.monotonic() + self.stats_every_s
        process = self.analyzer.process
        housekeeping = quiet = 0
        for frame in frames:
            if frame is not None:
                process(frame)
                quiet = 0
                housekeeping += 1
                if housekeeping < HOUSEKEEPING_EVERY and not self.stop_requested:
                    continue                    # signals, reloads and stats are checked every N frames
                housekeeping = 0
            elif self.analyzer.last_ts is not None:
                # A quiet live interface (the source yields None per IDLE_STEP_S without packets): the
                # kernel stamps packets with the wall clock, so capture time has moved on as much.
                quiet += 1
                self.analyzer.advance(self.analyzer.last_ts + quiet * IDLE_STEP_S)
            if self.reload_requested and self.reload_settings is not None:
                self.reload_requested = False
                self.bus.finish()
                self.settings = self.reload_settings()
                self._build(self.settings)
                self._say("configuration reloaded")
            now = time.monotonic()
            if now >= next_stats:
                next_stats = now + self.stats_every_s
                self.write_stats(on_stats() if on_stats else {})
            if self.stop_requested:
                break
        self.analyzer.finish()
        self.bus.finish()
        return self.write_stats(on_stats() if on_stats else {}, final=True)

    def write_stats(self, capture: dict, final: bool = False) -> dict:
        a = self.analyzer
        record = {
            "event_type": "stats", "capture_ts": a.last_ts, "final": final,
            "packets": a.frames_read, "undecoded": a.frames_undecoded, **{f"capture_{k}": v for k, v in capture.items()},
            "calls_active": len(a.calls), "registrations_active": len(a.registrations),
            "rtp_streams_active": len(a.rtp.tracker), "alerts": self.alerts.count, "alerts_suppressed": self.bus.suppressed,
            "written": dict(self.sink.counts), "anomalies": sum(a.anomaly_counts.values()),
            "caps_hit": {**{k: v for k, v in a.anomaly_counts.items() if k.endswith("_overflow")},
                         **{f"detector.{k}": v for k, v in self.bus.caps_hit().items()}},
            "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        self.stats_fh.write(json.dumps(record) + "\n")
        self.stats_fh.flush()
        self._say(f"{record['packets']:,} pkts, {capture.get('dropped', 0):,} dropped, {record['calls_active']} calls, "
                  f"{record['registrations_active']} registrations, {record['alerts']} alerts, {record['rss_mb']} MB")
        return record

    def _say(self, text: str) -> None:
        if self.status:
            self.status(visible(text))

    def close(self) -> None:
        self.tables.close()
        self.alerts.close()
        self.stats_fh.close()


def replay_frames(paths: list[str]) -> Iterator[Frame | Anomaly]:
    """Capture files as a frame source for monitor (full speed; capture time drives everything)."""
    yield from read_captures(paths)
