"""TLS (SIP over TLS, RFC 3261 §26.2.2) and DTLS (DTLS-SRTP, RFC 5764) handshakes: the cleartext
hellos, certificates and certificate requests described, nothing ever decrypted.

Over TCP a direction's records (RFC 5246 §6.2.1 / RFC 8446 §5.1) are framed by TlsRecordFramer,
which joins the handshake records into handshake messages (a message may span records, a record may
hold several messages) until the direction's ChangeCipherSpec or first application data, after which
every handshake byte is encrypted. Over UDP each DTLS datagram (RFC 6347 §4.1, RFC 9147 §4) is read
on its own; a handshake message fragmented over datagrams (RFC 6347 §4.2.3) is reassembled by
DtlsReassembly. Certificates are described by dissectors/x509_cert.py.
"""
from __future__ import annotations

from collections import OrderedDict

from voipwatch.records import Anomaly, PacketMeta, TlsHandshake, TlsHello, X509Summary

# RFC 5246 §6.2.1 / RFC 8446 §5.1: a record starts with its content type, 20-24 (change_cipher_spec,
# alert, handshake, application_data, heartbeat RFC 6520), then the protocol version, major 3 for TLS.
CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT = 20, 21, 22, 23, 24
CONTENT_TYPES = range(20, 25)
TLS_MAJOR = b"\x03"
# RFC 6347 §4.1: DTLS versions are the one's complement of TLS's (0xfeff DTLS 1.0, 0xfefd DTLS 1.2).
DTLS_MAJOR = b"\xfe"
FIRST_OCTETS = frozenset(range(20, 24))   # a flow or datagram never starts with a heartbeat (RFC 6520 §3)
# RFC 8446 §5.1: a TLSCiphertext fragment is at most 2^14 + 256 octets; RFC 5246 §6.2.3 allowed
# 2^14 + 2048 for TLS 1.2 and earlier: the larger bound.
MAX_RECORD = 2 ** 14 + 2048
TLS_HEADER = 5
DTLS_HEADER = 13                       # RFC 6347 §4.1: type, version, epoch(2), sequence(6), length(2)
DTLS_HANDSHAKE_HEADER = 12             # RFC 6347 §4.2.2: + message_seq(2), fragment_offset(3), fragment_length(3)
MAX_HANDSHAKE_MESSAGE = 1 << 17        # bytes of one handshake message buffered (a long certificate chain fits)
MAX_CERTIFICATES = 10                  # certificates of one chain described
MAX_DTLS_MESSAGES = 64                 # DTLS messages being reassembled at once (all flows): at most
                                       # 64 x 2 x MAX_HANDSHAKE_MESSAGE octets (body and coverage map) held
DTLS_FRAGMENT_TTL_S = 60.0             # capture seconds a fragmented message may take to complete

MESSAGE_NAMES = {0: "hello_request", 1: "client_hello", 2: "server_hello", 3: "hello_verify_request",
                 4: "new_session_ticket", 5: "end_of_early_data", 8: "encrypted_extensions", 11: "certificate",
                 12: "server_key_exchange", 13: "certificate_request", 14: "server_hello_done",
                 15: "certificate_verify", 16: "client_key_exchange", 20: "finished", 24: "key_update",
                 254: "message_hash"}
CLIENT_HELLO, SERVER_HELLO, HELLO_VERIFY_REQUEST, CERTIFICATE, SERVER_KEY_EXCHANGE, CERTIFICATE_REQUEST = 1, 2, 3, 11, 12, 13
NAMED_CURVE = 3                        # RFC 8422 §5.4 ECCurveType named_curve
# RFC 8446 §4.1.3: a HelloRetryRequest is a ServerHello whose random is SHA-256("HelloRetryRequest").
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
# Extension types (IANA TLS ExtensionType registry).
EXT_SERVER_NAME, EXT_SUPPORTED_GROUPS, EXT_SIGNATURE_ALGORITHMS, EXT_USE_SRTP, EXT_ALPN = 0, 10, 13, 14, 16
EXT_SUPPORTED_VERSIONS, EXT_KEY_SHARE = 43, 51

ANOMALIES = {
    "tls.bad_record": "a TLS direction whose next record header is no TLS record (unknown content type, major "
                      f"version not 3, or longer than {MAX_RECORD} octets): no longer read",
    "tls.handshake_too_long": f"a handshake message longer than {MAX_HANDSHAKE_MESSAGE} octets: the direction's "
                              "handshake is no longer read",
    "tls.truncated_handshake": "a direction ended inside a handshake message (the rest never seen)",
    "tls.malformed_hello": "a ClientHello or ServerHello whose fields or extensions overrun their lengths",
    "tls.malformed_certificate": "a Certificate message whose lengths overrun, or a certificate that is no "
                                 "valid X.509 DER",
    "tls.certificates_cut": f"a Certificate message with more than {MAX_CERTIFICATES} certificates: the rest "
                            "counted, not described",
    "dtls.malformed_record": "a DTLS datagram whose record or handshake fragment headers overrun it",
    "dtls.fragments_dropped": f"DTLS handshake fragments dropped: the message is longer than "
                              f"{MAX_HANDSHAKE_MESSAGE} octets, did not complete within {DTLS_FRAGMENT_TTL_S:g} s, "
                              f"or more than {MAX_DTLS_MESSAGES} messages were being reassembled",
}


def looks_like_tls(payload: bytes) -> bool:
    """A TCP segment that starts with a TLS record header (called with a non-empty payload)."""
    return payload[0] in FIRST_OCTETS and payload[1:2] == TLS_MAJOR


def looks_like_dtls(payload: bytes) -> bool:
    """A UDP datagram that starts with a DTLS record header."""
    return payload[1:2] == DTLS_MAJOR and payload[0] in FIRST_OCTETS


# -- TLS over TCP ------------------------------------------------------------------------------------
class TlsRecordFramer:
    """One TCP direction's TLS records, joined into whole handshake messages (type, 24-bit length, body).

    Records are framed by their 5-octet header. Handshake records are cleartext until the direction
    sends ChangeCipherSpec (TLS <= 1.2, RFC 5246 §7.1) or application data (TLS 1.3 sends everything
    after its hellos as application_data records, RFC 8446 §5.2): from then on the direction's bytes
    are consumed unread. A header that is not TLS gives the direction up (tls.bad_record); the
    handshake buffer is bounded by MAX_HANDSHAKE_MESSAGE.
    """
    __slots__ = ("synced", "abandoned", "encrypted", "pending")

    def __init__(self) -> None:
        self.synced = False          # a TLS record header was seen
        self.abandoned = False
        self.encrypted = False       # the rest of the direction is protected: not read
        self.pending = b""           # handshake bytes of a message not yet complete

    def frame(self, buf: bytes, meta: PacketMeta) -> tuple[list[bytes], int, list[Anomaly]]:
        messages: list[bytes] = []
        notes: list[Anomaly] = []
        if self.encrypted or self.abandoned:
            return messages, len(buf), notes
        pos, n = 0, len(buf)
        while n - pos >= TLS_HEADER:
            ctype, major, length = buf[pos], buf[pos + 1], int.from_bytes(buf[pos + 3:pos + 5], "big")
            if ctype not in CONTENT_TYPES or major != 3 or length > MAX_RECORD:
                if self.synced:
                    notes.append(Anomaly(meta.ts, meta.frame, "tls", "tls.bad_record",
                                         f"record header {buf[pos:pos + TLS_HEADER].hex()} is not TLS", meta.src,
                                         meta.dst))
                self.abandoned = True
                return messages, n, notes
            if n - pos - TLS_HEADER < length:
                break                                    # the record's end is still to come
            self.synced = True
            body = buf[pos + TLS_HEADER:pos + TLS_HEADER + length]
            pos += TLS_HEADER + length
            if ctype == HANDSHAKE:
                self.pending += body
                if not self._split(messages, notes, meta):
                    return messages, n, notes
            elif ctype in (CHANGE_CIPHER_SPEC, APPLICATION_DATA):
                self.encrypted = True
                return messages, n, notes
        return messages, pos, notes

    def _split(self, messages: list[bytes], notes: list[Anomaly], meta: PacketMeta) -> bool:
        """Whole messages out of the pending handshake bytes; False when the direction is given up."""
        data = self.pending
        pos = 0
        while len(data) - pos >= 4:
            length = int.from_bytes(data[pos + 1:pos + 4], "big")
            if length > MAX_HANDSHAKE_MESSAGE:
                notes.append(Anomaly(meta.ts, meta.frame, "tls", "tls.handshake_too_long",
                                     f"{MESSAGE_NAMES.get(data[pos], data[pos])} of {length} octets", meta.src,
                                     meta.dst))
                self.pending, self.encrypted = b"", True
                return False
            if len(data) - pos - 4 < length:
                break
            messages.append(data[pos:pos + 4 + length])
            pos += 4 + length
        self.pending = data[pos:]
        return True

    def end(self, ts: float, frame: int, src: str, dst: str, why: str) -> list[Anomaly]:
        if not self.pending:
            return []
        held, self.pending = len(self.pending), b""
        return [Anomaly(ts, frame, "tls", "tls.truncated_handshake",
                        f"{held} octets of an unfinished handshake message ({why})", src, dst)]


def parse_tls(meta: PacketMeta, message: bytes) -> tuple[TlsHandshake | None, list[Anomaly]]:
    """One whole cleartext handshake message of a TCP direction as a TlsHandshake."""
    notes: list[Anomaly] = []
    record = _describe(meta, "tls", [(message[0], message[4:])], notes)
    return record, notes


# -- DTLS over UDP -----------------------------------------------------------------------------------
class DtlsReassembly:
    """Fragments of DTLS handshake messages (RFC 6347 §4.2.3) by (flow, message_seq), bounded: at most
    MAX_DTLS_MESSAGES messages, each at most MAX_HANDSHAKE_MESSAGE octets and DTLS_FRAGMENT_TTL_S old."""

    def __init__(self) -> None:
        # key -> (first fragment's time, type, length, body, coverage: one octet per body octet, 1 once seen)
        self._open: OrderedDict[tuple, tuple[float, int, int, bytearray, bytearray]] = OrderedDict()

    def add(self, meta: PacketMeta, msg_type: int, length: int, seq: int, offset: int, fragment: bytes,
            notes: list[Anomaly]) -> bytes | None:
        """The whole message body once its last fragment arrived, else None."""
        if length > MAX_HANDSHAKE_MESSAGE or offset + len(fragment) > length:
            notes.append(_dropped(meta, f"fragment {offset}+{len(fragment)} of a {length}-octet message"))
            return None
        for key in [k for k, v in self._open.items() if meta.ts - v[0] > DTLS_FRAGMENT_TTL_S]:
            del self._open[key]
            notes.append(_dropped(meta, "a fragmented message that did not complete"))
        key = (meta.vlan, meta.src, meta.sport, meta.dst, meta.dport, seq, msg_type)
        entry = self._open.get(key)
        if entry is None or entry[2] != length:
            entry = self._open[key] = (meta.ts, msg_type, length, bytearray(length), bytearray(length))
            if len(self._open) > MAX_DTLS_MESSAGES:
                self._open.popitem(last=False)
                notes.append(_dropped(meta, "too many messages being reassembled"))
        body, have = entry[3], entry[4]
        body[offset:offset + len(fragment)] = fragment
        have[offset:offset + len(fragment)] = b"\x01" * len(fragment)
        if have.count(0):
            return None
        del self._open[key]
        return bytes(body)


def _dropped(meta: PacketMeta, why: str) -> Anomaly:
    return Anomaly(meta.ts, meta.frame, "dtls", "dtls.fragments_dropped", why, meta.src, meta.dst)


class DtlsParser:
    """The DTLS datagram parser, with the fragments it reassembles (one per Analyzer: the dispatch
    entry's `fresh` factory makes it, so no state outlives or crosses an analysis)."""

    def __init__(self) -> None:
        self.reassembly = DtlsReassembly()

    def __call__(self, meta: PacketMeta, payload: bytes) -> tuple[TlsHandshake | None, list[Anomaly]]:
        return parse_dtls(meta, payload, self.reassembly)


def parse_dtls(meta: PacketMeta, payload: bytes,
               reassembly: DtlsReassembly) -> tuple[TlsHandshake | None, list[Anomaly]]:
    """One DTLS datagram: its cleartext (epoch 0) handshake messages as one TlsHandshake, or None when
    it holds none (application data, alerts, encrypted handshake, a fragment of a message still open)."""
    notes: list[Anomaly] = []
    found: list[tuple[int, bytes]] = []
    pos, n = 0, len(payload)
    while pos < n:
        # RFC 9147 §4: a first octet 001xxxxx is a DTLS 1.3 ciphertext (unified header): encrypted.
        if payload[pos] & 0xE0 == 0x20:
            break
        if n - pos < DTLS_HEADER or payload[pos + 1] != 0xFE or payload[pos] not in CONTENT_TYPES:
            notes.append(Anomaly(meta.ts, meta.frame, "dtls", "dtls.malformed_record",
                                 f"{n - pos} octets at offset {pos} are no DTLS record", meta.src, meta.dst))
            break
        ctype, epoch = payload[pos], int.from_bytes(payload[pos + 3:pos + 5], "big")
        length = int.from_bytes(payload[pos + 11:pos + 13], "big")
        body = payload[pos + DTLS_HEADER:pos + DTLS_HEADER + length]
        if len(body) < length:
            notes.append(Anomaly(meta.ts, meta.frame, "dtls", "dtls.malformed_record",
                                 f"record of {length} octets with {len(body)} in the datagram", meta.src, meta.dst))
            break
        pos += DTLS_HEADER + length
        if ctype == HANDSHAKE and epoch == 0:
            _dtls_fragments(meta, body, reassembly, found, notes)
    return (_describe(meta, "dtls", found, notes) if found else None), notes


def _dtls_fragments(meta: PacketMeta, body: bytes, reassembly: DtlsReassembly, found: list[tuple[int, bytes]],
                    notes: list[Anomaly]) -> None:
    pos = 0
    while len(body) - pos >= DTLS_HANDSHAKE_HEADER:
        msg_type = body[pos]
        length = int.from_bytes(body[pos + 1:pos + 4], "big")
        seq = int.from_bytes(body[pos + 4:pos + 6], "big")
        offset = int.from_bytes(body[pos + 6:pos + 9], "big")
        frag_len = int.from_bytes(body[pos + 9:pos + 12], "big")
        fragment = body[pos + DTLS_HANDSHAKE_HEADER:pos + DTLS_HANDSHAKE_HEADER + frag_len]
        if len(fragment) < frag_len:
            notes.append(Anomaly(meta.ts, meta.frame, "dtls", "dtls.malformed_record",
                                 f"handshake fragment of {frag_len} octets with {len(fragment)} in the record",
                                 meta.src, meta.dst))
            return
        pos += DTLS_HANDSHAKE_HEADER + frag_len
        if offset == 0 and frag_len == length:
            found.append((msg_type, fragment))
        else:
            whole = reassembly.add(meta, msg_type, length, seq, offset, fragment, notes)
            if whole is not None:
                found.append((msg_type, whole))
    if pos != len(body):
        notes.append(Anomaly(meta.ts, meta.frame, "dtls", "dtls.malformed_record",
                             f"{len(body) - pos} octets after the last handshake fragment", meta.src, meta.dst))


# -- handshake messages ------------------------------------------------------------------------------
def _describe(meta: PacketMeta, protocol: str, messages: list[tuple[int, bytes]],
              notes: list[Anomaly]) -> TlsHandshake:
    names, hello, certificates, request, curve, dh_bits = [], None, None, False, None, None
    for msg_type, body in messages:
        names.append(MESSAGE_NAMES.get(msg_type, str(msg_type)))
        if msg_type in (CLIENT_HELLO, SERVER_HELLO) and hello is None:
            try:
                hello = _hello(body, msg_type == CLIENT_HELLO, protocol == "dtls")
            except ValueError as exc:
                notes.append(Anomaly(meta.ts, meta.frame, protocol, "tls.malformed_hello", str(exc), meta.src,
                                     meta.dst))
        elif msg_type == HELLO_VERIFY_REQUEST and hello is None and len(body) >= 2:
            # RFC 6347 §4.2.1: server_version, then the cookie the client must echo.
            hello = TlsHello("hello_verify_request", int.from_bytes(body[:2], "big"))
        elif msg_type == CERTIFICATE and certificates is None:
            certificates = _certificates(meta, protocol, body, notes)
        elif msg_type == CERTIFICATE_REQUEST:
            request = True
        elif msg_type == SERVER_KEY_EXCHANGE and len(body) >= 3:
            if body[0] == NAMED_CURVE:
                curve = int.from_bytes(body[1:3], "big")
            prime_len = int.from_bytes(body[0:2], "big")
            if 0 < prime_len <= len(body) - 2:
                dh_bits = prime_len * 8 - (8 - body[2].bit_length())
    return TlsHandshake(meta, protocol, tuple(names), hello, certificates, request, curve, dh_bits)


class _Reader:
    """Reads a TLS presentation-language structure (RFC 8446 §3); ValueError when a length overruns."""
    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data, self.pos, self.end = data, pos, len(data) if end is None else end

    def take(self, n: int, what: str) -> bytes:
        if self.end - self.pos < n:
            raise ValueError(f"{what}: {n} octets needed, {self.end - self.pos} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int, what: str) -> int:
        return int.from_bytes(self.take(n, what), "big")

    def vector(self, length_octets: int, what: str) -> _Reader:
        """A <..2^(8*length_octets)-1> vector as a reader of its own; this reader moves past it."""
        n = self.uint(length_octets, what + " length")
        self.take(n, what)
        return _Reader(self.data, self.pos - n, self.pos)

    def left(self) -> int:
        return self.end - self.pos

    def u16s(self) -> tuple[int, ...]:
        return tuple(self.uint(2, "list item") for _ in range(self.left() // 2))


def _hello(body: bytes, client: bool, dtls: bool) -> TlsHello:
    """RFC 8446 §4.1.2 ClientHello / §4.1.3 ServerHello (and RFC 5246 §7.4.1.2-3, RFC 6347 §4.2.1 cookie)."""
    r = _Reader(body)
    legacy_version = r.uint(2, "version")
    random = r.take(32, "random")
    session_id_len = r.vector(1, "session_id").left()
    if client:
        if dtls:
            r.vector(1, "cookie")
        suites = r.vector(2, "cipher_suites").u16s()
        r.vector(1, "compression_methods")
        role = "client"
    else:
        suites = (r.uint(2, "cipher_suite"),)
        r.uint(1, "compression_method")
        role = "hello_retry_request" if random == HRR_RANDOM else "server"
    fields: dict = {}
    extensions: list[int] = []
    if r.left():                               # extensions are optional before TLS 1.3 (RFC 5246 §7.4.1.2)
        exts = r.vector(2, "extensions")
        while exts.left():
            ext_type = exts.uint(2, "extension type")
            extensions.append(ext_type)
            _extension(ext_type, exts.vector(2, f"extension {ext_type}"), role, fields)
    return TlsHello(role, legacy_version, cipher_suites=suites, extensions=tuple(extensions),
                    session_id_len=session_id_len, **fields)


def _extension(ext_type: int, r: _Reader, role: str, fields: dict) -> None:
    client = role == "client"
    if ext_type == EXT_SERVER_NAME and client:
        names = r.vector(2, "server_name_list")
        while names.left():                    # RFC 6066 §3: name_type 0 is host_name
            name_type = names.uint(1, "name_type")
            name = names.vector(2, "HostName")
            if name_type == 0 and "sni" not in fields:
                fields["sni"] = name.data[name.pos:name.end].decode("ascii", "backslashreplace")
    elif ext_type == EXT_SUPPORTED_GROUPS:
        fields["groups"] = r.vector(2, "named_group_list").u16s()
    elif ext_type == EXT_SIGNATURE_ALGORITHMS:
        fields["signature_algorithms"] = r.vector(2, "supported_signature_algorithms").u16s()
    elif ext_type == EXT_USE_SRTP:             # RFC 5764 §4.1.1: SRTPProtectionProfiles, then srtp_mki
        fields["use_srtp"] = r.vector(2, "SRTPProtectionProfiles").u16s()
    elif ext_type == EXT_ALPN:                 # RFC 7301 §3.1: ProtocolNameList
        names = r.vector(2, "protocol_name_list")
        alpn = []
        while names.left():
            name = names.vector(1, "protocol name")
            alpn.append(name.data[name.pos:name.end].decode("ascii", "backslashreplace"))
        fields["alpn"] = tuple(alpn)
    elif ext_type == EXT_SUPPORTED_VERSIONS:   # RFC 8446 §4.2.1: a list (client) or the selected one (server)
        fields["versions"] = r.vector(1, "versions").u16s() if client else (r.uint(2, "selected_version"),)
    elif ext_type == EXT_KEY_SHARE:            # RFC 8446 §4.2.8
        if client:
            shares, groups = r.vector(2, "client_shares"), []
            while shares.left():
                groups.append(shares.uint(2, "group"))
                shares.vector(2, "key_exchange")
            fields["key_share_groups"] = tuple(groups)
        else:                                  # ServerHello: a KeyShareEntry; HelloRetryRequest: the group
            fields["key_share_groups"] = (r.uint(2, "selected_group"),)


def _certificates(meta: PacketMeta, protocol: str, body: bytes,
                  notes: list[Anomaly]) -> tuple[X509Summary, ...]:
    """RFC 5246 §7.4.2: certificate_list<0..2^24-1> of ASN.1Cert<1..2^24-1> (sender's first)."""
    # Imported on the first certificate only: the cryptography package costs ~10 MB of memory, which
    # SIP/RTP-only captures should not pay.
    from dissectors.x509_cert import CertificateError, describe_certificate
    out: list[X509Summary] = []
    try:
        chain = _Reader(body).vector(3, "certificate_list")
        count = 0
        while chain.left():
            cert = chain.vector(3, "ASN.1Cert")
            count += 1
            if count <= MAX_CERTIFICATES:
                out.append(describe_certificate(cert.data[cert.pos:cert.end]))
        if count > MAX_CERTIFICATES:
            notes.append(Anomaly(meta.ts, meta.frame, protocol, "tls.certificates_cut",
                                 f"{count} certificates, {MAX_CERTIFICATES} described", meta.src, meta.dst))
    except (ValueError, *CertificateError) as exc:
        notes.append(Anomaly(meta.ts, meta.frame, protocol, "tls.malformed_certificate", str(exc)[:200], meta.src,
                             meta.dst))
    return tuple(out)


def certificate_hash(cert: X509Summary, function: str) -> str | None:
    """The RFC 8122 fingerprint of a described certificate for an SDP hash function name, when kept."""
    return {"sha-1": cert.sha1, "sha-256": cert.sha256}.get(function.lower())
