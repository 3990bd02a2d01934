"""H.248/Megaco (RFC 3525, ITU-T H.248.1) over UDP: the text encoding's header (version, mId) and its first
transaction (kind and id); the binary (ASN.1 BER) encoding is recognised and counted, not decoded."""
from __future__ import annotations

import re

from voipwatch.records import Anomaly, PacketMeta, VoipControl

# RFC 3525 §D.1.1/§D.1.2: 2944 for text, 2945 for binary encoding.
MEGACO_PORTS = frozenset((2944, 2945))
MAX_FIELD = 128

# Annex B.2: megacoMessage = LWSP *(COMMENT LWSP) Message; Message = MegacopToken SLASH Version SEP mId SEP
# messageBody; MegacopToken = "MEGACO" / "!". mId is a domain name, an address or a device name.
_HEADER = re.compile(rb"\s*(?:;[^\r\n]*\s*)*(?:MEGACO|!)/(\d+)[ \t\r\n]+(\S+?)(?=[ \t\r\n{])", re.I)
# The first transaction of the body: its long or short token, then "=" and its id.
_TRANSACTION = re.compile(rb"\b(Transaction|TransactionResponseAck|Reply|Pending|ErrorDescriptor|T|K|P|PN|ER)"
                          rb"\s*=\s*(\d{1,10})", re.I)
_KINDS = {b"T": "Transaction", b"P": "Reply", b"PN": "Pending", b"K": "TransactionResponseAck",
          b"ER": "ErrorDescriptor"}
# The binary encoding is a BER MegacoMessage: a SEQUENCE (0x30).
BER_SEQUENCE = 0x30

ANOMALIES = {
    "megaco.unparsed": "a text H.248/Megaco message whose header (\"MEGACO/\" or \"!/\" version, mId) cannot be "
                       "read (RFC 3525 Annex B.2): counted, not described",
}


def looks_like_megaco(payload: bytes) -> bool:
    """Text: "MEGACO/" or "!/" at the start (after white space or comments); binary: a BER SEQUENCE."""
    if payload[:1] == bytes((BER_SEQUENCE,)):
        return len(payload) >= 4
    head = payload[:64].lstrip().upper()
    return head.startswith((b"MEGACO/", b"!/", b";"))


def parse(meta: PacketMeta, payload: bytes) -> tuple[VoipControl | None, list[Anomaly]]:
    if payload[:1] == bytes((BER_SEQUENCE,)):
        return VoipControl(meta, "megaco", "binary"), []
    header = _HEADER.match(payload)
    if header is None:
        return None, [Anomaly(meta.ts, meta.frame, "megaco", "megaco.unparsed",
                              f"{len(payload)}-byte datagram starting {payload[:40]!r}", meta.src, meta.dst)]
    mid = header.group(2)[:MAX_FIELD].decode("ascii", "replace")
    found = _TRANSACTION.search(payload, header.end())
    if found is None:
        return VoipControl(meta, "megaco", "message", endpoint=mid), []
    token = found.group(1).upper()
    kind = _KINDS.get(token) or next(k for k in _KINDS.values() if k.upper() == token.decode("ascii"))
    return VoipControl(meta, "megaco", kind, transaction=found.group(2).decode("ascii"), endpoint=mid), []
