"""HTTP/1.x over TCP (RFC 9112): request and status lines, the headers an audit needs, credentials
described but never kept (Basic: user name, password as SHA-256 + length; Digest: user name), form posts
with password fields (names only), and each message body's size and SHA-256 (bounded)."""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from dissectors.secrets import DEFAULT_PASSWORDS, fingerprint
from voipwatch.records import Anomaly, PacketMeta, at_packet, declare, r6, vlan_text

MAX_HEAD = 65536            # bytes of a header block (start line + fields) before it is cut (RFC 9112 §2.3 sets none)
MAX_HASHED = 64 << 20       # body bytes hashed at most; a longer body has no SHA-256 (counted anomaly)
MAX_KEPT = 65536            # first body bytes kept for content checks (provisioning files, form fields)
MAX_CHUNK_LINE = 1024       # a chunk-size line longer than this is not HTTP chunking
FIRST_OCTETS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")

# RFC 9110 §9 methods (+ WebDAV's common ones); a request line is method SP target SP HTTP-version (RFC 9112 §3).
_REQUEST = re.compile(rb"(GET|POST|HEAD|PUT|DELETE|OPTIONS|PATCH|CONNECT|TRACE|PROPFIND|MKCOL|COPY|MOVE|LOCK|"
                      rb"UNLOCK) ([!-~]{1,8192}) HTTP/1\.[01]\r?\n")
# RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ].
_STATUS = re.compile(rb"HTTP/1\.[01] ([1-5]\d\d)(?: [^\r\n]*)?\r?\n")
_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")
_PASSWORD_FIELD = re.compile(r"(?i)(pass|pwd|secret|pin$)")

ANOMALIES = {
    "http.header_too_long": f"an HTTP header block longer than {MAX_HEAD} bytes: cut there, the direction no "
                            "longer read as HTTP",
    "http.bad_start_line": "bytes where an HTTP message must begin hold no request or status line: the direction "
                           "is no longer read as HTTP",
    "http.bad_content_length": "a Content-Length that is not a decimal number, or differing values (RFC 9112 "
                               "§6.3): the direction is no longer read as HTTP",
    "http.bad_chunk": "a chunk-size line that is not hexadecimal (RFC 9112 §7.1): the direction is no longer read "
                      "as HTTP",
    "http.body_not_hashed": f"a message body longer than {MAX_HASHED >> 20} MiB: its size is counted, its SHA-256 "
                            "is not computed",
    "http.body_cut": "a body delimited by Content-Length or chunks cut off by the end of the connection or capture: "
                     "no record for it",
    "http.bad_basic_credentials": "an Authorization: Basic value that is not base64 of user:password (RFC 7617)",
}


@dataclass(frozen=True, slots=True)
class HttpMessage:
    """One HTTP/1.x request or response. Credentials are never kept: Basic's password as SHA-256 and
    length only; a form post's fields by name only."""
    pkt: PacketMeta
    is_request: bool
    method: str | None = None
    uri: str | None = None                  # values of password-like query parameters replaced by "***"
    version: str | None = None
    status: int | None = None
    host: str | None = None
    user_agent: str | None = None
    server: str | None = None
    content_type: str | None = None
    content_disposition_filename: str | None = None
    auth_scheme: str | None = None          # Authorization scheme (request) or WWW-Authenticate's (401)
    auth_user: str | None = None            # Basic's or Digest's user name
    auth_secret_sha256: str | None = None   # Basic's password, hashed
    auth_secret_len: int | None = None
    auth_secret_default: bool | None = None  # Basic's password is a common default (admin, 1234, ...)
    form_password_fields: tuple[str, ...] = ()   # names of password-like fields of a urlencoded form post
    body_len: int = 0
    body_sha256: str | None = None
    body_complete: bool = True
    body_head: bytes = b""                  # the first MAX_KEPT body bytes (content checks; never written out)


declare(HttpMessage, rank=60, timeline=at_packet, table="http", sort=lambda m: (m.pkt.ts, m.pkt.frame), columns=(
    ("ts", "Float64", lambda m: r6(m.pkt.ts)),
    ("frame", "Int64", lambda m: m.pkt.frame),
    ("src", "string", lambda m: m.pkt.src),
    ("sport", "Int64", lambda m: m.pkt.sport),
    ("dst", "string", lambda m: m.pkt.dst),
    ("dport", "Int64", lambda m: m.pkt.dport),
    ("vlan", "string", lambda m: vlan_text(m.pkt.vlan)),
    ("is_request", "boolean", lambda m: m.is_request),
    ("method", "string", lambda m: m.method),
    ("uri", "string", lambda m: m.uri),
    ("host", "string", lambda m: m.host),
    ("user_agent", "string", lambda m: m.user_agent),
    ("status", "Int64", lambda m: m.status),
    ("server", "string", lambda m: m.server),
    ("content_type", "string", lambda m: m.content_type),
    ("filename", "string", lambda m: m.content_disposition_filename),
    ("auth_scheme", "string", lambda m: m.auth_scheme),
    ("auth_user", "string", lambda m: m.auth_user),
    ("auth_secret_sha256", "string", lambda m: m.auth_secret_sha256),
    ("auth_secret_len", "Int64", lambda m: m.auth_secret_len),
    ("form_password_fields", "string", lambda m: ",".join(m.form_password_fields) or None),
    ("body_len", "Int64", lambda m: m.body_len),
    ("body_sha256", "string", lambda m: m.body_sha256),
    ("body_complete", "boolean", lambda m: m.body_complete),
))


def looks_like_http(payload: bytes) -> bool:
    """A TCP direction's first data segment that begins an HTTP/1.x request or response."""
    return _REQUEST.match(payload) is not None or _STATUS.match(payload) is not None


@dataclass(frozen=True, slots=True)
class HttpUnit:
    """What the framer hands the parser: a header block and its body's digest (the body itself is not kept)."""
    head: bytes
    body_len: int
    body_sha256: str | None
    body_head: bytes
    complete: bool


class HttpFramer:
    """One direction's HTTP/1.x messages (RFC 9112 §6): a header block, then a body delimited by
    Transfer-Encoding: chunked (§7.1) or Content-Length (§6.2), none for requests without either and for
    1xx/204/304 responses (§6.3). A response delimited by the connection's close is reported at its
    header block, its body not measured (the end of a direction yields no message). Body bytes are consumed as they arrive and hashed, never buffered beyond MAX_KEPT.
    Not handled: a response to HEAD that carries a Content-Length (the direction does not know the request)."""
    __slots__ = ("synced", "abandoned", "head", "remaining", "chunked", "chunk_state", "until_close", "sha",
                 "body_len", "kept")

    def __init__(self) -> None:
        self.synced = False
        self.abandoned = False
        self.head: bytes | None = None      # the header block of the message whose body is being read
        self._reset_body()

    def _reset_body(self) -> None:
        self.remaining = 0                  # Content-Length bytes (or the current chunk's) still to read
        self.chunked = False
        self.chunk_state = "size"           # "size" | "data" | "crlf" | "trailer"
        self.until_close = False
        self.sha = hashlib.sha256()
        self.body_len = 0
        self.kept = bytearray()

    def frame(self, buf: bytes, meta: PacketMeta) -> tuple[list, int, list[Anomaly]]:
        units: list = []
        notes: list[Anomaly] = []
        pos, n = 0, len(buf)
        while pos < n and not self.abandoned:
            if self.head is None and not self.until_close:
                if buf[pos:pos + 2] == b"\r\n":           # RFC 9112 §2.2: an empty line before a message is ignored
                    pos += 2
                    continue
                end = _END_OF_HEAD.search(buf, pos, pos + MAX_HEAD)
                start_ok = _REQUEST.match(buf, pos) or _STATUS.match(buf, pos)
                if not start_ok and (b"\n" in buf[pos:pos + 8200] or n - pos > 8200):
                    notes.append(self._give_up(meta, "http.bad_start_line", f"{buf[pos:pos + 24]!r}"))
                    return units, n, notes
                if end is None:
                    if n - pos >= MAX_HEAD:
                        notes.append(self._give_up(meta, "http.header_too_long", f"{n - pos} bytes"))
                        return units, n, notes
                    break
                head = bytes(buf[pos:end.end()])
                pos = end.end()
                self.synced = True
                problem = self._start_body(head)
                if problem:
                    notes.append(self._give_up(meta, *problem))
                    return units, n, notes
                if self.until_close:
                    # Its end is the connection's, which yields no message (dissectors.tcp): reported now,
                    # its body not measured.
                    units.append(self._unit(False))
                    self.until_close = True
                elif not self.chunked and self.remaining == 0:
                    units.append(self._unit(True))
                continue
            after = self._body(buf, pos, meta, units, notes)
            if after == pos:                 # an unfinished chunk-size line: wait for more bytes
                break
            pos = after
        return units, pos if not self.abandoned else n, notes

    def _start_body(self, head: bytes) -> tuple[str, str] | None:
        self.head = head
        self._reset_body()
        fields = _fields(head)
        status = _STATUS.match(head)
        code = int(status.group(1)) if status else None
        if code is not None and (code < 200 or code in (204, 304)):
            return None
        if "chunked" in fields.get("transfer-encoding", "").lower():
            self.chunked = True
            return None
        lengths = {v.strip() for v in fields.get("content-length", "").split(",") if v.strip()}
        if lengths:
            if len(lengths) != 1 or not next(iter(lengths)).isdigit():
                return "http.bad_content_length", f"Content-Length {sorted(lengths)!r}"
            self.remaining = int(next(iter(lengths)))
        elif code is not None:
            self.until_close = True          # RFC 9112 §6.3 rule 8: the body ends when the connection closes
        return None

    def _take(self, data: bytes, meta: PacketMeta, notes: list[Anomaly]) -> None:
        if self.body_len < MAX_HASHED <= self.body_len + len(data):
            notes.append(Anomaly(meta.ts, meta.frame, "http", "http.body_not_hashed",
                                 f"body longer than {MAX_HASHED} bytes", meta.src, meta.dst))
        if self.body_len + len(data) <= MAX_HASHED:
            self.sha.update(data)
        if len(self.kept) < MAX_KEPT:
            self.kept += data[:MAX_KEPT - len(self.kept)]
        self.body_len += len(data)

    def _body(self, buf: bytes, pos: int, meta: PacketMeta, units: list, notes: list[Anomaly]) -> int:
        n = len(buf)
        if self.until_close:                 # already reported; the rest of the connection is its body
            return n
        if not self.chunked:
            take = min(self.remaining, n - pos)
            self._take(buf[pos:pos + take], meta, notes)
            self.remaining -= take
            if self.remaining == 0:
                units.append(self._unit(True))
            return pos + take
        # RFC 9112 §7.1: chunk = chunk-size [ext] CRLF data CRLF; last-chunk = "0" CRLF; then trailers, CRLF.
        if self.chunk_state in ("size", "trailer", "crlf"):
            eol = buf.find(b"\n", pos, pos + MAX_CHUNK_LINE)
            if eol < 0:
                if n - pos >= MAX_CHUNK_LINE:
                    notes.append(self._give_up(meta, "http.bad_chunk", f"{buf[pos:pos + 24]!r}"))
                    return n
                return pos
            line = buf[pos:eol].rstrip(b"\r")
            if self.chunk_state == "crlf":
                self.chunk_state = "size"
                return eol + 1
            if self.chunk_state == "trailer":
                if not line:
                    units.append(self._unit(True))
                return eol + 1
            size = line.split(b";", 1)[0].strip()
            try:
                self.remaining = int(size, 16)
            except ValueError:
                notes.append(self._give_up(meta, "http.bad_chunk", f"{line[:24]!r}"))
                return n
            self.chunk_state = "data" if self.remaining else "trailer"
            return eol + 1
        take = min(self.remaining, n - pos)
        self._take(buf[pos:pos + take], meta, notes)
        self.remaining -= take
        if self.remaining == 0:
            self.chunk_state = "crlf"
        return pos + take

    def _unit(self, complete: bool) -> HttpUnit:
        unit = HttpUnit(self.head or b"", self.body_len,
                        self.sha.hexdigest() if 0 < self.body_len <= MAX_HASHED else None, bytes(self.kept), complete)
        self.head = None
        self._reset_body()
        return unit

    def _give_up(self, meta: PacketMeta, name: str, detail: str) -> Anomaly:
        self.abandoned = True
        self.head = None
        return Anomaly(meta.ts, meta.frame, "http", name, detail, meta.src, meta.dst)

    def end(self, ts: float, frame: int, src: str, dst: str, why: str) -> list[Anomaly]:
        """A body delimited by Content-Length or chunks still open when the direction ends is cut."""
        if self.head is None or self.until_close:
            return []
        got = self.body_len
        self.head = None
        self._reset_body()
        return [Anomaly(ts, frame, "http", "http.body_cut", f"{got} body bytes when the connection ended ({why})",
                        src, dst)]


def _fields(head: bytes) -> dict[str, str]:
    """Header fields by lower-case name (repeats joined with ", ", RFC 9110 §5.3); obs-fold lines dropped."""
    fields: dict[str, str] = {}
    for line in head.split(b"\n")[1:]:
        name, colon, value = line.rstrip(b"\r").partition(b":")
        if not colon or not name or name[:1] in b" \t":
            continue
        key = name.decode("latin-1").strip().lower()
        text = value.strip().decode("utf-8", "replace")
        fields[key] = f"{fields[key]}, {text}" if key in fields else text
    return fields


def _basic(value: str) -> tuple[str | None, bytes | None]:
    """RFC 7617 §2: base64(user-id ":" password) -> (user, password) or (None, None)."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None, None
    user, colon, password = raw.partition(b":")
    if not colon:
        return None, None
    return user.decode("utf-8", "replace"), password


_QUERY_SECRET = re.compile(r"(?i)([?&;][^=&;#]*(?:pass|pwd|secret|token|key)[^=&;#]*=)[^&;#]*")


def redact_uri(uri: str) -> str:
    """A request target with the values of password-like query parameters replaced by "***"."""
    return _QUERY_SECRET.sub(r"\1***", uri)


_DIGEST_USER = re.compile(r'(?i)(?:^|,)\s*username\s*=\s*(?:"([^"]*)"|([^\s,]*))')


def parse(meta: PacketMeta, unit: HttpUnit) -> tuple[HttpMessage | None, list[Anomaly]]:
    """An HttpMessage from one framed unit (never raises)."""
    head = unit.head
    first, _, _ = head.partition(b"\n")
    fields = _fields(head)
    notes: list[Anomaly] = []
    common = dict(pkt=meta, host=fields.get("host"), user_agent=fields.get("user-agent"),
                  server=fields.get("server"), content_type=fields.get("content-type"),
                  body_len=unit.body_len, body_sha256=unit.body_sha256, body_complete=unit.complete,
                  body_head=unit.body_head)
    disposition = fields.get("content-disposition", "")
    m = re.search(r'(?i)filename\s*=\s*(?:"([^"]*)"|([^\s;]+))', disposition)
    if m:
        common["content_disposition_filename"] = m.group(1) if m.group(1) is not None else m.group(2)
    request = _REQUEST.match(first + b"\n")
    if request:
        method = request.group(1).decode()
        auth = fields.get("authorization")
        scheme = user = digest = None
        length = None
        default = None
        if auth:
            scheme, _, rest = auth.partition(" ")
            if scheme.lower() == "basic":
                scheme = "Basic"
                user, password = _basic(rest)
                if password is None:
                    notes.append(Anomaly(meta.ts, meta.frame, "http", "http.bad_basic_credentials",
                                         f"{len(rest.strip())} characters", meta.src, meta.dst))
                else:
                    digest, length = fingerprint(password)
                    default = password.lower() in DEFAULT_PASSWORDS
            elif scheme.lower() == "digest":
                scheme = "Digest"
                found = _DIGEST_USER.search(rest)
                user = (found.group(1) if found.group(1) is not None else found.group(2)) if found else None
        form = ()
        if method in ("POST", "PUT") and "application/x-www-form-urlencoded" in (common["content_type"] or "").lower():
            names = [k for k, _ in parse_qsl(unit.body_head.decode("latin-1"), keep_blank_values=True)]
            form = tuple(dict.fromkeys(n[:64] for n in names if _PASSWORD_FIELD.search(n)))
        return HttpMessage(is_request=True, method=method, uri=redact_uri(unquote(request.group(2).decode("latin-1")))[:2048],
                           version=first[-4:].strip().decode("latin-1", "replace"),
                           auth_scheme=scheme, auth_user=user, auth_secret_sha256=digest, auth_secret_len=length,
                           auth_secret_default=default, form_password_fields=form, **common), notes
    status = _STATUS.match(first + b"\n")
    if status is None:                       # the framer only frames units that begin with a start line
        return None, notes
    challenge = fields.get("www-authenticate")
    return HttpMessage(is_request=False, status=int(status.group(1)), version=first[5:8].decode(),
                       auth_scheme=challenge.split(" ", 1)[0].strip(",") if challenge else None, **common), notes
