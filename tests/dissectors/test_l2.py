"""CDP/LLDP(-MED) dissector: every field of every advertisement in the public captures against tshark 4.0,
hand-built malformed TLVs as named anomalies, and fuzzing (never raises)."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from dissectors.l2 import ANOMALIES, parse_l2
from voipwatch.analyze import analyze_files
from voipwatch.records import Anomaly, L2Neighbor
from voipwatch.config import load_settings
from mutate import mutations
from peer import run

PUBLIC_2 = Path(__file__).resolve().parents[2].parent / "shared" / "captures" / "public-2"
SAMPLES = Path(__file__).resolve().parents[2] / "sample_captures"
CAPTURES = [PUBLIC_2 / name for name in (
    "lldpd/sg200.pcap", "lldpd/med-loc-malformed.pcap", "tcpdump/LLDP_and_CDP.pcap", "tcpdump/3560_CDP.pcap",
    "zeek/Traces/cdp-v1.pcap", "zeek/Traces/lldp.pcap", "arkime/wireshark-lldp.pcap", "tcpdump/various_gre.pcap",
)] + [SAMPLES / f"xv-{name}.pcap" for name in ("attacks", "benign", "inferred")]

# tshark's capability booleans -> the names the record uses
CDP_CAPS = {"router": "router", "trans_bridge": "bridge", "src_bridge": "source_route_bridge", "switch": "switch",
            "host": "host", "igmp_capable": "igmp", "repeater": "repeater", "voip_phone": "phone"}
LLDP_CAPS = {"other": "other", "repeater": "repeater", "bridge": "bridge", "wlan_access_pt": "wlan_ap",
             "router": "router", "telephone": "phone", "docsis_cable_device": "docsis", "station_only": "station"}
FIELDS = ["frame.number", "frame.protocols", "cdp.deviceid", "cdp.portid", "cdp.platform", "cdp.software_version", "cdp.system_name",
          "cdp.ttl", "cdp.native_vlan", "cdp.tlv.type", "cdp.voice_vlan", "cdp.nrgyz.ip_address",
          *[f"cdp.capabilities.{n}" for n in CDP_CAPS], "cdp.capabilities",
          "lldp.chassis.subtype", "lldp.chassis.id.mac", "lldp.chassis.id", "lldp.port.subtype", "lldp.port.id.mac",
          "lldp.port.id", "lldp.time_to_live", "lldp.tlv.system.name", "lldp.tlv.system.desc",
          *[f"lldp.tlv.enable_system_cap.{n}" for n in LLDP_CAPS], "lldp.tlv.enable_system_cap",
          "lldp.media.subtype", "lldp.media.subtype.class", "lldp.media.model", "lldp.media.app_type",
          "lldp.media.tag_flag", "lldp.media.policy_flag", "lldp.media.vlan_id", "lldp.mgn.addr.ip4",
          "lldp.mgn.addr.ip6", "lldp.mgn.addr.hex", "lldp.ieee.802_1.port_vlan.id", "_ws.malformed"]
SEP = "\x1f"


def _tshark_l2(tshark: str, capture: Path) -> dict[int, dict[str, list[str]]]:
    """frame number -> field -> every occurrence, for the CDP/LLDP frames of a capture."""
    args = ["-r", str(capture), "-Y", "cdp or lldp", "-T", "fields", "-E", f"aggregator={SEP}"]
    for name in FIELDS:
        args += ["-e", name]
    rows = {}
    for line in run(tshark, args).splitlines():
        values = line.split("\t")
        row = {name: (value.split(SEP) if value else []) for name, value in zip(FIELDS, values)}
        rows[int(row["frame.number"][0])] = row
    return rows


def _first(row: dict, name: str) -> str | None:
    return row[name][0] if row[name] else None


def _int(row: dict, name: str) -> int | None:
    value = _first(row, name)
    return None if value is None else int(value, 0)


def _flags(row: dict, prefix: str, names: dict[str, str]) -> tuple[str, ...] | None:
    if not row[prefix]:
        return None
    return tuple(ours for theirs, ours in names.items() if _first(row, f"{prefix}.{theirs}") in ("1", "True"))


def _expected(row: dict) -> dict:
    """What tshark says, in the record's terms."""
    if row["cdp.tlv.type"]:
        types = {int(t, 16) for t in row["cdp.tlv.type"]}
        caps = _flags(row, "cdp.capabilities", CDP_CAPS)
        return {
            "protocol": "cdp", "device_id": _first(row, "cdp.deviceid"), "port_id": _first(row, "cdp.portid"),
            "platform": _first(row, "cdp.platform"), "system_name": _first(row, "cdp.system_name"),
            # Wireshark shows the software version one line per item
            "description": "\n".join(row["cdp.software_version"]) if row["cdp.software_version"] else None,
            "ttl": _int(row, "cdp.ttl"), "native_vlan": _int(row, "cdp.native_vlan"),
            "mgmt_address": _first(row, "cdp.nrgyz.ip_address"),
            "capabilities": caps or (), "phone": None if caps is None else "phone" in caps,
            "voice_vlan_query": 0x000F in types,
            "voice_vlan": _int(row, "cdp.voice_vlan") if 0x000E in types else None,
        }
    chassis, port = _int(row, "lldp.chassis.subtype"), _int(row, "lldp.port.subtype")
    caps = _flags(row, "lldp.tlv.enable_system_cap", LLDP_CAPS)
    med_class = _int(row, "lldp.media.subtype.class")
    voice = [i for i, app in enumerate(row["lldp.media.app_type"]) if app == "1"]
    tagged = voice and row["lldp.media.tag_flag"][voice[0]] in ("1", "True") \
        and row["lldp.media.policy_flag"][voice[0]] in ("0", "False")
    mgmt = _first(row, "lldp.mgn.addr.ip4") or _first(row, "lldp.mgn.addr.ip6") or _first(row, "lldp.mgn.addr.hex")
    return {
        "protocol": "lldp",
        "device_id": _first(row, "lldp.chassis.id.mac") if chassis == 4 else _first(row, "lldp.chassis.id"),
        "port_id": _first(row, "lldp.port.id.mac") if port == 3 else _first(row, "lldp.port.id"),
        "ttl": _int(row, "lldp.time_to_live"), "system_name": _first(row, "lldp.tlv.system.name"),
        "description": (_first(row, "lldp.tlv.system.desc") or "").replace("\\n", "\n") or None,
        "capabilities": caps or (), "med_class": med_class, "platform": _first(row, "lldp.media.model"),
        "med_policy": "0x02" in row["lldp.media.subtype"],
        "voice_vlan": int(row["lldp.media.vlan_id"][voice[0]]) if tagged else None,
        "mgmt_address": mgmt, "native_vlan": _int(row, "lldp.ieee.802_1.port_vlan.id"),
        "phone": None if caps is None and med_class is None else (
            med_class == 3 or "phone" in (caps or ())),
    }


def _records(capture: Path):
    """frame -> L2Neighbor, and every anomaly, from the pipeline."""
    result = analyze_files([str(capture)], load_settings(None), mode="batch")
    return {n.frame: n for n in result.records[L2Neighbor]}, result.records[Anomaly]


@pytest.mark.peer
@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_every_advertisement_matches_tshark(tshark, capture):
    expected = _tshark_l2(tshark, capture)
    records, every_anomaly = _records(capture)
    anomalies = [a for a in every_anomaly if a.layer in ("cdp", "lldp")]
    # CDP inside GRE (protocol type 0x2000, GRE keepalives) is not followed: counted as gre.unsupported
    in_gre = {f for f, row in expected.items() if ":gre:" in row["frame.protocols"][0]}
    expected = {f: row for f, row in expected.items() if f not in in_gre}
    assert expected and set(records) == set(expected)
    for frame, row in expected.items():
        record, want = records[frame], _expected(row)
        if row["_ws.malformed"]:       # tshark stops at the malformed TLV; the walk goes on to the next one
            want = {name: value for name, value in want.items() if value not in (None, ())}
        got = {name: getattr(record, name) for name in want}
        if want.get("mgmt_address") and ":" in got["mgmt_address"] and "." not in want["mgmt_address"]:
            got["mgmt_address"] = got["mgmt_address"].replace(":", "")        # an 802 MAC, shown as hex
        assert got == want, f"frame {frame}"
    # a malformed TLV is named where tshark finds the frame malformed, and nowhere else
    assert {a.frame for a in anomalies} == {f for f, row in expected.items() if row["_ws.malformed"]}
    assert in_gre == {a.frame for a in every_anomaly if a.detail == "GRE protocol type 0x2000"}


@pytest.mark.peer
def test_the_comparison_reaches_every_claim(tshark):
    """The captures above exercise each field: the tshark comparison is not vacuous."""
    seen: dict[str, set] = {}
    for capture in CAPTURES:
        for record in _records(capture)[0].values():
            for name in record.__slots__:
                seen.setdefault(name, set()).add(getattr(record, name))
    for name in ("device_id", "port_id", "system_name", "platform", "description", "mgmt_address", "med_class",
                 "voice_vlan", "native_vlan", "ttl"):
        assert seen[name] - {None}, name
    assert {True, False} <= seen["phone"] and {True, False} == seen["network_device"]
    assert {True, False} == seen["voice_vlan_query"] and {True, False} == seen["med_policy"]
    assert 50 in seen["voice_vlan"] and ("host", "phone") in seen["capabilities"]


def test_malformed_location_is_named_and_the_walk_goes_on():
    """lldpd's robustness frame: a civic location whose LCI length (2) leaves no room for what(1) and the
    country code(2) (RFC 4776 §3.1). The TLV's own length is sound, so the TLVs after it are read: system
    name (type 5, 9 bytes), description (type 6) and all capability bits, LLDP-MED class III."""
    records, anomalies = _records(PUBLIC_2 / "lldpd/med-loc-malformed.pcap")
    anomalies = [a for a in anomalies if a.layer in ("cdp", "lldp")]
    assert [(a.name, a.layer, a.frame, a.src, a.detail) for a in anomalies] == [
        ("lldp.bad_tlv", "lldp", 1, "0a:c0:de:9d:0a:74", "LLDP-MED civic location LCI length 02 in 5 bytes (at least 3)")]
    n = records[1]
    assert (n.system_name, n.description, n.med_class, n.phone) == (
        "defensics", "Codenomicon Defensics Test Suite", 3, True)
    assert len(n.capabilities) == 8 and n.med_policy and n.voice_vlan is None      # policy VLAN 0, untagged


# -- hand-built frames ------------------------------------------------------------------------------

def cdp(*tlvs: tuple[int, bytes], header: bytes = b"\x02\xb4\x00\x00") -> bytes:
    return header + b"".join(struct.pack("!HH", kind, len(value) + 4) + value for kind, value in tlvs)


def lldp(*tlvs: tuple[int, bytes], end: bool = True) -> bytes:
    body = b"".join(struct.pack("!H", kind << 9 | len(value)) + value for kind, value in tlvs)
    return body + (b"\x00\x00" if end else b"")


MANDATORY = ((1, b"\x04\x02\x00\x00\x00\x00\x01"), (2, b"\x05Gi1/0/1"), (3, b"\x00\x78"))


def parse(protocol: str, payload: bytes):
    neighbor, anomalies = parse_l2(protocol, payload, 1700000000.0, 7, (20,), "02:00:00:00:00:01")
    return neighbor, [(a.name, a.detail) for a in anomalies]


def test_cdp_phone_asking_for_its_voice_vlan():
    addresses = struct.pack("!I", 2) + b"\x01\x01\x81\x00\x01\x00" + b"\x01\x01\xcc\x00\x04\x0a\x00\x00\x07"
    n, anomalies = parse("cdp", cdp((0x0001, b"SEP001122334455"), (0x0002, addresses), (0x0003, b"Port 1"),
                                    (0x0004, struct.pack("!I", 0x490)), (0x0006, b"Cisco IP Phone 7965"),
                                    (0x000E, b"\x01\x00\x64"), (0x000F, b"\x20\x00\x01"), (0x0014, b"phone-7")))
    assert anomalies == []
    assert (n.protocol, n.device_id, n.port_id, n.platform, n.system_name) == (
        "cdp", "SEP001122334455", "Port 1", "Cisco IP Phone 7965", "phone-7")
    assert n.mgmt_address == "10.0.0.7"                                  # the CLNP entry is passed over
    assert n.capabilities == ("host", "phone") and n.phone is True and n.network_device is False
    assert n.voice_vlan == 100 and n.voice_vlan_query is True and n.ttl == 180
    assert (n.ts, n.frame, n.vlan, n.src_mac) == (1700000000.0, 7, (20,), "02:00:00:00:00:01")


def test_lldp_med_phone_with_voice_policy_and_inventory():
    policy = b"\x00\x12\xbb\x02\x01" + (0x400000 | 110 << 9 | 5 << 6 | 46).to_bytes(3, "big")
    n, anomalies = parse("lldp", lldp(*MANDATORY, (5, b"SEP1"), (7, b"\x00\x24\x00\x20"),
                                      (8, b"\x05\x01\x0a\x00\x00\x09\x02\x00\x00\x00\x01\x00"),
                                      (127, b"\x00\x12\xbb\x01\x00\x33\x03"), (127, policy),
                                      (127, b"\x00\x12\xbb\x0aIP Phone 8841\x00\x00"),
                                      (127, b"\x00\x80\xc2\x01\x00\x0a")))
    assert anomalies == []
    assert (n.device_id, n.port_id, n.ttl, n.system_name) == ("02:00:00:00:00:01", "Gi1/0/1", 120, "SEP1")
    assert n.mgmt_address == "10.0.0.9" and n.platform == "IP Phone 8841" and n.native_vlan == 10
    assert n.capabilities == ("phone",) and n.phone is True and n.med_class == 3
    assert n.med_policy is True and n.voice_vlan == 110


def test_untagged_or_unknown_voice_policy_names_no_vlan():
    for flags in (110 << 9, 0x800000 | 0x400000 | 110 << 9):             # T clear; U set
        n, anomalies = parse("lldp", lldp(*MANDATORY, (127, b"\x00\x12\xbb\x02\x01" + flags.to_bytes(3, "big"))))
        assert anomalies == [] and n.med_policy is True and n.voice_vlan is None


@pytest.mark.parametrize("payload,name,detail", [
    (b"\x02\xb4", "cdp.truncated", "CDP header needs 4 bytes, 2 captured"),
    (cdp((0x0001, b"S1")) + b"\x00\x06\x00", "cdp.truncated", "3 bytes after the last TLV"),
    (cdp((0x0001, b"S1")) + b"\x00\x06\x00\x20ab", "cdp.truncated", "TLV 0x0006 length 32, 6 bytes left"),
    (cdp((0x0001, b"S1")) + b"\x00\x06\x00\x02", "cdp.bad_tlv", "TLV 0x0006 length 2 is shorter than its header"),
    (cdp((0x0004, b"\x00\x01")), "cdp.bad_tlv", "capabilities TLV of 2 bytes, 4 expected"),
    (cdp((0x000A, b"\x01")), "cdp.bad_tlv", "native VLAN TLV of 1 bytes, 2 expected"),
    (cdp((0x0002, struct.pack("!I", 3) + b"\x01\x01\xcc\x00\x04\x0a")), "cdp.bad_tlv",
     "address list of 3 entries runs past its TLV"),
    (lldp(*MANDATORY, end=False)[:-1], "lldp.truncated", "TLV 3 length 2, 1 bytes left"),
    (lldp(*MANDATORY, end=False) + b"\x00", "lldp.truncated", "1 byte after the last TLV"),
    (lldp((3, b"\x00")), "lldp.bad_tlv", "TTL TLV of 1 bytes, 2 expected"),
    (lldp((1, b"\x04")), "lldp.bad_tlv", "chassis ID TLV of 1 bytes, 2-256 expected"),
    (lldp((7, b"\x00\x24\x00")), "lldp.bad_tlv", "system capabilities TLV of 3 bytes, 4 expected"),
    (lldp((5, b"x" * 256)), "lldp.bad_tlv", "TLV 5 of 256 bytes, at most 255 allowed"),
    (lldp((8, b"\x05\x01\x0a\x00\x00")), "lldp.bad_tlv", "management address TLV of 5 bytes, address string length 05"),
    (lldp((127, b"\x00\x12")), "lldp.bad_tlv", "organizationally specific TLV of 2 bytes, at least 4 expected"),
    (lldp((127, b"\x00\x12\xbb\x01\x00\x33")), "lldp.bad_tlv", "LLDP-MED subtype 1 TLV of 6 bytes, 7 expected"),
    (lldp((127, b"\x00\x12\xbb\x03\x01" + bytes(15))), "lldp.bad_tlv",
     "LLDP-MED coordinate location of 15 bytes, 16 expected"),
    (lldp((127, b"\x00\x12\xbb\x03\x03" + b"911")), "lldp.bad_tlv", "LLDP-MED ELIN of 3 digits, 10-25 expected"),
    (lldp((127, b"\x00\x12\xbb\x0a" + b"m" * 33)), "lldp.bad_tlv", "LLDP-MED model name of 33 bytes, at most 32 allowed"),
    (lldp((127, b"\x00\x80\xc2\x01\x00")), "lldp.bad_tlv", "802.1 port VLAN ID TLV of 5 bytes, 6 expected"),
], ids=lambda v: v if isinstance(v, str) and " " in v else "")
def test_malformed_tlvs_are_named(payload, name, detail):
    protocol = name.partition(".")[0]
    _, anomalies = parse(protocol, payload)
    assert anomalies == [(name, detail)] and name in ANOMALIES


def test_what_came_before_a_bad_tlv_is_kept():
    n, anomalies = parse("lldp", lldp(*MANDATORY, (5, b"edge-1"), (127, b"\x00\x12\xbb\x02\x01"),
                                      (127, b"\x00\x12\xbb\x01\x00\x33\x01"), end=False) + b"\x0a\x20ab")
    assert [a[0] for a in anomalies] == ["lldp.bad_tlv", "lldp.truncated"]
    assert n.system_name == "edge-1" and n.med_policy is True and n.med_class == 1 and n.voice_vlan is None


def test_identifiers_render_as_addresses_text_or_hex():
    for chassis, port, want in [(b"\x05\x01\xc0\xa8\x01\x02", b"\x04\x02" + bytes(15) + b"\x01", ("192.168.1.2", "::1")),
                                (b"\x07sw-1", b"\x03\x00\x11\x22\x33\x44\x55", ("sw-1", "00:11:22:33:44:55")),
                                (b"\x01\x0a\xc0\xde", b"\x02\xff", ("0ac0de", "ff"))]:
        n, anomalies = parse("lldp", lldp((1, chassis), (2, port), (3, b"\x00\x78")))
        assert anomalies == [] and (n.device_id, n.port_id) == want


def test_text_is_ascii_cut_at_nul_and_never_raw_bytes():
    n, _ = parse("cdp", cdp((0x0001, b"sw\xff1\x00junk"), (0x0006, b"")))
    assert n.device_id == "sw\ufffd1" and n.platform == ""


def test_fuzzed_advertisements_never_raise():
    seeds = [cdp((0x0001, b"S1"), (0x0002, struct.pack("!I", 1) + b"\x01\x01\xcc\x00\x04\x0a\x00\x00\x01"),
                 (0x0004, b"\x00\x00\x00\x90"), (0x000F, b"\x20\x00\x01")),
             lldp(*MANDATORY, (8, b"\x05\x01\x0a\x00\x00\x09\x02\x00\x00\x00\x01\x00"),
                  (127, b"\x00\x12\xbb\x02\x01\x40\x65\xae"), (127, b"\x00\x12\xbb\x03\x02\x03\x02US"))]
    names = set()
    for i, data in enumerate(mutations(9, seeds, 3000)):
        for protocol in ("cdp", "lldp"):
            neighbor, anomalies = parse_l2(protocol, data, 0.0, i, (), None)
            assert neighbor.protocol == protocol
            names |= {a.name for a in anomalies}
    assert names == ANOMALIES.keys()
