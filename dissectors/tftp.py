"""TFTP packets (RFC 1350, options RFC 2347): requests on port 69, then DATA/ACK/ERROR/OACK between the
transfer's own ports, which voipwatch.transfers follows by the request's addresses and ports."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from voipwatch.records import Anomaly, PacketMeta, at_packet, declare

TFTP_PORT = 69
RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6
OPCODES = {RRQ: "RRQ", WRQ: "WRQ", DATA: "DATA", ACK: "ACK", ERROR: "ERROR", OACK: "OACK"}
MODES = frozenset(("netascii", "octet", "mail"))     # RFC 1350 §5
MAX_BLOCK = 65464 + 4                                 # RFC 2348: blksize at most 65464 octets
FIRST_OCTETS = frozenset((0,))
_HEAD = struct.Struct("!HH")

ANOMALIES = {
    "tftp.malformed": "a datagram on port 69 that is no TFTP request (RFC 1350 §5: opcode, file name, mode)",
}


@dataclass(frozen=True, slots=True)
class TftpPacket:
    """One TFTP packet: a request names the file; DATA carries a block (its bytes, for reassembly)."""
    pkt: PacketMeta
    opcode: str
    filename: str | None = None
    mode: str | None = None
    block: int | None = None
    data: bytes = b""
    error_code: int | None = None
    error_msg: str | None = None


declare(TftpPacket, rank=60, timeline=at_packet)


def looks_like_request(payload: bytes) -> bool:
    """RRQ/WRQ: opcode 1 or 2, a NUL-terminated file name and a NUL-terminated mode of RFC 1350."""
    if len(payload) < 4 or payload[0] != 0 or payload[1] not in (RRQ, WRQ):
        return False
    parts = payload[2:].split(b"\0")
    return len(parts) >= 3 and bool(parts[0]) and parts[1].decode("latin-1").lower() in MODES


def looks_like_transfer(payload: bytes) -> bool:
    """DATA (opcode, block, <= 65464 bytes), ACK (exactly 4 bytes), ERROR (code 0-8, NUL-terminated text)
    or OACK (NUL-terminated option pairs). Tight, since it runs on ports nobody owns; voipwatch.transfers
    keeps only those of a transfer a request opened."""
    n = len(payload)
    if n < 4 or payload[0] != 0:
        return False
    op = payload[1]
    if op == DATA:
        return n <= MAX_BLOCK
    if op == ACK:
        return n == 4
    if op == ERROR:
        return payload[3] <= 8 and payload[2] == 0 and payload[-1] == 0 and n <= 516
    if op == OACK:
        return payload[-1] == 0 and n <= 516 and payload.count(b"\0") % 2 == 1
    return False


def parse(meta: PacketMeta, payload: bytes) -> tuple[TftpPacket | None, list[Anomaly]]:
    op = payload[1] if len(payload) > 1 else 0
    if op in (RRQ, WRQ):
        parts = payload[2:].split(b"\0")
        if len(parts) < 3:
            return None, [Anomaly(meta.ts, meta.frame, "tftp", "tftp.malformed", "request without mode",
                                  meta.src, meta.dst)]
        return TftpPacket(meta, OPCODES[op], filename=parts[0].decode("latin-1")[:512],
                          mode=parts[1].decode("latin-1").lower()[:16]), []
    if op in (DATA, ACK):
        block = _HEAD.unpack_from(payload)[1]
        return TftpPacket(meta, OPCODES[op], block=block, data=payload[4:] if op == DATA else b""), []
    if op == ERROR:
        code = _HEAD.unpack_from(payload)[1]
        return TftpPacket(meta, "ERROR", error_code=code,
                          error_msg=payload[4:].split(b"\0", 1)[0].decode("latin-1")[:256]), []
    return TftpPacket(meta, "OACK"), []
