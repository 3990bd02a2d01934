"""The dispatch table: port rules, switches, default ports, and what it tells the batch path."""
from __future__ import annotations

import dataclasses
import random
import struct

from frames import udp_frame

from dissectors import dispatch
from dissectors.dispatch import TCP, UDP, Entry, PortIndex
from voipwatch import docs
from voipwatch.analyze import analyze_files
from voipwatch.config import PipelineConfig
from voipwatch.pipeline import Analyzer
from voipwatch.records import Anomaly, Frame


def _never(payload):
    return False


TOY = (
    Entry("a", "plain", _never, first=frozenset(b"ab")),
    Entry("b", "bound", _never, ports=frozenset((53, 5353))),
    Entry("c", "heuristic", _never, not_ports=frozenset((53, 123))),
    Entry("d", "bound elsewhere", _never, ports=frozenset((123, 5060))),
    Entry("e", "switched", _never, switch="rtp_heuristic", home=frozenset((5060, 53))),
    Entry("f", "another home", _never, home=frozenset((5060, 40000))),
)
PORTS = [53, 123, 5060, 5353, 5061, 40000, 0, 65535]
PAYLOADS = [b"", b"a", b"b", b"\x00", b"\x10ZRTP", b"\x16\xfe", b"\x80\x00", b"\xff", b"INVITE", b"\r\nOPTIONS"]


def _naive(table, config, sport: int, dport: int, payload: bytes) -> tuple[Entry, ...]:
    """The port and first-octet rules applied entry by entry, as an if-chain would."""
    out = []
    for e in table:
        if e.switch is not None and not getattr(config, e.switch):
            continue
        if e.ports and sport not in e.ports and dport not in e.ports:
            continue
        if sport in e.not_ports or dport in e.not_ports:
            continue
        if e.first is not None and (not payload or payload[0] not in e.first):
            continue
        out.append(e)
    return tuple(out)


def _naive_stray(table, config, sport: int, dport: int) -> Entry | None:
    """The first enabled entry whose default ports hold the source port, else the destination port."""
    enabled = [e for e in table if e.switch is None or getattr(config, e.switch)]
    return next((e for port in (sport, dport) for e in enabled if port in e.home), None)


def test_port_index_gives_the_entries_their_port_rules_allow_in_table_order():
    rng = random.Random(9)
    pairs = [(s, d) for s in PORTS for d in PORTS] + [(rng.randrange(65536), rng.randrange(65536)) for _ in range(500)]
    for table in (TOY, UDP, TCP):
        for config in (PipelineConfig(), PipelineConfig(rtp_heuristic=False)):
            index = PortIndex(table, config)
            for sport, dport in pairs:
                payload = rng.choice(PAYLOADS)
                assert index.entries(sport, dport, payload) == _naive(table, config, sport, dport, payload), \
                    (sport, dport, payload)
                assert index.stray(sport, dport) == _naive_stray(table, config, sport, dport), (sport, dport)
    assert [e.bucket for e in PortIndex(TOY, PipelineConfig()).entries(53, 123, b"a")] == ["a", "b", "d", "e", "f"]
    assert [e.bucket for e in PortIndex(TOY, PipelineConfig()).entries(53, 123, b"")] == ["b", "d", "e", "f"]
    assert [e.bucket for e in PortIndex(TOY, PipelineConfig(rtp_heuristic=False)).entries(1, 2, b"b")] == \
        ["a", "c", "f"]
    assert PortIndex(TOY, PipelineConfig()).stray(40000, 5060).bucket == "f"
    assert PortIndex(TOY, PipelineConfig()).stray(5060, 40000).bucket == "e"
    assert PortIndex(TOY, PipelineConfig(rtp_heuristic=False)).stray(5060, 40000).bucket == "f"


def test_an_entry_has_ports_or_not_ports_not_both():
    bad = Entry("x", "both", _never, ports=frozenset((1,)), not_ports=frozenset((2,)))
    try:
        PortIndex((bad,), PipelineConfig())
    except ValueError as exc:
        assert "not both" in str(exc)
    else:
        raise AssertionError("accepted an entry with both port rules")


def test_traffic_on_default_ports_is_matched_to_its_protocol():
    udp = PortIndex(UDP, PipelineConfig())
    assert udp.stray(5060, 40000).bucket == "sip" and udp.stray(40000, 5061).bucket == "sip"
    assert udp.stray(40000, 40001) is None
    # Over TCP the SIP entry claims every direction on the SIP ports: its framer tells what is not SIP.
    assert PortIndex(TCP, PipelineConfig()).stray(40000, 5061) is None


def test_every_name_an_entry_uses_is_declared():
    anomalies, classes = docs.anomalies(), docs.frame_classes()
    for entry in (*UDP, *TCP, dispatch.TCP_OTHER):
        assert entry.bucket in classes and entry.meaning
        assert entry.failed is None or (entry.failed in classes and entry.failed_meaning)
        assert entry.stray is None or (entry.stray in anomalies and entry.home)
        assert entry.switch is None or entry.switch in {f.name for f in dataclasses.fields(PipelineConfig)}
        if entry in TCP:
            assert (entry.framer is None) == (entry.parse is None) and entry.failed is None
        else:
            assert entry.framer is None and entry.opens is None
        assert entry.seek is None or entry.framer is not None
        for function in (entry.probe, entry.parse, entry.framer, entry.seek):
            if function is not None:
                module = __import__(function.__module__, fromlist=["ANOMALIES"])
                assert isinstance(getattr(module, "ANOMALIES", None), dict), f"{module.__name__} declares no ANOMALIES"


def test_no_probe_accepts_a_payload_outside_its_first_octets():
    """`first` only saves probe calls: a probe never accepts what its entry's first octets exclude."""
    rng = random.Random(6)
    seeds = [b"INVITE sip:a@b SIP/2.0\r\n\r\n", b"\r\nSIP/2.0 200 OK\r\n\r\n", b"\x10\x00\x00\x01ZRTP" + bytes(8),
             bytes([1, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42]) + bytes(12), b"\x16\xfe\xfd" + bytes(10),
             b"\x16\x03\x01" + bytes(10), b"\x80\xc8\x00\x01" + bytes(4), b"\x80\x00" + bytes(10)]
    entries = [e for e in (*UDP, *TCP) if e.first is not None and e.probe is not None]
    for _ in range(20000):
        payload = bytearray(rng.choice(seeds))
        payload[0] = rng.randrange(256)
        for e in entries:
            assert not e.probe(bytes(payload)) or payload[0] in e.first, (e.bucket, bytes(payload))
    for seed in seeds:                       # and the seeds are what they claim to be
        assert any(e.probe(seed) for e in entries)


def test_udp_entries_without_ports_leave_rtp_candidates_to_rtp():
    """The batch path decodes version-2 datagrams whose second octet is not 192..223 (RTCP, RFC 5761 §4)
    without the table, except on entries' ports: no other entry may claim one."""
    rng = random.Random(4)
    others = [e for e in UDP if not e.ports and e.bucket != "rtp"]
    assert {e.bucket for e in others} == {"sip", "zrtp", "stun", "dtls", "tftp", "rtcp"}
    for _ in range(20000):
        first = rng.randrange(0x80, 0xC0)
        second = rng.choice([*range(0, 192), *range(224, 256)])
        payload = bytes([first, second]) + rng.randbytes(rng.randrange(0, 200))
        assert not any(e.probe(payload) for e in others), payload[:8].hex()


def _run(table, payloads: list[tuple[int, int, bytes]], monkeypatch) -> Analyzer:
    monkeypatch.setattr(dispatch, "udp_entries", lambda: table)    # what the pipeline reads: core + site

    class Nothing:
        def __getattr__(self, name):
            return lambda *args: None

    analyzer = Analyzer(Nothing(), PipelineConfig())
    for n, (sport, dport, payload) in enumerate(payloads, 1):
        data = udp_frame(payload, sport, dport)
        analyzer.process(Frame(1.0 + n, n, 1, data, len(data)))
    analyzer.finish()
    return analyzer


def test_a_new_entry_is_all_it_takes_to_count_a_protocol(monkeypatch):
    """TFTP (RFC 1350 §5: opcodes 1-5 on port 69) as one more entry: the pipeline counts it and reports
    what its parser finds, with no other change. (voipwatch has its own TFTP entries since issue 11: the
    table without them is the "before".)"""
    def looks_like_tftp(payload):
        return payload[:1] == b"\x00" and 1 <= payload[1:2][0] <= 5 if len(payload) >= 2 else False

    def parse_tftp(meta, payload):
        if payload[1] == 5:                                    # ERROR
            return None, [Anomaly(meta.ts, meta.frame, "tftp", "tftp.error", payload[4:-1].decode())]
        return None, []

    tftp = Entry("tftp", "TFTP", looks_like_tftp, parse_tftp, failed="tftp", ports=frozenset((69,)))
    packets = [(40000, 69, b"\x00\x01boot.cfg\x00octet\x00"), (69, 40000, b"\x00\x05\x00\x01missing\x00"),
               (40000, 70, b"\x00\x01boot.cfg\x00octet\x00"), (5060, 40000, b"\x00\x01x")]
    core = tuple(e for e in UDP if e.bucket != "tftp")
    before = _run(core, packets, monkeypatch)
    assert dict(before.frame_classes) == {"udp.other": 4}
    assert dict(before.anomaly_counts) == {"sip.not_sip_on_sip_port": 1}
    after = _run((*core[:2], tftp, *core[2:]), packets, monkeypatch)
    assert dict(after.frame_classes) == {"tftp": 2, "udp.other": 2}
    assert dict(after.anomaly_counts) == {"tftp.error": 1, "sip.not_sip_on_sip_port": 1}



def test_batch_and_stream_agree_on_version_2_datagrams_the_table_names(tmp_path):
    """Datagrams with RTP's version bits on a SIP port that SDP did not announce are never heuristic RTP,
    even with a valid RTP header (a damaged INVITE can look like one): not SIP (an anomaly) in both
    paths; the batch path leaves them to the per-frame pipeline. Off the SIP ports the heuristic runs."""
    not_rtp = bytes([0x80, 72]) + bytes(14)            # payload type 72: RTCP's range, never RTP (RFC 5761 §4)
    frames = []
    for i in range(3):
        rtp = struct.pack("!BBHII", 0x80, 0, i, 160 * i, 7) + bytes(160)
        frames += [udp_frame(not_rtp, 40000, 5060), udp_frame(rtp, 40004, 40006), udp_frame(rtp, 40002, 5060)]
    path = tmp_path / "v2.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"".join(
        struct.pack("<IIII", 1_700_000_000, 20_000 * n, len(f), len(f)) + f for n, f in enumerate(frames)))
    results = [analyze_files([str(path)], mode=mode) for mode in ("batch", "stream")]
    for result in results:
        assert result.summary["frames_by_class"] == {"rtp": 3, "udp.other": 6}
        assert result.summary["anomalies_by_reason"] == {"sip.not_sip_on_sip_port": 6}
        assert [(s.sport, s.dport, s.packets) for s in result.records["rtp_streams"]] == [(40004, 40006, 3)]
    assert results[0].records["anomalies"] == results[1].records["anomalies"]
