"""E-model (ITU-T G.107) rating and MOS: published points, codec ordering, monotonicity, clamps."""
from __future__ import annotations

import dataclasses

import pytest

from voipwatch.call.quality import mos_from_r, r_factor, stream_quality
from voipwatch.records import RtpStream


@pytest.mark.parametrize("r, mos", [(93.2, 4.41), (80.0, 4.02), (70.0, 3.60), (60.0, 3.10), (50.0, 2.58)])
def test_annex_b_published_points(r, mos):
    assert mos_from_r(r) == pytest.approx(mos, abs=0.005)


@pytest.mark.parametrize("r, mos", [(-10.0, 1.0), (0.0, 1.0), (3.0, 1.0), (100.0, 4.5), (130.0, 4.5)])
def test_mos_clamps(r, mos):
    assert mos_from_r(r) == mos


def test_default_rating_without_delay_or_loss():
    assert r_factor("PCMU", 0.0, 0.0, one_way_delay_ms=0.0) == pytest.approx(93.2)
    assert mos_from_r(r_factor("PCMA", 0.0, 0.0, one_way_delay_ms=0.0)) == pytest.approx(4.41, abs=0.005)


def test_estimated_delay_is_packetization_jitter_buffer_and_lookahead():
    # G.711: d = 20 + 2 x 5 = 30 ms; Id = 0.024 d below the 177.3 ms knee.
    assert r_factor("PCMU", 0.0, 5.0) == pytest.approx(93.2 - 0.024 * 30)
    # G.729A: Ie 11 and a 5 ms look-ahead: d = 25 ms.
    assert r_factor("G729", 0.0, 0.0) == pytest.approx(93.2 - 0.024 * 25 - 11)


def test_delay_impairment_knee():
    assert r_factor("PCMU", 0.0, 0.0, one_way_delay_ms=300.0) == pytest.approx(93.2 - 0.024 * 300 - 0.11 * 122.7)


def test_effective_equipment_impairment():
    # G.711 with PLC, 2 % random loss: Ie,eff = 95 x 2 / (2 + 25.1) = 7.01.
    assert 93.2 - r_factor("PCMU", 0.02, 0.0, one_way_delay_ms=0.0) == pytest.approx(95 * 2 / 27.1)
    # BurstR 2 at the same loss: Ie,eff = 95 x 2 / (1 + 25.1).
    assert 93.2 - r_factor("PCMU", 0.02, 0.0, 0.0, burst_ratio=2.0) == pytest.approx(95 * 2 / 26.1)


def test_five_percent_loss_is_noticeably_worse():
    clean = r_factor("PCMU", 0.0, 0.0)
    lossy = r_factor("PCMU", 0.05, 0.0)
    assert clean - lossy > 15
    assert mos_from_r(lossy) < mos_from_r(clean) - 0.4


@pytest.mark.parametrize("loss", [0.0, 0.01, 0.05, 0.2])
def test_g729a_below_g711_at_same_loss(loss):
    assert r_factor("G729", loss, 10.0) < r_factor("PCMU", loss, 10.0)


def test_wideband_and_unknown_codecs_use_g711_values():
    assert r_factor("G722", 0.03, 0.0, 0.0) == r_factor("PCMU", 0.03, 0.0, 0.0)
    assert r_factor("opus", 0.03, 0.0, 0.0) == r_factor(None, 0.03, 0.0, 0.0) == r_factor("pcma", 0.03, 0.0, 0.0)


def test_monotonic_in_loss_and_jitter():
    by_loss = [r_factor("PCMU", p / 100, 10.0) for p in range(0, 101, 5)]
    assert all(a > b for a, b in zip(by_loss, by_loss[1:]))
    by_jitter = [r_factor("G729", 0.01, j) for j in range(0, 200, 10)]
    assert all(a > b for a, b in zip(by_jitter, by_jitter[1:]))


def test_rating_clamps_and_validation():
    assert r_factor("G729", 1.0, 0.0, one_way_delay_ms=2000.0) == 0.0
    for bad in [dict(loss_fraction=-0.1), dict(loss_fraction=1.5), dict(jitter_ms=-1.0),
                dict(jitter_ms=float("nan")), dict(burst_ratio=0.0)]:
        with pytest.raises(ValueError):
            r_factor(**{"codec": "PCMU", "loss_fraction": 0.0, "jitter_ms": 0.0, **bad})


STREAM = RtpStream(src="192.0.2.1", sport=4000, dst="192.0.2.2", dport=5000, vlan=(), ssrc=1, payload_type=0,
                   codec="PCMU", packets=950, expected=1000, lost=50, duplicates=0, out_of_order=0,
                   jitter_ms_mean=4.0, jitter_ms_max=9.0, max_delta_ms=40.0, first_ts=0.0, last_ts=20.0,
                   first_frame=1, call_id="c", negotiated=True)


def test_stream_quality():
    quality = stream_quality(STREAM)
    assert quality["r_factor"] == pytest.approx(r_factor("PCMU", 0.05, 4.0), abs=0.005)
    assert quality["mos"] == pytest.approx(mos_from_r(r_factor("PCMU", 0.05, 4.0)), abs=0.005)
    text = " | ".join(quality["assumptions"])
    assert "Bpl 25.1" in text and "50/1000" in text and "28.0 ms" in text and "93.2" in text


def test_stream_quality_duplicates_and_empty_streams():
    duplicated = stream_quality(dataclasses.replace(STREAM, packets=1010, lost=-10))
    assert duplicated["r_factor"] == pytest.approx(r_factor("PCMU", 0.0, 4.0), abs=0.005)
    empty = stream_quality(dataclasses.replace(STREAM, packets=0, expected=0, lost=0, codec=None))
    assert empty["r_factor"] == pytest.approx(r_factor(None, 0.0, 4.0), abs=0.005)
    assert "codec unknown" in empty["assumptions"][0]
