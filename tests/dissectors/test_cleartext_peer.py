"""HTTP, TFTP, FTP, Telnet and SNMP records agree with tshark (and Zeek's expected outputs) on the public
captures that hold these protocols (../shared/captures/public-2, MANIFEST.md)."""
from __future__ import annotations

import hashlib
import subprocess

import pytest


@pytest.fixture(scope="module")
def public2(public_captures):
    return public_captures.parent / "public-2"


def _fields(tshark: str, capture, display: str, names: list[str]) -> dict[int, list[list[str]]]:
    args = [tshark, "-n", "-r", str(capture), "-Y", display, "-T", "fields", "-E", "occurrence=a",
            "-E", "aggregator=\x1f", "-e", "frame.number"]
    for name in names:
        args += ["-e", name]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        cols = line.split("\t")
        rows[int(cols[0])] = [c.split("\x1f") if c else [] for c in cols[1:]]
    return rows


def _table(analysis, capture, name):
    """The table with missing values as None (pandas' NA compares with nothing)."""
    table = analysis(capture).tables[name]
    return table.astype(object).where(table.notna(), None)


HTTP = ["arkime/http-basicauth.pcap", "zeek/Traces/http/basic-auth-with-extra-space.pcap", "ndpi/pcap/http_auth.pcap",
        "zeek/Traces/http/get.pcap", "zeek/Traces/http/http-filename.pcap"]


@pytest.mark.peer
@pytest.mark.parametrize("capture", HTTP)
def test_http_agrees_with_tshark(capture, public2, tshark, analysis):
    path = public2 / capture
    peer = _fields(tshark, path, "http.request || http.response", ["http.request.method", "http.host",
                   "http.user_agent", "http.response.code", "http.server", "http.content_type"])
    table = _table(analysis, path, "http")
    assert len(table) == len(peer) > 0
    for row in table.itertuples():
        method, host, agent, code, server, ctype = (v[0] if v else None for v in peer[row.frame])
        if row.is_request:
            assert (row.method, row.host, row.user_agent) == (method, host, agent)
        else:
            assert (row.status, row.server, row.content_type) == (int(code), server, ctype)


@pytest.mark.peer
@pytest.mark.parametrize("capture", HTTP[:3])
def test_http_basic_credentials_hashed_like_tshark(capture, public2, tshark, analysis):
    """tshark decodes Basic's user:password; voipwatch keeps the user and only the password's SHA-256 and length."""
    path = public2 / capture
    peer = _fields(tshark, path, "http.authbasic", ["http.authbasic"])
    table = _table(analysis, path, "http")
    basic = table[(table.auth_scheme == "Basic") & table.is_request]
    assert len(basic) == len(peer) > 0
    for row in basic.itertuples():
        user, _, password = peer[row.frame][0][0].partition(":")
        assert row.auth_user == user
        assert (row.auth_secret_sha256, row.auth_secret_len) == (hashlib.sha256(password.encode()).hexdigest(),
                                                                 len(password.encode()))
        written = " ".join(str(v) for v in row)
        assert password not in written.split()       # the secret itself is nowhere in the row


@pytest.mark.peer
def test_http_download_hash_agrees_with_zeek_extracted_file(public2, analysis):
    """Zeek's file-analysis baseline 1-file is the body of GET /download/CHANGES.bro-aux.txt."""
    extracted = public2 / "zeek/Baseline/scripts.base.frameworks.file-analysis.http.get/1-file"
    if not extracted.exists():
        extracted = next(public2.rglob("scripts.base.frameworks.file-analysis.http.get/1-file"))
    body = extracted.read_bytes()
    files = _table(analysis, public2 / "zeek/Traces/http/get.pcap", "file_transfers")
    assert files[["protocol", "name", "size", "sha256", "complete", "content"]].values.tolist() == [
        ["http", "CHANGES.bro-aux.txt", len(body), hashlib.sha256(body).hexdigest(), True, "plaintext"]]


@pytest.mark.peer
def test_http_content_disposition_filename(public2, tshark, analysis):
    files = _table(analysis, public2 / "zeek/Traces/http/http-filename.pcap", "file_transfers")
    assert files.name.tolist() == ["test.json"]


TFTP = ["tcpdump/tftp.pcap", "arkime/tftp_rrq.pcap", "suricata-verify/tftp-tx-handling-wrq/input.pcap",
        "ndpi/pcap/tftp.pcap"]


def _tftp_files(tshark: str, path) -> dict[str, bytes]:
    """Files tshark reassembles (--export-objects tftp), by name."""
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([tshark, "-n", "-r", str(path), "-q", "--export-objects", f"tftp,{out}"], check=True,
                       capture_output=True)
        return {p.name: p.read_bytes() for p in Path(out).iterdir()}


@pytest.mark.peer
@pytest.mark.parametrize("capture", TFTP)
def test_tftp_agrees_with_tshark(capture, public2, tshark, analysis):
    path = public2 / capture
    requests = _fields(tshark, path, "tftp.opcode == 1 || tftp.opcode == 2", ["tftp.opcode", "tftp.source_file",
                                                                              "tftp.destination_file"])
    # ndpi's tftp.pcap opens with two requests without a file name, which RFC 1350 §5 does not allow (tshark
    # still calls them requests): they are not TFTP to voipwatch.
    requests = {f: cols for f, cols in requests.items() if (cols[1] or cols[2]) and (cols[1] or cols[2])[0]}
    files = _table(analysis, path, "file_transfers")
    assert sorted(files.frame) == sorted(requests)
    exported = _tftp_files(tshark, path)
    for row in files.itertuples():
        opcode, source, destination = (v[0] if v else None for v in requests[row.frame])
        assert row.direction == ("download" if opcode == "1" else "upload")
        assert row.name == (source or destination)
        if row.complete and row.name in exported:
            assert (row.size, row.sha256) == (len(exported[row.name]), hashlib.sha256(exported[row.name]).hexdigest())
    assert any(row.complete for row in files.itertuples())


SNMP = ["zeek/Traces/snmp/snmpv1_get.pcap", "zeek/Traces/snmp/snmpv1_trap.pcap", "zeek/Traces/snmp/snmpv2_get.pcap",
        "zeek/Traces/snmp/snmpv3_get_next.pcap", "suricata-verify/snmp-v3-encrypted/SNMPv3.pcap",
        "suricata-verify/snmp-v2c-get/SNMPv2c_get_requests.pcap"]
PDU = {"0": "get-request", "1": "get-next-request", "2": "response", "3": "set-request", "4": "trap",
       "5": "get-bulk-request", "6": "inform-request", "7": "snmpV2-trap", "8": "report"}


@pytest.mark.peer
@pytest.mark.parametrize("capture", SNMP)
def test_snmp_agrees_with_tshark(capture, public2, tshark, analysis):
    path = public2 / capture
    peer = _fields(tshark, path, "snmp", ["snmp.version", "snmp.msgVersion", "snmp.community", "snmp.data", "snmp.msgFlags",
                                          "snmp.msgUserName"])
    table = _table(analysis, path, "snmp")
    assert sorted(table.frame) == sorted(peer) and len(table) > 0
    for row in table.itertuples():
        version, v3, community, data, flags, user = (v[0] if v else None for v in peer[row.frame])
        version = version or v3
        assert row.version == {"0": "v1", "1": "v2c", "3": "v3"}[version]
        if row.version == "v3":
            assert (row.v3_auth, row.v3_priv) == (bool(int(flags, 16) & 1), bool(int(flags, 16) & 2))
            assert (row.v3_user or None) == (user or None)
            if not row.v3_priv:
                assert row.pdu_type == PDU[data]
        else:
            assert row.pdu_type == PDU[data]
            assert row.community_sha256 == hashlib.sha256(community.encode()).hexdigest()
            assert row.community_len == len(community)
            assert row.community_default == (community in ("public", "private"))


FTP = ["zeek/Traces/ftp/ipv4.pcap", "zeek/Traces/ftp/ftp-password-pass-command.pcap",
       "suricata-verify/ftp/ftp-download-passive/input.pcap", "arkime/ftp.pcap"]


@pytest.mark.peer
@pytest.mark.parametrize("capture", FTP)
def test_ftp_commands_agree_with_tshark(capture, public2, tshark, analysis):
    path = public2 / capture
    peer = _fields(tshark, path, "ftp.request", ["ftp.request.command", "ftp.request.arg"])
    table = _table(analysis, path, "ftp")
    ours = table[table.is_request]
    expected = sorted((f, c.upper()) for f, cols in peer.items() for c in cols[0])
    assert sorted(zip(ours.frame, ours.command)) == expected and expected
    for row in ours[ours.command == "PASS"].itertuples():
        password = peer[row.frame][1][0] if peer[row.frame][1] else ""
        assert (row.secret_sha256, row.secret_len) == (hashlib.sha256(password.encode()).hexdigest(), len(password))
        assert row.arg is None                            # never the password
    for row in ours[ours.command == "USER"].itertuples():
        assert row.arg == peer[row.frame][1][0]


@pytest.mark.peer
def test_telnet_login_exchange(public2, tshark, analysis):
    """The server of telnet-01 negotiates options, prompts 'login:' then 'Password:' (tshark's telnet.data)."""
    path = public2 / "suricata-verify/telnet/telnet-01/telnet.pcap"
    peer = _fields(tshark, path, "telnet.data contains \"assword:\"", ["ip.src"])
    events = _table(analysis, path, "telnet")
    prompts = events[events.event == "password_prompt"]
    assert prompts.frame.tolist()[0] == min(peer)
    assert set(events.event) >= {"negotiation", "login_prompt", "password_prompt"}
