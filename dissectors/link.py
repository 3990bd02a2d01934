"""Link layers by LINKTYPE: Ethernet with 802.1Q/802.1ad tag stacks, Linux cooked v1/v2, BSD loopback, raw IP, PPP.

Each decoder returns a ``Link`` (where the network layer starts, the VLAN stack outer->inner, the
MAC addresses) or a ``(name, detail)`` pair naming a link anomaly. Non-IP frames come back as a
``Link`` with a named ``bucket`` ("arp", "lldp", "cdp", "llc", ...), never silently dropped.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD

# LINKTYPE_* values (tcpdump.org/linktypes.html); 12 and 14 are DLT_RAW on some BSDs.
LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_PPP = 0, 1, 9
LINKTYPE_RAW, LINKTYPE_LOOP = 101, 108
LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2 = 113, 276
LINKTYPE_IPV4, LINKTYPE_IPV6 = 228, 229
_RAW_LINKTYPES = frozenset((LINKTYPE_RAW, 12, 14))

# IEEE 802.3 §3.1.1: destination(6) source(6) EtherType-or-length(2)
_ETH = struct.Struct("!6s6sH")
# IEEE 802.1Q §9.6: TCI = PCP(3) DEI(1) VID(12), followed by the next EtherType(2)
_TAG = struct.Struct("!HH")
# 802.1Q C-tag, 802.1ad S-tag, and the pre-standard 0x9100 QinQ tag
VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
MAX_VLAN_TAGS = 8                 # deeper stacks are an anomaly (each tag is 4 bytes of a frame)
# LINKTYPE_LINUX_SLL: packet type(2) ARPHRD type(2) address length(2) address(8) protocol(2)
_SLL = struct.Struct("!HHH8sH")
# LINKTYPE_LINUX_SLL2: protocol(2) reserved(2) interface index(4) ARPHRD type(2) packet type(1)
# address length(1) address(8)
_SLL2 = struct.Struct("!HHIHBB8s")
_SLL_LLC = 0x0004                 # SLL protocol value: the payload is an 802.2 LLC frame
_ARPHRD_ETHER = 1
# IEEE 802.2 LLC (DSAP(1) SSAP(1) control(1)) + SNAP (RFC 1042): OUI(3) protocol id(2)
_SNAP = struct.Struct("!BBB3sH")
_OUI_ENCAP_ETHERTYPE, _OUI_CISCO, _PID_CDP = b"\x00\x00\x00", b"\x00\x00\x0c", 0x2000
_SAP_STP = 0x42                   # IEEE 802.1D spanning tree BPDUs
# BSD loopback (LINKTYPE_NULL host order, LINKTYPE_LOOP network order): address family(4)
_FAMILY = struct.Struct("<I")
AF_INET, AF_INET6 = 2, frozenset((10, 24, 28, 30))     # AF_INET6 of Linux, NetBSD/OpenBSD, FreeBSD, macOS
# RFC 1661 §2 / RFC 1662 §3.1: address 0xff, control 0x03 (both may be omitted), protocol(1 or 2)
_PPP_IPV4, _PPP_IPV6 = 0x0021, 0x0057

# RFC 2516 §4: version(4) type(4) | code(8) | session id(16) | length(16), then a PPP protocol field
_PPPOE_SESSION, _PPPOE_HEADER = 0x8864, 6


@dataclass(frozen=True)
class FixedHeader:
    """A link header of fixed length, and how it states its payload's network protocol."""
    length: int                    # octets before the payload (or before the first VLAN tag)
    protocol: str                  # "ethertype": 2 octets at protocol_at, VLAN tags may follow the header;
                                   # "ip_version": the IP header's version nibble; "family": a BSD address
                                   # family (4 octets, either byte order); "ipv4" / "ipv6": fixed
    protocol_at: int = 0


# The link types whose headers the batch path decodes column-wise (voipwatch.batch.candidates); the
# decoders above are the reference for each.
FIXED_HEADERS = {
    LINKTYPE_ETHERNET: FixedHeader(_ETH.size, "ethertype", _ETH.size - 2),
    LINKTYPE_LINUX_SLL: FixedHeader(_SLL.size, "ethertype", _SLL.size - 2),
    LINKTYPE_LINUX_SLL2: FixedHeader(_SLL2.size, "ethertype", 0),
    **{linktype: FixedHeader(0, "ip_version") for linktype in _RAW_LINKTYPES},
    LINKTYPE_IPV4: FixedHeader(0, "ipv4"),
    LINKTYPE_IPV6: FixedHeader(0, "ipv6"),
    LINKTYPE_NULL: FixedHeader(_FAMILY.size, "family"),
    LINKTYPE_LOOP: FixedHeader(_FAMILY.size, "family"),
}

_ETHERTYPE_BUCKETS = {0x0806: "arp", 0x88CC: "lldp", 0x8863: "pppoe_discovery"}
RAW_PAYLOAD_BUCKETS = frozenset(("lldp", "cdp"))          # buckets whose L2 payload is returned

# Every Link.bucket: frames that carry no IP, each counted under its name (a frame class).
BUCKETS = {
    "arp": "ARP (EtherType 0x0806)",
    "lldp": "LLDP (EtherType 0x88cc, IEEE 802.1AB)",
    "cdp": "CDP (802.2 SNAP, Cisco OUI, protocol 0x2000)",
    "stp": "spanning tree BPDUs (802.2 SAP 0x42, IEEE 802.1D)",
    "llc": "other 802.2 LLC frames",
    "pppoe_discovery": "PPPoE discovery (EtherType 0x8863, RFC 2516)",
    "other_ethertype": "any other EtherType that is not IP",
    "other_family": "a loopback (BSD null) frame of an address family that is not IP",
    "ppp.other_proto": "a PPP frame (PPPoE, PPTP) of a protocol that is not IP (RFC 1661)",
}
# Every link anomaly name the decoders return (layer "link").
ANOMALIES = {
    "link.truncated": "the link header (Ethernet, VLAN tag, cooked, loopback, PPP, PPPoE) is cut short",
    "link.unknown_linktype": "a LINKTYPE this decoder does not know",
    "link.vlan_too_deep": f"more than {MAX_VLAN_TAGS} VLAN tags",
}

_MAC_CACHE_MAX = 4096
_mac_pairs: dict[bytes, tuple[str, str]] = {}


@dataclass(slots=True)
class Link:
    """The link layer of one frame: where its payload starts and what it carries."""
    ethertype: int                 # EtherType of the payload (0x0800 / 0x86DD for IP)
    offset: int                    # payload start within the frame
    vlan: tuple[int, ...] = ()     # VLAN ids outer -> inner
    src_mac: str | None = None
    dst_mac: str | None = None
    bucket: str | None = None      # non-IP payload: "arp", "lldp", "cdp", "stp", "llc", "other_ethertype", ...
    end: int | None = None         # payload end when the link layer states it (an 802.3 length), else the frame's


def mac_pair(dst_src: bytes) -> tuple[str, str]:
    """("aa:bb:..", "cc:dd:..") for the 12 bytes destination+source, cached (insertion-order cap)."""
    pair = _mac_pairs.get(dst_src)
    if pair is None:
        pair = (dst_src[:6].hex(":"), dst_src[6:].hex(":"))
        if len(_mac_pairs) >= _MAC_CACHE_MAX:
            del _mac_pairs[next(iter(_mac_pairs))]
        _mac_pairs[dst_src] = pair
    return pair


def decode_link(linktype: int, data: bytes) -> Link | tuple[str, str]:
    """Decode the link layer named by a LINKTYPE."""
    if linktype == LINKTYPE_ETHERNET:
        return decode_ethernet(data, 0, len(data))
    if linktype in _RAW_LINKTYPES:
        if not data:
            return ("link.truncated", "empty raw IP frame")
        version = data[0] >> 4
        if version == 4:
            return Link(ETHERTYPE_IPV4, 0)
        if version == 6:
            return Link(ETHERTYPE_IPV6, 0)
        return ("ip.bad_version", f"raw IP frame with version {version}")
    if linktype == LINKTYPE_IPV4:
        return Link(ETHERTYPE_IPV4, 0)
    if linktype == LINKTYPE_IPV6:
        return Link(ETHERTYPE_IPV6, 0)
    if linktype == LINKTYPE_LINUX_SLL:
        return _decode_sll(data)
    if linktype == LINKTYPE_LINUX_SLL2:
        return _decode_sll2(data)
    if linktype == LINKTYPE_NULL or linktype == LINKTYPE_LOOP:
        return _decode_loopback(data)
    if linktype == LINKTYPE_PPP:
        return decode_ppp(data, 0, len(data))
    return ("link.unknown_linktype", f"LINKTYPE {linktype}")


def decode_ethernet(data: bytes, off: int, end: int) -> Link | tuple[str, str]:
    """Ethernet II / 802.3 at data[off:end], with any stack of 802.1Q / 802.1ad tags."""
    if end - off < 14:
        return ("link.truncated", f"Ethernet header needs 14 bytes, {end - off} captured")
    ethertype = _ETH.unpack_from(data, off)[2]
    dst_mac, src_mac = mac_pair(data[off:off + 12])
    return _after_ethertype(data, off + 14, end, ethertype, (), src_mac, dst_mac)


def _after_ethertype(data: bytes, off: int, end: int, ethertype: int, outer: tuple[int, ...],
                     src_mac: str | None, dst_mac: str | None) -> Link | tuple[str, str]:
    """Follow VLAN tags (appended to the outer ones), then classify the EtherType (or 802.3 length + LLC)."""
    vlan = list(outer)
    while ethertype in VLAN_TPIDS:
        if len(vlan) == MAX_VLAN_TAGS:
            return ("link.vlan_too_deep", f"more than {MAX_VLAN_TAGS} VLAN tags")
        if end - off < 4:
            return ("link.truncated", f"VLAN tag {len(vlan) + 1} cut short")
        tci, ethertype = _TAG.unpack_from(data, off)
        vlan.append(tci & 0x0FFF)
        off += 4
    tags = tuple(vlan)
    if ethertype == ETHERTYPE_IPV4 or ethertype == ETHERTYPE_IPV6:
        return Link(ethertype, off, tags, src_mac, dst_mac)
    if ethertype == _PPPOE_SESSION:               # DSL uplinks: IP (and the SIP DNS look-ups) inside PPPoE
        if end - off < _PPPOE_HEADER:
            return ("link.truncated", "PPPoE header cut short")
        inner = decode_ppp(data, off + _PPPOE_HEADER, end)
        if type(inner) is Link:
            inner.vlan, inner.src_mac, inner.dst_mac = tags, src_mac, dst_mac
        return inner
    if ethertype <= 1500:                         # IEEE 802.3 §3.2.6 length field: an LLC frame of that many
        return _decode_llc(data, off, min(end, off + ethertype), tags, src_mac, dst_mac)   # bytes, then padding
    return Link(ethertype, off, tags, src_mac, dst_mac, _ETHERTYPE_BUCKETS.get(ethertype, "other_ethertype"))


def _decode_llc(data: bytes, off: int, end: int, vlan: tuple[int, ...],
                src_mac: str | None, dst_mac: str | None) -> Link | tuple[str, str]:
    """802.2 LLC: SNAP with a Cisco OUI carries CDP; SNAP with OUI 0 carries an EtherType (RFC 1042)."""
    if end - off >= 3 and data[off] == _SAP_STP and data[off + 1] == _SAP_STP:
        return Link(0, off, vlan, src_mac, dst_mac, "stp")
    if end - off >= 8:
        dsap, ssap, _, oui, pid = _SNAP.unpack_from(data, off)
        if dsap == 0xAA and ssap == 0xAA:
            if oui == _OUI_CISCO and pid == _PID_CDP:
                return Link(pid, off + 8, vlan, src_mac, dst_mac, "cdp", end)
            if oui == _OUI_ENCAP_ETHERTYPE:
                return _after_ethertype(data, off + 8, end, pid, vlan, src_mac, dst_mac) if pid > 1500 else \
                    Link(pid, off + 8, vlan, src_mac, dst_mac, "llc")
    return Link(0, off, vlan, src_mac, dst_mac, "llc")


def _decode_sll(data: bytes) -> Link | tuple[str, str]:
    if len(data) < _SLL.size:
        return ("link.truncated", f"Linux cooked header needs {_SLL.size} bytes, {len(data)} captured")
    _, hatype, halen, addr, protocol = _SLL.unpack_from(data)
    return _cooked(data, _SLL.size, protocol, hatype, halen, addr)


def _decode_sll2(data: bytes) -> Link | tuple[str, str]:
    if len(data) < _SLL2.size:
        return ("link.truncated", f"Linux cooked v2 header needs {_SLL2.size} bytes, {len(data)} captured")
    protocol, _, _, hatype, _, halen, addr = _SLL2.unpack_from(data)
    return _cooked(data, _SLL2.size, protocol, hatype, halen, addr)


def _cooked(data: bytes, off: int, protocol: int, hatype: int, halen: int, addr: bytes) -> Link | tuple[str, str]:
    """Linux cooked capture: the sender's address is an Ethernet MAC when ARPHRD_ETHER; tags may follow."""
    src_mac = addr[:6].hex(":") if hatype == _ARPHRD_ETHER and halen == 6 else None
    if protocol == _SLL_LLC:
        return _decode_llc(data, off, len(data), (), src_mac, None)
    return _after_ethertype(data, off, len(data), protocol, (), src_mac, None)


def _decode_loopback(data: bytes) -> Link | tuple[str, str]:
    if len(data) < 4:
        return ("link.truncated", f"loopback header needs 4 bytes, {len(data)} captured")
    family = _FAMILY.unpack_from(data)[0]
    if family & 0xFFFF0000:                       # written in the other byte order
        family = int.from_bytes(data[:4], "big")
    if family == AF_INET:
        return Link(ETHERTYPE_IPV4, 4)
    if family in AF_INET6:
        return Link(ETHERTYPE_IPV6, 4)
    return Link(family, 4, bucket="other_family")


def decode_ppp(data: bytes, off: int, end: int) -> Link | tuple[str, str]:
    """PPP (RFC 1661) as carried in GRE or LINKTYPE_PPP; address/control and protocol may be compressed."""
    if end - off >= 2 and data[off] == 0xFF and data[off + 1] == 0x03:
        off += 2
    if end - off < 1:
        return ("link.truncated", "PPP protocol field missing")
    if data[off] & 1:                             # RFC 1661 §6.5 protocol-field compression: one byte
        protocol, off = data[off], off + 1
    elif end - off < 2:
        return ("link.truncated", "PPP protocol field cut short")
    else:
        protocol, off = (data[off] << 8) | data[off + 1], off + 2
    if protocol == _PPP_IPV4:
        return Link(ETHERTYPE_IPV4, off)
    if protocol == _PPP_IPV6:
        return Link(ETHERTYPE_IPV6, off)
    return Link(protocol, off, bucket="ppp.other_proto")
