"""`voipwatch call` on generated and real captures: ladder, verdict, stream figures, evidence bundle.

The packet count of call.pcap is cross-checked with tshark filtering the same call, stream figures
with the analyze tables, and decoded audio with the tones the small-office generator put in it.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from voipwatch.call import audio
from voipwatch.analyze import analyze_files
from voipwatch.call.text import investigate
from voipwatch.call.select import protection_verdict, select_calls
from voipwatch.config import load_settings

OFFICE = str(Path(__file__).resolve().parents[1] / "sample_captures" / "small-office.pcap")


def tshark_count(tshark: str, capture: str, display_filter: str) -> int:
    out = subprocess.run([tshark, "-n", "-r", capture, "-Y", display_filter], capture_output=True, text=True,
                         check=True).stdout
    return len(out.splitlines())


@pytest.fixture(scope="module")
def office_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    text, found = investigate([OFFICE], load_settings(), call_id="call-a@small-office", out_dir=str(out))
    return text, found, out / "1-call-a@small-office"


def test_ladder_and_verdict_of_a_cleartext_call(office_bundle):
    text, found, folder = office_bundle
    assert found == 1
    summary = json.loads((folder / "summary.json").read_text())
    assert [(r["from"], r["to"], r["label"]) for r in summary["ladder"]] == [
        ("10.1.10.11:5060", "10.1.10.5:5060", "INVITE (SDP)"), ("10.1.10.5:5060", "10.1.10.11:5060", "100 Trying"),
        ("10.1.10.5:5060", "10.1.10.11:5060", "180 Ringing"), ("10.1.10.5:5060", "10.1.10.11:5060", "200 OK (SDP)"),
        ("10.1.10.11:5060", "10.1.10.5:5060", "ACK"), ("10.1.10.12:5060", "10.1.10.5:5060", "BYE"),
        ("10.1.10.5:5060", "10.1.10.12:5060", "200 OK")]
    assert summary["protection"] == "none" and summary["media_readable_on_path"] is True
    assert "media readable by anyone on the path" in summary["verdict"]
    assert "Verdict: media readable by anyone on the path" in text


@pytest.mark.peer
def test_call_pcap_matches_tshark_filter(office_bundle, tshark):
    _, _, folder = office_bundle
    ours = tshark_count(tshark, str(folder / "call.pcap"), "frame")
    theirs = tshark_count(tshark, OFFICE, 'sip.Call-ID == "call-a@small-office" || rtp.ssrc == 0x11110001 '
                                          '|| rtp.ssrc == 0x22220002')
    assert ours == theirs == 507
    # original link layer and VLAN tags kept
    assert tshark_count(tshark, str(folder / "call.pcap"), "vlan.id == 110") == 507


def test_stream_figures_agree_with_analyze_tables(office_bundle, analysis):
    _, _, folder = office_bundle
    summary = json.loads((folder / "summary.json").read_text())
    table = {f"0x{s.ssrc:08x}": s for s in analysis(OFFICE).records["rtp_streams"]}
    for s in summary["streams"]:
        ref = table[s["ssrc"]]
        assert (s["packets"], s["lost"], s["duplicates"], s["jitter_ms_max"]) == \
            (ref.packets, ref.lost, ref.duplicates, round(ref.jitter_ms_max, 3))
        assert s["offered_in_sdp"] == {"src": True, "dst": True}
        assert 4.3 < s["mos"] <= 4.5


def test_decoded_audio_is_the_generated_tone(office_bundle):
    _, _, folder = office_bundle
    expected = {"stream1.wav": (1000.0, -6.02), "stream2.wav": (440.0, -12.04)}   # small_office.py
    for name, (freq, level) in expected.items():
        with wave.open(str(folder / name)) as w:
            assert (w.getframerate(), w.getnchannels()) == (8000, 1)
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        got_freq, got_level = audio.tone_metrics(samples[8000:16000], 8000)   # one full second of tone
        assert abs(got_freq - freq) < 2 and abs(got_level - level) < 0.5
    with wave.open(str(folder / "mix-stereo.wav")) as w:
        assert w.getnchannels() == 2


def test_manifest_lists_every_file_with_its_hash(office_bundle):
    _, _, folder = office_bundle
    manifest = json.loads((folder / "manifest.json").read_text())
    files = {p.name for p in folder.iterdir()} - {"manifest.json"}
    assert set(manifest) == files
    for name, entry in manifest.items():
        assert entry["sha256"] == hashlib.sha256((folder / name).read_bytes()).hexdigest()


def test_sdes_over_cleartext_sip_is_readable_but_never_decoded(tmp_path):
    _, found = investigate([OFFICE], load_settings(), call_id="call-c@small-office", out_dir=str(tmp_path))
    summary = json.loads((tmp_path / "1-call-c@small-office" / "summary.json").read_text())
    assert found == 1 and summary["protection"] == "SDES over cleartext SIP"
    assert summary["media_readable_on_path"] is True
    assert all(s["audio"] is None and "not decoded" in s["not_decoded_because"] for s in summary["streams"])
    assert summary["sdp"]["offer"]["media"][0]["crypto"][0]["key_len"] == 30
    assert "inline" not in (tmp_path / "1-call-c@small-office" / "summary.json").read_text()


def test_number_selects_every_call_of_that_party(analysis):
    result = analysis(OFFICE)
    assert [v.call.call_id for v in select_calls(result, number="1002")] == [
        "call-a@small-office", "call-c@small-office", "bad-length@small-office"]
    assert [v.call.call_id for v in select_calls(result, ip="10.1.20.50")] == []


@pytest.mark.peer
def test_real_g711_call(public_captures, tshark, tmp_path):
    capture = str(public_captures / "sipnab/sip-rtp-g711.pcap")
    text, found = investigate([capture], load_settings(), call_id="1-1966@10.0.2.20", out_dir=str(tmp_path))
    folder = tmp_path / "1-1-1966@10.0.2.20"
    summary = json.loads((folder / "summary.json").read_text())
    assert [r["label"] for r in summary["ladder"]] == ["INVITE (SDP)", "100 Trying", "200 OK (SDP)", "ACK", "BYE",
                                                        "200 OK"]
    assert summary["protection"] == "none"
    stream_ssrcs = [s["ssrc"] for s in summary["streams"]]
    filt = 'sip.Call-ID == "1-1966@10.0.2.20" || ' + " || ".join(f"rtp.ssrc == {s}" for s in stream_ssrcs)
    assert tshark_count(tshark, str(folder / "call.pcap"), "frame") == tshark_count(tshark, capture, filt)
    decoded = [s for s in summary["streams"] if s["audio"]]
    assert decoded, "the G.711 stream must be decoded"
    with wave.open(str(folder / decoded[0]["audio"])) as w:
        assert w.getnframes() > 8000


def test_failed_call_ladder_marks_the_challenge_and_rejection(public_captures):
    result = analyze_files([str(public_captures / "sipnab/sip-488-codec-reject.pcapng")])
    (view,) = select_calls(result, call_id="NA4y5nr9Jk")
    assert (view.call.state, view.call.final_status) == ("failed", 488)
    from voipwatch.call.ladder import build_ladder
    assert [r.label.split(" (")[0] for r in build_ladder(view.messages).rows] == [
        "INVITE", "401 Unauthorized", "ACK", "INVITE", "100 Trying", "488 Not Acceptable Here", "ACK"]
    # Its only SDP offers m=audio 0 (a=inactive): no media was ever negotiated.
    verdict = protection_verdict(view)
    assert (verdict.protection, verdict.readable) == ("unknown", None)
    assert "no active RTP media" in verdict.reason


@pytest.mark.cli
def test_cli_reports_no_match_with_exit_1(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "voipwatch", "call", OFFICE, "--call-id", "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "no call matches" in proc.stdout


def test_real_zrtp_call_is_not_readable_and_not_decoded(public_captures, tmp_path):
    """Asterisk/Zfone/X-Lite: plain RTP/AVP in SDP, but SRTP-sized payloads (ZRTP keyed on the media path)."""
    capture = str(public_captures / "sipnab/Asterisk_ZFONE_XLITE.pcap")
    _, found = investigate([capture], load_settings(), ip="192.168.10.41", out_dir=str(tmp_path))
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    summary = json.loads((folder / "summary.json").read_text())
    assert found == 1
    assert (summary["protection"], summary["media_readable_on_path"]) == ("ZRTP (inferred)", False)
    assert summary["streams"] and all(s["audio"] is None and "encrypted" in s["not_decoded_because"]
                                      for s in summary["streams"])
