"""CDP and LLDP(-MED) advertisements: bytes in, what the sender claims about itself out (an L2Neighbor).

A truncated TLV ends the walk; a TLV of the wrong size for its type is skipped; both are named anomalies,
and whatever was read before them is kept. Text is ASCII (the protocols' display strings) cut at the first
NUL, as Wireshark shows it; no value is longer than the frame that carried it.
"""
from __future__ import annotations

import socket
import struct

from voipwatch.records import Anomaly, L2Neighbor

# Every Anomaly.name parse_l2 gives (layer "cdp" or "lldp").
ANOMALIES = {
    "cdp.truncated": "a CDP header or TLV cut short: the TLVs before it are kept",
    "cdp.bad_tlv": "a CDP TLV whose length is wrong for its type (or shorter than its header): skipped",
    "lldp.truncated": "an LLDP TLV cut short: the TLVs before it are kept",
    "lldp.bad_tlv": "an LLDP TLV whose length is wrong for its type (IEEE 802.1AB §8, ANSI/TIA-1057): skipped",
}

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_CDP_TLV = struct.Struct("!HH")

# Cisco CDP (no RFC; layout as Wireshark's packet-cdp.c decodes it): version(1) TTL(1) checksum(2), then TLVs
# of type(2) length(2, header included).
CDP_HEADER = 4
CDP_DEVICE_ID, CDP_ADDRESSES, CDP_PORT_ID, CDP_CAPABILITIES = 0x0001, 0x0002, 0x0003, 0x0004
CDP_SOFTWARE_VERSION, CDP_PLATFORM, CDP_NATIVE_VLAN = 0x0005, 0x0006, 0x000A
CDP_VOIP_VLAN_REPLY = 0x000E            # switch -> phone: appliance id(1) voice VLAN(2)
CDP_VOIP_VLAN_QUERY = 0x000F            # sent by an endpoint asking the switch for the voice VLAN
CDP_SYSTEM_NAME, CDP_MANAGEMENT_ADDRESSES = 0x0014, 0x0016
# Capabilities(4): router, transparent bridge, source-route bridge, switch, host, IGMP, repeater, VoIP phone
CDP_CAPABILITY_NAMES = ((0x01, "router"), (0x02, "bridge"), (0x04, "source_route_bridge"), (0x08, "switch"),
                        (0x10, "host"), (0x20, "igmp"), (0x40, "repeater"), (0x80, "phone"))
CDP_CAP_PHONE = 0x80
CDP_CAP_NETWORK = 0x01 | 0x02 | 0x04 | 0x08
# An address entry: protocol type(1) protocol length(1) protocol(n) address length(2) address(m); NLPID 0xCC is
# IPv4, the 802.2 SNAP header ending in EtherType 0x86DD is IPv6.
_CDP_IPV4 = (1, b"\xcc")
_CDP_IPV6 = (2, b"\xaa\xaa\x03\x00\x00\x00\x86\xdd")

# IEEE 802.1AB-2016 §8.4: TLV header is type(7 bits) length(9 bits); type 0 ends the LLDPDU.
LLDP_END, LLDP_CHASSIS_ID, LLDP_PORT_ID, LLDP_TTL = 0, 1, 2, 3
LLDP_SYSTEM_NAME, LLDP_SYSTEM_DESCRIPTION = 5, 6
LLDP_SYSTEM_CAPABILITIES = 7            # §8.5.8: capabilities(2) enabled capabilities(2)
LLDP_MANAGEMENT_ADDRESS = 8             # §8.5.9: string length(1) subtype(1) address, interface(5), OID
LLDP_ORG_SPECIFIC = 127                 # §8.6: OUI(3) subtype(1) value
LLDP_MAX_TEXT = 255                     # §8.5.5-8.5.7: port/system name/description are 0-255 octets
# §8.5.8.1 capability bits, named like CDP's where they mean the same thing
LLDP_CAPABILITY_NAMES = ((0x0001, "other"), (0x0002, "repeater"), (0x0004, "bridge"), (0x0008, "wlan_ap"),
                         (0x0010, "router"), (0x0020, "phone"), (0x0040, "docsis"), (0x0080, "station"))
LLDP_CAP_TELEPHONE = 0x0020
LLDP_CAP_NETWORK = 0x0004 | 0x0010      # MAC bridge, router
# §8.5.2.2 / §8.5.3.2: chassis subtype 4 and port subtype 3 are a MAC, 5 and 4 a network address (IANA
# address family 1 IPv4, 2 IPv6); the others are text.
_CHASSIS_MAC, _CHASSIS_ADDRESS, _PORT_MAC, _PORT_ADDRESS = 4, 5, 3, 4
_IANA_IPV4, _IANA_IPV6, _IANA_802 = 1, 2, 6
# IEEE 802.1Q Annex D (OUI 00-80-C2), subtype 1: Port VLAN ID(2), the port's untagged VLAN
IEEE_8021_OUI, PORT_VLAN_ID = b"\x00\x80\xc2", 1
# ANSI/TIA-1057 (LLDP-MED), OUI 00-12-BB. §10.2.1 capabilities: capabilities(2) device type(1), type 1-3 =
# endpoint class I-III (III = communication device, i.e. a phone), 4 = network connectivity device.
# §10.2.3 network policy: application type(1) then U(1) T(1) X(1) VLAN(12) L2 priority(3) DSCP(6); type 1 is
# voice; U set = the policy is unknown, T set = tagged on the VLAN (else untagged, VLAN 0).
# §10.2.4 location: data format(1) then LCI; format 1 coordinates (16 bytes, RFC 3825), 2 civic address
# (LCI length(1) what(1) country(2) CA elements, RFC 4776 §3.1), 3 ELIN (10-25 digits).
# §10.2.6 inventory strings (0-32 octets): 5 hardware, 6 firmware, 7 software revision, 8 serial number,
# 9 manufacturer, 10 model name, 11 asset id.
TIA_OUI = b"\x00\x12\xbb"
MED_CAPABILITIES, MED_NETWORK_POLICY, MED_LOCATION, MED_MODEL = 1, 2, 3, 10
MED_CLASS_PHONE, MED_NETWORK_DEVICE = 3, 4
MED_APP_VOICE = 1
_MED_SIZES = {MED_CAPABILITIES: 7, MED_NETWORK_POLICY: 8}       # whole TLV value incl. OUI and subtype
_MED_MAX_INVENTORY = 4 + 32


def parse_l2(protocol: str, payload: bytes, ts: float, frame: int, vlan: tuple[int, ...],
             src_mac: str | None) -> tuple[L2Neighbor, list[Anomaly]]:
    """Describe one CDP ("cdp") or LLDP ("lldp") payload, the bytes after its LLC/SNAP header or EtherType."""
    notes: list[tuple[str, str]] = []
    claims = _cdp(payload, notes) if protocol == "cdp" else _lldp(payload, notes)
    anomalies = [Anomaly(ts, frame, protocol, name, detail, src_mac) for name, detail in notes]
    return L2Neighbor(ts, frame, vlan, src_mac, protocol, **claims), anomalies


def _text(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode("ascii", "replace")


def _mac(value: bytes) -> str:
    return value.hex(":")


def _names(bits: int, table: tuple[tuple[int, str], ...]) -> tuple[str, ...]:
    return tuple(name for bit, name in table if bits & bit)


# ---------------------------------------------------------------------------------------------- CDP

def _cdp(payload: bytes, notes: list) -> dict:
    out: dict = {}
    caps = None
    if len(payload) < CDP_HEADER:
        notes.append(("cdp.truncated", f"CDP header needs {CDP_HEADER} bytes, {len(payload)} captured"))
        return out
    out["ttl"] = payload[1]
    off = CDP_HEADER
    while off < len(payload):
        if off + _CDP_TLV.size > len(payload):
            notes.append(("cdp.truncated", f"{len(payload) - off} bytes after the last TLV"))
            break
        kind, length = _CDP_TLV.unpack_from(payload, off)
        if length < _CDP_TLV.size:
            notes.append(("cdp.bad_tlv", f"TLV 0x{kind:04x} length {length} is shorter than its header"))
            break
        if off + length > len(payload):
            notes.append(("cdp.truncated", f"TLV 0x{kind:04x} length {length}, {len(payload) - off} bytes left"))
            break
        value = payload[off + _CDP_TLV.size:off + length]
        off += length
        if kind == CDP_DEVICE_ID:
            out.setdefault("device_id", _text(value))
        elif kind == CDP_PORT_ID:
            out.setdefault("port_id", _text(value))
        elif kind == CDP_PLATFORM:
            out.setdefault("platform", _text(value))
        elif kind == CDP_SOFTWARE_VERSION:
            out.setdefault("description", _text(value))
        elif kind == CDP_SYSTEM_NAME:
            out.setdefault("system_name", _text(value))
        elif kind == CDP_CAPABILITIES:
            if len(value) < 4:
                notes.append(("cdp.bad_tlv", f"capabilities TLV of {len(value)} bytes, 4 expected"))
            elif caps is None:
                caps = _U32.unpack_from(value)[0]
        elif kind == CDP_NATIVE_VLAN:
            if len(value) < 2:
                notes.append(("cdp.bad_tlv", f"native VLAN TLV of {len(value)} bytes, 2 expected"))
            else:
                out.setdefault("native_vlan", _U16.unpack_from(value)[0])
        elif kind == CDP_VOIP_VLAN_QUERY:
            out["voice_vlan_query"] = True
        elif kind == CDP_VOIP_VLAN_REPLY and len(value) >= 3:     # 6-byte replies without a VLAN exist
            out.setdefault("voice_vlan", _U16.unpack_from(value, 1)[0])
        elif kind in (CDP_ADDRESSES, CDP_MANAGEMENT_ADDRESSES) and "mgmt_address" not in out:
            address = _cdp_address(value, notes)
            if address is not None:
                out["mgmt_address"] = address
    if caps is not None:
        phone = bool(caps & CDP_CAP_PHONE)
        out.update(capabilities=_names(caps, CDP_CAPABILITY_NAMES), phone=phone,
                   network_device=bool(caps & CDP_CAP_NETWORK) and not phone)
    return out


def _cdp_address(value: bytes, notes: list) -> str | None:
    """The first IPv4/IPv6 address of an address list: count(4), then the entries."""
    if len(value) < 4:
        notes.append(("cdp.bad_tlv", f"address TLV of {len(value)} bytes has no count"))
        return None
    count, off = _U32.unpack_from(value)[0], 4
    for _ in range(count):
        if off + 2 > len(value) or off + 2 + value[off + 1] + 2 > len(value):
            break
        ptype, plen = value[off], value[off + 1]
        proto = value[off + 2:off + 2 + plen]
        alen = _U16.unpack_from(value, off + 2 + plen)[0]
        start = off + 4 + plen
        address = value[start:start + alen]
        if len(address) < alen:
            break
        if (ptype, proto) == _CDP_IPV4 and alen == 4:
            return socket.inet_ntop(socket.AF_INET, address)
        if (ptype, proto) == _CDP_IPV6 and alen == 16:
            return socket.inet_ntop(socket.AF_INET6, address)
        off = start + alen
    else:
        return None
    notes.append(("cdp.bad_tlv", f"address list of {count} entries runs past its TLV"))
    return None


# --------------------------------------------------------------------------------------------- LLDP

def _lldp(payload: bytes, notes: list) -> dict:
    out: dict = {}
    enabled = med_class = None
    off = 0
    while off < len(payload):
        if off + 2 > len(payload):
            notes.append(("lldp.truncated", "1 byte after the last TLV"))
            break
        header = _U16.unpack_from(payload, off)[0]
        kind, length = header >> 9, header & 0x01FF
        if kind == LLDP_END:
            break
        value = payload[off + 2:off + 2 + length]
        if len(value) < length:
            notes.append(("lldp.truncated", f"TLV {kind} length {length}, {len(value)} bytes left"))
            break
        off += 2 + length
        problem = _lldp_tlv(kind, value, out)
        if kind == LLDP_SYSTEM_CAPABILITIES and len(value) >= 4 and enabled is None:
            enabled = _U16.unpack_from(value, 2)[0]
            out["capabilities"] = _names(enabled, LLDP_CAPABILITY_NAMES)
        elif kind == LLDP_ORG_SPECIFIC and value[:3] == TIA_OUI and len(value) >= 7 and value[3] == MED_CAPABILITIES:
            med_class = value[6] if med_class is None else med_class
        if problem:
            notes.append(("lldp.bad_tlv", problem))
    network = med_class == MED_NETWORK_DEVICE or (
        med_class is None and enabled is not None and bool(enabled & LLDP_CAP_NETWORK)
        and not enabled & LLDP_CAP_TELEPHONE)
    if med_class is not None:
        phone = med_class == MED_CLASS_PHONE or bool(enabled and enabled & LLDP_CAP_TELEPHONE)
    else:
        phone = None if enabled is None else bool(enabled & LLDP_CAP_TELEPHONE)
    out.update(phone=phone, network_device=network, med_class=med_class)
    return out


def _lldp_tlv(kind: int, value: bytes, out: dict) -> str | None:
    """Read one TLV into `out` (the first of each kind counts); a problem with it, or None."""
    if kind in (LLDP_CHASSIS_ID, LLDP_PORT_ID):
        if len(value) < 2:
            return f"{'chassis' if kind == LLDP_CHASSIS_ID else 'port'} ID TLV of {len(value)} bytes, 2-256 expected"
        field = "device_id" if kind == LLDP_CHASSIS_ID else "port_id"
        mac, address = (_CHASSIS_MAC, _CHASSIS_ADDRESS) if kind == LLDP_CHASSIS_ID else (_PORT_MAC, _PORT_ADDRESS)
        out.setdefault(field, _identifier(value[0], value[1:], mac, address))
    elif kind == LLDP_TTL:
        if len(value) != 2:
            return f"TTL TLV of {len(value)} bytes, 2 expected"
        out.setdefault("ttl", _U16.unpack_from(value)[0])
    elif kind in (LLDP_SYSTEM_NAME, LLDP_SYSTEM_DESCRIPTION):
        out.setdefault("system_name" if kind == LLDP_SYSTEM_NAME else "description", _text(value))
        if len(value) > LLDP_MAX_TEXT:
            return f"TLV {kind} of {len(value)} bytes, at most {LLDP_MAX_TEXT} allowed"
    elif kind == LLDP_SYSTEM_CAPABILITIES:
        if len(value) != 4:
            return f"system capabilities TLV of {len(value)} bytes, 4 expected"
    elif kind == LLDP_MANAGEMENT_ADDRESS:
        if len(value) < 9 or not 2 <= value[0] <= 32 or 1 + value[0] + 6 > len(value):
            return f"management address TLV of {len(value)} bytes, address string length {value[:1].hex() or 'missing'}"
        address = _address(value[1], value[2:value[0] + 1])
        if address is not None:
            out.setdefault("mgmt_address", address)
    elif kind == LLDP_ORG_SPECIFIC:
        if len(value) < 4:
            return f"organizationally specific TLV of {len(value)} bytes, at least 4 expected"
        if value[:3] == TIA_OUI:
            return _med(value[3], value[4:], out)
        if value[:3] == IEEE_8021_OUI and value[3] == PORT_VLAN_ID:
            if len(value) != 6:
                return f"802.1 port VLAN ID TLV of {len(value)} bytes, 6 expected"
            out.setdefault("native_vlan", _U16.unpack_from(value, 4)[0])
    return None


def _med(subtype: int, body: bytes, out: dict) -> str | None:
    """One LLDP-MED TLV after its OUI and subtype."""
    if subtype == MED_NETWORK_POLICY:
        out["med_policy"] = True                    # present, whatever its size
    size = _MED_SIZES.get(subtype)
    if size is not None and len(body) + 4 != size:
        return f"LLDP-MED subtype {subtype} TLV of {len(body) + 4} bytes, {size} expected"
    if subtype == MED_NETWORK_POLICY and body[0] == MED_APP_VOICE:
        flags = int.from_bytes(body[1:4], "big")
        if not flags & 0x800000 and flags & 0x400000:                      # policy known, tagged
            out.setdefault("voice_vlan", (flags >> 9) & 0x0FFF)
    elif subtype == MED_LOCATION:
        return _med_location(body)
    elif subtype == MED_MODEL:
        if len(body) + 4 > _MED_MAX_INVENTORY:
            return f"LLDP-MED model name of {len(body)} bytes, at most 32 allowed"
        out.setdefault("platform", _text(body))
    return None


def _med_location(body: bytes) -> str | None:
    if not body:
        return "LLDP-MED location TLV without a data format"
    fmt, lci = body[0], body[1:]
    if fmt == 1 and len(lci) != 16:
        return f"LLDP-MED coordinate location of {len(lci)} bytes, 16 expected"
    if fmt == 2 and (not lci or lci[0] < 3 or lci[0] + 1 > len(lci)):
        return f"LLDP-MED civic location LCI length {lci[:1].hex() or 'missing'} in {len(lci)} bytes (at least 3)"
    if fmt == 3 and not 10 <= len(lci) <= 25:
        return f"LLDP-MED ELIN of {len(lci)} digits, 10-25 expected"
    return None


def _identifier(subtype: int, value: bytes, mac_subtype: int, address_subtype: int) -> str:
    """A chassis or port ID as text: a MAC, an address, readable text, else the bytes in hex (as Wireshark)."""
    if subtype == mac_subtype and len(value) == 6:
        return _mac(value)
    if subtype == address_subtype and value:
        address = _address(value[0], value[1:])
        if address is not None:
            return address
    if all(0x20 <= b < 0x7F for b in value):
        return value.decode("ascii")
    return value.hex()


def _address(family: int, value: bytes) -> str | None:
    if family == _IANA_IPV4 and len(value) == 4:
        return socket.inet_ntop(socket.AF_INET, value)
    if family == _IANA_IPV6 and len(value) == 16:
        return socket.inet_ntop(socket.AF_INET6, value)
    if family == _IANA_802 and len(value) == 6:
        return _mac(value)
    return None
