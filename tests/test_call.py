"""`voipwatch call` on generated and real captures: ladder, verdict, stream figures, evidence bundle.

The packet count of call.pcap is cross-checked with tshark filtering the same call, stream figures
with the analyze tables, and decoded audio with the tones the small-office generator put in it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import struct
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
        assert s["offered_in_sdp"] == {"src": True, "dst": True, "leg": 1}
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


def test_number_selects_every_dialog_of_that_party(analysis):
    """--number matches by prefix the users of every dialog (calls and REGISTER alike)."""
    result = analysis(OFFICE)
    assert [(v.call_id, v.line().method) for v in select_calls(result, number="1002")] == [
        ("reg-1002@small-office", "REGISTER"), ("call-a@small-office", "INVITE"), ("call-c@small-office", "INVITE"),
        ("bad-length@small-office", "INVITE")]
    assert select_calls(result, number="002") == []          # a prefix, not a suffix
    assert [v.call_id for v in select_calls(result, ip="10.1.20.50")] == []


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
    assert proc.returncode == 1 and proc.stdout == "no call, dialog or flow matches\n\n"


def test_real_zrtp_call_is_not_readable_and_not_decoded(public_captures, tmp_path):
    """Asterisk/Zfone/X-Lite: plain RTP/AVP in SDP, but SRTP-sized payloads (ZRTP keyed on the media path)."""
    capture = str(public_captures / "sipnab/Asterisk_ZFONE_XLITE.pcap")
    _, found = investigate([capture], load_settings(), call_id="ZDYzOWVlNjEwM2NjZTBjNzliNmM1ZTNiOGZjNWFhN2E.",
                           out_dir=str(tmp_path))
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    summary = json.loads((folder / "summary.json").read_text())
    assert found == 1
    assert (summary["protection"], summary["media_readable_on_path"]) == ("ZRTP (inferred)", False)
    assert summary["streams"] and all(s["audio"] is None and "encrypted" in s["not_decoded_because"]
                                      for s in summary["streams"])


def _pcapgen():
    spec = importlib.util.spec_from_file_location("voipwatch_call_test_pcapgen",
                                                  Path(OFFICE).parent / "generators" / "pcapgen.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module                   # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def rtcp_sender_report(ssrc: int, ntp: int, rtp_ts: int, packets: int) -> bytes:
    """RFC 3550 §6.4.1: an SR with no report block (V=2, RC=0, PT=200, length 6 words)."""
    return struct.pack("!BBHIQIII", 0x80, 200, 6, ssrc, ntp, rtp_ts, packets, packets * 160)


@pytest.mark.peer
def test_rtcp_comes_from_the_ports_sdp_announced(tmp_path, tshark):
    """RFC 3605 a=rtcp puts each side's RTCP away from RTP port + 1. The bundle holds the RTCP sent to
    those ports, and not an RTCP-looking datagram between the two RTP ports + 1 (the old guess)."""
    pg = _pcapgen()
    cap, a, b, t0 = pg.PcapWriter(), "10.0.0.1", "10.0.0.2", 1_700_000_000.0
    call_id = "rtcp-elsewhere@test"

    def send(ts, src, sport, dst, dport, payload):
        cap.add(ts, pg.ethernet(pg.ipv4(src, dst, 17, pg.udp(src, sport, dst, dport, payload)), pg.ETH_IPV4))

    headers = [("Via", f"SIP/2.0/UDP {a}:5060;branch=z9hG4bKrtcp1"), ("From", "<sip:alice@example.com>;tag=1"),
               ("To", "<sip:bob@example.com>"), ("Call-ID", call_id), ("CSeq", "1 INVITE"),
               ("Contact", f"<sip:alice@{a}:5060>")]
    send(t0, a, 5060, b, 5060, pg.sip_message("INVITE sip:bob@example.com SIP/2.0", headers,
                                              pg.sdp_body(a, a, 40000, extra=("a=rtcp:40010",))))
    answer = [h if h[0] != "To" else ("To", "<sip:bob@example.com>;tag=2") for h in headers]
    send(t0 + 1, b, 5060, a, 5060, pg.sip_message("SIP/2.0 200 OK", answer,
                                                  pg.sdp_body(b, b, 50000, extra=("a=rtcp:50020",), session_id=2)))
    ack = [h if h[0] != "CSeq" else ("CSeq", "1 ACK") for h in answer]
    send(t0 + 1.1, a, 5060, b, 5060, pg.sip_message("ACK sip:bob@10.0.0.2 SIP/2.0", ack))
    for i in range(150):
        ts = t0 + 1.2 + i * 0.02
        send(ts, a, 40000, b, 50000, pg.rtp(i, i * 160, 0x1111, 0, bytes(160)))
        send(ts + 0.005, b, 50000, a, 40000, pg.rtp(i, i * 160, 0x2222, 0, bytes(160)))
        if i % 50 == 25:
            send(ts + 0.01, a, 40010, b, 50020, rtcp_sender_report(0x1111, i, i * 160, i))
            send(ts + 0.015, b, 50020, a, 40010, rtcp_sender_report(0x2222, i, i * 160, i))
            send(ts + 0.018, a, 40001, b, 50001, rtcp_sender_report(0x3333, i, i * 160, i))   # not this call's
    bye = [("Via", f"SIP/2.0/UDP {b}:5060;branch=z9hG4bKrtcp2"), ("From", "<sip:bob@example.com>;tag=2"),
           ("To", "<sip:alice@example.com>;tag=1"), ("Call-ID", call_id), ("CSeq", "2 BYE")]
    send(t0 + 4.5, b, 5060, a, 5060, pg.sip_message("BYE sip:alice@10.0.0.1 SIP/2.0", bye))
    send(t0 + 4.51, a, 5060, b, 5060, pg.sip_message("SIP/2.0 200 OK", bye))
    capture = tmp_path / "rtcp-elsewhere.pcap"
    cap.save(capture)

    _, found = investigate([str(capture)], load_settings(), call_id=call_id, out_dir=str(tmp_path / "out"))
    call_pcap = str(tmp_path / "out" / f"1-{call_id}" / "call.pcap")
    assert found == 1
    # tshark ties RTCP to a call by the SDP frame that set up its conversation (rtcp.setup-frame); its
    # RTCP heuristic also decodes the datagrams between the ports + 1, with no setup frame.
    assert tshark_count(tshark, call_pcap, "frame") == tshark_count(
        tshark, str(capture), f'sip.Call-ID == "{call_id}" || rtp.ssrc == 0x1111 || rtp.ssrc == 0x2222 '
                              '|| rtcp.setup-frame') == 5 + 300 + 6
    assert tshark_count(tshark, call_pcap, "rtcp && udp.port == 40010 && udp.port == 50020") == 6
    assert tshark_count(tshark, str(capture), "rtcp && udp.port == 40001") == 3
    assert tshark_count(tshark, call_pcap, "udp.port == 40001") == 0
