"""Record scanning for the vectorised batch path: capture files as (offset, ts, caplen) arrays.

The per-record loop is the one part of the batch path that must touch every record in Python; it
only follows the length fields. Everything else (link, IPv4, UDP and RTP header fields) is then
gathered with numpy from the record offsets (see fastpath.py).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

PCAP_MAGICS = {   # magic -> (byte order, timestamp units per second)
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000), b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000), b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
# pcapng block types (draft-ietf-opsawg-pcapng §4): SHB, IDB, EPB; PB (2) and SPB (3) are left to the
# generic reader, like every irregular record.
BT_SHB, BT_IDB, BT_PB, BT_SPB, BT_EPB = 0x0A0D0D0A, 1, 2, 3, 6
MAX_CAPLEN = 256 * 1024          # voipwatch.capture.MAX_CAPLEN: larger lengths are corrupt records
# Bytes of packet data gathered per record: enough for Ethernet + 3 VLAN tags + IPv4 + UDP + the RTP
# fixed header with CSRCs. Chunks are padded with this many zero bytes.
HEAD = 128


@dataclass
class Records:
    """One chunk's records: packet data offsets into `buf`, lengths, timestamps, link types."""
    buf: bytes                # the chunk, followed by HEAD zero bytes of padding
    head: np.ndarray          # (n, HEAD) uint8: the first HEAD bytes at each record's packet data
    data_off: np.ndarray      # int64 offset of each record's packet data in buf
    caplen: np.ndarray        # int64
    wire_len: np.ndarray      # int64
    ts: np.ndarray            # float64 seconds, computed exactly as voipwatch.capture computes them
    linktype: np.ndarray      # int64
    file_off: np.ndarray      # int64 offset of each record in the file


class ScanError(Exception):
    """The file is not a capture the scanner can walk (the generic reader then decides)."""


@dataclass
class _Interface:
    linktype: int
    snaplen: int
    units: int                # timestamp units per second (if_tsresol)
    offset_s: int             # if_tsoffset


def _idb_options(options: bytes, order: str) -> tuple[int, int]:
    """IDB options if_tsresol (9) and if_tsoffset (14) as (units per second, offset seconds)."""
    units, offset, pos = 1_000_000, 0, 0
    while pos + 4 <= len(options):
        code, length = struct.unpack_from(order + "HH", options, pos)
        value = options[pos + 4:pos + 4 + length]
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = value[0]
            units = 1 << (v & 0x7F) if v & 0x80 else 10 ** v
        elif code == 14 and length >= 8:
            offset = struct.unpack_from(order + "q", value)[0]
        pos += 4 + ((length + 3) & ~3)
    return units, offset


class Scanner:
    """Walks a pcap or pcapng byte stream chunk by chunk.

    It stops at the first record the generic reader would report anything about (a corrupt or
    truncated length, a captured length over the snaplen, a block type it leaves to the generic
    reader) and sets `irregular`; the caller hands the rest of the file to voipwatch.capture.
    """

    def __init__(self, head: bytes):
        magic = head[:4]
        self.irregular = False
        if magic in PCAP_MAGICS and len(head) >= 24:
            self.kind = "pcap"
            self.order, self.units = PCAP_MAGICS[magic]
            major, _, _, _, snaplen, network = struct.unpack_from(self.order + "HHiIII", head, 4)
            if major != 2:
                raise ScanError(f"pcap version {major}")
            self.linktype = network & 0xFFFF
            self.limit = min(snaplen, MAX_CAPLEN) if snaplen else MAX_CAPLEN
            self.header_len = 24
        elif magic == PCAPNG_SHB:
            self.kind = "pcapng"
            self.order = "<"
            self.interfaces: list[_Interface] = []
            self.header_len = 0
        else:
            raise ScanError(f"not a pcap/pcapng file (magic {magic.hex()})")

    def scan(self, buf: bytes, end: int, base: int) -> tuple[Records, int]:
        """Records wholly inside buf[:end] (buf is padded past end with HEAD zero bytes).

        `base` is the file offset of buf[0]. Returns the records and the number of bytes consumed.
        """
        if self.kind == "pcap":
            return self._scan_pcap(buf, end, base)
        return self._scan_pcapng(buf, end, base)

    def _scan_pcap(self, buf: bytes, end: int, base: int):
        caplen_at = struct.Struct(self.order + "I").unpack_from
        limit = self.limit
        offs: list[int] = []
        append = offs.append
        off = 0
        while off + 16 <= end:
            caplen = caplen_at(buf, off + 8)[0]
            if caplen > limit:
                self.irregular = True
                break
            if off + 16 + caplen > end:
                break
            append(off)
            off += 16 + caplen
        rec = np.asarray(offs, dtype=np.int64)
        rows = _gather(buf, rec, 16 + HEAD)
        fields = rows[:, :16].copy().view(np.dtype(self.order + "u4")).astype(np.int64)
        # voipwatch.capture: ts = sec + frac / units (the same IEEE operations, so the same bits).
        ts = fields[:, 0] + fields[:, 1] / self.units
        records = Records(buf, np.ascontiguousarray(rows[:, 16:]), rec + 16, fields[:, 2], fields[:, 3], ts,
                          np.full(len(rec), self.linktype, dtype=np.int64), rec + base)
        return records, off

    def _scan_pcapng(self, buf: bytes, end: int, base: int):
        offs: list[int] = []
        ifaces: list[int] = []
        off = 0
        while off + 12 <= end:
            order = self.order
            btype = struct.unpack_from(order + "I", buf, off)[0]
            if btype == BT_SHB:
                order = self.order = "<" if buf[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            blen = struct.unpack_from(order + "I", buf, off + 4)[0]
            if blen < 12 or blen % 4 or btype in (BT_PB, BT_SPB):
                self.irregular = True
                break
            if off + blen > end:
                if blen > MAX_CAPLEN + 4096:
                    self.irregular = True
                break
            if struct.unpack_from(order + "I", buf, off + blen - 4)[0] != blen:
                self.irregular = True
                break
            if btype == BT_EPB:
                iface, _, _, caplen = struct.unpack_from(order + "IIII", buf, off + 8)
                if (iface >= len(self.interfaces) or caplen > blen - 32 or caplen > MAX_CAPLEN
                        or (self.interfaces[iface].snaplen and caplen > self.interfaces[iface].snaplen)):
                    self.irregular = True
                    break
                offs.append(off)
                ifaces.append(iface)
            elif btype == BT_IDB:
                linktype, _, snaplen = struct.unpack_from(order + "HHI", buf, off + 8)
                self.interfaces.append(_Interface(linktype, snaplen, *_idb_options(buf[off + 16:off + blen - 4], order)))
            elif btype == BT_SHB:
                # A second section (new interfaces, maybe another byte order) goes to the generic reader.
                if base + off != 0 or struct.unpack_from(order + "H", buf, off + 12)[0] != 1:
                    self.irregular = True
                    break
            off += blen
        rec = np.asarray(offs, dtype=np.int64)
        iface = np.asarray(ifaces, dtype=np.int64)
        rows = _gather(buf, rec, 28 + HEAD)
        fields = rows[:, 8:28].copy().view(np.dtype(self.order + "u4")).astype(np.int64)
        table = self.interfaces or [_Interface(0, 0, 1_000_000, 0)]
        linktype = np.asarray([i.linktype for i in table], dtype=np.int64)[iface]
        units = np.asarray([i.units for i in table], dtype=np.int64)[iface]
        offset_s = np.asarray([i.offset_s for i in table], dtype=np.int64)[iface]
        raw = (fields[:, 1] << 32) | fields[:, 2]
        # voipwatch.capture: q, r = divmod(raw, units); ts = offset + q + r / units.
        ts = (offset_s + raw // units) + (raw % units) / units
        return Records(buf, np.ascontiguousarray(rows[:, 28:]), rec + 28, fields[:, 3], fields[:, 4], ts, linktype, rec + base), off


def _gather(buf: bytes, offsets: np.ndarray, width: int) -> np.ndarray:
    """Rows of `width` bytes starting at each offset (buf carries at least HEAD bytes of padding)."""
    u8 = np.frombuffer(buf, dtype=np.uint8)
    if len(offsets) == 0:
        return np.zeros((0, width), dtype=np.uint8)
    windows = np.lib.stride_tricks.as_strided(u8, shape=(len(u8) - width + 1, width), strides=(1, 1))
    return windows[offsets]
