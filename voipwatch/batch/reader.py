"""Record scanning for the vectorised batch path: capture files as (offset, ts, caplen) arrays.

Records are found by following the length fields from the first record of a chunk. Most of the
walk is vectorised: every position whose header looks like a record of the current second (the
timestamp's upper bytes match, the lengths are plausible) is a candidate, each candidate points
at the record its length field says comes next, and the records are the chain of candidates
reached from the known first one. A position a chain does not reach is never taken, so the result
is exactly that of the one-record-at-a-time walk, which handles whatever the chain stops at (a new
timestamp pattern, a block that is not a packet, the end of the chunk, an irregular record).
Link, IP, UDP and RTP header fields are then gathered with numpy from the record offsets
(see batch/driver.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voipwatch.capture_format import (BLOCK_HEADER, BYTE_ORDER_MAGICS, DEFAULT_UNITS, EPB, EPB_BODY, IDB, IDB_BODY,
                                      IDB_OPTIONS_AT, LINKTYPE_MASK, MAX_CAPLEN, MIN_ANY_BLOCK, MIN_BLOCK, PB,
                                      PCAP_HEADER, PCAP_MAGICS, PCAP_RECORD, SHB, SHB_BODY, SHB_MAGIC, SPB, BadOption,
                                      idb_options)

# Bytes of packet data the batch path may read per record: enough for a link header with 3 VLAN tags
# (32 octets at most), an IPv4 header with options or an IPv6 header, UDP and the RTP fixed header
# (batch.candidates). Chunks are padded with this many zero bytes.
HEAD = 128
# The vectorised walk looks for candidates this many bytes ahead at a time; when it finds fewer than
# MIN_RUN records in a window, the next STEP_RECORDS records are walked one at a time.
WINDOW_BYTES = 1 << 20
MIN_RUN = 64
STEP_RECORDS = 1024


@dataclass
class Records:
    """One chunk's records: packet data offsets into `buf`, lengths, timestamps, link types."""
    buf: bytearray            # the chunk, followed by HEAD zero bytes of padding
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


class Scanner:
    """Walks a pcap or pcapng byte stream chunk by chunk.

    It stops at the first record the generic reader would report anything about (a corrupt or
    truncated length, a captured length over the snaplen, a block type it leaves to the generic
    reader) and sets `irregular`; the caller hands the rest of the file to voipwatch.capture.
    """

    def __init__(self, head: bytes):
        magic = head[:4]
        self.irregular = False
        if magic in PCAP_MAGICS and len(head) >= PCAP_HEADER["<"].size:
            self.kind = "pcap"
            self.order, self.units = PCAP_MAGICS[magic]
            _, major, _, _, _, snaplen, network = PCAP_HEADER[self.order].unpack_from(head)
            if major != 2:
                raise ScanError(f"pcap version {major}")
            self.linktype = network & LINKTYPE_MASK
            self.limit = min(snaplen, MAX_CAPLEN) if snaplen else MAX_CAPLEN
            self.header_len = PCAP_HEADER["<"].size
        elif magic == SHB_MAGIC:
            self.kind = "pcapng"
            self.order = "<"
            self.interfaces: list[_Interface] = []
            self.header_len = 0
        else:
            raise ScanError(f"not a pcap/pcapng file (magic {magic.hex()})")

    def scan(self, buf: bytearray, end: int, base: int) -> tuple[Records, int]:
        """Records wholly inside buf[:end] (buf is padded past end with HEAD zero bytes).

        `base` is the file offset of buf[0]. Returns the records and the number of bytes consumed.
        """
        if self.kind == "pcap":
            return self._scan_pcap(buf, end, base)
        return self._scan_pcapng(buf, end, base)

    # -- pcap ---------------------------------------------------------------------------------
    def _scan_pcap(self, buf: bytearray, end: int, base: int) -> tuple[Records, int]:
        rec, used = self._walk(buf, end, self._pcap_chain, self._pcap_steps)
        fields = gather_rows(buf, rec, 16).view(np.dtype(self.order + "u4")).astype(np.int64)
        # voipwatch.capture: ts = sec + frac / units (the same IEEE operations, so the same bits).
        ts = fields[:, 0] + fields[:, 1] / self.units
        records = Records(buf, rec + 16, fields[:, 2], fields[:, 3], ts,
                          np.full(len(rec), self.linktype, dtype=np.int64), rec + base)
        return records, used

    def _pcap_chain(self, u8: np.ndarray, off: int, end: int) -> np.ndarray:
        """Offsets of the records chained from the one at `off` within one window (vectorised)."""
        last = min(end, off + WINDOW_BYTES) - 16          # the last header start considered
        if last < off:
            return _EMPTY
        # The upper three bytes of ts_sec: those of the record at `off`.
        top = (1, 2, 3) if self.order == "<" else (0, 1, 2)
        first = top[0]
        hits = np.flatnonzero(u8[off + first:last + first + 1] == u8[off + first]) + off
        for k in top[1:]:
            hits = hits[u8[hits + k] == u8[off + k]]
        fields = gather_rows(u8, hits, 16).view(np.dtype(self.order + "u4"))
        caplen = fields[:, 2].astype(np.int64)
        nxt = hits + 16 + caplen
        # Plausible headers only (a record that is not one ends the chain, and the single steps take it).
        ok = (caplen <= self.limit) & (fields[:, 2] <= fields[:, 3]) & (fields[:, 1] < self.units) & (nxt <= end)
        return _chain(hits[ok], nxt[ok], off)

    def _pcap_steps(self, buf: bytearray, off: int, end: int) -> tuple[list[int], int, bool]:
        """Up to STEP_RECORDS records one at a time: (offsets, next offset, whether the chunk is done)."""
        record = PCAP_RECORD[self.order].unpack_from
        limit = self.limit
        offs: list[int] = []
        while off + 16 <= end and len(offs) < STEP_RECORDS:
            caplen = record(buf, off)[2]
            if caplen > limit:
                self.irregular = True
                return offs, off, True
            if off + 16 + caplen > end:
                return offs, off, True
            offs.append(off)
            off += 16 + caplen
        return offs, off, off + 16 > end

    # -- pcapng -------------------------------------------------------------------------------
    def _scan_pcapng(self, buf: bytearray, end: int, base: int) -> tuple[Records, int]:
        rec, used = self._walk(buf, end, self._pcapng_chain,
                               lambda buf, off, end: self._pcapng_steps(buf, off, end, base))
        fields = gather_rows(buf, rec + 8, 20).view(np.dtype(self.order + "u4")).astype(np.int64)
        table = self.interfaces or [_Interface(0, 0, DEFAULT_UNITS, 0)]
        iface = fields[:, 0]
        linktype = np.asarray([i.linktype for i in table], dtype=np.int64)[iface]
        units = np.asarray([i.units for i in table], dtype=np.int64)[iface]
        offset_s = np.asarray([i.offset_s for i in table], dtype=np.int64)[iface]
        raw = (fields[:, 1] << 32) | fields[:, 2]
        # voipwatch.capture: q, r = divmod(raw, units); ts = offset + q + r / units.
        ts = (offset_s + raw // units) + (raw % units) / units
        return Records(buf, rec + 28, fields[:, 3], fields[:, 4], ts, linktype, rec + base), used

    def _pcapng_chain(self, u8: np.ndarray, off: int, end: int) -> np.ndarray:
        """Offsets of the enhanced packet blocks chained from the one at `off` within one window."""
        last = min(end, off + WINDOW_BYTES) - MIN_BLOCK[EPB]
        if last < off or not self.interfaces:
            return _EMPTY
        # Block type 6 and the timestamp's upper 32 bits of the block at `off`, byte for byte.
        pattern = [(k, u8[off + k]) for k in (12, 13, 14, 15, 0, 1, 2, 3)]
        at, value = pattern[0]
        hits = np.flatnonzero(u8[off + at:last + at + 1] == value) + off
        for k, v in pattern[1:]:
            hits = hits[u8[hits + k] == v]
        dtype = np.dtype(self.order + "u4")
        fields = gather_rows(u8, hits, 28).view(dtype).astype(np.int64)
        btype, blen, iface, caplen = fields[:, 0], fields[:, 1], fields[:, 2], fields[:, 5]
        nxt = hits + blen
        snaplen = np.asarray([i.snaplen for i in self.interfaces], dtype=np.int64)
        ok = ((btype == EPB) & (blen >= MIN_BLOCK[EPB]) & (blen % 4 == 0) & (nxt <= end) & (iface < len(snaplen))
              & (caplen <= blen - 32) & (caplen <= MAX_CAPLEN))
        hits, nxt, blen, iface, caplen = hits[ok], nxt[ok], blen[ok], iface[ok], caplen[ok]
        snap = snaplen[iface]
        trailer = gather_rows(u8, nxt - 4, 4).view(dtype)[:, 0]
        ok = ((snap == 0) | (caplen <= snap)) & (trailer == blen)
        return _chain(hits[ok], nxt[ok], off)

    def _pcapng_steps(self, buf: bytearray, off: int, end: int, base: int) -> tuple[list[int], int, bool]:
        """Up to STEP_RECORDS blocks one at a time: (EPB offsets, next offset, whether the chunk is done)."""
        offs: list[int] = []
        blocks = 0
        while off + 12 <= end and blocks < STEP_RECORDS:
            blocks += 1
            if buf[off:off + 4] == SHB_MAGIC:               # a section fixes its own byte order
                order = BYTE_ORDER_MAGICS.get(bytes(buf[off + 8:off + 12]))
                if order is None:
                    self.irregular = True
                    return offs, off, True
                self.order = order
            order = self.order
            btype, blen = BLOCK_HEADER[order].unpack_from(buf, off)
            if blen < MIN_BLOCK.get(btype, MIN_ANY_BLOCK) or blen % 4 or btype in (PB, SPB):
                self.irregular = True
                return offs, off, True
            if off + blen > end:
                if blen > MAX_CAPLEN + 4096:
                    self.irregular = True
                return offs, off, True
            if BLOCK_HEADER[order].unpack_from(buf, off + blen - 8)[1] != blen:
                self.irregular = True
                return offs, off, True
            if btype == EPB:
                iface, _, _, caplen, _ = EPB_BODY[order].unpack_from(buf, off + 8)
                if (iface >= len(self.interfaces) or caplen > blen - 32 or caplen > MAX_CAPLEN
                        or (self.interfaces[iface].snaplen and caplen > self.interfaces[iface].snaplen)):
                    self.irregular = True
                    return offs, off, True
                offs.append(off)
            elif btype == IDB:
                linktype, _, snaplen = IDB_BODY[order].unpack_from(buf, off + 8)
                try:
                    options = idb_options(buf[off + IDB_OPTIONS_AT:off + blen - 4], order)
                except BadOption:
                    self.irregular = True
                    return offs, off, True
                self.interfaces.append(_Interface(linktype, snaplen, *options))
            elif btype == SHB:
                # A second section (new interfaces, maybe another byte order) goes to the generic reader.
                if base + off != 0 or SHB_BODY[order].unpack_from(buf, off + 8)[1] != 1:
                    self.irregular = True
                    return offs, off, True
            off += blen
        return offs, off, off + 12 > end

    # -- both ---------------------------------------------------------------------------------
    def _walk(self, buf: bytearray, end: int, chain, steps) -> tuple[np.ndarray, int]:
        """Record offsets in buf[:end] and the bytes consumed: vectorised chains, else single steps."""
        u8 = np.frombuffer(buf, dtype=np.uint8)
        parts: list = []
        off = 0
        while True:
            run = chain(u8, off, end)
            if len(run):
                parts.append(run)
                off = int(run[-1]) + self._length(buf, int(run[-1]))
            if len(run) < MIN_RUN:
                offs, off, done = steps(buf, off, end)
                parts.append(np.asarray(offs, dtype=np.int64))
                if done:
                    break
        return (np.concatenate(parts) if parts else _EMPTY), off

    def _length(self, buf: bytearray, off: int) -> int:
        """Total length of the record at `off` (header included)."""
        if self.kind == "pcap":
            return PCAP_RECORD["<"].size + PCAP_RECORD[self.order].unpack_from(buf, off)[2]
        return BLOCK_HEADER[self.order].unpack_from(buf, off)[1]


_EMPTY = np.zeros(0, dtype=np.int64)


def _chain(starts: np.ndarray, nexts: np.ndarray, first: int) -> np.ndarray:
    """The starts reached from `first` by following nexts, while each next is itself a start.

    `starts` is sorted and nexts[i] > starts[i]. A start that is no record (a header-like pattern
    inside a packet) is never reached from a record, so it is left out.
    """
    k = len(starts)
    if not k or starts[0] != first:
        return _EMPTY
    succ = np.searchsorted(starts, nexts)
    succ[(succ >= k) | (starts[np.minimum(succ, k - 1)] != nexts)] = k     # k: the chain ends here
    breaks = np.flatnonzero(succ != np.arange(1, k + 1))
    if not len(breaks) or succ[breaks[0]] == k:          # the usual case: each start leads to the next
        return starts[:breaks[0] + 1] if len(breaks) else starts
    # Some starts are skipped: mark the reached ones by pointer doubling, s^(t + 2^m) from s^t.
    jump = np.append(succ, k)
    reached = np.zeros(k + 1, dtype=bool)
    reached[0] = True
    while True:
        new = jump[np.flatnonzero(reached)]
        if reached[new].all():
            break
        reached[new] = True
        jump = jump[jump]
    return starts[reached[:k]]


def gather_rows(buf, offsets: np.ndarray, width: int) -> np.ndarray:
    """(n, width) uint8: the `width` bytes at each offset (buf carries at least HEAD bytes of padding).

    The buffer is viewed as overlapping width-byte items, one per byte offset, so the gather copies
    whole items.
    """
    items = np.ndarray(shape=(len(buf) - width + 1,), dtype=np.dtype((np.void, width)), buffer=buf, strides=(1,))
    return items[offsets].view(np.uint8).reshape(-1, width)
