"""The VoIP control dissectors (MGCP, H.248, H.225.0/Q.931 and RAS, SCCP, IAX2) against tshark on the public
captures that hold them, and on hostile input."""
from __future__ import annotations

import random
import subprocess
from collections import defaultdict

import pytest

from dissectors import h225, iax2, megaco, mgcp, skinny
from voipwatch.records import PacketMeta

META = PacketMeta(1.0, 1, (), "10.0.0.1", 1000, "10.0.0.2", 2000, "udp")
PUBLIC2 = "../public-2/ndpi/pcap/sccp_hw_conf_register.pcapng"


def _records(analysis, path, protocols):
    """(frame -> [VoipControl]) of our analysis, for the given protocols."""
    by_frame = defaultdict(list)
    result = analysis(path)
    for m in result.tables["voip_control"].itertuples():
        if m.protocol in protocols:
            by_frame[int(m.frame)].append(m)
    return by_frame


def _tshark(tshark, path, display, fields):
    out = subprocess.run([tshark, "-n", "-r", str(path), "-Y", display, "-T", "fields", "-E", "occurrence=a",
                          "-E", "aggregator=|", "-e", "frame.number", *sum((["-e", f] for f in fields), [])],
                         capture_output=True, text=True, check=True).stdout
    return {int(line.split("\t")[0]): line.split("\t")[1:] for line in out.splitlines()}


@pytest.mark.peer
@pytest.mark.parametrize("capture, count", [("ndpi/pcap/mgcp.pcap", 23), ("sipnab/SIP_CALL_RTP_G711", 30)])
def test_mgcp_agrees_with_tshark(capture, count, public_captures, tshark, analysis):
    path = public_captures / capture
    ours = _records(analysis, path, {"mgcp"})
    theirs = _tshark(tshark, path, "mgcp", ["mgcp.req.verb", "mgcp.transid", "mgcp.req.endpoint", "mgcp.rsp.rspcode"])
    assert len(theirs) == count and set(ours) == set(theirs)
    for frame, (verb, transid, endpoint, code) in theirs.items():
        (m,) = ours[frame]
        assert (m.message, m.transaction) == (verb or code, transid)
        assert (m.endpoint if isinstance(m.endpoint, str) else "") == endpoint


@pytest.mark.peer
def test_q931_and_ras_agree_with_tshark(public_captures, tshark, analysis):
    path = public_captures / "ndpi/pcap/h323.pcap"
    ours = _records(analysis, path, {"h225", "h225.ras"})
    q931 = _tshark(tshark, path, "q931", ["q931.message_type", "q931.calling_party_number.digits",
                                           "q931.called_party_number.digits"])
    ras = _tshark(tshark, path, "h225.RasMessage", ["h225.RasMessage"])
    assert (len(q931), len(ras)) == (8, 15) and set(ours) == set(q931) | set(ras)
    for frame, (mtype, calling, called) in q931.items():
        (m,) = ours[frame]
        assert (m.protocol, m.code) == ("h225", int(mtype, 16))
        assert ((m.calling if isinstance(m.calling, str) else ""), (m.called if isinstance(m.called, str) else "")) \
            == (calling, called)
    for frame, (choice,) in ras.items():
        (m,) = ours[frame]
        assert (m.protocol, m.code, m.message) == ("h225.ras", int(choice), h225.RAS_MESSAGES[int(choice)])


@pytest.mark.peer
def test_ras_beside_sip_agrees_with_tshark(public_captures, tshark, analysis):
    """The Wireshark SIP sample also holds RAS on UDP 1719 (24 messages): named by the same PER choice."""
    path = public_captures / "sipnab/SIP_CALL_RTP_G711"
    ours = _records(analysis, path, {"h225.ras"})
    ras = _tshark(tshark, path, "h225.RasMessage", ["h225.RasMessage"])
    assert len(ras) == 24 and {f: [m.code for m in ms] for f, ms in ours.items()} == \
        {f: [int(choice)] for f, (choice,) in ras.items()}


@pytest.mark.peer
@pytest.mark.parametrize("capture", ["ndpi/pcap/skinny.pcap", PUBLIC2])
def test_skinny_agrees_with_tshark(capture, public_captures, tshark, analysis):
    path = public_captures / capture
    ours = _records(analysis, path, {"sccp"})
    theirs = _tshark(tshark, path, "skinny", ["skinny.messageId", "skinny.DeviceName"])
    assert theirs and set(ours) == set(theirs)
    for frame, (ids, device) in theirs.items():
        assert [int(m.code) for m in ours[frame]] == [int(i) for i in ids.split("|")]
        names = [m.endpoint for m in ours[frame] if isinstance(m.endpoint, str)]
        assert names == ([device] if device else [])


@pytest.mark.peer
def test_iax2_agrees_with_tshark(public_captures, tshark, analysis):
    path = public_captures / "ndpi/pcap/iax.pcap"
    ours = _records(analysis, path, {"iax2"})
    theirs = _tshark(tshark, path, "iax2.packet_type == 1", ["iax2.type", "iax2.iax.subclass", "iax2.control.subclass"])
    assert len(theirs) == 10 and set(ours) == set(theirs)
    for frame, (ftype, iax_sub, control_sub) in theirs.items():
        (m,) = ours[frame]
        if iax_sub:
            assert (int(ftype), m.message) == (6, iax2.IAX_SUBCLASSES[int(iax_sub)])
        elif control_sub:
            assert (int(ftype), m.message) == (4, iax2.CONTROL_SUBCLASSES[int(control_sub)])
        else:
            assert m.message == iax2.FRAME_TYPES[int(ftype)]
    new = ours[1][0]
    assert (new.message, new.called, new.calling, new.secure) == ("NEW", "442088205155", "447782267949", False)
    summary = analysis(path).summary["frames_by_class"]
    assert (summary["iax2"], summary["iax2.media"]) == (10, 40)


def test_hostile_input_never_raises():
    rng = random.Random(11)
    seeds = [b"CRCX 1 aaln/1@gw MGCP 1.0\r\nC: 1\r\n\r\nm=audio 4 RTP/SAVP 0\r\n", b"200 1 OK\r\n",
             b"MEGACO/1 [1.2.3.4]:2944\r\nT=1{}", b"\x03\x00\x00\x10\x08\x02\x00\x01\x05\x6c\x05\x81\x31\x32",
             b"\x0c\x00\x01", b"\x0c\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00SEP1",
             b"\x80\x01\x00\x00\x00\x00\x00\x01\x00\x00\x06\x01\x26\x02\x00\x01\x01\x09123"]
    parsers = [mgcp.parse, megaco.parse, h225.parse_q931, h225.parse_ras, skinny.parse, iax2.parse]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            if data and rng.random() < 0.5:
                data[rng.randrange(len(data))] = rng.randrange(256)
            else:
                data = data[:rng.randrange(len(data) + 1)]
        for parse in parsers:
            if data:
                record, notes = parse(META, bytes(data))
                assert record is not None or notes


def test_tpkt_framer_gives_up_on_a_bad_header_once():
    framer = h225.framer()
    good = b"\x03\x00\x00\x08\x08\x01\x01\x05"
    messages, used, notes = framer.frame(good + b"\x07\x00\x00\x08xxxx", META)
    assert messages == [good] and used == len(good) + 8 and [n.name for n in notes] == ["h225.bad_tpkt"]
    assert framer.frame(b"\x03\x00\x00\x08\x08\x01\x01\x05", META) == ([], 8, [])


def test_mgcp_sdp_profile_sets_secure():
    offer = b"MDCX 9 aaln/1@gw MGCP 1.0\r\nC: AB\r\n\r\nv=0\r\nm=audio 4000 RTP/SAVP 0\r\n"
    record, _ = mgcp.parse(META, offer)
    assert (record.message, record.transaction, record.endpoint, record.call_id, record.secure) == \
        ("MDCX", "9", "aaln/1@gw", "AB", True)
    assert mgcp.parse(META, offer.replace(b"SAVP", b"AVP"))[0].secure is False
    assert mgcp.parse(META, b"200 9 OK\r\n")[0].secure is None


@pytest.mark.peer
def test_message_names_are_wiresharks(tshark):
    """Every name a dissector gives a numbered message is the one Wireshark's value string gives it."""
    out = subprocess.run([tshark, "-G", "values"], capture_output=True, text=True, check=True).stdout
    values: dict[str, dict[int, str]] = defaultdict(dict)
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[0] == "V":
            try:
                values[parts[1]][int(parts[2], 0)] = parts[3]
            except ValueError:          # a character value string ('B'): not one of ours
                pass
    tables = {"skinny.messageId": skinny.MESSAGES, "q931.message_type": h225.MESSAGE_TYPES,
              "iax2.type": iax2.FRAME_TYPES, "iax2.control.subclass": iax2.CONTROL_SUBCLASSES,
              "h225.RasMessage": dict(enumerate(h225.RAS_MESSAGES))}
    for field, ours in tables.items():
        assert {k: values[field].get(k) for k in ours} == ours, field
    # Wireshark spells two IAX subclasses its own way ("UNQULCH", "UNSUPPORTED"); RFC 5456 §8.4 says
    # UNQUELCH and UNSUPPORT, which we keep.
    differ = {k for k, v in iax2.IAX_SUBCLASSES.items() if values["iax2.iax.subclass"].get(k) != v}
    assert differ == {29, 33}


def test_iax2_encryption_ie_is_0x2b_not_calling_presentation():
    """RFC 5456 §8.6: ENCRYPTION is IE 0x2b (Wireshark: "Encryption format"); 0x26 is CALLINGPRES."""
    def new(ie: bytes) -> bytes:
        return b"\x80\x01\x00\x00\x00\x00\x00\x01\x00\x00\x06\x01" + ie
    assert iax2.parse(META, new(b"\x2b\x02\x00\x01"))[0].secure is True
    assert iax2.parse(META, new(b"\x26\x01\x00"))[0].secure is False
    assert iax2.parse(META, new(b"\x2b\x02\x00\x00"))[0].secure is False
