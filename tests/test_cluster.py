"""Rotated captures stay one capture: a capture cut into 2, 5 and 20 files (editcap -c, so calls and
RTP streams cross the cuts) gives the same tables, alerts and summary as the whole file, in one
process and when the files are decoded apart and stitched (analyze --cluster), on a LocalCluster
and on a real `dask scheduler` with two `dask worker` processes.

The stitching is the code the workers and the client run (cluster.decode, cluster.stitch), so most
checks call it in this process; the tests marked slow run it on Dask.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from voipwatch.analyze import analyze_files, write_outputs
from voipwatch.capture import read_capture
from voipwatch.cluster.decode import decode_capture
from voipwatch.cluster.inputs import expand_captures
from voipwatch.cluster.run import ClusterError, connect, decode_on
from voipwatch.batch.candidates import group_candidates
from voipwatch.cluster import stitch
from voipwatch.cluster.stitch import _keyed_items as keyed_items
from voipwatch.cluster.stitch import feed_parts
from voipwatch.config import load_settings
from voipwatch.records import Frame
from voipwatch.tables import TABLES, read_table

REPO = Path(__file__).resolve().parents[1]
SMALL_OFFICE = REPO / "sample_captures" / "small-office.pcap"
# A generated site (scripts/gen_site_capture.py): 20 concurrent calls of 2-8 s, so that every cut
# lands inside calls and streams; registrations, OPTIONS, DNS and a scan every 8 s for the detectors.
SITE_PACKETS = 24_000
SITE_ARGS = ["--packets", str(SITE_PACKETS), "--calls-concurrent", "20", "--call-duration-s", "2", "8",
             "--scan-every-s", "8", "--reg-spread-s", "10", "--options-every-s", "5", "-q", "--no-truth"]
SPLITS = (2, 5, 20)
# summary.json fields that name the inputs or time the run.
RUN_FIELDS = ("inputs", "run_s", "captures_failed")
PCAP_HEADER_BYTES = 24
RECORD_HEADER_BYTES = 16


# --- captures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("site") / "site.pcap"
    subprocess.run([sys.executable, str(REPO / "scripts" / "gen_site_capture.py"), "-o", str(path), *SITE_ARGS],
                   check=True, timeout=300)
    return path


@pytest.fixture(scope="module")
def captures(site) -> dict[str, Path]:
    return {"small-office": SMALL_OFFICE, "site": site}


def frame_count(path: Path) -> int:
    return sum(1 for item in read_capture(str(path)) if type(item) is Frame)


@pytest.fixture(scope="module")
def rotated(captures, editcap, tmp_path_factory):
    """rotated(name, n): the capture cut by `editcap -c` into n files, in their order."""
    made: dict[tuple[str, int], list[str]] = {}

    def get(name: str, n: int) -> list[str]:
        if (name, n) not in made:
            out = tmp_path_factory.mktemp(f"{name}-{n}")
            per_file = math.ceil(frame_count(captures[name]) / n)
            subprocess.run([editcap, "-c", str(per_file), str(captures[name]), str(out / "part.pcap")], check=True,
                           timeout=120)
            files = sorted(str(p) for p in out.iterdir())
            assert len(files) == n
            made[name, n] = files
        return made[name, n]
    return get


# --- outputs -------------------------------------------------------------------------------------

def outputs(result, out: Path) -> tuple[dict[str, bytes], dict]:
    """Every table and alerts.jsonl byte for byte, and summary.json without the run's own fields."""
    write_outputs(result, out)
    files = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != "summary.json"}
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    for name in RUN_FIELDS:
        summary.pop(name, None)
    return files, summary


def stitched(paths: list[str]):
    """The analysis analyze --cluster makes, its workers' share run here: each file decoded on its own
    (what analyze_files does with several files in batch mode)."""
    parts = [decode_capture(p) for p in paths]
    assert all(part.error is None for part in parts)
    return analyze_files(paths, load_settings(), feed=lambda analyzer, rtp: feed_parts(parts, analyzer, rtp))


def per_frame(paths: list[str], out: Path):
    """Outputs of the per-frame merge of the files (voipwatch.capture.read_captures, the streaming
    path, which writes what the batch path writes: tests/test_parity.py), as a batch run's."""
    files, summary = outputs(analyze_files(paths, load_settings(), mode="stream"), out)
    assert summary["mode"] == "stream"
    return files, {**summary, "mode": "batch"}


@pytest.fixture(scope="module")
def whole(captures, tmp_path_factory):
    """whole(name): (outputs, output directory) of the one-process analysis of the uncut capture."""
    done = {}

    def get(name: str):
        if name not in done:
            out = tmp_path_factory.mktemp(f"whole-{name}")
            done[name] = outputs(analyze_files([str(captures[name])], load_settings()), out), out
        return done[name]
    return get


def assert_same(got, expected) -> None:
    files, summary = got
    assert sorted(files) == sorted(expected[0]) == sorted([f"{t}.csv" for t in TABLES] + ["alerts.jsonl"])
    for name in files:
        assert files[name] == expected[0][name], name
    assert summary == expected[1]


# --- rotated captures, one process and stitched ---------------------------------------------------

@pytest.mark.parametrize("n", SPLITS)
@pytest.mark.parametrize("name", ["small-office", "site"])
def test_cuts_fall_inside_calls_and_streams(name, n, rotated, whole):
    """The premise of the equality tests: some call and some RTP stream run across a cut."""
    cuts = [next(i.ts for i in read_capture(p) if type(i) is Frame) for p in rotated(name, n)[1:]]
    out = whole(name)[1]
    calls, streams = read_table(out, "calls"), read_table(out, "rtp_streams")
    assert any(c.first_ts < cut < c.last_ts for c in calls.itertuples() for cut in cuts)
    assert any(s.first_ts < cut < s.last_ts for s in streams.itertuples() for cut in cuts)


@pytest.mark.parametrize("name, n", [("small-office", n) for n in SPLITS] + [
    pytest.param("site", n, marks=[pytest.mark.slow] if n != 20 else []) for n in SPLITS])
def test_rotated_files_in_one_process_equal_the_whole_capture(name, n, rotated, whole, tmp_path):
    """Batch mode: each file decoded on its own and the files stitched, in this process."""
    assert_same(outputs(stitched(rotated(name, n)), tmp_path), whole(name)[0])


@pytest.mark.parametrize("n", SPLITS)
@pytest.mark.parametrize("name", ["small-office", pytest.param("site", marks=pytest.mark.slow)])
def test_rotated_files_merged_frame_by_frame_equal_the_whole_capture(name, n, rotated, whole, tmp_path):
    """The streaming path's merge of the files, one frame at a time (voipwatch.capture.read_captures)."""
    assert_same(per_frame(rotated(name, n), tmp_path), whole(name)[0])


# --- files that overlap in time, or are out of order ----------------------------------------------

def pcap_records(path: Path) -> tuple[bytes, list[bytes]]:
    """The pcap file header and every record (header and data) of a classic little-endian pcap."""
    data = path.read_bytes()
    records, at = [], PCAP_HEADER_BYTES
    while at < len(data):
        caplen = int.from_bytes(data[at + 8:at + 12], "little")
        records.append(data[at:at + RECORD_HEADER_BYTES + caplen])
        at += RECORD_HEADER_BYTES + caplen
    return data[:PCAP_HEADER_BYTES], records


def test_interleaved_files_are_merged_and_regrouped_as_in_one_process(tmp_path, monkeypatch):
    """Three files dealt record by record (three capture points of one link): every stream has packets
    in every file, so the workers' per-file grouping cannot be kept and the client regroups."""
    header, records = pcap_records(SMALL_OFFICE)
    paths = []
    for k in range(3):
        paths.append(str(tmp_path / f"dealt{k}.pcap"))
        Path(paths[-1]).write_bytes(header + b"".join(records[k::3]))
    regrouped = []
    monkeypatch.setattr(stitch, "group_candidates", lambda *a: regrouped.append(1) or group_candidates(*a))
    got = outputs(stitched(paths), tmp_path / "stitched")
    assert regrouped
    assert_same(got, per_frame(paths, tmp_path / "per-frame"))
    assert got[1]["counts"]["rtp_streams"] > 0


def test_files_out_of_time_order_merge_as_in_one_process(tmp_path, monkeypatch):
    """A file whose second half was written before its first (a time step back inside the file):
    the merge is replayed exactly as read_captures' heapq.merge yields it."""
    header, records = pcap_records(SMALL_OFFICE)
    half, third = len(records) // 2, len(records) // 3
    paths = [str(tmp_path / "a.pcap"), str(tmp_path / "b.pcap")]
    Path(paths[0]).write_bytes(header + b"".join(records[half:] + records[third:half]))
    Path(paths[1]).write_bytes(header + b"".join(records[:third]))
    replayed = []
    monkeypatch.setattr(stitch, "_keyed_items", lambda *a: replayed.append(1) or keyed_items(*a))
    got = outputs(stitched(paths), tmp_path / "stitched")
    assert len(replayed) == 2
    assert_same(got, per_frame(paths, tmp_path / "per-frame"))


def test_reader_anomalies_are_numbered_as_in_one_process(rotated, tmp_path):
    """A cut record (truncated file) in the middle of a set: its anomaly carries the run's frame number."""
    paths = [str(tmp_path / Path(p).name) for p in rotated("small-office", 5)]
    for src, dst in zip(rotated("small-office", 5), paths):
        shutil.copy(src, dst)
    data = Path(paths[2]).read_bytes()
    Path(paths[2]).write_bytes(data[:-7])
    got = outputs(stitched(paths), tmp_path / "stitched")
    assert_same(got, per_frame(paths, tmp_path / "per-frame"))
    anomalies = read_table(tmp_path / "stitched", "anomalies")
    cut = anomalies[anomalies["name"] == "capture.truncated_record"]
    # editcap writes pcapng: the cut is inside the last Enhanced Packet Block (type 6).
    kept = [i.offset for i in read_capture(paths[2]) if type(i) is Frame]
    last = [i.offset for i in read_capture(rotated("small-office", 5)[2]) if type(i) is Frame][-1]
    assert cut["detail"].tolist() == [f"{paths[2]}: offset {last}: block type 0x6 needs "
                                      f"{len(data) - last} bytes, {len(data) - last - 7} left"]
    assert kept[-1] < last                    # every whole block before the cut is read


def test_directory_expands_by_first_packet_time(rotated, tmp_path):
    """Files named against their time order come back in time order (tcpdump -C names part10 before part2)."""
    parts = rotated("small-office", 5)
    for k, src in enumerate(parts):
        shutil.copy(src, tmp_path / f"z{len(parts) - k}.pcap")
    (tmp_path / ".hidden").write_bytes(b"not a capture")
    assert expand_captures([str(tmp_path)]) == [str(tmp_path / f"z{len(parts) - k}.pcap") for k in range(len(parts))]


# --- on Dask ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_cluster():
    """A Client of `--cluster local:2`: two worker processes of one thread, for this module."""
    with connect("local:2") as client:
        yield client


def on_cluster(client, paths: list[str]):
    parts, failed = decode_on(client, paths)
    return analyze_files([p.path for p in parts], load_settings(),
                         feed=lambda analyzer, rtp: feed_parts(parts, analyzer, rtp), failed=failed)


@pytest.mark.slow
@pytest.mark.parametrize("n", SPLITS)
@pytest.mark.parametrize("name", ["small-office", "site"])
def test_rotated_files_on_a_local_cluster_equal_the_whole_capture(name, n, rotated, whole, local_cluster, tmp_path):
    assert_same(outputs(on_cluster(local_cluster, rotated(name, n)), tmp_path), whole(name)[0])


def run_cli(args: list[str], timeout: float = 600, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH")))),
           **extra_env}
    return subprocess.run([sys.executable, "-m", "voipwatch", "analyze", *args, "--no-progress"], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=timeout)


def cli_outputs(out: Path) -> tuple[dict[str, bytes], dict]:
    files = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != "summary.json"}
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return files, {k: v for k, v in summary.items() if k not in RUN_FIELDS}


@pytest.mark.cli
@pytest.mark.slow
def test_cli_cluster_local_on_a_directory(rotated, whole, tmp_path):
    directory = Path(rotated("site", 5)[0]).parent
    run = run_cli([str(directory), "-o", str(tmp_path / "out"), "--cluster", "local:2"])
    assert run.returncode == 0, run.stderr
    assert_same(cli_outputs(tmp_path / "out"), whole("site")[0])
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["inputs"] == rotated("site", 5)


@pytest.mark.cli
def test_usage_errors_of_sets_and_clusters(tmp_path):
    run = run_cli([str(SMALL_OFFICE), "-o", str(tmp_path / "out"), "--cluster", "local:2", "--mode", "stream"])
    assert run.returncode == 2
    assert run.stderr.splitlines()[-1] == "Error: --cluster works in --mode batch on capture files (not stdin)"
    run = run_cli([str(SMALL_OFFICE), "-o", str(tmp_path / "out"), "--cluster", "local:0"])
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == "error: --cluster local:N needs a number of workers >= 1, not 'local:0'"
    (tmp_path / "empty").mkdir()
    run = run_cli([str(tmp_path / "empty"), "-o", str(tmp_path / "out")])
    assert run.returncode == 2
    assert run.stderr.splitlines()[-1] == "Error: no capture files in the directories given"
    assert not (tmp_path / "out").exists()


# --- bad input in a set --------------------------------------------------------------------------

@pytest.fixture
def set_with_a_bad_file(rotated, tmp_path):
    """small-office.pcap cut into 20 files, copied, with the 8th overwritten by a header no reader
    knows, and the same set without it."""
    paths = [str(tmp_path / "set" / Path(p).name) for p in rotated("small-office", 20)]
    (tmp_path / "set").mkdir()
    for src, dst in zip(rotated("small-office", 20), paths):
        shutil.copy(src, dst)
    Path(paths[7]).write_bytes(b"\x00\x01\x02\x03" + Path(paths[7]).read_bytes()[4:])
    return paths, paths[:7] + paths[8:]


BAD_FILE_ERROR = "unknown file format (magic 0x00010203)"


@pytest.mark.cli
def test_a_corrupt_file_among_twenty_is_left_out_and_named(set_with_a_bad_file, tmp_path):
    paths, others = set_with_a_bad_file
    run = run_cli([*paths, "-o", str(tmp_path / "out")])
    assert run.returncode == 5, run.stderr
    assert f"error: {paths[7]}: offset 0: {BAD_FILE_ERROR} (left out of the run)" in run.stderr.splitlines()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["captures_failed"] == [{"file": paths[7], "offset": 0, "error": BAD_FILE_ERROR}]
    assert summary["inputs"] == others
    assert_same(cli_outputs(tmp_path / "out"), per_frame(others, tmp_path / "others"))


@pytest.mark.slow
def test_a_corrupt_file_among_twenty_on_a_cluster(set_with_a_bad_file, local_cluster, tmp_path):
    paths, others = set_with_a_bad_file
    result = on_cluster(local_cluster, paths)
    assert result.summary["captures_failed"] == [{"file": paths[7], "offset": 0, "error": BAD_FILE_ERROR}]
    assert result.summary["inputs"] == others
    assert_same(outputs(result, tmp_path / "cluster"), per_frame(others, tmp_path / "one"))


def test_a_truncated_file_among_twenty_keeps_its_frames_and_names_the_cut(rotated, whole, tmp_path):
    paths = [str(tmp_path / Path(p).name) for p in rotated("small-office", 20)]
    for src, dst in zip(rotated("small-office", 20), paths):
        shutil.copy(src, dst)
    data = Path(paths[7]).read_bytes()
    Path(paths[7]).write_bytes(data[:len(data) // 2])
    got = outputs(stitched(paths), tmp_path / "stitched")
    assert_same(got, per_frame(paths, tmp_path / "per-frame"))
    assert got[1]["anomalies_by_reason"] == {**whole("small-office")[0][1]["anomalies_by_reason"],
                                             "capture.truncated_record": 1}
    anomalies = read_table(tmp_path / "stitched", "anomalies")
    detail = anomalies.loc[anomalies["layer"] == "capture", "detail"].tolist()
    assert len(detail) == 1 and detail[0].startswith(f"{paths[7]}: offset ")
    small_office = frame_count(SMALL_OFFICE)
    assert got[1]["frames_read"] == small_office - math.ceil(small_office / 20) + frame_count(Path(paths[7])) + 1


class _Done:
    """A finished future of the stand-in client."""

    def __init__(self, fn, path):
        self.fn, self.path = fn, path

    def result(self):
        return self.fn(self.path)


class _InlineClient:
    """A stand-in for dask.distributed.Client whose tasks run here, each replaced by `swap` if it names the file."""

    def __init__(self, swap=None):
        self.swap = swap or {}

    def map(self, fn, paths, pure=True):
        return [_Done(self.swap.get(p, fn), p) for p in paths]


def test_a_task_that_fails_on_the_cluster_costs_its_file_only(rotated):
    paths = rotated("small-office", 5)

    def killed(path):
        raise RuntimeError("KilledWorker: the worker running this task died 3 times")
    parts, failed = decode_on(_InlineClient({paths[1]: killed}), paths)
    assert [p.path for p in parts] == paths[:1] + paths[2:]
    assert failed == [{"file": paths[1], "offset": 0, "error": "decoding failed on the cluster: RuntimeError: "
                                                               "KilledWorker: the worker running this task died 3 times"}]


def test_a_worker_with_other_dissectors_is_refused(rotated):
    """Site dissector plugins change which datagrams the fast path takes: a worker must have the client's."""
    paths = rotated("small-office", 2)

    def other_site(path):
        part = decode_capture(path)
        part.decoder = (part.decoder[0], ("site_dissector_x",))
        return part
    with pytest.raises(ClusterError, match=r"dissector plugins \['site_dissector_x'\]; this client has"):
        decode_on(_InlineClient({paths[1]: other_site}), paths)


# --- a real cluster: a scheduler and two workers, each its own process -----------------------------

START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 20


def _stop(proc: subprocess.Popen) -> None:
    """Stop one process this test started, by its pid: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture
def dask_cluster(tmp_path):
    """tcp://127.0.0.1:PORT of `dask scheduler` (a free port) with two `dask worker --nthreads 1
    --no-nanny` processes (so that each pid is the worker itself); all three stopped afterwards."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}
    started: list[subprocess.Popen] = []

    def start(*args: str) -> None:
        log = open(tmp_path / f"dask-{len(started)}.log", "wb")
        started.append(subprocess.Popen([sys.executable, "-m", "dask", *args], env=env, cwd=tmp_path, stdout=log,
                                        stderr=subprocess.STDOUT))
        log.close()

    scheduler_file = tmp_path / "scheduler.json"
    try:
        start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
              str(scheduler_file))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not scheduler_file.exists() and time.monotonic() < deadline and started[0].poll() is None:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for _ in range(2):
            start("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                  "--death-timeout", str(START_TIMEOUT_S))
        from dask.distributed import Client
        with Client(address, timeout=START_TIMEOUT_S) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT_S)
            assert all(w["nthreads"] == 1 for w in client.scheduler_info()["workers"].values())
        yield address
    finally:
        for proc in reversed(started):
            _stop(proc)
    assert all(proc.returncode is not None for proc in started)


@pytest.mark.cli
@pytest.mark.slow
def test_dask_scheduler_and_two_workers_equal_one_process(dask_cluster, rotated, whole, tmp_path):
    run = run_cli([*rotated("site", 20), "-o", str(tmp_path / "out"), "--cluster", dask_cluster])
    assert run.returncode == 0, run.stderr
    assert_same(cli_outputs(tmp_path / "out"), whole("site")[0])


@pytest.mark.cli
@pytest.mark.slow
def test_an_unreachable_scheduler_is_a_named_error(tmp_path):
    import socket
    with socket.socket() as s:                # a port nothing listens on: bound here, never listening
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        run = run_cli([str(SMALL_OFFICE), "-o", str(tmp_path / "out"), "--cluster", address], timeout=120,
                      DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="2s")
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1].startswith(f"error: cannot reach the Dask scheduler at {address}")


# --- SPAN copies --------------------------------------------------------------------------------------

def test_span_copies_of_a_set_are_dropped_as_in_one_process(tmp_path):
    """xv-benign.pcap holds each RTP packet of call remote@xv twice (tshark: SSRC 0xbc03cb0a has 40
    frames, each IP id on VLAN 900 then, 0.2 ms later, on VLAN 50); a second copy of the file makes
    every packet a copy across files too. Decoded apart, the set drops the same copies as the
    per-frame merge, and the call keeps its two streams of 20 packets."""
    xv = REPO / "sample_captures" / "xv-benign.pcap"
    shutil.copy(xv, tmp_path / "again.pcap")
    sets = [[str(xv), str(REPO / "sample_captures" / "um-benign.pcap")], [str(xv), str(tmp_path / "again.pcap")]]
    for k, paths in enumerate(sets):
        got = outputs(stitched(paths), tmp_path / f"stitched{k}")
        assert_same(got, per_frame(paths, tmp_path / f"per-frame{k}"))
        assert got[1]["frames_by_class"]["duplicates"] > 0
        calls = read_table(tmp_path / f"stitched{k}", "calls")
        assert calls.loc[calls.call_id == "remote@xv", "n_streams"].tolist() == [2]
        streams = read_table(tmp_path / f"stitched{k}", "rtp_streams")
        assert streams.loc[streams.call_id == "remote@xv", "packets"].tolist() == [20, 20]
