"""STUN (RFC 5389) binding traffic beside media (ICE, NAT keep-alives): recognised, counted, not decoded."""
from __future__ import annotations

# RFC 5389 §6: a 20-octet header whose first two bits are zero, with the magic cookie 0x2112A442
# at offset 4.
HEADER_LEN = 20
COOKIE = b"\x21\x12\xa4\x42"
FIRST_OCTETS = frozenset(range(4))

ANOMALIES: dict[str, str] = {}      # recognised only: nothing is decoded, so nothing is malformed


def looks_like_stun(payload: bytes) -> bool:
    """A whole STUN header: the magic cookie, and a first octet below 4 (the two top bits zero)."""
    return len(payload) >= HEADER_LEN and payload[4:8] == COOKIE and payload[0] < 4
