"""Cross-VLAN leakage: traffic crossing the voice/data separation the NSA guide asks for (nsa-checks.md §4)."""
from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

from voipwatch.config_schema import opt
from voipwatch.detect import AlertSpec, Detector, register
from voipwatch.legs import CallLegs
from voipwatch.records import (DnsMessage, FlowSeen, HostSeen, IcmpError, L2Neighbor, RtpStream, SipMessage,
                               vlan_path_text)
from voipwatch.windows import BoundedMap

SEP = "Part I: Accessibility and network separation"
SERVICES = "Part I: Network services and protocols protections"
EAVES = "Part I: Call eavesdropping protections"
PSTN = "Part II: PSTN gateway protections"
PUBLIC_NET = "Part II: Protections for public IP networks functioning as voice carriers"

SIP_PORTS = frozenset((5060, 5061))          # RFC 3261 §19.1.2 (5061: SIP over TLS, §26.2.2)
DNS, DHCP_SERVER, DHCP_CLIENT, NTP = 53, 67, 68, 123   # RFC 1035, RFC 2131 §4.1, RFC 5905 §7.2
SHARED_PORTS = frozenset((DNS, DHCP_SERVER, DHCP_CLIENT, NTP))
TCP_SYN, TCP_RST = 0x02, 0x04                # RFC 9293 §3.1
UNSPECIFIED = ("0.0.0.0", "::")
PHONE_SERVERS = ("esc", "sbc", "prov_servers", "dns_voice", "ntp_voice", "dhcp_voice")
SIGNALLING_PEERS = ("esc", "sbc", "pstn_gw", "trusted_trunks")
USER_ZONES = ("data", "softphone", "wlan")
CLAIM_TEXT = 64                              # characters of a claimed platform kept per host for the evidence


@dataclass(frozen=True)
class Config:
    softphones_in_data: bool = opt(False, "Dense-softphone site (guide IV-Soft): SIP/RTP in the data zone is allowed to and from an ESC/SBC.")
    firewall_macs: tuple[str, ...] = opt((), "MACs of the application-layer firewall/proxy between voice and data: flows through them were inspected (XV-03).")
    reply_wait_s: float = opt(30.0, "Capture seconds a data<->voice flow waits for a reply before it is reported as an unanswered attempt.")
    allowed_destinations: tuple[str, ...] = opt(("224.0.0.0/4", "255.255.255.255/32", "ff00::/8"), "Destinations phones may reach besides the voice servers, e.g. paging multicast (XV-04).")
    gateway_control_ports: tuple[int, ...] = opt((22, 23, 80, 161, 443, 1719, 1720, 2427, 2727, 5061), "Signalling/management ports on a PSTN gateway: SSH, Telnet, HTTP(S), SNMP, H.225 RAS/Q.931, MGCP, SIP/TLS (XV-06).")
    cloud_uc: tuple[str, ...] = opt((), "CIDRs of cloud UC platforms that internal hosts may reach directly (XV-07).")
    qinq_outer_vlans: tuple[int, ...] = opt((), "Outer (S-)VLAN ids of provider QinQ trunks, where double tags are expected (XV-12).")
    min_media_packets: int = opt(3, "RTP packets a stream needs before its peers are judged (unannounced_media_peer).")
    infer_min_voip_flows: int = opt(4, "SIP flow directions plus RTP streams an inner VLAN needs before it can be inferred as voice.")
    infer_voip_share: float = opt(0.5, "Share of a VLAN's flows (DNS/DHCP/NTP aside) that must be SIP/RTP for it to be inferred as voice.")
    max_entries: int = opt(100_000, "Cap on each table (hosts, MACs, calls, media peers, flows awaiting replies); LRU.")
    max_per_host: int = opt(32, "Distinct (VLAN, IP) sightings kept per MAC and addresses kept per call.")
    state_idle_s: float = opt(86_400.0, "Capture seconds after which an untouched host, call or media peer is forgotten.")


@dataclass
class _Host:
    sightings: dict = field(default_factory=dict)   # (vlan, ip) -> first ts, the host's own frames
    claim: tuple | None = None                       # (ts, vlan, protocol, phone, platform, med_class): the
                                                     # host's first voice VLAN discovery frame
    dual_alerted: bool = False
    hop_alerted: bool = False


@dataclass
class _Call:
    signalling: set = field(default_factory=set)    # hosts that carried the call's SIP
    legs: CallLegs | None = None                     # offer/answer per leg (voipwatch.legs)


@lru_cache(maxsize=65536)
def _ip(text: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _mac(text: str) -> str:
    return text.lower().replace("-", ":")


def _asks_voice_vlan(n: L2Neighbor) -> bool:
    """A CDP VoIP VLAN Query, or LLDP-MED from an endpoint: a class I-III device type, or a network policy
    from a sender that does not claim to be a switch/router (TIA-1057 §10.2.3: endpoints learn their voice
    VLAN from the switch's policy)."""
    if n.protocol == "cdp":
        return n.voice_vlan_query
    return n.med_class in (1, 2, 3) or (n.med_policy and not n.network_device)


@register
class CrossVlan(Detector):
    """Cross-VLAN leakage and network separation (nsa-checks.md §4: XV-01/03/04/05/06/07/12/13).

    Why: the guide (Part I "Accessibility and network separation") wants voice and data on separate VLANs,
    nothing between them unless an application-layer firewall or DMZ proxy examined it, endpoints reaching
    only the UC servers they need, separate DNS/DHCP/NTP per zone (Part I "Network services and protocols
    protections"), gateways behind the SBC and remote phones on a VPN (Part II).

    Alerts (check, default severity):
    - voip_in_data_zone (XV-01, high): SIP, SIP/TLS (TCP 5061) or RTP with an endpoint in the data zone; with
      `softphones_in_data` (the guide's dense-softphone option) only traffic to an ESC/SBC is allowed.
    - direct_data_voice_flow (XV-03, high when answered; medium when refused by the target (TCP RST, or an ICMP
      error from the target itself, e.g. port unreachable: the host is reachable), blocked on the way (an ICMP
      error from another address, e.g. a router's administratively prohibited) or unanswered after
      `reply_wait_s`): any other flow between a data and a voice host, not via `firewall_macs`, the UC DMZ or
      roles.dual_role_dmz (DNS/DHCP/NTP are XV-05's). An ICMP error answers the flow it quotes (RFC 792).
    - media_zone_mismatch (XV-03, medium): SDP whose c= address lies in another zone than its sender.
    - unneeded_server_contact (XV-04, medium; needs roles.esc or roles.sbc): a voice-zone phone opening a flow
      to anything but the ESC, SBC, provisioning, voice DNS/NTP/DHCP, SDP media peers and `allowed_destinations`.
    - unannounced_media_peer (XV-04, high): RTP of a call whose source or destination address is neither in
      the call's SDP (any leg) nor one of its signalling hosts (RTP injection, RTP bleed, hijack); judged once a
      leg has an offer and its answer, or the 18x preview early media follows (voipwatch.legs, RFC 3264 §4). Filed under XV-04 (a peer the endpoint was never set up to talk to); guide
      section "Call eavesdropping protections", since media reaches a stranger.
    - shared_infrastructure_service (XV-05, medium): a voice client answered by a data DNS/NTP/DHCP server or the
      reverse; responses only (DNS responses, NTP replies from 123, DHCP from 67 to 68).
    - gateway_bypasses_sbc (XV-06, high; needs roles.pstn_gw): a host other than the ESC/SBC/trusted trunks
      sending SIP, or opening `gateway_control_ports`, to a PSTN gateway.
    - perimeter_bypass (XV-07, high; needs roles.sbc): SIP/RTP between an internal non-SBC host and a public
      address, or a REGISTER from a public source outside roles.remote_vpn_pool.
    - vlan_hopping (XV-12, critical; high if the only sign is a non-phone asking for the voice VLAN): frames
      double-tagged with a voice VLAN inside (outer not in `qinq_outer_vlans`); a CDP VoIP VLAN Query or an
      LLDP-MED endpoint frame from a MAC that does not claim to be a phone or that sends IP on a data-side VLAN.
    - dual_role_host (XV-13, medium): one MAC (or IP without MAC) with IP activity in both voice and data zones,
      not in roles.gateway_macs/`firewall_macs`, not in roles.dual_role_dmz, not already a vlan_hopping MAC.

    Zones: a host's own zone is its CIDR zone, else the zone of the VLAN its own MAC first sent from (Site.zone_of:
    a router's frame carries the destination's VLAN, so declared and learned gateway MACs place no host, and a
    public address takes no zone from a VLAN), else (senders never placed nor seen behind a gateway) the
    packet's VLAN. Without [zones.voice] and with [site] infer_voice_vlan, an
    inner VLAN becomes voice once its SIP flow directions and RTP streams reach `infer_min_voip_flows` and
    `infer_voip_share` of its flows (DNS/DHCP/NTP aside): decided on record order only, never revoked, shared
    through Site.inferred_voice_vlans; every alert says `voice_zone` (configured, inferred, unknown).
    Tune: declare gateway/firewall MACs, DMZ hosts, multicast groups, cloud UC, provider QinQ trunks.
    Known false positives: routers/firewalls not declared (dual_role_host); ICE/TURN candidates and SBC
    latching that c= does not show (unannounced_media_peer); split-view resolvers and DHCP relays (XV-05);
    vendor agents sending LLDP-MED from PCs (XV-12).
    """
    name = "cross_vlan"
    consumes = (SipMessage, RtpStream, FlowSeen, HostSeen, L2Neighbor, DnsMessage, IcmpError)
    Config = Config
    alerts = {
        "voip_in_data_zone": AlertSpec("XV-01", "high", SEP, "SIP or RTP with an endpoint in the data zone"),
        "direct_data_voice_flow": AlertSpec("XV-03", "high", SEP, "Flow directly between the data and voice zones"),
        "media_zone_mismatch": AlertSpec("XV-03", "medium", SEP, "SDP sends media to another zone than its signalling"),
        "unneeded_server_contact": AlertSpec("XV-04", "medium", SEP, "Phone contacting a host it does not need"),
        "unannounced_media_peer": AlertSpec("XV-04", "high", EAVES, "RTP from or to an address the call's SDP never offered"),
        "shared_infrastructure_service": AlertSpec("XV-05", "medium", SERVICES, "DNS/DHCP/NTP answered across the voice/data boundary"),
        "gateway_bypasses_sbc": AlertSpec("XV-06", "high", PSTN, "Host other than the ESC/SBC signalling to a PSTN gateway"),
        "perimeter_bypass": AlertSpec("XV-07", "high", PUBLIC_NET, "UC traffic to or from the Internet not via the SBC"),
        "vlan_hopping": AlertSpec("XV-12", "critical", SEP, "Voice VLAN hopping indicator"),
        "dual_role_host": AlertSpec("XV-13", "medium", SEP, "Host active in both the voice and data zones outside the DMZ"),
    }

    def __init__(self, config: Config, site):
        super().__init__(config, site)
        cap, idle = config.max_entries, config.state_idle_s
        self._hosts: BoundedMap[_Host] = BoundedMap(cap, idle, _Host)
        self._calls: BoundedMap[_Call] = BoundedMap(cap, idle, _Call)
        self._media_peers: BoundedMap = BoundedMap(cap, idle)    # addresses any SDP announced
        self._qinq: BoundedMap = BoundedMap(cap, idle)           # double tags whose inner VLAN is not (yet) voice
        self._pending: OrderedDict = OrderedDict()               # XV-03 flows awaiting their reply
        self._votes: dict[int, list[int]] = {}                   # inner VLAN id -> [voip, other] (<= 4096 keys)
        self._fw_macs = frozenset(_mac(m) for m in config.firewall_macs)
        site.declare_gateway_macs(self._fw_macs)       # firewalls route too: their frames place no host
        self._allowed = [ipaddress.ip_network(c, strict=False) for c in config.allowed_destinations]
        self._cloud = [ipaddress.ip_network(c, strict=False) for c in config.cloud_uc]
        voice, data = site.zones["voice"], site.zones["data"]
        self._voice_configured = bool(voice.vlans or voice.cidrs)
        self._inferring = not self._voice_configured and site.site.infer_voice_vlan
        if self._inferring:
            site.inferred_voice_vlans = frozenset()         # each run infers afresh, even on a reused Site
        self._data = bool(data.vlans or data.cidrs)
        self._roles = {r for r in ("esc", "sbc", "pstn_gw") if site.role_configured(r)}

    def idle_reasons(self) -> list[str]:
        reasons = []
        if not self._data:
            reasons.append("XV-01, XV-03, XV-05, XV-13 and media_zone_mismatch need [zones.data] vlans or cidrs")
        if not self._voice_configured and not self._inferring:
            reasons.append("voice-zone checks need [zones.voice] or [site] infer_voice_vlan = true")
        if not self._roles & {"esc", "sbc"}:
            reasons.append("XV-04 unneeded_server_contact needs roles.esc or roles.sbc")
        if "pstn_gw" not in self._roles:
            reasons.append("XV-06 needs roles.pstn_gw")
        if "sbc" not in self._roles:
            reasons.append("XV-07 needs roles.sbc")
        return reasons

    # -- zones and roles --------------------------------------------------------------------
    def _voice_vlans(self) -> set[int]:
        return set(self.site.zones["voice"].vlans) | set(self.site.inferred_voice_vlans)

    def _home(self, ip: str | None, vlan: tuple[int, ...] = ()) -> str | None:
        """A host's own zone: CIDR plan, else Site.zone_of (the VLAN its own MAC sent from; the packet's
        `vlan`, given for senders only, while nothing placed the address)."""
        if ip is None:
            return self.site.zone_of(None, vlan)
        return self.site.cidr_zone(ip) or self.site.zone_of(ip, vlan)

    def _role(self, ip: str | None, *roles: str) -> bool:
        return any(self.site.has_role(ip, r) for r in roles)

    def _dmz(self, ip: str | None) -> bool:
        return self._role(ip, "dual_role_dmz") or self._home(ip) == "uc_dmz"

    def _public(self, ip: str) -> bool:
        addr = _ip(ip)
        return (addr is not None and not self.site.is_internal(ip) and not addr.is_multicast
                and not addr.is_unspecified and ip != "255.255.255.255")

    def _raise(self, key: str, evidence: dict, **kw):
        evidence["voice_zone"] = ("configured" if self._voice_configured else
                                  "inferred" if self.site.inferred_voice_vlans else "unknown")
        if self._inferring and self.site.inferred_voice_vlans:
            evidence["inferred_voice_vlans"] = sorted(self.site.inferred_voice_vlans)
        if "actors" not in kw:          # incidents: the host that sent it, by address and by MAC
            kw["actors"] = ([f"ip:{kw['src']}"] if kw.get("src") else []) + (
                [f"mac:{evidence['mac']}"] if evidence.get("mac") else [])
        return self.alert(key, evidence=evidence, totals=kw.pop("totals", {"sightings": 1}), **kw)

    # -- voice VLAN inference ---------------------------------------------------------------
    def _vote(self, vlan: tuple[int, ...], voip: bool):
        if not self._inferring or not vlan or vlan[-1] in self.site.inferred_voice_vlans:
            return
        vid = vlan[-1]
        tally = self._votes.setdefault(vid, [0, 0])
        tally[0 if voip else 1] += 1
        if tally[0] >= self.config.infer_min_voip_flows and tally[0] >= self.config.infer_voip_share * sum(tally):
            self.site.inferred_voice_vlans = frozenset(self.site.inferred_voice_vlans | {vid})
            for key, host in list(self._qinq.items()):
                if key[2][-1] == vid:
                    self._qinq.pop(key)
                    yield self._double_tag_alert(host)

    # -- handlers ---------------------------------------------------------------------------
    def on_sip_message(self, m: SipMessage):
        p = m.pkt
        self._track_call(m)
        extra = {"method": m.method or m.cseq_method, "status": m.status}
        if m.vlan_path is not None:
            extra["vlan_path"] = vlan_path_text(m.vlan_path)
        yield from self._voip_in_data(p.ts, p.src, p.dst, p.vlan, "sip", m.call_id, extra)
        yield from self._gateway(p.ts, p.src, p.dst, p.vlan, "sip", m.call_id)
        yield from self._perimeter(p.ts, p.src, p.dst, p.vlan, "sip", m.call_id,
                                   m.is_request and m.method == "REGISTER")
        if m.sdp is not None:
            yield from self._media_zone(m)

    def on_rtp_stream(self, s: RtpStream):
        yield from self._vote(s.vlan, True)
        evidence = {"ssrc": f"0x{s.ssrc:08x}", "packets": s.packets, "codec": s.codec}
        yield from self._voip_in_data(s.first_ts, s.src, s.dst, s.vlan, "rtp", s.call_id, evidence)
        yield from self._perimeter(s.first_ts, s.src, s.dst, s.vlan, "rtp", s.call_id, False)
        yield from self._unannounced(s)

    def on_flow_seen(self, f: FlowSeen):
        p = f.pkt
        ports = {p.sport, p.dport}
        sip = f.app == "sip" or bool(ports & SIP_PORTS)
        yield from self._flush(p.ts)
        if not ports & SHARED_PORTS:
            yield from self._vote(p.vlan, sip)
        if p.transport == "tcp" and 5061 in ports:
            yield from self._voip_in_data(p.ts, p.src, p.dst, p.vlan, "sip-tls", None, {"dport": p.dport})
        if not sip and not ports & SHARED_PORTS:
            yield from self._direct(f)
        yield from self._unneeded(f, sip)
        if (not f.reply and p.dport in self.config.gateway_control_ports and f.app != "sip"
                and self._role(p.dst, "pstn_gw")):
            yield from self._gateway(p.ts, p.src, p.dst, p.vlan, f"{p.transport}/{p.dport}", None)
        if f.reply and p.sport == NTP:
            yield from self._shared("ntp", p.src, p.dst, p.vlan, p.ts, {})
        if p.sport == DHCP_SERVER and p.dport == DHCP_CLIENT:     # RFC 2131 §4.1: a server's answer
            yield from self._shared("dhcp", p.src, p.dst, p.vlan, p.ts, {})

    def on_icmp_error(self, e: IcmpError):
        """An ICMP error quoting a data<->voice attempt answers it (XV-03)."""
        yield from self._flush(e.ts)
        if e.quoted_transport is None:
            return
        key = (e.quoted_transport, e.quoted_src, e.quoted_sport, e.quoted_dst, e.quoted_dport)
        request = self._pending.pop(key, None)
        if request is not None:
            from_target = e.src == e.quoted_dst
            yield self._direct_alert(*request, "refused" if from_target else "blocked",
                                     answer={"kind": "icmp", "family": e.family, "type": e.icmp_type, "code": e.code,
                                             "meaning": e.meaning, "from": e.src, "from_target": from_target,
                                             "ts": e.ts, "frame": e.frame})

    def on_dns_message(self, m: DnsMessage):
        if m.is_response:
            p = m.pkt
            yield from self._shared("dns", p.src, p.dst, p.vlan, p.ts, {"qname": m.qname, "rcode": m.rcode})

    def on_host_seen(self, h: HostSeen):
        if self.site.places.is_gateway(h.mac):
            return                               # routers and firewalls carry every VLAN's addresses
        if len(h.vlan) >= 2 and h.vlan[0] not in self.config.qinq_outer_vlans:
            if h.vlan[-1] in self._voice_vlans():
                yield self._double_tag_alert(h)
            elif self._inferring:
                self._qinq.set((h.mac, h.ip, h.vlan), h, h.ts)
            return                               # an injected frame says nothing of the host's own VLANs
        key = h.mac or h.ip
        if key is None:
            return
        host = self._hosts.touch(key, h.ts)
        if len(host.sightings) < self.config.max_per_host:
            host.sightings.setdefault((h.vlan, h.ip), h.ts)
        yield from self._hop_check(key, host)
        yield from self._dual_role(key, host, h)

    def on_l2_neighbor(self, n: L2Neighbor):
        if not _asks_voice_vlan(n) or n.network_device or n.src_mac is None or self.site.places.is_gateway(n.src_mac):
            return
        host = self._hosts.touch(n.src_mac, n.ts)
        if host.claim is None:
            platform = n.platform[:CLAIM_TEXT] if n.platform is not None else None
            host.claim = (n.ts, n.vlan, n.protocol, n.phone, platform, n.med_class)
        yield from self._hop_check(n.src_mac, host)

    def finish(self):
        yield from self._flush(float("inf"))

    # -- XV-01 ------------------------------------------------------------------------------
    def _voip_in_data(self, ts, src, dst, vlan, proto, call_id, extra):
        if not self._data:
            return
        for host, peer, sender in ((src, dst, True), (dst, src, False)):
            if self._home(host, vlan if sender else ()) != "data" or self._role(host, "esc", "sbc"):
                continue
            if self.config.softphones_in_data and self._role(peer, "esc", "sbc"):
                continue
            yield self._raise("voip_in_data_zone", ts=ts, identifier=host, src=src, dst=dst, vlan=vlan,
                              call_id=call_id, msg=f"{proto.upper()} between {host} in the data zone and {peer}: "
                              "move VoIP to the voice VLAN or route it through the UC DMZ.",
                              evidence={"data_host": host, "peer": peer, "peer_zone": self._home(peer),
                                        "protocol": proto, "first_ts": ts, **extra})

    # -- XV-03 ------------------------------------------------------------------------------
    def _direct(self, f: FlowSeen):
        p = f.pkt
        if self._fw_macs & {_mac(f.src_mac or ""), _mac(f.dst_mac or "")}:
            return
        zones = (self._home(p.src, p.vlan), self._home(p.dst))
        if set(zones) != {"data", "voice"} or self._dmz(p.src) or self._dmz(p.dst):
            return
        if not f.reply:
            key = (p.transport, p.src, p.sport, p.dst, p.dport)
            if key not in self._pending:
                self._pending[key] = (f, zones)
                if len(self._pending) > self.config.max_entries:
                    yield self._direct_alert(*self._pending.popitem(last=False)[1], "unanswered")
            return
        request = self._pending.pop((p.transport, p.dst, p.dport, p.src, p.sport), None)
        refused = f.tcp_flags is not None and f.tcp_flags & TCP_RST and not f.tcp_flags & TCP_SYN
        yield self._direct_alert(*(request or (f, zones[::-1])), "refused" if refused else "answered",
                                 reversed_flow=request is None,
                                 answer={"kind": "tcp_rst" if refused else "reply", "from": p.src, "ts": p.ts,
                                         "frame": p.frame})

    def _flush(self, now: float):
        while self._pending:
            f, zones = next(iter(self._pending.values()))
            if now - f.pkt.ts <= self.config.reply_wait_s:
                return
            self._pending.popitem(last=False)
            yield self._direct_alert(f, zones, "unanswered")

    def _direct_alert(self, f: FlowSeen, zones, outcome: str, reversed_flow: bool = False, answer: dict | None = None):
        """outcome: answered (a reply: high), refused (TCP RST or an ICMP error from the target: it is
        reachable), blocked (an ICMP error from another address on the way), unanswered."""
        p = f.pkt
        client, server, port = (p.dst, p.src, p.sport) if reversed_flow else (p.src, p.dst, p.dport)
        severity = "high" if outcome == "answered" else "medium"
        how = outcome
        if answer is not None and answer["kind"] == "icmp":
            how = f"{outcome}: {answer['from']} answered ICMP {answer['meaning']}"
        evidence = {"initiator": client, "initiator_zone": zones[0], "target": server, "target_zone": zones[1],
                    "transport": p.transport, "dport": port, "outcome": outcome, "first_ts": p.ts,
                    "answer": answer, "target_reachable": outcome in ("answered", "refused")}
        if f.vlan_path is not None:
            evidence["vlan_path"] = vlan_path_text(f.vlan_path)
        return self._raise("direct_data_voice_flow", ts=p.ts, identifier=f"{client}>{server}/{outcome}",
                           severity=severity, src=client, dst=server, dport=port, vlan=p.vlan,
                           msg=f"{client} ({zones[0]}) opened {p.transport}/{port} to {server} ({zones[1]}) "
                               f"without the application-layer firewall ({how}): block or proxy it.",
                           evidence=evidence)

    def _media_zone(self, m: SipMessage):
        p, sdp = m.pkt, m.sdp
        if not self._data or self._role(p.src, "esc", "sbc", "pstn_gw") or self._dmz(p.src):
            return
        sender_zone = self._home(p.src, p.vlan)
        for addr in sorted({md.connection or sdp.connection for md in sdp.media if md.port} - {None, *UNSPECIFIED}):
            media_zone = self._home(addr)
            if (sender_zone and media_zone and media_zone != sender_zone and not self._dmz(addr)
                    and not self._role(addr, "esc", "sbc", "pstn_gw")):
                yield self._raise("media_zone_mismatch", ts=p.ts, identifier=f"{m.call_id}:{addr}", src=p.src,
                                  dst=p.dst, vlan=p.vlan, call_id=m.call_id,
                                  msg=f"{p.src} ({sender_zone}) announced media at {addr} ({media_zone}) in SDP: "
                                      "the call's media would cross the voice/data boundary.",
                                  evidence={"sender": p.src, "sender_zone": sender_zone, "connection": addr,
                                            "connection_zone": media_zone, "cseq_method": m.cseq_method,
                                            "status": m.status, "first_ts": p.ts})

    # -- XV-04 ------------------------------------------------------------------------------
    def _unneeded(self, f: FlowSeen, sip: bool):
        p = f.pkt
        if f.reply or not self._roles & {"esc", "sbc"} or p.src in UNSPECIFIED:
            return
        if self._home(p.src, p.vlan) != "voice" or self._role(p.src, *PHONE_SERVERS, "pstn_gw", "dual_role_dmz",
                                                                  "scanner_ips") or self._dmz(p.src):
            return
        addr = _ip(p.dst)
        if (addr is None or self._role(p.dst, *PHONE_SERVERS, "pstn_gw") or p.dst in self._media_peers
                or any(addr in n for n in self._allowed)):
            return
        peer_zone = self._home(p.dst)
        if peer_zone == "data" or (sip and self._public(p.dst) and "sbc" in self._roles):
            return                                   # XV-03 and XV-07 report those
        kind = "phone" if peer_zone == "voice" else "public" if self._public(p.dst) else "internal"
        yield self._raise("unneeded_server_contact", ts=p.ts, identifier=f"{p.src}>{p.dst}", src=p.src, dst=p.dst,
                          dport=p.dport, vlan=p.vlan,
                          msg=f"Phone {p.src} opened {p.transport}/{p.dport} ({f.app}) to {p.dst} ({kind}), "
                              "which is not one of the UC servers it needs: filter it.",
                          evidence={"phone": p.src, "peer": p.dst, "peer_kind": kind, "transport": p.transport,
                                    "dport": p.dport, "app": f.app, "first_ts": p.ts})

    def _track_call(self, m: SipMessage):
        if m.call_id is None:
            return
        call = self._calls.touch(m.call_id, m.pkt.ts)
        cap = self.config.max_per_host
        if len(call.signalling) < cap:
            call.signalling.update((m.pkt.src, m.pkt.dst))
        if call.legs is None and (m.method == "INVITE" or m.sdp is not None):
            call.legs = CallLegs(m.call_id)        # dialogs without SDP (REGISTER, OPTIONS) keep no legs
        if call.legs is not None:
            call.legs.on_sip(m)
        if m.sdp is None:
            return
        for md in m.sdp.media:
            addr = md.connection or m.sdp.connection
            if addr and md.port and addr not in UNSPECIFIED:
                self._media_peers.set(addr, True, m.pkt.ts)

    def _unannounced(self, s: RtpStream):
        call = self._calls.get(s.call_id) if s.call_id else None
        if call is None or call.legs is None or not call.legs.negotiated() or s.packets < self.config.min_media_packets:
            return
        announced = call.legs.announced_addresses()
        for addr, side in ((s.src, "source"), (s.dst, "destination")):
            ip = _ip(addr)
            if addr in announced or addr in call.signalling or ip is None or ip.is_multicast:
                continue
            yield self._raise("unannounced_media_peer", ts=s.first_ts, identifier=f"{s.call_id}:{addr}",
                              src=s.src, sport=s.sport, dst=s.dst, dport=s.dport, vlan=s.vlan, call_id=s.call_id,
                              msg=f"{s.packets} RTP packets of call {s.call_id} {'came from' if side == 'source' else 'went to'} "
                                  f"{addr}, which its SDP never offered: RTP injection or bleed.",
                              evidence={"peer": addr, "side": side, "packets": s.packets,
                                        "ssrc": f"0x{s.ssrc:08x}", "sdp_addresses": sorted(announced),
                                        "first_ts": s.first_ts, "last_ts": s.last_ts})

    # -- XV-05 ------------------------------------------------------------------------------
    def _shared(self, service: str, server: str, client: str, vlan, ts: float, extra: dict):
        if not self._data:
            return
        client_zone = self._home(client, vlan)
        server_zone = ("voice" if self._role(server, f"{service}_voice") else
                       "data" if self._role(server, f"{service}_data") else self._home(server))
        if {client_zone, server_zone} != {"voice", "data"}:
            return
        yield self._raise("shared_infrastructure_service", ts=ts, identifier=f"{service}:{server}>{client_zone}",
                          src=server, dst=client, vlan=vlan,
                          msg=f"The {server_zone} {service.upper()} server {server} answered {client} in the "
                              f"{client_zone} zone: give each zone its own {service.upper()} service.",
                          evidence={"service": service, "server": server, "server_zone": server_zone,
                                    "client": client, "client_zone": client_zone, "first_ts": ts, **extra})

    # -- XV-06, XV-07 -----------------------------------------------------------------------
    def _gateway(self, ts, src, dst, vlan, proto, call_id):
        if "pstn_gw" not in self._roles:
            return
        for gw, host in ((dst, src), (src, dst)):
            if self._role(gw, "pstn_gw") and not self._role(host, *SIGNALLING_PEERS):
                yield self._raise("gateway_bypasses_sbc", ts=ts, identifier=f"{host}>{gw}", src=src, dst=dst,
                                  vlan=vlan, call_id=call_id,
                                  msg=f"{host} exchanged {proto} with PSTN gateway {gw} directly: only the "
                                      "ESC/SBC should signal to gateways.",
                                  evidence={"host": host, "gateway": gw, "host_zone": self._home(host),
                                            "protocol": proto, "first_ts": ts})
                return

    def _perimeter(self, ts, src, dst, vlan, proto, call_id, register_: bool):
        if "sbc" not in self._roles:
            return
        for inside, outside in ((src, dst), (dst, src)):
            if not self._public(outside) or not self.site.is_internal(inside) or self._role(outside, "remote_vpn_pool"):
                continue
            if any(_ip(outside) in n for n in self._cloud):
                continue
            kind = "remote_register" if register_ and outside == src else None
            if kind is None and self._role(inside, "sbc"):
                continue
            kind = kind or f"{proto}_to_internet"
            yield self._raise("perimeter_bypass", ts=ts, identifier=f"{inside}<>{outside}", src=src, dst=dst,
                              vlan=vlan, call_id=call_id, actors=(f"ip:{outside}",),
                              msg=(f"REGISTER from public {outside} to {inside} outside the remote VPN pool: "
                                   "remote phones must connect over a VPN." if kind == "remote_register" else
                                   f"{proto.upper()} between internal {inside} and public {outside} not via the SBC."),
                              evidence={"internal": inside, "public": outside, "kind": kind, "first_ts": ts})
            return

    # -- XV-12, XV-13 -----------------------------------------------------------------------
    def _double_tag_alert(self, h: HostSeen):
        return self._raise("vlan_hopping", ts=h.ts, identifier=f"{h.mac or h.ip}:double_tag", src=h.ip, vlan=h.vlan,
                           msg=f"{h.mac or h.ip} sent frames tagged {'/'.join(map(str, h.vlan))}: the inner tag is "
                               "the voice VLAN (802.1Q double-tagging hop).",
                           evidence={"indicator": "double_tag", "mac": h.mac, "ip": h.ip, "outer_vlan": h.vlan[0],
                                     "inner_vlan": h.vlan[-1], "first_ts": h.ts, "frame": h.frame})

    def _user_side(self, vlan: tuple[int, ...], ip: str | None) -> bool:
        """IP traffic on a data-side VLAN: a user zone, or (zones unknown) a tagged VLAN that is not voice."""
        if ip is None or ip in UNSPECIFIED:
            return False
        zone = self.site.sighting_zone(ip, vlan)
        if zone is not None:
            return zone in USER_ZONES
        voice = self._voice_vlans()
        return bool(vlan and voice) and vlan[-1] not in voice

    def _hop_check(self, key: str, host: _Host):
        if host.claim is None or host.hop_alerted:
            return
        ts, vlan, protocol, phone, platform, med_class = host.claim
        other = next(((v, ip, t) for (v, ip), t in host.sightings.items() if self._user_side(v, ip)), None)
        if other is None and phone is not False:
            return
        host.hop_alerted = True
        why = (f"also sends IP traffic as {other[1]} on VLAN {'/'.join(map(str, other[0])) or 'untagged'}"
               if other else "does not claim to be a phone")
        yield self._raise("vlan_hopping", ts=ts, identifier=f"{key}:voice_vlan_discovery",
                          severity="critical" if other else "high", src=other[1] if other else None, vlan=vlan,
                          msg=f"{key} asked for the voice VLAN by {protocol.upper()} and {why}: "
                              "voice VLAN hopping (e.g. VoIP Hopper).",
                          evidence={"indicator": "voice_vlan_discovery", "mac": key, "protocol": protocol,
                                    "claims_phone": phone, "platform": platform, "med_class": med_class,
                                    "data_ip": other[1] if other else None,
                                    "data_vlan": list(other[0]) if other else None, "first_ts": ts})

    def _dual_role(self, key: str, host: _Host, h: HostSeen):
        if host.dual_alerted or host.hop_alerted or not self._data:
            return
        zones: dict[str, tuple] = {}
        for (vlan, ip), ts in host.sightings.items():
            if ip is not None:                  # IP activity only: switches send per-VLAN STP/CDP everywhere
                zones.setdefault(self.site.sighting_zone(ip, vlan), (vlan, ip, ts))
        if "voice" not in zones or "data" not in zones:
            return
        host.dual_alerted = True
        ips = sorted({ip for _, ip in host.sightings if ip and ip not in UNSPECIFIED})
        if ips and all(self._role(ip, "dual_role_dmz") for ip in ips):
            return
        (vv, vip, vts), (dv, dip, dts) = zones["voice"], zones["data"]
        yield self._raise("dual_role_host", ts=h.ts, identifier=key, src=h.ip, vlan=h.vlan,
                          msg=f"{key} is active in the voice zone ({vip}) and the data zone "
                              f"({dip}): move it to the UC DMZ, or list it in roles.gateway_macs if it "
                              "is a router or firewall.",
                          evidence={"host": key, "ips": ips, "voice_vlan": list(vv), "data_vlan": list(dv),
                                    "voice_ip": vip, "data_ip": dip, "first_ts": min(vts, dts), "last_ts": h.ts})
