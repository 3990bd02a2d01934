"""scripts/benchmark.py --matrix and --hostile on small inputs: what they measure and compare is right.

The hostile generators must write what they claim (tshark reads every frame, the checksums hold, the
Call-IDs, users and flows are distinct); a --matrix run must find the shape it converted identical
and report a shape voipwatch cannot read as a failed target; a --hostile run must report the caps
and alerts that voipwatch's own outputs hold.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from peer import run as tshark_run

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "scripts" / "benchmark.py"
sys.path.insert(0, str(REPO / "scripts"))
import hostile  # noqa: E402

N = 1000


@pytest.mark.peer
@pytest.mark.parametrize("kind", hostile.KINDS)
def test_hostile_capture_is_what_it_claims(kind, tshark, tmp_path):
    path = tmp_path / f"{kind}.pcap"
    hostile.generate(kind, N, path)
    out = tshark_run(tshark, ["-r", str(path), "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
                              "-T", "fields", "-e", "frame.time_epoch", "-e", "ip.src", "-e", "udp.srcport",
                              "-e", "ip.checksum.status", "-e", "udp.checksum.status", "-e", "sip.Method",
                              "-e", "sip.Call-ID", "-e", "sip.from.user", "-e", "sip.Content-Length", "-e", "sdp.media.port"])
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == N
    assert all(r[3] == "1" and r[4] == "1" for r in rows)                    # IPv4 and UDP checksums good
    assert float(rows[-1][0]) - float(rows[0][0]) == pytest.approx((N - 1) / hostile.RATE_PPS, abs=1e-6)
    if kind == "rtp_like":
        assert len({(r[1], r[2]) for r in rows}) == N and not any(r[5] for r in rows)
        assert all(b[0] == 0x80 for b in _udp_payloads(path))
        return
    method = "INVITE" if kind == "invite" else "REGISTER"
    assert {r[5] for r in rows} == {method} and {r[1] for r in rows} == {"203.0.113.66"}
    assert len({r[6] for r in rows}) == N                                      # distinct Call-IDs
    if kind == "register":
        assert len({r[7] for r in rows}) == N                                  # distinct users
    else:
        body = hostile.SDP.replace(hostile.PORT, "10000").encode()
        assert {r[8] for r in rows} == {str(len(body))} and len({r[9] for r in rows}) == N   # SDP, a port each


def _udp_payloads(path: Path) -> list[bytes]:
    import shapes
    return [r.data[42:] for r in shapes.read_records(path)]


def _bench(args: list[str], tmp_path: Path) -> dict:
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--workdir", str(tmp_path / "work"), "--json", str(report),
                           "--repeat", "1", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(report.read_text())


@pytest.mark.peer
@pytest.mark.cli
def test_matrix_compares_every_shape_with_the_original(tmp_path):
    capture = tmp_path / "site.pcap"
    subprocess.run([sys.executable, str(REPO / "scripts" / "gen_site_capture.py"), "-o", str(capture), "-q",
                    "--packets", "1500", "--calls-concurrent", "4", "--phones", "10", "--call-duration-s", "1", "2"],
                   check=True, timeout=60)
    doc = _bench(["--matrix", "--capture", str(capture), "--shapes", "sll,xz", "--jobs", "1,2"], tmp_path)
    rows = {r["shape"]: r for r in doc["sources"][0]["shapes"]}
    assert list(rows) == ["original", "sll", "xz"] and all(r["frames"] == 1500 for r in rows.values())
    assert all(r["check_problems"] == [] and r["tshark"]["ok"] for r in rows.values())
    assert rows["sll"]["tshark_streams"] == "same" and rows["xz"]["tshark_streams"] == "same"
    assert rows["sll"]["outputs"]["vs_original"] == dict(tables=[], others=[], alerts={})
    assert rows["sll"]["outputs"]["j2_vs_j1"] == dict(tables=[], others=[], alerts={})
    assert rows["sll"]["targets"]["memory"] in ("PASS", "FAIL")
    assert rows["xz"]["outputs"]["vs_original"] == dict(tables=[], others=[], alerts={})
    assert rows["xz"]["outputs"]["j2_vs_j1"] == dict(tables=[], others=[], alerts={})


@pytest.mark.cli
def test_hostile_reports_caps_and_alerts_from_both_paths(tmp_path):
    doc = _bench(["--hostile", "--hostile-count", "400", "--hostile-kinds", "invite"], tmp_path)
    runs = {r["path"]: r for r in doc["results"]}
    assert set(runs) == {"analyze", "monitor -r"}
    summary = json.loads((tmp_path / "work" / "hostile" / "out" / "invite-analyze" / "summary.json").read_text())
    assert runs["analyze"]["alerts_by_name"] == summary["alerts_by_name"]
    assert runs["analyze"]["caps_hit"] == {k: v for k, v in summary["anomalies_by_reason"].items()
                                           if k.endswith("_overflow")}
    assert all(r["ok"] and r["messages"] == 400 and r["targets"]["memory"] == "PASS" for r in runs.values())
