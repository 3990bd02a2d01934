"""Bad input through the real command line: every case ends in a clear error or in counted anomalies.

The product promise, checked here by running `python -m voipwatch analyze` on generated inputs:
- an unusable capture (unknown format, empty, a header cut short, missing, a directory) exits 1 with
  one "error: <file>: offset N: ..." line on stderr, and nothing is written;
- damage inside a capture never ends the run: reading stops at the damaged record with one
  capture.* anomaly and every earlier frame is analyzed exactly as in a clean file;
- a malformed packet is counted in exactly one bucket of summary.json "frames_by_class" and
  described by anomalies (the anomalies table and "anomalies_by_reason" agree);
- an unusable configuration (not UTF-8, a state cap below 1, a negative time) exits 1 the same way;
- no Python traceback ever reaches the user; exit codes are 0 ok, 1 unusable input, 2 usage.
Each case runs in both execution paths (--mode batch and --mode stream), which must agree.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
import random
import re
import struct
import subprocess
import sys
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from voipwatch.tables import TABLES, read_table

pytestmark = pytest.mark.cli   # every test runs `python -m voipwatch`

REPO = Path(__file__).resolve().parents[1]
MODES = ("batch", "stream")
G711 = "sipnab/sip-rtp-g711.pcap"          # 852 frames: 2 calls, G.711 RTP, little-endian µs pcap
NETMON = "sipnab/c07-sip-r2.cap"
T0 = 1_700_000_000                          # capture time of generated frames

_spec = importlib.util.spec_from_file_location("voipwatch_test_pcapgen",
                                               REPO / "sample_captures" / "generators" / "pcapgen.py")
pg = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = pg                      # its dataclasses look their module up
_spec.loader.exec_module(pg)


# --- running the command line --------------------------------------------------------------------

@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    out: Path

    @property
    def summary(self) -> dict:
        return json.loads((self.out / "summary.json").read_text(encoding="utf-8"))

    def table(self, name: str) -> pd.DataFrame:
        return read_table(self.out, name)

    def anomalies(self) -> list[tuple[int, str, str]]:
        """(frame, layer, name) of every anomalies row, in table order."""
        df = self.table("anomalies")
        return list(zip(df["frame"].tolist(), df["layer"].tolist(), df["name"].tolist()))

    def details(self, name: str) -> list[str]:
        df = self.table("anomalies")
        return df.loc[df["name"] == name, "detail"].tolist()

    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}


def _start(args: list[str], stdin: Path | None) -> subprocess.Popen:
    fh = open(stdin, "rb") if stdin is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen([sys.executable, "-m", "voipwatch", *args], stdin=fh, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO)
    finally:
        if stdin is not None:
            fh.close()


def _check(run: Run) -> Run:
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout, run.stderr
    if run.rc == 0:
        _check_accounting(run)
    return run


def _check_accounting(run: Run) -> None:
    """Every frame in exactly one bucket; every counted anomaly reported in the table, and back."""
    summary = run.summary
    assert sum(summary["frames_by_class"].values()) == summary["frames_read"]
    assert all(count > 0 for count in summary["frames_by_class"].values())
    table = Counter(name for _, _, name in run.anomalies())
    assert dict(table) == summary["anomalies_by_reason"]


def analyze(tmp_path: Path, captures: list[str | Path], *extra: str, modes=MODES, stdin: Path | None = None,
            out: Path | None = None) -> dict[str, Run]:
    """Run `voipwatch analyze` in each mode (concurrently); Run per mode."""
    procs = {}
    for mode in modes:
        target = out if out is not None else tmp_path / f"out-{mode}"
        args = ["analyze", *map(str, captures), "-o", str(target), "--mode", mode, "--no-progress", *extra]
        procs[mode] = (_start(args, stdin), target)
    outputs = {mode: proc.communicate(timeout=600) for mode, (proc, _) in procs.items()}
    return {mode: _check(Run(proc.returncode, *outputs[mode], target)) for mode, (proc, target) in procs.items()}


def same_in_both(runs: dict[str, Run]) -> Run:
    """The paths agree on the accounting and on every table; the batch run is returned."""
    batch, stream = runs["batch"], runs["stream"]
    assert batch.rc == stream.rc == 0, (batch.stderr, stream.stderr)
    for key in ("frames_read", "frames_undecoded", "frames_by_class", "anomalies_by_reason", "counts"):
        assert batch.summary[key] == stream.summary[key], key
    for name in TABLES:
        assert (batch.out / f"{name}.csv").read_text() == (stream.out / f"{name}.csv").read_text(), name
    return batch


# --- writing captures ----------------------------------------------------------------------------

def pcap_bytes(frames: list[bytes | tuple[bytes, int]], linktype: int = 1, snaplen: int = 262144,
               t0: int = T0) -> bytes:
    """Classic little-endian µs pcap, 50 frames a second from t0; a frame given as (data, wire_len)
    was cut by the capture."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for i, item in enumerate(frames):
        data, wire_len = item if isinstance(item, tuple) else (item, len(item))
        out.append(struct.pack("<IIII", t0 + i // 50, (i % 50) * 20000, len(data), wire_len) + data)
    return b"".join(out)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def record_offsets(data: bytes) -> list[int]:
    """Byte offsets of the records of a little-endian pcap held in memory (whole records only)."""
    offsets, off = [], 24
    while off + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, off + 8)[0]
        if off + 16 + caplen > len(data):
            break
        offsets.append(off)
        off += 16 + caplen
    return offsets


def ng_block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


NG_SHB = ng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
NG_IDB = ng_block(1, struct.pack("<HHI", 1, 0, 65535))


def ng_epb(iface: int, data: bytes, i: int = 0) -> bytes:
    ts = (T0 + i) * 1_000_000
    return ng_block(6, struct.pack("<IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + data)


A, B = "10.0.0.1", "10.0.0.2"


def udp_frame(payload: bytes, sport: int = 5060, dport: int = 5060, src: str = A, dst: str = B) -> bytes:
    return pg.ethernet(pg.ipv4(src, dst, 17, pg.udp(src, sport, dst, dport, payload)), pg.ETH_IPV4)


def tcp_stream(data: bytes, segment: int = 1400, sport: int = 40000, dport: int = 5060) -> list[bytes]:
    """A SYN, then `data` in segments (no handshake replies: the analyzer needs none)."""
    frames = [pg.ethernet(pg.ipv4(A, B, 6, pg.tcp(A, sport, B, dport, 100, 0, 0x02)), pg.ETH_IPV4)]
    for pos in range(0, len(data), segment):
        chunk = data[pos:pos + segment]
        frames.append(pg.ethernet(pg.ipv4(A, B, 6, pg.tcp(A, sport, B, dport, 101 + pos, 1, 0x18, chunk)),
                                  pg.ETH_IPV4))
    return frames


HEADERS = [("Via", f"SIP/2.0/UDP {A}:5060;branch=z9hG4bK-1"), ("From", "<sip:alice@example.com>;tag=a1"),
           ("To", "<sip:bob@example.com>"), ("CSeq", "1 INVITE"), ("Max-Forwards", "70")]


def sip(call_id: str | None, extra: list[tuple[str, str]] = (), body: bytes = b"", content_length: str | None = None,
        content_type: str | None = None, start: str = "INVITE sip:bob@example.com SIP/2.0") -> bytes:
    headers = list(HEADERS) + ([("Call-ID", call_id)] if call_id is not None else []) + list(extra)
    if content_type:
        headers.append(("Content-Type", content_type))
    headers.append(("Content-Length", str(len(body)) if content_length is None else content_length))
    head = "\r\n".join([start] + [f"{k}: {v}" for k, v in headers]) + "\r\n\r\n"
    return head.encode("utf-8", "surrogateescape") + body          # "\udcff" stands for the byte 0xff


# --- capture files -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def g711(public_captures: Path) -> bytes:
    return (public_captures / G711).read_bytes()


@pytest.fixture(scope="module")
def first_400(g711, tmp_path_factory) -> Run:
    """The analysis of the capture's first 400 records alone: what a damaged copy must still give."""
    folder = tmp_path_factory.mktemp("first-400")
    return same_in_both(analyze(folder, [write(folder, "clean.pcap", g711[:record_offsets(g711)[400]])]))


@pytest.mark.parametrize("cut", ["mid-record", "mid-header"])
def test_truncated_capture_keeps_every_earlier_frame(tmp_path, g711, first_400, cut):
    offsets = record_offsets(g711)
    at = offsets[400]
    caplen = struct.unpack_from("<I", g711, at + 8)[0]
    keep = 30 if cut == "mid-record" else 7
    damaged = write(tmp_path, "cut.pcap", g711[:at + keep])
    got, base = same_in_both(analyze(tmp_path, [damaged])), first_400
    expected_classes = dict(base.summary["frames_by_class"], **{"capture.truncated_record": 1})
    assert got.summary["frames_by_class"] == dict(sorted(expected_classes.items()))
    assert got.summary["frames_read"] == 401 and base.summary["frames_read"] == 400
    assert got.summary["anomalies_by_reason"] == {"capture.truncated_record": 1}
    assert got.anomalies() == [(401, "capture", "capture.truncated_record")]
    needs = f"record needs {16 + caplen} bytes, 30 left" if keep == 30 else "record header needs 16 bytes, 7 left"
    assert got.details("capture.truncated_record") == [f"{damaged}: offset {at}: {needs}"]
    for name in ("sip_messages", "calls", "rtp_streams", "registrations", "dns"):
        assert (got.out / f"{name}.csv").read_text() == (base.out / f"{name}.csv").read_text(), name


def test_corrupt_record_length_stops_cleanly(tmp_path, g711, first_400):
    offsets = record_offsets(g711)
    data = bytearray(g711)
    struct.pack_into("<I", data, offsets[400] + 8, 10_000_000)
    damaged = write(tmp_path, "badlen.pcap", bytes(data))
    got, base = same_in_both(analyze(tmp_path, [damaged])), first_400
    assert got.summary["frames_by_class"] == dict(sorted(
        dict(base.summary["frames_by_class"], **{"capture.bad_record_length": 1}).items()))
    assert got.anomalies() == [(401, "capture", "capture.bad_record_length")]
    assert got.details("capture.bad_record_length") == [
        f"{damaged}: offset {offsets[400]}: captured length 10000000 exceeds 262144"]
    assert (got.out / "sip_messages.csv").read_text() == (base.out / "sip_messages.csv").read_text()


SIP_FRAME = udp_frame(sip("ng@x"))
RTP_FRAME = udp_frame(pg.rtp(1, 160, 0x1234, 0, b"\xff" * 160), 30000, 30002)


def _pcapng_cases() -> dict[str, tuple[bytes, int, dict, list, str]]:
    """name -> (file, offset of the damage, frames_by_class, anomalies, detail after the offset)."""
    first = NG_SHB + NG_IDB + ng_epb(0, SIP_FRAME, 0) + ng_epb(0, RTP_FRAME, 1)
    at = len(first)
    third = ng_epb(0, SIP_FRAME, 2)
    short_idb = struct.pack("<II", 1, 16) + struct.pack("<HHI", 1, 0, 16)
    bad_trailer = third[:-4] + struct.pack("<I", 999)
    two = {"sip": 1, "rtp": 1}
    return {
        "truncated block": (first + third[:30], at, {**two, "capture.truncated_record": 1},
                            [(3, "capture", "capture.truncated_record")],
                            f"block type 0x6 needs {len(third)} bytes, 30 left"),
        "bad block length": (first + struct.pack("<II", 6, 13) + bytes(40), at, {**two, "capture.bad_record_length": 1},
                             [(3, "capture", "capture.bad_record_length")], "block type 0x6 has bad length 13"),
        "trailing length differs": (first + bad_trailer + third, at, {**two, "capture.bad_record_length": 1},
                                    [(3, "capture", "capture.bad_record_length")],
                                    f"block type 0x6: trailing length differs from {len(third)}"),
        "interface block too short": (first + short_idb + third, at, {**two, "capture.bad_record_length": 1},
                                      [(3, "capture", "capture.bad_record_length")],
                                      "block type 0x1 has bad length 16"),
        # an undeclared interface loses that one packet; the next one is read
        "undeclared interface id": (first + ng_epb(7, SIP_FRAME, 2) + ng_epb(0, SIP_FRAME, 3), at,
                                    {"sip": 2, "rtp": 1, "capture.bad_interface_id": 1},
                                    [(3, "capture", "capture.bad_interface_id")], "interface 7 not described"),
    }


@pytest.mark.parametrize("case", list(_pcapng_cases()))
def test_damaged_pcapng(tmp_path, case):
    data, at, classes, anomalies, detail = _pcapng_cases()[case]
    path = write(tmp_path, "damaged.pcapng", data)
    got = same_in_both(analyze(tmp_path, [path]))
    assert got.summary["frames_by_class"] == dict(sorted(classes.items()))
    assert got.anomalies() == anomalies
    name = anomalies[0][2]
    assert got.details(name) == [f"{path}: offset {at}: {detail}"]
    assert got.summary["counts"]["sip_messages"] == classes["sip"]


def _unusable(public: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, the message after "error: <file>: "); the files are written into folder."""
    folder.mkdir()
    garbage = b"this is not a capture file at all\n" * 8
    pcap_v3 = bytearray(pcap_bytes([SIP_FRAME]))
    struct.pack_into("<H", pcap_v3, 4, 3)
    bad_bom = bytearray(NG_SHB + NG_IDB + ng_epb(0, SIP_FRAME))
    bad_bom[8:12] = b"ABCD"
    files = {
        "garbage": (garbage, "offset 0: unknown file format (magic 0x74686973)"),
        "empty": (b"", "offset 0: empty file"),
        "three bytes": (b"\xd4\xc3\xb2", "offset 0: file too short for a capture header"),
        "pcap header cut": (pcap_bytes([])[:10], "offset 10: truncated pcap file header"),
        "pcap version 3": (bytes(pcap_v3), "offset 4: unsupported pcap version 3.4"),
        "pcapng byte-order magic": (bytes(bad_bom), "offset 8: bad pcapng byte-order magic 0x41424344"),
        "gzip of garbage": (gzip.compress(garbage, mtime=0), "offset 0: unknown file format (magic 0x74686973)"),
        "pcapng section header too short": (
            struct.pack("<II", 0x0A0D0D0A, 24) + struct.pack("<IHH", 0x1A2B3C4D, 1, 0) + bytes(4)
            + struct.pack("<I", 24) + NG_IDB + ng_epb(0, SIP_FRAME), "offset 4: bad section header length 24"),
    }
    cases = {name: (write(folder, name.replace(" ", "-"), data), msg) for name, (data, msg) in files.items()}
    cases["NetMon"] = (public / NETMON, "offset 0: unsupported format Microsoft NetMon 2.x (magic 0x474d4255)")
    cases["missing"] = (folder / "no-such.pcap", "offset 0: cannot open: No such file or directory")
    cases["directory"] = (folder, "offset 0: cannot open: Is a directory")
    return cases


@pytest.mark.parametrize("case", ["garbage", "empty", "three bytes", "pcap header cut", "pcap version 3",
                                  "pcapng byte-order magic", "gzip of garbage", "NetMon", "missing",
                                  "pcapng section header too short"])
def test_unusable_capture_exits_1_naming_file_and_offset(tmp_path, public_captures, case):
    path, message = _unusable(public_captures, tmp_path / "in")[case]
    for mode, run in analyze(tmp_path, [path]).items():
        assert run.rc == 1, (mode, run.stderr)
        assert run.errors() == [f"error: {path}: {message}"], mode
        assert not run.out.exists(), mode                          # nothing written for an unusable input


def test_corrupt_gzip_stream_is_an_error_not_a_traceback(tmp_path):
    path = write(tmp_path, "corrupt.pcap.gz", b"\x1f\x8b\x08\x00" + b"garbage garbage garbage")
    for run in analyze(tmp_path, [path]).values():
        assert run.rc == 1
        (line,) = run.errors()
        assert line.startswith(f"error: {path}: offset 0: bad gzip stream: ") and len(line) > len(str(path)) + 40


def test_one_unusable_file_among_several_is_named_and_left_out(tmp_path, public_captures):
    """A set (several captures): the unusable one is named and left out (exit 5), the others analysed."""
    garbage = write(tmp_path, "garbage.pcap", b"\x00" * 64)
    alone = analyze(tmp_path, [public_captures / G711], out=tmp_path / "alone", modes=("batch",))["batch"]
    for run in analyze(tmp_path, [public_captures / G711, garbage]).values():
        assert run.rc == 5
        assert run.errors() == [f"error: {garbage}: offset 0: unknown file format (magic 0x00000000) "
                                "(left out of the run)"]
        assert run.summary["captures_failed"] == [{"file": str(garbage), "offset": 0,
                                                   "error": "unknown file format (magic 0x00000000)"}]
        assert run.summary["inputs"] == [str(public_captures / G711)]
        assert run.summary["counts"] == alone.summary["counts"]


def test_a_directory_of_unusable_files_names_each(tmp_path, public_captures):
    """A directory is a set: each of its files that cannot be read is named (in name order, none has a
    first packet to order it by) and left out."""
    folder = tmp_path / "in"
    inside = sorted((path, message) for path, message in _unusable(public_captures, folder).values()
                    if path.parent == folder and path.is_file())
    assert len(inside) == 8
    for mode, run in analyze(tmp_path, [folder]).items():
        assert run.rc == 5, (mode, run.stderr)
        assert run.errors() == [f"error: {path}: {message} (left out of the run)" for path, message in inside], mode
        assert run.summary["frames_read"] == 0 and run.summary["inputs"] == []


def test_gzip_truncated_mid_stream(tmp_path, g711):
    packed = gzip.compress(g711, mtime=0)
    cut = packed[:len(packed) // 2]
    path = write(tmp_path, "cut.pcap.gz", cut)
    available = zlib.decompressobj(31).decompress(cut)          # what the damaged stream still gives
    offsets = record_offsets(available)
    whole = len(offsets)
    next_at = offsets[-1] + 16 + struct.unpack_from("<I", available, offsets[-1] + 8)[0]
    got = same_in_both(analyze(tmp_path, [path]))
    assert got.summary["frames_read"] == whole + 1
    assert got.summary["frames_by_class"]["capture.truncated_record"] == 1
    assert got.anomalies() == [(whole + 1, "capture", "capture.truncated_record")]
    (detail,) = got.details("capture.truncated_record")
    assert detail.startswith(f"{path}: offset {next_at}: ")
    assert detail.endswith("(decompression stopped: Compressed file ended before the end-of-stream marker was reached)")
    base = same_in_both(analyze(tmp_path / "clean", [write(tmp_path, "clean.pcap", available[:next_at])]))
    assert (got.out / "sip_messages.csv").read_text() == (base.out / "sip_messages.csv").read_text()


def test_stdin(tmp_path, public_captures, g711):
    from_file = same_in_both(analyze(tmp_path / "file", [public_captures / G711]))
    from_stdin = same_in_both(analyze(tmp_path / "stdin", ["-"], stdin=public_captures / G711))
    for key in ("frames_read", "frames_by_class", "anomalies_by_reason", "counts"):
        assert from_stdin.summary[key] == from_file.summary[key]
    assert from_stdin.summary["inputs"] == ["-"]
    for name in TABLES:
        assert (from_stdin.out / f"{name}.csv").read_text() == (from_file.out / f"{name}.csv").read_text()

    at = record_offsets(g711)[100]
    cut = same_in_both(analyze(tmp_path / "cut", ["-"], stdin=write(tmp_path, "cut.pcap", g711[:at + 20])))
    assert cut.anomalies() == [(101, "capture", "capture.truncated_record")]
    assert cut.details("capture.truncated_record")[0].startswith(f"<stdin>: offset {at}: record needs ")

    for run in analyze(tmp_path / "empty", ["-"], stdin=write(tmp_path, "empty.bin", b"")).values():
        assert run.rc == 1 and run.errors() == ["error: <stdin>: offset 0: empty file"]


def test_captured_length_over_snaplen_is_noted_once(tmp_path):
    """The frame is kept and analyzed; the note about it is an anomaly, not a second frame."""
    small = udp_frame(b"x" * 10, 40000, 40002)
    path = write(tmp_path, "snaplen.pcap", pcap_bytes([SIP_FRAME, small, SIP_FRAME], snaplen=200))
    got = same_in_both(analyze(tmp_path, [path]))
    assert got.summary["frames_read"] == 3
    assert got.summary["frames_by_class"] == {"sip": 2, "udp.other": 1}
    assert got.anomalies() == [(1, "capture", "capture.caplen_exceeds_snaplen"),
                               (3, "capture", "capture.caplen_exceeds_snaplen")]
    second = 24 + 16 + len(SIP_FRAME) + 16 + len(small)
    assert got.details("capture.caplen_exceeds_snaplen") == [
        f"{path}: offset 24: captured length {len(SIP_FRAME)} > snaplen 200",
        f"{path}: offset {second}: captured length {len(SIP_FRAME)} > snaplen 200"]
    assert got.summary["counts"]["sip_messages"] == 2


def test_unknown_link_type_is_counted(tmp_path):
    path = write(tmp_path, "lt147.pcap", pcap_bytes([bytes(60), b"\x01" * 80, SIP_FRAME], linktype=147))
    got = same_in_both(analyze(tmp_path, [path]))
    assert got.summary["frames_by_class"] == {"link.unknown_linktype": 3}
    assert got.summary["frames_undecoded"] == 3
    assert got.anomalies() == [(n, "link", "link.unknown_linktype") for n in (1, 2, 3)]
    assert set(got.details("link.unknown_linktype")) == {"LINKTYPE 147"}


# --- malformed packets ---------------------------------------------------------------------------

def test_malformed_sip_over_udp(tmp_path):
    ten_thousand = sip("many@x")[:-2] + b"X:1\r\n" * 10000 + b"\r\n"
    frames = [
        udp_frame(b"this is not sip at all"),                                           # 1 junk
        udp_frame(sip("badcl@x", content_length="abc")),                                 # 2
        udp_frame(sip("longcl@x", content_length="999")),                                # 3
        udp_frame(sip(None)),                                                            # 4 no Call-ID
        udp_frame(ten_thousand),                                                         # 5 10k headers
        udp_frame(sip("nul@x", [("X-Nul", "a\x00b"), ("Subject", "\x00\x00")])),         # 6
        udp_frame(sip("bin@x", [("X-Bin", "\udcff\udcfe")])),                            # 7 non-UTF-8 header
        udp_frame(sip("bin-start@x", start="INVITE sip:\udce9@example.com SIP/2.0")),   # 8 non-UTF-8 start line
        udp_frame(b"\x00\x01junk\r\n" + sip("junk@x")),                                  # 9 junk before a request
        udp_frame(sip("ok@x")),                                                          # 10 fine
    ]
    got = same_in_both(analyze(tmp_path, [write(tmp_path, "sip.pcap", pcap_bytes(frames))]))
    assert got.summary["frames_by_class"] == {"sip": 8, "udp.other": 2}
    assert got.anomalies() == [
        (1, "sip", "sip.not_sip_on_sip_port"),
        (2, "sip", "sip.invalid_content_length"),
        (3, "sip", "sip.invalid_content_length"),
        (4, "sip", "sip.missing_call_id"),
        (5, "sip", "sip.too_many_headers"),
        (6, "sip", "sip.nul_byte"),
        (7, "sip", "sip.non_utf8"),
        (8, "sip", "sip.non_utf8"),
        (9, "sip", "sip.not_sip_on_sip_port"),
    ]
    assert got.details("sip.invalid_content_length") == ["not a number: 'abc'", "Content-Length 999 > 0 bytes present"]
    assert got.details("sip.nul_byte") == ["3 NUL bytes in the start line and header fields"]
    assert got.details("sip.non_utf8") == ["header fields", "start line"]
    assert got.details("sip.too_many_headers") == ["more than 256 header fields"]
    msgs = got.table("sip_messages")
    assert msgs["frame"].tolist() == [2, 3, 4, 5, 6, 7, 8, 10]
    assert msgs["call_id"].tolist()[:2] == ["badcl@x", "longcl@x"] and pd.isna(msgs["call_id"][2])
    assert msgs["call_id"][4] == "nul@x" and msgs["ruri_user"][6] == "\ufffd"


def test_malformed_sip_over_tcp(tmp_path):
    long_line = sip("long@x", [("X-Long", "a" * 70_000)])                        # one 70 KB header line
    frames = tcp_stream(long_line) + tcp_stream(b"GARBAGE\x00\xff\r\n" + sip("tcpjunk@x"), sport=40001)
    got = same_in_both(analyze(tmp_path, [write(tmp_path, "tcp.pcap", pcap_bytes(frames))]))
    segments = -(-len(long_line) // 1400)
    assert got.summary["frames_by_class"] == {"tcp.control": 2, "tcp.sip": segments + 1}
    assert got.anomalies() == [(segments + 1, "sip", "sip.header_too_long"),
                               (segments + 3, "sip", "sip.resync_skipped_bytes")]
    assert got.details("sip.header_too_long") == ["X-Long: 70000 characters"]
    # the garbage line is skipped up to the start line that follows it (tshark 4.0 stops at the
    # garbage and shows the rest of the segment as a continuation)
    assert got.details("sip.resync_skipped_bytes") == [
        "11 bytes skipped before a SIP start line, starting b'GARBAGE\\x00\\xff\\r\\n'"]
    msgs = got.table("sip_messages")
    assert msgs["call_id"].tolist() == ["long@x", "tcpjunk@x"] and msgs["transport"].tolist() == ["tcp", "tcp"]


def tcp_segments(chunks: list[bytes], sport: int, dport: int, syn: bool = True) -> list[bytes]:
    """Each chunk one segment, in order, after a SYN (none: the capture begins mid-connection)."""
    frames = [pg.ethernet(pg.ipv4(A, B, 6, pg.tcp(A, sport, B, dport, 100, 0, 0x02)), pg.ETH_IPV4)] if syn else []
    seq = 101
    for chunk in chunks:
        frames.append(pg.ethernet(pg.ipv4(A, B, 6, pg.tcp(A, sport, B, dport, seq, 1, 0x18, chunk)), pg.ETH_IPV4))
        seq += len(chunk)
    return frames


def monitor_calls(tmp_path: Path, capture: Path) -> list[str]:
    """Call-IDs of the calls `voipwatch monitor -r` writes."""
    out = tmp_path / "monitor"
    run = subprocess.run([sys.executable, "-m", "voipwatch", "monitor", "-r", str(capture), "-o", str(out)],
                         capture_output=True, text=True, env=_env(), cwd=REPO, timeout=300)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    return sorted(cid for part in out.glob("calls-*.csv") for cid in pd.read_csv(part, dtype=str)["call_id"])


ONE, TWO, THREE = sip("one@x"), sip("two@x"), sip("three@x", body=b"v=0\r\n", content_type="application/sdp")
# Issue 10's four ways to lose a SIP/TCP connection, each on the SIP port (framed from the first byte,
# resynchronised on start lines) and on port 5080 (probed segment by segment, as Wireshark's heuristic
# does). (segments, SYN seen, call-ids on 5060, on 5080, bytes skipped on 5060, on 5080)
TCP_CASES = {
    "a-first-segment-INV": ([b"INV", ONE[3:], TWO], True, ["one@x", "two@x"], ["two@x"], [], []),
    "a-start-line-over-two-segments": ([ONE[:20], ONE[20:], TWO], True, ["one@x", "two@x"], ["two@x"], [], []),
    "b-keepalives-first": ([b"\r\n\r\n", b"\r\n", ONE, b"\r\n\r\n", TWO], True,
                           ["one@x", "two@x"], ["one@x", "two@x"], [], []),
    "c-capture-begins-in-a-body": ([THREE[-5:], ONE, TWO], False, ["one@x", "two@x"], ["one@x", "two@x"], [5], []),
    "c-capture-begins-in-the-headers": ([THREE[30:], ONE, TWO], False, ["one@x", "two@x"], ["one@x", "two@x"],
                                        [len(THREE) - 30], []),
    "d-junk-after-a-message": ([ONE + b"junk junk\r\n" + TWO, THREE], True, ["one@x", "three@x", "two@x"],
                               ["one@x", "three@x", "two@x"], [11], [11]),
}


@pytest.mark.peer
@pytest.mark.parametrize("case", TCP_CASES)
def test_sip_over_tcp_from_any_point(tmp_path, tshark, case):
    chunks, syn, on_5060, on_5080, skipped_5060, skipped_5080 = TCP_CASES[case]
    frames = tcp_segments(chunks, 40000, 5060, syn) + tcp_segments(chunks, 40001, 5080, syn)
    capture = write(tmp_path, "tcp.pcap", pcap_bytes(frames))
    got = same_in_both(analyze(tmp_path, [capture]))
    calls = got.table("calls")
    assert sorted(calls.loc[calls["dst"] == B, "call_id"]) == sorted(set(on_5060) | set(on_5080))
    msgs = got.table("sip_messages")
    assert sorted(msgs.loc[msgs["dport"] == 5060, "call_id"]) == on_5060
    assert sorted(msgs.loc[msgs["dport"] == 5080, "call_id"]) == on_5080
    anomalies = got.table("anomalies")
    assert set(anomalies["name"]) <= {"sip.resync_skipped_bytes", "sdp.no_media"}
    for port, skipped in ((5060, skipped_5060), (5080, skipped_5080)):
        frames_of_port = set(msgs.loc[msgs["dport"] == port, "frame"])
        details = anomalies.loc[(anomalies["name"] == "sip.resync_skipped_bytes")
                                & anomalies["frame"].isin(frames_of_port), "detail"]
        assert [int(d.split()[0]) for d in details] == skipped, port
    assert monitor_calls(tmp_path, capture) == sorted(calls["call_id"])
    # tshark 4.0 agrees, except where it reads "ITE sip:..." after "INV" as a request of method "ITE"
    # (port 5080) and where it shows the message after junk in a segment as a continuation
    theirs = subprocess.run([tshark, "-r", str(capture), "-Y", "sip.Method", "-T", "fields", "-e", "tcp.dstport",
                             "-e", "sip.Method", "-e", "sip.Call-ID", "-E", "occurrence=a"],
                            capture_output=True, text=True, check=True).stdout.split("\n")[:-1]
    ours = sorted(f"{r.dport}\t{r.method}\t{r.call_id}" for r in msgs.itertuples())
    expected_difference = {"a-first-segment-INV": {"5080\tITE\tone@x"}, "d-junk-after-a-message":
                           {"5060\tINVITE\ttwo@x", "5080\tINVITE\ttwo@x"}}.get(case, set())
    assert set(ours) ^ set(theirs) == expected_difference and len(ours) == len(set(ours))


def test_sip_probe_outside_the_sip_ports_is_bounded(tmp_path):
    """Outside the SIP ports a direction is probed for its first 32 data segments; WebSocket frames
    carrying SIP (RFC 7118) are reported once. An HTTP download is described as HTTP (dissectors/http.py,
    tried before the SIP probe) without a word."""
    http = [b"HTTP/1.1 200 OK\r\n\r\n"] + [bytes(range(32, 127)) * 10] * 39
    websocket = [b"\x81\x7e\x01\x20" + sip(f"ws{i}@x", start="SIP/2.0 200 OK") for i in range(40)]
    frames = tcp_segments(http, 8080, 40000) + tcp_segments(websocket, 8443, 40001)
    got = same_in_both(analyze(tmp_path, [write(tmp_path, "probe.pcap", pcap_bytes(frames))]))
    assert got.summary["frames_by_class"] == {"tcp.control": 2, "tcp.http": 40, "tcp.other": 40}
    assert got.anomalies() == [(1 + 40 + 1 + 32, "sip", "sip.probe_gave_up")]   # the 32nd WebSocket segment
    assert got.details("sip.probe_gave_up") == [
        "32 TCP segments probed, 32 holding 'SIP/2.0' but none beginning with a SIP start line: no longer probed"]
    assert got.table("sip_messages").empty


def test_what_the_end_of_the_capture_cuts_off_is_reported(tmp_path):
    """A capture that ends inside a fragmented datagram and inside a TCP message: the reassemblers
    report what they still hold, so nothing is dropped silently."""
    datagram = pg.udp(A, 5060, B, 5060, sip("frag@x", [("X-Pad", "q" * 300)]))
    frames = [udp_frame(sip("whole@x")),
              pg.ethernet(pg.ipv4(A, B, 17, datagram[:256], ident=9, flags_frag=0x2000), pg.ETH_IPV4),
              *tcp_stream(sip("cut@x", [("X-Pad", "p" * 2000)]))[:2]]     # the SYN and the first of two segments
    got = same_in_both(analyze(tmp_path, [write(tmp_path, "cut.pcap", pcap_bytes(frames))]))
    assert got.summary["frames_by_class"] == {"sip": 1, "ip.fragment_pending": 1, "tcp.control": 1, "tcp.sip": 1}
    assert got.anomalies() == [(2, "ip", "ip.fragment_incomplete_at_end"), (4, "tcp", "tcp.unframed_bytes_at_end")]
    assert got.details("ip.fragment_incomplete_at_end") == ["1 fragment(s), 256 bytes never completed"]
    assert got.details("tcp.unframed_bytes_at_end") == [
        f"{A}:40000 -> {B}:5060: 1400 unframed and 0 out-of-order bytes at the end of the capture"]
    assert got.table("sip_messages")["call_id"].tolist() == ["whole@x"]


SDP_OK = pg.sdp_body(A, A, 20000)


def test_malformed_sdp(tmp_path):
    bodies = [
        b"this is not sdp\r\n\x01\x02\r\n",                                                    # 1
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=x\r\nc=IN IP4\r\nt=0 0\r\nm=audio notaport RTP/AVP 0\r\n",  # 2
        b"v=0\r\no=- 1\r\ns=\xff\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0 8\r\n"
        b"a=rtpmap:xx PCMU/8000\r\na=rtcp:port\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:!!!\r\n",  # 3
        b"\r\n\r\n",                                                                              # 4
        b"o=- 1 1 IN IP4 10.0.0.1\r\n" + b"a=x\r\n" * 3000,                                     # 5
        SDP_OK.encode(),                                                                          # 6 fine
    ]
    frames = [udp_frame(sip(f"sdp{i}@x", body=body, content_type="application/sdp")) for i, body in enumerate(bodies)]
    got = same_in_both(analyze(tmp_path, [write(tmp_path, "sdp.pcap", pcap_bytes(frames))]))
    assert got.summary["frames_by_class"] == {"sip": 6}
    assert got.anomalies() == [
        (1, "sdp", "sdp.bad_line"),
        (2, "sdp", "sdp.bad_connection_line"), (2, "sdp", "sdp.bad_media_line"), (2, "sdp", "sdp.no_media"),
        (3, "sdp", "sdp.bad_crypto_key"), (3, "sdp", "sdp.bad_origin_line"), (3, "sdp", "sdp.bad_rtcp_line"),
        (3, "sdp", "sdp.bad_rtpmap"), (3, "sdp", "sdp.non_utf8"),
        (4, "sdp", "sdp.empty"),
        (5, "sdp", "sdp.bad_version"), (5, "sdp", "sdp.no_media"), (5, "sdp", "sdp.too_many_lines"),
    ]
    assert got.table("sip_messages")["has_sdp"].tolist() == [False, True, True, False, True, True]


def _dns_query(name: bytes = b"\x04_sip\x04_udp\x07example\x03com\x00", qdcount: int = 1, flags: int = 0x0100,
               ancount: int = 0, rest: bytes = b"") -> bytes:
    return struct.pack("!HHHHHH", 0x1234, flags, qdcount, ancount, 0, 0) + name + struct.pack("!HH", 33, 1) + rest


def test_malformed_dns(tmp_path):
    cut_answer = b"\xc0\x0c" + struct.pack("!HHIH", 33, 1, 60, 32) + b"\x00\x01"            # RDATA of 32, 2 present
    frames = [
        udp_frame(_dns_query(), 40000, 53),                                                    # 1 fine
        udp_frame(_dns_query(name=b"\x3fabc"), 40000, 53),                                     # 2 label overruns
        udp_frame(_dns_query(name=b"\xc0\x0c"), 40000, 53),                                    # 3 pointer loop
        udp_frame(_dns_query(qdcount=2), 40000, 53),                                           # 4 a question missing
        udp_frame(_dns_query(flags=0x8180, ancount=1, rest=cut_answer), 53, 40000),           # 5 answer cut short
        udp_frame(_dns_query(flags=0x8180, ancount=3), 53, 40000),                             # 6 answers missing
    ]
    got = same_in_both(analyze(tmp_path, [write(tmp_path, "dns.pcap", pcap_bytes(frames))]))
    assert got.summary["frames_by_class"] == {"dns": 3, "dns.malformed": 3}
    assert got.anomalies() == [(2, "dns", "dns.malformed"), (3, "dns", "dns.malformed"), (4, "dns", "dns.malformed"),
                               (5, "dns", "dns.malformed_section"), (6, "dns", "dns.malformed_section")]
    assert got.details("dns.malformed")[1] == "header or question: UnpackError: Invalid label compression pointer"
    assert [d.split(":")[0] for d in got.details("dns.malformed_section")] == ["answer section"] * 2
    dns_table = got.table("dns")
    assert dns_table["frame"].tolist() == [1, 5, 6]
    assert dns_table["malformed"].isna().tolist() == [True, False, False]


def test_rtp_and_rtcp_garbage(tmp_path):
    invite = udp_frame(sip("media@x", body=SDP_OK.encode(), content_type="application/sdp"))
    to_media = lambda payload: udp_frame(payload, 30000, 20000, src=B, dst=A)            # noqa: E731
    frames = [
        invite,                                                                                  # 1
        to_media(pg.rtp(1, 160, 0x1111, 0, b"\xff" * 160)),                                      # 2 RTP
        to_media(b"\x80"),                                                                       # 3 one byte
        to_media(bytes(40)),                                                                     # 4 version 0
        to_media(b"\x8f\x00" + bytes(30)),                                                       # 5 15 CSRCs, 32 bytes
        to_media(b"\x90\x00" + bytes(10) + b"\x00\x01\xff\xff"),                                 # 6 extension overruns
        to_media(b""),                                                                           # 7 keep-alive
        to_media(pg.rtp(2, 320, 0x1111, 0, b"\xff" * 160)),                                      # 8 RTP
        udp_frame(b"\x81\xc8\x00\x06" + bytes(10), 30001, 20001, src=B, dst=A),                  # 9 SR cut short
        udp_frame(b"\x80\xc8\xff\xff" + bytes(24), 30001, 20001, src=B, dst=A),                  # 10 SR length wild
        udp_frame(bytes(40), 41000, 41002),                                                      # 11 not announced
    ]
    got = same_in_both(analyze(tmp_path, [write(tmp_path, "rtp.pcap", pcap_bytes(frames))]))
    assert got.summary["frames_by_class"] == {"rtcp.malformed": 2, "rtp": 2, "rtp.malformed": 4, "sip": 1,
                                              "udp.other": 2}
    assert got.anomalies() == [(3, "rtp", "rtp.malformed"), (4, "rtp", "rtp.malformed"), (5, "rtp", "rtp.malformed"),
                               (6, "rtp", "rtp.malformed"), (9, "rtcp", "rtcp.bad_length"),
                               (10, "rtcp", "rtcp.bad_length")]
    assert got.details("rtp.malformed") == [
        "1-byte datagram to or from SDP-announced RTP media: shorter than the 12-octet fixed header",
        "40-byte datagram to or from SDP-announced RTP media: version 0, not 2",
        "32-byte datagram to or from SDP-announced RTP media: the CSRC list or header extension overruns the datagram",
        "16-byte datagram to or from SDP-announced RTP media: the CSRC list or header extension overruns the datagram",
    ]
    (stream,) = got.table("rtp_streams").itertuples()
    assert (stream.packets, stream.call_id, stream.negotiated) == (2, "media@x", True)


def _ip(payload: bytes = pg.udp(A, 40000, B, 40002, b"hello world!"), **changes) -> bytes:
    packet = bytearray(pg.ipv4(A, B, 17, payload))
    for offset, value in changes.get("bytes", ()):
        packet[offset] = value
    if "total" in changes:
        struct.pack_into("!H", packet, 2, changes["total"])
    return pg.ethernet(bytes(packet), pg.ETH_IPV4)


def test_bad_ipv4_headers(tmp_path):
    whole = _ip()
    frames = [
        whole,                                        # 1 fine
        _ip(bytes=[(0, 0x44)]),                       # 2 IHL 4
        _ip(bytes=[(0, 0x4F)]),                       # 3 IHL 15: header longer than the packet
        _ip(bytes=[(0, 0x65)]),                       # 4 version 6 in an IPv4 EtherType
        _ip(total=10),                                # 5 total length shorter than the header
        _ip(total=500),                               # 6 total length past the frame, which is whole
        _ip(total=25),                                # 7 total length cuts the UDP header
        whole[:14 + 12],                              # 8 IPv4 header cut
        (whole[:50], len(whole)),                     # 9 the capture cut it (snaplen): no defect
    ]
    got = same_in_both(analyze(tmp_path, [write(tmp_path, "ip.pcap", pcap_bytes(frames))]))
    assert got.summary["frames_by_class"] == {"ip.bad_header_length": 3, "ip.bad_version": 1, "ip.truncated": 1,
                                              "udp.other": 3, "udp.truncated": 1}
    assert got.summary["frames_undecoded"] == 6
    assert got.anomalies() == [(2, "ip", "ip.bad_header_length"), (3, "ip", "ip.bad_header_length"),
                               (4, "ip", "ip.bad_version"), (5, "ip", "ip.bad_header_length"),
                               (6, "ip", "ip.bad_length"), (7, "udp", "udp.truncated"), (8, "ip", "ip.truncated")]
    assert got.details("ip.bad_length") == ["IP length field claims 480 payload bytes, the frame holds 20"]
    assert got.details("ip.bad_header_length") == ["IHL 4", "header length 60 > total length 40",
                                                   "header length 20 > total length 10"]


def test_bad_udp_lengths(tmp_path):
    def with_length(payload: bytes, length: int, sport: int = 40000, dport: int = 40002) -> bytes:
        dgram = bytearray(pg.udp(A, sport, B, dport, payload))
        struct.pack_into("!H", dgram, 4, length)
        return pg.ethernet(pg.ipv4(A, B, 17, bytes(dgram)), pg.ETH_IPV4)

    message = sip("udplen@x")
    frames = [
        with_length(b"hello world!", 200),                              # 1 longer than the datagram
        with_length(b"hello world!", 4),                                # 2 shorter than its own header
        with_length(b"hello world!", 10),                               # 3 shorter: trailing bytes trimmed, fine
        pg.ethernet(pg.ipv4(A, B, 17, pg.udp(A, 1, B, 2, b"")[:5]), pg.ETH_IPV4),   # 4 header cut
        with_length(message, 3000, 5060, 5060),                         # 5 SIP in a datagram claiming 3000 bytes
    ]
    got = same_in_both(analyze(tmp_path, [write(tmp_path, "udp.pcap", pcap_bytes(frames))]))
    assert got.summary["frames_by_class"] == {"sip": 1, "udp.other": 3, "udp.truncated": 1}
    assert got.anomalies() == [(1, "udp", "udp.bad_length"), (2, "udp", "udp.bad_length"),
                               (4, "udp", "udp.truncated"), (5, "udp", "udp.bad_length")]
    assert got.details("udp.bad_length") == ["UDP length 200, IP payload 20", "UDP length 4, IP payload 20",
                                             f"UDP length 3000, IP payload {8 + len(message)}"]
    assert got.table("sip_messages")["call_id"].tolist() == ["udplen@x"]


def test_tcp_garbage_on_the_sip_port(tmp_path):
    garbage = b"\0" + bytes(random.Random(5060).randrange(256) for _ in range(2999))
    segment = pg.tcp(A, 40002, B, 5060, 1, 0, 0x18, b"abc")
    bad_offset = bytearray(segment)
    bad_offset[12] = 0x30                                            # data offset 3 words
    frames = tcp_stream(garbage, segment=1000) + [
        pg.ethernet(pg.ipv4(A, B, 6, bytes(bad_offset)), pg.ETH_IPV4),
        pg.ethernet(pg.ipv4(A, B, 6, segment[:10]), pg.ETH_IPV4),
    ]
    got = same_in_both(analyze(tmp_path, [write(tmp_path, "tcp.pcap", pcap_bytes(frames))]))
    assert got.summary["frames_by_class"] == {"tcp.control": 1, "tcp.other": 3, "tcp.bad_header_length": 1,
                                              "tcp.truncated": 1}
    # no line end in the 3000 bytes: one unfinished line, held for a start line that never comes
    assert b"\n" not in garbage and b"\r" not in garbage
    assert got.anomalies() == [(4, "tcp", "tcp.unframed_bytes_at_end"), (5, "tcp", "tcp.bad_header_length"),
                               (6, "tcp", "tcp.truncated")]
    assert got.details("tcp.unframed_bytes_at_end") == [
        f"{A}:40000 -> {B}:5060: 3000 unframed and 0 out-of-order bytes at the end of the capture"]


# --- configuration and outputs -------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--config", "{not_utf8}"], "error: {not_utf8}: not UTF-8 text (byte 9)"),
    (["--config", "{missing}"], "error: {missing}: No such file or directory"),
    (["--set", "pipeline.max_calls=-5"], "error: [pipeline] max_calls: must be at least 1, got -5"),
    (["--set", "pipeline.max_tcp_flows=0"], "error: [pipeline] max_tcp_flows: must be at least 1, got 0"),
    (["--set", "pipeline.call_idle_s=-1"], "error: [pipeline] call_idle_s: must not be negative, got -1.0"),
    (["--set", "pipeline.max_calls=abc"], "error: [pipeline] max_calls: expected int, got 'abc'"),
], ids=["config not UTF-8", "config missing", "negative cap", "zero cap", "negative time", "not a number"])
def test_unusable_configuration_exits_1(tmp_path, public_captures, args, message):
    names = {"not_utf8": str(write(tmp_path, "site.toml", b"[pipeline\xff\xfe]\n")),
             "missing": str(tmp_path / "no.toml")}
    args = [a.format(**names) for a in args]
    (run,) = analyze(tmp_path, [public_captures / G711], *args, modes=("stream",)).values()
    assert run.rc == 1 and run.errors() == [message.format(**names)]
    assert not run.out.exists()


def test_unwritable_output_directory(tmp_path, public_captures):
    capture = public_captures / G711
    a_file = write(tmp_path, "a-file", b"x")
    for mode, run in analyze(tmp_path, [capture], out=a_file).items():      # -o names a file: a usage error
        assert run.rc == 2, mode
        assert "Invalid value for '-o' / '--out'" in run.stderr and "is a file" in run.stderr
    below = a_file / "out"
    for mode, run in analyze(tmp_path, [capture], out=below).items():      # cannot be created
        assert run.rc == 1, mode
        assert run.errors() == [f"error: {below}: cannot write output: Not a directory"]
    blocked = tmp_path / "blocked"
    (blocked / "summary.json").mkdir(parents=True)
    for mode, run in analyze(tmp_path, [capture], out=blocked).items():    # a file cannot be written
        assert run.rc == 1, mode
        assert run.errors() == [f"error: {blocked / 'summary.json'}: cannot write output: Is a directory"]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_parquet_and_jsonl_round_trip(tmp_path, public_captures, fmt):
    """Every table read back with pandas equals the CSV one, malformed text (NUL, U+FFFD) included."""
    frames = [udp_frame(sip("nul\x00id@x", [("User-Agent", "bad \udcff agent")])), udp_frame(sip(None))]
    g711 = (public_captures / G711).read_bytes()
    offsets = record_offsets(g711)
    after = struct.unpack_from("<I", g711, offsets[299])[0] + 1          # a second after its frame 300
    path = write(tmp_path, "mixed.pcap", g711[:offsets[300]] + pcap_bytes(frames, t0=after)[24:])
    csv = same_in_both(analyze(tmp_path / "csv", [path]))
    for mode, run in analyze(tmp_path / fmt, [path], "--format", fmt).items():
        assert run.rc == 0, run.stderr
        assert {f"{t}.{fmt}" for t in TABLES} <= {p.name for p in run.out.iterdir()}
        assert run.summary["frames_by_class"] == csv.summary["frames_by_class"]
        for name in TABLES:
            back = read_table(run.out, name)
            if fmt == "parquet":                              # the declared dtypes are stored
                schema = {col: dtype for col, dtype, _ in TABLES[name].columns}
                assert {c: str(t) for c, t in pd.read_parquet(run.out / f"{name}.parquet").dtypes.items()} == schema
            pd.testing.assert_frame_equal(back, csv.table(name), check_dtype=True, obj=f"{mode} {name}")
    msgs = read_table(run.out, "sip_messages")
    assert msgs["call_id"].iloc[-2] == "nul\x00id@x" and msgs["user_agent"].iloc[-2] == "bad \ufffd agent"


def test_clock_jump_keeps_earlier_media_negotiated(tmp_path, g711):
    """A capture whose clock jumps forward years (merged files, a clock step) after a call."""
    offsets = record_offsets(g711)
    path = write(tmp_path, "jump.pcap", g711[:offsets[300]] + pcap_bytes([udp_frame(sip("later@x"))])[24:])
    got = same_in_both(analyze(tmp_path, [path]))
    (stream,) = got.table("rtp_streams").itertuples()
    assert (stream.negotiated, stream.call_id) == (True, "1-1966@10.0.2.20")


# --- fuzz ----------------------------------------------------------------------------------------

def test_fuzzed_real_capture(tmp_path, public_captures, g711):
    """300 frames of real captures, mutated with a fixed seed, in one file: nothing stops the run."""
    rng = random.Random(20240601)
    sources = [g711, (REPO / "sample_captures" / "small-office.pcap").read_bytes()]
    frames = []
    for blob in sources:
        assert blob[:4] == b"\xd4\xc3\xb2\xa1"                     # little-endian µs pcap, as record_offsets reads
        frames += [blob[o + 16:o + 16 + struct.unpack_from("<I", blob, o + 8)[0]] for o in record_offsets(blob)]
    mutated = []
    for _ in range(300):
        data = bytearray(rng.choice(frames))
        kind = rng.random()
        if kind < 0.5:                                        # flip bytes anywhere
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind < 0.7:                                      # flip bytes in the link/IP/transport headers
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(12, min(len(data), 64))] = rng.randrange(256)
        elif kind < 0.85:                                     # cut the frame short
            del data[rng.randrange(len(data) + 1):]
        else:                                                 # insert junk
            at = rng.randrange(len(data) + 1)
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        mutated.append(bytes(data))
    path = write(tmp_path, "fuzz.pcap", pcap_bytes(mutated))
    got = same_in_both(analyze(tmp_path, [path]))
    summary = got.summary
    assert summary["frames_read"] == 300 == sum(summary["frames_by_class"].values())
    assert all(re.fullmatch(r"[a-z0-9]+(\.[a-z0-9_]+)+", name) for name in summary["anomalies_by_reason"])
    assert len(summary["anomalies_by_reason"]) >= 5                   # the mutations do reach the dissectors
