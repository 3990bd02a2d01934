"""TLS and DTLS quality (UM-05): old versions, weak suites, groups and keys, bad certificates, no mutual auth."""
from __future__ import annotations

from dataclasses import dataclass, field

from dissectors.tls_names import CIPHER_SUITES, GROUPS
from voipwatch.config_schema import opt
from voipwatch.detect import AlertSpec, Detector, register
from voipwatch.records import TlsHandshake, TlsHello
from voipwatch.windows import BoundedMap

TRUST = "Part I: Trusted path and channel protections"
VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3",
            0xFEFF: "DTLS 1.0", 0xFEFD: "DTLS 1.2", 0xFEFC: "DTLS 1.3"}
# DTLS 1.0 is TLS 1.1's deltas (RFC 4347 §4), DTLS 1.2 TLS 1.2's (RFC 6347 §1), DTLS 1.3 TLS 1.3's (RFC 9147 §1).
TLS_EQUIVALENT = {0xFEFF: 0x0302, 0xFEFD: 0x0303, 0xFEFC: 0x0304}
# RFC 4492 §5.1.1 curves under 256 bits (sect163..sect239, secp160..secp224; deprecated by RFC 8422 §5.1.1).
WEAK_GROUPS = frozenset((*range(1, 9), *range(15, 22)))
CNSA_GROUPS = frozenset((0x0018, 0x0101, 0x0102, 0x0103, 0x0104))     # secp384r1, ffdhe3072..ffdhe8192
# CNSSP 15 (CNSA 1.0) as RFC 9151 §3-4 profiles TLS: AES-256-GCM with SHA-384.
CNSA_SUITES = frozenset((0x1302, 0xC02C, 0xC030, 0x009F))
BROKEN_CIPHER_PARTS = ("_NULL_", "WITH_NULL", "EXPORT", "_anon_", "RC4", "_DES_", "DES40", "3DES", "_MD5")
STATIC_KEY_EXCHANGE = ("TLS_RSA_", "TLS_DH_", "TLS_ECDH_", "TLS_PSK_", "TLS_RSA_PSK_", "TLS_KRB5_", "SSL_")


def version_name(code: int) -> str:
    return VERSIONS.get(code, f"0x{code:04x}")


def chosen_version(hello: TlsHello) -> int:
    """RFC 8446 §4.2.1: supported_versions in a ServerHello overrides legacy_version."""
    return hello.versions[0] if hello.versions else hello.legacy_version


def suite_problems(code: int) -> tuple[str | None, str | None]:
    """(what makes a suite broken, what makes it weak) from its IANA name; None when it is neither."""
    name = CIPHER_SUITES.get(code, "")
    broken = next((part.strip("_") for part in BROKEN_CIPHER_PARTS if part in name), None)
    weak = []
    if "_CBC_" in name:
        weak.append("CBC mode")
    if name.startswith(STATIC_KEY_EXCHANGE):
        weak.append("no (EC)DHE forward secrecy")
    return broken, (", ".join(weak) or None)


@dataclass(frozen=True)
class Config:
    cnsa: bool = opt(False, "CNSA suite (CNSSP 15): also report (low) TLS that is not 1.3/1.2 with AES-256-GCM, "
                            "P-384 or ffdhe3072+, RSA >= 3072 or P-384 keys and SHA-384 signatures.")
    min_rsa_bits: int = opt(2048, "Server RSA/DSA/DH keys shorter than this are weak (CNSA: 3072).")
    min_ec_bits: int = opt(256, "Server EC keys and key-exchange groups smaller than this are weak.")
    require_mutual_auth: bool = opt(True, "Report SIP-TLS servers (mutual_auth_ports, ESC/SBC roles) that do not "
                                          "authenticate their clients by certificate (off where SIP digest over "
                                          "TLS is the accepted client authentication).")
    mutual_auth_ports: tuple[int, ...] = opt((5061,), "Server ports whose TLS is SIP-TLS (RFC 3261 §26.2.2) for the "
                                                      "mutual-authentication check.")
    summary_window_s: float = opt(60.0, "Capture seconds over which handshakes with the same issue at the same "
                                        "server become one alert (with their count).")
    max_connections: int = opt(20000, "Cap on handshakes being followed at once (least recent dropped).")
    max_pending: int = opt(5000, "Cap on alerts being gathered at once; the oldest is reported early when hit.")


@dataclass(slots=True)
class _Conn:
    """One TLS connection's handshake so far (client and server by who sent the ClientHello)."""
    client: str
    cport: int
    server: str
    sport: int
    vlan: tuple[int, ...]
    protocol: str
    sni: str | None = None
    version: int | None = None
    suite: int | None = None
    cert_request: bool = False
    judged_mutual: bool = False


@dataclass(slots=True)
class _Group:
    due: float
    first_ts: float
    last_ts: float
    conn: _Conn
    detail: dict
    handshakes: int = 0
    clients: set = field(default_factory=set)


@register
class TlsQuality(Detector):
    """TLS and DTLS quality on SIP and management channels (NSA guide Part I: Trusted path and channel
    protections; Part III: ESC and web management over TLS), check UM-05.

    What: the version a ServerHello chose below TLS 1.2 (DTLS 1.2); a chosen suite with NULL, EXPORT,
    anon, RC4, DES/3DES or MD5 (broken) or with CBC mode or static RSA/DH key exchange (weak); an ECDHE
    group under 256 bits or a DHE prime or server key under 2048 bits; a server certificate (TLS <= 1.2,
    where it is in the clear) signed with SHA-1/MD5, expired or not yet valid at capture time, or
    self-signed (TLS only: DTLS-SRTP certificates are self-signed by design, RFC 5763 §5, and are
    authenticated by the SDP fingerprint); a SIP-TLS server (port 5061, or an ESC/SBC) that sends no
    CertificateRequest, or whose client answers with an empty Certificate. With `cnsa = true`, what
    falls short of the CNSA suite is reported too, low. One alert per (server address:port, issue) per
    summary window, with the number of handshakes and clients.
    Known false positives: TLS 1.3 encrypts certificates and CertificateRequest, so those servers are
    reported `certificate_unverifiable` (info), never passed; resumed sessions show no certificate and
    are not judged; shops that authenticate SIP clients by digest over TLS turn `require_mutual_auth` off.
    """
    name = "tls_quality"
    consumes = (TlsHandshake,)
    alerts = {
        "old_version": AlertSpec("UM-05", "medium", TRUST, "a TLS/DTLS server chose a version below TLS 1.2"),
        "broken_cipher": AlertSpec("UM-05", "high", TRUST, "a server chose a NULL/EXPORT/anon/RC4/DES/3DES/MD5 suite"),
        "weak_cipher": AlertSpec("UM-05", "medium", TRUST, "a server chose a CBC suite or one without (EC)DHE"),
        "weak_key": AlertSpec("UM-05", "medium", TRUST, "a server key or key-exchange group is too small"),
        "weak_signature": AlertSpec("UM-05", "medium", TRUST, "a server certificate is signed with SHA-1 or MD5"),
        "expired_certificate": AlertSpec("UM-05", "medium", TRUST, "a server certificate is expired or not yet valid"),
        "self_signed_certificate": AlertSpec("UM-05", "medium", TRUST, "a TLS server shows a self-signed certificate"),
        "no_mutual_auth": AlertSpec("UM-05", "medium", TRUST, "a SIP-TLS server does not authenticate clients by certificate"),
        "certificate_unverifiable": AlertSpec("UM-05", "info", TRUST, "TLS 1.3 hides a SIP-TLS server's certificate and client authentication"),
        "not_cnsa": AlertSpec("UM-05", "low", TRUST, "TLS short of the CNSA suite (cnsa = true)"),
        "dtls_fingerprint_mismatch": AlertSpec("UM-05", "high", TRUST, "a DTLS-SRTP certificate is not the one "
                                               "its call's SDP a=fingerprint announced"),
    }
    Config = Config

    def __init__(self, config: Config, site) -> None:
        super().__init__(config, site)
        self._conns: BoundedMap[_Conn] = BoundedMap(config.max_connections, 3600.0)
        self._pending: dict[tuple[str, str], _Group] = {}

    # -- records -------------------------------------------------------------------------------
    def on_tls_handshake(self, h: TlsHandshake):
        yield from self._due(h.pkt.ts)
        pkt = h.pkt
        conn = self._conn(h)
        hello = h.hello
        if hello is not None and hello.role == "client":
            conn.sni = hello.sni
        if hello is not None and hello.role == "server":
            conn.version, conn.suite = chosen_version(hello), hello.cipher_suites[0]
            yield from self._judge_hello(pkt.ts, conn, hello)
        from_server = pkt.src == conn.server and pkt.sport == conn.sport
        if h.sdp_fingerprint == "mismatch":
            yield from self._note(pkt.ts, conn, "dtls_fingerprint_mismatch",
                                  {"call_id": h.call_id, "sender": f"{pkt.src}:{pkt.sport}",
                                   "cert_sha256": h.certificates[0].sha256, "subject": h.certificates[0].subject})
        if h.certificate_request:
            conn.cert_request = True
        if from_server and (h.ske_curve is not None or h.ske_dh_bits is not None):
            yield from self._key_exchange(pkt.ts, conn, h)
        if h.certificates is not None and from_server and h.certificates:
            yield from self._judge_certificate(pkt.ts, conn, h.certificates[0])
        if self._mutual_auth_applies(conn) and not conn.judged_mutual:
            if from_server and "server_hello_done" in h.messages and not conn.cert_request:
                conn.judged_mutual = True
                yield from self._note(pkt.ts, conn, "no_mutual_auth", {"reason": "no CertificateRequest"})
            elif not from_server and h.certificates is not None and conn.cert_request:
                conn.judged_mutual = True
                if not h.certificates:
                    yield from self._note(pkt.ts, conn, "no_mutual_auth",
                                          {"reason": "CertificateRequest answered with an empty Certificate"})

    def finish(self):
        yield from self._due(float("inf"))

    # -- judgements ----------------------------------------------------------------------------
    def _judge_hello(self, ts: float, conn: _Conn, hello: TlsHello):
        version = TLS_EQUIVALENT.get(conn.version, conn.version)
        if version < 0x0303:
            yield from self._note(ts, conn, "old_version", {"version": version_name(conn.version)},
                                  severity="high" if version <= 0x0300 else None)
        broken, weak = suite_problems(conn.suite)
        suite = CIPHER_SUITES.get(conn.suite, f"0x{conn.suite:04x}")
        if broken:
            yield from self._note(ts, conn, "broken_cipher", {"cipher_suite": suite, "because": broken})
        elif weak:
            yield from self._note(ts, conn, "weak_cipher", {"cipher_suite": suite, "because": weak})
        for group in hello.key_share_groups:
            if group in WEAK_GROUPS:
                yield from self._note(ts, conn, "weak_key", {"group": GROUPS.get(group, f"0x{group:04x}")})
        if self.config.cnsa and version >= 0x0303 and conn.suite not in CNSA_SUITES:
            yield from self._note(ts, conn, "not_cnsa", {"cipher_suite": suite, "needs": "AES-256-GCM with SHA-384"})
        if self.config.cnsa and hello.key_share_groups and not set(hello.key_share_groups) & CNSA_GROUPS:
            yield from self._note(ts, conn, "not_cnsa", {"group": GROUPS.get(hello.key_share_groups[0]),
                                                          "needs": "secp384r1 or ffdhe3072+"})
        if version >= 0x0304 and self._mutual_auth_applies(conn):
            yield from self._note(ts, conn, "certificate_unverifiable", {"version": version_name(conn.version)})

    def _key_exchange(self, ts: float, conn: _Conn, h: TlsHandshake):
        name = CIPHER_SUITES.get(conn.suite or -1, "")
        if name.startswith("TLS_ECDHE_") and h.ske_curve is not None:
            if h.ske_curve in WEAK_GROUPS:
                yield from self._note(ts, conn, "weak_key", {"group": GROUPS.get(h.ske_curve, f"0x{h.ske_curve:04x}")})
            if self.config.cnsa and h.ske_curve not in CNSA_GROUPS:
                yield from self._note(ts, conn, "not_cnsa", {"group": GROUPS.get(h.ske_curve, f"0x{h.ske_curve:04x}"),
                                                              "needs": "secp384r1"})
        elif name.startswith("TLS_DHE_") and h.ske_dh_bits is not None:
            need = 3072 if self.config.cnsa else self.config.min_rsa_bits
            if h.ske_dh_bits < need:
                key = "weak_key" if h.ske_dh_bits < self.config.min_rsa_bits else "not_cnsa"
                yield from self._note(ts, conn, key, {"dh_prime_bits": h.ske_dh_bits, "needs": need})

    def _judge_certificate(self, ts: float, conn: _Conn, cert):
        evidence = {"subject": cert.subject, "issuer": cert.issuer, "cert_sha256": cert.sha256}
        bits = cert.key_bits or 0
        small = (cert.key_alg == "ec" and bits < self.config.min_ec_bits
                 or cert.key_alg in ("rsa", "dsa") and bits < self.config.min_rsa_bits)
        if small:
            yield from self._note(ts, conn, "weak_key", {**evidence, "public_key": f"{cert.key_alg} {bits} bits"})
        elif self.config.cnsa and (cert.key_alg == "rsa" and bits < 3072 or cert.key_alg == "ec" and cert.curve != "secp384r1"):
            yield from self._note(ts, conn, "not_cnsa", {**evidence, "public_key": f"{cert.key_alg} {bits} bits",
                                                          "needs": "RSA >= 3072 or P-384"})
        sig = (cert.signature_alg or "").lower()
        if "sha1" in sig or "md5" in sig or "md2" in sig:
            yield from self._note(ts, conn, "weak_signature", {**evidence, "signature": cert.signature_alg})
        elif self.config.cnsa and "sha384" not in sig and "sha512" not in sig:
            yield from self._note(ts, conn, "not_cnsa", {**evidence, "signature": cert.signature_alg,
                                                          "needs": "SHA-384"})
        if cert.not_after is not None and ts > cert.not_after or cert.not_before is not None and ts < cert.not_before:
            yield from self._note(ts, conn, "expired_certificate",
                                  {**evidence, "not_before": cert.not_before, "not_after": cert.not_after})
        if cert.self_signed and conn.protocol == "tls":
            yield from self._note(ts, conn, "self_signed_certificate", evidence)

    def _mutual_auth_applies(self, conn: _Conn) -> bool:
        return self.config.require_mutual_auth and conn.protocol == "tls" and (
            conn.sport in self.config.mutual_auth_ports or self.site.has_role(conn.server, "esc")
            or self.site.has_role(conn.server, "sbc"))

    # -- connections and alerts ----------------------------------------------------------------
    def _conn(self, h: TlsHandshake) -> _Conn:
        p = h.pkt
        here, back = (p.vlan, p.src, p.sport, p.dst, p.dport), (p.vlan, p.dst, p.dport, p.src, p.sport)
        for key in (here, back):
            conn = self._conns.get(key)
            if conn is not None:
                self._conns.set(key, conn, p.ts)
                return conn
        # The ClientHello's sender is the client, a ServerHello's the server; without a hello (a capture
        # begun mid-handshake) the side on the higher (ephemeral) port is taken as the client.
        client_side = h.hello.role == "client" if h.hello is not None else p.sport > p.dport
        key = here if client_side else back
        conn = _Conn(key[1], key[2], key[3], key[4], p.vlan, h.protocol)
        self._conns.set(key, conn, p.ts)
        return conn

    def _note(self, ts: float, conn: _Conn, key: str, detail: dict, severity: str | None = None):
        """One more handshake with this issue at this server: gathered, reported when its window ends."""
        ident = (f"{conn.server}:{conn.sport}", key, str(sorted(detail.items())) if key == "not_cnsa" else "")
        group = self._pending.get(ident)
        if group is None:
            if len(self._pending) >= self.config.max_pending:
                oldest = min(self._pending, key=lambda k: self._pending[k].due)
                yield self._report(oldest, self._pending.pop(oldest))
            detail = {**detail, "severity": severity} if severity else detail
            group = self._pending[ident] = _Group(ts + self.config.summary_window_s, ts, ts, conn, detail)
        group.last_ts = ts
        group.handshakes += 1
        group.clients.add(conn.client)

    def _due(self, now: float):
        for ident in [k for k, g in self._pending.items() if g.due <= now]:
            yield self._report(ident, self._pending.pop(ident))

    def _report(self, ident: tuple, g: _Group):
        server, key = ident[0], ident[1]
        detail = dict(g.detail)
        severity = detail.pop("severity", None)
        c = g.conn
        what = ", ".join(f"{k} {v}" for k, v in detail.items() if k not in ("cert_sha256", "issuer"))
        advice = {
            "old_version": "disable TLS 1.1 and older on this server (TLS 1.2 minimum, 1.3 preferred)",
            "broken_cipher": "remove NULL, EXPORT, anon, RC4, DES, 3DES and MD5 suites from the server's list",
            "weak_cipher": "prefer ECDHE with AES-GCM (TLS 1.2) or TLS 1.3 suites; drop CBC and static-RSA suites",
            "weak_key": "replace the key or group with RSA >= 2048 / P-256 or larger (CNSA: RSA 3072, P-384)",
            "weak_signature": "reissue the certificate with a SHA-256 or stronger signature",
            "expired_certificate": "renew the certificate; clients that accept it accept any certificate",
            "self_signed_certificate": "issue the server a certificate from the site's CA and make clients verify it",
            "no_mutual_auth": "request and verify client certificates on SIP-TLS (mutual TLS), or set "
                              "require_mutual_auth = false where digest over TLS is the accepted client authentication",
            "certificate_unverifiable": "verify the certificate and client authentication from the server's configuration",
            "dtls_fingerprint_mismatch": "the media path presents another certificate than the call's signalling "
                                         "announced (a man in the middle, or an SBC that re-terminates DTLS without "
                                         "rewriting SDP): find who terminates DTLS on this address",
            "not_cnsa": "configure TLS 1.3 (or 1.2) with AES-256-GCM/SHA-384, P-384 and RSA 3072/P-384 certificates",
        }[key]
        msg = (f"{c.protocol.upper()} server {server}: {self.alerts[key].title} ({what}) in {g.handshakes} "
               f"handshake(s) from {len(g.clients)} client(s); {advice}")
        evidence = {**detail, "server": server, "handshakes": g.handshakes, "clients": sorted(g.clients)[:20],
                    "client_count": len(g.clients), "first_ts": g.first_ts, "last_ts": g.last_ts,
                    "protocol": c.protocol, "sni": c.sni}
        return self.alert(key, ts=g.last_ts, msg=msg, identifier=f"{server}|{key}" + (f"|{ident[2]}" if ident[2] else ""),
                          src=c.client, sport=c.cport, dst=c.server, dport=c.sport, vlan=c.vlan, evidence=evidence,
                          severity=severity)
