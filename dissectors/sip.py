"""Session Initiation Protocol (RFC 3261): content probe and tolerant message parser (stream framing: sip_stream)."""
from __future__ import annotations

import re

from dissectors import sip_headers as hv
from dissectors.sdp import parse_sdp
from voipwatch.records import Anomaly, PacketMeta, SipAuth, SipMessage

# Resource limits (like Zeek's max_* options). Exceeding one yields an anomaly; the excess is dropped.
MAX_HEADERS = 256          # header fields kept per message (sip.too_many_headers)
MAX_HEADER_LINE = 16384    # characters kept of one unfolded header field or start line (sip.header_too_long)
MAX_VIA = 64               # Via entries kept, topmost first (sip.too_many_via)
MAX_LIST_VALUES = 64       # entries kept of Contact, P-Asserted-Identity, Diversion, auth (sip.too_many_values)
MAX_MULTIPART_DEPTH = 3    # nesting levels of multipart bodies searched for an SDP part
MAX_MULTIPART_PARTS = 32   # body parts examined per multipart level
MAX_CSEQ = 2**31 - 1       # §8.1.1.5: the CSeq number MUST be less than 2**31
_JUNK_PREVIEW = 16         # bytes of leading junk quoted in the anomaly detail

_VERSION = b"SIP/2.0"      # §7.1: the version is case-sensitive
_TOKEN_FIRST = frozenset(hv.TOKEN_BYTES)
# The octets a message can start with: its method's or "SIP/2.0"'s first (§7.1, §25.1), or a CRLF
# keep-alive before it (RFC 5626 §3.5.1).
FIRST_OCTETS = _TOKEN_FIRST | frozenset(b"\r\n")
# §7: the header block ends at the first empty line; bare LF line ends are tolerated.
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_EOL = re.compile(r"\r\n|\r|\n")
# Headers that §20 defines as appearing once; a repeat is described as sip.duplicate_header.
_SINGLETONS = ("call-id", "cseq", "from", "to", "content-length", "content-type", "max-forwards")
_AUTH_HEADERS = ("authorization", "proxy-authorization", "www-authenticate", "proxy-authenticate")
# Headers in which B2BUAs and SBCs copy the Call-ID of the call's other leg (vendor practice; HOMER and
# heplify correlate legs by X-CID). RFC 7989's Session-ID is the standard way.
LEG_REF_HEADERS = ("x-cid", "x-orig-call-id", "x-original-call-id", "x-call-id")
# RFC 7989 §4: a Session-ID UUID is 32 lowercase hex digits; the null UUID means "not yet known".
_UUID = re.compile(r"[0-9a-f]{32}")
_NULL_UUID = "0" * 32
_DTMF_TYPES = ("application/dtmf-relay", "application/dtmf")

# Every Anomaly.name parse_sip gives (layer "sip"; the SDP body's own are dissectors.sdp.ANOMALIES,
# SIP over TCP's framing its own, dissectors.sip_stream.ANOMALIES), and the one the dispatch table
# raises for the SIP ports (dissectors.dispatch; over TCP, the stream framer).
ANOMALIES = {
    "sip.malformed_start_line": "no Request-Line or Status-Line anywhere in the message (§7.1, §7.2): not described",
    "sip.junk_before_request": "bytes before the Request-Line, skipped",
    "sip.junk_before_response": "bytes before the Status-Line, skipped",
    "sip.bad_status_code": "a Status-Code outside 100-699 (§21)",
    "sip.headers_unterminated": "no empty line after the header fields (§7)",
    "sip.nul_byte": "NUL octets in the start line or header fields (§25.1)",
    "sip.non_utf8": "start line or header fields not UTF-8 (§25.1); shown with U+FFFD",
    "sip.header_too_long": f"a start-line element or header field over {MAX_HEADER_LINE} characters, cut",
    "sip.bad_header_line": "a header line without a name, or a continuation line before any header (§7.3.1)",
    "sip.too_many_headers": f"more than {MAX_HEADERS} header fields; the rest dropped",
    "sip.duplicate_header": "a header field §20 allows once (Call-ID, CSeq, From, To, Content-Length, Content-Type, "
                            "Max-Forwards) is repeated",
    "sip.too_many_via": f"more than {MAX_VIA} Via entries; the rest dropped",
    "sip.too_many_values": f"more than {MAX_LIST_VALUES} Contact, P-Asserted-Identity, Diversion or "
                           "authentication entries; the rest dropped",
    "sip.missing_call_id": "no Call-ID header field (§8.1.1.4)",
    "sip.missing_cseq": "no CSeq header field (§8.1.1.5)",
    "sip.bad_cseq": "a CSeq that is not a number below 2^31 and a method (§20.16, §8.1.1.5)",
    "sip.cseq_method_mismatch": "a request whose CSeq method differs from its Request-Line method (§8.1.1.5)",
    "sip.invalid_content_length": "a Content-Length that is not a number, differs between repeated fields, "
                                  "or reaches past the datagram (§18.3, §20.14)",
    "sip.missing_content_length": "a message over TCP without Content-Length, which stream transports require (§18.3)",
    "sip.body_truncated": "over TCP, fewer body bytes than Content-Length declares (a body over the framing cap "
                          "is cut)",
    "sip.trailing_data": "bytes after the body that Content-Length delimits (§18.3)",
    "sip.not_sip_on_sip_port": "a UDP datagram, or a TCP direction, to or from port 5060 or 5061 that is not SIP "
                               "(§19.1.2 default ports); over TCP, one whose framer found no start line before "
                               "giving it up or before it ended",
}


def _quoted_nuls(payload: bytes, start: int, end: int) -> int:
    """NUL octets that stand as the escaped character of a quoted-pair inside a quoted-string or a
    comment: RFC 3261 §25.1, quoted-pair = "\\" (%x00-09 / %x0B-0C / %x0E-7F), the one place a NUL is legal."""
    legal = 0
    quoted = False
    comment = 0
    i = start
    while i < end:
        byte = payload[i]
        if byte == 0x5C and (quoted or comment) and i + 1 < end:      # backslash: the next octet is escaped
            legal += payload[i + 1] == 0
            i += 2
            continue
        if byte == 0x22 and not comment:                                # DQUOTE opens or closes a quoted-string
            quoted = not quoted
        elif byte == 0x28 and not quoted:                               # "(" opens a (nested) comment
            comment += 1
        elif byte == 0x29 and comment:
            comment -= 1
        elif byte == 0x0A and payload[i + 1:i + 2] not in (b" ", b"\t"):   # §7.3.1: only a folded line continues
            quoted, comment = False, 0
        i += 1
    return legal


class _StartLine:
    """A Request-Line (§7.1) or Status-Line (§7.2) found at `skip` bytes into a line."""
    __slots__ = ("skip", "method", "uri", "status", "reason")

    def __init__(self, skip: int, method: bytes | None, uri: bytes | None,
                 status: int | None, reason: bytes | None) -> None:
        self.skip, self.method, self.uri, self.status, self.reason = skip, method, uri, status, reason


def _start_line(line: bytes, junk: bool) -> _StartLine | None:
    """Parse one line as a start line; with junk=True, bytes before the method or version are allowed."""
    line = line.rstrip(b" \t\r")
    if line.endswith(b" " + _VERSION):
        head = line[:-8].rstrip(b" ")
        sp = head.rfind(b" ")
        if sp > 0:
            lead = head[:sp].rstrip(b" ")
            skip = len(lead.rstrip(hv.TOKEN_BYTES))
            if skip < len(lead) and (junk or skip == 0):
                return _StartLine(skip, lead[skip:], head[sp + 1:], None, None)
    i = line.find(_VERSION + b" ") if junk else 0
    while i >= 0:
        code = line[i + 8:i + 11]
        tail = line[i + 11:i + 12]
        if line.startswith(_VERSION + b" ", i) and len(code) == 3 and code.isdigit() and tail in (b"", b" "):
            return _StartLine(i, None, None, int(code), line[i + 12:])
        if not junk:
            return None
        i = line.find(_VERSION + b" ", i + 1)
    return None


def _skip_crlf(data: bytes, pos: int) -> int:
    """§7.5 / RFC 5626 §3.5.1: CRLFs before a start line (keep-alives) are ignored."""
    n = len(data)
    while pos < n and data[pos] in (10, 13):
        pos += 1
    return pos


def _line_end(data: bytes, pos: int) -> int:
    """End of the line starting at pos: the first CR or LF (a bare CR ends a line, as in Wireshark)."""
    nl = data.find(b"\n", pos)
    if nl < 0:
        nl = len(data)
    cr = data.find(b"\r", pos, nl)
    return nl if cr < 0 else cr


def _find_start(data: bytes, pos: int) -> tuple[int, int, _StartLine] | None:
    """The first start line at or after pos, allowing junk before it: (message start, line end, line)."""
    i = data.find(_VERSION, pos)
    while i >= 0:
        line_start = max(data.rfind(b"\n", pos, i), data.rfind(b"\r", pos, i), pos - 1) + 1
        line_end = _line_end(data, i)
        found = _start_line(data[line_start:line_end], junk=True)
        if found is not None:
            return line_start + found.skip, line_end, found
        i = data.find(_VERSION, line_end)
    return None


def looks_like_sip(payload: bytes) -> bool:
    """True when the first line (after keep-alive CRLFs) is a SIP Request-Line or Status-Line."""
    if payload[:1] in (b"\r", b"\n"):
        payload = payload.lstrip(b"\r\n")
    if not payload or payload[0] not in _TOKEN_FIRST:
        return False
    line = payload[:_line_end(payload, 0)]
    if _VERSION not in line:
        return False
    return _start_line(line, junk=False) is not None


class _Notes:
    """Anomalies of one message, one record per name (repeats counted in the detail)."""

    def __init__(self, meta: PacketMeta) -> None:
        self.meta = meta
        self.found: dict[str, list] = {}

    def add(self, name: str, detail: str = "", layer: str = "sip") -> None:
        if name in self.found:
            self.found[name][2] += 1
        else:
            self.found[name] = [layer, detail, 1]

    def records(self) -> list[Anomaly]:
        m = self.meta
        return [Anomaly(m.ts, m.frame, layer, name, detail if n == 1 else f"{detail} (x{n})".lstrip(),
                        m.src, m.dst) for name, (layer, detail, n) in self.found.items()]


def _decode(data: bytes, notes: _Notes, what: str) -> str:
    """§25.1 (TEXT-UTF8): SIP text is UTF-8; undecodable bytes become U+FFFD and are described."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        notes.add("sip.non_utf8", what)
        return data.decode("utf-8", "replace")


def _start_text(raw: bytes | None, notes: _Notes) -> str | None:
    """A start-line element as text, cut at MAX_HEADER_LINE characters."""
    if raw is None:
        return None
    text = _decode(raw, notes, "start line")
    if len(text) > MAX_HEADER_LINE:
        notes.add("sip.header_too_long", f"start line element: {len(text)} characters")
    return text[:MAX_HEADER_LINE]


def _to_int(text: str | None, max_digits: int = 10) -> int | None:
    """A 1*DIGIT value (§25.1) such as delta-seconds or Content-Length; None when it is not one."""
    text = (text or "").strip()
    if 0 < len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None


def _headers(text: str, notes: _Notes) -> dict[str, list[str]]:
    """Header fields by canonical name, values in order; folded lines joined (§7.3.1)."""
    fields: dict[str, list[str]] = {}
    unfolded: list[str] = []
    for line in _EOL.split(text):
        if line[:1] in (" ", "\t"):
            if unfolded:
                unfolded[-1] += " " + line.strip()
            else:
                notes.add("sip.bad_header_line", "continuation line before any header")
        elif line:
            unfolded.append(line)
    count = 0
    for line in unfolded:
        name, colon, value = line.partition(":")
        canonical = _canonical_name(name.rstrip(" \t")) if colon else None
        if canonical is None:
            notes.add("sip.bad_header_line", f"{len(line)}-character line without a header name")
            continue
        if count == MAX_HEADERS:
            notes.add("sip.too_many_headers", f"more than {MAX_HEADERS} header fields")
            break
        count += 1
        value = value.strip()
        if len(value) > MAX_HEADER_LINE:
            notes.add("sip.header_too_long", f"{name[:64]}: {len(value)} characters")
            value = value[:MAX_HEADER_LINE]
        fields.setdefault(canonical, []).append(value)
    return fields


_UNSEEN = object()
_CANONICAL_NAMES: dict[str, str | None] = {}     # header name as sent -> canonical name, None if no token
_MAX_CANONICAL_NAMES = 4096                      # names remembered; a flood of invented names is not


def _canonical_name(name: str) -> str | None:
    """hv.canonical_name of a header name that is a token (§25.1), else None; the few names real
    traffic uses are looked up once."""
    canonical = _CANONICAL_NAMES.get(name, _UNSEEN)
    if canonical is _UNSEEN:
        canonical = hv.canonical_name(name) if hv.is_token(name) else None
        if len(_CANONICAL_NAMES) < _MAX_CANONICAL_NAMES:
            _CANONICAL_NAMES[name] = canonical
    return canonical


def _list(fields: dict[str, list[str]], name: str, limit: int, anomaly: str, notes: _Notes) -> list[str]:
    """§7.3.1: repeated fields and comma-separated values of one field form a single ordered list."""
    items = [item for value in fields.get(name, ()) for item in hv.split_list(value)]
    if len(items) > limit:
        notes.add(anomaly, f"{name}: {len(items)} entries, {limit} kept")
        del items[limit:]
    return items


def _first(fields: dict[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[0] if values else None


def _body(payload: bytes, body_start: int, fields: dict[str, list[str]], tcp: bool,
          notes: _Notes) -> tuple[bytes, int | None]:
    """The body per Content-Length (§18.3, §20.14) and the declared length when it is valid."""
    rest = payload[body_start:]
    declared = fields.get("content-length")
    length = _to_int(declared[0]) if declared else None
    if declared and length is None:
        notes.add("sip.invalid_content_length", f"not a number: {declared[0][:32]!r}")
    if declared and len(set(declared)) > 1:
        notes.add("sip.invalid_content_length", f"{len(declared)} differing Content-Length fields")
    if length is None:
        if tcp and not declared:
            notes.add("sip.missing_content_length", "stream transports require Content-Length (§18.3)")
        return rest, None
    if length > len(rest):
        notes.add("sip.body_truncated" if tcp else "sip.invalid_content_length",
                  f"Content-Length {length} > {len(rest)} bytes present")
        return rest, length
    if rest[length:].strip():
        notes.add("sip.trailing_data", f"{len(rest) - length} bytes after the Content-Length body")
    return rest[:length], length


def _cseq(value: str | None, method: str | None, notes: _Notes) -> tuple[int | None, str | None]:
    """§20.16: CSeq = 1*DIGIT LWS Method; the method matches the request's (§8.1.1.5)."""
    if value is None:
        notes.add("sip.missing_cseq")
        return None, None
    parts = value.split()
    number = _to_int(parts[0]) if parts else None
    cmethod = parts[1] if len(parts) > 1 else None
    if len(parts) != 2 or number is None or not hv.is_token(cmethod or "") or number > MAX_CSEQ:
        notes.add("sip.bad_cseq", f"{value[:64]!r}")
    elif method is not None and cmethod != method:
        notes.add("sip.cseq_method_mismatch", f"{method} request with CSeq method {cmethod}")
    return number, cmethod


def _auth(fields: dict[str, list[str]], notes: _Notes) -> tuple[SipAuth, ...]:
    """Challenges and credentials of the four authentication header fields (§22.2, §22.3)."""
    out: list[SipAuth] = []
    for name in _AUTH_HEADERS:
        for value in fields.get(name, ()):
            out.extend(hv.parse_auth(name, value, MAX_LIST_VALUES))
    if len(out) > MAX_LIST_VALUES:
        notes.add("sip.too_many_values", f"{len(out)} credentials/challenges, {MAX_LIST_VALUES} kept")
    return tuple(out[:MAX_LIST_VALUES])


def _session_ids(value: str | None) -> tuple[str, ...]:
    """RFC 7989 §4: Session-ID = sess-uuid *(SEMI sess-id-param), remote=<uuid> one of the params.
    The UUIDs, local then remote, lowercased; malformed and null UUIDs left out."""
    if not value:
        return ()
    local, _, rest = value.partition(";")
    uuids = [local.strip().lower(), hv.params(";" + rest).get("remote", "").strip().lower()]
    return tuple(u for u in uuids if _UUID.fullmatch(u) and u != _NULL_UUID)


def _reliable(fields: dict[str, list[str]], status: int | None) -> bool:
    """RFC 3262 §3: a reliable provisional response (101-199) has Require: 100rel and an RSeq header."""
    if status is None or not 100 < status < 200 or _first(fields, "rseq") is None:
        return False
    return any(item.strip().lower() == "100rel" for value in fields.get("require", ()) for item in value.split(","))


def parse_sip(meta: PacketMeta, payload: bytes) -> tuple[SipMessage | None, list[Anomaly]]:
    """Describe one SIP message; malformations become anomalies. (None, [...]) only without a start line."""
    notes = _Notes(meta)
    start = msg_start = _skip_crlf(payload, 0)
    line_end = _line_end(payload, start)
    sl = _start_line(payload[start:line_end], junk=False)
    if sl is None:
        found = _find_start(payload, start)
        if found is None:
            notes.add("sip.malformed_start_line", f"no Request-Line or Status-Line in {len(payload)} bytes")
            return None, notes.records()
        msg_start, line_end, sl = found
        notes.add("sip.junk_before_request" if sl.method is not None else "sip.junk_before_response",
                  f"{msg_start - start} bytes: {payload[start:start + _JUNK_PREVIEW]!r}")
    if sl.status is not None and not 100 <= sl.status <= 699:
        notes.add("sip.bad_status_code", f"{sl.status} outside 100-699 (§21)")
    head_start = line_end + (2 if payload[line_end:line_end + 2] == b"\r\n" else 1)
    blank = _BLANK_LINE.search(payload, line_end)
    if blank is None:
        notes.add("sip.headers_unterminated", "no empty line after the header fields")
        head, body_start = payload[head_start:], len(payload)
    else:
        head, body_start = payload[head_start:blank.start()], blank.end()
    nul = payload.count(b"\0", msg_start, body_start)
    if nul:
        nul -= _quoted_nuls(payload, msg_start, body_start)
    if nul:                    # §25.1: only a quoted-pair admits a NUL octet; no other element does
        notes.add("sip.nul_byte", f"{nul} NUL bytes in the start line and header fields")
    fields = _headers(_decode(head, notes, "header fields"), notes)
    for name in _SINGLETONS:
        if len(fields.get(name, ())) > 1:
            notes.add("sip.duplicate_header", name)

    method = _start_text(sl.method, notes)
    uri = _start_text(sl.uri, notes)
    request_uri = hv.redact_password(uri) if uri is not None else None
    call_id = (_first(fields, "call-id") or "").strip() or None
    if call_id is None:
        notes.add("sip.missing_call_id")
    cseq, cseq_method = _cseq(_first(fields, "cseq"), method, notes)
    from_uri, from_params = hv.name_addr(_first(fields, "from") or "")
    to_uri, to_params = hv.name_addr(_first(fields, "to") or "")
    contacts = [hv.name_addr(c) for c in _list(fields, "contact", MAX_LIST_VALUES, "sip.too_many_values", notes)]
    header_expires = expires = _to_int(_first(fields, "expires"))
    if expires is None and contacts:
        expires = _to_int(contacts[0][1].get("expires"))
    contact_expires = tuple(_to_int(p["expires"]) if "expires" in p else header_expires for _, p in contacts)
    content_type = _first(fields, "content-type")
    media_type = (content_type or "").partition(";")[0].strip().lower()
    body, content_length = _body(payload, body_start, fields, meta.transport == "tcp", notes)
    sdp_body = body if media_type == "application/sdp" else None
    if media_type.startswith("multipart/") and body:
        sdp_body = hv.multipart_part(body, content_type or "", "application/sdp",
                                     MAX_MULTIPART_DEPTH, MAX_MULTIPART_PARTS)
    sdp = None
    if sdp_body:
        sdp, sdp_notes = parse_sdp(sdp_body)
        for name in sdp_notes:
            notes.add(name, layer="sdp")
    refer_to = _first(fields, "refer-to")
    msg = SipMessage(
        pkt=meta, is_request=sl.method is not None, method=method, request_uri=request_uri,
        ruri_user=hv.uri_user(request_uri), status=sl.status, reason=_start_text(sl.reason, notes) or None,
        call_id=call_id, cseq=cseq, cseq_method=cseq_method,
        from_uri=from_uri or None, from_user=hv.uri_user(from_uri), from_tag=from_params.get("tag") or None,
        to_uri=to_uri or None, to_user=hv.uri_user(to_uri), to_tag=to_params.get("tag") or None,
        via=tuple(_list(fields, "via", MAX_VIA, "sip.too_many_via", notes)),
        contact=tuple(uri for uri, _ in contacts),
        expires=expires,
        contact_expires=contact_expires,
        user_agent=_first(fields, "user-agent") or None,
        server=_first(fields, "server") or None,
        content_type=content_type or None,
        content_length=content_length,
        body_len=len(body),
        auth=_auth(fields, notes),
        pai=tuple(hv.name_addr(v)[0] for v in
                  _list(fields, "p-asserted-identity", MAX_LIST_VALUES, "sip.too_many_values", notes)),
        diversion=tuple(hv.name_addr(v)[0] for v in
                        _list(fields, "diversion", MAX_LIST_VALUES, "sip.too_many_values", notes)),
        refer_to=(hv.name_addr(refer_to)[0] or None) if refer_to is not None else None,
        sdp=sdp,
        body_has_dtmf_relay=method == "INFO" and media_type in _DTMF_TYPES and bool(body),
        reliable=_reliable(fields, sl.status),
        session_ids=_session_ids(_first(fields, "session-id")),
        leg_refs=tuple(dict.fromkeys(v.strip() for name in LEG_REF_HEADERS for v in fields.get(name, ())
                                     if v.strip() and v.strip() != call_id))[:MAX_LIST_VALUES],
    )
    return msg, notes.records()


def address_of_record(msg: SipMessage) -> str:
    """RFC 3261 §10.2: the To header of a REGISTER names the address-of-record (scheme and parameters cut)."""
    uri = msg.to_uri or msg.request_uri or ""
    for scheme in ("sips:", "sip:"):
        if uri.lower().startswith(scheme):
            uri = uri[len(scheme):]
            break
    return uri.split(";", 1)[0].split("?", 1)[0]
