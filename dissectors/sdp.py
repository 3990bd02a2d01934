"""Session Description Protocol bodies (RFC 4566, RFC 8866): sessions, media sections, keying attributes."""
from __future__ import annotations

import base64
import binascii
import hashlib

from voipwatch.records import SdpCrypto, SdpMedia, SdpSession

# RFC 3551 §6 static payload types (pt -> encoding name, clock rate) fill in m= formats without rtpmap.
from dissectors.rtp import STATIC_PAYLOAD_TYPES  # noqa: E402

# Resource limits: exceeding one yields an anomaly and the excess is ignored.
MAX_SDP_LINES = 2048       # lines read per body (sdp.too_many_lines)
MAX_MEDIA = 64             # m= sections kept per body (sdp.too_many_media)
MAX_FORMATS = 128          # formats kept per m= line (sdp.too_many_formats)
MAX_CRYPTO = 16            # a=crypto lines kept per section (sdp.too_many_crypto)
MAX_SESSION_PARAMS = 16    # RFC 4568 session parameters kept per a=crypto line

_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")  # RFC 4566 §6 / RFC 3264 §5.1

# Every anomaly name parse_sdp gives (dissectors.sip reports them with layer "sdp").
ANOMALIES = {
    "sdp.non_utf8": "the body is not UTF-8 (RFC 4566 §5); shown with U+FFFD",
    "sdp.empty": "a body of nothing but white space",
    "sdp.bad_line": 'a line that is not a letter, "=" and a value (§5), or a body without any such line',
    "sdp.bad_version": "the body does not start with v=0 (§5.1)",
    "sdp.too_many_lines": f"more than {MAX_SDP_LINES} lines; the rest ignored",
    "sdp.bad_origin_line": "an o= line without its six fields (§5.2)",
    "sdp.bad_connection_line": "a c= line with fewer than three fields (§5.7)",
    "sdp.bad_media_line": "an m= line without media, port and proto, or with a bad port (§5.14)",
    "sdp.too_many_media": f"more than {MAX_MEDIA} m= sections; the rest ignored",
    "sdp.too_many_formats": f"more than {MAX_FORMATS} formats on one m= line; the rest ignored",
    "sdp.no_media": "a session without any m= line",
    "sdp.bad_rtpmap": "an a=rtpmap without payload type, encoding name or clock rate (§6)",
    "sdp.bad_rtcp_line": "an a=rtcp without a valid port (RFC 3605 §2.1)",
    "sdp.too_many_crypto": f"more than {MAX_CRYPTO} a=crypto lines in one section; the rest ignored",
    "sdp.bad_crypto_line": "an a=crypto without a numeric tag, a suite and key parameters (RFC 4568 §9.1)",
    "sdp.bad_crypto_key": "an a=crypto inline key that is not base64 (RFC 4568 §6.1)",
}


class _Section:
    """Mutable attributes of the session level or of one m= section while the body is read."""

    def __init__(self) -> None:
        self.connection: str | None = None
        self.direction: str | None = None
        self.crypto: list[SdpCrypto] = []
        self.fingerprint: str | None = None
        self.fingerprint_value: str | None = None
        self.zrtp_hash = False
        self.setup: str | None = None
        self.rtcp_port: int | None = None
        self.rtpmap: dict[int, tuple[str, int]] = {}


def _int(text: str, limit: int) -> int | None:
    """A decimal field (port, payload type, clock rate, tag) no larger than limit, else None."""
    if text.isascii() and text.isdigit() and len(text) <= 10 and int(text) <= limit:
        return int(text)
    return None


def _crypto(value: str, note) -> SdpCrypto | None:
    """RFC 4568 §9.1: a=crypto:<tag> <crypto-suite> <key-params> [<session-params>].

    The inline key (base64 of key||salt, §6.1) is reduced to its SHA-256 and length; FEC_KEY session
    parameters (§6.3.5) carry key-params too and keep their name only.
    """
    parts = value.split()
    if len(parts) < 3:
        note("sdp.bad_crypto_line")
        if len(parts) < 2:
            return None
    tag = _int(parts[0], 999999999)
    if tag is None:
        note("sdp.bad_crypto_line")
    key_sha256 = key_len = None
    key_param = parts[2].split(";")[0] if len(parts) > 2 else ""
    if key_param[:7].lower() == "inline:":
        b64 = key_param[7:].split("|")[0]
        try:
            raw = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
        except (binascii.Error, ValueError):
            note("sdp.bad_crypto_key")
        else:
            key_sha256, key_len = hashlib.sha256(raw).hexdigest(), len(raw)
    session_params = tuple(
        "FEC_KEY" if p.upper().startswith("FEC_KEY") else p for p in parts[3:3 + MAX_SESSION_PARAMS])
    return SdpCrypto(tag, parts[1], key_sha256, key_len, session_params)


def _attribute(section: _Section, value: str, in_media: bool, note) -> None:
    """One a= line (RFC 4566 §5.13) applied to the session or the current media section."""
    name, colon, arg = value.partition(":")
    name = name.strip().lower()
    arg = arg.strip()
    if name in _DIRECTIONS and not colon:
        section.direction = name
    elif name == "rtpmap" and in_media:
        # RFC 4566 §6: a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]
        pt_text, _, encoding = arg.partition(" ")
        enc = encoding.strip().split("/")
        pt = _int(pt_text, 127)
        clock = _int(enc[1], 2**32 - 1) if len(enc) > 1 else None
        if pt is None or clock is None or not enc[0]:
            note("sdp.bad_rtpmap")
        else:
            section.rtpmap.setdefault(pt, (enc[0], clock))
    elif name == "crypto":
        if len(section.crypto) >= MAX_CRYPTO:
            note("sdp.too_many_crypto")
            return
        crypto = _crypto(arg, note)
        if crypto is not None:
            section.crypto.append(crypto)
    elif name == "fingerprint":
        # RFC 8122 §5: a=fingerprint:<hash-func> <fingerprint>; hash-func names are case-insensitive.
        func = arg.split()
        if section.fingerprint is None and func:
            section.fingerprint = func[0].lower()
            # the value: uppercase hex octets joined by colons (§5), kept as bare lower-case hex
            value = func[1].replace(":", "").lower() if len(func) > 1 else ""
            if value and len(value) <= 128 and all(c in "0123456789abcdef" for c in value):
                section.fingerprint_value = value
    elif name == "zrtp-hash":
        section.zrtp_hash = True
    elif name == "setup":
        section.setup = arg.lower() or None
    elif name == "rtcp" and in_media:
        # RFC 3605 §2.1: a=rtcp:<port> [<nettype> <addrtype> <connection-address>]
        port = _int(arg.split()[0], 65535) if arg else None
        if port is None:
            note("sdp.bad_rtcp_line")
        section.rtcp_port = port


def _rtpmap(formats: tuple[str, ...], proto: str, given: dict[int, tuple[str, int]]) -> tuple:
    """(pt, encoding, clock) per RTP format: a=rtpmap first, else the RFC 3551 static assignment."""
    if "RTP/" not in proto.upper():
        return tuple((pt, enc, clock) for pt, (enc, clock) in given.items())
    out = []
    listed = set()
    for fmt in formats:
        pt = _int(fmt, 127)
        if pt is None or pt in listed:
            continue
        listed.add(pt)
        entry = given.get(pt) or STATIC_PAYLOAD_TYPES.get(pt)
        if entry is not None:
            out.append((pt, *entry))
    out.extend((pt, enc, clock) for pt, (enc, clock) in given.items() if pt not in listed)
    return tuple(out)


def parse_sdp(body: bytes | str) -> tuple[SdpSession | None, list[str]]:
    """Describe an SDP body; returns the session (None when no SDP line is found) and anomaly names.

    Each anomaly name appears once, in the order first seen.
    """
    names: list[str] = []

    def note(name: str) -> None:
        if name not in names:
            names.append(name)

    if isinstance(body, (bytes, bytearray)):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            note("sdp.non_utf8")
            text = body.decode("utf-8", "replace")
    else:
        text = body
    lines = text.split("\n", MAX_SDP_LINES)
    if len(lines) > MAX_SDP_LINES:
        note("sdp.too_many_lines")
        del lines[MAX_SDP_LINES:]
    session = _Section()
    origin_user = origin_addr = None
    media: list[tuple[str, int, str, tuple[str, ...], _Section]] = []
    current: _Section | None = session
    seen = 0
    for raw in lines:
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        # RFC 4566 §5: <type>=<value>, where <type> is exactly one case-significant letter.
        if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z" or "A" <= line[0] <= "Z"):
            note("sdp.bad_line")
            continue
        kind, value = line[0], line[2:]
        if seen == 0 and (kind != "v" or value.strip() != "0"):
            note("sdp.bad_version")  # §5.1: the body starts with v=0
        seen += 1
        if kind == "o":
            # §5.2: o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>
            fields = value.split()
            if len(fields) != 6:
                note("sdp.bad_origin_line")
            if origin_user is None and fields:
                origin_user = fields[0]
                origin_addr = fields[5] if len(fields) >= 6 else None
        elif kind == "c":
            # §5.7: c=<nettype> <addrtype> <connection-address>[/<ttl>][/<number of addresses>]
            fields = value.split()
            if len(fields) < 3:
                note("sdp.bad_connection_line")
            elif current is not None and current.connection is None:
                current.connection = fields[2].split("/")[0]
        elif kind == "m":
            # §5.14: m=<media> <port>[/<number of ports>] <proto> <fmt> ...
            fields = value.split()
            port = _int(fields[1].split("/")[0], 65535) if len(fields) >= 2 else None
            current = None
            if len(fields) < 3 or port is None:
                note("sdp.bad_media_line")
            elif len(media) >= MAX_MEDIA:
                note("sdp.too_many_media")
            else:
                if len(fields) > 3 + MAX_FORMATS:
                    note("sdp.too_many_formats")
                current = _Section()
                media.append((fields[0], port, fields[2], tuple(fields[3:3 + MAX_FORMATS]), current))
        elif kind == "a" and current is not None:
            _attribute(current, value, current is not session, note)
    if seen == 0:
        note("sdp.empty" if not text.strip() else "sdp.bad_line")
        return None, names
    if not media:
        note("sdp.no_media")
    # RFC 4145 §4: a session-level a=setup applies to every media section that does not set its own
    # (SdpSession has no setup field, so it is carried down); other session-level values stay there.
    return SdpSession(
        origin_user=origin_user,
        origin_addr=origin_addr,
        connection=session.connection,
        media=tuple(
            SdpMedia(kind=kind, port=port, proto=proto, formats=formats,
                     rtpmap=_rtpmap(formats, proto, sec.rtpmap), connection=sec.connection,
                     direction=sec.direction, crypto=tuple(sec.crypto), fingerprint=sec.fingerprint,
                     zrtp_hash=sec.zrtp_hash, setup=sec.setup or session.setup, rtcp_port=sec.rtcp_port,
                     fingerprint_value=sec.fingerprint_value)
            for kind, port, proto, formats, sec in media),
        fingerprint=session.fingerprint,
        fingerprint_value=session.fingerprint_value,
        zrtp_hash=session.zrtp_hash,
        direction=session.direction,
        crypto=tuple(session.crypto),
    ), names


# -- media protection ------------------------------------------------------------------------------
# What an m= line's profile and keying attributes say about how its media is protected (a
# session-level a=crypto, a=fingerprint or a=zrtp-hash applies to every line). One home for this
# fact: the calls table (voipwatch.sessions), the unencrypted_media detector and `voipwatch call`
# all judge protection through these functions.


def is_secure_profile(proto: str) -> bool:
    """RTP/SAVP, RTP/SAVPF and their UDP/TLS/ forms: the SRTP profiles (RFC 3711 §12, RFC 5124)."""
    return "SAVP" in proto.upper()


def active_rtp_lines(sdp: SdpSession) -> list[SdpMedia]:
    """The m= lines that carry RTP: an RTP profile and a port other than 0 (RFC 3264 §6 rejects a line
    with port 0)."""
    return [m for m in sdp.media if m.port != 0 and "RTP" in m.proto.upper()]


def line_protection(sdp: SdpSession, media: SdpMedia) -> str:
    """How one m= line says its media is keyed, the first that applies:

    zrtp   a=zrtp-hash: ZRTP keys SRTP on the media path (RFC 6189 §8), over the plain RTP/AVP profile;
    dtls   UDP/TLS/RTP/SAVP(F) with a=fingerprint (RFC 5763 §5, RFC 5764 §8);
    sdes   a=crypto (RFC 4568);
    dtls   a=fingerprint on another profile (RTP/SAVPF as early WebRTC offered DTLS-SRTP);
    srtp   a secure profile whose key exchange SDP does not show (e.g. MIKEY, RFC 4567);
    clear  a plain profile with none of these attributes.
    A plain profile (RTP/AVP, RTP/AVPF) with a=crypto or a=fingerprint is "best-effort SRTP": outside
    RFC 4568 and RFC 5763, which key only the secure profiles, yet used by endpoints that encrypt when
    both ends can. It is named by its keying here; session_protection counts it as unprotected.
    """
    if media.zrtp_hash or sdp.zrtp_hash:
        return "zrtp"
    fingerprint = media.fingerprint or sdp.fingerprint
    if fingerprint and "TLS" in media.proto.upper() and is_secure_profile(media.proto):
        return "dtls"
    if media.crypto or sdp.crypto:
        return "sdes"
    if fingerprint:
        return "dtls"
    return "srtp" if is_secure_profile(media.proto) else "clear"


def session_protection(sdp: SdpSession | None) -> str:
    """none | sdes | dtls | zrtp | unknown for a whole SDP, over its active RTP lines: zrtp when any line
    is keyed by ZRTP; none when any line has a plain profile (RFC 4568 and RFC 5763 key only the secure
    ones); sdes or dtls when every line is keyed that way; else unknown (no SDP, no active RTP line, a
    secure line without a visible key exchange, or lines keyed in different ways)."""
    lines = active_rtp_lines(sdp) if sdp is not None else []
    kinds = {line_protection(sdp, m) for m in lines}
    if "zrtp" in kinds:
        return "zrtp"
    if any(not is_secure_profile(m.proto) for m in lines):
        return "none"
    if kinds == {"sdes"} or kinds == {"dtls"}:
        return kinds.pop()
    return "unknown"
