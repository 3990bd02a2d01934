"""Capture readers: every public capture against capinfos/tshark, plus generated format edge cases."""
from __future__ import annotations

import gzip
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from voipwatch.capture import ANOMALIES, MAX_CAPLEN, CaptureError, read_capture, read_captures
from voipwatch.records import Anomaly, Frame

PUBLIC_SUFFIXES = {".pcap", ".pcapng", ".cap"}
NOT_PCAP = {"sipnab/c07-sip-r2.cap": "Microsoft NetMon 2.x"}


def public_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and (p.suffix in PUBLIC_SUFFIXES or p.name == "SIP_CALL_RTP_G711"))


def frames(items) -> list[Frame]:
    return [i for i in items if type(i) is Frame]


def anomalies(items) -> list[Anomaly]:
    found = [i for i in items if type(i) is Anomaly]
    assert all(a.layer == "capture" and a.name in ANOMALIES for a in found)
    return found


# --- writers for generated captures (layouts as in voipwatch.capture) ---------------------------

def pcap_bytes(records: list[tuple[float, bytes]], *, endian: str = "<", nano: bool = False,
               linktype: int = 1, snaplen: int = 65535) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for ts, data in records:
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if nano else 1e6))
        out.append(struct.pack(endian + "IIII", sec, frac, len(data), len(data)) + data)
    return b"".join(out)


def ng_block(btype: int, body: bytes, endian: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    size = len(body) + 12
    return struct.pack(endian + "II", btype, size) + body + struct.pack(endian + "I", size)


def ng_option(code: int, value: bytes, endian: str = "<") -> bytes:
    return struct.pack(endian + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def ng_shb(endian: str = "<") -> bytes:
    return ng_block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1), endian)


def ng_idb(linktype: int, endian: str = "<", tsresol: int | None = None, tsoffset: int | None = None,
           snaplen: int = 0) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += ng_option(9, bytes([tsresol]), endian)
    if tsoffset is not None:
        opts += ng_option(14, struct.pack(endian + "q", tsoffset), endian)
    if opts:
        opts += ng_option(0, b"", endian)
    return ng_block(1, struct.pack(endian + "HHI", linktype, 0, snaplen) + opts, endian)


def ng_epb(iface: int, ticks: int, data: bytes, endian: str = "<") -> bytes:
    return ng_block(6, struct.pack(endian + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF,
                                   len(data), len(data)) + data, endian)


ETH_FRAME = bytes(range(60))
RAW_FRAME = bytes([0x45]) + bytes(39)


# --- public captures ------------------------------------------------------------------------------

@pytest.mark.peer
def test_every_public_capture_reads_like_capinfos(public_captures: Path, tshark: str) -> None:
    capinfos = shutil.which("capinfos") or str(Path(tshark).with_name("capinfos"))
    checked = 0
    for path in public_files(public_captures):
        rel = path.relative_to(public_captures).as_posix()
        if rel in NOT_PCAP:
            with pytest.raises(CaptureError) as err:
                list(read_capture(str(path)))
            assert err.value.path == str(path) and err.value.offset == 0
            assert str(path) in str(err.value) and "offset 0" in str(err.value)
            assert NOT_PCAP[rel] in str(err.value)
            continue
        items = list(read_capture(str(path), source=3))
        got = frames(items)
        assert anomalies(items) == [], rel
        row = subprocess.run([capinfos, "-T", "-r", "-c", "-a", "-e", "-S", "-M", str(path)],
                             capture_output=True, text=True, check=True).stdout.split("\t")
        count, earliest, latest = int(row[1]), float(row[2]), float(row[3])
        assert len(got) == count, rel
        assert [f.frame for f in got] == list(range(1, count + 1))
        assert all(f.source == 3 for f in got)
        assert min(f.ts for f in got) == pytest.approx(earliest, abs=1e-6), rel
        assert max(f.ts for f in got) == pytest.approx(latest, abs=1e-6), rel
        checked += 1
    assert checked >= 70


@pytest.mark.parametrize("rel", [
    "ndpi/pcap/sip_hello.pcapng", "ndpi/pcap/stun.pcap", "ipfixprobe/inputs/vlan.pcap",
    "sip-attacks/Traces/BadUserAgent-sipvicious.pcap", "sngrep/ipv6frag.pcap",
    "suricata-verify/sip-body-large/sip-body-large.pcap", "heplify/ipip0.pcap",
    "zeek/Traces/sip/sip-long-request-response-paths.pcap", "sipnab/sip-488-codec-reject.pcapng",
])
@pytest.mark.peer
def test_frames_match_tshark(public_captures: Path, tshark: str, rel: str) -> None:
    """Per-frame timestamp, lengths and link type; pcapng and nanosecond files included."""
    path = public_captures / rel
    out = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "frame.time_epoch", "-e", "frame.len",
                          "-e", "frame.cap_len", "-e", "frame.offset_shift"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    got = frames(read_capture(str(path)))
    assert len(got) == len(out)
    for line, frame in zip(out, got):
        ts, wire_len, cap_len = line.split("\t")[:3]
        assert frame.ts == pytest.approx(float(ts), abs=1e-6)
        assert (frame.wire_len, len(frame.data)) == (int(wire_len), int(cap_len))


def test_link_types_of_public_captures(public_captures: Path) -> None:
    expected = {"sngrep/ipv6frag.pcap": 113, "ndpi/pcap/rtcp_multiple_pkts_in_the_same_datagram.pcap": 113,
                "heplify/ipip0.pcap": 101, "suricata-verify/dns/dns-udp-eve-log-srv/input.pcap": 101,
                "zeek/Traces/sip/sip-long-request-response-paths.pcap": 228,
                "suricata-verify/sip-body-large/sip-body-large.pcap": 0, "sipnab/h263-over-rtp.pcap": 0,
                "ndpi/pcap/sip_hello.pcapng": 1, "pcapplusplus/QinQ_802.1_AD.pcapng": 1, "ndpi/pcap/gre.pcapng": 1}
    for rel, linktype in expected.items():
        assert {f.linktype for f in frames(read_capture(str(public_captures / rel)))} == {linktype}, rel


def test_offsets_point_at_records(public_captures: Path) -> None:
    path = public_captures / "sngrep/aaa.pcap"
    raw = path.read_bytes()
    for f in frames(read_capture(str(path))):
        caplen = struct.unpack_from("<I", raw, f.offset + 8)[0]
        assert raw[f.offset + 16:f.offset + 16 + caplen] == f.data


# --- pcap variants ----------------------------------------------------------------------------------

def test_big_endian_pcap(tmp_path: Path) -> None:
    path = tmp_path / "be.pcap"
    path.write_bytes(pcap_bytes([(1700000000.25, ETH_FRAME), (1700000001.5, ETH_FRAME[:42])], endian=">"))
    got = frames(read_capture(str(path)))
    assert [(f.ts, len(f.data), f.linktype, f.offset) for f in got] == \
        [(1700000000.25, 60, 1, 24), (1700000001.5, 42, 1, 24 + 16 + 60)]


def test_nanosecond_pcap_both_byte_orders(tmp_path: Path) -> None:
    for endian in "<>":
        path = tmp_path / f"ns{endian == '<'}.pcap"
        path.write_bytes(pcap_bytes([(1700000000.123456789, ETH_FRAME)], endian=endian, nano=True))
        (f,) = frames(read_capture(str(path)))
        assert f.ts == pytest.approx(1700000000.123456789, abs=1e-7)


def test_gzip_detected_by_magic_not_name(tmp_path: Path, public_captures: Path) -> None:
    for rel in ("sngrep/aaa.pcap", "ndpi/pcap/sip_hello.pcapng"):
        src = public_captures / rel
        path = tmp_path / (src.name + ".bin")              # no .gz suffix on purpose
        path.write_bytes(gzip.compress(src.read_bytes()))
        plain, packed = list(read_capture(str(src))), list(read_capture(str(path)))
        assert packed == plain and len(packed) > 0


def test_truncated_gzip_keeps_frames_before_the_damage(tmp_path: Path, public_captures: Path) -> None:
    src = public_captures / "sngrep/aaa.pcap"
    packed = gzip.compress(src.read_bytes())
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(packed[:len(packed) // 2])
    items = list(read_capture(str(path)))
    (bad,) = anomalies(items)
    assert bad.name == "capture.truncated_record" and "decompression" in bad.detail
    whole = frames(read_capture(str(src)))
    got = frames(items)
    assert 100 < len(got) < len(whole) and got == whole[:len(got)]


def test_stdin(public_captures: Path) -> None:
    src = public_captures / "sngrep/ipip.pcap"
    code = ("import sys; from voipwatch.capture import read_capture; "
            "print(sum(1 for f in read_capture('-')))")
    for blob in (src.read_bytes(), gzip.compress(src.read_bytes())):
        out = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True, check=True,
                             cwd=Path(__file__).resolve().parents[1])
        assert out.stdout.strip() == b"4"


def test_stdin_monkeypatched(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(pcap_bytes([(1.0, ETH_FRAME)]))
    with path.open("rb") as fh:
        monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": fh})())
        assert len(frames(read_capture("-"))) == 1


def test_truncated_real_capture(tmp_path: Path, public_captures: Path) -> None:
    src = public_captures / "sipnab/sip-rtp-g711.pcap"
    whole = frames(read_capture(str(src)))
    cut_at = whole[500].offset + 30                          # inside record 501's data
    path = tmp_path / "cut.pcap"
    path.write_bytes(src.read_bytes()[:cut_at])
    items = list(read_capture(str(path)))
    assert frames(items) == whole[:500]
    (bad,) = anomalies(items)
    assert (bad.layer, bad.name, bad.frame) == ("capture", "capture.truncated_record", 501)
    assert f"offset {whole[500].offset}" in bad.detail and str(path) in bad.detail
    # cut inside a record header
    path.write_bytes(src.read_bytes()[:whole[10].offset + 7])
    items = list(read_capture(str(path)))
    assert len(frames(items)) == 10 and [a.name for a in anomalies(items)] == ["capture.truncated_record"]


def test_corrupt_record_length_stops_cleanly(tmp_path: Path) -> None:
    blob = bytearray(pcap_bytes([(1.0, ETH_FRAME), (2.0, ETH_FRAME), (3.0, ETH_FRAME)]))
    struct.pack_into("<I", blob, 24 + 76 + 8, MAX_CAPLEN + 1)     # caplen of record 2
    path = tmp_path / "bad.pcap"
    path.write_bytes(bytes(blob))
    items = list(read_capture(str(path)))
    assert len(frames(items)) == 1
    (bad,) = anomalies(items)
    assert (bad.name, bad.frame) == ("capture.bad_record_length", 2) and "offset 100" in bad.detail


def test_caplen_over_snaplen_is_an_anomaly_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "snap.pcap"
    path.write_bytes(pcap_bytes([(1.0, ETH_FRAME), (2.0, ETH_FRAME[:20])], snaplen=40))
    items = list(read_capture(str(path)))
    assert [type(i).__name__ for i in items] == ["Frame", "Anomaly", "Frame"]
    assert items[1].name == "capture.caplen_exceeds_snaplen" and items[1].frame == 1
    assert len(items[0].data) == 60


def test_unsupported_linktype_still_yielded(tmp_path: Path) -> None:
    path = tmp_path / "lt.pcap"
    path.write_bytes(pcap_bytes([(1.0, b"\x01\x02")], linktype=147))
    assert [f.linktype for f in frames(read_capture(str(path)))] == [147]


@pytest.mark.parametrize("blob,message", [
    (b"", "empty file"),
    (b"\xd4\xc3", "too short"),
    (b"\x12\x34\x56\x78" + bytes(40), "unknown file format (magic 0x12345678)"),
    (b"GMBU" + bytes(40), "NetMon 2.x"),
    (b"\xd4\xc3\xb2\xa1\x02\x00", "truncated pcap file header"),
    (struct.pack("<IHHiIII", 0xA1B2C3D4, 1, 0, 0, 0, 65535, 1), "unsupported pcap version 1.0"),
    (ng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x11223344, 1, 0, -1)), "byte-order magic"),
    (struct.pack("<III", 0x0A0D0D0A, 13, 0x1A2B3C4D), "bad section header length 13"),
    (ng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 2, 0, -1)), "unsupported pcapng version 2"),
])
def test_unreadable_header_raises_naming_file_and_offset(tmp_path: Path, blob: bytes, message: str) -> None:
    path = tmp_path / "garbage.pcap"
    path.write_bytes(blob)
    with pytest.raises(CaptureError) as err:
        list(read_capture(str(path)))
    assert message in str(err.value)
    assert str(err.value).startswith(f"{path}: offset {err.value.offset}: ")
    assert err.value.path == str(path)


def test_missing_file_raises_capture_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="cannot open"):
        list(read_capture(str(tmp_path / "nope.pcap")))


# --- pcapng ---------------------------------------------------------------------------------------

def test_pcapng_interfaces_resolutions_offsets_and_block_kinds(tmp_path: Path) -> None:
    blob = b"".join([
        ng_shb(),
        ng_idb(1),                                        # default resolution: microseconds
        ng_idb(101, tsresol=9, tsoffset=1_000_000_000),   # raw IP, nanoseconds, +1e9 s
        ng_block(0x0BAD, b"unknown block kind"),          # skipped
        ng_epb(0, 1_700_000_000_250_000, ETH_FRAME),
        ng_epb(1, 700_000_000_123_456_789, RAW_FRAME),
        ng_block(4, b"\0" * 4),                           # name resolution block: skipped
        ng_block(2, struct.pack("<HHIIII", 0, 0, 1_700_000_001_000_000 >> 32,
                                1_700_000_001_000_000 & 0xFFFFFFFF, 42, 60) + ETH_FRAME[:42]),  # legacy PB
        ng_block(3, struct.pack("<I", 60) + ETH_FRAME),   # SPB: interface 0, no timestamp
    ])
    path = tmp_path / "two.pcapng"
    path.write_bytes(blob)
    items = list(read_capture(str(path)))
    assert anomalies(items) == []
    got = frames(items)
    assert [(f.frame, f.linktype, len(f.data), f.wire_len) for f in got] == \
        [(1, 1, 60, 60), (2, 101, 40, 40), (3, 1, 42, 60), (4, 1, 60, 60)]
    assert got[0].ts == pytest.approx(1700000000.25)
    assert got[1].ts == pytest.approx(1700000000.123456789)
    assert got[2].ts == pytest.approx(1700000001.0)
    assert got[3].ts == got[2].ts                          # an SPB keeps the previous timestamp
    assert got[0].offset == len(ng_shb()) + len(ng_idb(1)) + len(ng_idb(101, tsresol=9, tsoffset=10**9)) + 32


def test_pcapng_power_of_two_resolution_and_sections_of_both_byte_orders(tmp_path: Path) -> None:
    blob = (ng_shb("<") + ng_idb(1, "<", tsresol=0x80 | 10) + ng_epb(0, 1024 * 1700000000 + 512, ETH_FRAME, "<")
            + ng_shb(">") + ng_idb(113, ">") + ng_epb(0, 1_700_000_002_000_000, b"\0" * 16, ">"))
    path = tmp_path / "sections.pcapng"
    path.write_bytes(blob)
    got = frames(read_capture(str(path)))
    assert [(f.frame, f.linktype, f.ts) for f in got] == [(1, 1, 1700000000.5), (2, 113, 1700000002.0)]


def test_pcapng_snaplen(tmp_path: Path) -> None:
    path = tmp_path / "snap.pcapng"
    spb = ng_block(3, struct.pack("<I", 61) + ETH_FRAME[:41])          # data padded to 44 bytes
    path.write_bytes(ng_shb() + ng_idb(1, snaplen=41) + spb + ng_epb(0, 10**15, ETH_FRAME))
    items = list(read_capture(str(path)))
    assert [(len(f.data), f.wire_len) for f in frames(items)] == [(41, 61), (60, 60)]
    assert [(a.name, a.frame) for a in anomalies(items)] == [("capture.caplen_exceeds_snaplen", 2)]


def test_pcapng_bad_blocks(tmp_path: Path) -> None:
    good = ng_shb() + ng_idb(1) + ng_epb(0, 10**15, ETH_FRAME)
    path = tmp_path / "bad.pcapng"
    # a packet on an interface never described: reported, reading goes on
    path.write_bytes(good + ng_epb(5, 10**15, ETH_FRAME) + ng_epb(0, 10**15, ETH_FRAME))
    items = list(read_capture(str(path)))
    assert [type(i).__name__ for i in items] == ["Frame", "Anomaly", "Frame"]
    assert items[1].name == "capture.bad_interface_id"
    # a block length that is not a multiple of 4: no resync
    path.write_bytes(good + struct.pack("<II", 6, 33) + bytes(40))
    items = list(read_capture(str(path)))
    assert len(frames(items)) == 1 and anomalies(items)[0].name == "capture.bad_record_length"
    # a block cut short by the end of the file
    path.write_bytes(good + ng_epb(0, 10**15, ETH_FRAME)[:50])
    items = list(read_capture(str(path)))
    assert len(frames(items)) == 1 and [a.name for a in anomalies(items)] == ["capture.truncated_record"]
    # a later section whose byte-order magic is neither order
    path.write_bytes(good + ng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x11223344, 1, 0, -1)))
    items = list(read_capture(str(path)))
    assert len(frames(items)) == 1 and [a.name for a in anomalies(items)] == ["capture.bad_section_header"]
    # trailing length disagrees with the leading one
    epb = bytearray(ng_epb(0, 10**15, ETH_FRAME))
    epb[-4:] = struct.pack("<I", 8)
    path.write_bytes(good + bytes(epb))
    assert anomalies(read_capture(str(path)))[0].name == "capture.bad_record_length"
    # a captured length overrunning its block is skipped, the next block is read
    epb = bytearray(ng_epb(0, 10**15, ETH_FRAME))
    struct.pack_into("<I", epb, 20, 500)
    path.write_bytes(good + bytes(epb) + ng_epb(0, 10**15, ETH_FRAME))
    items = list(read_capture(str(path)))
    assert len(frames(items)) == 2 and [a.name for a in anomalies(items)] == ["capture.bad_record_length"]
    # an interface option whose value runs past its block (if_tsoffset of 8 bytes, none left): reading stops
    for code in (9, 14):
        idb = ng_block(1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", code, 8))
        path.write_bytes(good + idb + ng_epb(1, 10**15, ETH_FRAME))
        items = list(read_capture(str(path)))
        assert len(frames(items)) == 1 and [a.name for a in anomalies(items)] == ["capture.bad_record_length"]
        assert "option" in anomalies(items)[0].detail


# --- merging --------------------------------------------------------------------------------------

def test_two_files_merged_in_time_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcapng"
    a.write_bytes(pcap_bytes([(10.0, b"a1"), (12.0, b"a2"), (14.0, b"a3")]))
    b.write_bytes(ng_shb() + ng_idb(101) + ng_epb(0, 11_000_000, b"b1") + ng_epb(0, 12_000_000, b"b2")
                  + ng_epb(0, 20_000_000, b"b3"))
    got = list(read_captures([str(a), str(b)]))
    assert [(f.frame, f.data, f.source, f.linktype) for f in got] == [
        (1, b"a1", 0, 1), (2, b"b1", 1, 101), (3, b"a2", 0, 1), (4, b"b2", 1, 101),  # tie: file order
        (5, b"a3", 0, 1), (6, b"b3", 1, 101)]
    assert got[3].offset == frames(read_capture(str(b)))[1].offset


def test_merge_renumbers_anomalies(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    a.write_bytes(pcap_bytes([(10.0, b"a1"), (30.0, b"a2")], snaplen=1))   # every frame over snaplen
    b.write_bytes(pcap_bytes([(20.0, b"b"), (21.0, b"b")])[:-1])           # last record cut
    got = list(read_captures([str(a), str(b)]))
    assert [(type(i).__name__, i.frame, getattr(i, "name", "")) for i in got] == [
        ("Frame", 1, ""), ("Anomaly", 1, "capture.caplen_exceeds_snaplen"),
        ("Frame", 2, ""), ("Anomaly", 3, "capture.truncated_record"),
        ("Frame", 3, ""), ("Anomaly", 3, "capture.caplen_exceeds_snaplen")]


def test_single_path_merge_is_the_file(public_captures: Path) -> None:
    path = str(public_captures / "sngrep/ipip.pcap")
    assert list(read_captures([path])) == list(read_capture(path))


def test_frames_are_ordinary_frames(public_captures: Path) -> None:
    """The reader builds Frame through slot descriptors: the objects equal constructor-built ones."""
    for f in frames(read_capture(str(public_captures / "sngrep/ipip.pcap"))):
        twin = Frame(f.ts, f.frame, f.linktype, f.data, f.wire_len, f.source, f.offset)
        assert f == twin and hash(f) == hash(twin) and repr(f) == repr(twin)
