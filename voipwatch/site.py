"""The site model: zones, roles and dial plan that the NSA guide checks judge traffic against.

Read from the same TOML file as every other setting ([zones.<name>], [roles], [dialplan], [site]).
Zones are VLAN ids and/or CIDRs (CIDRs are the fallback when tags are stripped). An address takes a
zone from a VLAN only from the frames its own MAC sent (voipwatch.places: a router's frame carries
the destination's VLAN), and a public address never does (it takes a zone from the CIDRs only).
Checks that need a piece of the model that is not configured stay idle and say so once (`idle_reasons`).
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from functools import lru_cache

from voipwatch.config_schema import ConfigError, build, opt
from voipwatch.high_risk import HIGH_RISK_DEFAULT
from voipwatch.places import HostPlaces
from voipwatch.records import HostSeen

ZONE_NAMES = ("voice", "softphone", "data", "mgmt", "uc_dmz", "wlan")
# RFC 1918 and RFC 4193 private ranges, loopback and link-local: "internal" unless configured otherwise.
DEFAULT_INTERNAL = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16",
                    "fc00::/7", "fe80::/10", "::1/128")


@dataclass(frozen=True)
class ZoneConfig:
    """One network zone."""
    vlans: tuple[int, ...] = opt((), "VLAN ids (any tag of the stack) that belong to this zone.")
    cidrs: tuple[str, ...] = opt((), "Address ranges of this zone (used when VLAN tags are absent).")


@dataclass(frozen=True)
class SiteConfig:
    """Where the sensor sits and what counts as internal."""
    internal_prefixes: tuple[str, ...] = opt(DEFAULT_INTERNAL, "Prefixes of the organisation; any other address is public.")
    infer_voice_vlan: bool = opt(True, "Without [zones.voice], treat VLANs where SIP/RTP dominate as voice (alerts say so).")
    gateway_min_sources: int = opt(4, "A MAC sourcing IPv4 packets from more addresses than this (or from internal and public ones) is a router's: its frames give no zone to the addresses they carry.")


@dataclass(frozen=True)
class RolesConfig:
    """Servers and gateways by role (IP addresses or CIDRs)."""
    esc: tuple[str, ...] = opt((), "Enterprise session controllers / call managers / registrars.")
    sbc: tuple[str, ...] = opt((), "Session border controllers.")
    pstn_gw: tuple[str, ...] = opt((), "PSTN, signalling and media gateways.")
    trusted_trunks: tuple[str, ...] = opt((), "Peers allowed to send calls to the gateways (carrier trunks).")
    dns_voice: tuple[str, ...] = opt((), "DNS servers for the voice zone.")
    dns_data: tuple[str, ...] = opt((), "DNS servers for the data zone.")
    dhcp_voice: tuple[str, ...] = opt((), "DHCP servers for the voice zone.")
    dhcp_data: tuple[str, ...] = opt((), "DHCP servers for the data zone.")
    ntp_voice: tuple[str, ...] = opt((), "NTP servers for the voice zone.")
    ntp_data: tuple[str, ...] = opt((), "NTP servers for the data zone.")
    prov_servers: tuple[str, ...] = opt((), "Phone provisioning (TFTP/HTTP) servers.")
    dual_role_dmz: tuple[str, ...] = opt((), "Hosts allowed on both voice and data networks (in the UC DMZ).")
    scanner_ips: tuple[str, ...] = opt((), "Authorised vulnerability scanners and monitoring pingers.")
    remote_vpn_pool: tuple[str, ...] = opt((), "Address pool of remote phones connecting over VPN.")
    gateway_macs: tuple[str, ...] = opt((), "Router/firewall MACs that legitimately appear in every VLAN.")


@dataclass(frozen=True)
class DialplanConfig:
    """Number classes as regular expressions on the dialled user part (after stripping 'tel:'/'+' context)."""
    international: tuple[str, ...] = opt((r"^\+", r"^00", r"^011", r"^9011"), "International dialling patterns.")
    premium: tuple[str, ...] = opt((r"^1?900[0-9]{7}$", r"^0900"), "Premium-rate patterns (NANP 1-900, 0900 services).")
    high_risk: tuple[str, ...] = opt(HIGH_RISK_DEFAULT, "High-risk destination patterns (IRSF ranges, country codes); the "
                                     "default is voipwatch/high_risk.py (+870/+881/+882/+883/+979 and IRSF countries, "
                                     "with its sources); a site's list replaces it.")
    emergency: tuple[str, ...] = opt((r"^911$", r"^9911$", r"^933$", r"^112$"), "Emergency numbers (never alerted on).")
    internal: tuple[str, ...] = opt((r"^[0-9]{2,6}$",), "Internal extensions.")
    business_hours: str = opt("07:00-19:00 Mon-Fri", "Business hours (capture time, UTC offset below).")
    utc_offset_h: float = opt(0.0, "Offset of the site's local time from UTC, hours.")


class Site:
    """The configured site model with lookups."""

    def __init__(self, tree: dict):
        unknown = set(tree) - {"site", "zones", "roles", "dialplan"}
        if unknown:
            raise ConfigError(f"site model: unknown section(s) {sorted(unknown)}")
        zones = tree.get("zones", {})
        bad = set(zones) - set(ZONE_NAMES)
        if bad:
            raise ConfigError(f"[zones]: unknown zone(s) {', '.join(sorted(bad))}; valid zones: {', '.join(ZONE_NAMES)}")
        self.site: SiteConfig = build(SiteConfig, tree.get("site", {}), "site")
        self.zones: dict[str, ZoneConfig] = {name: build(ZoneConfig, zones.get(name, {}), f"zones.{name}")
                                            for name in ZONE_NAMES}
        self.roles: RolesConfig = build(RolesConfig, tree.get("roles", {}), "roles")
        self.dialplan: DialplanConfig = build(DialplanConfig, tree.get("dialplan", {}), "dialplan")
        self._internal = _networks(self.site.internal_prefixes, "site.internal_prefixes")
        self._zone_nets = {name: _networks(z.cidrs, f"zones.{name}.cidrs") for name, z in self.zones.items()}
        self._role_nets = {f.name: _networks(getattr(self.roles, f.name), f"roles.{f.name}")
                           for f in fields(RolesConfig) if f.name != "gateway_macs"}
        self._vlan_zone = {vid: name for name, z in self.zones.items() for vid in z.vlans}
        self._patterns = {f.name: [re.compile(p) for p in getattr(self.dialplan, f.name)]
                          for f in fields(DialplanConfig) if isinstance(getattr(self.dialplan, f.name), tuple)}
        self._hours = _parse_hours(self.dialplan.business_hours)
        self.inferred_voice_vlans: frozenset[int] = frozenset()
        if self.site.gateway_min_sources < 1:
            raise ConfigError(f"[site] gateway_min_sources: must be at least 1, got {self.site.gateway_min_sources!r}")
        self._gateway_macs = set(self.roles.gateway_macs)
        self.places = self.new_places()

    def declare_gateway_macs(self, macs) -> None:
        """More MACs that route (a detector's firewall_macs): their frames place no host."""
        self._gateway_macs.update(macs)
        self.places.declare_gateways(macs)

    def new_places(self) -> HostPlaces:
        """Forget what earlier runs learned of where hosts live (each run learns afresh, in record order)."""
        self.places = HostPlaces(self._gateway_macs, self.site.gateway_min_sources, self.is_internal)
        return self.places

    def observe_host(self, h: HostSeen) -> None:
        """A (MAC, IP, VLAN) first sighting, in timeline order (voipwatch.detect.DetectorBus)."""
        self.places.observe(h)

    # -- zones ------------------------------------------------------------------------------
    def zones_configured(self) -> bool:
        return any(z.vlans or z.cidrs for z in self.zones.values())

    def zone_of(self, ip: str | None, vlan: tuple[int, ...] = ()) -> str | None:
        """The zone of an address that sent a packet tagged `vlan` (or, without an address, of the VLAN).

        The VLAN that places the address is that of the first frame its own MAC sent (voipwatch.places),
        not `vlan`, which a router's frame sets to the destination's; then its CIDR. `vlan` counts only
        for an address no frame placed or showed behind a gateway yet (RTP-only senders, hand-built
        records). A public address (outside [site] internal_prefixes) takes a zone from the CIDRs only.
        """
        if ip is None:
            return self.vlan_zone(vlan)
        if not self.is_internal(ip):
            return self.cidr_zone(ip)         # a public source is never on a site VLAN: it was routed there
        own = self.places.own_vlan(ip)
        zone = self.vlan_zone(own) if own is not None else None
        if zone is None:
            zone = self.cidr_zone(ip)
        if zone is None and own is None and not self.places.only_routed(ip):
            zone = self.vlan_zone(vlan)
        return zone

    def sighting_zone(self, ip: str | None, vlan: tuple[int, ...]) -> str | None:
        """The zone of a frame a host's own MAC sent on `vlan` (a HostSeen sighting): VLAN, then CIDR."""
        return self.vlan_zone(vlan) or (self.cidr_zone(ip) if ip is not None else None)

    def vlan_zone(self, vlan: tuple[int, ...]) -> str | None:
        """The zone of a VLAN stack: its innermost configured (or inferred voice) tag."""
        for vid in reversed(vlan):
            zone = self._vlan_zone.get(vid)
            if zone is not None:
                return zone
            if vid in self.inferred_voice_vlans:
                return "voice"
        return None

    def cidr_zone(self, ip: str) -> str | None:
        addr = _addr(ip)
        if addr is not None:
            for name, nets in self._zone_nets.items():
                if any(addr in n for n in nets):
                    return name
        return None

    def is_internal(self, ip: str | None) -> bool:
        addr = _addr(ip) if ip else None
        return addr is not None and any(addr in n for n in self._internal)

    def has_role(self, ip: str | None, role: str) -> bool:
        addr = _addr(ip) if ip else None
        return addr is not None and any(addr in n for n in self._role_nets[role])

    def role_configured(self, role: str) -> bool:
        return bool(self._role_nets[role])

    # -- dial plan --------------------------------------------------------------------------
    def number_class(self, number: str | None) -> str | None:
        """emergency | premium | high_risk | international | internal | None (national/unknown)."""
        if not number:
            return None
        for cls in ("emergency", "premium", "high_risk", "international", "internal"):
            if any(p.search(number) for p in self._patterns[cls]):
                return cls
        return None

    def is_external_number(self, number: str | None) -> bool:
        cls = self.number_class(number)
        return cls in ("premium", "high_risk", "international") or (bool(number) and cls is None
                                                                     and number.lstrip("+").isdigit()
                                                                     and len(number.lstrip("+")) >= 7)

    def off_hours(self, ts: float) -> bool:
        local = datetime.fromtimestamp(ts + self.dialplan.utc_offset_h * 3600, tz=timezone.utc)
        start, end, days = self._hours
        minute = local.hour * 60 + local.minute
        return local.weekday() not in days or not (start <= minute < end)


def _parse_hours(text: str) -> tuple[int, int, frozenset[int]]:
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})\s+(\w{3})-(\w{3})\s*", text)
    names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    if not m or m.group(5).lower() not in names or m.group(6).lower() not in names:
        raise ConfigError(f"[dialplan] business_hours: expected like '07:00-19:00 Mon-Fri', got {text!r}")
    first, last = names.index(m.group(5).lower()), names.index(m.group(6).lower())
    days = frozenset(range(first, last + 1)) if first <= last else frozenset(list(range(first, 7)) + list(range(0, last + 1)))
    return int(m.group(1)) * 60 + int(m.group(2)), int(m.group(3)) * 60 + int(m.group(4)), days


def _networks(cidrs: tuple[str, ...], where: str) -> list:
    nets = []
    for cidr in cidrs:
        try:
            nets.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as exc:
            raise ConfigError(f"[{where}]: {exc}") from exc
    return nets


@lru_cache(maxsize=65536)
def _addr(ip: str):
    try:
        return ipaddress.ip_address(ip)
    except ValueError:
        return None
