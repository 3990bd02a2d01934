"""scripts/shapes.py: every capture shape of `benchmark.py --matrix` carries the same traffic.

One small generated capture (2,000 frames: calls with RTP on the voice VLAN, DNS on the data VLAN
and under QinQ, untagged frames) is converted into every shape. For each shape, capinfos reads the
expected file type, link type(s) and frame count; tshark's rtp,streams finds the original's streams
with the same figures (IPv6 addresses mapped back); and voipwatch analyze (batch) writes the same
tables (shape_compare.py maps back what the framing changes: addresses, VLAN stacks).
"""
from __future__ import annotations

import gzip
import ipaddress
import json
import lzma
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from peer import rtp_streams, run as tshark_run
from voipwatch.analyze import analyze_files, write_outputs
from voipwatch.batch.driver import ChunkReader
from voipwatch.tables import table_columns

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import shape_compare  # noqa: E402
import shapes  # noqa: E402
from shapes import BY_NAME  # noqa: E402

FRAMES = 2000
GEN_ARGS = ["--packets", str(FRAMES), "--calls-concurrent", "6", "--phones", "20", "--call-duration-s", "1", "3",
            "--qinq-every-s", "0.5", "--data-dns-per-s", "5", "--options-every-s", "1", "--seed", "3", "-q"]
OTHERS = [s.name for s in shapes.SHAPES if s.name != "original"]
COMPRESSED = ("gz", "zst", "xz")


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("shapes")
    source = folder / "site.pcap"
    subprocess.run([sys.executable, str(REPO / "scripts" / "gen_site_capture.py"), "-o", str(source), *GEN_ARGS],
                   check=True, timeout=60)
    return shapes.build_shapes(source, folder / "cache", log=lambda *_: None)


@pytest.fixture(scope="module")
def original_streams(made, tshark) -> dict:
    streams = rtp_streams(tshark, made["original"]["path"])
    truth = json.loads(Path(made["original"]["path"]).with_suffix(".truth.json").read_text())
    assert len(streams) == truth["rtp"]["streams"] >= 10
    return streams


@pytest.fixture(scope="module")
def original_outputs(made, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("original-out")
    write_outputs(analyze_files([made["original"]["path"]]), out, "csv")
    return out


def _path(made: dict, name: str) -> Path:
    return Path(made[name]["path"])


@pytest.mark.peer
@pytest.mark.parametrize("name", OTHERS)
def test_capinfos_reads_the_shape(name, made):
    shape = BY_NAME[name]
    assert shapes.check_shape(shape, _path(made, name), FRAMES) == []
    head = _path(made, name).read_bytes()[:4]
    if name == "pcap-be":
        assert head == b"\xa1\xb2\xc3\xd4"
    if name == "pcap-ns":
        assert head == b"\x4d\x3c\xb2\xa1"
    if shape.compressor:                      # the original's bytes, compressed
        data = _path(made, name).read_bytes()
        raw = gzip.decompress(data) if name == "gz" else lzma.decompress(data) if name == "xz" else \
            subprocess.run(["zstd", "-q", "-dc"], input=data, capture_output=True, check=True).stdout
        assert raw == _path(made, "original").read_bytes()


@pytest.mark.peer
@pytest.mark.parametrize("name", OTHERS)
def test_tshark_finds_the_same_rtp_streams(name, made, tshark, original_streams, tmp_path):
    shape = BY_NAME[name]
    path = _path(made, name)
    if not shape.tshark_reads:                # tshark 4.0 reads no xz: its decompressed bytes
        path = tmp_path / "decompressed.pcap"
        path.write_bytes(lzma.decompress(_path(made, name).read_bytes()))
    streams = rtp_streams(tshark, str(path))
    assert shape_compare.map_streams(streams, shape) == original_streams
    if shape.ipv6:
        assert all(ipaddress.ip_address(k[0]).version == 6 and ipaddress.ip_address(k[2]).version == 6
                   for k in streams)


@pytest.mark.peer
@pytest.mark.parametrize("name", ["ipv6", "raw6"])
def test_ipv6_shapes_have_valid_udp_checksums(name, made, tshark):
    """RFC 8200 §8.1: the UDP checksum covers the IPv6 pseudo-header; tshark verifies every one."""
    out = tshark_run(tshark, ["-r", str(_path(made, name)), "-o", "udp.check_checksum:TRUE", "-T", "fields",
                              "-e", "ipv6.src", "-e", "udp.checksum.status", "-e", "_ws.malformed"])
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == FRAMES
    assert all(r[0].startswith(("fd00:4:6::", "2001:db8:4:6::")) and r[1] == "1" and r[2] == "" for r in rows)


@pytest.mark.parametrize("name", COMPRESSED)
def test_compressed_captures_take_the_vectorised_path(name, made):
    """gzip, zstd and xz are decompressed in chunks for the vectorised scanner, not left to the
    per-frame reader: every record is scanned there, and its RTP candidates are found."""
    reader = ChunkReader(str(_path(made, name)))
    chunks = list(reader)
    assert reader.complete and reader.compression == {"gz": "gzip", "zst": "zstd", "xz": "xz"}[name]
    assert sum(chunk.records for chunk in chunks) == FRAMES
    assert sum(chunk.n_cands for chunk in chunks) == sum(chunk.n_cands for chunk in ChunkReader(str(_path(made, "original"))))


@pytest.mark.parametrize("name", [name for name in OTHERS if name not in COMPRESSED])
def test_every_link_type_and_ipv6_take_the_vectorised_path(name, made):
    """Linux cooked v1/v2, raw IP, BSD null and loopback, QinQ and IPv6: every RTP packet of the
    generator's ground truth is an RTP candidate of the vectorised path, as in the original."""
    truth = json.loads(Path(made["original"]["path"]).with_suffix(".truth.json").read_text())
    expected = truth["capture"]["rtp_packets"]
    assert sum(chunk.n_cands for chunk in ChunkReader(str(_path(made, "original")))) == expected > 500
    reader = ChunkReader(str(_path(made, name)))
    assert sum(chunk.n_cands for chunk in reader) == expected and reader.complete


def _outputs(result, out: Path) -> tuple[dict[str, str], dict]:
    write_outputs(result, out, "csv")
    keys = ("frames_read", "frames_undecoded", "frames_by_class", "counts", "anomalies_by_reason")
    return ({p.name: p.read_text(encoding="utf-8") for p in sorted(out.glob("*.csv"))},
            {key: result.summary[key] for key in keys})


@pytest.mark.parametrize("name", ["ipv6", "raw6", "sll", "sll2", "null", "loop"])
def test_batch_stream_and_two_jobs_agree_on_the_shape(name, made, tmp_path):
    path = str(_path(made, name))
    batch = _outputs(analyze_files([path]), tmp_path / "batch")
    assert batch[1]["frames_by_class"]["rtp"] > 500
    assert _outputs(analyze_files([path], mode="stream"), tmp_path / "stream") == batch
    assert _outputs(analyze_files([path], jobs=2), tmp_path / "jobs2") == batch


@pytest.mark.parametrize("name", COMPRESSED)
@pytest.mark.parametrize("cut", [0.4, 0.8])
def test_a_cut_compressed_capture_is_read_up_to_the_damage(name, cut, made, tmp_path):
    """A compressed capture cut short: both paths (the vectorised chunk reader and the record reader)
    read every whole record before the cut, name the damage once, and agree on every table."""
    cut_path = tmp_path / f"cut.{name}"
    data = _path(made, name).read_bytes()
    cut_path.write_bytes(data[:int(len(data) * cut)])
    batch, stream = (analyze_files([str(cut_path)], mode=mode) for mode in ("batch", "stream"))
    truncated = [a for a in batch.records["anomalies"] if a.name == "capture.truncated_record"]
    assert len(truncated) == 1 and "(decompression stopped: " in truncated[0].detail
    assert 0 < batch.summary["frames_read"] == stream.summary["frames_read"] < FRAMES
    for table in ("sip_messages", "calls", "rtp_streams", "dns", "anomalies"):
        assert table_columns(batch.records[table], table) == table_columns(stream.records[table], table), table


@pytest.mark.parametrize("name", OTHERS)
def test_voipwatch_writes_the_same_tables(name, made, original_outputs, tmp_path):
    shape = BY_NAME[name]
    write_outputs(analyze_files([str(_path(made, name))]), tmp_path, "csv")
    diff = shape_compare.compare_outputs(original_outputs, tmp_path, shape)
    assert diff["tables"] == []
    if shape.vlan == "keep":
        assert diff["others"] == [] and diff["alerts"] == {}
        return
    # QinQ, raw IP, null and loopback change the VLAN stacks that the cross_vlan detectors judge;
    # every other alert is the same
    ours = shape_compare.normalised_outputs(original_outputs, shape, theirs=False)["alerts.jsonl"]
    theirs = shape_compare.normalised_outputs(tmp_path, shape, theirs=True)["alerts.jsonl"]
    not_vlan = lambda alerts: [a for a in alerts if a["alert"]["family"] != "cross_vlan"]   # noqa: E731
    assert not_vlan(theirs) == not_vlan(ours)


# ----------------------------------------------------------------------------- the pieces

def _rfc1071(data: bytes) -> int:
    """The Internet checksum the long way: 16-bit words, end-around carry, complement."""
    data += b"\0" * (len(data) & 1)
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def test_checksum_residue_is_rfc1071():
    rng = random.Random(5)
    for size in list(range(1, 40)) + [1471, 1472]:
        data = bytes(rng.randrange(256) for _ in range(size))
        assert shapes._checksum(shapes._sum16(data)) == (_rfc1071(data) or 0xFFFF)


def test_address_mapping_goes_both_ways():
    assert str(ipaddress.IPv6Address(shapes.map_ipv4(bytes((10, 110, 0, 2))))) == "fd00:4:6::a6e:2"   # RFC 4193
    assert str(ipaddress.IPv6Address(shapes.map_ipv4(bytes((203, 0, 113, 66))))) == "2001:db8:4:6::cb00:7142"
    text = "sip:1@[fd00:4:6::a6e:2]:5060 between 2001:db8:4:6::cb00:7142 and fd00:4:6::a6e:2"
    assert shapes.map_back_ipv6(text) == "sip:1@10.110.0.2:5060 between 203.0.113.66 and 10.110.0.2"


def test_sip_text_is_rewritten_where_it_names_hosts():
    body = b"v=0\r\no=- 1 1 IN IP4 10.110.0.5\r\nc=IN IP4 10.110.0.5\r\nm=audio 4000 RTP/AVP 0\r\n"
    msg = (b"INVITE sip:200@10.110.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.110.0.5:5060;received=10.110.0.5\r\n"
           b"Call-ID: abc@10.110.0.5\r\nUser-Agent: Phone 1.0.11.23\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    new = shapes.rewrite_sip_ipv6(msg)
    head, _, new_body = new.partition(b"\r\n\r\n")
    assert b"INVITE sip:200@[fd00:4:6::a6e:2] SIP/2.0" in head
    assert b"Via: SIP/2.0/UDP [fd00:4:6::a6e:5]:5060;received=fd00:4:6::a6e:5" in head   # RFC 3261 §20.42
    assert b"Call-ID: abc@[fd00:4:6::a6e:5]" in head
    assert b"User-Agent: Phone 1.0.11.23" in head                                       # not an address
    assert b"c=IN IP6 fd00:4:6::a6e:5" in new_body and b"o=- 1 1 IN IP6 fd00:4:6::a6e:5" in new_body
    assert head.endswith(b"\r\nContent-Length: %d" % len(new_body))
    assert shapes.rewrite_sip_ipv6(b"\x80\x00 not SIP") == b"\x80\x00 not SIP"


def _udp4(payload: bytes, checksum_error: int = 0) -> bytes:
    src, dst = bytes((10, 110, 0, 5)), bytes((10, 110, 0, 2))
    udp = struct.pack("!HHHH", 5060, 5060, 8 + len(payload), 0) + payload
    ck = _rfc1071(src + dst + struct.pack("!HH", 17, len(udp)) + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", (ck + checksum_error) & 0xFFFF) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src, dst)
    return ip + udp


def _udp6_checksum_ok(packet: bytes) -> bool:
    plen = struct.unpack_from("!H", packet, 4)[0]
    pseudo = packet[8:40] + struct.pack("!IxxxB", plen, 17)
    return _rfc1071(pseudo + packet[40:]) == 0


@pytest.mark.parametrize("payload", [b"\x80\x00" + bytes(170), b"REGISTER sip:10.110.0.2 SIP/2.0\r\n\r\n"])
def test_udp_checksum_over_ipv6_stays_right_or_wrong(payload):
    """A right checksum is right over the IPv6 pseudo-header; a wrong one stays wrong (nothing is fixed)."""
    from collections import Counter
    good = shapes.ipv4_to_ipv6(_udp4(payload), Counter())
    assert good[6] == 17 and _udp6_checksum_ok(good)
    bad = shapes.ipv4_to_ipv6(_udp4(payload, checksum_error=1), Counter())
    assert not _udp6_checksum_ok(bad)
