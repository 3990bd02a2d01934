"""Record scanning for the vectorised batch path: capture files as (offset, ts, caplen) arrays.

The per-record loop is the one part of the batch path that must touch every record in Python; it
only follows the length fields. Everything else (link, IPv4, UDP and RTP header fields) is then
gathered with numpy from the record offsets (see fastpath.py).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),   # microsecond
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9),   # nanosecond
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
# pcapng block types (draft-ietf-opsawg-pcapng §4): SHB, IDB, EPB.
BT_SHB, BT_IDB, BT_EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
MAX_RECORD = 262_144 + 64
# Bytes of packet data gathered per record: enough for Ethernet + 3 VLAN tags + IPv4 with options
# (60) + UDP (8) + the RTP fixed header with CSRCs. Chunks are padded with this many zero bytes.
HEAD = 128


@dataclass
class Records:
    """One chunk's records: data offsets into `buf`, capture lengths, wire lengths, timestamps, link types."""
    buf: bytes                # the chunk, followed by HEAD zero bytes of padding
    head: np.ndarray          # (n, HEAD) uint8: the first HEAD bytes at each record's packet data
    data_off: np.ndarray      # int64 offset of each record's packet data in buf
    caplen: np.ndarray        # int64
    wire_len: np.ndarray      # int64
    ts: np.ndarray            # float64 seconds
    linktype: np.ndarray      # int32
    file_off: np.ndarray      # int64 offset of each record in the file


class ScanError(Exception):
    """The file is not a capture the scanner can walk (the generic reader then decides)."""


@dataclass
class _PcapngState:
    order: str = "<"
    interfaces: list[tuple[int, float, float]] = field(default_factory=list)  # (linktype, resolution, offset)


def _if_tsresol(options: bytes, order: str) -> tuple[float, float]:
    """IDB options if_tsresol (9) and if_tsoffset (14); default resolution 10^-6 s."""
    resol, offset, pos = 1e-6, 0.0, 0
    while pos + 4 <= len(options):
        code, length = struct.unpack_from(order + "HH", options, pos)
        value = options[pos + 4:pos + 4 + length]
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = value[0]
            resol = 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
        elif code == 14 and length >= 8:
            offset = float(struct.unpack_from(order + "q", value)[0])
        pos += 4 + ((length + 3) & ~3)
    return resol, offset


class Scanner:
    """Walks a pcap or pcapng byte stream chunk by chunk; records never straddle chunks it returns."""

    def __init__(self, head: bytes):
        magic = head[:4]
        if magic in PCAP_MAGICS:
            self.kind = "pcap"
            self.order, self.resolution = PCAP_MAGICS[magic]
            self.linktype = struct.unpack_from(self.order + "I", head, 20)[0] & 0x0FFFFFFF
            self.header_len = 24
        elif magic == PCAPNG_SHB:
            self.kind = "pcapng"
            self.ng = _PcapngState()
            self.header_len = 0
        else:
            raise ScanError(f"not a pcap/pcapng file (magic {magic.hex()})")
        self.truncated = False

    def scan(self, buf: bytes, end: int, base: int) -> tuple[Records, int]:
        """Records wholly inside buf[:end] (buf is padded past end with HEAD zero bytes).

        `base` is the file offset of buf[0]. Returns the records and the number of bytes consumed.
        """
        if self.kind == "pcap":
            return self._scan_pcap(buf, end, base)
        return self._scan_pcapng(buf, end, base)

    def _scan_pcap(self, buf: bytes, end: int, base: int):
        caplen_at = struct.Struct(self.order + "I").unpack_from
        offs: list[int] = []
        append = offs.append
        off = 0
        while off + 16 <= end:
            caplen = caplen_at(buf, off + 8)[0]
            if caplen > MAX_RECORD:
                self.truncated = True   # a corrupt length: the generic reader reports it precisely
                break
            if off + 16 + caplen > end:
                break
            append(off)
            off += 16 + caplen
        rec = np.asarray(offs, dtype=np.int64)
        rows = _gather(buf, rec, 16 + HEAD)
        fields = rows[:, :16].copy().view(np.dtype(self.order + "u4")).astype(np.int64)
        # Same float arithmetic as voipwatch.capture, so both paths agree to the last bit.
        ts = fields[:, 0] + fields[:, 1] * self.resolution
        records = Records(buf, rows[:, 16:], rec + 16, fields[:, 2], fields[:, 3], ts,
                          np.full(len(rec), self.linktype, dtype=np.int32), rec + base)
        return records, off

    def _scan_pcapng(self, buf: bytes, end: int, base: int):
        ng = self.ng
        offs: list[int] = []
        ifaces: list[int] = []
        off = 0
        while off + 12 <= end:
            btype = struct.unpack_from(ng.order + "I", buf, off)[0]
            if btype == BT_SHB:
                bom = buf[off + 8:off + 12]
                ng.order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
                ng.interfaces = []
            blen = struct.unpack_from(ng.order + "I", buf, off + 4)[0]
            if blen < 12 or blen % 4 or blen > MAX_RECORD + 64:
                self.truncated = True
                break
            if off + blen > end:
                break
            if btype == BT_EPB:
                offs.append(off)
                ifaces.append(struct.unpack_from(ng.order + "I", buf, off + 8)[0])
            elif btype == BT_IDB:
                linktype = struct.unpack_from(ng.order + "H", buf, off + 8)[0]
                resol, tsoff = _if_tsresol(buf[off + 16:off + blen - 4], ng.order)
                ng.interfaces.append((linktype, resol, tsoff))
            off += blen
        rec = np.asarray(offs, dtype=np.int64)
        iface = np.asarray(ifaces, dtype=np.int64)
        if len(iface) and iface.max() >= len(ng.interfaces):
            raise ScanError("enhanced packet block names an undeclared interface")
        rows = _gather(buf, rec, 28 + HEAD)
        fields = rows[:, 8:28].copy().view(np.dtype(ng.order + "u4")).astype(np.int64)
        table = np.asarray(ng.interfaces or [(0, 1e-6, 0.0)], dtype=np.float64)
        linktype = table[iface, 0].astype(np.int32) if len(rec) else np.zeros(0, np.int32)
        raw = (fields[:, 1].astype(np.uint64) << np.uint64(32)) | fields[:, 2].astype(np.uint64)
        ts = raw.astype(np.float64) * table[iface, 1] + table[iface, 2] if len(rec) else np.zeros(0)
        return Records(buf, rows[:, 28:], rec + 28, fields[:, 3], fields[:, 4], ts, linktype, rec + base), off


def _gather(buf: bytes, offsets: np.ndarray, width: int) -> np.ndarray:
    """Rows of `width` bytes starting at each offset (buf carries at least HEAD bytes of padding)."""
    u8 = np.frombuffer(buf, dtype=np.uint8)
    if len(offsets) == 0:
        return np.zeros((0, width), dtype=np.uint8)
    windows = np.lib.stride_tricks.as_strided(u8, shape=(len(u8) - width + 1, width), strides=(1, 1))
    return windows[offsets]
