"""Soak and streaming-throughput benchmarks of the live path (`voipwatch monitor`), not timed tests.

  python scripts/soak.py soak [--capture FILE]        # 24 h of a 500-phone site through the streaming path
  python scripts/soak.py throughput [--capture FILE]  # packets/s of the streaming path, 1,000 concurrent calls

soak: generates (or takes) the 24-hour soak capture of scripts/gen_site_capture.py, replays it at full
speed through voipwatch.live.monitor.Monitor (the code `voipwatch monitor` runs: streaming pipeline,
detectors, live table writers), samples the resident set size every 50,000 frames, and reports peak
and final RSS and the growth after the site's steady state (the second half of the capture) — memory
must stay flat. throughput: the same path on a busy-hour capture with 1,000 concurrent G.711 calls,
reporting packets per second of CPU time on one core (target: at least 100,000).
Results go to stdout and, with --json, to a file.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from voipwatch.capture import read_capture  # noqa: E402
from voipwatch.live.monitor import Monitor  # noqa: E402
from voipwatch.config import load_settings  # noqa: E402

SAMPLE_EVERY = 50_000
PAGE_MB = os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE_MB


def generate(args: list[str], path: Path) -> None:
    if not path.exists():
        subprocess.run([sys.executable, str(REPO / "scripts" / "gen_site_capture.py"), "-o", str(path), "-q",
                        "--no-truth", *args], check=True)


def replay(capture: Path, out: Path) -> dict:
    monitor = Monitor(load_settings(), out, stats_every_s=3600.0)
    samples = []
    first_ts = None

    def frames():
        nonlocal first_ts
        for n, item in enumerate(read_capture(str(capture)), 1):
            if first_ts is None and hasattr(item, "ts"):
                first_ts = item.ts
            if n % SAMPLE_EVERY == 0:
                samples.append({"frame": n, "capture_h": round((item.ts - first_ts) / 3600, 3), "rss_mb": round(rss_mb(), 1)})
            yield item

    cpu0, wall0 = time.process_time(), time.perf_counter()
    final = monitor.run(frames())
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    monitor.close()
    return {"capture": str(capture), "packets": final["packets"], "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
            "pps_cpu": round(final["packets"] / cpu), "pps_wall": round(final["packets"] / wall),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "final_rss_mb": round(rss_mb(), 1), "alerts": final["alerts"], "written": final["written"],
            "caps_hit": final["caps_hit"], "samples": samples}


def soak(args) -> dict:
    capture = Path(args.capture) if args.capture else Path(args.workdir) / f"soak-{24 * args.days}h.pcap"
    if not args.capture:
        generate(["--profile", "soak", "--duration-s", str(86400 * args.days)], capture)
    result = replay(capture, Path(args.workdir) / "soak-out")
    # Steady state: after the first day's busy hour has built the site's working set.
    steady = [s["rss_mb"] for s in result["samples"] if s["capture_h"] >= args.steady_from_h]
    result["steady_state_growth_mb"] = round(max(steady) - min(steady), 1) if steady else None
    result["flat"] = steady != [] and result["steady_state_growth_mb"] <= args.flat_mb
    return result


def throughput(args) -> dict:
    capture = Path(args.capture) if args.capture else Path(args.workdir) / "busy-1000-calls.pcap"
    if not args.capture:
        generate(["--profile", "bench", "--calls-concurrent", "1000", "--packets", str(args.packets)], capture)
    result = replay(capture, Path(args.workdir) / "throughput-out")
    result.pop("samples")
    result["target_pps"] = 100_000
    result["meets_target"] = result["pps_cpu"] >= 100_000
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["soak", "throughput"])
    parser.add_argument("--capture", help="use this capture instead of generating one")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "voipwatch-soak"))
    parser.add_argument("--packets", type=int, default=1_000_000, help="throughput capture size")
    parser.add_argument("--flat-mb", type=float, default=20.0, help="allowed RSS growth in the steady state")
    parser.add_argument("--steady-from-h", type=float, default=16.0,
                        help="steady state starts this many hours into the capture (after the first busy hour)")
    parser.add_argument("--days", type=int, default=1, help="soak capture length in days")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    result = soak(args) if args.what == "soak" else throughput(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
