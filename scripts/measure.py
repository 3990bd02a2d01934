"""Measuring one child process (wall, CPU, peak memory of its whole tree) and what benchmarks share.

Used by benchmark.py (one capture), matrix.py (--matrix: every shape) and hostile.py (--hostile).

Each tool runs as its own child process, one at a time, so that its peak RSS is its own:
wall time from time.perf_counter around Popen .. os.wait4(pid), CPU time and ru_maxrss from the
rusage that os.wait4 returns for that child. A sampler thread also sums the proportional set size
(PSS, /proc/PID/smaps_rollup) of the child's whole process tree 10 times a second, because
ru_maxrss is the peak of the largest single process, not of a parent and its workers together
(voipwatch --jobs N). "peak MB" = max(ru_maxrss, sampled tree PSS); the memory targets use it.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import lzma
import os
import re
import resource
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import BinaryIO, Iterator

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GEN = HERE / "gen_site_capture.py"

# ----------------------------------------------------------------------------- capture

READ_BYTES = 16 << 20


_GZIP, _ZSTD, _XZ = b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"\xfd7zXZ\x00"


@contextlib.contextmanager
def open_capture(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A capture file's bytes, decompressed when it is gzip, zstd or xz (known by its magic); zstd
    through the zstd tool (the zstandard module is not a dependency)."""
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(_GZIP):
        with gzip.open(path, "rb") as g:
            yield g
    elif magic.startswith(_XZ):
        with lzma.open(path, "rb") as x:
            yield x
    elif magic.startswith(_ZSTD):
        proc = subprocess.Popen(["zstd", "-q", "-dc", str(path)], stdout=subprocess.PIPE)
        try:
            yield proc.stdout
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    else:
        with open(path, "rb") as f:
            yield f


def count_frames(path: str | os.PathLike) -> int:
    """Number of frames in a classic pcap or pcapng file (gzip, zstd or xz compressed or not), from
    the record/block headers only.

    The file is read 16 MiB at a time, never mapped: a child started by this process inherits its
    peak RSS as the floor of its own ru_maxrss (Linux keeps the high-water mark across fork and
    exec), so this process must stay small.
    """
    with open_capture(path) as f:
        magic = f.read(4)
        if not magic:
            return 0
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            caplen = struct.Struct("<I" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">I").unpack_from
            f.read(20)
            return _count_records(f, b"", 16, lambda buf, off: (16 + caplen(buf, off + 8)[0], 1))
        if magic == b"\x0a\x0d\x0d\x0a":
            return _count_records(f, magic, 12, _pcapng_block())
        raise ValueError(f"{path}: not a pcap or pcapng file (magic {magic.hex()})")


def _pcapng_block():
    """(total length, 1 if it holds a frame) of the pcapng block at an offset; the byte order is the
    section's (its SHB's byte-order magic)."""
    endian = "<"

    def block(buf: bytes, off: int) -> tuple[int, int]:
        nonlocal endian
        if buf[off:off + 4] == b"\x0a\x0d\x0d\x0a":
            endian = "<" if buf[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        btype, blen = struct.unpack_from(endian + "II", buf, off)
        if blen < 12:
            raise ValueError(f"corrupt pcapng block (length {blen})")
        return blen, btype in (2, 3, 6)              # obsolete packet, simple packet, enhanced packet
    return block


def _count_records(f: BinaryIO, buf: bytes, header: int, record) -> int:
    """Sum of record(buf, off)[1] over the records that start with buf and go on in f (read forward
    only, so that a decompressing stream works); record(...)[0] is a record's length and needs
    `header` bytes (a pcapng SHB needs 12, its byte-order magic included)."""
    pos, n = 0, 0
    while True:
        if pos > len(buf):                           # the last record ends past the bytes read
            skip = pos - len(buf)
            while skip:
                got = len(f.read(min(skip, READ_BYTES)))
                if not got:
                    return n
                skip -= got
            buf, pos = b"", 0
        if pos + header > len(buf):
            more = f.read(READ_BYTES)
            if not more:
                return n
            buf, pos = buf[pos:] + more, 0
            continue
        size, frames = record(buf, pos)
        n += frames
        pos += size


def warm_cache(path: str | os.PathLike) -> None:
    """Read the file once so that no tool pays the first cold read."""
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 24):
            pass


def generated_capture(workdir: Path, packets: int, seed: int, profile: str, extra: list[str]) -> Path:
    """The generator's capture for these parameters, generated once and then reused."""
    gen_hash = hashlib.sha256(GEN.read_bytes()).hexdigest()[:16]
    key_src = json.dumps(dict(packets=packets, seed=seed, profile=profile, extra=extra, gen=gen_hash),
                         sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:12]
    cap_dir = workdir / "captures"
    pcap = cap_dir / f"site-{profile}-{packets}-s{seed}-{key}.pcap"
    truth = pcap.with_suffix(".truth.json")
    if pcap.is_file() and truth.is_file():
        print(f"capture: {pcap} (cached)")
        return pcap
    for old in cap_dir.glob(f"site-{profile}-{packets}-s{seed}-*.*"):   # stale: older generator/params
        if old.name.split("-")[-1].split(".")[0] != key:
            old.unlink()
    tmp = cap_dir / f".tmp-{key}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cmd = [sys.executable, str(GEN), "-o", str(tmp / pcap.name), "--packets", str(packets),
           "--seed", str(seed), "--profile", profile, *extra]
    print("generating:", shlex.join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"generated in {time.perf_counter() - t0:.1f} s")
    os.replace(tmp / truth.name, truth)
    os.replace(tmp / pcap.name, pcap)
    shutil.rmtree(tmp, ignore_errors=True)
    return pcap


# ----------------------------------------------------------------------------- measuring

def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    out += [int(x) for x in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def _kb(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class TreeSampler(threading.Thread):
    """Peak of the summed PSS and RSS of a process tree, sampled every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_pss_kb = self.peak_rss_kb = self.max_procs = 0
        self._stop_evt = threading.Event()

    def run(self) -> None:
        while not self._stop_evt.is_set():
            self.sample()
            self._stop_evt.wait(self.interval)

    def sample(self) -> None:
        pids = _tree(self.pid)
        pss = sum(_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
        rss = sum(_kb(f"/proc/{p}/status", "VmRSS:") for p in pids)
        self.peak_pss_kb = max(self.peak_pss_kb, pss)
        self.peak_rss_kb = max(self.peak_rss_kb, rss)
        self.max_procs = max(self.max_procs, len(pids))

    def stop(self) -> None:
        self._stop_evt.set()
        self.join()


def _machine_busy_s() -> float:
    """CPU-seconds the whole machine has spent busy (all CPUs), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = v[3] + (v[4] if len(v) > 4 else 0)          # idle + iowait
    busy = sum(v[:8]) - idle                            # guest time is already in user
    return busy / os.sysconf("SC_CLK_TCK")


def _self_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)      # the child leads its own session: only its tree
    except ProcessLookupError:
        pass


def run_measured(cmd: list[str], stdout: Path, stderr: Path, env: dict | None = None,
                 cwd: str | None = None, timeout: float | None = None) -> dict:
    """Run one child to completion (or kill its process group after `timeout` s); its wall/CPU
    time and peak memory."""
    busy0, self0 = _machine_busy_s(), _self_cpu_s()
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd,
                                start_new_session=True)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        timer = threading.Timer(timeout, _kill_group, (proc.pid,)) if timeout else None
        if timer:
            timer.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        except BaseException:
            _kill_group(proc.pid)
            proc.wait()
            sampler.stop()
            raise
        finally:
            if timer:
                timer.cancel()
        wall = time.perf_counter() - t0
        sampler.stop()
        _kill_group(proc.pid)               # workers left behind by a killed or sloppy child
    others = _machine_busy_s() - busy0 - (_self_cpu_s() - self0) - (ru.ru_utime + ru.ru_stime)
    rc = os.waitstatus_to_exitcode(status)
    timed_out = bool(timeout) and wall >= timeout and rc < 0
    proc.returncode = rc              # reaped by wait4 already: keep Popen from waiting again
    maxrss_mb = ru.ru_maxrss / 1024   # Linux: kilobytes
    pss_mb = sampler.peak_pss_kb / 1024
    return dict(
        cmd=shlex.join(cmd), returncode=rc, timed_out=timed_out, wall_s=round(wall, 3),
        cpu_s=round(ru.ru_utime + ru.ru_stime, 3), user_s=round(ru.ru_utime, 3), sys_s=round(ru.ru_stime, 3),
        maxrss_mb=round(maxrss_mb, 1), tree_pss_peak_mb=round(pss_mb, 1),
        tree_rss_peak_mb=round(sampler.peak_rss_kb / 1024, 1), processes=max(1, sampler.max_procs),
        peak_mb=round(max(maxrss_mb, pss_mb), 1), others_cpu_s=round(max(0.0, others), 2),
        stdout=str(stdout), stderr=str(stderr))


def tail(path: str | Path, n: int = 8) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    lines = [x for x in lines if "Running as user" not in x]
    return "\n".join(lines[-n:])


def summarize(runs: list[dict], packets: int) -> dict:
    """The median-wall repeat's figures, with the highest peak memory of all repeats."""
    ok = [r for r in runs if r["returncode"] == 0]
    if not ok:
        return dict(ok=False)
    ok.sort(key=lambda r: r["wall_s"])
    med = ok[(len(ok) - 1) // 2]
    return dict(ok=True, wall_s=med["wall_s"], cpu_s=med["cpu_s"],
                pps=round(packets / med["wall_s"]) if med["wall_s"] > 0 else None,
                pps_cpu=round(packets / med["cpu_s"]) if med["cpu_s"] > 0 else None,
                maxrss_mb=max(r["maxrss_mb"] for r in ok),
                tree_pss_peak_mb=max(r["tree_pss_peak_mb"] for r in ok),
                peak_mb=max(r["peak_mb"] for r in ok),
                processes=max(r["processes"] for r in ok),
                wall_s_all=[r["wall_s"] for r in runs])


# ----------------------------------------------------------------------------- voipwatch

def voipwatch_command(explicit: str | None) -> tuple[list[str], dict]:
    env = dict(os.environ)
    if explicit:
        return shlex.split(explicit), env
    exe = shutil.which("voipwatch")
    if exe:
        return [exe], env
    # not installed: run the checkout's package, byte-compiled first as `pip install` does (with
    # PYTHONDONTWRITEBYTECODE set, every run would otherwise compile every module again)
    subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(REPO / pkg) for pkg in ("voipwatch", "dissectors",
                                                                                          "detectors"))],
                   check=True, stdout=subprocess.DEVNULL)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return [sys.executable, "-m", "voipwatch"], env


def probe_voipwatch(cmd: list[str], env: dict) -> tuple[str | None, bool]:
    """(None when `voipwatch analyze --help` works, else why not; whether analyze has --jobs)."""
    try:
        p = subprocess.run([*cmd, "analyze", "--help"], env=env, capture_output=True, text=True, timeout=120)
    except FileNotFoundError as e:
        return f"not found: {e}", False
    except subprocess.TimeoutExpired:
        return "`analyze --help` timed out", False
    if p.returncode != 0:
        msg = (p.stderr or p.stdout).strip().splitlines()
        return f"`{shlex.join(cmd)} analyze --help` exited {p.returncode}: " + (msg[-1] if msg else ""), False
    return None, "--jobs" in p.stdout


# ----------------------------------------------------------------------------- stream check

TSHARK_STREAM = re.compile(
    r"^\s*(?P<start>\S+)\s+(?P<end>\S+)\s+(?P<src>\S+)\s+(?P<sport>\d+)\s+(?P<dst>\S+)\s+(?P<dport>\d+)\s+"
    r"(?P<ssrc>0x[0-9A-Fa-f]+)\s+(?P<payload>.+?)\s+(?P<packets>\d+)\s+(?P<lost>-?\d+)\s+\(")


def parse_tshark_streams(text: str) -> dict[tuple, dict]:
    out = {}
    for line in text.splitlines():
        m = TSHARK_STREAM.match(line)
        if m:
            key = (m["src"], int(m["sport"]), m["dst"], int(m["dport"]), int(m["ssrc"], 16))
            out[key] = dict(packets=int(m["packets"]), lost=int(m["lost"]), payload=m["payload"])
    return out


