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
from voipwatch.safe_text import visible_lines
from voipwatch.tables import FORMATS


CSV_RAW_HELP = ("Write CSV text cells exactly as decoded, for tools that need the raw values (by default a "
                "cell that a spreadsheet would run as a formula, and every control character, is neutralised; "
                "see the README).")


class Exit(enum.IntEnum):
    OK = 0
    ERROR = 1          # bad input file, bad configuration
    USAGE = 2          # click's own usage errors
    FINDINGS = 3       # --fail-on threshold reached
    CAPTURES_FAILED = 4  # a capture of a set could not be read: left out, the others analyzed


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
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for the tables, summary.json and alerts.")
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
@click.option("--cluster", metavar="ADDRESS", default=None,
              help="Decode the captures on a Dask cluster: tcp://HOST:PORT of a running scheduler, or local:N "
                   "for N local worker processes (the paths must be readable by every worker).")
def analyze(captures, out_dir, fmt, mode, config_path, sets, progress, fail_on, jobs, csv_raw, cluster) -> None:
    """Analyze capture files (pcap, pcapng, gzip, or - for stdin) into tables and a summary.

    Several files are merged in capture-time order; a directory stands for its files. Writes
    sip_messages, calls, registrations, rtp_streams, dns and anomalies tables plus summary.json
    into OUT.

    Examples:

        voipwatch analyze capture.pcapng -o out/ --format parquet

        voipwatch analyze big.pcap -o out/ --jobs 0

        voipwatch analyze rotated/ -o out/ --cluster tcp://10.0.0.5:8786
    """
    from voipwatch.analyze import analyze_files, write_outputs
    from voipwatch.cluster.inputs import expand_captures, unreadable

    captures = expand_captures(list(captures))
    if not captures:
        raise click.UsageError("no capture files in the directories given")
    if cluster is not None and (mode != "batch" or "-" in captures):
        raise click.UsageError("--cluster works in --mode batch on capture files (not stdin)")
    settings = settings_or_exit(config_path, sets)
    for reason in idle_notices(settings):
        click.echo(f"notice: {reason}", err=True)
    jobs = jobs or len(os.sched_getaffinity(0))
    failed: list[dict] = []
    if cluster is None and len(captures) > 1:  # a set: a capture that cannot be read is left out
        failed = [f for path in captures if path != "-" and (f := unreadable(path)) is not None]
        captures = [path for path in captures if path not in {f["file"] for f in failed}]
    reporter = Progress(captures, sys.stderr.isatty() if progress is None and cluster is None else bool(progress))
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
    click.echo(terminal_summary(result.summary, out_dir))
    for f in failed:
        click.echo(visible_lines(f"error: {f['file']}: offset {f['offset']}: {f['error']} (left out of the run)"),
                   err=True)
    if fail_on and any(SEVERITIES.index(a.severity) >= SEVERITIES.index(fail_on) for a in result.alerts):
        sys.exit(Exit.FINDINGS)
    if failed:
        sys.exit(Exit.CAPTURES_FAILED)


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


@cli.command()
@click.argument("captures", nargs=-1, required=True, type=click.Path(allow_dash=False))
@click.option("--call-id", help="The Call-ID of the call.")
@click.option("--number", help="Digits of a caller, callee, R-URI, P-Asserted-Identity or Diversion number.")
@click.option("--ip", help="An address in the call's signalling or media.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False),
              help="Write an evidence bundle per call here (pcap, audio, ladder, plots, summary, manifest).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Site configuration (TOML).")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE", help="Override one setting.")
def call(captures, call_id, number, ip, out_dir, config_path, sets) -> None:
    """Investigate a call: its SIP ladder, SDP, media quality, whether it could be overheard, its alerts.

    Exactly one of --call-id, --number, --ip selects the calls; every match is shown.

    Example:

        voipwatch call capture.pcap --number 1002 -o evidence/
    """
    from voipwatch.call.text import investigate

    if sum(x is not None for x in (call_id, number, ip)) != 1:
        raise click.UsageError("give exactly one of --call-id, --number, --ip")
    settings = settings_or_exit(config_path, sets)
    try:
        text, found = investigate(list(captures), settings, call_id=call_id, number=number, ip=ip, out_dir=out_dir)
    except (ValueError, CaptureError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(Exit.ERROR)
    click.echo(text)
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
def report(captures, from_dir, out_path, config_path, sets, top) -> None:
    """Write a one-page HTML report: summary, findings with the NSA guide's advice, calls, registrations,
    media quality, VLANs and the ladder of the most severe call.

    Give capture files (analyzed first, like analyze) or --from-dir with an analyze output directory.
    The page embeds its figures and needs no network and no JavaScript.

    Example:

        voipwatch report capture.pcap -o report.html --config site.toml
    """
    from voipwatch.report.data import build_report, from_result, load_dir
    from voipwatch.report.figures import draw_figures
    from voipwatch.report.html import write_report

    if bool(captures) == bool(from_dir):
        raise click.UsageError("give either capture files or --from-dir DIR")
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


def terminal_summary(summary: dict, out_dir: str) -> str:
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
    return visible_lines("\n".join(lines))


def main() -> None:
    collect_rarely()
    cli(prog_name="voipwatch")
