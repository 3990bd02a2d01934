"""Toll fraud: calls to the PSTN that someone other than the organisation's users placed or steered."""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from urllib.parse import unquote

from voipwatch.config_schema import ConfigError, opt
from voipwatch.detect import AlertSpec, Detector, Tallies, register
from voipwatch.records import SipMessage
from voipwatch.windows import BoundedMap, KeyedWindows

TOLL = ("premium", "high_risk", "international")       # number classes that cost the most
EXTERNAL = TOLL + ("national",)                          # "national": any other external number
TRUSTED_ROLES = ("esc", "sbc", "trusted_trunks", "pstn_gw")
_VISUAL = re.compile(r"[-.()\s]")                         # RFC 3966 §5.1.1 visual separators
_PHONE = re.compile(r"\+?[0-9*#]+")
MAX_VARIANTS = 64                                         # dialled variants of one number kept per source (TF-03)
MAX_ACTIVE = 1000                                         # calls in progress kept per account (TF-05)


@dataclass(frozen=True)
class Config:
    trusted_sources: tuple[str, ...] = opt((), "CIDRs trusted by IP like trunks (IP-authenticated PBXs or phones): no TF-02.")
    access_codes: tuple[str, ...] = opt((r"^101[0-9]{4}", r"^9(?=011)"), "Prefixes stripped, in order, before the dial plan "
                                        "classifies a number (NANP carrier-access code 101XXXX; outside-line 9 before 011).")
    tail_digits: int = opt(8, "Trailing digits that make two dialled strings the same number (TF-03 walking, TF-06 legs).")
    walk_variants: int = opt(3, "TF-03: distinct dialled variants of one number from one source before alerting.")
    walk_window_s: float = opt(300.0, "TF-03: window for the variants, seconds.")
    auth_lookback_s: float = opt(60.0, "TF-02: a challenge or credentials for the same source and From user this recently cover the call (nonce reuse).")
    toll_calls: int = opt(5, "TF-04: international/premium/high-risk calls from one account within toll_window_s before alerting.")
    toll_window_s: float = opt(600.0, "TF-04: window for toll_calls, seconds.")
    max_concurrent: int = opt(2, "TF-05: external calls one account may have in progress at once; one more alerts.")
    short_call_s: float = opt(10.0, "TF-05: an answered external call shorter than this is short.")
    short_calls: int = opt(10, "TF-05: short external calls from one account within short_window_s before alerting.")
    short_window_s: float = opt(600.0, "TF-05: window for short_calls, seconds.")
    setup_timeout_s: float = opt(180.0, "An unanswered INVITE stops counting as in progress after this (RFC 3261 §16.6 Timer C > 3 min).")
    max_call_s: float = opt(14400.0, "An answered call never hung up stops counting as in progress after this.")
    relay_window_s: float = opt(2.0, "TF-06: an INVITE for the same number this soon after another, from another source, is its next leg.")
    forward_allowlist: tuple[str, ...] = opt((), "TF-07: regexes of forwarding/transfer targets never reported (e.g. staff mobiles).")
    forward_codes: tuple[str, ...] = opt((r"^\*72",), "TF-07: feature codes that set call forwarding to the number dialled after them.")
    new_account_s: float = opt(86400.0, "TF-08: an address-of-record first registered this recently is new.")
    learning_s: float = opt(86400.0, "TF-08: registrations within this long of the first record seen are history, never 'new'.")
    max_tracked: int = opt(50000, "Cap on calls, sources, accounts and registrations tracked at once (least recent dropped).")


@dataclass(slots=True)
class _Leg:
    """One INVITE transaction path: a Call-ID as sent by one source (a proxy adds a second leg)."""
    call_id: str
    src: str
    sport: int
    dst: str
    dport: int
    vlan: tuple[int, ...]
    ts: float
    sent_ts: float                  # the latest (re)try of the INVITE, e.g. after a 407
    number: str | None
    cls: str | None
    account: str
    authed: bool
    first: bool = True              # not the onward leg of another source's INVITE (B2BUA/SBC)
    gateway_unauth: bool = False
    challenged: bool = False
    progressed: bool = False
    answer_ts: float | None = None
    ended: bool = False


@dataclass(slots=True)
class _Binding:
    first_ts: float
    src: str
    zone: str
    unchallenged: bool
    moved_from: str | None = None
    moved_ts: float | None = None


@register
class TollFraud(Detector):
    """Toll fraud (NSA guide Part II: PSTN gateway protections; Part III: Audit and logging apparatus).

    What: INVITEs reaching a PSTN gateway from sources other than the ESC/SBC/trunks (TF-01); external calls
    reaching 18x/2xx with no 401/407 challenge and no credentials (TF-02); one source dialling one number
    with several prefixes (TF-03); premium/high-risk numbers, international calls off-hours and bursts of
    them per account (TF-04); too many concurrent or short external calls per account (TF-05); an
    unauthenticated inbound INVITE relayed by the ESC/SBC to a gateway/trunk (TF-06); REFER, Diversion,
    3xx and forwarding feature codes to external numbers (TF-07); external calls from registrations that
    are new, unchallenged, moved zone or public (TF-08). Emergency numbers never alert. Numbers are
    classified by the [dialplan] after stripping access_codes; "national" is any other external number.
    The onward leg of a call (same number from another source within relay_window_s, e.g. ESC -> gateway)
    is not counted again, and inherits the first leg's authentication.
    Why: unauthorised calls through PSTN gateways are toll fraud; the guide asks that callers authenticate
    before a gateway completes a call and that CDRs be reviewed for it.
    Tune: declare [roles] esc, sbc, pstn_gw, trusted_trunks (TF-01 and TF-06 stay idle without them; until
    esc/sbc/trusted_trunks are set TF-02 judges only public callers of internal servers); dialplan.high_risk
    with IRSF ranges and business_hours; trusted_sources for IP-authenticated peers; the thresholds below.
    False positives: undeclared IP-authenticated trunks or phones (TF-02) and inbound DID calls from them
    (TF-04); legitimate international business (toll_calls); call centres (max_concurrent); forwarding to
    staff mobiles (forward_allowlist); remote phones outside the VPN pool (TF-08 public_binding); two users
    dialling one number within relay_window_s count as one call. A capture has no history: no account
    counts as 'new' until learning_s after the first record.
    """
    name = "toll_fraud"
    consumes = (SipMessage,)
    Config = Config
    alerts = {
        "unauthorized_gateway_access": AlertSpec("TF-01", "high", "Part II: PSTN gateway protections",
                                                 "A PSTN gateway received an INVITE from a source not allowed to signal to it"),
        "unauthenticated_call": AlertSpec("TF-02", "high", "Part II: PSTN gateway protections",
                                          "An external call progressed without any authentication"),
        "prefix_walking": AlertSpec("TF-03", "high", "Part III: Audit and logging apparatus",
                                    "One source dialled one number with several dial-out prefixes (toll-fraud probing)"),
        "high_risk_destination": AlertSpec("TF-04", "medium", "Part III: Audit and logging apparatus",
                                           "A premium/high-risk number, or an international one off-hours, was dialled"),
        "toll_call_volume": AlertSpec("TF-04", "medium", "Part III: Audit and logging apparatus",
                                      "One account placed many international/premium calls in a short window"),
        "call_velocity": AlertSpec("TF-05", "high", "Part III: Audit and logging apparatus",
                                   "One account had too many concurrent or short external calls"),
        "external_relay": AlertSpec("TF-06", "critical", "Part II: Protections for public IP networks functioning as voice carriers",
                                    "An inbound call for an external number was relayed back out to the PSTN"),
        "external_forwarding": AlertSpec("TF-07", "high", "Part III: Default UC/VVoIP server configuration settings",
                                         "A call was transferred or forwarded to an external number"),
        "new_account_external_call": AlertSpec("TF-08", "high", "Part III: Client registration protections",
                                               "A new, unchallenged or moved registration placed an external call"),
    }

    def __init__(self, config: Config, site):
        super().__init__(config, site)
        c = config
        self._access = _regexes(c.access_codes, "access_codes")
        self._allow = _regexes(c.forward_allowlist, "forward_allowlist")
        self._codes = _regexes(c.forward_codes, "forward_codes")
        try:
            self._trusted = [ipaddress.ip_network(n, strict=False) for n in c.trusted_sources]
        except ValueError as exc:
            raise ConfigError(f"[detectors.toll_fraud] trusted_sources: {exc}") from exc
        self._roles_known = any(site.role_configured(r) for r in ("esc", "sbc", "trusted_trunks"))
        self._calls: BoundedMap[dict] = BoundedMap(c.max_tracked, max(c.max_call_s, c.setup_timeout_s))
        self._auth_seen: BoundedMap[float] = BoundedMap(c.max_tracked, c.auth_lookback_s)
        self._recent: BoundedMap[_Leg] = BoundedMap(c.max_tracked, c.relay_window_s)
        self._walks: BoundedMap[dict] = BoundedMap(c.max_tracked, c.walk_window_s, dict)
        self._toll = KeyedWindows(c.toll_window_s, c.max_tracked)
        self._short = KeyedWindows(c.short_window_s, c.max_tracked)
        self._active: BoundedMap[list] = BoundedMap(c.max_tracked, max(c.max_call_s, c.setup_timeout_s))
        # Running totals of each finding's activity (living findings, voipwatch.detect.Tally).
        self._toll_acts, self._short_acts = Tallies(c.toll_window_s, c.max_tracked), Tallies(c.short_window_s, c.max_tracked)
        self._busy_acts = Tallies(max(c.max_call_s, c.setup_timeout_s), c.max_tracked)
        self._reg_txns: BoundedMap[list] = BoundedMap(c.max_tracked, c.setup_timeout_s)
        self._bindings: BoundedMap[_Binding] = BoundedMap(c.max_tracked, c.new_account_s)
        self._first_ts: float | None = None

    def idle_reasons(self) -> list[str]:
        reasons = []
        if not self.site.role_configured("pstn_gw"):
            reasons.append("TF-01 (unauthorized_gateway_access) needs roles.pstn_gw")
        if not (self.site.role_configured("esc") or self.site.role_configured("sbc")):
            reasons.append("TF-06 (external_relay) needs roles.esc or roles.sbc")
        if not self._roles_known:
            reasons.append("TF-02 (unauthenticated_call) judges only public callers of internal servers until "
                           "roles.esc/sbc/trusted_trunks are set")
        return reasons

    # -- dispatch ---------------------------------------------------------------------------
    def on_sip_message(self, msg: SipMessage):
        ts = msg.pkt.ts
        if self._first_ts is None:
            self._first_ts = ts
        if msg.is_request:
            if _has_creds(msg):
                self._auth_seen.set((msg.pkt.src, msg.from_user), ts, ts)
            if msg.method == "INVITE":
                yield from self._invite(msg)
            elif msg.method in ("BYE", "CANCEL"):
                yield from self._hangup(msg)
            elif msg.method == "REFER" and msg.refer_to:
                yield from self._forward(msg, _uri_user(msg.refer_to), "REFER Refer-To", msg.from_user)
            elif msg.method == "REGISTER" and msg.call_id:
                # [AOR user, source, VLAN, Expires, credentials sent or challenge received in this registration]
                old = self._reg_txns.get(msg.call_id, [None] * 4 + [False])
                creds = old[4] or _has_creds(msg)
                self._reg_txns.set(msg.call_id, [msg.to_user, msg.pkt.src, msg.pkt.vlan, msg.expires, creds], ts)
            return
        if msg.status in (401, 407):
            self._auth_seen.set((msg.pkt.dst, msg.from_user), ts, ts)
        if msg.cseq_method == "INVITE":
            yield from self._invite_response(msg)
        elif msg.cseq_method == "REGISTER":
            self._register_response(msg)

    # -- helpers ------------------------------------------------------------------------------
    def _classify(self, user: str | None) -> tuple[str | None, str | None]:
        """(dialled number, class): emergency, premium, high_risk, international, national, internal or None."""
        if not user:
            return None, None
        number = _VISUAL.sub("", unquote(user).split(";", 1)[0])
        if not _PHONE.fullmatch(number):
            return None, None
        if self.site.number_class(number) == "emergency":
            return number, "emergency"
        bare = number
        for pattern in self._access:
            m = pattern.match(bare)
            if m and m.end() < len(bare):
                bare = bare[m.end():]
        cls = self.site.number_class(bare)
        if cls is None and self.site.is_external_number(bare):
            cls = "national"
        return number, cls

    def _role(self, ip: str, roles: tuple[str, ...]) -> bool:
        return any(self.site.has_role(ip, r) for r in roles)

    def _judged(self, leg: _Leg) -> bool:
        """TF-02 scope: untrusted callers; without roles, only public callers of internal servers."""
        if self._role(leg.src, TRUSTED_ROLES) or any(ipaddress.ip_address(leg.src) in n for n in self._trusted):
            return False
        return self._roles_known or (not self.site.is_internal(leg.src) and self.site.is_internal(leg.dst))

    def _tail(self, number: str) -> str:
        return number[-self.config.tail_digits:]

    def _raise(self, key: str, leg: _Leg, ts: float, msg: str, identifier: str, evidence: dict,
               severity: str | None = None, first_ts: float | None = None, totals: dict | None = None,
               actors: tuple[str, ...] | None = None):
        """One raise of a finding about `leg`; its actors are the leg's source and account by default."""
        if actors is None:
            actors = (f"ip:{leg.src}",) + ((f"account:{leg.account}",) if not leg.account.startswith("src:") else ())
        return self.alert(key, ts=ts, msg=msg, identifier=identifier, src=leg.src, sport=leg.sport, dst=leg.dst,
                          dport=leg.dport, vlan=leg.vlan, call_id=leg.call_id, severity=severity, first_ts=first_ts,
                          totals={"calls": 1} if totals is None else totals, actors=actors,
                          evidence={"number": leg.number, "class": leg.cls, "account": leg.account, **evidence})

    # -- INVITE requests ----------------------------------------------------------------------
    def _invite(self, msg: SipMessage):
        p, ts, cid = msg.pkt, msg.pkt.ts, msg.call_id
        if cid is None or msg.to_tag:               # RFC 3261 §12.2: in-dialog re-INVITEs carry a To tag
            return
        legs = self._calls.touch(cid, ts) if cid in self._calls else None
        creds = _has_creds(msg)
        if legs is not None and p.src in legs:      # retransmission, or the retry after a 401/407
            leg = legs[p.src]
            leg.authed |= creds
            leg.sent_ts = ts
            if leg.challenged and leg.answer_ts is None:
                leg.ended = False
            if leg.first and leg.cls in EXTERNAL:
                self._recent.set(self._tail(leg.number), leg, ts)
            return
        number, cls = self._classify(msg.ruri_user)
        if cls == "emergency":
            return
        user = next((a.username for a in msg.auth if a.username and a.header.endswith("authorization")), None)
        seen = self._auth_seen.get((p.src, msg.from_user))
        leg = _Leg(cid, p.src, p.sport, p.dst, p.dport, p.vlan, ts, ts, number, cls,
                   user or msg.from_user or f"src:{p.src}",
                   creds or (seen is not None and ts - seen <= self.config.auth_lookback_s))
        if legs is None:
            legs = {}
            self._calls.set(cid, legs, ts)
        legs[p.src] = leg
        if self.site.has_role(p.dst, "pstn_gw") and not self._role(p.src, TRUSTED_ROLES):
            leg.gateway_unauth = True
            yield self._raise("unauthorized_gateway_access", leg, ts,
                              f"PSTN gateway {p.dst} received an INVITE for {number or msg.ruri_user} from {p.src}, "
                              "which is not an ESC, SBC or trusted trunk.",
                              f"{p.src}>{p.dst}", {"stage": "attempt", "user_agent": msg.user_agent},
                              totals={"invites": 1})
        if msg.diversion and cls in EXTERNAL:
            diverter = _uri_user(msg.diversion[0])
            yield from self._forward(msg, msg.ruri_user, "INVITE with Diversion", diverter)
        for code in self._codes:
            m = code.match(msg.ruri_user or "")
            if m:
                yield from self._forward(msg, msg.ruri_user[m.end():], "forwarding feature code", leg.account)
        if number is None or cls not in EXTERNAL:
            return
        tail = self._tail(number)
        up = self._recent.get(tail)
        if up is not None and up.src != p.src and ts - up.sent_ts <= self.config.relay_window_s:
            leg.first, leg.authed = False, leg.authed or up.authed or up.challenged
            yield from self._relay(up, leg, ts)
            return
        self._recent.set(tail, leg, ts)
        if self._role(p.src, ("trusted_trunks", "pstn_gw")):
            return                                  # inbound from the PSTN: the number is one of our DIDs
        yield from self._walk(leg, ts)
        yield from self._destination(leg, ts)
        yield from self._concurrency(leg, ts)
        yield from self._registration_check(leg, ts)

    def _walk(self, leg: _Leg, ts: float, status: int | None = None):
        """TF-03: same source, same trailing digits, several dialled variants, at least one failure."""
        if len(leg.number.lstrip("+")) < self.config.tail_digits:
            return
        key = (leg.src, self._tail(leg.number))
        # dialled string -> [first ts, last final status or None, Call-ID]
        numbers = self._walks.get(key) if status is not None else self._walks.touch(key, ts)
        if numbers is None:
            return
        if status is None and len(numbers) < MAX_VARIANTS:
            for old in [n for n, v in numbers.items() if ts - v[0] > self.config.walk_window_s]:
                del numbers[old]
            numbers.setdefault(leg.number, [ts, None, leg.call_id])
        elif leg.number in numbers:
            numbers[leg.number][1] = status
        failures = [s for _, s, _ in numbers.values() if s is not None and s >= 300]
        wins = [n for n, (_, s, _) in numbers.items() if s is not None and 200 <= s < 300]
        if len(numbers) < self.config.walk_variants or not failures:
            return
        suffix = os.path.commonprefix([n[::-1] for n in numbers])[::-1]
        evidence = {"numbers": sorted(numbers), "prefixes": sorted(n[:len(n) - len(suffix)] for n in numbers),
                    "statuses": sorted({s for _, s, _ in numbers.values() if s is not None}),
                    "call_ids": [v[2] for v in numbers.values()], "variants": len(numbers),
                    "first_ts": min(v[0] for v in numbers.values()), "last_ts": ts}
        if wins:                                    # repeats are suppressed by the bus (same identifier)
            yield self._raise("prefix_walking", leg, ts,
                              f"{leg.src} dialled {len(numbers)} prefix variants of ...{suffix} and {wins[0]} was "
                              "answered: a toll-fraud probe found a working dial-out prefix.",
                              f"{leg.src}|{key[1]}|answered", {**evidence, "answered": wins[0]}, "critical",
                              first_ts=evidence["first_ts"], totals={"variants": len(numbers)})
        else:
            yield self._raise("prefix_walking", leg, ts,
                              f"{leg.src} dialled {len(numbers)} prefix variants of ...{suffix} within "
                              f"{ts - evidence['first_ts']:.0f} s ({len(failures)} rejected): toll-fraud dial-plan "
                              "probing.",
                              f"{leg.src}|{key[1]}", evidence, first_ts=evidence["first_ts"],
                              totals={"variants": len(numbers)})

    def _destination(self, leg: _Leg, ts: float):
        """TF-04: premium/high-risk numbers, international off-hours, bulk toll calls per account."""
        off = self.site.off_hours(ts)
        if leg.cls in ("premium", "high_risk") or (leg.cls == "international" and off):
            severity = "high" if off and leg.cls != "international" else "medium"
            yield self._raise("high_risk_destination", leg, ts,
                              f"Account {leg.account} at {leg.src} dialled {leg.cls} number {leg.number}"
                              f"{' outside business hours' if off else ''}.",
                              f"{leg.account}|{leg.cls}", {"off_hours": off}, severity)
        if leg.cls in TOLL:
            window = self._toll.add(leg.account, ts, leg.number)
            act = self._toll_acts.get(leg.account, ts)
            if act is not None:
                act.add(ts, calls=1).see("numbers", leg.number)
                self._toll_acts.touch(leg.account)
            elif window.count() >= self.config.toll_calls:    # the calls still in the window began it
                act = self._toll_acts.start(leg.account, window.first_ts(), ts).add(ts, calls=window.count())
                for number in window.distinct:
                    act.see("numbers", number)
            if act is not None:
                n, numbers = act.counts["calls"], sorted(act.distinct["numbers"])
                yield self._raise("toll_call_volume", leg, ts,
                                  f"Account {leg.account} placed {n} international/premium calls to "
                                  f"{len(numbers)} numbers in {ts - act.first_ts:.0f} s"
                                  f"{' outside business hours' if off else ''}.",
                                  leg.account, {"calls": n, "numbers": numbers[:50],
                                                "first_ts": act.first_ts, "last_ts": ts, "off_hours": off},
                                  "high" if off else None, first_ts=act.first_ts, totals={"calls": n})

    def _concurrency(self, leg: _Leg, ts: float):
        """TF-05: more external calls in progress (set up, or answered and not hung up) for one account than allowed."""
        c = self.config
        active = [x for x in self._active.get(leg.account, []) if not x.ended and (
            ts - x.ts <= c.setup_timeout_s if x.answer_ts is None else ts - x.answer_ts <= c.max_call_s)] + [leg]
        active = active[-MAX_ACTIVE:]
        self._active.set(leg.account, active, ts)
        act = self._busy_acts.get(leg.account, ts)
        if len(active) <= c.max_concurrent:
            if act is not None:                     # back within the limit: that episode is over
                self._busy_acts.pop(leg.account)
            return
        if act is None:                             # it began when the oldest call in progress began
            act = self._busy_acts.start(leg.account, min(x.ts for x in active), ts)
        else:
            self._busy_acts.touch(leg.account)
        act.add(ts)
        for x in active:
            act.see("call_ids", x.call_id)
            act.see("numbers", x.number)
        peak = int(act.peak_at(len(active)))
        yield self._raise("call_velocity", leg, ts,
                          f"Account {leg.account} had up to {peak} external calls in progress at once "
                          f"(allowed {c.max_concurrent}), {len(act.distinct['call_ids'])} calls in all.",
                          f"{leg.account}|concurrent", {"kind": "concurrent", "calls": peak,
                                                        "numbers": sorted(act.distinct["numbers"])[:50],
                                                        "call_ids": sorted(act.distinct["call_ids"])[:50],
                                                        "first_ts": act.first_ts, "last_ts": ts},
                          first_ts=act.first_ts, totals={})

    def _registration_check(self, leg: _Leg, ts: float):
        """TF-08: the caller's binding is new, was never challenged, moved zone, or is a public address."""
        binding = self._bindings.get(leg.account)
        if binding is None:
            return
        reasons = []
        c = self.config
        if binding.first_ts - self._first_ts >= c.learning_s and ts - binding.first_ts < c.new_account_s:
            reasons.append("new_registration")
        if binding.unchallenged:
            reasons.append("registered_without_challenge")
        if binding.moved_from and ts - binding.moved_ts < c.new_account_s:
            reasons.append("binding_moved")
        if binding.zone == "public" and not self.site.has_role(binding.src, "remote_vpn_pool"):
            reasons.append("public_binding")
        if reasons:
            yield self._raise("new_account_external_call", leg, ts,
                              f"Account {leg.account} ({', '.join(reasons).replace('_', ' ')}, bound at {binding.src}) "
                              f"called {leg.cls} number {leg.number}.",
                              leg.account, {"reasons": reasons, "registered_ts": binding.first_ts,
                                            "binding_src": binding.src, "binding_zone": binding.zone,
                                            "moved_from": binding.moved_from})

    def _relay(self, up: _Leg, leg: _Leg, ts: float):
        """TF-06: unauthenticated inbound leg from a public/trunk source, onward from the ESC/SBC to a gateway/trunk."""
        outside = (self.site.has_role(up.src, "trusted_trunks") or not self.site.is_internal(up.src)) \
            and not self._role(up.src, ("esc", "sbc")) and not (up.authed or up.challenged)
        to_pstn = self._role(leg.dst, ("pstn_gw", "trusted_trunks")) or not self.site.is_internal(leg.dst)
        if outside and self._role(leg.src, ("esc", "sbc")) and to_pstn:
            yield self._raise("external_relay", leg, ts,
                              f"{up.src} sent an INVITE for external number {up.number} and {leg.src} relayed it to "
                              f"{leg.dst} {ts - up.sent_ts:.3f} s later: the system is an open relay to the PSTN.",
                              f"{up.src}|{self._tail(leg.number)}",
                              {"inbound_src": up.src, "inbound_call_id": up.call_id, "inbound_number": up.number,
                               "delay_s": round(ts - up.sent_ts, 6)}, first_ts=up.ts, actors=(f"ip:{up.src}",))

    def _forward(self, msg: SipMessage, user: str | None, how: str, who: str | None):
        """TF-07: transfer or forwarding to an external number (high when international/premium/high-risk)."""
        number, cls = self._classify(user)
        if cls not in EXTERNAL or any(p.search(number) for p in self._allow):
            return
        p = msg.pkt
        yield self.alert("external_forwarding", ts=p.ts, identifier=f"{who}|{number}", src=p.src, sport=p.sport,
                         dst=p.dst, dport=p.dport, vlan=p.vlan, call_id=msg.call_id, totals={"forwards": 1},
                         actors=(f"ip:{p.src}",) + ((f"account:{who}",) if who else ()),
                         severity="high" if cls in TOLL else "low",
                         msg=f"{how} from {who or p.src} sends the call to {cls} number {number}.",
                         evidence={"number": number, "class": cls, "how": how, "by": who})

    # -- responses and hang-ups --------------------------------------------------------------
    def _invite_response(self, msg: SipMessage):
        legs = self._calls.get(msg.call_id) if msg.call_id else None
        leg = legs.get(msg.pkt.dst) if legs else None
        if leg is None:
            return
        status, ts = msg.status or 0, msg.pkt.ts
        if status in (401, 407):
            leg.challenged = True
        if 300 <= status < 400 and msg.contact:
            for uri in msg.contact:
                yield from self._forward(msg, _uri_user(uri), f"{status} redirect", msg.to_user)
        if 180 <= status < 300 and not leg.progressed:
            leg.progressed = True
            if leg.gateway_unauth:
                yield self._raise("unauthorized_gateway_access", leg, ts,
                                  f"PSTN gateway {leg.dst} answered {status} to an INVITE from unauthorised source "
                                  f"{leg.src} for {leg.number}: the unauthorised call is progressing.",
                                  f"{leg.src}>{leg.dst}|progressed", {"stage": "progressed", "status": status},
                                  "critical")
            if leg.first and leg.cls in EXTERNAL and not (leg.authed or leg.challenged) and self._judged(leg):
                yield self._raise("unauthenticated_call", leg, ts,
                                  f"{leg.src} reached {status} on a call to {leg.cls} number {leg.number} with no "
                                  "401/407 challenge and no credentials.", leg.src, {"status": status})
        if 200 <= status < 300 and leg.answer_ts is None:
            leg.answer_ts = ts
        elif status >= 300 and leg.answer_ts is None:
            leg.ended = True
        if status >= 200 and leg.first and leg.number and leg.cls in EXTERNAL:
            yield from self._walk(leg, ts, status)

    def _hangup(self, msg: SipMessage):
        ts = msg.pkt.ts
        for leg in (self._calls.get(msg.call_id) or {}).values() if msg.call_id else ():
            if leg.ended or (msg.method == "CANCEL" and leg.answer_ts is not None):
                continue
            leg.ended = True
            if leg.answer_ts is None or not leg.first or leg.cls not in EXTERNAL:
                continue
            duration = ts - leg.answer_ts
            if duration >= self.config.short_call_s:
                continue
            window = self._short.add(leg.account, ts, leg.call_id)
            act = self._short_acts.get(leg.account, ts)
            if act is not None:
                act.add(ts, calls=1)
                self._short_acts.touch(leg.account)
            elif window.count() >= self.config.short_calls:   # the calls still in the window began it
                act = self._short_acts.start(leg.account, window.first_ts(), ts).add(ts, calls=window.count())
            if act is not None:
                n = act.counts["calls"]
                yield self._raise("call_velocity", leg, ts,
                                  f"Account {leg.account} made {n} answered external calls shorter than "
                                  f"{self.config.short_call_s:g} s in {ts - act.first_ts:.0f} s (pumping or "
                                  "number validation).", f"{leg.account}|short",
                                  {"kind": "short_calls", "calls": n, "first_ts": act.first_ts,
                                   "last_ts": ts, "last_duration_s": round(duration, 6)},
                                  first_ts=act.first_ts, totals={"calls": n})

    def _register_response(self, msg: SipMessage):
        txn = self._reg_txns.get(msg.call_id) if msg.call_id else None
        status, ts = msg.status or 0, msg.pkt.ts
        if txn is None or status < 200:
            return
        aor, src, vlan, expires, creds = txn
        if status in (401, 407):
            txn[4] = True                           # challenged: the registrar enforces digest auth
            return
        if not (200 <= status < 300) or 0 in (expires, msg.expires) or not aor:
            return                                  # RFC 3261 §10.2.2: Expires 0 removes the binding
        zone = self.site.zone_of(src, vlan) or ("internal" if self.site.is_internal(src) else "public")
        binding = self._bindings.get(aor)
        if binding is None:
            self._bindings.set(aor, _Binding(ts, src, zone, not creds), ts)
            return
        if src != binding.src and zone != binding.zone:
            binding.moved_from, binding.moved_ts = f"{binding.src} ({binding.zone})", ts
        binding.src, binding.zone, binding.unchallenged = src, zone, not creds
        self._bindings.touch(aor, ts)


def _has_creds(msg: SipMessage) -> bool:
    """An Authorization or Proxy-Authorization header (RFC 3261 §22.2, §22.3) is present."""
    return any(a.header.endswith("authorization") for a in msg.auth)


def _uri_user(uri: str | None) -> str | None:
    """User part of a sip:/sips: URI (RFC 3261 §19.1.1, any password dropped) or a tel: number (RFC 3966)."""
    if not uri:
        return None
    scheme, _, rest = uri.strip().strip("<>").partition(":")
    if scheme.lower() == "tel":
        return rest.split(";", 1)[0] or None
    if scheme.lower() in ("sip", "sips") and "@" in rest:
        return rest.split("@", 1)[0].split(":", 1)[0] or None
    return None


def _regexes(patterns: tuple[str, ...], key: str) -> list[re.Pattern]:
    try:
        return [re.compile(p) for p in patterns]
    except re.error as exc:
        raise ConfigError(f"[detectors.toll_fraud] {key}: {exc}") from exc
