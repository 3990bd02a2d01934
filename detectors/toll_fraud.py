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
from voipwatch.severity import severity_of
from voipwatch.windows import BoundedMap, Cap, KeyedWindows

TOLL = ("premium", "high_risk", "international")       # number classes that cost the most
EXTERNAL = TOLL + ("national",)                          # "national": any other external number
TRUSTED_ROLES = ("esc", "sbc", "trusted_trunks", "pstn_gw")
_VISUAL = re.compile(r"[-.()\s]")                         # RFC 3966 §5.1.1 visual separators
_PHONE = re.compile(r"\+?[0-9*#]+")
MAX_VARIANTS = 64                                         # dialled variants of one number kept per source (TF-03)
MAX_ACTIVE = 1_000                                        # external calls in progress kept per account (TF-05)
# Zones where a user's own devices live (desk phone, softphone, VPN client): a binding moving between them is
# not a move (TF-08), and an account used from two of them at once is not a takeover (TF-11).
DEVICE_ZONES = ("voice", "softphone", "internal", "vpn")
RISKY_ZONES = ("public", "data")                          # TF-11: critical when one place of an account is here
MAX_LISTED = 50                                           # numbers, places or calls listed in one alert's evidence
# International forms of a number (ITU-T E.164 "+", the ITU-recommended prefix 00, NANP 011): stripped to the
# country code and national number, whose leading digits name the range a carrier assigned (Wangiri, TF-10).
_INTL_FORM = re.compile(r"^(?:\+|00|011)")


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
    learning_s: float = opt(86400.0, "TF-08: registrations within this long of the first record seen are history, never "
                                     "'new' (the other TF-08 reasons need no history).")
    default_expires_s: float = opt(3600.0, "TF-11: lifetime of a binding whose REGISTER and 200 OK carry no expires (RFC 3261 §10.2.1.1).")
    wangiri_ring_s: float = opt(5.0, "TF-10: an inbound international call cancelled (CANCEL or 487) this soon after its INVITE, unanswered, is a one-ring call.")
    wangiri_numbers: int = opt(5, "TF-10: distinct calling numbers of one range with one-ring calls within wangiri_window_s before alerting.")
    wangiri_range_tail: int = opt(4, "TF-10: trailing digits dropped from an international number to name its range (4: blocks of 10,000).")
    wangiri_window_s: float = opt(3600.0, "TF-10: window for wangiri_numbers, seconds.")
    wangiri_callback_s: float = opt(604800.0, "TF-10: an outbound call into a Wangiri range this long after the campaign is a callback.")
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
    zone: str = ""                  # where the caller sits: a zone, "internal", "vpn" or "public"
    tf08: tuple[str, ...] = ()      # TF-08 reasons raised on this leg: escalated when the call is answered
    wangiri: str | None = None      # TF-10 range this leg calls back into: escalated when the call is answered
    judge_tf08: bool = False        # an outbound external call judged by TF-08 (again when it progresses)


@dataclass(slots=True)
class _Ring:
    """An inbound call from an international number (TF-10), until it is answered or cancelled."""
    ts: float
    number: str
    range: str
    src: str
    dst: str
    callee: str | None


@dataclass(slots=True)
class _Place:
    """Where an account is in use (TF-11): a source address with a live binding, or one that called with credentials."""
    zone: str
    vlan: tuple[int, ...]
    first_ts: float
    until: float                    # binding expiry, or the time of its latest authenticated call
    how: str                        # "registered" | "called"


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
    are new, unchallenged, moved zone or public, or from a public caller with credentials (TF-08, critical
    again when answered); Wangiri: many numbers of one international range ringing once, then a user
    calling the range back (TF-10); one account used from two places at once, one public or in the data
    zone (TF-11, account takeover). Per-account findings carry the account's source address in their
    identifier, so a new place is a new finding. Emergency numbers never alert. Numbers are
    classified by the [dialplan] after stripping access_codes; "national" is any other external number.
    The onward leg of a call (same number from another source within relay_window_s, e.g. ESC -> gateway)
    is not counted again, and inherits the first leg's authentication.
    Why: unauthorised calls through PSTN gateways are toll fraud; the guide asks that callers authenticate
    before a gateway completes a call and that CDRs be reviewed for it.
    Tune: declare [roles] esc, sbc, pstn_gw, trusted_trunks (TF-01 and TF-06 stay idle without them; until
    esc/sbc/trusted_trunks are set TF-02 judges only public callers of internal servers); dialplan.high_risk
    (a default list ships: voipwatch/high_risk.py) and business_hours; trusted_sources for IP-authenticated peers; the thresholds below.
    False positives: undeclared IP-authenticated trunks or phones (TF-02) and inbound DID calls from them
    (TF-04); legitimate international business (toll_calls); call centres (max_concurrent); forwarding to
    staff mobiles (forward_allowlist); remote phones outside the VPN pool (TF-08 public_binding); two users
    dialling one number within relay_window_s count as one call; a softphone in the data zone beside its
    desk phone (TF-11); missed calls from one international block of a real caller (TF-10). A capture has
    no history: no account counts as 'new' until learning_s after the first record (the other TF-08
    reasons need none, and the alert says what it could not judge).
    """
    name = "toll_fraud"
    consumes = (SipMessage,)
    Config = Config
    alerts = {
        "unauthorized_gateway_access": AlertSpec("TF-01", severity_of("attack"), "Part II: PSTN gateway protections",
                                                 "A PSTN gateway received an INVITE from a source not allowed to signal to it"),
        "unauthenticated_call": AlertSpec("TF-02", severity_of("attack"), "Part II: PSTN gateway protections",
                                          "An external call progressed without any authentication"),
        "prefix_walking": AlertSpec("TF-03", severity_of("attack"), "Part III: Audit and logging apparatus",
                                    "One source dialled one number with several dial-out prefixes (toll-fraud probing)"),
        "high_risk_destination": AlertSpec("TF-04", severity_of("exposure"), "Part III: Audit and logging apparatus",
                                           "A premium/high-risk number, or an international one off-hours, was dialled"),
        "toll_call_volume": AlertSpec("TF-04", severity_of("exposure"), "Part III: Audit and logging apparatus",
                                      "One account placed many international/premium calls in a short window"),
        "call_velocity": AlertSpec("TF-05", severity_of("attack"), "Part III: Audit and logging apparatus",
                                   "One account had too many concurrent or short external calls"),
        "external_relay": AlertSpec("TF-06", severity_of("compromise"), "Part II: Protections for public IP networks functioning as voice carriers",
                                    "An inbound call for an external number was relayed back out to the PSTN"),
        "external_forwarding": AlertSpec("TF-07", severity_of("attack"), "Part III: Default UC/VVoIP server configuration settings",
                                         "A call was transferred or forwarded to an external number"),
        "new_account_external_call": AlertSpec("TF-08", severity_of("attack"), "Part III: Client registration protections",
                                               "A new, unchallenged, moved or public registration placed an external call"),
        "wangiri_campaign": AlertSpec("TF-10", severity_of("exposure"), "Part III: Audit and logging apparatus",
                                      "Many numbers of one international range rang once and hung up (Wangiri bait)"),
        "wangiri_callback": AlertSpec("TF-10", severity_of("attack"), "Part III: Audit and logging apparatus",
                                      "A user called back a number range that ran a Wangiri campaign"),
        "account_takeover": AlertSpec("TF-11", severity_of("compromise"), "Part III: Client registration protections",
                                      "One account was in use from two places at once, one of them public or in the data zone"),
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
        self._toll_here = KeyedWindows(c.toll_window_s, c.max_tracked)   # the same calls per account and place
        self._short = KeyedWindows(c.short_window_s, c.max_tracked)
        self._active: BoundedMap[list] = BoundedMap(c.max_tracked, max(c.max_call_s, c.setup_timeout_s))
        self._active_cap, self._variants_cap = Cap(), Cap()     # calls over MAX_ACTIVE, variants over MAX_VARIANTS
        # Running totals of each finding's activity (living findings, voipwatch.detect.Tally).
        self._toll_acts, self._short_acts = Tallies(c.toll_window_s, c.max_tracked), Tallies(c.short_window_s, c.max_tracked)
        self._busy_acts = Tallies(max(c.max_call_s, c.setup_timeout_s), c.max_tracked)
        self._reg_txns: BoundedMap[list] = BoundedMap(c.max_tracked, c.setup_timeout_s)
        self._bindings: BoundedMap[_Binding] = BoundedMap(c.max_tracked, c.new_account_s)
        self._places: BoundedMap[dict] = BoundedMap(c.max_tracked, max(c.new_account_s, c.default_expires_s), dict)
        self._rings: BoundedMap[_Ring] = BoundedMap(c.max_tracked, c.setup_timeout_s)
        self._ring_legs: BoundedMap[_Leg] = BoundedMap(c.max_tracked, c.relay_window_s)   # calling number -> last leg
        self._one_rings = KeyedWindows(c.wangiri_window_s, c.max_tracked)
        self._ranges: BoundedMap[dict] = BoundedMap(c.max_tracked, c.wangiri_callback_s)   # one-ring calls per range
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
                if msg.method == "CANCEL":
                    yield from self._rang(msg.call_id, ts, "CANCEL")
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
            yield from self._ring_response(msg)
            yield from self._invite_response(msg)
        elif msg.cseq_method == "REGISTER":
            yield from self._register_response(msg)

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
        bare = self._without_access_code(number)
        cls = self.site.number_class(bare)
        if cls is None and self.site.is_external_number(bare):
            cls = "national"
        return number, cls

    def _without_access_code(self, number: str) -> str:
        for pattern in self._access:
            m = pattern.match(number)
            if m and m.end() < len(number):
                number = number[m.end():]
        return number

    def _zone(self, ip: str, vlan: tuple[int, ...]) -> str:
        """Where an address sits: "public" outside the internal prefixes (whatever VLAN a router tagged its
        frames with), "vpn" in roles.remote_vpn_pool, else its configured zone, else "internal"."""
        if self.site.has_role(ip, "remote_vpn_pool"):
            return "vpn"
        if not self.site.is_internal(ip):
            return "public"
        return self.site.zone_of(ip, vlan) or "internal"

    def _range(self, number: str) -> str | None:
        """TF-10: the range of an international number: country code and national number without the last
        wangiri_range_tail digits; None for a number in no international form."""
        number = self._without_access_code(number)
        m = _INTL_FORM.match(number)
        digits = number[m.end():] if m else ""
        tail = self.config.wangiri_range_tail
        return digits[:-tail] if m and digits.isdigit() and len(digits) > tail else None

    def _role(self, ip: str, roles: tuple[str, ...]) -> bool:
        return any(self.site.has_role(ip, r) for r in roles)

    def _judged(self, leg: _Leg) -> bool:
        """TF-02 scope: untrusted callers; without roles, only public callers of internal servers."""
        if self._role(leg.src, TRUSTED_ROLES) or any(ipaddress.ip_address(leg.src) in n for n in self._trusted):
            return False
        return self._roles_known or (not self.site.is_internal(leg.src) and self.site.is_internal(leg.dst))

    def _tail(self, number: str) -> str:
        return number[-self.config.tail_digits:]

    @staticmethod
    def _who(leg: _Leg) -> str:
        """An account at one place: a new source address for the same account is a new finding. (The zone is
        a property of the address here: a VLAN tag stripped on the way to the sensor must not split a finding.)"""
        return f"{leg.account}|{leg.src}"

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
        leg.zone = self._zone(p.src, p.vlan)
        if creds and user:
            yield from self._in_use(user, p.src, p.vlan, leg.zone, ts, ts, "called")
        self._inbound(msg, leg, cls)
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
        yield from self._callback(leg, ts)
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
        if status is None:
            for old in [n for n, v in numbers.items() if ts - v[0] > self.config.walk_window_s]:
                del numbers[old]                    # first, so that a full table still takes new variants
            if len(numbers) < MAX_VARIANTS:
                numbers.setdefault(leg.number, [ts, None, leg.call_id])
            elif leg.number not in numbers:
                self._variants_cap.overflows += 1
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
                              f"{leg.src}|{key[1]}|answered", {**evidence, "answered": wins[0]},
                              severity_of("compromise"), first_ts=evidence["first_ts"], totals={"variants": len(numbers)})
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
            severity = severity_of("attack" if off and leg.cls != "international" else "exposure")
            yield self._raise("high_risk_destination", leg, ts,
                              f"Account {leg.account} at {leg.src} dialled {leg.cls} number {leg.number}"
                              f"{' outside business hours' if off else ''}.",
                              f"{self._who(leg)}|{leg.cls}", {"off_hours": off}, severity)
        if leg.cls in TOLL:
            # The account's calls decide (calls spread over places count together); the finding is the
            # account at this place, and states this place's calls.
            who = self._who(leg)
            window, here = self._toll.add(leg.account, ts, leg.number), self._toll_here.add(who, ts, leg.number)
            act = self._toll_acts.get(who, ts)
            if act is not None:
                act.add(ts, calls=1).see("numbers", leg.number)
                self._toll_acts.touch(who)
            elif window.count() >= self.config.toll_calls:    # this place's calls still in the window began it
                act = self._toll_acts.start(who, here.first_ts(), ts).add(ts, calls=here.count())
                for number in here.distinct:
                    act.see("numbers", number)
            if act is not None:
                n, numbers = act.counts["calls"], sorted(act.distinct["numbers"])
                yield self._raise("toll_call_volume", leg, ts,
                                  f"Account {leg.account} placed {n} international/premium calls from {leg.src} to "
                                  f"{len(numbers)} numbers in {ts - act.first_ts:.0f} s"
                                  f"{f' ({window.count()} from all its places)' if window.count() > n else ''}"
                                  f"{' outside business hours' if off else ''}.",
                                  who, {"calls": n, "numbers": numbers[:MAX_LISTED], "account_calls": window.count(),
                                                   "first_ts": act.first_ts, "last_ts": ts, "off_hours": off},
                                  severity_of("attack") if off else None, first_ts=act.first_ts, totals={"calls": n})

    def _concurrency(self, leg: _Leg, ts: float):
        """TF-05: more external calls in progress (set up, or answered and not hung up) for one account than allowed."""
        c = self.config
        active = [x for x in self._active.get(leg.account, []) if not x.ended and (
            ts - x.ts <= c.setup_timeout_s if x.answer_ts is None else ts - x.answer_ts <= c.max_call_s)] + [leg]
        if len(active) > MAX_ACTIVE:                # the count stays true up to the cap; beyond it, counted
            self._active_cap.overflows += len(active) - MAX_ACTIVE
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
                          f"{self._who(leg)}|concurrent", {"kind": "concurrent", "calls": peak,
                                                         "numbers": sorted(act.distinct["numbers"])[:MAX_LISTED],
                                                         "call_ids": sorted(act.distinct["call_ids"])[:MAX_LISTED],
                                                         "first_ts": act.first_ts, "last_ts": ts},
                          first_ts=act.first_ts, totals={})

    def _registration_check(self, leg: _Leg, ts: float, progressed: bool = False):
        """TF-08: the caller's binding is new, was never challenged, moved zone, or is a public address; or the
        caller itself is at a public address and its call progressed (credentials a registrar rejects are not
        an account in use). Only 'new' needs history (learning_s); the rest is judged at once."""
        leg.judge_tf08 = True
        binding = self._bindings.get(leg.account)
        c = self.config
        history_s = ts - self._first_ts
        reasons, parts = [], []
        if binding is not None:
            if binding.first_ts - self._first_ts >= c.learning_s and ts - binding.first_ts < c.new_account_s:
                reasons.append("new_registration")
                parts.append(f"first registered {ts - binding.first_ts:.0f} s ago")
            if binding.unchallenged:
                reasons.append("registered_without_challenge")
                parts.append("registered without a digest challenge")
            if binding.moved_from and ts - binding.moved_ts < c.new_account_s:
                reasons.append("binding_moved")
                parts.append(f"moved its binding from {binding.moved_from} to {binding.src} ({binding.zone})")
            if binding.zone == "public":
                reasons.append("public_binding")
                parts.append(f"registered from public address {binding.src} outside the VPN pool")
        if progressed and leg.zone == "public" and leg.authed and (binding is None or binding.src != leg.src):
            reasons.append("public_caller")
            parts.append(f"called with credentials from public address {leg.src} outside the VPN pool")
        if not reasons:
            return
        leg.tf08 = tuple(reasons)
        judged_new = history_s >= c.learning_s
        yield self._raise("new_account_external_call", leg, ts,
                          f"Account {leg.account} {', '.join(parts)}, and is calling out: {leg.cls} number {leg.number}."
                          + ("" if judged_new else f" (Whether the account is new cannot be judged yet: {history_s:.0f} s "
                                                   f"of capture seen, learning_s is {c.learning_s:.0f} s.)"),
                          self._who(leg), self._tf08_evidence(leg, binding, history_s), severity_of("attack"))

    def _tf08_evidence(self, leg: _Leg, binding: _Binding | None, history_s: float) -> dict:
        return {"reasons": list(leg.tf08), "history_s": round(history_s, 6),
                "new_registration_judged": history_s >= self.config.learning_s,
                "registered_ts": binding.first_ts if binding else None, "binding_src": binding.src if binding else None,
                "binding_zone": binding.zone if binding else None, "moved_from": binding.moved_from if binding else None,
                "caller_zone": leg.zone}

    def _in_use(self, account: str, src: str, vlan: tuple[int, ...], zone: str, ts: float, until: float, how: str):
        """TF-11: the account is in use at src until `until`; another place live at the same time, one of the two
        public or in the data zone, is an account takeover (a desk phone and a softphone inside are not)."""
        places = self._places.touch(account, ts)
        for stale in [k for k, v in places.items() if v.until < ts and k != src]:
            del places[stale]
        risky = RISKY_ZONES
        for other_src, other in places.items():
            if other_src == src or not (zone in risky or other.zone in risky):
                continue
            new = places.get(src) or _Place(zone, vlan, ts, until, how)
            ((intruder, held), (holder, _)) = sorted(((src, new), (other_src, other)),
                                                     key=lambda p: (p[1].zone not in risky, p[0] != src))
            listed = [{"src": k, "zone": v.zone, "how": v.how, "since_ts": v.first_ts, "live_until_ts": v.until}
                      for k, v in ((other_src, other), (src, new))]
            yield self.alert(
                "account_takeover", ts=ts, identifier=f"{account}|{intruder}", src=intruder, dst=holder,
                vlan=held.vlan, severity=severity_of("compromise"),
                msg=(f"Account {account} was {how} from {src} ({zone}) while it was in use from {other_src} "
                     f"({other.zone}, {other.how} {ts - other.first_ts:.0f} s earlier and live): two places at once, "
                     f"{intruder} {'public' if held.zone == 'public' else 'in the data zone'}. "
                     f"Someone else holds its credentials: change them, remove the binding at {intruder} and block it."),
                evidence={"account": account, "intruder": intruder, "holder": holder, "places": listed,
                          "overlap_ts": ts})
        place = places.get(src)
        if place is None:
            if len(places) < MAX_LISTED:
                places[src] = _Place(zone, vlan, ts, until, how)
        else:
            place.until, place.zone, place.vlan, place.how = max(place.until, until), zone, vlan, how

    def _inbound(self, msg: SipMessage, leg: _Leg, cls: str | None) -> None:
        """TF-10: remember an inbound call from an international number until it is answered or cancelled."""
        caller, caller_cls = self._classify(msg.from_user or _uri_user(msg.pai[0] if msg.pai else None))
        if caller_cls not in TOLL or leg.call_id in self._rings:
            return
        # Inbound: arriving from outside, a trunk, a PSTN gateway or an SBC (a call between two users whose From
        # is their E.164 DID, hung up while ringing, is no Wangiri), and not a forwarded call going out.
        entering = not self.site.is_internal(leg.src) or self._role(leg.src, ("trusted_trunks", "pstn_gw", "sbc"))
        rng = self._range(caller) if entering and not (cls in EXTERNAL and self.site.is_internal(leg.src)) else None
        earlier = self._ring_legs.get(caller)
        self._ring_legs.set(caller, leg, leg.ts)
        if earlier is not None and earlier.src != leg.src and leg.ts - earlier.ts <= self.config.relay_window_s:
            return                                  # the ESC/SBC's onward leg of the same inbound call
        if rng:
            self._rings.set(leg.call_id, _Ring(leg.ts, caller, rng, leg.src, leg.dst, msg.ruri_user), leg.ts)

    def _rang(self, call_id: str | None, ts: float, how: str):
        """TF-10: an inbound international call cancelled before any answer; one-ring calls counted per range."""
        ring = self._rings.pop(call_id) if call_id else None
        if ring is None or ts - ring.ts > self.config.wangiri_ring_s:
            return
        window = self._one_rings.add(ring.range, ts, ring.number)
        campaign = self._ranges.get(ring.range) or {"numbers": set(), "calls": 0, "callees": set(), "alerted": False}
        campaign["calls"] += 1
        for key, value in (("numbers", ring.number), ("callees", ring.callee)):
            if len(campaign[key]) < MAX_LISTED and value:
                campaign[key].add(value)
        self._ranges.set(ring.range, campaign, ts)
        if window.n_distinct() < self.config.wangiri_numbers:
            return
        campaign["alerted"] = True
        label = f"+{ring.range}{'x' * self.config.wangiri_range_tail}"
        yield self.alert(
            "wangiri_campaign", ts=ts, identifier=ring.range, src=ring.src, dst=ring.dst, call_id=call_id,
            severity=severity_of("exposure"),
            msg=(f"{window.n_distinct()} numbers of range {label} rang and hung up ({how}) within "
                 f"{self.config.wangiri_ring_s:g} s, {window.count()} one-ring calls in {ts - window.first_ts():.0f} s: "
                 f"Wangiri bait. Warn users not to call back; block outbound calls to {label}."),
            evidence={"range": label, "numbers": sorted(campaign["numbers"]), "distinct_numbers": window.n_distinct(),
                      "one_ring_calls": window.count(), "callees": sorted(campaign["callees"]),
                      "first_ts": window.first_ts(), "last_ts": ts, "max_ring_s": self.config.wangiri_ring_s})

    def _callback(self, leg: _Leg, ts: float):
        """TF-10: an outbound call into a range that ran a Wangiri campaign."""
        rng = self._range(leg.number)
        campaign = self._ranges.get(rng) if rng else None
        if campaign is None or not campaign["alerted"]:
            return
        leg.wangiri = rng
        label = f"+{rng}{'x' * self.config.wangiri_range_tail}"
        yield self._raise("wangiri_callback", leg, ts,
                          f"Account {leg.account} at {leg.src} called {leg.number} back, in range {label} whose numbers "
                          f"rang once and hung up {campaign['calls']} times: the Wangiri callback the bait wanted. "
                          f"Block {label} and end the call.",
                          f"{rng}|{self._who(leg)}", {"range": label, "campaign_numbers": sorted(campaign["numbers"]),
                                                     "campaign_calls": campaign["calls"]},
                          severity_of("attack"))

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
                         severity=severity_of("attack" if cls in TOLL else "weakness"),
                         msg=f"{how} from {who or p.src} sends the call to {cls} number {number}.",
                         evidence={"number": number, "class": cls, "how": how, "by": who})

    # -- responses and hang-ups --------------------------------------------------------------
    def _ring_response(self, msg: SipMessage):
        """TF-10: an inbound international call answered (not a one-ring call), rejected, or ended by 487."""
        ring = self._rings.get(msg.call_id) if msg.call_id else None
        status = msg.status or 0
        if ring is None or status < 200:
            return
        if status == 487:                           # RFC 3261 §9.2: Request Terminated, the answer to a CANCEL
            yield from self._rang(msg.call_id, msg.pkt.ts, "487")
        else:
            self._rings.pop(msg.call_id)

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
            if leg.judge_tf08 and not leg.tf08:
                yield from self._registration_check(leg, ts, progressed=True)
            if leg.gateway_unauth:
                yield self._raise("unauthorized_gateway_access", leg, ts,
                                  f"PSTN gateway {leg.dst} answered {status} to an INVITE from unauthorised source "
                                  f"{leg.src} for {leg.number}: the unauthorised call is progressing.",
                                  f"{leg.src}>{leg.dst}|progressed", {"stage": "progressed", "status": status},
                                  severity_of("compromise"))
            if leg.first and leg.cls in EXTERNAL and not (leg.authed or leg.challenged) and self._judged(leg):
                yield self._raise("unauthenticated_call", leg, ts,
                                  f"{leg.src} reached {status} on a call to {leg.cls} number {leg.number} with no "
                                  "401/407 challenge and no credentials.", leg.src, {"status": status})
        if 200 <= status < 300 and leg.answer_ts is None:
            leg.answer_ts = ts
            yield from self._answered(leg, ts, status)
        elif status >= 300 and leg.answer_ts is None:
            leg.ended = True
        if status >= 200 and leg.first and leg.number and leg.cls in EXTERNAL:
            yield from self._walk(leg, ts, status)

    def _answered(self, leg: _Leg, ts: float, status: int):
        """A call flagged by TF-08 or TF-10 was answered: the fraud call completed (compromise, not an attempt)."""
        if leg.tf08:
            binding = self._bindings.get(leg.account)
            yield self._raise("new_account_external_call", leg, ts,
                              f"The call of account {leg.account} from {leg.src} ({leg.zone}) to {leg.cls} number "
                              f"{leg.number} was answered ({status}): a fraud call completed "
                              f"({', '.join(leg.tf08).replace('_', ' ')}). Block the account and check the carrier's records.",
                              f"{self._who(leg)}|answered", {**self._tf08_evidence(leg, binding, ts - self._first_ts),
                                                             "answered_ts": ts, "status": status},
                              severity_of("compromise"))
        if leg.wangiri:
            campaign = self._ranges.get(leg.wangiri) or {"numbers": (), "calls": 0}
            label = f"+{leg.wangiri}{'x' * self.config.wangiri_range_tail}"
            yield self._raise("wangiri_callback", leg, ts,
                              f"The callback of account {leg.account} to {leg.number} in Wangiri range {label} was "
                              f"answered ({status}): the call is billed at the range's rate. End it and block {label}.",
                              f"{leg.wangiri}|{self._who(leg)}|answered",
                              {"range": label, "campaign_numbers": sorted(campaign["numbers"]),
                               "campaign_calls": campaign["calls"], "answered_ts": ts, "status": status},
                              severity_of("compromise"))

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
                                  "number validation).", f"{self._who(leg)}|short",
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
        if not (200 <= status < 300) or not aor:
            return
        if 0 in (expires, msg.expires):             # RFC 3261 §10.2.2: Expires 0 removes the binding
            places = self._places.get(aor)
            if places:
                places.pop(src, None)
            return
        zone = self._zone(src, vlan)
        # RFC 3261 §10.2.1.1: the expiry the REGISTER asked for, else the 200 OK's, else the default
        life = next((e for e in (expires, msg.expires) if e is not None), self.config.default_expires_s)
        yield from self._in_use(aor, src, vlan, zone, ts, ts + life, "registered")
        binding = self._bindings.get(aor)
        if binding is None:
            self._bindings.set(aor, _Binding(ts, src, zone, not creds), ts)
            return
        if src != binding.src and zone != binding.zone and not {zone, binding.zone} <= set(DEVICE_ZONES):
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
