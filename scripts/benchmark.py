#!/usr/bin/env python3
"""Offline throughput of voipwatch against tshark, on the same capture, in the same run.

    python scripts/benchmark.py                       # generate (cached) a 2M-packet site capture
    python scripts/benchmark.py --capture FILE --jobs 1,2 --repeat 3 --json bench.json
    python scripts/benchmark.py --check-streams       # also diff voipwatch's rtp_streams.csv vs tshark
    python scripts/benchmark.py --matrix [--lab-capture LAB.pcap]   # every capture shape (matrix.py)
    python scripts/benchmark.py --hostile             # adversarial input, both paths (hostile.py)

Each tool runs as its own child process, one at a time, measured by measure.run_measured (wall,
CPU, peak memory of the whole process tree; see measure.py).

Packets per second = frames in the file (counted from the pcap/pcapng record headers) / wall s.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from measure import (REPO, count_frames, generated_capture, parse_tshark_streams, probe_voipwatch, run_measured,
                     summarize, tail, voipwatch_command, warm_cache)

# The targets from the performance issue.
TARGET_PPS_1CORE = 3.0      # voipwatch --jobs 1 packets/s >= 3x tshark's
AIM_PPS_1CORE = 4.0
TARGET_PPS_ALLCORES = 5.0   # voipwatch using every core >= 5x tshark's
TARGET_MEM = 0.5            # voipwatch peak memory <= half of tshark's


def _int(v: str) -> int:
    v = v.strip()
    return int(v, 16) if v.lower().startswith("0x") else int(float(v))


def parse_voipwatch_streams(path: Path) -> dict[tuple, dict]:
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            key = (row["src"], _int(row["sport"]), row["dst"], _int(row["dport"]), _int(row["ssrc"]))
            out[key] = dict(packets=_int(row["packets"]), lost=_int(row["lost"]))
    return out


def truth_streams(truth: dict) -> dict[tuple, dict]:
    return {(s["src"], s["sport"], s["dst"], s["dport"], s["ssrc"]): dict(packets=s["packets"], lost=s["lost"])
            for s in truth["rtp"]["streams_detail"]}


def compare_streams(ref: dict, got: dict, ref_name: str, got_name: str, max_print: int) -> dict:
    def fmt(k: tuple) -> str:
        return f"{k[0]}:{k[1]} -> {k[2]}:{k[3]} ssrc 0x{k[4]:08X}"
    missing = sorted(k for k in ref if k not in got)
    extra = sorted(k for k in got if k not in ref)
    diff = sorted(k for k in ref if k in got
                  and (ref[k]["packets"], ref[k]["lost"]) != (got[k]["packets"], got[k]["lost"]))
    print(f"  {got_name} vs {ref_name}: {len(got)} vs {len(ref)} streams; "
          f"{len(missing)} missing, {len(extra)} extra, {len(diff)} with other packets/lost")
    for label, keys in (("missing", missing), ("extra", extra)):
        for k in keys[:max_print]:
            v = ref.get(k) or got.get(k)
            print(f"    {label:8} {fmt(k)}  packets {v['packets']} lost {v['lost']}")
        if len(keys) > max_print:
            print(f"    ... {len(keys) - max_print} more {label}")
    for k in diff[:max_print]:
        print(f"    differs  {fmt(k)}  packets {got[k]['packets']} ({ref_name} {ref[k]['packets']}), "
              f"lost {got[k]['lost']} ({ref_name} {ref[k]['lost']})")
    if len(diff) > max_print:
        print(f"    ... {len(diff) - max_print} more differing")
    return dict(reference=ref_name, compared=got_name, ref_streams=len(ref), streams=len(got),
                missing=len(missing), extra=len(extra), differing=len(diff),
                agree=not (missing or extra or diff))


# ----------------------------------------------------------------------------- --jobs check

def compare_job_outputs(outdirs: dict[int, Path], ok: set[int]) -> dict[int, bool]:
    """Whether each --jobs N run wrote the same tables and alerts as --jobs 1 (summary.json aside,
    which holds the run time), byte for byte; printed, and returned by N."""
    if 1 not in outdirs or 1 not in ok:
        return {}
    ref = {p.name: p.read_bytes() for p in sorted(outdirs[1].iterdir()) if p.name != "summary.json"}
    result = {}
    for n, outdir in sorted(outdirs.items()):
        if n == 1 or n not in ok:
            continue
        got = {p.name: p.read_bytes() for p in sorted(outdir.iterdir()) if p.name != "summary.json"}
        differ = sorted(name for name in ref.keys() | got.keys() if ref.get(name) != got.get(name))
        result[n] = not differ
        print(f"outputs of --jobs {n} vs --jobs 1: " + ("identical" if not differ else "DIFFER: " + ", ".join(differ)))
    return result


# ----------------------------------------------------------------------------- main

def parse_jobs(s: str) -> list[int]:
    try:
        jobs = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--jobs wants integers like 1,2: {s!r}")
    if not jobs or min(jobs) < 1:
        raise argparse.ArgumentTypeError("--jobs wants integers >= 1")
    return jobs


DEFAULT_PACKETS = {"single": 2_000_000, "matrix": 300_000}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="Offline throughput and peak memory of voipwatch vs tshark.")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--matrix", action="store_true",
                      help="every capture shape (pcap/pcapng variants, link types, IPv6, QinQ, compressed) of the "
                           "generated capture and of --lab-capture, tshark and voipwatch on each (scripts/matrix.py)")
    mode.add_argument("--hostile", action="store_true",
                      help="voipwatch analyze and monitor -r on one-packet RTP-like flows, an INVITE flood and a "
                           "REGISTER flood (scripts/hostile.py)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--capture", help="capture to measure (default: generate one with gen_site_capture.py)")
    src.add_argument("--packets", type=int,
                     help="size of the generated capture (default 2,000,000; 300,000 with --matrix)")
    ap.add_argument("--seed", type=int, default=1, help="generator seed")
    ap.add_argument("--profile", default="bench", choices=("bench", "soak"), help="generator profile")
    ap.add_argument("--gen-args", default="", help="more generator options, one string (part of the cache key)")
    ap.add_argument("--workdir", default=str(REPO / "bench-out"),
                    help="captures cache, tool outputs, logs (default: bench-out/ in the checkout)")
    ap.add_argument("--jobs", type=parse_jobs, default=[1, 2], help="voipwatch --jobs values, e.g. 1,2")
    ap.add_argument("--repeat", type=int,
                    help="runs per tool, alternating; the median wall time is reported (on a shared machine one "
                         "run can be an outlier); default 3, 1 with --hostile")
    ap.add_argument("--json", help="write the results as JSON to this file")
    ap.add_argument("--check-streams", action="store_true",
                    help="diff each voipwatch run's rtp_streams.csv with tshark's rtp,streams "
                         "(and tshark with the generator's truth file when there is one)")
    ap.add_argument("--max-print", type=int, default=20, help="disagreements printed per kind")
    ap.add_argument("--tshark", default=shutil.which("tshark") or "tshark", help="tshark binary")
    ap.add_argument("--voipwatch", help="voipwatch command (default: `voipwatch` on PATH, "
                                        "else python -m voipwatch from this checkout)")
    ap.add_argument("--no-voipwatch", action="store_true", help="measure tshark only")
    ap.add_argument("--timeout", type=float, default=0,
                    help="kill a run (its whole process group) after this many seconds (0 = never)")
    ap.add_argument("--fail-on-target", action="store_true", help="exit 1 unless every target passes")
    matrix = ap.add_argument_group("--matrix")
    matrix.add_argument("--lab-capture", help="also the shapes of this capture (Ethernet pcap/pcapng of real SIPp "
                                              "traffic, e.g. the lab trunk's)")
    matrix.add_argument("--shapes", help="comma-separated subset of the shapes (the original is always measured)")
    matrix.add_argument("--capinfos", default=shutil.which("capinfos") or "capinfos", help="capinfos binary")
    hostile = ap.add_argument_group("--hostile")
    hostile.add_argument("--hostile-count", type=int, default=1_000_000, help="packets per hostile capture")
    hostile.add_argument("--hostile-kinds", default="rtp_like,invite,register",
                         help="comma-separated subset of rtp_like,invite,register")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.hostile else 3
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    if args.packets is None:
        args.packets = DEFAULT_PACKETS["matrix" if args.matrix else "single"]
    if args.lab_capture and not args.matrix:
        ap.error("--lab-capture goes with --matrix")
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if args.matrix:
        import matrix
        return matrix.run(args, workdir)
    if args.hostile:
        import hostile
        return hostile.run(args, workdir)
    if args.capture:
        capture = Path(args.capture).resolve()
        if not capture.is_file():
            print(f"error: {capture}: no such file", file=sys.stderr)
            return 2
    else:
        capture = generated_capture(workdir, args.packets, args.seed, args.profile, shlex.split(args.gen_args))
    truth_file = Path(str(capture)[:-5] + ".truth.json") if str(capture).endswith(".pcap") else None
    truth = json.loads(truth_file.read_text()) if truth_file and truth_file.is_file() else None

    packets = count_frames(capture)
    size = capture.stat().st_size
    warm_cache(capture)
    print(f"capture: {capture} ({packets:,} packets, {size / 1e6:.1f} MB)")
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)

    tshark_cmd = [args.tshark, "-q", "-n", "-r", str(capture), "-z", "rtp,streams"]
    tshark_version = ""
    try:
        tshark_version = subprocess.run([args.tshark, "--version"], capture_output=True, text=True,
                                        timeout=60).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        pass

    vw_cmd, vw_env = voipwatch_command(args.voipwatch)
    vw_problem, has_jobs = ("skipped (--no-voipwatch)", False) if args.no_voipwatch else probe_voipwatch(vw_cmd, vw_env)
    if vw_problem:
        print(f"voipwatch: NOT MEASURED: {vw_problem}")
    else:
        print(f"voipwatch: {shlex.join(vw_cmd)}")

    tshark_runs: list[dict] = []
    vw_runs: dict[int, list[dict]] = {n: [] for n in args.jobs}
    vw_notes: dict[int, list[str]] = {n: [] for n in args.jobs}

    def note(n: int, text: str) -> None:
        if text not in vw_notes[n]:
            vw_notes[n].append(text)

    if not vw_problem and not has_jobs:
        print("voipwatch: `analyze --help` shows no --jobs option: --jobs 1 runs without it, "
              "the other values are unsupported")
        for n in args.jobs:
            note(n, "ran without --jobs (voipwatch analyze has no --jobs option)" if n == 1
                 else "unsupported: voipwatch analyze has no --jobs option")

    vw_outdirs: dict[int, Path] = {}
    for rep in range(args.repeat):
        r = run_measured(tshark_cmd, logs / f"tshark-r{rep}.out", logs / f"tshark-r{rep}.err",
                         timeout=args.timeout)
        tshark_runs.append(r)
        print(f"  tshark run {rep + 1}/{args.repeat}: {r['wall_s']:.2f} s, rc {r['returncode']}", flush=True)
        if r["returncode"] != 0:
            print(f"  tshark failed: {tail(r['stderr'])}")
        if vw_problem:
            continue
        for n in args.jobs:
            if any(x.startswith("unsupported") for x in vw_notes[n]):
                continue
            outdir = workdir / f"voipwatch-j{n}"
            shutil.rmtree(outdir, ignore_errors=True)
            outdir.mkdir(parents=True)
            cmd = [*vw_cmd, "analyze", str(capture), "-o", str(outdir), "--format", "csv"]
            if has_jobs:
                cmd += ["--jobs", str(n)]
            r = run_measured(cmd, logs / f"voipwatch-j{n}-r{rep}.out", logs / f"voipwatch-j{n}-r{rep}.err",
                             env=vw_env, timeout=args.timeout)
            err = tail(r["stderr"], 20)
            if has_jobs and r["returncode"] != 0 and re.search(r"no such option.*--jobs", err, re.I):
                if n == 1:
                    note(n, "ran without --jobs (voipwatch analyze has no --jobs option)")
                    cmd = cmd[:-2]
                    r = run_measured(cmd, logs / f"voipwatch-j{n}-r{rep}.out", logs / f"voipwatch-j{n}-r{rep}.err",
                                     env=vw_env, timeout=args.timeout)
                else:
                    note(n, "unsupported: voipwatch analyze has no --jobs option")
                    print(f"  voipwatch --jobs {n}: unsupported: voipwatch analyze has no --jobs option")
                    vw_runs[n].append(r)
                    continue
            vw_runs[n].append(r)
            vw_outdirs[n] = outdir
            print(f"  voipwatch --jobs {n} run {rep + 1}/{args.repeat}: {r['wall_s']:.2f} s, rc {r['returncode']}",
                  flush=True)
            if r["returncode"] != 0:
                note(n, f"killed after --timeout {args.timeout:g} s" if r["timed_out"]
                     else f"failed (exit {r['returncode']}): " + tail(r["stderr"], 1))
                print(f"  voipwatch --jobs {n} FAILED (exit {r['returncode']}):\n{tail(r['stderr'], 15)}")

    ts = summarize(tshark_runs, packets)
    rows = [dict(tool="tshark -z rtp,streams", jobs=None, **ts, runs=tshark_runs)]
    for n in args.jobs:
        s = summarize(vw_runs[n], packets) if vw_runs[n] else dict(ok=False)
        rows.append(dict(tool=f"voipwatch --jobs {n}", jobs=n, **s, runs=vw_runs[n],
                         note=vw_problem or "; ".join(vw_notes[n])))
    for r in rows:
        if r.get("ok") and ts.get("ok"):
            r["pps_ratio"] = round(r["pps"] / ts["pps"], 3)
            r["mem_ratio"] = round(r["peak_mb"] / ts["peak_mb"], 3)

    # ---- table
    print()
    hdr = (f"{'tool':<24}{'wall s':>9}{'CPU s':>9}{'packets/s':>12}{'pkts/CPU-s':>12}{'maxRSS MB':>11}"
           f"{'tree PSS MB':>13}"
           f"{'peak MB':>9}{'pps x':>8}{'mem x':>8}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        if not r.get("ok"):
            print(f"{r['tool']:<24}  not measured: {r.get('note') or 'failed'}")
            continue
        print(f"{r['tool']:<24}{r['wall_s']:>9.2f}{r['cpu_s']:>9.2f}{r['pps']:>12,}{r['pps_cpu'] or 0:>12,}"
              f"{r['maxrss_mb']:>11.1f}"
              f"{r['tree_pss_peak_mb']:>13.1f}{r['peak_mb']:>9.1f}"
              f"{r.get('pps_ratio', float('nan')):>8.2f}{r.get('mem_ratio', float('nan')):>8.2f}")
        if r.get("note"):
            print(f"{'':<24}  note: {r['note']}")
    print(f"packets = {packets:,} frames in {capture.name}; pps x and mem x are voipwatch / tshark; "
          f"peak MB = max(maxRSS, sampled tree PSS)")
    all_runs = tshark_runs + [x for v in vw_runs.values() for x in v]
    busy = [r for r in all_runs if r["wall_s"] > 0 and r["others_cpu_s"] / r["wall_s"] > 0.1]
    if busy:
        worst = max(r["others_cpu_s"] / r["wall_s"] for r in busy)
        print(f"WARNING: other processes used CPU during {len(busy)} of {len(all_runs)} run(s) (up to "
              f"{worst:.2f} CPU on average): wall times and packets/s may be pessimistic; "
              f"compare pkts/CPU-s, or rerun on a quiet machine")

    # ---- targets
    targets = []
    cpus = os.cpu_count() or 1
    vw = {r["jobs"]: r for r in rows if r["jobs"] is not None}

    def target(name: str, run: dict | None, key: str, threshold: float, higher: bool, aim: float | None = None):
        if not ts.get("ok"):
            res, val = "N/A", None
            why = "tshark did not run"
        elif run is None or not run.get("ok"):
            res, val = "N/A", None
            why = (run or {}).get("note") or "no such voipwatch run"
        else:
            val = run[key]
            res = "PASS" if (val >= threshold if higher else val <= threshold) else "FAIL"
            why = ""
        t = dict(name=name, value=val, threshold=threshold, aim=aim, result=res, reason=why)
        targets.append(t)
        cmp_ = ">=" if higher else "<="
        shown = f"{val:.2f}x" if val is not None else "-"
        extra = ""
        if aim is not None and val is not None:
            extra = f" (aim {aim:g}x: {'met' if val >= aim else 'not met'})"
        print(f"TARGET {name:<52} {shown:>7} {cmp_} {threshold:g}x  {res}{extra}{'  ' + why if why else ''}")

    print()
    target("pps, one core (voipwatch --jobs 1 / tshark)", vw.get(1), "pps_ratio", TARGET_PPS_1CORE, True,
           AIM_PPS_1CORE)
    multi = sorted(n for n in vw if n >= 2)
    all_n = cpus if cpus in multi else (max(multi) if multi else None)
    target(f"pps, all cores (voipwatch --jobs {all_n or cpus} / tshark)",
           vw.get(all_n) if all_n else dict(ok=False, note="--jobs has no value >= 2"),
           "pps_ratio", TARGET_PPS_ALLCORES, True)
    measured = [r for r in vw.values() if r.get("ok")]
    worst = max(measured, key=lambda r: r["mem_ratio"]) if measured and ts.get("ok") else None
    if worst is None and not measured:
        worst = dict(ok=False, note=vw_problem or "no voipwatch run succeeded")
    target(f"peak memory (worst voipwatch run{': --jobs ' + str(worst['jobs']) if worst and worst.get('ok') else ''}"
           " / tshark)",
           worst, "mem_ratio", TARGET_MEM, False)
    if all_n and all_n != cpus:
        print(f"note: this machine has {cpus} CPUs; the all-cores target used --jobs {all_n}")

    # ---- --jobs N against --jobs 1
    same_outputs = compare_job_outputs(vw_outdirs, {n for n, r in vw.items() if r.get("ok")})

    # ---- streams
    checks = []
    if args.check_streams:
        print("\nRTP streams check")
        tsk = parse_tshark_streams(Path(tshark_runs[0]["stdout"]).read_text()) if ts.get("ok") else None
        if tsk is None:
            print("  tshark did not run: nothing to compare against")
        else:
            if truth:
                checks.append(compare_streams(truth_streams(truth), tsk, "truth", "tshark", args.max_print))
            for n, outdir in sorted(vw_outdirs.items()):
                if not vw.get(n, {}).get("ok"):
                    continue
                csv_path = outdir / "rtp_streams.csv"
                if not csv_path.is_file():
                    print(f"  voipwatch --jobs {n}: no {csv_path}")
                    checks.append(dict(compared=f"voipwatch --jobs {n}", error=f"missing {csv_path}"))
                    continue
                try:
                    got = parse_voipwatch_streams(csv_path)
                except (KeyError, ValueError) as e:
                    print(f"  voipwatch --jobs {n}: cannot read {csv_path}: {e!r} "
                          "(needs columns src, sport, dst, dport, ssrc, packets, lost)")
                    checks.append(dict(compared=f"voipwatch --jobs {n}", error=repr(e)))
                    continue
                checks.append(compare_streams(tsk, got, "tshark", f"voipwatch --jobs {n}", args.max_print))
            if not vw_outdirs:
                print("  voipwatch did not run: no rtp_streams.csv to compare")

    if args.json:
        result = dict(
            capture=dict(path=str(capture), packets=packets, bytes=size,
                         truth=str(truth_file) if truth else None),
            machine=dict(cpus=cpus, python=platform.python_version(), platform=platform.platform(),
                         tshark=tshark_version),
            voipwatch=dict(command=shlex.join(vw_cmd), problem=vw_problem),
            results=rows, targets=targets, stream_checks=checks, same_outputs_as_jobs1=same_outputs,
            measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        print(f"\nJSON: {args.json}")

    if not ts.get("ok"):
        return 2
    if args.fail_on_target and any(t["result"] != "PASS" for t in targets):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
