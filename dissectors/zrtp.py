"""ZRTP (RFC 6189) on a media port: recognised by its header, counted, not decoded."""
from __future__ import annotations

# RFC 6189 §5: a ZRTP packet starts with 0x10 (version bits 00, unlike RTP's 10) and carries the
# magic cookie 'ZRTP' (0x5a525450) at offset 4.
FIRST_OCTET = b"\x10"
FIRST_OCTETS = frozenset(FIRST_OCTET)
COOKIE = b"ZRTP"

ANOMALIES: dict[str, str] = {}      # recognised only: nothing is decoded, so nothing is malformed


def looks_like_zrtp(payload: bytes) -> bool:
    """The ZRTP packet header: first octet 0x10 and the magic cookie."""
    return payload[4:8] == COOKIE and payload[:1] == FIRST_OCTET
