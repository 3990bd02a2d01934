"""Record declarations (voipwatch.records.declare): a record type declared once, outside records.py, is
collected, written as a table and ordered on the detectors' timeline with no other edit."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from voipwatch.analyze import Collector, Tee
from voipwatch.detect import DetectorBus
from voipwatch.live.monitor import LiveSink, RotatingTables
from voipwatch.records import (RECORDS, TABLES, Call, PacketMeta, SipMessage, Timing, at_ts, declare, r6,
                               vlan_text)
from voipwatch.tables import read_table, write_records


@dataclass(frozen=True, slots=True)
class Toy:
    """A record type a future dissector might declare in its own module."""
    ts: float
    frame: int
    vlan: tuple[int, ...]
    name: str | None


@pytest.fixture
def toy():
    """Toy declared as the "toys" table (rank between TlsFlow and SipMessage), undeclared afterwards."""
    records, tables = dict(RECORDS), dict(TABLES)
    declare(Toy, rank=45, timeline=at_ts, table="toys", sort=lambda t: (t.ts, t.frame), columns=(
        ("ts", "Float64", lambda t: r6(t.ts)),
        ("frame", "Int64", lambda t: t.frame),
        ("vlan", "string", lambda t: vlan_text(t.vlan)),
        ("name", "string", lambda t: t.name),
    ))
    yield
    RECORDS.clear()
    RECORDS.update(records)
    TABLES.clear()
    TABLES.update(tables)


def _sip(ts: float, frame: int) -> SipMessage:
    meta = PacketMeta(ts, frame, (), "192.0.2.1", 5060, "192.0.2.2", 5060, "udp")
    return SipMessage(meta, True, "OPTIONS", "sip:a@b", "a", None, None, "c@x", 1, "OPTIONS", None, None, None,
                      None, None, None)


def test_a_declared_record_is_collected_and_written_as_its_table(toy, tmp_path):
    sink = Collector()
    toys = [Toy(2.5, 7, (10, 20), 'say "hi", twice'), Toy(1.0000004, 3, (), None)]
    for record in toys:
        sink.emit(record)
    assert sink["toys"] == sink[Toy] == toys
    assert sink["calls"] == [] and sink[Call] == []
    with pytest.raises(KeyError):
        sink["no_such_table"]
    path = write_records(sink["toys"], tmp_path, "toys", "csv")
    assert path.read_bytes() == b'ts,frame,vlan,name\n1.0,3,,\n2.5,7,10/20,"say ""hi"", twice"\n'
    assert read_table(tmp_path, "toys")["name"].tolist()[1] == 'say "hi", twice'


class _Recorder:
    """A detector that notes the order in which the bus delivers its records."""
    name = "recorder"

    def __init__(self, consumes):
        self.consumes = consumes
        self.seen: list = []

    def on_toy(self, record):
        self.seen.append(("toy", record.frame))

    def on_sip_message(self, record):
        self.seen.append(("sip", record.pkt.frame))

    def finish(self):
        return ()


def test_the_bus_orders_by_declared_time_then_rank_then_frame(toy):
    det = _Recorder((Toy, SipMessage))
    bus = DetectorBus([det], lambda alert: None, "batch", rtp_idle_s=5.0, call_idle_s=60.0, suppress_for_s=0.0)
    for record in (_sip(2.0, 9), Toy(2.0, 11, (), "a"), _sip(1.0, 12), Toy(2.0, 10, (), "b"), Toy(3.0, 1, (), "c")):
        bus.emit(record)
    bus.finish()
    # time 1.0 first; at time 2.0 the toys (rank 45) before SIP (rank 50), each by frame
    assert det.seen == [("sip", 12), ("toy", 10), ("toy", 11), ("sip", 9), ("toy", 1)]


def test_the_bus_refuses_a_detector_of_an_undeclared_record():
    with pytest.raises(TypeError, match="consumes Toy, which is no declared record"):
        DetectorBus([_Recorder((Toy,))], lambda alert: None, "batch", 5.0, 60.0, 0.0)


def test_a_call_is_released_when_its_tracker_closes_it():
    timing = Timing(rtp_idle_s=5.0, call_idle_s=3600.0, call_linger_s=64.0)
    call = Call("c@x", 10.0, 20.0, "a", "b", "192.0.2.1", "192.0.2.2", (), "udp", "answered", 200, 1.0, None,
                None, "none", first_frame=4)
    assert RECORDS[Call].timeline(call, timing) == (3620.0, 4)
    for state in ("ended", "failed", "cancelled"):
        assert RECORDS[Call].timeline(dataclasses.replace(call, state=state), timing) == (84.0, 4)


def test_declarations_are_checked(toy):
    with pytest.raises(TypeError, match="declared twice"):
        declare(Toy, rank=45, timeline=at_ts)
    with pytest.raises(TypeError, match="a table needs a name, a sort key and columns"):
        declare(Call, rank=1, timeline=at_ts, table="other_calls")
    with pytest.raises(TypeError, match="table 'toys' is already declared by Toy"):
        declare(SipMessage, rank=1, timeline=at_ts, table="toys", sort=lambda r: (), columns=[("a", "string", str)])
    with pytest.raises(TypeError, match="dtype 'int'"):
        declare(Call, rank=1, timeline=at_ts, table="t", sort=lambda r: (), columns=[("a", "int", str)])


def test_the_live_sink_writes_its_tables_and_ignores_other_records(tmp_path):
    sink = LiveSink(RotatingTables(tmp_path, rotate_s=3600.0, rotate_bytes=1 << 20))
    call = Call("c,1@x", 10.0, 20.0, 'a "b"', "c", "192.0.2.1", "192.0.2.2", (110,), "udp", "ended", 200, 1.0, 9.0,
                "ua", "none", first_frame=4)
    Tee(sink).emit(_sip(1.0, 1))                 # a record type the live sink does not write
    Tee(sink).emit(call)
    sink.tables.close()
    assert sink.counts == {"calls": 1, "registrations": 0, "bindings": 0, "rtp_streams": 0, "dns": 0}
    live = (tmp_path / "calls-0001.csv").read_bytes()
    (tmp_path / "batch").mkdir()
    assert live == write_records([call], tmp_path / "batch", "calls", "csv").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch", "calls-0001.csv"]
