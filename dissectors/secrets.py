"""Secrets seen in cleartext protocols, kept only as SHA-256 and length (never the value)."""
from __future__ import annotations

import hashlib

# Community strings and passwords that vendors ship as defaults (SNMP: RFC 3584 §5.2 example
# "public"; "private" the customary write community; common admin defaults).
DEFAULT_COMMUNITIES = frozenset((b"public", b"private"))
DEFAULT_PASSWORDS = frozenset((b"admin", b"password", b"1234", b"12345", b"123456", b"cisco", b"root",
                               b"default", b"guest", b"changeme"))


def fingerprint(secret: bytes) -> tuple[str, int]:
    """(SHA-256 hex, length in bytes) of a secret: enough to compare and count, never to reveal it."""
    return hashlib.sha256(secret).hexdigest(), len(secret)
