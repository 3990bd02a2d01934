"""Every bundled sample capture is reproduced byte for byte by the generator kept beside it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[1] / "sample_captures"
GENERATORS = sorted(p for p in (SAMPLES / "generators").glob("*.py") if p.stem != "pcapgen")


def test_every_sample_has_a_generator():
    captures = {p.name for p in SAMPLES.glob("*.pcap")}
    generated = {g.stem.replace("_", "-") + ".pcap" for g in GENERATORS}
    assert captures == generated


@pytest.mark.parametrize("generator", GENERATORS, ids=lambda p: p.stem)
def test_generator_is_deterministic(generator, tmp_path):
    out = tmp_path / "capture.pcap"
    subprocess.run([sys.executable, str(generator), str(out)], check=True, timeout=120)
    assert out.read_bytes() == (SAMPLES / (generator.stem.replace("_", "-") + ".pcap")).read_bytes()
