"""The pcap and pcapng file formats: magic numbers, header and block layouts, interface options.

One home for the facts every capture reader needs: voipwatch.capture (the generic reader),
voipwatch.batch.reader (the vectorised record scanner) and voipwatch.live.sources (a capture tool's
pcap pipe). Layouts are keyed by byte order ("<" or ">").
"""
from __future__ import annotations

import struct

MAX_CAPLEN = 256 * 1024          # larger captured lengths are corrupt records (libpcap's own maximum)


def _both(fmt: str) -> dict[str, struct.Struct]:
    return {order: struct.Struct(order + fmt) for order in "<>"}


# pcap (draft-ietf-opsawg-pcap §4): magic(4) major(2) minor(2) thiszone(4) sigfigs(4) snaplen(4) linktype(4)
PCAP_HEADER = _both("IHHiIII")
# pcap record header (§5): ts_sec(4) ts_frac(4) caplen(4) wire_len(4); ts_frac is µs or ns per magic
PCAP_RECORD = _both("IIII")
# magic as stored on disk -> (byte order, timestamp units per second)
PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000), b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000), b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
LINKTYPE_MASK = 0xFFFF           # upper bits of the pcap LinkType field carry FCS length flags (§4)

# pcapng (draft-ietf-opsawg-pcapng §3.1): block type(4) total length(4) ... total length(4).
# Block types (§4): Section Header, Interface Description, obsolete Packet, Simple Packet, Enhanced Packet.
SHB, IDB, PB, SPB, EPB = 0x0A0D0D0A, 1, 2, 3, 6
SHB_MAGIC = b"\x0a\x0d\x0d\x0a"             # the SHB type reads the same in both byte orders
BLOCK_HEADER = _both("II")
# SHB (§4.1) after type/length: byte-order magic(4) major(2) minor(2) section length(8)
SHB_BODY = _both("IHHq")
# The SHB's byte-order magic 0x1A2B3C4D as stored on disk -> the section's byte order.
BYTE_ORDER_MAGICS = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
# IDB (§4.2) after type/length: linktype(2) reserved(2) snaplen(4), then options
IDB_BODY = _both("HHI")
IDB_OPTIONS_AT = 16
# EPB (§4.3) after type/length: interface id(4) ts high(4) ts low(4) caplen(4) wire_len(4), then data
EPB_BODY = _both("IIIII")
# SPB (§4.4) after type/length: wire_len(4), then data
SPB_BODY = _both("I")
# obsolete Packet Block (Appendix A): interface id(2) drops(2) ts high(4) ts low(4) caplen(4) wire_len(4)
PB_BODY = _both("HHIIII")
# Smallest valid total length per block type (header, fixed fields, trailer); 12 for any other type.
MIN_BLOCK = {SHB: 28, IDB: 20, PB: 32, SPB: 16, EPB: 32}
MIN_ANY_BLOCK = 12

# Options (§3.5): code(2) length(2), value padded to 32 bits; opt_endofopt ends the list.
OPTION = _both("HH")
_I64 = _both("q")
OPT_ENDOFOPT, OPT_IF_TSRESOL, OPT_IF_TSOFFSET = 0, 9, 14
DEFAULT_UNITS = 1_000_000        # §4.2 if_tsresol absent: microseconds


class BadOption(ValueError):
    """An option whose value runs past the end of its block."""


def idb_options(options: bytes | bytearray | memoryview, order: str) -> tuple[int, int]:
    """(timestamp units per second, if_tsoffset seconds) from an IDB's options (§4.2).

    `options` is the option area alone (after the fixed fields, before the trailing length);
    defaults are 10^6 and 0. Raises BadOption when a value runs past that area.
    """
    units, offset_s = DEFAULT_UNITS, 0
    pos, end = 0, len(options)
    option = OPTION[order]
    while pos + 4 <= end:
        code, length = option.unpack_from(options, pos)
        if code == OPT_ENDOFOPT:
            break
        if pos + 4 + length > end:
            raise BadOption(f"option {code} of {length} bytes runs past its block")
        value = options[pos + 4:pos + 4 + length]
        if code == OPT_IF_TSRESOL and length >= 1:
            # if_tsresol: MSB clear -> 10^-v seconds, MSB set -> 2^-v seconds
            v = value[0]
            units = 1 << (v & 0x7F) if v & 0x80 else 10 ** v
        elif code == OPT_IF_TSOFFSET and length >= 8:
            offset_s = _I64[order].unpack_from(value)[0]
        pos += 4 + ((length + 3) & ~3)
    return units, offset_s
