"""Capture file readers: pcap and pcapng, plain or compressed (gzip, zstd, xz), from a path or stdin.

Own struct-based readers (not dpkt's): one tight loop per format slices records out of 1 MiB
chunks with ``struct.unpack_from``. Header damage raises ``CaptureError`` before any frame is
yielded; damage after that is an ``Anomaly`` (layer "capture") and reading stops cleanly.
"""
from __future__ import annotations

import heapq
import sys
from typing import BinaryIO, Callable, Iterator

from voipwatch import compressed
from voipwatch.capture_format import (BLOCK_HEADER, BYTE_ORDER_MAGICS, EPB, EPB_BODY, IDB, IDB_BODY, IDB_OPTIONS_AT,
                                      LINKTYPE_MASK, MAX_CAPLEN, MIN_ANY_BLOCK, MIN_BLOCK, PB, PB_BODY, PCAP_HEADER,
                                      PCAP_MAGICS, PCAP_RECORD, SHB, SHB_BODY, SHB_MAGIC, SPB, SPB_BODY, BadOption,
                                      idb_options)
from voipwatch.records import Anomaly, Frame

CHUNK_BYTES = 1 << 20            # read size of the buffered loop
MAX_BLOCK_BYTES = 16 << 20       # larger pcapng blocks are corrupt (the packet cap plus generous options)

# Every Anomaly.name the readers produce (layer "capture"), with its meaning.
ANOMALIES = {
    "capture.truncated_record": "the file ends inside a record or block (a capture cut short, or a broken "
                                "compressed stream): reading stops",
    "capture.bad_record_length": f"a record or block length that cannot be right (over {MAX_CAPLEN} captured "
                                 "bytes, not a multiple of 4, or disagreeing with its trailer)",
    "capture.caplen_exceeds_snaplen": "a record longer than the file's snapshot length: decoded anyway",
    "capture.bad_interface_id": "a pcapng packet block naming an interface its section did not describe",
    "capture.bad_section_header": "a pcapng section header of unknown byte order or version: reading stops",
}
# Those that describe a frame also yielded (just before them); every other one stands for a record
# that never became a frame.
FRAME_NOTES = frozenset(("capture.caplen_exceeds_snaplen",))

# Formats recognised only to name them in the error.
_OTHER_FORMATS = {b"GMBU": "Microsoft NetMon 2.x", b"RTSS": "Microsoft NetMon 1.x",
                  b"snoo": "Solaris snoop", b"\xa1\xb2\xcd\x34": "modified (Kuznetzov) pcap",
                  b"\x34\xcd\xb2\xa1": "modified (Kuznetzov) pcap"}


_Read = Callable[[int], bytes]       # read(size): size bytes unless the input ends
_State = dict[str, "str | None"]      # {"error": why decompression stopped, or None}


class CaptureError(Exception):
    """A capture whose header cannot be read: names the file and the byte offset."""

    def __init__(self, path: str, offset: int, message: str) -> None:
        self.path = path
        self.offset = offset
        self.message = message
        super().__init__(f"{_display(path)}: offset {offset}: {message}")


def _display(path: str) -> str:
    return "<stdin>" if path == "-" else path


# Frame is a frozen slotted dataclass; its generated __init__ routes every field through
# object.__setattr__ (~0.75 µs). Setting the slots through their descriptors builds the identical
# object in about half the time, which is most of the per-record budget of the reader loop.
_new = object.__new__
_set_ts, _set_frame = Frame.ts.__set__, Frame.frame.__set__  # type: ignore[attr-defined]
_set_lt = Frame.linktype.__set__  # type: ignore[attr-defined]
_set_data, _set_wl = Frame.data.__set__, Frame.wire_len.__set__  # type: ignore[attr-defined]
_set_src, _set_off = Frame.source.__set__, Frame.offset.__set__  # type: ignore[attr-defined]


def _frame(ts: float, n: int, lt: int, data: bytes, wl: int, source: int, off: int) -> Frame:
    f = _new(Frame)
    _set_ts(f, ts); _set_frame(f, n); _set_lt(f, lt); _set_data(f, data)  # noqa: E702
    _set_wl(f, wl); _set_src(f, source); _set_off(f, off)  # noqa: E702
    return f


class _Prefixed:
    """A read()-able stream that first returns bytes already consumed (the format sniffing)."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        head = self._head
        if not head:
            return self._stream.read(size)
        if size < 0:
            self._head = b""
            return head + self._stream.read()
        self._head = head[size:]
        return head[:size] if len(head) >= size else head + self._stream.read(size - len(head))

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def read_capture(path: str, source: int = 0) -> Iterator[Frame | Anomaly]:
    """Yield the frames of one pcap/pcapng file (plain, or gzip, zstd or xz compressed); "-" reads stdin.

    Frame.frame is the 1-based index within this file and Frame.offset the byte offset of its
    record in the uncompressed file. Unsupported link types are yielded as they are.
    """
    if path == "-":
        yield from _read_stream(path, sys.stdin.buffer, source)
        return
    try:
        fh = open(path, "rb", buffering=CHUNK_BYTES)
    except OSError as exc:
        raise CaptureError(path, 0, f"cannot open: {exc.strerror or exc}") from exc
    with fh:
        yield from _read_stream(path, fh, source)


def _read_stream(path: str, raw: BinaryIO, source: int) -> Iterator[Frame | Anomaly]:
    read, state = _guarded(raw.read)
    head = read(4)
    compression = compressed.kind(head)
    if compression is not None:
        with compressed.open_stream(compression, _Prefixed(head, raw), exact=True) as stream:  # type: ignore[arg-type]
            read, state = _guarded(stream.read1)
            head = read(4)
            if state["error"] is not None:
                raise CaptureError(path, 0, f"bad {compression} stream: {state['error']}")
            yield from _dispatch(path, read, state, head, source)
        return
    yield from _dispatch(path, read, state, head, source)


def _dispatch(path: str, read: _Read, state: _State, head: bytes, source: int) -> Iterator[Frame | Anomaly]:
    if len(head) < 4:
        raise CaptureError(path, 0, "file too short for a capture header" if head else "empty file")
    if head in PCAP_MAGICS:
        return _read_pcap(path, read, state, head, source)
    if head == SHB_MAGIC:
        return _read_pcapng(path, read, state, head, source)
    name = _OTHER_FORMATS.get(head)
    kind = f"unsupported format {name}" if name else "unknown file format"
    raise CaptureError(path, 0, f"{kind} (magic 0x{head.hex()})")


def _guarded(read: _Read) -> tuple[_Read, _State]:
    """A read(size) that fills size bytes unless input ends; a broken compressed stream also ends it.

    The error is kept (state["error"]) and named in the truncation anomaly; bytes decompressed
    before it are still returned, so every whole record before the damage is read.
    """
    state: _State = {"error": None}

    def safe_read(size: int) -> bytes:
        if state["error"] is not None:
            return b""
        parts, got = [], 0
        try:
            while got < size:
                more = read(size - got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
        except compressed.DECOMPRESSION_ERRORS as exc:   # a corrupt or cut compressed stream
            state["error"] = str(exc) or type(exc).__name__
        return parts[0] if len(parts) == 1 else b"".join(parts)
    return safe_read, state


def _stop(path: str, name: str, ts: float, n: int, off: int, detail: str, state: _State) -> Anomaly:
    if state["error"] is not None and name == "capture.truncated_record":
        detail += f" (decompression stopped: {state['error']})"
    return Anomaly(ts, n, "capture", name, f"{_display(path)}: offset {off}: {detail}")



def _refill(read, buf: bytes, pos: int, base: int) -> tuple[bytes, int, int, int]:
    """The unread rest of the buffer followed by the next chunk: (buffer, its file offset, 0, its length)."""
    buf = buf[pos:] + read(CHUNK_BYTES)
    return buf, base + pos, 0, len(buf)


def _read_pcap(path: str, read: _Read, state: _State, head: bytes, source: int) -> Iterator[Frame | Anomaly]:
    endian, div = PCAP_MAGICS[head]
    hdr = head + read(PCAP_HEADER[endian].size - 4)
    if len(hdr) < PCAP_HEADER[endian].size:
        raise CaptureError(path, len(hdr), "truncated pcap file header")
    _, major, minor, _, _, snaplen, network = PCAP_HEADER[endian].unpack(hdr)
    if major != 2:
        raise CaptureError(path, 4, f"unsupported pcap version {major}.{minor}")
    linktype = network & LINKTYPE_MASK
    limit = min(snaplen, MAX_CAPLEN) if snaplen else MAX_CAPLEN
    unpack = PCAP_RECORD[endian].unpack_from
    new, set_ts, set_frame, set_lt, set_data = _new, _set_ts, _set_frame, _set_lt, _set_data
    set_wl, set_src, set_off = _set_wl, _set_src, _set_off
    buf, pos, base, end_buf = b"", 0, len(hdr), 0
    n, ts = 0, 0.0
    while True:
        if pos + 16 > end_buf:
            buf, base, pos, end_buf = _refill(read, buf, pos, base)
            if end_buf < 16:
                if end_buf or state["error"] is not None:
                    yield _stop(path, "capture.truncated_record", ts, n + 1, base,
                                f"record header needs 16 bytes, {end_buf} left", state)
                return
        sec, frac, caplen, wire_len = unpack(buf, pos)
        if caplen > MAX_CAPLEN:
            yield _stop(path, "capture.bad_record_length", ts, n + 1, base + pos,
                        f"captured length {caplen} exceeds {MAX_CAPLEN}", state)
            return
        start = pos + 16
        stop = start + caplen
        if stop > end_buf:
            buf = buf[pos:] + read(max(CHUNK_BYTES, stop - pos))
            base += pos
            pos, start, stop, end_buf = 0, 16, 16 + caplen, len(buf)
            if stop > end_buf:
                yield _stop(path, "capture.truncated_record", ts, n + 1, base,
                            f"record needs {16 + caplen} bytes, {end_buf} left", state)
                return
        n += 1
        ts = sec + frac / div
        f = new(Frame)                            # _frame() inlined: this loop is the reader's hot path
        set_ts(f, ts); set_frame(f, n); set_lt(f, linktype); set_data(f, buf[start:stop])  # noqa: E702
        set_wl(f, wire_len); set_src(f, source); set_off(f, base + pos)  # noqa: E702
        yield f
        if caplen > limit:                        # kept, and noted after the frame it concerns
            yield Anomaly(ts, n, "capture", "capture.caplen_exceeds_snaplen",
                          f"{_display(path)}: offset {base + pos}: captured length {caplen} > snaplen {snaplen}")
        pos = stop


class _Iface:
    """A pcapng Interface Description Block: link type, snaplen and timestamp scale."""
    __slots__ = ("linktype", "snaplen", "units", "offset_s")

    def __init__(self, linktype: int, snaplen: int, units: int, offset_s: int) -> None:
        self.linktype, self.snaplen, self.units, self.offset_s = linktype, snaplen, units, offset_s


class _Damaged(Exception):
    """A pcapng block that cannot be framed: reading stops with this anomaly."""

    def __init__(self, name: str, offset: int, detail: str) -> None:
        super().__init__(detail)
        self.name, self.offset, self.detail = name, offset, detail


def _section_order(path: str, bom: bytes, off: int) -> str:
    """Byte order of a section from its SHB byte-order magic (§4.1)."""
    order = BYTE_ORDER_MAGICS.get(bom)
    if order is not None:
        return order
    if off == 0:
        raise CaptureError(path, 8, f"bad pcapng byte-order magic 0x{bom.hex()}")
    raise _Damaged("capture.bad_section_header", off, f"byte-order magic 0x{bom.hex()}")


def _read_pcapng(path: str, read: _Read, state: _State, head: bytes, source: int) -> Iterator[Frame | Anomaly]:
    buf, pos, base, end_buf = head, 0, 0, len(head)
    endian = "<"
    block_hdr, epb = BLOCK_HEADER[endian].unpack_from, EPB_BODY[endian].unpack_from
    ifaces: list[_Iface] = []
    n, ts = 0, 0.0
    try:
        while True:
            if pos + 12 > end_buf:
                buf, base, pos, end_buf = _refill(read, buf, pos, base)
                if end_buf < 12:
                    if end_buf or state["error"] is not None:
                        raise _Damaged("capture.truncated_record", base, f"block header needs 12 bytes, {end_buf} left")
                    return
            off = base + pos
            if buf[pos:pos + 4] == SHB_MAGIC:             # a section fixes its own byte order
                endian = _section_order(path, buf[pos + 8:pos + 12], off)
                block_hdr, epb = BLOCK_HEADER[endian].unpack_from, EPB_BODY[endian].unpack_from
            btype, blen = block_hdr(buf, pos)
            if blen % 4 or not MIN_BLOCK.get(btype, MIN_ANY_BLOCK) <= blen <= MAX_BLOCK_BYTES:
                if off == 0:
                    raise CaptureError(path, 4, f"bad section header length {blen}")
                raise _Damaged("capture.bad_record_length", off, f"block type 0x{btype:x} has bad length {blen}")
            if pos + blen > end_buf:
                buf = buf[pos:] + read(max(CHUNK_BYTES, blen))
                base += pos
                pos, end_buf = 0, len(buf)
                if blen > end_buf:
                    raise _Damaged("capture.truncated_record", off,
                                   f"block type 0x{btype:x} needs {blen} bytes, {end_buf} left")
            start = pos
            pos += blen
            if block_hdr(buf, pos - 8)[1] != blen:
                raise _Damaged("capture.bad_record_length", off,
                               f"block type 0x{btype:x}: trailing length differs from {blen}")
            if btype == EPB:
                iface_id, hi, lo, caplen, wire_len = epb(buf, start + 8)
                data_at = start + 28
            elif btype == PB:
                iface_id, _, hi, lo, caplen, wire_len = PB_BODY[endian].unpack_from(buf, start + 8)
                data_at = start + 28
            elif btype == SPB:
                # no interface id (always the first) and no timestamp: the previous packet's ts is kept
                iface_id, hi, lo, data_at = 0, -1, 0, start + 12
                wire_len = SPB_BODY[endian].unpack_from(buf, start + 8)[0]
                caplen = min(wire_len, blen - 16)
            elif btype == IDB:
                linktype, _, snaplen = IDB_BODY[endian].unpack_from(buf, start + 8)
                try:
                    options = idb_options(buf[start + IDB_OPTIONS_AT:pos - 4], endian)
                except BadOption as exc:
                    raise _Damaged("capture.bad_record_length", off, f"interface description block: {exc}") from None
                ifaces.append(_Iface(linktype, snaplen, *options))
                continue
            elif btype == SHB:
                major = SHB_BODY[endian].unpack_from(buf, start + 8)[1]
                if major != 1:
                    if off == 0:
                        raise CaptureError(path, 12, f"unsupported pcapng version {major}")
                    raise _Damaged("capture.bad_section_header", off, f"unsupported pcapng version {major}")
                ifaces = []                           # interface ids are per section
                continue
            else:
                continue                              # NRB, ISB, DSB, custom and unknown blocks carry no packets
            if iface_id >= len(ifaces):
                yield Anomaly(ts, n + 1, "capture", "capture.bad_interface_id",
                              f"{_display(path)}: offset {off}: interface {iface_id} not described")
                continue
            if caplen > pos - data_at - 4 or caplen > MAX_CAPLEN:
                yield Anomaly(ts, n + 1, "capture", "capture.bad_record_length",
                              f"{_display(path)}: offset {off}: captured length {caplen} in a block of {blen}")
                continue
            iface = ifaces[iface_id]
            if btype == SPB and iface.snaplen:       # §4.4: the SPB's data is cut at interface 0's snaplen
                caplen = min(caplen, iface.snaplen)
            if hi >= 0:
                q, r = divmod((hi << 32) | lo, iface.units)
                ts = iface.offset_s + q + r / iface.units
            n += 1
            yield _frame(ts, n, iface.linktype, buf[data_at:data_at + caplen], wire_len, source, off)
            if iface.snaplen and caplen > iface.snaplen:
                yield Anomaly(ts, n, "capture", "capture.caplen_exceeds_snaplen",
                              f"{_display(path)}: offset {off}: captured length {caplen} > snaplen {iface.snaplen}")
    except _Damaged as exc:
        yield _stop(path, exc.name, ts, n + 1, exc.offset, exc.detail, state)


def read_captures(paths: list[str]) -> Iterator[Frame | Anomaly]:
    """Merge several captures in capture-time order, renumbering frames 1-based over the run.

    Ties keep file order (heapq.merge is stable). An anomaly keeps pointing at its frame: the one
    just read from its file, or, for a record that never became a frame, the next number.
    """
    if len(paths) == 1:                           # one file: its numbering already is the run's
        yield from read_capture(paths[0], 0)
        return
    tagged = [_tag(i, read_capture(p, i)) for i, p in enumerate(paths)]
    merged = 0
    last: dict[int, tuple[int, int]] = {}         # file -> (frame in file, frame in run) of its last frame
    for i, item in heapq.merge(*tagged, key=_item_ts):
        if type(item) is Frame:
            merged += 1
            last[i] = (item.frame, merged)
            yield _frame(item.ts, merged, item.linktype, item.data, item.wire_len, item.source, item.offset)
        else:
            local, run = last.get(i, (0, 0))
            number = run if item.frame == local else merged + 1
            yield Anomaly(item.ts, number, item.layer, item.name, item.detail, item.src, item.dst)


def _tag(i: int, items: Iterator[Frame | Anomaly]) -> Iterator[tuple[int, Frame | Anomaly]]:
    for item in items:
        yield i, item


def _item_ts(pair: tuple[int, Frame | Anomaly]) -> float:
    return pair[1].ts
