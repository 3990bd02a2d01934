"""A real SIP-over-TCP trunk, captured from its middle: voipwatch's calls and messages equal tshark's.

tests/lab/captures/sip-tcp-trunk.pcap was recorded in the lab by tests/lab/sip_tcp_trunk.py: a PBX
(SIPp) places 24 calls over one TCP connection to kamailio, which relays them over one TCP connection
of its own to a carrier (SIPp); with an MTU of 576 the larger messages span two segments. editcap
drops the first packets, as a SPAN port switched on mid-trunk would, at cut points where a direction's
first captured segment is the second half of a message. On every cut, voipwatch's SIP messages (frame,
Call-ID, method or status) and calls (Call-IDs with an INVITE, outcome) must be tshark's, in the batch
and streaming paths and in `monitor -r`; the bytes before each direction's first start line are counted
as sip.resync_skipped_bytes.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.lab import HOST
from voipwatch.analyze import analyze_files

pytestmark = pytest.mark.peer   # tshark and editcap read every capture here

REPO = Path(__file__).resolve().parents[1]
CAPTURE = REPO / "tests" / "lab" / "captures" / "sip-tcp-trunk.pcap"
PBX_IP = HOST["ph1"].ip            # the trunk's calling end (tests/lab/sip_tcp_trunk.py)


@dataclass(frozen=True)
class Message:
    frame: int
    call_id: str
    method: str | None
    status: int | None
    cseq_method: str | None
    from_user: str | None
    to_user: str | None


def tshark_json(tshark: str, path: Path, display_filter: str, protocols: str) -> list[dict]:
    out = subprocess.run([tshark, "-n", "-r", str(path), "-Y", display_filter, "-T", "json", "-J", protocols],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return [packet["_source"]["layers"] for packet in json.loads(out or "[]")]


def tshark_messages(tshark: str, path: Path) -> list[Message]:
    """Every SIP message tshark dissects, in frame order (a continuation without a start line is none)."""
    found = []
    for layers in tshark_json(tshark, path, "sip", "sip frame"):
        frame = int(layers["frame"]["frame.number"])
        for sip in layers["sip"] if isinstance(layers["sip"], list) else [layers["sip"]]:
            request, status = sip.get("sip.Request-Line_tree"), sip.get("sip.Status-Line_tree")
            if request is None and status is None:
                continue
            head = sip["sip.msg_hdr_tree"]
            found.append(Message(frame, head["sip.Call-ID"], request and request["sip.Method"],
                                 status and int(status["sip.Status-Code"]), head["sip.CSeq_tree"]["sip.CSeq.method"],
                                 head["sip.From_tree"]["sip.from.addr_tree"]["sip.from.user"],
                                 head["sip.To_tree"]["sip.to.addr_tree"]["sip.to.user"]))
    return found


def tshark_calls(messages: list[Message]) -> dict[str, tuple]:
    """Each Call-ID with an INVITE request: (first INVITE frame, caller, callee, state, final status), read
    from tshark's messages the way RFC 3261 tells a call's story. The first 2xx to an INVITE answers it
    (§13.2.2.4) and a BYE then ends it (§15.1); without a 2xx, the last final response to an INVITE is
    its outcome, a failure (§13.2.2.3), unless a new INVITE follows it (a retry after a 407, §22.3)."""
    calls: dict[str, dict] = {}
    for m in messages:
        call = calls.get(m.call_id)
        if call is None and m.method == "INVITE":
            call = calls[m.call_id] = {"frame": m.frame, "caller": m.from_user, "callee": m.to_user,
                                       "answer": None, "failure": None, "bye": False}
        if call is None:
            continue
        if m.method == "INVITE" and call["answer"] is None:
            call["failure"] = None
        elif m.method == "BYE":
            call["bye"] = True
        elif m.cseq_method == "INVITE" and m.status is not None and m.status >= 200 and call["answer"] is None:
            call["answer" if m.status < 300 else "failure"] = m.status
    return {cid: (c["frame"], c["caller"], c["callee"],
                  "ended" if c["answer"] and c["bye"] else "answered" if c["answer"] else
                  "failed" if c["failure"] else "attempting",
                  c["answer"] or c["failure"])
            for cid, c in calls.items()}


def split_message_cuts(tshark: str) -> dict[tuple, list[int]]:
    """For each TCP direction, the cut points (packets to drop) that leave the second segment of a
    two-segment message as the direction's first captured data."""
    out = subprocess.run([tshark, "-n", "-r", str(CAPTURE), "-Y", "sip and tcp.segment.count == 2", "-T", "fields",
                          "-e", "ip.src", "-e", "tcp.srcport", "-e", "tcp.segment"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    cuts: dict[tuple, list[int]] = {}
    for line in out.splitlines():
        src, sport, segments = line.split("\t")
        cuts.setdefault((src, sport), []).append(int(segments.split(",")[0]))
    return cuts


def cut_capture(editcap: str, drop: int, tmp_path: Path) -> Path:
    out = tmp_path / f"cut-{drop}.pcap"
    subprocess.run([editcap, "-r", str(CAPTURE), str(out), f"{drop + 1}-1000000"], check=True, timeout=60)
    return out


def our_messages(records) -> list[tuple]:
    return sorted((m.pkt.frame, m.call_id, m.method, m.status) for m in records["sip_messages"])


def our_calls(records) -> dict[str, tuple]:
    return {c.call_id: (c.first_frame, c.caller, c.callee, c.state, c.final_status) for c in records["calls"]}


def test_the_capture_is_a_tcp_trunk_with_split_messages(tshark):
    messages = tshark_messages(tshark, CAPTURE)
    calls = tshark_calls(messages)
    outcomes = sorted((state, status) for _, _, _, state, status in calls.values())
    assert outcomes == [("ended", 200)] * 16 + [("failed", 404)] * 4 + [("failed", 486)] * 4
    cuts = split_message_cuts(tshark)
    assert len(cuts) == 4 and all(len(points) >= 10 for points in cuts.values())   # both connections, both ways
    result = analyze_files([str(CAPTURE)], mode="batch")
    assert our_calls(result.records) == calls
    assert our_messages(result.records) == sorted((m.frame, m.call_id, m.method, m.status) for m in messages)
    assert {m.pkt.transport for m in result.records["sip_messages"]} == {"tcp"} and result.records["anomalies"] == []


@pytest.mark.slow
def test_every_cut_matches_tshark(tshark, editcap, tmp_path):
    """Cut before the second segment of every sixth split message of each direction; both paths."""
    for direction, points in sorted(split_message_cuts(tshark).items()):
        for drop in points[::6]:
            path = cut_capture(editcap, drop, tmp_path)
            messages = tshark_messages(tshark, path)
            for mode in ("batch", "stream"):
                result = analyze_files([str(path)], mode=mode)
                assert our_messages(result.records) == sorted((m.frame, m.call_id, m.method, m.status)
                                                              for m in messages), (direction, drop, mode)
                assert our_calls(result.records) == tshark_calls(messages), (direction, drop, mode)
                names = {a.name for a in result.records["anomalies"]}
                assert names == {"sip.resync_skipped_bytes"}, (direction, drop, mode)


def first_data(tshark: str, path: Path) -> dict[tuple, list[tuple[int, int, bool]]]:
    """Each TCP direction's first two data segments: (frame, payload bytes, part of a message tshark
    dissects: one it completes, or the first segment of one it reassembles later)."""
    starts = {m.frame for m in tshark_messages(tshark, path)}
    fields = ("frame.number", "ip.src", "tcp.srcport", "ip.dst", "tcp.dstport", "tcp.len", "tcp.reassembled_in")
    out = subprocess.run([tshark, "-n", "-2", "-r", str(path), "-Y", "tcp.len > 0", "-T", "fields",
                          *(arg for field in fields for arg in ("-e", field))],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    seen: dict[tuple, list] = {}
    for line in out.splitlines():
        frame, src, sport, dst, dport, length, reassembled_in = line.split("\t")
        if len(seen.setdefault((src, sport, dst, dport), [])) < 2:
            seen[(src, sport, dst, dport)].append((int(frame), int(length),
                                                   int(frame) in starts or reassembled_in != ""))
    return seen


@pytest.mark.cli
def test_a_capture_begun_mid_message_in_every_path(tshark, editcap, tmp_path):
    """One cut in the PBX-to-proxy direction, where every call starts: its first captured segment is the
    second half of a message. analyze (both modes) and monitor -r find tshark's calls; the half message
    is counted."""
    points = split_message_cuts(tshark)[(PBX_IP, "5060")]
    path = cut_capture(editcap, points[len(points) // 3], tmp_path)
    wanted = {cid: (str(frame), caller, callee, state, str(status))
              for cid, (frame, caller, callee, state, status) in tshark_calls(tshark_messages(tshark, path)).items()}
    assert 8 <= len(wanted) < 24 and {state for *_, state, _ in wanted.values()} == {"ended", "failed"}
    # one run of skipped bytes per direction whose first captured segment is the tail of a message,
    # raised at the direction's next data segment, where a message starts
    runs = sorted((second[0], f"{first[1]} bytes skipped before a SIP start line")
                  for first, second in first_data(tshark, path).values() if not first[2])
    assert runs and runs[0][1] == "11 bytes skipped before a SIP start line"     # the cut INVITE's last bytes
    for mode in ("batch", "stream"):
        out = tmp_path / mode
        run = subprocess.run([sys.executable, "-m", "voipwatch", "analyze", str(path), "-o", str(out), "--mode", mode,
                              "--no-progress"], capture_output=True, text=True, cwd=REPO, timeout=300)
        assert run.returncode == 0, run.stderr
        assert read_calls(out / "calls.csv") == wanted, mode
        with (out / "anomalies.csv").open(newline="") as fh:
            anomalies = list(csv.DictReader(fh))
        assert {a["name"] for a in anomalies} == {"sip.resync_skipped_bytes"}
        assert sorted((int(a["frame"]), a["detail"].split(",")[0]) for a in anomalies) == runs
    live = tmp_path / "monitor"
    run = subprocess.run([sys.executable, "-m", "voipwatch", "monitor", "-r", str(path), "-o", str(live)],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr
    assert {cid: row for part in sorted(live.glob("calls-*.csv")) for cid, row in read_calls(part).items()} == wanted


def read_calls(path: Path) -> dict[str, tuple]:
    with path.open(newline="") as fh:
        return {r["call_id"]: (r["first_frame"], r["caller"], r["callee"], r["state"], r["final_status"])
                for r in csv.DictReader(fh)}
