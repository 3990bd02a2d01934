"""The bundled small-office capture against the labels its generator documents.

sample_captures/generators/small_office.py says what it wrote; these are those facts, asserted
through voipwatch analyze in both execution paths, with frame totals cross-checked against tshark.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

CAPTURE = Path(__file__).resolve().parents[1] / "sample_captures" / "small-office.pcap"


@pytest.fixture(scope="module", params=["batch", "stream"])
def result(request, analysis):
    return analysis(CAPTURE, mode=request.param)


@pytest.mark.peer
def test_every_frame_is_accounted_for(result, tshark):
    frames = int(subprocess.run([tshark, "-r", str(CAPTURE), "-T", "fields", "-e", "frame.number"],
                                capture_output=True, text=True, check=True).stdout.split()[-1])
    summary = result.summary
    assert summary["frames_read"] == frames == 743
    assert sum(summary["frames_by_class"].values()) == frames
    assert summary["frames_by_class"] == {"dns": 8, "rtp": 703, "sip": 24, "tcp.control": 3, "tcp.sip": 4,
                                          "udp.other": 1}


def test_calls(result):
    calls = {c.call_id: c for c in result.records["calls"]}
    assert set(calls) == {"call-a@small-office", "call-b@small-office", "call-c@small-office",
                          "bad-length@small-office"}
    a, b, c = calls["call-a@small-office"], calls["call-b@small-office"], calls["call-c@small-office"]
    assert (a.caller, a.callee, a.state, a.final_status, a.setup_s, a.duration_s, a.n_streams) == \
        ("1001", "1002", "ended", 200, 2.0, 5.2, 2)
    assert (a.media_protection, a.vlan) == ("none", (110,))
    assert (b.state, b.final_status, b.n_streams, b.setup_s) == ("failed", 486, 0, None)
    # Answered, never hung up: the media extends the call to its last RTP packet.
    assert (c.state, c.media_protection, c.n_streams, c.duration_s) == ("answered", "sdes", 2, 2.04)


def test_registrations(result):
    regs = {(r.aor, r.src): r for r in result.records["registrations"]}
    assert set(regs) == {("1001@pbx.example.com", "10.1.10.11"), ("1002@pbx.example.com", "10.1.10.12"),
                         ("1003@pbx.example.com", "10.1.10.13")}
    for reg in regs.values():
        assert (reg.attempts, reg.challenges, reg.successes, reg.failures) == (2, 1, 1, 0)


def test_streams(result):
    streams = {s.ssrc: s for s in result.records["rtp_streams"]}
    assert set(streams) == {0x11110001, 0x22220002, 0x33330003, 0x44440004, 0x55550005}
    bob = streams[0x22220002]
    # One packet dropped and one repeated: RFC 3550 A.3 counts expected 250, received 250, lost 0.
    assert (bob.packets, bob.expected, bob.lost, bob.duplicates, bob.call_id) == (250, 250, 0, 1, "call-a@small-office")
    assert streams[0x33330003].call_id == "call-c@small-office"
    burst = streams[0x55550005]
    assert (burst.negotiated, burst.vlan, burst.codec, burst.packets, burst.call_id) == (False, (20,), "PCMA", 3, None)


def test_dns_and_anomalies(result):
    answers = [d.answers for d in result.records["dns"] if d.is_response]
    assert answers.count(("SRV 10 60 5060 pbx.example.com",)) == 3
    assert ("A 93.184.216.34",) in answers
    assert sorted(a.name for a in result.records["anomalies"]) == ["sip.invalid_content_length",
                                                                 "sip.not_sip_on_sip_port"]
