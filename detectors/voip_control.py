"""UM-07: VoIP control protocols other than SIP (MGCP, H.248/Megaco, H.225.0/Q.931 and RAS, SCCP/Skinny,
IAX2) readable on the network, one finding per protocol and host pair."""
from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field

from voipwatch.config_schema import ConfigError, opt
from voipwatch.detect import AlertSpec, Detector, register
from voipwatch.records import VoipControl

SG = "Part II: Signaling gateway protections"
NAMES = {"mgcp": "MGCP", "megaco": "H.248/Megaco", "h225": "H.225.0/Q.931 call signalling", "h225.ras": "H.225.0 RAS",
         "sccp": "SCCP/Skinny", "iax2": "IAX2"}
# What each protocol's own standard offers instead (the actionable sentence of the finding).
ADVICE = {
    "mgcp": "carry MGCP over IPsec between gateway and call agent (RFC 3435 §5)",
    "megaco": "carry H.248 over IPsec (RFC 3525 §10) or move the gateway link to an encrypted path",
    "h225": "secure H.323 signalling with H.235 and TLS, or move to SIP over TLS",
    "h225.ras": "secure RAS with H.235 tokens and keep it inside a protected network",
    "sccp": "set the phones' security profile to encrypted (SCCP over TLS, TCP 2443)",
    "iax2": "turn on IAX2 encryption (RFC 5456 §6.2, ENCRYPTION IE) or carry the trunk over IPsec",
}


@dataclass(frozen=True)
class Config:
    rollup_window_s: float = opt(3600.0, "Capture seconds a protocol and host pair gathers before it is reported with its "
                                         "totals (at most one finding per pair per window).")
    allow_pairs: tuple[str, ...] = opt((), "'A B' address or CIDR pairs where cleartext control is accepted by design "
                                           "(a gateway on an isolated point-to-point link): info.")
    max_listed: int = opt(20, "Message names, endpoints and call ids listed in one finding at most.")
    max_pairs: int = opt(20000, "Cap on protocol/host pairs gathered at once; the oldest is reported early when hit.")


@dataclass
class _Pair:
    due: float
    first_ts: float
    last_ts: float
    src: str                      # the sender of the first message seen
    dst: str
    vlan: tuple[int, ...]
    messages: Counter = field(default_factory=Counter)
    endpoints: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    with_numbers: int = 0         # messages carrying a calling or called number
    srtp_offers: int = 0          # MGCP session descriptions offering RTP/SAVP (keys travel in cleartext MGCP)
    encrypted: int = 0            # IAX2 NEW/ACCEPT negotiating encryption


def _nets(pair: str) -> tuple:
    ends = pair.replace(",", " ").split()
    if len(ends) != 2:
        raise ConfigError(f"[detectors.voip_control] allow_pairs: {pair!r} is not 'A B'")
    try:
        return tuple(ipaddress.ip_network(e, strict=False) for e in ends)
    except ValueError as exc:
        raise ConfigError(f"[detectors.voip_control] allow_pairs: {exc}") from exc


def _in(ip: str, net) -> bool:
    try:
        return ipaddress.ip_address(ip) in net
    except ValueError:
        return False


@register
class VoipControlDetector(Detector):
    """Cleartext VoIP control protocols other than SIP (UM-07; NSA guide Part II: Signaling gateway
    protections; Part I: Trusted path and channel protections).

    What: every MGCP, H.248/Megaco, H.225.0 (Q.931 over TPKT on 1720, RAS on 1719), SCCP/Skinny (TCP 2000) and
    IAX2 message the dissectors recognised by content on their ports, rolled up per protocol and host pair over
    rollup_window_s: message counts by name, endpoints, call ids, how many carried phone numbers.
    Why: these protocols set up calls, name endpoints and numbers and (MGCP, SCCP) hand out media keys and
    addresses in the clear; the guide asks for all signalling on protected channels.
    Severity: medium; high when one end is outside the site's internal prefixes; info for an allowed pair. An
    IAX2 pair whose NEW/ACCEPT negotiated encryption is not reported.
    Tune: allow_pairs for gateways on isolated point-to-point links.
    False positives: H.235 tokens inside H.225.0 user-user information are not decoded, so an H.323 system
    that authenticates with H.235 is still reported (its Q.931, numbers included, is readable all the same);
    MGCP or Megaco protected by IPsec is never seen as cleartext (ESP hides it).
    """
    name = "voip_control"
    consumes = (VoipControl,)
    Config = Config
    alerts = {
        "cleartext_control": AlertSpec("UM-07", "medium", SG,
                                       "A VoIP control protocol other than SIP (MGCP, H.248, H.323, SCCP, IAX2) ran in cleartext"),
    }

    def __init__(self, config: Config, site):
        super().__init__(config, site)
        self._allowed = [_nets(p) for p in config.allow_pairs]
        self._pairs: dict[tuple, _Pair] = {}     # insertion order is due order (one window, one clock)

    def _allowed_pair(self, a: str, b: str) -> bool:
        return any((_in(a, x) and _in(b, y)) or (_in(a, y) and _in(b, x)) for x, y in self._allowed)

    def _due(self, now: float):
        while self._pairs:
            key, pair = next(iter(self._pairs.items()))
            if pair.due > now and len(self._pairs) <= self.config.max_pairs:
                break
            del self._pairs[key]
            yield from self._report(key, pair)

    def on_voip_control(self, m: VoipControl):
        pkt = m.pkt
        yield from self._due(pkt.ts)
        key = (m.protocol, *sorted((pkt.src, pkt.dst)))
        pair = self._pairs.get(key)
        if pair is None:
            pair = self._pairs[key] = _Pair(pkt.ts + self.config.rollup_window_s, pkt.ts, pkt.ts, pkt.src, pkt.dst,
                                            pkt.vlan)
        pair.last_ts = max(pair.last_ts, pkt.ts)
        listed = self.config.max_listed
        pair.messages[m.message if m.message in pair.messages or len(pair.messages) < listed else "other"] += 1
        if m.endpoint and m.endpoint not in pair.endpoints and len(pair.endpoints) < listed:
            pair.endpoints.append(m.endpoint)
        if m.call_id and m.call_id not in pair.calls and len(pair.calls) < listed:
            pair.calls.append(m.call_id)
        pair.with_numbers += bool(m.calling or m.called)
        pair.srtp_offers += m.protocol == "mgcp" and m.secure is True
        pair.encrypted += m.protocol == "iax2" and m.secure is True

    def finish(self):
        while self._pairs:
            key = next(iter(self._pairs))
            yield from self._report(key, self._pairs.pop(key))

    def _report(self, key: tuple, g: _Pair):
        protocol, a, b = key
        if g.encrypted:
            return
        public = [ip for ip in (a, b) if not self.site.is_internal(ip)]
        allowed = self._allowed_pair(a, b)
        severity = "info" if allowed else "high" if public else "medium"
        n = sum(g.messages.values())
        counts = ", ".join(f"{k} x{v}" for k, v in g.messages.most_common())
        numbers = f"; {g.with_numbers} carried phone numbers" if g.with_numbers else ""
        keys = f"; {g.srtp_offers} SRTP offer(s) travelled inside it" if g.srtp_offers else ""
        yield self.alert(
            "cleartext_control", ts=g.last_ts, first_ts=g.first_ts, identifier=f"{protocol} {a} <-> {b}", src=g.src,
            dst=g.dst, vlan=g.vlan, severity=severity, totals={"messages": n},
            msg=(f"{n} {NAMES[protocol]} message(s) between {g.src} and {g.dst} were readable ({counts}){numbers}{keys}"
                 f"{'; one end is public' if public else ''}: {ADVICE[protocol]}."),
            evidence={"protocol": protocol, "hosts": [g.src, g.dst], "messages": n, "by_message": dict(g.messages),
                      "endpoints": g.endpoints, "call_ids": g.calls, "messages_with_numbers": g.with_numbers,
                      "srtp_offers": g.srtp_offers, "public_ends": public, "allowed_pair": allowed,
                      "first_ts": g.first_ts, "last_ts": g.last_ts})
