"""A site's own detectors, shipped in its own package and found through the entry point group
voipwatch.detectors, with no edit to voipwatch: run as a site would, `python -m voipwatch` in a process whose
path holds a temporary package and its dist-info (what `pip install` leaves behind)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from peer import run
from site_package import install, voipwatch

pytestmark = pytest.mark.cli   # every test runs `python -m voipwatch`

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_captures" / "rf-benign.pcap"

REGISTER_WATCH = '''
    """Every source that registers, once per suppression window (a site's inventory of SIP clients)."""
    from __future__ import annotations

    from dataclasses import dataclass

    from voipwatch.config_schema import opt
    from voipwatch.detect import AlertSpec, Detector, register
    from voipwatch.records import SipMessage


    @dataclass(frozen=True)
    class Config:
        method: str = opt("REGISTER", "The SIP request method whose senders are listed.")


    @register
    class RegisterWatch(Detector):
        """Lists the sources of one SIP request method."""
        name = "register_watch"
        consumes = (SipMessage,)
        Config = Config
        alerts = {"client": AlertSpec("OT-01", "info", "Part III: Client registration protections",
                                      "A host sends SIP REGISTER")}

        def on_sip_message(self, msg: SipMessage):
            if msg.is_request and msg.method == self.config.method:
                yield self.alert("client", ts=msg.pkt.ts, identifier=msg.pkt.src, src=msg.pkt.src,
                                 msg=f"{msg.pkt.src} sends {msg.method}")
'''


@pytest.mark.peer
def test_a_site_detector_is_found_configured_and_run(tmp_path, tshark):
    install(tmp_path, "site_checks", {"register_watch": REGISTER_WATCH},
            {"voipwatch.detectors": {"register_watch": "site_checks.register_watch"}})
    shown = voipwatch(tmp_path, "config", "show")
    assert shown.returncode == 0, shown.stderr
    assert "[detectors.register_watch]\n" in shown.stdout
    assert '# The SIP request method whose senders are listed.\nmethod = "REGISTER"' in shown.stdout

    done = voipwatch(tmp_path, "analyze", str(SAMPLE), "-o", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    alerts = [json.loads(line) for line in (tmp_path / "out" / "alerts.jsonl").read_text().splitlines()]
    ours = [a for a in alerts if a["alert"]["family"] == "register_watch"]
    senders = set(run(tshark, ["-r", str(SAMPLE), "-Y", 'sip.Method == "REGISTER"', "-T", "fields",
                               "-e", "ip.src"]).split())
    assert len(senders) == 35 and sorted(a["src"] for a in ours) == sorted(senders)
    assert {(a["alert"]["name"], a["alert"]["check"], a["alert"]["severity"]) for a in ours} == {
        ("register_watch.client", "OT-01", "info")}

    off = voipwatch(tmp_path, "analyze", str(SAMPLE), "-o", str(tmp_path / "off"),
                    "--set", "detectors.register_watch.enabled=false")
    assert off.returncode == 0, off.stderr
    assert "register_watch" not in (tmp_path / "off" / "alerts.jsonl").read_text()


def test_a_site_detector_that_breaks_the_contract_is_one_error_line(tmp_path):
    broken = REGISTER_WATCH.replace('"""Lists the sources of one SIP request method."""', "")
    install(tmp_path, "site_checks", {"register_watch": broken},
            {"voipwatch.detectors": {"register_watch": "site_checks.register_watch"}})
    done = voipwatch(tmp_path, "analyze", str(SAMPLE), "-o", str(tmp_path / "out"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: detector plugin register_watch = 'site_checks.register_watch' (from site_checks): "
        "TypeError: detector RegisterWatch: needs a docstring"]


def test_a_site_detector_cannot_take_a_shipped_name_or_register_nothing(tmp_path):
    install(tmp_path, "site_checks", {"cross_vlan": REGISTER_WATCH.replace('"register_watch"', '"cross_vlan"'),
                                      "helpers": "DAYS = 7\n"},
            {"voipwatch.detectors": {"cross_vlan": "site_checks.cross_vlan"}})
    done = voipwatch(tmp_path, "config", "show")
    assert done.returncode == 1 and "detector RegisterWatch: name already registered" in done.stderr
    (tmp_path / "site_checks-0.1.dist-info" / "entry_points.txt").write_text(
        "[voipwatch.detectors]\nhelpers = site_checks.helpers\n", encoding="utf-8")
    done = voipwatch(tmp_path, "config", "show")
    assert done.returncode == 1 and done.stderr.strip() == (
        "error: detector plugin helpers = 'site_checks.helpers' (from site_checks): "
        "the module registers no detector (@register)")
