"""SNMP v1/v2c/v3 messages (RFC 1157, RFC 3416, RFC 3412) over UDP: version, PDU type, the community as
SHA-256 + length + "is a default" flag (never the string), v3 msgFlags and user name.

A small BER reader of its own (X.690 §8.1: tag, definite length, contents) reads only the outer layers;
no dependency (pysnmp/pyasn1 decode whole PDUs and their failure modes are not ours to count)."""
from __future__ import annotations

from dataclasses import dataclass

from dissectors.secrets import DEFAULT_COMMUNITIES, fingerprint
from voipwatch.records import Anomaly, PacketMeta, at_packet, declare, r6, vlan_text

SNMP_PORTS = frozenset((161, 162))       # RFC 3417 §3: agent 161, notification receiver 162
FIRST_OCTETS = frozenset((0x30,))        # a message is a SEQUENCE
SEQUENCE, INTEGER, OCTET_STRING = 0x30, 0x02, 0x04
VERSIONS = {0: "v1", 1: "v2c", 3: "v3"}  # RFC 3584 §2.2.1 msgVersion values
# RFC 3416 §3 / RFC 1157 §4.1: context-specific constructed PDU tags.
PDU_TYPES = {0xA0: "get-request", 0xA1: "get-next-request", 0xA2: "response", 0xA3: "set-request",
             0xA4: "trap", 0xA5: "get-bulk-request", 0xA6: "inform-request", 0xA7: "snmpV2-trap", 0xA8: "report"}
GENERIC_TRAPS = {0: "coldStart", 1: "warmStart", 2: "linkDown", 3: "linkUp", 4: "authenticationFailure",
                 5: "egpNeighborLoss", 6: "enterpriseSpecific"}   # RFC 1157 §4.1.6
MSG_FLAG_AUTH, MSG_FLAG_PRIV, MSG_FLAG_REPORTABLE = 0x01, 0x02, 0x04   # RFC 3412 §6.4

ANOMALIES = {
    "snmp.malformed": "a datagram on the SNMP ports that does not decode as an SNMP message (BER, X.690 §8.1)",
}


class BerError(ValueError):
    pass


def tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the TLV at pos (X.690 §8.1.2-8.1.3; single-octet tags,
    definite lengths only, as BER for SNMP uses, RFC 3417 §8)."""
    if pos + 2 > end:
        raise BerError("truncated TLV")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > end:
            raise BerError("unsupported length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > end:
        raise BerError("contents overrun")
    return tag, pos, pos + length


def integer(data: bytes, pos: int, end: int) -> tuple[int, int]:
    tag, start, stop = tlv(data, pos, end)
    if tag != INTEGER or not 0 < stop - start <= 8:
        raise BerError("expected INTEGER")
    return int.from_bytes(data[start:stop], "big", signed=True), stop


def octets(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    tag, start, stop = tlv(data, pos, end)
    if tag != OCTET_STRING:
        raise BerError("expected OCTET STRING")
    return data[start:stop], stop


@dataclass(frozen=True, slots=True)
class SnmpMessage:
    """One SNMP message. The community is never kept: its SHA-256, length and whether it is public/private."""
    pkt: PacketMeta
    version: str                              # "v1" | "v2c" | "v3"
    pdu_type: str | None                      # None for v3 with privacy (the scoped PDU is encrypted)
    community_sha256: str | None = None
    community_len: int | None = None
    community_default: bool | None = None
    request_id: int | None = None
    error_status: int | None = None
    generic_trap: str | None = None           # v1 Trap-PDU generic-trap
    v3_auth: bool | None = None
    v3_priv: bool | None = None
    v3_user: str | None = None


declare(SnmpMessage, rank=60, timeline=at_packet, table="snmp", sort=lambda m: (m.pkt.ts, m.pkt.frame), columns=(
    ("ts", "Float64", lambda m: r6(m.pkt.ts)),
    ("frame", "Int64", lambda m: m.pkt.frame),
    ("src", "string", lambda m: m.pkt.src),
    ("sport", "Int64", lambda m: m.pkt.sport),
    ("dst", "string", lambda m: m.pkt.dst),
    ("dport", "Int64", lambda m: m.pkt.dport),
    ("vlan", "string", lambda m: vlan_text(m.pkt.vlan)),
    ("version", "string", lambda m: m.version),
    ("pdu_type", "string", lambda m: m.pdu_type),
    ("community_sha256", "string", lambda m: m.community_sha256),
    ("community_len", "Int64", lambda m: m.community_len),
    ("community_default", "boolean", lambda m: m.community_default),
    ("request_id", "Int64", lambda m: m.request_id),
    ("error_status", "Int64", lambda m: m.error_status),
    ("generic_trap", "string", lambda m: m.generic_trap),
    ("v3_auth", "boolean", lambda m: m.v3_auth),
    ("v3_priv", "boolean", lambda m: m.v3_priv),
    ("v3_user", "string", lambda m: m.v3_user),
))


def looks_like_snmp(payload: bytes) -> bool:
    """A SEQUENCE whose first element is an INTEGER version 0, 1 or 3."""
    try:
        tag, start, stop = tlv(payload, 0, len(payload))
        version, _ = integer(payload, start, stop)
    except BerError:
        return False
    return tag == SEQUENCE and version in VERSIONS


def parse(meta: PacketMeta, payload: bytes) -> tuple[SnmpMessage | None, list[Anomaly]]:
    try:
        return _parse(meta, payload), []
    except BerError as exc:
        return None, [Anomaly(meta.ts, meta.frame, "snmp", "snmp.malformed", str(exc), meta.src, meta.dst)]


def _pdu(data: bytes, pos: int, end: int) -> dict:
    """The PDU's type and header (RFC 3416 §3; RFC 1157 §4.1.6 for the v1 Trap-PDU)."""
    tag, start, stop = tlv(data, pos, end)
    kind = PDU_TYPES.get(tag)
    if kind is None:
        raise BerError(f"unknown PDU tag 0x{tag:02x}")
    out: dict = {"pdu_type": kind}
    if kind == "trap":                      # enterprise OID, agent-addr, generic-trap, specific-trap, time-stamp
        _, _, p = tlv(data, start, stop)
        _, _, p = tlv(data, p, stop)
        generic, _ = integer(data, p, stop)
        out["generic_trap"] = GENERIC_TRAPS.get(generic, str(generic))
        return out
    out["request_id"], p = integer(data, start, stop)
    out["error_status"], _ = integer(data, p, stop)
    return out


def _parse(meta: PacketMeta, data: bytes) -> SnmpMessage:
    tag, start, stop = tlv(data, 0, len(data))
    if tag != SEQUENCE:
        raise BerError("message is not a SEQUENCE")
    version, pos = integer(data, start, stop)
    if version not in VERSIONS:
        raise BerError(f"unknown version {version}")
    if version in (0, 1):                   # RFC 1157 §4.1 / RFC 1901: version, community, PDU
        community, pos = octets(data, pos, stop)
        digest, length = fingerprint(community)
        return SnmpMessage(meta, VERSIONS[version], community_sha256=digest, community_len=length,
                           community_default=community in DEFAULT_COMMUNITIES, **_pdu(data, pos, stop))
    # RFC 3412 §6: msgGlobalData (msgID, msgMaxSize, msgFlags, msgSecurityModel), msgSecurityParameters,
    # msgData (ScopedPDU, or an encrypted OCTET STRING with privacy).
    g_tag, g_start, g_stop = tlv(data, pos, stop)
    _, p = integer(data, g_start, g_stop)
    _, p = integer(data, p, g_stop)
    flags, p = octets(data, p, g_stop)
    model, _ = integer(data, p, g_stop)
    if g_tag != SEQUENCE or len(flags) != 1:
        raise BerError("bad msgGlobalData")
    auth, priv = bool(flags[0] & MSG_FLAG_AUTH), bool(flags[0] & MSG_FLAG_PRIV)
    params, pos = octets(data, g_stop, stop)
    user = None
    if model == 3 and params:               # RFC 3414 §2.4: UsmSecurityParameters, user name is the 4th field
        _, u_start, u_stop = tlv(params, 0, len(params))
        _, p = octets(params, u_start, u_stop)
        _, p = integer(params, p, u_stop)
        _, p = integer(params, p, u_stop)
        name, _ = octets(params, p, u_stop)
        user = name.decode("utf-8", "replace")
    pdu: dict = {"pdu_type": None}
    d_tag, d_start, d_stop = tlv(data, pos, stop)
    if d_tag == SEQUENCE:                   # ScopedPDU: contextEngineID, contextName, PDU
        _, p = octets(data, d_start, d_stop)
        _, p = octets(data, p, d_stop)
        pdu = _pdu(data, p, d_stop)
    return SnmpMessage(meta, "v3", v3_auth=auth, v3_priv=priv, v3_user=user, **pdu)
