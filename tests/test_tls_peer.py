"""TLS/DTLS handshakes against the peers: tshark on every public capture that holds a handshake, and
Zeek's ssl.log / x509.log where the capture comes with them.

The captures are those of ../shared/captures/public and public-2 on which `tshark -Y "tls.handshake or
dtls.handshake" -c 1` shows a frame (all 177 files were scanned). For each one, frame by frame, the
handshake fields tshark decodes (message types, legacy versions, offered and chosen cipher suites,
supported_versions, SNI, ALPN, supported_groups, key_share groups, the ECDHE ServerKeyExchange curve,
use_srtp profiles, and each certificate, compared by the SHA-256 of its DER) must equal what
voipwatch's TlsHandshake records give for that frame. Differences are listed in KNOWN with their reason.
"""
from __future__ import annotations

import hashlib
import subprocess
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

import pytest

from conftest import PUBLIC
from peer_logs import read_zeek_log, zeek_vector
from voipwatch.analyze import analyze_files
from voipwatch.records import TlsHandshake

pytestmark = pytest.mark.peer

PUBLIC2 = PUBLIC.parent / "public-2"
CAPTURES = [
    # (path under ../shared/captures, protocol)
    ("public-2/zeek/Traces/tls/tls1_1.pcap", "tls"),
    ("public-2/zeek/Traces/tls/signed_certificate_timestamp_tls1_0.pcap", "tls"),
    ("public-2/zeek/Traces/tls/tls1.2.pcap", "tls"),
    ("public-2/zeek/Traces/tls/chrome-1250-tls-x25519-kyber.pcap", "tls"),
    ("public-2/zeek/Traces/tls/tls13_wolfssl.pcap", "tls"),
    ("public-2/arkime/openssl-tls1.pcap", "tls"),
    ("public-2/arkime/openssl-tls1_1.pcap", "tls"),
    ("public-2/arkime/openssl-tls1_2.pcap", "tls"),
    ("public-2/zeek/Traces/tls/dtls1_0.pcap", "dtls"),
    ("public-2/zeek/Traces/tls/dtls1_2.pcap", "dtls"),
    ("public-2/zeek/Traces/tls/dtls13-wolfssl.pcap", "dtls"),
    ("public-2/zeek/Traces/tls/webrtc-stun.pcap", "dtls"),
    ("public-2/ndpi/pcap/dtls2.pcap", "dtls"),
    ("public-2/arkime/wireshark-dtls12.pcap", "dtls"),
]
FIELDS = ("handshake.type", "handshake.version", "handshake.ciphersuite", "handshake.extensions.supported_version",
          "handshake.extensions_server_name", "handshake.extensions_alpn_str", "handshake.extensions_supported_group",
          "handshake.extensions_key_share_group", "handshake.server_named_curve", "use_srtp.protection_profile",
          "handshake.certificate")
DTLS_FRAGMENT_FIELDS = ("handshake.length", "handshake.fragment_offset", "handshake.fragment_length")
MESSAGE_TYPES = {"hello_request": 0, "client_hello": 1, "server_hello": 2, "hello_verify_request": 3,
                 "new_session_ticket": 4, "end_of_early_data": 5, "encrypted_extensions": 8, "certificate": 11,
                 "server_key_exchange": 12, "certificate_request": 13, "server_hello_done": 14,
                 "certificate_verify": 15, "client_key_exchange": 16, "finished": 20, "key_update": 24}

# (capture, frame, field) -> why tshark and voipwatch differ there.
KNOWN: dict[tuple[str, int, str], str] = {}


def _path(rel: str) -> Path:
    path = PUBLIC.parent / rel
    if not path.is_file():
        pytest.fail(f"public capture missing: {path}")
    return path


@lru_cache(maxsize=None)
def _records(rel: str) -> dict[int, list[TlsHandshake]]:
    by_frame: dict[int, list[TlsHandshake]] = defaultdict(list)
    for record in analyze_files([str(_path(rel))]).records[TlsHandshake]:
        by_frame[record.pkt.frame].append(record)
    return by_frame


def _tshark(rel: str, protocol: str) -> dict[int, dict[str, list[str]]]:
    args = ["tshark", "-n", "-r", str(_path(rel)), "-Y", f"{protocol}.handshake", "-T", "fields",
            "-E", "occurrence=a", "-E", "aggregator=|", "-e", "frame.number"]
    names = [name for name in FIELDS if protocol == "dtls" or not name.startswith("use_srtp")]   # DTLS only
    if protocol == "dtls":
        names += list(DTLS_FRAGMENT_FIELDS)
    for name in names:
        args += ["-e", f"{protocol}.{name}"]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=120).stdout
    frames = {}
    for line in out.splitlines():
        values = line.split("\t")
        frame = frames[int(values[0])] = {name: [] for name in FIELDS}
        frame.update({name: [v for v in value.split("|") if v] for name, value in zip(names, values[1:])})
        if protocol == "dtls":
            # tshark names the type of every fragment's header (RFC 6347 §4.2.3); voipwatch names a message
            # once, in the datagram whose fragment completes it: only those headers are compared.
            spans = zip(frame["handshake.type"], *(frame.pop(name) for name in DTLS_FRAGMENT_FIELDS))
            frame["handshake.type"] = [t for t, length, offset, size in spans
                                       if int(offset) + int(size) == int(length)]
    return frames


def _hex(code: int) -> str:
    return f"0x{code:04x}"


def _ours(records: list[TlsHandshake]) -> dict[str, list[str]]:
    """The same fields from voipwatch's records of one frame, in tshark's notation."""
    got: dict[str, list[str]] = {name: [] for name in FIELDS}
    for r in records:
        got["handshake.type"] += [str(MESSAGE_TYPES[m]) for m in r.messages if m in MESSAGE_TYPES]
        h = r.hello
        if h is not None:
            got["handshake.version"].append(_hex(h.legacy_version))
            got["handshake.ciphersuite"] += [_hex(c) for c in h.cipher_suites]
            got["handshake.extensions.supported_version"] += [_hex(v) for v in h.versions]
            got["handshake.extensions_server_name"] += [h.sni] if h.sni is not None else []
            got["handshake.extensions_alpn_str"] += list(h.alpn)
            got["handshake.extensions_supported_group"] += [_hex(g) for g in h.groups]
            got["handshake.extensions_key_share_group"] += [str(g) for g in h.key_share_groups]
            got["use_srtp.protection_profile"] += [_hex(p) for p in h.use_srtp]
        if r.ske_curve is not None and r.ske_dh_bits is None or r.ske_curve is not None and "server_key_exchange" in r.messages:
            got["handshake.server_named_curve"].append(_hex(r.ske_curve))
        got["handshake.certificate"] += [c.sha256 for c in r.certificates or ()]
    return got


def _theirs(fields: dict[str, list[str]]) -> dict[str, list[str]]:
    out = dict(fields)
    out["handshake.certificate"] = [hashlib.sha256(bytes.fromhex(v.replace(":", ""))).hexdigest()
                                    for v in fields["handshake.certificate"]]
    return out


@pytest.mark.parametrize("rel,protocol", CAPTURES, ids=[c[0].rsplit("/", 1)[1] for c in CAPTURES])
def test_handshake_fields_agree_with_tshark(rel, protocol, tshark):
    theirs = _tshark(rel, protocol)
    ours = _records(rel)
    assert theirs, f"{rel}: tshark shows no handshake"
    differences, agreed = {}, 0
    for frame in sorted(set(theirs) | set(ours)):
        expected = _theirs(theirs[frame]) if frame in theirs else {name: [] for name in FIELDS}
        got = _ours(ours.get(frame, []))
        for name in FIELDS:
            if expected[name] != got[name]:
                differences[(rel, frame, name)] = f"tshark {expected[name]} voipwatch {got[name]}"
            elif expected[name]:
                agreed += 1
    unexplained = {k: v for k, v in differences.items() if k not in KNOWN}
    assert not unexplained, unexplained
    assert agreed > 0


# -- Zeek -------------------------------------------------------------------------------------------
ZEEK = PUBLIC2 / "zeek" / "Baseline"
ZEEK_CASES = [   # capture, ssl.log, x509.log (None: the baseline has none)
    ("public-2/zeek/Traces/tls/tls1_1.pcap", "scripts.base.protocols.ssl.tls1_1/ssl.log",
     "scripts.base.protocols.ssl.tls1_1/x509.log"),
    ("public-2/zeek/Traces/tls/tls1.2.pcap", "scripts.base.protocols.ssl.tls-1.2/ssl.log",
     "scripts.base.protocols.ssl.tls-1.2/x509.log"),
    ("public-2/zeek/Traces/tls/dtls1_0.pcap", "scripts.base.protocols.ssl.dtls/ssl.log",
     "scripts.base.protocols.ssl.dtls/x509.log"),
    ("public-2/zeek/Traces/tls/dtls1_2.pcap", "scripts.base.protocols.ssl.dtls/ssl1_2.log",
     "scripts.base.protocols.ssl.dtls/x5091_2.log"),
    ("public-2/zeek/Traces/tls/webrtc-stun.pcap", "scripts.base.protocols.ssl.dtls-stun-dpd/ssl.log", None),
    ("public-2/zeek/Traces/tls/tls13_wolfssl.pcap",
     "scripts.base.protocols.ssl.tls13_encrypted_handshake_events/ssl.log", None),
    ("public-2/zeek/Traces/tls/dtls13-wolfssl.pcap", "scripts.base.protocols.ssl.dtls-13/ssl-all.log", None),
]
# Not compared: chrome-1250-tls-x25519-kyber.pcap, whose MANIFEST names tls13/ssl-out.log, but that baseline
# (of other tls13 traces) has no row for its one connection (0.0.51.217:13783 -> 142.250.200.14:443).
ZEEK_VERSIONS = {"SSLv3": 0x0300, "TLSv10": 0x0301, "TLSv11": 0x0302, "TLSv12": 0x0303, "TLSv13": 0x0304,
                 "DTLSv10": 0xFEFF, "DTLSv12": 0xFEFD, "DTLSv13": 0xFEFC}


def _connections(rel: str) -> set[tuple[str, int]]:
    """Every (address, port) that sends a TCP or UDP packet in the capture, as tshark reads it."""
    out = subprocess.run(["tshark", "-n", "-r", str(_path(rel)), "-T", "fields", "-e", "ip.src", "-e", "tcp.srcport",
                          "-e", "udp.srcport"], capture_output=True, text=True, check=True, timeout=120).stdout
    pairs = set()
    for line in out.splitlines():
        addr, tcp_port, udp_port = (line.split("\t") + ["", "", ""])[:3]
        if addr and (tcp_port or udp_port):
            pairs.add((addr, int(tcp_port or udp_port)))
    return pairs


def _zeek_rows(rel: str) -> list[dict[str, str]]:
    path = ZEEK / rel
    if not path.is_file():
        pytest.fail(f"Zeek baseline missing: {path}")
    return read_zeek_log(path)


@pytest.mark.parametrize("rel,ssl_log,x509_log", ZEEK_CASES, ids=[c[0].rsplit("/", 1)[1] for c in ZEEK_CASES])
def test_agrees_with_zeek(rel, ssl_log, x509_log):
    from dissectors.tls_names import CIPHER_SUITES, GROUPS
    records = [r for frame in sorted(_records(rel)) for r in _records(rel)[frame]]
    servers = [r for r in records if r.hello is not None and r.hello.role == "server"]
    clients = [r for r in records if r.hello is not None and r.hello.role == "client"]
    # A baseline may cover several traces (dtls-13): the rows of this capture are its connections (tshark's).
    present = _connections(rel)
    rows = [row for row in _zeek_rows(ssl_log) if (row["id.orig_h"], int(row["id.orig_p"])) in present]
    assert rows
    for row in rows:
        # Zeek's orig/resp follow the connection; "^" first in ssl_history says the responder sent the
        # ClientHello (Zeek's ssl-log docs), as in WebRTC where STUN opened the flow.
        orig, resp = (row["id.orig_h"], int(row["id.orig_p"])), (row["id.resp_h"], int(row["id.resp_p"]))
        client, srv = (resp, orig) if row.get("ssl_history", "").startswith("^") else (orig, resp)
        server = next((r for r in servers if ((r.pkt.src, r.pkt.sport), (r.pkt.dst, r.pkt.dport)) == (srv, client)),
                      None)
        if row["version"] == "-":              # Zeek saw no ServerHello on this connection: nor do we
            assert server is None
            continue
        hello = server.hello
        version = hello.versions[0] if hello.versions else hello.legacy_version
        assert version == ZEEK_VERSIONS[row["version"]]
        assert CIPHER_SUITES[hello.cipher_suites[0]] == row["cipher"]
        if row["curve"] != "-":
            curve = hello.key_share_groups[0] if hello.key_share_groups else next(
                r.ske_curve for r in records if r.ske_curve is not None and (r.pkt.src, r.pkt.sport) == srv)
            assert GROUPS[curve] == row["curve"]
        sni = next((c.hello.sni for c in clients if (c.pkt.src, c.pkt.sport) == client), None)
        assert (sni or "-") == row["server_name"]
        for side, column, prefix in ((srv, "cert_chain_fps", ""), (client, "client_cert_chain_fps", "client_")):
            chain = [c for r in records if r.certificates and (r.pkt.src, r.pkt.sport) == side for c in r.certificates]
            assert [c.sha256 for c in chain] == (zeek_vector(row[column]) or [])
            if f"{prefix}subject" in row:
                assert _zeek_dn(chain[0].subject) == row[f"{prefix}subject"]
                assert _zeek_dn(chain[0].issuer) == row[f"{prefix}issuer"]
    if x509_log is None:
        return
    ours = {c.sha256: c for r in records for c in r.certificates or ()}
    rows = _zeek_rows(x509_log)
    assert rows
    for row in rows:
        cert = ours[row["fingerprint"]]
        assert cert.serial.upper().lstrip("0") == row["certificate.serial"].lstrip("0")
        assert cert.not_before == float(row["certificate.not_valid_before"])
        assert cert.not_after == float(row["certificate.not_valid_after"])
        assert cert.signature_alg == row["certificate.sig_alg"]
        assert cert.key_alg == row["certificate.key_type"]
        assert cert.key_bits == int(row["certificate.key_length"])
        assert _zeek_dn(cert.subject) == row["certificate.subject"]
        assert _zeek_dn(cert.issuer) == row["certificate.issuer"]


# Zeek writes a distinguished name as OpenSSL's X509_NAME_print_ex with RFC 2253 flags: OpenSSL's short
# names where RFC 4514 §3 has no keyword (cryptography then writes the dotted OID) or another spelling.
OPENSSL_SHORT_NAMES = {"STREET": "street", "2.5.4.17": "postalCode", "2.5.4.5": "serialNumber",
                       "2.5.4.15": "businessCategory", "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
                       "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST", "1.2.840.113549.1.9.1": "emailAddress"}


def _zeek_dn(rfc4514: str) -> str:
    for ours, openssl in OPENSSL_SHORT_NAMES.items():
        rfc4514 = rfc4514.replace(f"{ours}=", f"{openssl}=")
    return rfc4514
