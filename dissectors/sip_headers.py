"""SIP header-field values (RFC 3261 §7.3, §19, §20, §25.1): compact names, lists, name-addr, URIs, auth."""
from __future__ import annotations

import hashlib
import re
from urllib.parse import unquote

from voipwatch.records import SipAuth

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~"
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")

# RFC 3261 §7.3.3 compact forms, plus those registered later in the IANA SIP header-field registry
# (RFC 3841 a/d/j, RFC 3892 b, RFC 4474 n, RFC 6665 o/u, RFC 3515 r, RFC 4028 x, RFC 8224 y).
COMPACT_FORMS: dict[str, str] = {
    "a": "accept-contact", "b": "referred-by", "c": "content-type", "d": "request-disposition",
    "e": "content-encoding", "f": "from", "i": "call-id", "j": "reject-contact", "k": "supported",
    "l": "content-length", "m": "contact", "n": "identity-info", "o": "event", "r": "refer-to",
    "s": "subject", "t": "to", "u": "allow-events", "v": "via", "x": "session-expires", "y": "identity",
}

# RFC 7235 §2.1: token68 credentials (e.g. Basic) carry no auth-params and are never kept.
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_AUTH_PARAM = re.compile(r"([A-Za-z0-9\-.!%*_+`'~]+)\s*=\s*(.*)", re.S)


def canonical_name(name: str) -> str:
    """Header field names are case-insensitive (§7.3.1); compact forms map to the long name (§7.3.3)."""
    low = name.lower()
    return COMPACT_FORMS.get(low, low)


def is_token(text: str) -> bool:
    return _TOKEN.fullmatch(text) is not None


def _quoted_end(value: str, i: int) -> int:
    """Index just past the quoted-string that opens at value[i] (§25.1: a backslash quoted-pair escapes
    the next character), or -1 when it is left open."""
    n = len(value)
    i += 1
    while i < n:
        c = value[i]
        if c == "\\":
            i += 2
        elif c == '"':
            return i + 1
        else:
            i += 1
    return -1


def _split(value: str, sep: str, quotes: bool) -> list[str] | None:
    """Split on sep outside quoted-strings (§25.1, with backslash quoted-pairs) and outside <...>.

    Returns None when a quoted-string is left open, so the caller can retry ignoring quotes.
    """
    out: list[str] = []
    start = 0
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if ch == '"' and quotes:
            i = _quoted_end(value, i)
            if i < 0:
                return None
            continue
        if ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == sep and not in_angle:
            out.append(value[start:i])
            start = i + 1
        i += 1
    out.append(value[start:])
    return out


def split_list(value: str, sep: str = ",") -> list[str]:
    """Elements of a comma-separated header value (§7.3.1), e.g. several Via or Contact entries."""
    if sep not in value:
        parts = [value]
    elif '"' not in value and "<" not in value:
        parts = value.split(sep)
    else:
        parts = _split(value, sep, quotes=True) or _split(value, sep, quotes=False) or [value]
    return [p for p in (s.strip() for s in parts) if p]


def unquote_string(text: str) -> str:
    """The content of a quoted-string (§25.1), quoted-pairs resolved; other text is returned stripped."""
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def params(text: str) -> dict[str, str]:
    """generic-params (§25.1): ;name[=value] pairs, names lower-cased, first occurrence wins."""
    out: dict[str, str] = {}
    for item in split_list(text, ";"):
        name, _, val = item.partition("=")
        out.setdefault(name.strip().lower(), unquote_string(val))
    return out


def _find_unquoted(value: str, ch: str) -> int:
    """The first ch outside quoted-strings; with a quoted-string left open, the first ch anywhere."""
    if '"' not in value:
        return value.find(ch)
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if c == '"':
            i = _quoted_end(value, i)
            if i < 0:
                return value.find(ch)
            continue
        if c == ch:
            return i
        i += 1
    return -1


def name_addr(value: str) -> tuple[str, dict[str, str]]:
    """(URI, header params) of a name-addr or addr-spec value (From, To, Contact, ... §20.10, §20.20)."""
    value = value.strip()
    lt = _find_unquoted(value, "<")
    if lt >= 0:
        gt = value.find(">", lt + 1)
        if gt < 0:
            return redact_password(value[lt + 1:].strip()), {}
        return redact_password(value[lt + 1:gt].strip()), params(value[gt + 1:])
    # §20.10: without angle brackets, parameters after the addr-spec belong to the header field.
    uri, _, rest = value.partition(";")
    return redact_password(uri.strip()), params(rest)


def redact_password(uri: str) -> str:
    """§19.1.1: userinfo may carry "user:password" (NOT RECOMMENDED); the password is never kept."""
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips"):
        return uri
    userinfo, at, host = rest.partition("@")
    user, pw, _ = userinfo.partition(":")
    if not at or not pw:
        return uri
    return f"{scheme}:{user}:***@{host}"


def uri_user(uri: str | None) -> str | None:
    """User part of a sip:/sips: URI (§19.1.1) or the number of a tel: URI (RFC 3966 §3), unescaped."""
    if not uri:
        return None
    scheme, colon, rest = uri.partition(":")
    if not colon:
        return None
    scheme = scheme.strip().lower()
    if scheme in ("sip", "sips"):
        userinfo, at, _ = rest.partition("@")
        if not at:
            return None
        user = userinfo.partition(":")[0]
    elif scheme == "tel":
        user = rest.partition(";")[0]
    else:
        return None
    return _unescape(user.strip()) or None


def uri_host(uri: str | None) -> str | None:
    """Host of a sip:/sips: URI (§19.1.1: after the userinfo, before the port and parameters), lowercased,
    IPv6 references without brackets (§25.1); None for other schemes."""
    if not uri:
        return None
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips"):
        return None
    hostport = rest.rpartition("@")[2]
    for stop in (";", "?"):
        hostport = hostport.split(stop, 1)[0]
    if hostport.startswith("["):
        return hostport[1:].split("]", 1)[0].lower() or None
    return hostport.split(":", 1)[0].lower() or None


def _unescape(user: str) -> str:
    """§19.1.2: %HH escapes are resolved when they decode to printable UTF-8; otherwise kept as written."""
    if "%" not in user:
        return user
    try:
        plain = unquote(user, errors="strict")
    except UnicodeDecodeError:
        return user
    return plain if plain.isprintable() else user


def parse_auth(header: str, value: str, limit: int) -> list[SipAuth]:
    """Credentials or challenges (§20.7, §20.27, §20.28, §20.44; RFC 7616 §3.3-3.4).

    Several challenges may share one field; a list element "scheme param" starts a new one. The digest
    response is reduced to its SHA-256 and length; nonces, cnonces and token68 credentials are dropped.
    """
    found: list[tuple[str, dict[str, str]]] = []
    for item in split_list(value):
        pm = _AUTH_PARAM.fullmatch(item)
        if pm is None or not found:
            scheme, _, rest = item.partition(" ")
            if not is_token(scheme):
                continue
            if len(found) >= limit:
                break
            found.append((scheme, {}))
            pm = _AUTH_PARAM.fullmatch(rest.strip())
            if pm is None or _TOKEN68.fullmatch(rest.strip()):
                continue
        found[-1][1].setdefault(pm.group(1).lower(), unquote_string(pm.group(2)))
    out = []
    for scheme, p in found:
        response = p.get("response")
        digest = hashlib.sha256(response.encode()).hexdigest() if response is not None else None
        out.append(SipAuth(
            header=header, scheme=scheme, username=p.get("username"), realm=p.get("realm"),
            algorithm=p.get("algorithm"), qop=p.get("qop"), uri=p.get("uri"),
            response_sha256=digest, response_len=len(response.encode()) if response is not None else None,
            # RFC 7616 §3.3: stale=TRUE (case-insensitive) says the nonce expired, the credentials were valid.
            stale=p["stale"].strip().lower() == "true" if header.endswith("authenticate") and "stale" in p else None,
        ))
    return out


def multipart_part(body: bytes, content_type: str, want: str, depth: int, max_parts: int) -> bytes | None:
    """Content of the first body part of media type `want` in a multipart body (RFC 2046 §5.1).

    Nested multiparts are searched up to `depth` levels. Returns None when there is no such part.
    """
    boundary = params(content_type.partition(";")[2]).get("boundary")
    if not boundary or depth <= 0:
        return None
    # §5.1.1: a delimiter is CRLF "--" boundary, or "--" boundary at the very start of the body.
    pieces = re.split(rb"(?:^|\r?\n)--" + re.escape(boundary.encode("utf-8", "replace")), body)
    for piece in pieces[1:max_parts + 1]:
        if piece.startswith(b"--"):
            break
        line_end = piece.find(b"\n")
        if line_end < 0:
            continue
        part = piece[line_end + 1:]
        blank = re.search(rb"\r?\n\r?\n", b"\n" + part)
        if blank is None:
            continue
        head = part[:max(blank.start() - 1, 0)].decode("utf-8", "replace")
        content = part[blank.end() - 1:]
        part_type = "text/plain"  # §5.1: the default Content-Type of a body part
        for line in head.splitlines():
            name, colon, val = line.partition(":")
            if colon and name.strip().lower() == "content-type":
                part_type = val.strip()
        kind = part_type.partition(";")[0].strip().lower()
        if kind == want:
            return content
        if kind.startswith("multipart/"):
            inner = multipart_part(content, part_type, want, depth - 1, max_parts)
            if inner is not None:
                return inner
    return None
