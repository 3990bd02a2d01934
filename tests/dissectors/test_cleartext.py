"""HTTP, SNMP, TFTP, FTP, Telnet dissectors and the provisioning content check: byte-literal cases, framing
across segment boundaries, hostile input (named anomalies, never an exception) and secrets never written."""
from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from dissectors import ftp, http, provisioning, snmp, telnet, tftp
from voipwatch.records import Anomaly, PacketMeta
from mutate import mutations

META = PacketMeta(1.0, 1, (), "10.0.0.1", 40000, "10.0.0.2", 80, "tcp")
REPO = Path(__file__).resolve().parents[2]


def _frame_all(framer, data: bytes, cut: list[int]):
    """Feed data to a framer in pieces ending at the offsets in cut, as the reassembler does (it keeps
    what the framer did not consume); the units and anomalies it gives."""
    units, notes, buf, start = [], [], b"", 0
    for end in [*cut, len(data)]:
        buf += data[start:end]
        start = end
        got, used, more = framer.frame(buf, META)
        units += got
        notes += more
        buf = buf[used:]
    return units, notes, buf


# -- HTTP -----------------------------------------------------------------------------------------
CHUNKED = (b"HTTP/1.1 200 OK\r\nServer: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n")


@pytest.mark.parametrize("cut", [[], [10], [70, 75, 80], list(range(1, len(CHUNKED)))])
def test_chunked_body_is_hashed_whole_however_segmented(cut):
    units, notes, rest = _frame_all(http.HttpFramer(), CHUNKED, cut)
    assert [(u.body_len, u.body_sha256, u.complete) for u in units] == [
        (12, hashlib.sha256(b"hello, world").hexdigest(), True)]
    assert notes == [] and rest == b""


def test_content_length_pipelined_and_bodiless_responses():
    data = (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n"        # RFC 9112 §6.3: 304 has no body
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
            b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\nuntil close...")
    units, notes, _ = _frame_all(http.HttpFramer(), data, [60])
    assert [(u.body_len, u.complete) for u in units] == [(0, True), (3, True), (0, False)]
    record, _ = http.parse(META, units[2])
    assert (record.status, record.server, record.body_complete, record.body_sha256) == (200, "old", False, None)


def test_basic_credentials_kept_as_hash_and_length_only():
    unit = http.HttpUnit(b"GET /a?user=x&password=hunter2 HTTP/1.1\r\nHost: h\r\n"
                         b"Authorization: Basic YWRtaW46czNjcjN0\r\n\r\n", 0, None, b"", True)
    record, notes = http.parse(META, unit)
    assert (record.auth_scheme, record.auth_user, record.auth_secret_len) == ("Basic", "admin", 6)
    assert record.auth_secret_sha256 == hashlib.sha256(b"s3cr3t").hexdigest()
    assert record.uri == "/a?user=x&password=***" and not notes
    assert "s3cr3t" not in repr(record) and "hunter2" not in repr(record)


def test_form_post_lists_password_fields_by_name():
    body = b"user=bob&passwd=pw1&pin=1234&submit=Login"
    unit = http.HttpUnit(b"POST /login HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                         b"Content-Length: 41\r\n\r\n", len(body), hashlib.sha256(body).hexdigest(), body, True)
    record, _ = http.parse(META, unit)
    assert record.form_password_fields == ("passwd", "pin")


@pytest.mark.parametrize("data, name", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n", "http.bad_content_length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", "http.bad_content_length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "http.bad_chunk"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nthis is no start line\r\n", "http.bad_start_line"),
    (b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * http.MAX_HEAD, "http.header_too_long"),
])
def test_hostile_http_is_a_named_anomaly(data, name):
    framer = http.HttpFramer()
    _, notes, _ = _frame_all(framer, data, [])
    assert [n.name for n in notes] == [name] and framer.abandoned


def test_http_fuzz_never_raises():
    seeds = [CHUNKED, b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Basic !!\r\n\r\n",
             b"POST /x HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\n\r\np=%ff"]
    for data in mutations(11, seeds, 3000):
        framer = http.HttpFramer()
        units, _, _ = _frame_all(framer, data, [len(data) // 2])
        for unit in units:
            http.parse(META, unit)
        framer.end(1.0, 1, "a", "b", "end")


# -- SNMP -----------------------------------------------------------------------------------------
V2C_GET = bytes.fromhex("302602010104067075626c6963a019020101020100020100300e300c06082b060102010105000500")


def test_snmp_v2c_community_as_hash():
    record, notes = snmp.parse(META, V2C_GET)
    assert (record.version, record.pdu_type, record.request_id, record.community_len, record.community_default) == \
        ("v2c", "get-request", 1, 6, True)
    assert record.community_sha256 == hashlib.sha256(b"public").hexdigest() and not notes


def test_snmp_fuzz_is_named_anomalies_never_exceptions():
    for data in mutations(12, [V2C_GET], 5000):
        record, notes = snmp.parse(META, data)
        assert record is not None or [n.name for n in notes] == ["snmp.malformed"]


# -- TFTP, FTP, Telnet -------------------------------------------------------------------------------
def test_tftp_probes_are_tight():
    assert tftp.looks_like_request(b"\x00\x01SEP1.cnf.xml\x00octet\x00")
    assert not tftp.looks_like_request(b"\x00\x01\x00octet\x00")               # no file name (RFC 1350 §5)
    assert not tftp.looks_like_request(b"\x00\x01name\x00binary\x00")          # not a mode of §5
    assert tftp.looks_like_transfer(b"\x00\x04\x00\x01") and not tftp.looks_like_transfer(b"\x00\x04\x00\x01x")
    assert not tftp.looks_like_transfer(b"\x00\x03" + bytes(70000))
    rng = random.Random(5)
    for _ in range(5000):
        data = rng.randbytes(rng.randrange(0, 40))
        if tftp.looks_like_request(data) or tftp.looks_like_transfer(data):
            assert isinstance(tftp.parse(META, data)[0], tftp.TftpPacket)


def test_ftp_pass_never_kept():
    record, _ = ftp.parse(META._replace(dport=21) if hasattr(META, "_replace") else
                          PacketMeta(1.0, 1, (), "a", 40000, "b", 21, "tcp"), b"PASS hunter2\r")
    assert (record.command, record.arg, record.secret_len) == ("PASS", None, 7)
    assert record.secret_sha256 == hashlib.sha256(b"hunter2").hexdigest()


def test_telnet_iac_split_across_segments_and_prompts():
    server = PacketMeta(1.0, 1, (), "b", 23, "a", 40000, "tcp")
    framer = telnet.TelnetFramer()
    got = []
    buf = b""
    for piece in (b"\xff", b"\xfd\x18\xff\xfa\x18\x01", b"\xff\xf0log", b"in: ", b"\r\nPassword: "):
        buf += piece
        units, used, _ = framer.frame(buf, server)
        buf = buf[used:]
        got += [u[0] for u in units]
    assert got == ["negotiation", "login_prompt", "password_prompt"] and framer.options == 1


# -- provisioning content -----------------------------------------------------------------------------
def test_provisioning_names_and_content():
    assert provisioning.kind_of_name("/tftpboot/SEP001122334455.cnf.xml") == "config"
    assert provisioning.kind_of_name("y000000000044.cfg") == "config"
    assert provisioning.kind_of_name("SIP78xx.12-0-1.loads") == "firmware"
    assert provisioning.kind_of_name("index.html") is None
    assert provisioning.classify("a.cfg", b"account.1.password = x\nuser_name=1\n") == ("plaintext", ("account.1.password",))
    assert provisioning.classify("SEP1.cnf.xml.enc.sgn", b"<x/>") == ("encrypted", ())
    assert provisioning.classify("SEP1.cnf.xml.sgn", b"<Password>x</Password>") == ("signed", ("Password",))
    assert provisioning.classify("blob.cfg", random.Random(1).randbytes(4096))[0] == "encrypted"


# -- secrets never reach an output ------------------------------------------------------------------
SECRETS = [b"Lin3-Pa55", b"Adm1n-Pa55", b"Pr0v-Pa55", b"rw-Secr3t", b"guess3", b"YWRtaW46YWRtaW4="]


@pytest.mark.cli
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_no_secret_of_cm_attacks_in_any_output(fmt, tmp_path):
    """cm-attacks.pcap carries these passwords and communities in clear; no output file holds one."""
    capture = REPO / "sample_captures" / "cm-attacks.pcap"
    assert all(s in capture.read_bytes() for s in SECRETS)
    subprocess.run([sys.executable, "-m", "voipwatch", "analyze", str(capture), "--config",
                    str(REPO / "sample_captures/configs/cleartext_management.toml"), "-o", str(tmp_path),
                    "--format", fmt], check=True, capture_output=True, cwd=REPO, env={**os.environ})
    files = list(tmp_path.rglob("*"))
    assert any(f.name.startswith("http") for f in files)
    for f in files:
        if f.is_file():
            data = f.read_bytes()
            assert not [s for s in SECRETS if s in data], f.name
