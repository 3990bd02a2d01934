#!/usr/bin/env python3
"""Snapshot every output of `voipwatch analyze` on a set of captures, and compare two snapshots.

A refactoring must not change a single byte of what voipwatch states. `snapshot` runs a checkout's
`python -m voipwatch analyze` (batch, stream and --jobs 2) on every bundled sample and every capture
under ../shared/captures, and keeps the tables, alerts.jsonl and summary.json of each run; `diff`
compares two snapshots file by file, ignoring only summary.json's run_s (wall-clock time).

    python scripts/compare_outputs.py snapshot --repo OLD_CHECKOUT -o /tmp/before
    python scripts/compare_outputs.py snapshot --repo . -o /tmp/after
    python scripts/compare_outputs.py diff /tmp/before /tmp/after

Exit codes: 0 identical, 1 differences (listed), 2 usage error.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz")
MODES = {"batch": ["--mode", "batch"], "stream": ["--mode", "stream"], "jobs2": ["--mode", "batch", "--jobs", "2"]}
VOLATILE_SUMMARY_KEYS = ("run_s",)


def captures(roots: list[Path]) -> list[Path]:
    found = []
    for root in roots:
        if root.is_file():
            found.append(root)
            continue
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.name.endswith(CAPTURE_SUFFIXES):
                found.append(path)
    return found


def run_id(path: Path) -> str:
    """A stable directory name for a capture: its name and a short hash of its resolved path."""
    return f"{path.name}-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]}"


def snapshot_one(repo: Path, capture: Path, mode: str, out: Path) -> tuple[str, int, str]:
    target = out / run_id(capture) / mode
    target.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "voipwatch", "analyze", str(capture), "-o", str(target), *MODES[mode]]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    (target / "exit_code").write_text(f"{proc.returncode}\n")
    (target / "stderr_tail").write_text("\n".join(proc.stderr.splitlines()[-3:]) + "\n")
    return str(capture), proc.returncode, mode


def snapshot(repo: Path, roots: list[Path], out: Path, modes: list[str], workers: int) -> int:
    out.mkdir(parents=True, exist_ok=True)
    paths = captures(roots)
    index = {run_id(p): str(p) for p in paths}
    (out / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        jobs = [pool.submit(snapshot_one, repo, p, m, out) for p in paths for m in modes]
        for done, job in enumerate(concurrent.futures.as_completed(jobs), 1):
            capture, code, mode = job.result()
            if done % 50 == 0 or done == len(jobs):
                print(f"  {done}/{len(jobs)} runs", file=sys.stderr)
    print(f"{len(paths)} captures x {len(modes)} modes -> {out}")
    return 0


def normalised(path: Path) -> bytes:
    if path.name == "summary.json":
        summary = json.loads(path.read_text(encoding="utf-8"))
        for key in VOLATILE_SUMMARY_KEYS:
            summary.pop(key, None)
        return json.dumps(summary, indent=1, sort_keys=True).encode()
    if path.name == "stderr_tail":
        return b""                        # progress and timing text; the exit code is compared
    return path.read_bytes()


def diff(before: Path, after: Path, max_print: int) -> int:
    old = {p.relative_to(before) for p in before.rglob("*") if p.is_file()}
    new = {p.relative_to(after) for p in after.rglob("*") if p.is_file()}
    problems = [f"only in {before}: {p}" for p in sorted(old - new)]
    problems += [f"only in {after}: {p}" for p in sorted(new - old)]
    same = 0
    for rel in sorted(old & new):
        if normalised(before / rel) == normalised(after / rel):
            same += 1
        else:
            problems.append(f"differs: {rel}")
    for line in problems[:max_print]:
        print(line)
    if len(problems) > max_print:
        print(f"... and {len(problems) - max_print} more")
    print(f"{same} files identical, {len(problems)} differences")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    snap = sub.add_parser("snapshot", help="run a checkout's analyze on every capture and keep its outputs")
    snap.add_argument("--repo", type=Path, default=HERE, help="the checkout to run (default: this one)")
    snap.add_argument("-o", "--out", type=Path, required=True)
    snap.add_argument("--captures", type=Path, nargs="*",
                      default=[HERE / "sample_captures", HERE.parent / "shared" / "captures"],
                      help="files or folders searched for captures (default: samples and ../shared/captures)")
    snap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    snap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    cmp_ = sub.add_parser("diff", help="compare two snapshots (run_s ignored)")
    cmp_.add_argument("before", type=Path)
    cmp_.add_argument("after", type=Path)
    cmp_.add_argument("--max-print", type=int, default=40)
    args = parser.parse_args(argv)
    if args.command == "snapshot":
        modes = [m for m in args.modes.split(",") if m]
        unknown = [m for m in modes if m not in MODES]
        if unknown:
            parser.error(f"unknown modes: {', '.join(unknown)}")
        return snapshot(args.repo.resolve(), args.captures, args.out.resolve(), modes, args.workers)
    return diff(args.before, args.after, args.max_print)


if __name__ == "__main__":
    sys.exit(main())
