"""MGCP (RFC 3435): a command's verb, transaction id and endpoint, or a response's code and transaction id;
the CallId parameter and whether a session description in it offers SRTP (RTP/SAVP) or plain RTP/AVP."""
from __future__ import annotations

import re

from dissectors.sdp import is_secure_profile
from voipwatch.records import Anomaly, PacketMeta, VoipControl

# RFC 3435 §2.5: the default ports, 2427 on gateways and 2727 on call agents.
MGCP_PORTS = frozenset((2427, 2727))
# RFC 3435 §3.2.1.1: the command verbs.
VERBS = frozenset((b"EPCF", b"CRCX", b"MDCX", b"DLCX", b"RQNT", b"NTFY", b"AUEP", b"AUCX", b"RSIP"))
MAX_FIELD = 128          # characters of an endpoint name, transaction or call id kept

# §3.2.1: verb SP transaction-id SP endpoint SP "MGCP" SP version; §3.3: 3-digit code SP transaction-id.
_COMMAND = re.compile(rb"([A-Z]{4}) (\d{1,9}) (\S+) MGCP (\d+\.\d+)\b")
_RESPONSE = re.compile(rb"(\d{3}) (\d{1,9})(?:[ \t\r\n]|$)")
_CALL_ID = re.compile(rb"^C[ \t]*:[ \t]*([^\r\n]*)", re.I | re.M)
_MEDIA = re.compile(rb"^m=\S+ \d+(?:/\d+)? (\S+)", re.M)

ANOMALIES = {
    "mgcp.unparsed": "a datagram on an MGCP port that begins with a verb or code but has no valid command or "
                     "response line (RFC 3435 §3.2.1, §3.3): counted, not described",
}


def looks_like_mgcp(payload: bytes) -> bool:
    """A command (a known verb and " MGCP " in its first line) or a response (3 digits, a space, a digit)."""
    head = payload[:4]
    if head in VERBS:
        return b" MGCP " in payload[:256]
    return len(payload) >= 5 and head[:3].isdigit() and payload[3:4] == b" " and payload[4:5].isdigit()


def _text(raw: bytes) -> str:
    return raw[:MAX_FIELD].decode("ascii", "replace")


def parse(meta: PacketMeta, payload: bytes) -> tuple[VoipControl | None, list[Anomaly]]:
    """The first message of the datagram (a piggy-backed one after a "." line, §3.5, is not described)."""
    line_end = payload.find(b"\n")
    first = payload[:line_end if line_end >= 0 else len(payload)].rstrip(b"\r")
    command = _COMMAND.match(first)
    response = None if command else _RESPONSE.match(first + b"\n")
    if command is None and response is None:
        return None, [Anomaly(meta.ts, meta.frame, "mgcp", "mgcp.unparsed",
                              f"{len(payload)}-byte datagram, first line {first[:40]!r}", meta.src, meta.dst)]
    call = _CALL_ID.search(payload)
    # The SDP follows an empty line (§3.1); its m= transport says whether media is offered as SRTP.
    blank = re.search(rb"\r?\n\r?\n", payload)
    protos = [m.group(1).decode("ascii", "replace") for m in _MEDIA.finditer(payload, blank.end())] if blank else []
    secure = any(is_secure_profile(p) for p in protos) if protos else None
    if command:
        verb, transaction, endpoint = command.group(1), command.group(2), command.group(3)
        return VoipControl(meta, "mgcp", verb.decode("ascii"), None, _text(transaction), _text(endpoint),
                           _text(call.group(1).strip()) if call else None, secure=secure), []
    code, transaction = response.group(1), response.group(2)
    return VoipControl(meta, "mgcp", code.decode("ascii"), int(code), _text(transaction), None,
                       _text(call.group(1).strip()) if call else None, secure=secure), []
