"""analyze --jobs N: the batch path in several processes writes byte-identical tables to --jobs 1.

The captures are read in small chunks and the stream statistics cut into small units of work here,
so that every process has a share of both even on small captures.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from voipwatch.batch import rtp as batch_rtp
from voipwatch.batch import driver
from voipwatch.analyze import analyze_files, write_outputs
from voipwatch.batch.workers import Producer, forked, map_forked

GEN = Path(__file__).resolve().parents[1] / "scripts" / "gen_site_capture.py"
PUBLIC = [
    "voipshark/SIP-RTP-Normal_Call_two_parties.pcap",
    "sipnab/SIP_CALL_RTP_G711",
    "ndpi/pcap/stun_dtls_rtp.pcapng",
    "rtp-pcap/marseillaise-srtp.pcap",
]


@pytest.fixture(scope="module")
def site_capture(tmp_path_factory) -> Path:
    """A generated site capture: VLANs, QinQ, SIP over UDP, DNS, RTCP and a few hundred RTP streams."""
    path = tmp_path_factory.mktemp("site") / "site.pcap"
    subprocess.run([sys.executable, str(GEN), "-o", str(path), "--packets", "40000", "--phones", "80",
                    "--calls-concurrent", "40", "--call-duration-s", "2", "6", "--no-truth", "-q"], check=True)
    return path


@pytest.fixture
def small_units(monkeypatch):
    monkeypatch.setattr(driver, "CHUNK_BYTES", 1 << 18)
    monkeypatch.setattr(batch_rtp, "UNIT_ROWS", 4096)


def outputs(path: Path, jobs: int, out: Path, mode: str = "batch") -> tuple[dict[str, bytes], dict]:
    """Every output file but summary.json as bytes, and summary.json without its run time."""
    write_outputs(analyze_files([str(path)], mode=mode, jobs=jobs), out, "csv")
    files = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != "summary.json"}
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    del summary["run_s"]
    return files, summary


def test_generated_capture(site_capture, small_units, tmp_path):
    one = outputs(site_capture, 1, tmp_path / "j1")
    assert one[1]["counts"]["rtp_streams"] > 100 and one[1]["frames_by_class"]["rtp"] > 30_000
    for jobs in (2, 3):
        assert outputs(site_capture, jobs, tmp_path / f"j{jobs}") == one


def test_jobs_0_uses_every_core(site_capture, tmp_path):
    """`voipwatch analyze --jobs 0`, one process per available core, writes what --jobs 1 writes."""
    from click.testing import CliRunner

    from voipwatch.cli import cli
    outs = {}
    for jobs in ("0", "1"):
        run = CliRunner().invoke(cli, ["analyze", str(site_capture), "-o", str(tmp_path / jobs), "--jobs", jobs])
        assert run.exit_code == 0, run.output
        outs[jobs] = {p.name: p.read_bytes() for p in sorted((tmp_path / jobs).iterdir()) if p.name != "summary.json"}
    assert outs["0"] == outs["1"] and "rtp_streams.csv" in outs["0"]


def test_a_failure_in_the_scanning_process_is_raised_here(site_capture, small_units, monkeypatch):
    """An error while the other process scans reaches the caller as itself, not as a broken pipe
    from the SDP notes this process keeps sending it."""
    decode, calls = driver.decode_candidates, []

    def failing(records):
        calls.append(1)
        if len(calls) == 5:
            raise MemoryError("chunk 5")
        return decode(records)
    monkeypatch.setattr(driver, "decode_candidates", failing)
    with pytest.raises(MemoryError, match="chunk 5"):
        analyze_files([str(site_capture)], jobs=2)


def test_generated_capture_matches_the_stream_path(site_capture, tmp_path):
    batch_files, batch_summary = outputs(site_capture, 2, tmp_path / "batch")
    stream_files, stream_summary = outputs(site_capture, 1, tmp_path / "stream", mode="stream")
    assert batch_files == stream_files
    assert {k: v for k, v in batch_summary.items() if k != "mode"} == \
        {k: v for k, v in stream_summary.items() if k != "mode"}


@pytest.mark.parametrize("capture", PUBLIC)
def test_public_captures(capture, public_captures, small_units, tmp_path):
    path = public_captures / capture
    assert outputs(path, 2, tmp_path / "j2") == outputs(path, 1, tmp_path / "j1")


def test_truncated_capture(site_capture, small_units, tmp_path):
    """The records before a cut are scanned in parallel; the generic reader reports the cut."""
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(site_capture.read_bytes()[:os.path.getsize(site_capture) * 2 // 3])
    one = outputs(cut, 1, tmp_path / "j1")
    assert one[1]["anomalies_by_reason"]["capture.truncated_record"] == 1
    assert outputs(cut, 2, tmp_path / "j2") == one


def _fail(x):
    if x == 3:
        raise ValueError("unit 3")
    return x * x


def test_map_forked():
    assert map_forked(_fail, [0, 1, 2, 4, 5], 3) == [0, 1, 4, 16, 25]
    assert map_forked(_fail, [], 2) == []
    with pytest.raises(ValueError, match="unit 3"):
        map_forked(_fail, [0, 1, 2, 3, 4], 2)


def test_forked():
    state = {"n": 6}
    pending = forked(lambda: state["n"] * 7)
    state["n"] = 0                                    # the forked process works on its own copy
    assert pending() == 42
    with pytest.raises(ValueError, match="unit 3"):
        forked(lambda: _fail(3))()


def test_detectors_run_elsewhere_with_the_same_alerts(site_capture, tmp_path):
    """With --jobs 2 the detectors run in a forked process; the result waits for them when read."""
    one, two = analyze_files([str(site_capture)], jobs=1), analyze_files([str(site_capture)], jobs=2)
    assert two._detectors is not None and len(two.alerts) == len(one.alerts) > 0
    assert [(a.name, a.ts, a.identifier) for a in two.alerts] == [(a.name, a.ts, a.identifier) for a in one.alerts]
    assert {k: v for k, v in two.summary.items() if k != "run_s"} == {k: v for k, v in one.summary.items() if k != "run_s"}


class _Numbers:
    complete = False

    def __init__(self, n: int, fail_at: int | None = None):
        self.n, self.fail_at = n, fail_at

    def __iter__(self):
        for i in range(self.n):
            if i == self.fail_at:
                raise OSError("read error")
            yield bytes(1000) * i
        self.complete = True


def test_producer():
    reader = _Numbers(50)
    assert [len(x) for x in Producer(reader)] == [1000 * i for i in range(50)]
    assert reader.complete
    with pytest.raises(OSError, match="read error"):
        list(Producer(_Numbers(50, fail_at=7)))
    producer = Producer(_Numbers(10_000))             # the consumer stops early: the worker is stopped
    assert len(next(iter(producer))) == 0
    producer.close()
    assert not producer._worker.is_alive()


def test_producer_ends_when_its_consumer_is_gone():
    """A consumer that dies (its end of the pipe closed) must not leave the producer blocked on a
    full pipe: it stops producing and ends."""
    producer = Producer(_Numbers(100_000))
    assert len(next(iter(producer))) == 0
    producer._recv.close()                            # as a killed parent's end would be
    producer._worker.join(timeout=20)
    assert not producer._worker.is_alive()
    producer._ask.close()


class _Summing(_Numbers):
    """Remembers the sizes it produced; settle() adds them up."""

    def __iter__(self):
        self.sizes = []
        for item in super().__iter__():
            self.sizes.append(len(item))
            yield item

    def settle(self):
        self.total = sum(self.sizes)

    def answer(self, question):
        if question == "fail":
            raise ValueError("asked to fail")
        return question, self.total, len(self.sizes)


def test_producer_answers_one_question_from_its_state():
    """The answer is computed in the producing process from what producing (and settling) left there."""
    producer = Producer(_Summing(20), _Summing.answer, _Summing.settle)
    with pytest.raises(RuntimeError, match="before every item"):
        producer.ask("early")
    assert sum(len(x) for x in producer) == 190_000
    assert producer.ask("total?") == ("total?", 190_000, 20)
    assert not producer._worker.is_alive()
    producer = Producer(_Summing(5), _Summing.answer, _Summing.settle)
    list(producer)
    with pytest.raises(ValueError, match="asked to fail"):
        producer.ask("fail")
    producer = Producer(_Summing(5), _Summing.answer, _Summing.settle)
    list(producer)
    producer.close()                                  # no question: the worker ends without answering
    assert not producer._worker.is_alive()
