"""The voipwatch command line: a thin click shell over the library."""
from __future__ import annotations

import enum
import gc
import os
import sys
import time

import click
from pathlib import Path

from voipwatch import __version__
from voipwatch.capture import CaptureError
from voipwatch.config_schema import ConfigError
from voipwatch.detect import SEVERITIES
from voipwatch.incidents import by_importance, one_line
from voipwatch.safe_text import visible, visible_lines
from voipwatch.tables import FORMATS


CSV_RAW_HELP = ("Write CSV text cells exactly as decoded, for tools that need the raw values (by default a "
                "cell that a spreadsheet would run as a formula, and every control character, is neutralised; "
                "see the README).")


class Exit(enum.IntEnum):
    OK = 0
    ERROR = 1          # bad input file, bad configuration
    USAGE = 2          # click's own usage errors
    FINDINGS = 3       # --fail-on threshold reached; search: nothing matched
    STORED = 4         # analyze --store: a capture is already in the store (nothing written)
    PARTIAL = 5        # a capture of a set could not be read: left out, the others analysed (and stored)


class Progress:
    """A one-line progress report on stderr for long runs (only when stderr is a terminal)."""
    EVERY = 100_000

    def __init__(self, paths: list[str], enabled: bool):
        self.enabled = enabled
        self.total = sum(os.path.getsize(p) for p in paths if p != "-" and os.path.isfile(p))
        self.single = len(paths) == 1
        self.count = 0
        self.next_report = self.EVERY
        self.started = time.perf_counter()

    def __call__(self, frame) -> None:
        self.count = frame.frame
        if not self.enabled or self.count < self.next_report:
            return
        self.next_report = self.count + self.EVERY
        rate = self.count / max(time.perf_counter() - self.started, 1e-9)
        where = ""
        if self.single and self.total and frame.offset is not None:
            where = f" {min(100.0, 100.0 * frame.offset / self.total):5.1f}%"
        click.echo(f"\r  {self.count:,} frames{where}  {rate:,.0f} frames/s", nl=False, err=True)

    def done(self) -> None:
        if self.enabled and self.count >= self.EVERY:
            click.echo("", err=True)


def collect_rarely() -> None:
    """Fewer garbage collections: an analysis keeps about a hundred thousand objects alive while
    allocating millions that die young, and CPython's default thresholds (700, 10, 10) make the
    cyclic collector walk the kept ones again and again (a tenth of an offline run). What is
    imported by now is frozen out of collection altogether."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="voipwatch")
def cli() -> None:
    """Passive SIP/RTP security analyzer: calls, registrations, media streams and findings.

    Example:

        voipwatch analyze sample_captures/call/g711-call.pcap -o out/
    """


@cli.command()
@click.argument("captures", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False),
              help="Directory for the tables, summary.json and alerts (required unless --store is given).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True,
              help="Table format (Parquet needs pyarrow, a declared dependency).")
@click.option("--mode", type=click.Choice(["batch", "stream"]), default="batch", show_default=True,
              help="batch: vectorised RTP statistics; stream: the incremental path that monitor uses.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Site configuration (TOML).")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE", help="Override one setting.")
@click.option("--progress/--no-progress", default=None, help="Progress line on stderr (default: when a terminal).")
@click.option("--fail-on", type=click.Choice(SEVERITIES), default=None,
              help="Exit with status 3 when an alert of this severity or higher was raised.")
@click.option("--jobs", type=click.IntRange(min=0), default=1, show_default=True, metavar="N",
              help="Processes for --mode batch, 0 for one per available core (same results; a single "
                   "uncompressed pcap/pcapng file is the input that uses them best).")
@click.option("--csv-raw", is_flag=True, help=CSV_RAW_HELP)
@click.option("--store", "store", type=click.Path(file_okay=False),
              help="Append the run to this case store (Parquet by table and day; see voipwatch search).")
@click.option("--replace", is_flag=True,
              help="With --store: analyse again captures the store already holds, replacing their run.")
@click.option("--sensor", default="default", show_default=True,
              help="With --store: the capture point; a run is stitched only to earlier runs of the same sensor.")
@click.option("--cluster", metavar="ADDRESS", default=None,
              help="Decode the captures on a Dask cluster: tcp://HOST:PORT of a running scheduler, or local:N "
                   "for N local worker processes (the paths must be readable by every worker).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("-v", "--verbose", is_flag=True, help="List every check that is idle until the site model says more.")
def analyze(captures, out_dir, fmt, mode, config_path, sets, progress, fail_on, jobs, csv_raw, store, replace,
            sensor, cluster, quiet, verbose) -> None:
    """Analyze capture files (pcap, pcapng, gzip, or - for stdin) into tables and a summary.

    Several files are merged in capture-time order; a directory stands for its files. Writes
    sip_messages, calls, registrations, rtp_streams, dns and anomalies tables plus summary.json
    into OUT.

    Examples:

        voipwatch analyze capture.pcapng -o out/ --format parquet

        voipwatch analyze big.pcap -o out/ --jobs 0

        voipwatch analyze rotated/*.pcap --store case/
        voipwatch analyze rotated/ -o out/ --cluster tcp://10.0.0.5:8786

    Exit status 5 means a capture of a set could not be read (it is left out, the others analysed);
    with --store, 4 means a capture was already stored (nothing written; --replace analyses it again).
    """
    from voipwatch.analyze import analyze_files, write_outputs
    from voipwatch.cluster.inputs import expand_captures, unreadable

    if out_dir is None and store is None:
        raise click.UsageError("give -o DIR, --store CASE, or both")
    if replace and store is None:
        raise click.UsageError("--replace needs --store")
    if quiet and verbose:
        raise click.UsageError("give at most one of --quiet, --verbose")
    if store is not None and cluster is not None:
        raise click.UsageError("--store runs in this process: give --store or --cluster, not both")
    captures = expand_captures(list(captures))
    if not captures:
        raise click.UsageError("no capture files in the directories given")
    if cluster is not None and (mode != "batch" or "-" in captures):
        raise click.UsageError("--cluster works in --mode batch on capture files (not stdin)")
    settings = settings_or_exit(config_path, sets)
    if not quiet:
        for line in notice_lines(idle_notices(settings), verbose):
            click.echo(line, err=True)
    jobs = jobs or len(os.sched_getaffinity(0))
    if store is not None:
        reporter = Progress(list(captures), not quiet and (sys.stderr.isatty() if progress is None else progress))
        _analyze_into_store(captures, out_dir, fmt, mode, settings, reporter, fail_on, jobs, csv_raw, store, replace,
                            sensor, quiet)
        return
    failed: list[dict] = []
    if cluster is None and len(captures) > 1:  # a set: a capture that cannot be read is left out
        failed = [f for path in captures if path != "-" and (f := unreadable(path)) is not None]
        captures = [path for path in captures if path not in {f["file"] for f in failed}]
    reporter = Progress(captures, not quiet and (sys.stderr.isatty() if progress is None and cluster is None
                                                 else bool(progress)))
    try:
        if cluster is not None:
            result, failed = cluster_result(captures, cluster, settings, jobs)
        else:
            result = analyze_files(captures, settings, mode, reporter, jobs, failed=failed)
    except CaptureError as exc:
        reporter.done()
        click.echo(f"error: {exc}", err=True)
        sys.exit(Exit.ERROR)
    except OSError as exc:
        reporter.done()
        click.echo(f"error: {exc.filename or ''}: {exc.strerror or exc}", err=True)
        sys.exit(Exit.ERROR)
    reporter.done()
    try:
        write_outputs(result, out_dir, fmt, csv_raw)
    except OSError as exc:
        click.echo(f"error: {exc.filename or out_dir}: cannot write output: {exc.strerror or exc}", err=True)
        sys.exit(Exit.ERROR)
    if not quiet:
        click.echo(terminal_summary(result.summary, out_dir, result.incidents))
    for f in failed:
        click.echo(visible_lines(f"error: {f['file']}: offset {f['offset']}: {f['error']} (left out of the run)"),
                   err=True)
    if fail_on and any(SEVERITIES.index(a.severity) >= SEVERITIES.index(fail_on) for a in result.alerts):
        sys.exit(Exit.FINDINGS)
    if failed:
        sys.exit(Exit.PARTIAL)


def cluster_result(captures: list[str], address: str, settings, jobs: int):
    """analyze --cluster: (result, captures_failed); one capture alone that fails is an error (exit 1)."""
    from voipwatch.cluster.run import ClusterError, analyze_on_cluster, parse_local

    try:
        parse_local(address)
        result, failed = analyze_on_cluster(captures, address, settings, jobs)
    except (ValueError, ClusterError) as exc:
        click.echo(visible_lines(f"error: {exc}"), err=True)
        sys.exit(Exit.ERROR)
    if len(captures) == 1 and failed:
        f = failed[0]
        click.echo(visible_lines(f"error: {f['file']}: offset {f['offset']}: {f['error']}"), err=True)
        sys.exit(Exit.ERROR)
    return result, failed


def _analyze_into_store(captures, out_dir, fmt, mode, settings, reporter, fail_on, jobs, csv_raw, store, replace,
                        sensor, quiet) -> None:
    """analyze --store: the run appended to the case store (voipwatch.store.ingest)."""
    from voipwatch.analyze import write_outputs
    from voipwatch.store.ingest import AlreadyStored, ingest
    from voipwatch.store.layout import StoreError

    if "-" in captures:
        raise click.UsageError("--store needs capture files (stdin has no content hash to refuse a second ingest by)")
    try:
        done = ingest(store, list(captures), settings, mode=mode, jobs=jobs or len(os.sched_getaffinity(0)),
                      replace=replace, sensor=sensor, progress=reporter)
    except AlreadyStored as exc:
        reporter.done()
        click.echo(visible(f"error: {exc}"), err=True)
        sys.exit(Exit.STORED)
    except (StoreError, CaptureError) as exc:
        reporter.done()
        click.echo(visible(f"error: {exc}"), err=True)
        sys.exit(Exit.ERROR)
    except OSError as exc:
        reporter.done()
        click.echo(f"error: {exc.filename or store}: {exc.strerror or exc}", err=True)
        sys.exit(Exit.ERROR)
    reporter.done()
    for check in done.failed:
        click.echo(visible(f"error: {check.error} (left out of run {done.run_id}; the other captures are stored)"),
                   err=True)
    for path, where in done.damaged.items():
        click.echo(visible(f"warning: {path}: reading stopped early ({where}); its records before that are stored"),
                   err=True)
    for note in done.notices:
        click.echo(visible(f"notice: {note}"), err=True)
    if done.removed_runs:
        click.echo(f"replaced run {', '.join(done.removed_runs)}")
    if done.analysis is not None and out_dir is not None:
        try:
            write_outputs(done.analysis, out_dir, fmt, csv_raw)
        except OSError as exc:
            click.echo(f"error: {exc.filename or out_dir}: cannot write output: {exc.strerror or exc}", err=True)
            sys.exit(Exit.ERROR)
        if not quiet:
            click.echo(terminal_summary(done.analysis.summary, out_dir, done.analysis.incidents))
    stitched = ""
    if done.reread:
        stitched = (f"; continued run {done.previous_run} (read again {len(done.reread)} earlier capture(s), replaced "
                    + ", ".join(f"{n} {t}" for t, n in done.replaced_rows.items()) + ")")
    rows = ", ".join(f"{n:,} {t}" for t, n in done.rows.items())
    if not quiet:
        click.echo(visible(f"run {done.run_id} stored in {store}: {rows}{stitched}"))
    if done.analysis is None:
        sys.exit(Exit.ERROR)
    if done.failed:
        sys.exit(Exit.PARTIAL)
    if fail_on and any(SEVERITIES.index(a.severity) >= SEVERITIES.index(fail_on) for a in done.analysis.alerts):
        sys.exit(Exit.FINDINGS)


@cli.command()
@click.option("--store", "store", required=True, type=click.Path(exists=True, file_okay=False),
              help="The case store (analyze --store).")
@click.option("--number", help="Prefix of a From, To or Request-URI user (e.g. +882).")
@click.option("--ip", help="An address: signalling or media of calls, streams' ends, findings' ends.")
@click.option("--user-agent", "user_agent", metavar="REGEX", help="User-Agent/Server matching a regular expression (RE2).")
@click.option("--method", help="A SIP method: its requests and the responses to them (CSeq).")
@click.option("--since", help="From this capture time (ISO 8601, UTC unless given; or epoch seconds).")
@click.option("--until", help="Up to this capture time.")
@click.option("--alerts", type=click.Choice(SEVERITIES), help="Findings of this severity or higher, and what has one.")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(("calls", "dialogs", "streams", "findings")),
              help="Only these kinds of record (repeatable; all by default).")
@click.option("--sql", help="Run this SQL (DuckDB) over the views calls, dialogs' sip_messages, registrations, "
                            "rtp_streams, dns, anomalies, alerts and runs instead of the filters.")
@click.option("--pcap", "pcap", type=click.Path(dir_okay=False),
              help="Write the packets of the matching calls, dialogs, streams and findings here.")
@click.option("--format", "fmt", type=click.Choice(("table", "csv", "jsonl")), default="table", show_default=True)
def search(store, number, ip, user_agent, method, since, until, alerts, kinds, sql, pcap, fmt) -> None:
    """Search a case store: calls, dialogs (SIP messages of one Call-ID), RTP streams and findings.

    SIP filters (--number, --user-agent, --method) select dialogs; calls, streams and findings follow
    their dialog by Call-ID; --ip and --since/--until apply to each record's own ends and times. All
    filters given must hold. Exit status: 0 something matched, 3 nothing did, 1 error, 2 usage.

    Examples:

        voipwatch search --store case/ --number +882 --since 2024-05-01

        voipwatch search --store case/ --ip 203.0.113.7 --method REGISTER

        voipwatch search --store case/ --user-agent friendly --pcap scan.pcap

        voipwatch search --store case/ --sql "SELECT count(*) FROM calls"
    """
    from voipwatch.store.layout import StoreError, connect
    from voipwatch.store.present import FORMATTERS
    from voipwatch.store.search import KINDS, Query, Rows, parse_time, run_search, run_sql

    if sql is not None and any(v is not None for v in (number, ip, user_agent, method, since, until, alerts, pcap)):
        raise click.UsageError("--sql runs on its own: give it without filters or --pcap")
    try:
        query = Query(number, ip, user_agent, method, parse_time(since) if since else None,
                      parse_time(until) if until else None, alerts)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    import duckdb
    try:
        con = connect(Path(store))
        found = {"sql": run_sql(con, sql)} if sql is not None else run_search(con, query, tuple(kinds) or KINDS)
        exported = None
        if pcap is not None:
            from voipwatch.store.export import export_pcap
            exported = export_pcap(Path(store), con, found, Path(pcap))
    except (duckdb.Error, StoreError, CaptureError) as exc:
        click.echo(visible(f"error: {str(exc).splitlines()[0] if str(exc) else exc}"), err=True)
        sys.exit(Exit.ERROR)
    except OSError as exc:
        click.echo(f"error: {exc.filename or pcap}: {exc.strerror or exc}", err=True)
        sys.exit(Exit.ERROR)
    text = FORMATTERS[fmt](found)
    if text:
        click.echo(text, nl=not text.endswith("\n"))
    if exported is not None:
        click.echo(f"{exported.packets:,} packets of {exported.calls} call(s), {exported.dialogs} other dialog(s) and "
                   f"{exported.streams} other stream(s) written to {pcap}", err=True)
        for note in exported.notes:
            click.echo(f"notice: {note}", err=True)
    if not any(rows.rows for rows in found.values()):
        sys.exit(Exit.FINDINGS)


@cli.command()
@click.argument("captures", nargs=-1, required=True, type=click.Path(allow_dash=False))
@click.option("--call-id", help="The Call-ID of the call or dialog.")
@click.option("--number", help="Leading digits of a caller, callee, R-URI, P-Asserted-Identity or Diversion number.")
@click.option("--ip", help="An address in a dialog's signalling or media (any method), or of a flow outside dialogs.")
@click.option("--list", "list_only", is_flag=True, help="One line per match (time, Call-ID, method, from, to, src -> dst, state).")
@click.option("--incident", "incident_id", metavar="ID",
              help="An incident (incidents table): its evidence bundle instead of a call's (as `voipwatch incident`).")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False),
              help="Write an evidence bundle per call or dialog here (pcap, audio, ladder, plots, summary, manifest).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Site configuration (TOML).")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE", help="Override one setting.")
def call(captures, call_id, number, ip, list_only, incident_id, out_dir, config_path, sets) -> None:
    """Investigate a call or dialog: its SIP ladder, the SDP offer and answer of each leg, media quality,
    whether it could be overheard, its alerts.

    Exactly one of --call-id, --number, --ip selects the calls and other dialogs (REGISTER, OPTIONS, ...);
    every match is shown, or listed one per line with --list.

    Example:

        voipwatch call capture.pcap --number 1002 -o evidence/
    """
    from voipwatch.call.text import investigate

    if sum(x is not None for x in (call_id, number, ip, incident_id)) != 1:
        raise click.UsageError("give exactly one of --call-id, --number, --ip, --incident")
    if list_only and out_dir:
        raise click.UsageError("--list prints one line per match; it writes no bundle (-o)")
    if incident_id is not None:
        _incident(captures, incident_id, out_dir, config_path, sets)
        return
    settings = settings_or_exit(config_path, sets)
    try:
        text, found = investigate(list(captures), settings, call_id=call_id, number=number, ip=ip, out_dir=out_dir,
                                  list_only=list_only)
    except (ValueError, CaptureError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(Exit.ERROR)
    click.echo(text)
    if not found:
        sys.exit(Exit.ERROR)


@cli.command()
@click.argument("incident_id", metavar="ID")
@click.argument("captures", nargs=-1, required=True, type=click.Path(allow_dash=False))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False),
              help="Write the incident's evidence bundle here (incident.pcap, findings, timeline, summary, manifest).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Site configuration (TOML), as analyzed.")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE", help="Override one setting.")
def incident(incident_id, captures, out_dir, config_path, sets) -> None:
    """Show an incident (an id from the incidents table or the summary) and write its evidence bundle.

    The captures are analysed again with the same configuration, so the id is found again.

    Example:

        voipwatch incident I-2437244b0a capture.pcap -o evidence/ --config site.toml
    """
    _incident(captures, incident_id, out_dir, config_path, sets)


def _incident(captures, incident_id, out_dir, config_path, sets) -> None:
    from voipwatch.call.incident import investigate_incident

    settings = settings_or_exit(config_path, sets)
    try:
        text, found = investigate_incident(list(captures), settings, incident_id, out_dir)
    except (ValueError, CaptureError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(Exit.ERROR)
    click.echo(text, nl=False)
    if not found:
        sys.exit(Exit.ERROR)


@cli.command()
@click.option("-i", "--interface", "interfaces", multiple=True, help="Interface to capture on (repeatable; 'any' works).")
@click.option("-r", "--read", "replay", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Replay capture files through the live path at full speed instead of capturing.")
@click.option("--bpf", help="Capture filter (BPF), e.g. 'udp or tcp port 5060'.")
@click.option("-o", "--out", "out_dir", default="voipwatch-live", show_default=True, type=click.Path(file_okay=False),
              help="Directory for alerts.jsonl, stats.jsonl and the rotated tables.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Site configuration (TOML); reloaded on SIGHUP.")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE", help="Override one setting.")
@click.option("--backend", type=click.Choice(["tcpdump", "dumpcap", "pyshark"]), default="tcpdump", show_default=True,
              help="Capture backend: a tcpdump/dumpcap child writing pcap to a pipe, or pyshark's LiveCapture.")
@click.option("--alerts-stdout", is_flag=True, help="Also print each alert as a JSON line on stdout.")
@click.option("--syslog", metavar="SOCKET", help="Also send alerts to syslog (e.g. /dev/log).")
@click.option("--rotate-s", default=3600.0, show_default=True, help="Start new table files after this many capture seconds.")
@click.option("--rotate-mb", default=64, show_default=True, help="Start new table files after this many MB.")
@click.option("--stats-every", default=10.0, show_default=True, help="Seconds between status lines / stats records.")
@click.option("--csv-raw", is_flag=True, help=CSV_RAW_HELP)
def monitor(interfaces, replay, bpf, out_dir, config_path, sets, backend, alerts_stdout, syslog, rotate_s, rotate_mb,
            stats_every, csv_raw) -> None:
    """Watch a SPAN/mirror port for days: alerts as they happen, tables as records complete, bounded memory.

    SIGINT/SIGTERM flush everything and exit 0; SIGHUP reloads --config.

    Example:

        voipwatch monitor -i eth1 --bpf 'udp or tcp' -o /var/log/voipwatch --config site.toml
    """
    from voipwatch.live.sources import LiveError, PipeCapture, PysharkCapture
    from voipwatch.live.monitor import Monitor, replay_frames
    from voipwatch.config import load_settings

    if bool(interfaces) == bool(replay):
        raise click.UsageError("give either -i INTERFACE (live) or -r CAPTURE (replay)")
    settings = settings_or_exit(config_path, sets)
    for reason in idle_notices(settings):
        click.echo(f"notice: {reason}", err=True)
    source = None
    try:
        if interfaces:
            source = (PysharkCapture(list(interfaces), bpf) if backend == "pyshark"
                      else PipeCapture(list(interfaces), bpf, backend))
            source.start()
        mon = Monitor(settings, Path(out_dir), reload=lambda: load_settings(config_path, sets),
                      alerts_stdout=alerts_stdout, syslog=syslog, rotate_s=rotate_s, rotate_bytes=rotate_mb << 20,
                      stats_every_s=stats_every, status=lambda text: click.echo(f"[voipwatch] {text}", err=True),
                      csv_raw=csv_raw)
        mon.install_signals()
        frames = source.frames() if source else replay_frames(list(replay))
        on_stats = (lambda: (source.request_stats(), vars(source.stats))[1]) if source else None
        final = mon.run(frames, on_stats)
        mon.close()
    except (LiveError, CaptureError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(Exit.ERROR)
    finally:
        if source is not None:
            source.stop()
    click.echo(f"stopped after {final['packets']:,} packets; {final['alerts']} alerts in {out_dir}/alerts.jsonl", err=True)


@cli.command()
@click.argument("captures", nargs=-1, type=click.Path(allow_dash=True))
@click.option("--from-dir", "from_dir", type=click.Path(file_okay=False),
              help="Report on an analyze output directory (tables, alerts.jsonl, summary.json) instead of captures.")
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="The HTML file to write (one self-contained page).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Site configuration (TOML): analysis settings, and the dial plan for destination classes.")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE", help="Override one setting.")
@click.option("--top", type=click.IntRange(1, 10_000), default=50, show_default=True,
              help="Rows of the calls, registrations, streams and anomalies tables (the most relevant).")
@click.option("--store", "store", type=click.Path(exists=True, file_okay=False),
              help="Report on a case store (analyze --store), optionally a time window of it.")
@click.option("--since", help="With --store: from this capture time (ISO 8601 or epoch seconds).")
@click.option("--until", help="With --store: up to this capture time.")
def report(captures, from_dir, out_path, config_path, sets, top, store, since, until) -> None:
    """Write a one-page HTML report: summary, findings with the NSA guide's advice, calls, registrations,
    media quality, VLANs and the ladder of the most severe call.

    Give capture files (analyzed first, like analyze), --from-dir with an analyze output directory, or
    --store with a case store (and --since/--until for a window of it). The page embeds its figures
    and needs no network and no JavaScript.

    Examples:

        voipwatch report capture.pcap -o report.html --config site.toml

        voipwatch report --store case/ --since 2024-05-01 --until 2024-05-02 -o day.html
    """
    from voipwatch.report.data import build_report, from_result, load_dir
    from voipwatch.report.figures import draw_figures
    from voipwatch.report.html import write_report

    if sum(map(bool, (captures, from_dir, store))) != 1:
        raise click.UsageError("give either capture files or --from-dir DIR, or --store CASE")
    if (since or until) and not store:
        raise click.UsageError("--since and --until go with --store")
    if store:
        from_dir = _store_window(store, since, until)
    settings = settings_or_exit(config_path, sets)
    site = settings.site if config_path or any(s.startswith("dialplan.") for s in sets) else None
    started = time.perf_counter()
    try:
        if from_dir:
            data = load_dir(from_dir, site)
        else:
            from voipwatch.analyze import analyze_files
            data = from_result(analyze_files(list(captures), settings), site, ", ".join(captures))
        built = build_report(data, top=top)
        figures = draw_figures(data, built)
    except CaptureError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(Exit.ERROR)
    except (OSError, ValueError) as exc:
        where = getattr(exc, "filename", None)
        click.echo(f"error: {where + ': ' if where else ''}{getattr(exc, 'strerror', None) or exc}", err=True)
        sys.exit(Exit.ERROR)
    try:
        write_report(built, figures, out_path)
    except OSError as exc:
        click.echo(f"error: {exc.filename or out_path}: cannot write the report: {exc.strerror or exc}", err=True)
        sys.exit(Exit.ERROR)
    findings = ", ".join(f"{sev} {n}" for sev, n in built.severity_counts.items() if n) or "none"
    click.echo(f"report written to {out_path} ({os.path.getsize(out_path):,} bytes, "
               f"{time.perf_counter() - started:.2f} s; findings: {findings})")


def _store_window(store: str, since: str | None, until: str | None) -> str:
    """A window of the case store written as an analyze output directory (removed at exit)."""
    import atexit
    import shutil
    import tempfile

    from voipwatch.store.layout import connect
    from voipwatch.store.search import parse_time
    from voipwatch.store.window import write_window

    try:
        start, end = (parse_time(since) if since else None), (parse_time(until) if until else None)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    folder = tempfile.mkdtemp(prefix="voipwatch-window-")
    atexit.register(shutil.rmtree, folder, True)
    label = f"case store {store}" + (f" from {since}" if since else "") + (f" until {until}" if until else "")
    write_window(connect(Path(store)), Path(folder), start, end, label)
    return folder


def settings_or_exit(config_path: str | None, sets: tuple[str, ...]):
    """The run's settings, or one `error:` line and exit status 1 for a configuration that does not fit."""
    from voipwatch.config import load_settings

    try:
        return load_settings(config_path, sets)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(Exit.ERROR)


def idle_notices(settings) -> list[str]:
    return [f"{det.name}: {reason}" for det in settings.detectors() for reason in det.idle_reasons()]


def notice_lines(reasons: list[str], verbose: bool) -> list[str]:
    """Idle checks: one line each with --verbose, else one line for all of them."""
    if verbose or len(reasons) <= 1:
        return [f"notice: {reason}" for reason in reasons]
    families = sorted({reason.split(":", 1)[0] for reason in reasons})
    return [f"notice: {len(reasons)} checks ({', '.join(families)}) are idle or limited until the site "
            f"configuration names more (roles, zones); --verbose lists them"]


@cli.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("show")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Site configuration (TOML).")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE", help="Override one setting.")
def config_show(config_path, sets) -> None:
    """Print the effective configuration as TOML, every setting with its documentation.

    Example:

        voipwatch config show --config site.toml > effective.toml
    """
    from voipwatch.config import load_settings, render_toml

    try:
        click.echo(render_toml(load_settings(config_path, sets)))
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(Exit.ERROR)


def terminal_summary(summary: dict, out_dir: str, incidents: list = (), top: int = 5) -> str:
    counts = summary["counts"]
    lines = [
        f"voipwatch {summary['version']}: {summary['frames_read']:,} frames in {summary['run_s']:.2f} s "
        f"({summary['frames_undecoded']:,} undecoded)",
        f"  calls          {counts['calls']:>8,}",
        f"  registrations  {counts['registrations']:>8,}",
        f"  rtp streams    {counts['rtp_streams']:>8,}  ({counts['rtp_streams_negotiated']:,} announced in SDP)",
        f"  sip messages   {counts['sip_messages']:>8,}",
        f"  dns messages   {counts['dns_messages']:>8,}",
    ]
    findings = summary.get("alerts_by_severity", {})
    lines.append("  findings       " + (", ".join(f"{sev} {n}" for sev, n in findings.items()) or "none"))
    anomalies = summary["anomalies_by_reason"]
    lines.append(f"  anomalies      {sum(anomalies.values()):>8,}" +
                 ("" if not anomalies else "  (" + ", ".join(
                     f"{k} {v}" for k, v in sorted(anomalies.items(), key=lambda kv: -kv[1])[:5]) + ")"))
    lines.append(f"tables and alerts.jsonl written to {out_dir}")
    if incidents:
        ranked = by_importance(list(incidents))
        lines.append(f"top incidents ({min(top, len(ranked))} of {len(ranked)}; incidents table, "
                     f"`voipwatch incident ID CAPTURE -o DIR` for the evidence):")
        # each line escaped on its own: an account name may hold a line feed
        lines += [visible("  " + one_line(i)) for i in ranked[:top]]
    return visible_lines("\n".join(lines))


def main() -> None:
    collect_rarely()
    cli(prog_name="voipwatch")
