"""Which VLAN each address lives on: learned from the frames its own MAC sent, never from a router's.

A router forwarding a packet onto a VLAN sends it from its own MAC, tagged with the *destination's*
VLAN (IEEE 802.1Q: a frame carries the VLAN of the segment it is on): the VLAN of a frame says where
its source host lives only when the frame's source MAC is the host's own. A MAC is a gateway's, not a
host's, when the site declares it (`roles.gateway_macs`, `cross_vlan.firewall_macs`) or when it is
seen sourcing IPv4 packets from more than `gateway_min_sources` addresses, or from both internal and
public IPv4 addresses (a host holds one address per interface; a router forwards many). An address
is placed on the VLAN of the first frame its own MAC sent; learning a gateway withdraws the
placements it had given. Fed by HostSeen records in timeline order (the DetectorBus), so both
execution paths learn the same, record for record. Bounded: LRU tables with a cap and an idle expiry.
"""
from __future__ import annotations

import ipaddress

from voipwatch.records import HostSeen
from voipwatch.windows import BoundedMap

MAX_ENTRIES = 100_000            # addresses placed, and MACs tracked, at most (LRU)
IDLE_S = 86_400.0                # capture seconds after which an untouched entry is forgotten
UNSPECIFIED = ("0.0.0.0", "::")  # DHCP clients before they have an address (RFC 2131 §4.1)


def mac_key(text: str) -> str:
    return text.lower().replace("-", ":")


class HostPlaces:
    """ip -> the VLAN stack its own MAC sent it on; MACs learned to be gateways."""

    def __init__(self, gateway_macs, min_sources: int, is_internal):
        self.declared = frozenset(mac_key(m) for m in gateway_macs)
        self.min_sources = min_sources
        self.is_internal = is_internal
        self._own: BoundedMap = BoundedMap(MAX_ENTRIES, IDLE_S)      # ip -> (vlan stack, mac)
        self._routed: BoundedMap = BoundedMap(MAX_ENTRIES, IDLE_S)   # ip -> True: seen only through a gateway
        # mac -> [its IPv4 sources (at most min_sources + 1), any internal, any public]
        self._macs: BoundedMap = BoundedMap(MAX_ENTRIES, IDLE_S, lambda: [set(), False, False])
        self.learned: set[str] = set()                               # MACs learned to be gateways (<= MAX_ENTRIES)

    def declare_gateways(self, macs) -> None:
        self.declared = self.declared | frozenset(mac_key(m) for m in macs)

    def is_gateway(self, mac: str | None) -> bool:
        return mac is not None and (mac_key(mac) in self.declared or mac_key(mac) in self.learned)

    def own_vlan(self, ip: str) -> tuple[int, ...] | None:
        """The VLAN stack of the first frame the address's own MAC sent, if one was seen."""
        placed = self._own.get(ip)
        return placed[0] if placed is not None else None

    def only_routed(self, ip: str) -> bool:
        """The address was seen, but only in frames a gateway sent."""
        return ip in self._routed and ip not in self._own

    def observe(self, h: HostSeen) -> None:
        if h.ip is None or h.ip in UNSPECIFIED:
            return
        if h.mac is None:                        # no link layer (raw IP, cooked without address): no evidence
            return
        mac = mac_key(h.mac)
        if mac not in self.declared and mac not in self.learned:
            self._count_source(mac, h)
        if mac in self.declared or mac in self.learned or len(h.vlan) >= 2:
            # a router's frame, or a double-tagged one (an injected frame says nothing of a host's VLAN)
            if h.ip not in self._own:
                self._routed.set(h.ip, True, h.ts)
            return
        if h.ip not in self._own and self.is_internal(h.ip):   # a public address lives on no site VLAN
            self._own.set(h.ip, (h.vlan, mac), h.ts)

    def _count_source(self, mac: str, h: HostSeen) -> None:
        if not _is_v4(h.ip):
            return
        seen = self._macs.touch(mac, h.ts)
        seen[0].add(h.ip)
        internal = self.is_internal(h.ip)
        seen[1] |= internal
        seen[2] |= not internal
        if len(seen[0]) > self.min_sources or (seen[1] and seen[2]):
            self.learned.add(mac)
            self._macs.pop(mac)
            for ip in seen[0]:                   # withdraw what this MAC placed
                placed = self._own.get(ip)
                if placed is not None and placed[1] == mac:
                    self._own.pop(ip)
                    self._routed.set(ip, True, h.ts)
            if len(self.learned) > MAX_ENTRIES:
                self.learned.pop()


def _is_v4(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).version == 4
    except ValueError:
        return False
