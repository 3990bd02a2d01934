"""CDP and LLDP(-MED) payload walks for the cross_vlan detector: bytes in, what the sender claims out.

Pure functions of the L2Control payload, never raising: a truncated or malformed TLV ends the walk and
whatever was read before it is kept.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

_U16 = struct.Struct("!H")
_CDP_TLV = struct.Struct("!HH")

# Cisco CDP (no RFC; layout as decoded by Wireshark's packet-cdp.c): version(1) TTL(1) checksum(2), then
# TLVs of type(2) length(2, header included).
CDP_HEADER = 4
CDP_PLATFORM = 0x0006
CDP_CAPABILITIES = 0x0004
CDP_VOIP_VLAN_QUERY = 0x000F            # sent by an endpoint asking the switch for the voice VLAN
CDP_CAP_PHONE = 0x80                    # capability bit "VoIP Phone"
CDP_CAP_NETWORK = 0x01 | 0x02 | 0x04 | 0x08   # router, transparent/source-route bridge, switch

# IEEE 802.1AB-2016 §8.4: TLV header is type(7 bits) length(9 bits); type 0 ends the LLDPDU.
LLDP_SYSTEM_CAPABILITIES = 7            # §8.5.8: capabilities(2) enabled capabilities(2)
LLDP_ORG_SPECIFIC = 127                 # §8.6: OUI(3) subtype(1) value
LLDP_CAP_TELEPHONE = 0x0020
LLDP_CAP_NETWORK = 0x0004 | 0x0010      # MAC bridge, router
# ANSI/TIA-1057 (LLDP-MED) §10.2.1: OUI 00-12-BB, subtype 1 = capabilities(2) + device type(1),
# device type 1-3 = endpoint class I-III (III = communication device, i.e. a phone), 4 = network device.
TIA_OUI = b"\x00\x12\xbb"
MED_CAPABILITIES = 1
MED_NETWORK_POLICY = 2
MED_CLASS_PHONE = 3
MED_NETWORK_DEVICE = 4


@dataclass(frozen=True)
class L2Claim:
    """What a CDP/LLDP sender said about itself."""
    protocol: str
    asks_voice_vlan: bool          # CDP VoIP VLAN Query TLV, or LLDP-MED from an endpoint (class I-III)
    phone: bool | None             # claims to be a phone (None: the frame does not say)
    network_device: bool           # claims to be a switch/router (their LLDP-MED/CDP is normal)
    platform: str | None = None
    med_class: int | None = None


def parse(protocol: str, payload: bytes) -> L2Claim:
    return _cdp(payload) if protocol == "cdp" else _lldp(payload)


def _cdp(payload: bytes) -> L2Claim:
    query, caps, platform = False, None, None
    off = CDP_HEADER
    while off + _CDP_TLV.size <= len(payload):
        kind, length = _CDP_TLV.unpack_from(payload, off)
        if length < _CDP_TLV.size or off + length > len(payload):
            break
        value = payload[off + _CDP_TLV.size:off + length]
        if kind == CDP_VOIP_VLAN_QUERY:
            query = True
        elif kind == CDP_CAPABILITIES and len(value) >= 4:
            caps = int.from_bytes(value[:4], "big")
        elif kind == CDP_PLATFORM:
            platform = value.decode("ascii", "replace")[:64]
        off += length
    phone = None if caps is None else bool(caps & CDP_CAP_PHONE)
    network = caps is not None and bool(caps & CDP_CAP_NETWORK) and not phone
    return L2Claim("cdp", query, phone, network, platform)


def _lldp(payload: bytes) -> L2Claim:
    enabled, med_class, policy = None, None, False
    off = 0
    while off + 2 <= len(payload):
        header = _U16.unpack_from(payload, off)[0]
        kind, length = header >> 9, header & 0x01FF
        value = payload[off + 2:off + 2 + length]
        if kind == 0 or len(value) < length:
            break
        if kind == LLDP_SYSTEM_CAPABILITIES and length >= 4:
            enabled = _U16.unpack_from(value, 2)[0]
        elif kind == LLDP_ORG_SPECIFIC and length >= 4 and value[:3] == TIA_OUI:
            if value[3] == MED_CAPABILITIES and length >= 7:
                med_class = value[6]
            elif value[3] == MED_NETWORK_POLICY:
                policy = True
        off += 2 + length
    network = med_class == MED_NETWORK_DEVICE or (
        med_class is None and enabled is not None and bool(enabled & LLDP_CAP_NETWORK)
        and not enabled & LLDP_CAP_TELEPHONE)
    endpoint_med = med_class in (1, 2, 3) or (policy and not network)
    if med_class is not None:
        phone = med_class == MED_CLASS_PHONE or bool(enabled and enabled & LLDP_CAP_TELEPHONE)
    else:
        phone = None if enabled is None else bool(enabled & LLDP_CAP_TELEPHONE)
    return L2Claim("lldp", endpoint_med, phone, network, None, med_class)
