#!/usr/bin/env python3
"""analyze --cluster on rotated captures: one Dask worker against two, in the same run.

    python scripts/benchmark_cluster.py                          # 2M packets cut into 20 files, 3 repeats
    python scripts/benchmark_cluster.py --packets 400000 --files 20 --repeat 3 --json bench.json

The capture is scripts/gen_site_capture.py's (the same as benchmark.py's, cached in --workdir), cut
with `editcap -c PACKETS/FILES`. For each worker count a LocalCluster of that many one-thread worker
processes is started once; each repeat then times, in this process (the client):

  decode   client.map of cluster.decode over the files until every part is back (wall);
  workers  the seconds the workers spent decoding, summed (each FilePart's own clock);
  client   the stitching and everything after it: merge, per-frame pipeline, RTP statistics,
           detectors, tables written (cluster.stitch.feed_parts + analyze_files + write_outputs).

wall = decode + client; packets/s = packets / wall; the median-wall repeat is reported, with the
CPU seconds of the workers (summed) and of the client, which a busy shared machine disturbs less
than the wall times, and the 1-minute load average before each run. Worker counts take turns. With
--one-process it also times `analyze_files` on the same files in one process (the per-frame merge of
voipwatch.capture.read_captures) and on the uncut capture (the vectorised single-file path), once each;
with --steps, the CPU seconds of each client step, the files decoded in this process first.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from measure import count_frames, generated_capture  # noqa: E402

from voipwatch.analyze import analyze_files, write_outputs  # noqa: E402
from voipwatch.cluster.inputs import expand_captures  # noqa: E402
from voipwatch.cluster.run import connect, decode_on  # noqa: E402
from voipwatch.cluster.stitch import feed_parts  # noqa: E402
from voipwatch.config import load_settings  # noqa: E402


def rotated(capture: Path, files: int, packets: int) -> list[str]:
    """The capture cut into `files` files by editcap -c (cached beside it)."""
    out = capture.parent / f"{capture.stem}-rotated-{files}"
    if not out.is_dir() or len(list(out.iterdir())) != files:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        subprocess.run(["editcap", "-c", str(math.ceil(packets / files)), str(capture), str(out / "part.pcap")],
                       check=True)
    return expand_captures([str(out)])


def one_run(client, paths: list[str], out: Path) -> dict:
    settings = load_settings()
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    parts, failed = decode_on(client, paths)
    t1, c1 = time.perf_counter(), time.process_time()
    result = analyze_files([p.path for p in parts], settings, feed=lambda a, rtp: feed_parts(parts, a, rtp))
    write_outputs(result, out)
    t2, c2 = time.perf_counter(), time.process_time()
    assert not failed, failed
    return {"decode_s": t1 - t0, "workers_s": sum(p.seconds for p in parts), "workers_cpu_s": sum(p.cpu_s for p in parts),
            "client_s": t2 - t1, "client_cpu_s": c2 - c1, "wall_s": t2 - t0, "load1": load,
            "frames": result.summary["frames_read"]}


def client_steps(paths: list[str]) -> dict[str, float]:
    """CPU seconds of the client's steps, the files decoded in this process first (as a worker would)."""
    from voipwatch.cluster import decode, stitch
    spent: dict[str, float] = {}

    def clocked(name, fn):
        def run(*args, **kwargs):
            started = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.process_time() - started
        return run

    parts = clocked("decode (workers' share)", lambda: [decode.decode_capture(p) for p in paths])()
    numbering = stitch._per_frame_items
    originals = stitch.merge_order, stitch._per_frame_items, stitch._in_run_order
    stitch.merge_order = clocked("stitch: merge order", stitch.merge_order)
    stitch._per_frame_items = clocked("stitch: run numbering", lambda *a: list(numbering(*a)))
    stitch._in_run_order = clocked("stitch: candidate block order", stitch._in_run_order)

    def feed(analyzer, rtp):
        analyzer.process = clocked("per-frame pipeline (non-RTP records)", analyzer.process)
        analyzer.finish = clocked("RTP statistics, open calls closed", analyzer.finish)
        rtp.add_candidates = clocked("stitch: candidates handed over", rtp.add_candidates)
        stitch.feed_parts(parts, analyzer, rtp)
    try:
        started = time.process_time()
        result = analyze_files([p.path for p in parts], load_settings(), feed=feed)
        result.alerts                     # noqa: B018
        spent["detectors, summary"] = time.process_time() - started - sum(
            v for k, v in spent.items() if not k.startswith("decode"))
        out = Path(tempfile.mkdtemp(prefix="bench-steps-"))
        clocked("tables written", write_outputs)(result, out)
        shutil.rmtree(out, ignore_errors=True)
    finally:
        stitch.merge_order, stitch._per_frame_items, stitch._in_run_order = originals
    return spent


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=2_000_000)
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--workers", default="1,2", help="worker counts to compare (comma-separated)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "voipwatch-bench")
    ap.add_argument("--one-process", action="store_true", help="also time the one-process runs (once each)")
    ap.add_argument("--steps", action="store_true", help="also time the client's steps apart (CPU s, one process)")
    ap.add_argument("--json", type=Path, help="write every figure here")
    args = ap.parse_args()

    capture = generated_capture(args.workdir, args.packets, 1, "bench", [])
    paths = rotated(capture, args.files, args.packets)
    packets = sum(count_frames(p) for p in paths)
    size = sum(os.path.getsize(p) for p in paths)
    print(f"{len(paths)} files, {packets:,} packets, {size / 1e6:.0f} MB ({size / packets:.0f} B/packet on disk); "
          f"{os.cpu_count()} CPUs", flush=True)
    report: dict = {"files": len(paths), "packets": packets, "bytes": size, "cpus": os.cpu_count(), "runs": {}}
    out = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        counts = [int(w) for w in args.workers.split(",")]
        with contextlib.ExitStack() as stack:
            # Every cluster up at once (idle workers cost no CPU), the runs taking turns, so that the
            # load of a shared machine falls on each worker count alike.
            clients = {w: stack.enter_context(connect(f"local:{w}")) for w in counts}
            runs: dict[int, list[dict]] = {w: [] for w in counts}
            for k in range(args.repeat):
                for w in counts:
                    runs[w].append(one_run(clients[w], paths, out / f"w{w}-{k}"))
                    print(f"  {w} worker(s), run {k + 1}: {runs[w][-1]['wall_s']:.2f} s "
                          f"(load average {runs[w][-1]['load1']:.1f})", flush=True)
        for w in counts:
            assert all(r["frames"] == packets for r in runs[w])
            median = sorted(runs[w], key=lambda r: r["wall_s"])[len(runs[w]) // 2]
            report["runs"][w] = {"median": median, "walls": [r["wall_s"] for r in runs[w]],
                                 "loads": [r["load1"] for r in runs[w]]}
        report["client_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if args.one_process:
            settings = load_settings()
            report["one_process_set_s"] = timed(lambda: analyze_files(paths, settings).alerts)
            report["one_process_whole_s"] = timed(lambda: analyze_files([str(capture)], settings).alerts)
        if args.steps:
            report["client_steps_cpu_s"] = client_steps(paths)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def print_report(report: dict) -> None:
    packets = report["packets"]
    print("\n| workers | wall s | packets/s | decode s | workers' decode s, CPU s (sums) | client s, CPU s "
          "(stitch + analysis) |")
    print("|---|---|---|---|---|---|")
    base = None
    for workers, run in report["runs"].items():
        m = run["median"]
        base = base or m["wall_s"]
        print(f"| {workers} | {m['wall_s']:.2f} | {packets / m['wall_s']:,.0f} | {m['decode_s']:.2f} | "
              f"{m['workers_s']:.2f}, {m['workers_cpu_s']:.2f} | {m['client_s']:.2f}, {m['client_cpu_s']:.2f} |")
    walls = {w: r["median"]["wall_s"] for w, r in report["runs"].items()}
    if len(walls) > 1:
        first, last = list(walls)[0], list(walls)[-1]
        print(f"\nratio wall({first} worker) / wall({last} workers) = {walls[first] / walls[last]:.2f}")
    for workers, run in report["runs"].items():
        m = run["median"]
        print(f"{workers} worker(s): per-worker decode {packets / m['workers_s']:,.0f} packets/s "
              f"({packets / m['workers_cpu_s']:,.0f} per CPU s); client {packets / m['client_s']:,.0f} packets/s "
              f"({packets / m['client_cpu_s']:,.0f} per CPU s); walls {', '.join(f'{w:.2f}' for w in run['walls'])}; "
              f"load averages {', '.join(f'{x:.1f}' for x in run['loads'])}")
    if "one_process_set_s" in report:
        print(f"one process, the {report['files']} files: {report['one_process_set_s']:.2f} s; "
              f"the uncut capture: {report['one_process_whole_s']:.2f} s")
    print(f"client peak RSS over the cluster runs {report['client_peak_rss_mb']:.0f} MB")
    for step, cpu in report.get("client_steps_cpu_s", {}).items():
        print(f"  {step}: {cpu:.2f} CPU s")


if __name__ == "__main__":
    main()
