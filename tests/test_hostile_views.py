"""`voipwatch call` on the calls that once broke its views (sample_captures/hostile-views.pcap):

- one RTP packet with a wild timestamp made the bundle fail half-written (exit 1, no summary, no
  manifest); now that packet is placed at its arrival time, the summary says so, and the audio is
  the generator's tone;
- a dialog of 621 messages between 103 addresses drew a ladder of 101+ lifelines by 621 rows
  (3.25 GB); now the drawing is bounded by counted limits, stated in the text, the figure and
  summary.json, whatever the input;
- a part of a bundle that fails is listed, and the rest is written.

The capture's facts are checked with tshark.
"""
from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

import reader_safety as safety
from voipwatch.call import audio, bundle, ladder
from voipwatch.call.text import investigate
from voipwatch.config import load_settings

SAMPLES = Path(__file__).resolve().parents[1] / "sample_captures"
CAPTURE = SAMPLES / "hostile-views.pcap"
_spec = importlib.util.spec_from_file_location("hostile_views", SAMPLES / "generators" / "hostile_views.py")
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)


def tshark_fields(tshark: str, display_filter: str, *fields: str) -> list[list[str]]:
    out = subprocess.run([tshark, "-n", "-r", str(CAPTURE), "-Y", display_filter, "-T", "fields",
                          *[arg for f in fields for arg in ("-e", f)]], capture_output=True, text=True, check=True)
    return [line.split("\t") for line in out.stdout.splitlines()]


def bundle_of(tmp_path_factory, call_id: str) -> tuple[str, Path]:
    """`voipwatch call --call-id CALL_ID -o DIR`: the terminal text and the bundle's folder."""
    out = tmp_path_factory.mktemp("bundle")
    text, found = investigate([str(CAPTURE)], load_settings(), call_id=call_id, out_dir=str(out))
    assert found == 1
    return text, out / f"1-{call_id}"


@pytest.fixture(scope="module")
def wild(tmp_path_factory):
    return bundle_of(tmp_path_factory, "wild-ts@views")


@pytest.mark.peer
def test_the_wild_timestamp_is_in_the_capture(tshark):
    rows = tshark_fields(tshark, "rtp.ssrc == 0x77770001", "rtp.seq", "rtp.timestamp")
    stamps = {int(seq): int(ts) for seq, ts in rows}
    assert len(stamps) == 100
    assert stamps[gen.WILD_SEQ] == 160 * gen.WILD_SEQ + (1 << 31) - 1
    assert all(stamps[s] == 160 * s for s in stamps if s != gen.WILD_SEQ)


def test_wild_timestamp_is_placed_at_its_arrival_and_the_bundle_is_whole(wild):
    text, folder = wild
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["failed_parts"] == []
    assert {p.name for p in folder.iterdir()} == {
        "call.pcap", "ladder.png", "ladder.svg", "stream1-quality.png", "stream1.wav", "stream2-quality.png",
        "stream2.wav", "mix-stereo.wav", "summary.json", "manifest.json"}
    timing = summary["streams"][0]["audio_timing"]
    assert (timing["packets_placed_by_arrival"], timing["placed_by_arrival_seq"], timing["cut_s"]) == (1, [40], 0.0)
    assert summary["streams"][1]["audio_timing"]["packets_placed_by_arrival"] == 0
    assert "stream1.wav: 1 packet(s) placed at their arrival time" in text and "(sequence numbers 40)" in text
    with wave.open(str(folder / "stream1.wav")) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    # exactly the 100 payloads in a row: what the generator encoded, nothing shifted by 74 hours
    payloads = b"".join(bytes(gen.tone_ulaw(1000, 0.5, 160, 160 * i)) for i in range(100))
    assert (pcm == audio.decode_ulaw(payloads)).all()
    freq, _ = audio.tone_metrics(pcm, 8000)
    assert abs(freq - 1000) < 1


def test_a_failing_part_is_listed_and_the_rest_written(tmp_path, monkeypatch):
    real = audio.write_wav

    def no_room_for_stream1(path, *args):
        if Path(path).name == "stream1.wav":
            Path(path).write_bytes(b"RIFF")                  # a partial file, as a full disk leaves it
            raise OSError(28, "No space left on device")
        real(path, *args)
    monkeypatch.setattr(bundle.audio, "write_wav", no_room_for_stream1)
    text, _ = investigate([str(CAPTURE)], load_settings(), call_id="wild-ts@views", out_dir=str(tmp_path))
    folder = tmp_path / "1-wild-ts@views"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["failed_parts"] == [{"files": ["stream1.wav"], "error": "OSError: [Errno 28] No space left on device"}]
    assert summary["streams"][0]["audio"] is None and summary["streams"][1]["audio"] == "stream2.wav"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert "stream1.wav" not in manifest and not (folder / "stream1.wav").exists()
    assert set(manifest) == {p.name for p in folder.iterdir()} - {"manifest.json"}
    assert "NOT WRITTEN: stream1.wav: OSError: [Errno 28] No space left on device" in text


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    return bundle_of(tmp_path_factory, "ladder-bomb@views")


@pytest.mark.peer
def test_the_dialog_has_621_messages_between_103_addresses(tshark):
    rows = tshark_fields(tshark, 'sip.Call-ID == "ladder-bomb@views"', "ip.src", "udp.srcport", "ip.dst", "udp.dstport")
    assert len(rows) == 621
    addresses = {(r[0], r[1]) for r in rows} | {(r[2], r[3]) for r in rows}
    assert len(addresses) == 103 and len({a for a, _ in addresses}) == 13


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG IHDR chunk (ISO/IEC 15948 §11.2.2)."""
    return struct.unpack(">II", path.read_bytes()[16:24])


def test_ladder_of_a_huge_dialog_is_bounded_and_says_so(bomb):
    text, folder = bomb
    summary = json.loads((folder / "summary.json").read_text())
    assert len(summary["ladder"]) == 621                     # summary.json keeps every message
    drawn = summary["ladder_drawn"]
    assert (drawn["addresses"], len(drawn["lifelines"]), drawn["grouping"]) == (103, 6, "host, others merged")
    assert drawn["lifelines"] == ["10.20.0.11:5060", "10.20.0.5:5060", "10.20.1.1 (10 ports)", "10.20.1.2 (10 ports)",
                                  "10.20.1.3 (9 ports)", "others (8 hosts)"]
    assert (drawn["messages"], drawn["messages_drawn"]) == (621, ladder.MAX_ROWS)
    assert drawn["limits"] == [
        '103 addresses drawn as 6 lifelines, grouped by host, the hosts after the first 5 merged as "others" '
        '(at most 6 lifelines)',
        "100 of 621 messages drawn, the first 50 and the last 50; the 521 between them are one row (at most 100 drawn)"]
    # the terminal ladder: a header, 100 message rows, one row for those left out, the two limits
    lines = text.split("== Call ladder-bomb@views")[1].split("   Leg 1: ")[0].strip("\n").split("\n")
    ladder_lines = [line for line in lines[3:] if line.strip()]
    assert len(ladder_lines) == 1 + 100 + 1 + 2
    assert "… 521 messages not drawn (frames" in ladder_lines[51]
    assert all(line.startswith("(ladder limited: ") for line in ladder_lines[-2:])
    # the figure: bounded size, the limits in its caption (SVG text)
    width, height = png_size(folder / "ladder.png")
    assert width <= 1800 and height <= 4800          # 6 lifelines, 101 rows at 100 dpi (unbounded: 28,960 x 28,065)
    svg_text = [t.text for t in safety.xml_parses(folder / "ladder.svg").iter("{http://www.w3.org/2000/svg}text")]
    assert f"Ladder limited: {drawn['limits'][0]}." in svg_text and f"Ladder limited: {drawn['limits'][1]}." in svg_text
    # 100 arrows: the 5 of the INVITE transaction, the BYE, and 94 INFO or 200 OK (the BYE's among them)
    assert sum(1 for t in svg_text if t in ("INFO", "INFO [retrans]", "200 OK")) == 94
