"""voip_control (UM-07) on the generated um-control capture and the public ones: one finding per protocol and
host pair, encrypted IAX2 silent, severity by where the ends are, allowed pairs info, batch equals stream."""
from __future__ import annotations

from pathlib import Path

import pytest

from detectors.voip_control import Config, VoipControlDetector
from voipwatch.analyze import analyze_files
from voipwatch.config import load_settings
from voipwatch.config_schema import ConfigError, build
from voipwatch.records import PacketMeta, VoipControl
from voipwatch.site import Site

SAMPLES = Path(__file__).resolve().parents[2] / "sample_captures"


def _alerts(path, mode="batch"):
    result = analyze_files([str(path)], load_settings(None), mode=mode)
    return [a for a in result.alerts if a.family == "voip_control"]


@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_one_finding_per_protocol_and_pair(mode):
    alerts = _alerts(SAMPLES / "um-control.pcap", mode)
    assert sorted((a.identifier, a.severity, a.evidence["messages"]) for a in alerts) == [
        ("h225 10.30.0.10 <-> 10.30.0.11", "medium", 5),
        ("h225.ras 10.30.0.10 <-> 10.30.0.11", "medium", 2),
        ("iax2 10.30.0.30 <-> 10.30.0.31", "medium", 2),
        ("megaco 10.30.0.4 <-> 10.30.0.5", "medium", 2),
        ("mgcp 10.30.0.2 <-> 10.30.0.3", "medium", 4),
        ("sccp 10.30.0.20 <-> 10.30.0.21", "medium", 4),
    ]
    by = {a.evidence["protocol"]: a for a in alerts}
    assert by["mgcp"].evidence["srtp_offers"] == 1 and by["mgcp"].evidence["call_ids"] == ["A3C47F21456789F0"]
    assert by["sccp"].evidence["endpoints"] == ["SEP00112233AABB"]
    assert by["h225"].evidence["messages_with_numbers"] == 1 and (by["h225"].first_ts, by["h225"].ts) == \
        pytest.approx((1_700_300_004.01, 1_700_300_010.0))
    assert by["iax2"].evidence["by_message"] == {"NEW": 1, "ACCEPT": 1}


def test_public_end_is_high(public_captures):
    """nDPI's mgcp.pcap: two internal gateway pairs (medium) and three RQNTs between public addresses (high)."""
    alerts = _alerts(public_captures / "ndpi/pcap/mgcp.pcap")
    assert sorted(a.severity for a in alerts) == ["high", "high", "high", "medium", "medium"]
    assert sum(a.evidence["messages"] for a in alerts) == 23


def _record(src, dst, ts, protocol="mgcp", message="RQNT", secure=None):
    return VoipControl(PacketMeta(ts, 1, (), src, 2727, dst, 2427, "udp"), protocol, message, secure=secure)


def test_allowed_pair_is_info_and_window_rolls_over():
    det = VoipControlDetector(build(Config, {"allow_pairs": ["10.0.0.0/24 10.9.9.9"], "rollup_window_s": 60.0},
                                    "detectors.voip_control"), Site({}))
    out = [*det.on_voip_control(_record("10.0.0.5", "10.9.9.9", 0.0)),
           *det.on_voip_control(_record("10.9.9.9", "10.0.0.5", 30.0, message="200")),
           *det.on_voip_control(_record("10.0.0.5", "10.9.9.9", 90.0))]
    assert [(a.severity, a.evidence["messages"]) for a in out] == [("info", 2)]
    assert [(a.severity, a.evidence["messages"]) for a in det.finish()] == [("info", 1)]


def test_encrypted_iax2_pair_is_silent():
    det = VoipControlDetector(build(Config, {}, "detectors.voip_control"), Site({}))
    list(det.on_voip_control(_record("10.0.0.1", "10.0.0.2", 0.0, "iax2", "NEW", secure=True)))
    list(det.on_voip_control(_record("10.0.0.2", "10.0.0.1", 0.1, "iax2", "ACK")))
    assert list(det.finish()) == []


def test_bad_allow_pair_is_refused():
    with pytest.raises(ConfigError):
        VoipControlDetector(build(Config, {"allow_pairs": ["10.0.0.1"]}, "detectors.voip_control"), Site({}))
