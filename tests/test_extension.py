"""A new protocol and a new check wired end to end with no edit to voipwatch: a toy dissector (its record
declared as a table, its dispatch entry) and a toy detector, in a temporary package found through the entry
point groups voipwatch.dissectors and voipwatch.detectors, run by `python -m voipwatch analyze` on a capture
that carries the toy protocol. The record must reach its table and the detector's alert alerts.jsonl, in both
execution paths."""
from __future__ import annotations

import csv
import json
import socket

import dpkt
import pytest

from site_package import install, voipwatch

pytestmark = pytest.mark.cli     # runs `python -m voipwatch` as a site would

TOY_DISSECTOR = '''
    """Toy beacons: UDP port 47474, b"TOYB", a version octet, then the sender's name in ASCII."""
    from __future__ import annotations

    from dataclasses import dataclass

    from dissectors.dispatch import Entry
    from voipwatch.records import Anomaly, PacketMeta, at_packet, declare, r6

    PORT = 47474
    MAGIC = b"TOYB"
    ANOMALIES = {"toy.short": "a toy beacon without its version octet"}


    @dataclass(frozen=True, slots=True)
    class ToyBeacon:
        """One toy beacon."""
        pkt: PacketMeta
        version: int
        name: str


    declare(ToyBeacon, rank=45, timeline=at_packet, table="toy_beacons", sort=lambda b: (b.pkt.ts, b.pkt.frame),
            columns=(("ts", "Float64", lambda b: r6(b.pkt.ts)), ("frame", "Int64", lambda b: b.pkt.frame),
                     ("src", "string", lambda b: b.pkt.src), ("version", "Int64", lambda b: b.version),
                     ("name", "string", lambda b: b.name)))


    def probe(payload: bytes) -> bool:
        return payload[:4] == MAGIC


    def parse(meta: PacketMeta, payload: bytes):
        if len(payload) < 5:
            return None, [Anomaly(meta.ts, meta.frame, "toy", "toy.short", f"{len(payload)} bytes", meta.src, meta.dst)]
        return ToyBeacon(meta, payload[4], payload[5:].decode("ascii", "replace")), []


    UDP = (Entry("toy", "a toy beacon (UDP 47474)", probe, parse, failed="toy.malformed",
                 failed_meaning="a toy beacon too short to describe", ports=frozenset((PORT,))),)
'''

TOY_DETECTOR = '''
    """Toy beacons from senders running an old version."""
    from __future__ import annotations

    from dataclasses import dataclass

    from site_toy.toy import ToyBeacon
    from voipwatch.config_schema import opt
    from voipwatch.detect import AlertSpec, Detector, register


    @dataclass(frozen=True)
    class Config:
        min_version: int = opt(2, "Beacon versions below this one are reported.")


    @register
    class ToyWatch(Detector):
        """Reports senders of toy beacons older than min_version."""
        name = "toy_watch"
        consumes = (ToyBeacon,)
        Config = Config
        alerts = {"old_version": AlertSpec("OT-01", "low", "Part IV: Third-party software", "An old toy beacon")}

        def on_toy_beacon(self, beacon: ToyBeacon):
            if beacon.version < self.config.min_version:
                yield self.alert("old_version", ts=beacon.pkt.ts, identifier=beacon.pkt.src, src=beacon.pkt.src,
                                 msg=f"{beacon.name} sends toy beacons version {beacon.version}",
                                 evidence={"version": beacon.version, "name": beacon.name})
'''

BEACONS = [("10.0.0.1", b"TOYB\x01alpha"), ("10.0.0.2", b"TOYB\x03beta"), ("10.0.0.3", b"TOYB")]


def _capture(path):
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        for i, (src, payload) in enumerate(BEACONS):
            udp = dpkt.udp.UDP(sport=40000 + i, dport=47474, data=payload)
            udp.ulen = len(udp)
            ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton("10.0.0.9"), p=17, data=udp)
            ip.len = len(ip)
            frame = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip)
            writer.writepkt(bytes(frame), ts=1_700_000_000 + i)


@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_a_toy_dissector_and_detector_are_wired_end_to_end(tmp_path, mode):
    install(tmp_path, "site_toy", {"toy": TOY_DISSECTOR, "toy_watch": TOY_DETECTOR},
            {"voipwatch.dissectors": {"toy": "site_toy.toy"},
             "voipwatch.detectors": {"toy_watch": "site_toy.toy_watch"}})
    capture, out = tmp_path / "toy.pcap", tmp_path / "out"
    _capture(capture)
    done = voipwatch(tmp_path, "analyze", str(capture), "-o", str(out), "--mode", mode)
    assert done.returncode == 0, done.stderr

    with open(out / "toy_beacons.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["frame"], r["src"], r["version"], r["name"]) for r in rows] == [
        ("1", "10.0.0.1", "1", "alpha"), ("2", "10.0.0.2", "3", "beta")]
    alerts = [json.loads(line) for line in (out / "alerts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(a["alert"]["name"], a["alert"]["family"], a["src"], a["alert"]["evidence"]) for a in alerts] == [
        ("toy_watch.old_version", "toy_watch", "10.0.0.1", {"version": 1, "name": "alpha"})]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["frames_by_class"] == {"toy": 2, "toy.malformed": 1}
    assert summary["anomalies_by_reason"] == {"toy.short": 1}


@pytest.mark.parametrize("change, error", [
    (("UDP = (", "ENTRIES = ("), "the module declares no UDP or TCP entry"),
    (("ANOMALIES = {", "NAMES = {"), "the module declares no ANOMALIES (anomaly name -> meaning)"),
    (('Entry("toy", ', 'Entry("sip", '), "frame class 'sip' is a core one"),
    (("ports=frozenset((PORT,))", "first=None"),
     "UDP entry 'toy' has no ports and may claim RTP's first octets: give it ports, or first octets outside "
     "0x80..0xBF"),
    (("from dissectors.dispatch import Entry", "from dissectors.dispatch import Entree"),
     "ImportError: cannot import name 'Entree' from 'dissectors.dispatch'"),
])
def test_a_site_dissector_that_breaks_the_contract_is_one_error_line(tmp_path, change, error):
    install(tmp_path, "site_toy", {"toy": TOY_DISSECTOR.replace(*change)},
            {"voipwatch.dissectors": {"toy": "site_toy.toy"}})
    done = voipwatch(tmp_path, "config", "show")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    prefix = "error: dissector plugin toy = 'site_toy.toy' (from site_toy): "
    assert len(lines) == 1 and lines[0].startswith(prefix + error), lines


def test_a_site_entry_without_ports_is_allowed_when_its_first_octets_are_not_rtps(tmp_path):
    install(tmp_path, "site_toy", {"toy": TOY_DISSECTOR.replace("ports=frozenset((PORT,))",
                                                               "first=frozenset(MAGIC[:1])")},
            {"voipwatch.dissectors": {"toy": "site_toy.toy"}})
    done = voipwatch(tmp_path, "config", "show")
    assert done.returncode == 0 and done.stderr == ""
