"""TLS (SIP over TLS, RFC 3261 §26.2.2) and DTLS (DTLS-SRTP, RFC 5764) records: recognised, never decrypted."""
from __future__ import annotations

# RFC 5246 §6.2.1 / RFC 8446 §5.1: a record starts with its content type, 20-23 (change_cipher_spec,
# alert, handshake, application_data), then the protocol version, major 3 for TLS.
CONTENT_TYPES = range(20, 24)
TLS_MAJOR = b"\x03"
# RFC 6347 §4.1: DTLS versions are the one's complement of TLS's (0xfeff DTLS 1.0, 0xfefd DTLS 1.2).
DTLS_MAJOR = b"\xfe"
FIRST_OCTETS = frozenset(CONTENT_TYPES)

ANOMALIES: dict[str, str] = {}      # recognised only: nothing is decoded, so nothing is malformed


def looks_like_tls(payload: bytes) -> bool:
    """A TCP segment that starts with a TLS record header (called with a non-empty payload)."""
    return payload[0] in CONTENT_TYPES and payload[1:2] == TLS_MAJOR


def looks_like_dtls(payload: bytes) -> bool:
    """A UDP datagram that starts with a DTLS record header."""
    return payload[1:2] == DTLS_MAJOR and payload[0] in CONTENT_TYPES

