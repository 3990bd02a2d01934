"""SPAN copies of routed packets (voipwatch.dedup, voipwatch.batch.copies) on span-routed.pcap, the lab's
router between VLANs 20 and 110 mirrored tagged: each routed packet is on the wire twice, and is counted
once, in the batch path, the streaming path and with --jobs 2 alike; the copies are counted as duplicates
and their VLAN path is kept. tshark's counts of distinct IP packets are the reference."""
from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from peer import run
from voipwatch.analyze import analyze_files, write_outputs
from voipwatch.cli import cli
from voipwatch.config import load_settings
from voipwatch.dedup import Deduplicator

SAMPLES = Path(__file__).resolve().parents[1] / "sample_captures"
CAPTURE = SAMPLES / "span-routed.pcap"
CONFIG = SAMPLES / "configs" / "span_routed.toml"
# What makes two frames one IP packet: identification, addresses, protocol and transport payload
# (TTL, checksum and the link layer differ between the copies).
PACKET = ["ip.id", "ip.src", "ip.dst", "ip.proto", "udp.srcport", "udp.dstport", "udp.payload", "icmp.type"]


def _distinct(tshark: str, display_filter: str) -> tuple[int, int]:
    """(frames, distinct IP packets) matching the filter, by tshark."""
    lines = run(tshark, ["-r", str(CAPTURE), "-Y", display_filter, "-T", "fields", "-E", "separator=\t",
                         *[arg for name in PACKET for arg in ("-e", name)]]).splitlines()
    return len(lines), len(set(lines))


def _outputs(tmp_path: Path, name: str, mode: str = "batch", jobs: int = 1, sets: tuple[str, ...] = ()) -> dict:
    result = analyze_files([str(CAPTURE)], load_settings(str(CONFIG), sets), mode=mode, jobs=jobs)
    out = tmp_path / name
    write_outputs(result, out)
    summary = json.loads((out / "summary.json").read_text())
    return {"result": result, "summary": summary, "files": {p.name: p.read_text() for p in sorted(out.iterdir())
                                                             if p.name != "summary.json"}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("span")
    return {"batch": _outputs(tmp, "batch"), "stream": _outputs(tmp, "stream", "stream"),
            "jobs2": _outputs(tmp, "jobs2", jobs=2)}


@pytest.mark.peer
@pytest.mark.parametrize("run_name", ["batch", "stream", "jobs2"])
def test_routed_packets_are_counted_once(runs, run_name, tshark):
    """The data host's 8 OPTIONS frames are 4 OPTIONS; 3 INVITE frames are 2 INVITEs; 200 RTP frames are 100 packets;
    every dropped frame is a copy: frames read minus duplicates is tshark's count of distinct packets."""
    got = runs[run_name]
    rows = got["result"].records["sip_messages"]
    for method, src, frames, packets in (("OPTIONS", "10.20.0.20", 8, 4), ("INVITE", None, 3, 2)):
        where = f" && ip.src == {src}" if src else ""
        assert _distinct(tshark, f'sip.Method == "{method}"{where}') == (frames, packets)
        assert sum(1 for m in rows if m.method == method and src in (None, m.pkt.src)) == packets
    assert _distinct(tshark, "rtp || udp.port == 30000") == (200, 100)
    summary = got["summary"]
    frames, packets = _distinct(tshark, "ip")
    assert summary["frames_read"] == frames == 249
    assert summary["frames_by_class"]["duplicates"] == frames - packets == 117
    assert summary["frames_by_class"]["rtp"] == 100 and summary["counts"]["sip_messages"] == 28
    assert sum(summary["frames_by_class"].values()) == summary["frames_read"]
    assert [(s.src, s.packets, s.duplicates) for s in got["result"].records["rtp_streams"]] == [
        ("10.20.0.30", 50, 0), ("10.110.0.12", 50, 0)]


def test_batch_stream_and_jobs_give_identical_outputs(runs):
    batch = runs["batch"]
    for other in ("stream", "jobs2"):
        assert runs[other]["files"] == batch["files"], other
        assert ({k: v for k, v in runs[other]["summary"].items() if k not in ("mode", "run_s")}
                == {k: v for k, v in batch["summary"].items() if k not in ("mode", "run_s")})


def test_vlan_path_is_kept_as_evidence(runs):
    """sip_messages.vlan_path (the last column) names the VLANs of every copy, the first first; a packet seen
    once has none. Alerts about a replicated packet carry it too."""
    lines = runs["batch"]["files"]["sip_messages.csv"].splitlines()
    assert lines[0].endswith(",vlan_path")
    paths = {}
    for m in runs["batch"]["result"].records["sip_messages"]:
        paths.setdefault((m.pkt.src, m.method or str(m.status)), set()).add(
            "->".join("/".join(map(str, v)) for v in m.vlan_path) if m.vlan_path else None)
    assert paths[("10.20.0.20", "OPTIONS")] == {"20->110"}
    assert paths[("10.110.0.10", "200")] >= {"110->20", None}       # to the data VLAN, and to phones
    assert paths[("203.0.113.68", "REGISTER")] == {None}             # behind the router: one copy
    assert paths[("10.110.0.10", "INVITE")] == {None}                # proxy -> phone, same VLAN
    xv01 = [a for a in runs["batch"]["result"].alerts if a.name == "cross_vlan.voip_in_data_zone"]
    # one living finding per data host, whose evidence is its latest sighting: the proxy's 200 to the data
    # host's OPTIONS, routed 110->20; the data host's RTP (its INVITE went 20->110, checked above)
    assert {(a.evidence["data_host"], a.evidence["protocol"], a.evidence.get("method"), a.evidence.get("vlan_path"))
            for a in xv01} == {("10.20.0.20", "sip", "OPTIONS", "110->20"), ("10.20.0.30", "rtp", None, None)}
    assert paths[("10.20.0.30", "INVITE")] == {"20->110"}


def test_deduplication_can_be_turned_off(tmp_path):
    """deduplicate = false counts every frame (each routed packet twice, on its two VLANs)."""
    got = _outputs(tmp_path, "off", sets=("pipeline.deduplicate=false",))
    rows = got["result"].records["sip_messages"]
    assert sum(1 for m in rows if m.method == "OPTIONS" and m.pkt.src == "10.20.0.20") == 8
    assert "duplicates" not in got["summary"]["frames_by_class"]
    assert all(m.vlan_path is None for m in rows)
    off_stream = _outputs(tmp_path, "off-stream", "stream", sets=("pipeline.deduplicate=false",))
    assert off_stream["files"] == got["files"]


def test_the_table_is_bounded_and_counts_its_cap():
    """More frames within the window than the cap: the oldest are released early, counted."""
    dedup = Deduplicator(window_s=0.01, cap=4)
    released = []
    for i in range(10):
        entry = [1.0 + i * 1e-5, None, None, None]
        assert not dedup.offer(entry, ("k", i), 1, (), ())
        released += dedup.release(entry[0])
    assert len(dedup.held) == 4 and len(released) == 6
    assert dedup.held_overflows == 6 and dedup.key_overflows == 6
    # a copy of a held packet within the window is dropped; its VLAN joins the path
    assert dedup.offer([1.0001, None, None, None], ("k", 9), 1, ((20,), "a", "b"), (20,))
    assert dedup.held[-1][3] == [(), (20,)]


def test_identification_zero_needs_another_path():
    """RFC 6864: an atomic datagram may repeat identification 0. A repeat on the same L2 path is a packet of
    its own; only a copy on another VLAN or MAC pair is dropped."""
    dedup = Deduplicator(window_s=0.01, cap=100)
    same = ((110,), "m1", "m2")
    assert not dedup.offer([1.0, None, None, None], "k", 0, same, (110,))
    assert not dedup.offer([1.001, None, None, None], "k", 0, same, (110,))
    assert dedup.offer([1.002, None, None, None], "k", 0, ((20,), "m3", "m4"), (20,))
    assert not dedup.offer([1.5, None, None, None], "k", 5, same, (110,))    # outside the window


@pytest.fixture
def own_signals():
    """monitor installs signal handlers in the process that runs it (pytest's): put the previous ones back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_monitor_counts_each_routed_packet_once(runs, tmp_path, own_signals):
    """monitor -r (the live path): 50 RTP packets per direction, not 100; the same alerts as analyze."""
    out = tmp_path / "monitor"
    res = CliRunner().invoke(cli, ["monitor", "-r", str(CAPTURE), "-o", str(out), "--config", str(CONFIG)])
    assert res.exit_code == 0, res.output
    with open(out / "rtp_streams-0001.csv", newline="") as fh:
        assert sorted((r["src"], r["packets"]) for r in csv.DictReader(fh)) == [("10.110.0.12", "50"),
                                                                                 ("10.20.0.30", "50")]
    alerts = [json.loads(line)["alert"] for line in (out / "alerts.jsonl").read_text().splitlines()]
    alerts = [a for a in alerts if a["state"] == "final"]          # the live log also has new and update states
    assert sorted((a["name"], a["identifier"]) for a in alerts) == sorted(
        (a.name, a.identifier) for a in runs["batch"]["result"].alerts)
    final = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()][-1]
    assert final["packets"] == 249 and final["caps_hit"] == {}
