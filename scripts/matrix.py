"""benchmark.py --matrix: tshark and voipwatch on every shape of the same traffic, in the same run.

From one generated capture (and, with --lab-capture, one capture of real SIPp traffic) shapes.py
makes every shape people bring (cached by the source's hash). shapes.check_shape checks each with
capinfos (file type, link type, frames). Then, for each repeat and each shape, one child at a time:
`tshark -q -n -r FILE -z rtp,streams` and `voipwatch analyze FILE --jobs N` for each N in --jobs.
The table shows the median-wall repeat and the highest peak memory, and for each shape whether
tshark found the same RTP streams as on the original and whether voipwatch wrote the same tables
(shape_compare.py says what is mapped back first), with the targets of issue 13.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from measure import (HERE, count_frames, generated_capture, parse_tshark_streams, probe_voipwatch, run_measured,
                     summarize, tail, voipwatch_command, warm_cache)
from shape_compare import compare_outputs, compare_streams
from shapes import BY_NAME, SHAPES, Shape, check_shape

# Issue 13: on every shape, voipwatch >= 4x tshark's packets/s on one core, >= 6x with --jobs 2,
# and peak memory at most half of tshark's
TARGET_1CORE, TARGET_MULTI, TARGET_MEM = 4.0, 6.0, 0.5


def _make_shapes(source: Path, cache: Path, names: list[str] | None) -> dict[str, dict]:
    """The shapes of one source, made (or found in the cache) by shapes.py in its own process, so
    that this one stays small (its peak RSS would be the floor of every measured child's)."""
    listing = cache / f".made-{os.getpid()}.json"
    cmd = [sys.executable, str(HERE / "shapes.py"), str(source), "-o", str(cache), "--json", str(listing)]
    if names:
        cmd += ["--shapes", ",".join(names)]
    subprocess.run(cmd, check=True)
    made = json.loads(listing.read_text())
    listing.unlink()
    return made


def _tshark_command(tshark: str, shape: Shape, path: Path) -> list[str]:
    if shape.tshark_reads:
        return [tshark, "-q", "-n", "-r", str(path), "-z", "rtp,streams"]
    # tshark 4.0 does not read xz: it reads the decompressor's output (both in the measured tree)
    return ["sh", "-c", f"{shlex.join([*shape.decompressor, str(path)])} | "
                        f"{shlex.join([tshark, '-q', '-n', '-r', '-', '-z', 'rtp,streams'])}"]


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _target(tshark_ok: bool, voipwatch_ok: bool, value: float | None, threshold: float, higher: bool) -> str:
    """PASS / FAIL; a shape voipwatch cannot analyse fails; N/A only when tshark gave no reference."""
    if not tshark_ok or value is None and voipwatch_ok:
        return "N/A"
    if not voipwatch_ok:
        return "FAIL"
    return "PASS" if (value >= threshold if higher else value <= threshold) else "FAIL"


def measure_source(label: str, source: Path, args, vw_cmd: list[str], vw_env: dict, workdir: Path) -> dict:
    """Every shape of one source capture: made, checked, measured, compared."""
    names = args.shapes.split(",") if args.shapes else None
    made = _make_shapes(source, workdir / "shapes", names)
    shapes = [s for s in SHAPES if s.name in made and (names is None or s.name in names or s.name == "original")]
    frames_original = count_frames(made["original"]["path"])
    base = workdir / "matrix" / label
    shutil.rmtree(base, ignore_errors=True)
    (base / "logs").mkdir(parents=True)
    rows: dict[str, dict] = {}
    left_out = {k: v for k, v in made["original"]["stats"].items() if k.startswith("left_out")}
    print(f"\n{label}: {source} ({frames_original:,} frames in the original shape"
          + (f"; left out, as no link type without Ethernet carries them: {left_out}" if left_out else "") + ")")
    for shape in shapes:
        path = Path(made[shape.name]["path"])
        frames = count_frames(path)
        problems = check_shape(shape, path, frames_original, args.capinfos)
        if frames != frames_original:
            problems.append(f"{frames} frames counted, the original has {frames_original}")
        warm_cache(path)
        rows[shape.name] = dict(shape=shape.name, title=shape.title, path=str(path), bytes=path.stat().st_size,
                                frames=frames, conversion=made[shape.name]["stats"], check_problems=problems,
                                tshark_runs=[], voipwatch_runs={n: [] for n in args.jobs})
        print(f"  {shape.name:<11} {path.name:<24} {frames:>10,} frames  "
              + ("capinfos: ok" if not problems else "CHECK FAILED: " + "; ".join(problems)))

    for rep in range(args.repeat):
        print(f"  repeat {rep + 1}/{args.repeat}", flush=True)
        for shape in shapes:
            row, path = rows[shape.name], Path(rows[shape.name]["path"])
            log = base / "logs" / f"{shape.name}-r{rep}"
            r = run_measured(_tshark_command(args.tshark, shape, path), Path(f"{log}-tshark.out"),
                             Path(f"{log}-tshark.err"), timeout=args.timeout)
            row["tshark_runs"].append(r)
            line = f"    {shape.name:<11} tshark {r['wall_s']:6.2f} s"
            for n in args.jobs:
                out = base / shape.name / f"j{n}"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                cmd = [*vw_cmd, "analyze", str(path), "-o", str(out), "--format", "csv", "--jobs", str(n)]
                v = run_measured(cmd, Path(f"{log}-j{n}.out"), Path(f"{log}-j{n}.err"), env=vw_env,
                                 timeout=args.timeout)
                row["voipwatch_runs"][n].append(v)
                line += f"  j{n} {v['wall_s']:6.2f} s" + ("" if v["returncode"] == 0 else f" (exit {v['returncode']})")
            print(line, flush=True)

    _judge(rows, shapes, base, args)
    return dict(label=label, source=str(source), frames=frames_original, shapes=[rows[s.name] for s in shapes])


def _judge(rows: dict[str, dict], shapes: list[Shape], base: Path, args) -> None:
    """Medians, ratios, targets and the comparisons with the original, into each row."""
    multi = max((n for n in args.jobs if n >= 2), default=None)
    ref_streams = None
    for shape in shapes:
        row = rows[shape.name]
        ts = summarize(row["tshark_runs"], row["frames"])
        row["tshark"] = ts
        vw = {n: summarize(runs, row["frames"]) for n, runs in row["voipwatch_runs"].items()}
        row["voipwatch"] = vw
        for n, runs in row["voipwatch_runs"].items():
            failed = [r for r in runs if r["returncode"] != 0]
            if failed:
                vw[n]["failure"] = dict(cmd=failed[0]["cmd"], returncode=failed[0]["returncode"],
                                        timed_out=failed[0]["timed_out"], stderr_tail=tail(failed[0]["stderr"], 3))
        ok_vw = [s for s in vw.values() if s.get("ok")]
        peak = max((s["peak_mb"] for s in ok_vw), default=None)
        row["voipwatch_peak_mb"] = peak
        row["ratios"] = {f"j{n}": _ratio(s.get("pps"), ts.get("pps")) for n, s in vw.items()}
        row["mem_ratio"] = _ratio(peak, ts.get("peak_mb")) if ts.get("ok") else None
        ts_ok = bool(ts.get("ok"))
        row["targets"] = dict(
            one_core=_target(ts_ok, bool(vw.get(1, {}).get("ok")), row["ratios"].get("j1"), TARGET_1CORE, True),
            multi=_target(ts_ok, bool(multi and vw[multi].get("ok")), row["ratios"].get(f"j{multi}"), TARGET_MULTI,
                          True),
            memory=_target(ts_ok, len(ok_vw) == len(vw), row["mem_ratio"], TARGET_MEM, False))
        # tshark's streams against the original's (addresses mapped back for IPv6)
        streams = parse_tshark_streams(Path(row["tshark_runs"][0]["stdout"]).read_text()) if ts.get("ok") else None
        if shape.name == "original":
            ref_streams = streams
            row["tshark_streams"] = f"{len(streams)} streams" if streams is not None else "tshark failed"
        elif streams is None or ref_streams is None:
            row["tshark_streams"] = "not compared (tshark failed)"
        else:
            differ = compare_streams(ref_streams, streams, shape)
            row["tshark_streams"] = "same" if differ is None else differ
        # voipwatch's outputs: --jobs 1 against the original's --jobs 1, --jobs N against --jobs 1
        row["outputs"] = {}
        if not vw.get(1, {}).get("ok"):
            continue
        if shape.name != "original" and rows["original"]["voipwatch"].get(1, {}).get("ok"):
            row["outputs"]["vs_original"] = compare_outputs(base / "original" / "j1", base / shape.name / "j1", shape)
        for n in args.jobs:
            if n != 1 and vw[n].get("ok"):
                row["outputs"][f"j{n}_vs_j1"] = compare_outputs(base / shape.name / "j1", base / shape.name / f"j{n}",
                                                                BY_NAME["original"])


def _same(row: dict) -> tuple[str, str]:
    """(tables, alerts) as shown: same / DIFFER / +added/-missing alerts / - (nothing to compare);
    * marks a shape where --jobs N wrote other outputs than --jobs 1."""
    star = "*" if any(k != "vs_original" and (v["tables"] or v["others"]) for k, v in row["outputs"].items()) else ""
    if row["shape"] == "original":
        return ("ref" if row["voipwatch"].get(1, {}).get("ok") else "-") + star, "ref"
    vs = row["outputs"].get("vs_original")
    if vs is None:
        return "-", "-"
    tables = ("same" if not vs["tables"] else "DIFFER") + star
    plus = sum(v for v in vs["alerts"].values() if v > 0)
    minus = -sum(v for v in vs["alerts"].values() if v < 0)
    alerts = "same" if not vs["others"] else (f"+{plus}/-{minus}" if plus or minus else "DIFFER")
    return tables, alerts


def print_table(result: dict, multi: int | None) -> None:
    shown_multi = f"j{multi}" if multi else "jN"
    print(f"\n{result['label']}: {Path(result['source']).name}, {result['frames']:,} frames; median of the repeats, "
          f"peak = highest; x = voipwatch / tshark")
    hdr = (f"{'shape':<11}{'frames':>10}{'tshark s':>9}{'j1 s':>7}{'j1 pkt/s':>10}{'j1 x':>6}"
           f"{shown_multi + ' s':>7}{shown_multi + ' x':>6}{'peak MB':>8}{'tshark MB':>10}{'mem x':>6}"
           f"  {'tshark streams':<15}{'tables':<8}{'alerts':<10}{'targets 4x/6x/mem'}")
    print(hdr)
    print("-" * len(hdr))
    notes = []
    for row in result["shapes"]:
        ts, vw = row["tshark"], row["voipwatch"]
        j1, jm = vw.get(1, {}), vw.get(multi, {}) if multi else {}
        f = lambda v, fmt: format(v, fmt) if v is not None else "-"      # noqa: E731
        tables, alerts = _same(row)
        t = row["targets"]
        print(f"{row['shape']:<11}{row['frames']:>10,}{f(ts.get('wall_s'), '.2f'):>9}"
              f"{f(j1.get('wall_s'), '.2f'):>7}{f(j1.get('pps'), ','):>10}{f(row['ratios'].get('j1'), '.2f'):>6}"
              f"{f(jm.get('wall_s'), '.2f'):>7}{f(row['ratios'].get(shown_multi), '.2f'):>6}"
              f"{f(row['voipwatch_peak_mb'], '.0f'):>8}{f(ts.get('peak_mb'), '.0f'):>10}{f(row['mem_ratio'], '.2f'):>6}"
              f"  {row['tshark_streams'][:14]:<15}{tables:<8}{alerts[:9]:<10}"
              f"{t['one_core']}/{t['multi']}/{t['memory']}")
        for n, s in vw.items():
            if "failure" in s:
                fl = s["failure"]
                why = "killed by --timeout" if fl["timed_out"] else f"exit {fl['returncode']}"
                last = fl["stderr_tail"].splitlines()[-1:] or [""]
                notes.append(f"{row['shape']}: voipwatch --jobs {n} {why}: {last[0]}\n    {fl['cmd']}")
        if row["check_problems"]:
            notes.append(f"{row['shape']}: shape check failed: {'; '.join(row['check_problems'])}")
        if len(row["tshark_streams"]) > 14:
            notes.append(f"{row['shape']}: tshark streams: {row['tshark_streams']}")
        vs = row["outputs"].get("vs_original")
        if vs and (vs["tables"] or vs["others"]):
            vlan_only = BY_NAME[row["shape"]].vlan != "keep" and vs["alerts"] and not vs["tables"] and \
                all(k.startswith("cross_vlan.") for k in vs["alerts"])
            notes.append(f"{row['shape']}: differs from the original: {', '.join(vs['tables'] + vs['others'])}"
                         + (f"; alerts only one side raised: {vs['alerts']}" if vs["alerts"] else "")
                         + (" (cross_vlan judges the VLAN stacks, which this shape changes)" if vlan_only else ""))
        for key, cmp_ in row["outputs"].items():
            if key != "vs_original" and (cmp_["tables"] or cmp_["others"]):
                notes.append(f"{row['shape']}: {key}: {', '.join(cmp_['tables'] + cmp_['others'])}")
    compared = [r for r in result["shapes"] if r["outputs"].get("vs_original") is not None]
    same = [r["shape"] for r in compared if not r["outputs"]["vs_original"]["tables"]]
    if any(k != "vs_original" and (v["tables"] or v["others"]) for r in result["shapes"] for k, v in r["outputs"].items()):
        print("*: the outputs of --jobs N differ from --jobs 1 on that shape (see the notes)")
    print(f"tables identical to the original's: {len(same)} of {len(compared)} other shapes"
          + (f" (not compared: voipwatch failed on {', '.join(r['shape'] for r in result['shapes'] if r['shape'] != 'original' and r not in compared)})"
             if len(compared) < len(result["shapes"]) - 1 else ""))
    for n in notes:
        print("  note: " + n)


def run(args, workdir: Path) -> int:
    """The --matrix run; the exit code (2: tshark failed on the original, 1: --fail-on-target and a
    target failed)."""
    vw_cmd, vw_env = voipwatch_command(args.voipwatch)
    problem, has_jobs = probe_voipwatch(vw_cmd, vw_env)
    if problem or not has_jobs:
        print(f"error: voipwatch cannot be measured: {problem or 'analyze has no --jobs option'}", file=sys.stderr)
        return 2
    if args.capture:
        sources = [("capture", Path(args.capture).resolve())]
    else:
        sources = [("generated", generated_capture(workdir, args.packets, args.seed, args.profile,
                                                   shlex.split(args.gen_args)))]
    if args.lab_capture:
        sources.append(("lab", Path(args.lab_capture).resolve()))
    missing = [str(p) for _, p in sources if not p.is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    results = [measure_source(label, path, args, vw_cmd, vw_env, workdir) for label, path in sources]
    multi = max((n for n in args.jobs if n >= 2), default=None)
    for result in results:
        print_table(result, multi)
    runs = [r for res in results for row in res["shapes"]
            for r in row["tshark_runs"] + [x for v in row["voipwatch_runs"].values() for x in v]]
    busy = [r for r in runs if r["wall_s"] > 0 and r["others_cpu_s"] / r["wall_s"] > 0.1]
    if busy:
        worst = max(r["others_cpu_s"] / r["wall_s"] for r in busy)
        print(f"WARNING: other processes used CPU during {len(busy)} of {len(runs)} run(s) (up to {worst:.2f} CPU "
              "on average): wall times and ratios may be off; rerun on a quiet machine")
    print(f"targets (issue 13): voipwatch --jobs 1 >= {TARGET_1CORE:g}x tshark's packets/s, --jobs {multi or 'N'} "
          f">= {TARGET_MULTI:g}x, peak memory (worst voipwatch run) <= {TARGET_MEM:g}x tshark's")
    if args.json:
        tshark_version = subprocess.run([args.tshark, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        doc = dict(kind="voipwatch-benchmark-matrix", measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   machine=dict(cpus=os.cpu_count(), python=platform.python_version(), tshark=tshark_version),
                   voipwatch=shlex.join(vw_cmd), jobs=args.jobs, repeat=args.repeat,
                   targets=dict(one_core=TARGET_1CORE, multi=TARGET_MULTI, multi_jobs=multi, memory=TARGET_MEM),
                   sources=results)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"JSON: {args.json}")
    if any(not row["tshark"].get("ok") for res in results for row in res["shapes"] if row["shape"] == "original"):
        return 2
    if args.fail_on_target and any(v != "PASS" for res in results for row in res["shapes"]
                                   for v in row["targets"].values()):
        return 1
    return 0
