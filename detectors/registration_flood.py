"""SIP scanning, extension enumeration, digest brute force, registration abuse and request floods."""
from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass, field

from dissectors.sip import address_of_record
from voipwatch.config_schema import ConfigError, opt
from voipwatch.detect import AlertSpec, Detector, Tallies, register
from voipwatch.bindings import RegisterRequest, RegistrarView, contact_key
from voipwatch.records import SipMessage
from voipwatch.sip_auth import CHALLENGES, credentials, outcome
from voipwatch.windows import BoundedMap, Cap, KeyedWindows, SlidingWindow

ACCOUNTS = "Part III: User accounts and passwords"
REGISTRATION = "Part III: Client registration protections"
AVAILABILITY = "Part I: Network availability protections"
PROBES = frozenset({"REGISTER", "INVITE", "OPTIONS"})     # what SIP scanners (svmap, svwar) send
UNKNOWN_USER = frozenset({404, 604})                      # RFC 3261 §21.4.5, §21.6.3
REFUSED = frozenset({403, 404, 604})                       # RFC 3261 §21.4.4, §21.4.5, §21.6.3: refused outright
FANOUT_ROLES = ("esc", "sbc")                             # servers that talk to every phone and aggregate them
TRUSTED_ROLES = ("sbc", "pstn_gw", "trusted_trunks")      # peers often admitted by address, not by digest
SITE_PEERS = ("esc", "sbc", "pstn_gw", "trusted_trunks", "remote_vpn_pool")   # declared addresses a contact may have
TXN_IDLE_S = 200.0         # RFC 3261 §16.6 step 11: an INVITE may ring for Timer C (> 3 min) before its answer
# SIPVicious (svmap, svwar, svcrack) builds its From tags as hex("<text>\x01<digits>"), whatever User-Agent it claims.
_SV_TAG = re.compile(r"(?:[0-9a-f]{2}){4,}")
_SV_TAG_TEXT = re.compile(r"[\x20-\x7e]+\x01[0-9]+")


@dataclass(frozen=True)
class Config:
    scanner_user_agents: tuple[str, ...] = opt(
        (r"friendly-scanner", r"sipvicious", r"\bsipcli\b", r"vaxsipuseragent", r"\bpplsip\b", r"sundayddr",
         r"\biwar\b", r"\bsivus\b"), "Regular expressions (case-insensitive) on User-Agent that name SIP attack tools.")
    test_tool_user_agents: tuple[str, ...] = opt((r"\bsipsak\b",), "User-Agent patterns of dual-use SIP test tools (reported low).")
    match_sipvicious_tag: bool = opt(True, "Also fingerprint SIPVicious by its From tag, hex of '<text>\\x01<digits>', which survives a spoofed User-Agent.")
    allow_sources: tuple[str, ...] = opt((), "Addresses/CIDRs never reported as scanners, sweeps, enumeration, spraying or floods; [roles] scanner_ips are exempt too.")
    sweep_window_s: float = opt(60.0, "RF-01 sweep window, seconds.")
    sweep_hosts: int = opt(20, "Distinct hosts one source probes with OPTIONS/REGISTER/INVITE within the window to be a sweep.")
    sweep_ports: int = opt(10, "Distinct destination ports one source probes within the window to be a sweep.")
    enum_window_s: float = opt(60.0, "RF-02 enumeration window, seconds.")
    enum_users: int = opt(30, "Distinct users (To of REGISTER, else Request-URI) one source tries within the window to be enumeration.")
    campaign_quiet_s: float = opt(60.0, "Enumeration and spraying are judged once their source has been quiet this long (the answers are in).")
    campaign_max_s: float = opt(600.0, "Enumeration and spraying are judged at the latest this long after their source began (the RF-04 spraying window).")
    campaign_max_users: int = opt(5000, "Users remembered per source campaign (the count goes on).")
    max_listed: int = opt(50, "Users, hosts or sources listed in evidence at most.")
    bf_window_s: float = opt(60.0, "RF-03 brute-force window, seconds.")
    bf_failures: int = opt(10, "Failed authentications of one user from one source within the window to be brute force.")
    spray_window_s: float = opt(600.0, "RF-04 distributed brute-force window, seconds.")
    spray_sources: int = opt(5, "Sources failing to authenticate one user within the window: distributed brute force.")
    spray_users: int = opt(20, "Users one source fails on, each with few tries, within one campaign: password spraying.")
    spray_max_tries: int = opt(3, "Most failed tries per user that still counts as spraying.")
    lockout_failures: int = opt(10, "Consecutive failures of one user followed by a success: lockout not enforced (RF-05).")
    lockout_failures_scanner: int = opt(3, "The same when the successful source was fingerprinted as a scanner.")
    lockout_window_s: float = opt(1800.0, "A failure more than this long after the previous one starts a new run.")
    auth_lookback_s: float = opt(3600.0, "RF-06: a 401/407 to a REGISTER for the AOR within this long shows the registrar challenges it.")
    default_expires_s: float = opt(3600.0, "Binding lifetime when neither REGISTER nor its 2xx states one (RFC 3261 §10.3 step 7).")
    hijack_zones: tuple[str, ...] = opt(("data", "wlan"), "A new binding source in one of these zones is high severity (RF-07); a public one always is.")
    slow_failures: int = opt(100, "Refused REGISTERs (credentials rejected, or 403/404/604) from one source in one slow campaign: a slow brute force or spray.")
    slow_min_span_s: float = opt(600.0, "A slow campaign must span at least this long (shorter ones are for the 60-s checks).")
    slow_quiet_s: float = opt(21600.0, "A source's slow campaign is judged once it has sent no REGISTER for this long (bursts hours apart stay one campaign).")
    slow_max_s: float = opt(86400.0, "A slow campaign is judged at the latest this long after its first REGISTER (then a new one starts).")
    flood_window_s: float = opt(10.0, "RF-08 flood window, seconds.")
    flood_rate: float = opt(20.0, "Requests per second from one source, averaged over the window, that make a flood.")
    flood_min_span_s: float = opt(5.0, "The requests must span at least this long: a shorter burst is a scan (RF-01), not a flood.")
    flood_503: int = opt(10, "503 answers to the source within the window that corroborate the flood (raises it to high).")
    remember_s: float = opt(3600.0, "How long a fingerprinted scanner or a registrar learned from its answers is remembered.")
    max_tracked: int = opt(100_000, "Cap on each per-source, per-user and per-transaction table (least recently used dropped).")


@dataclass(slots=True)
class _Txn:
    """A request awaiting its final response (RFC 3261 §17: Call-ID, CSeq number and method match them)."""
    src: str
    vlan: tuple[int, ...]
    method: str
    user: str                    # digest username, else the AOR user (REGISTER) or the From user
    aor: str
    contacts: tuple[str, ...]
    expires: int | None
    user_agent: str | None
    target: str | None           # the user a probe targets (To of a REGISTER, else the Request-URI user)
    register: RegisterRequest | None = None   # what the registrar's view needs of a REGISTER
    credentials: str | None = None   # sha256 of the digest response, None without credentials
    judged: str | None = None    # the credentials a final response already judged (retransmissions)


@dataclass(slots=True)
class _Campaign:
    """What one source did to many users until it went quiet: probes (RF-02) and failed logins (RF-04)."""
    first_ts: float
    last_ts: float
    vlan: tuple[int, ...]
    enumerating: bool = False    # enum_users distinct users within enum_window_s were reached
    tried: int = 0
    users: dict = field(default_factory=dict)        # probed user -> (first final status, responder) or None
    dialled: set = field(default_factory=set)        # users of it probed by INVITE/OPTIONS, not by REGISTER
    targets: set = field(default_factory=set)
    methods: Counter = field(default_factory=Counter)
    fails: Counter = field(default_factory=Counter)  # user -> failed authentications


@dataclass(slots=True)
class _Run:
    """Consecutive failed authentications of one user, from any source (RF-05)."""
    first_ts: float
    last_ts: float
    sources: Counter = field(default_factory=Counter)
    burst: bool = False          # the brute-force rate (RF-03) was reached during the run


@dataclass(slots=True)
class _Slow:
    """One source's REGISTERs over hours: a slow brute force or spray stays under every 60-s window."""
    first_ts: float
    last_ts: float
    vlan: tuple[int, ...]
    user_agent: str | None
    requests: int = 0            # REGISTER messages (retransmissions included, as a packet count)
    with_credentials: int = 0
    answers: Counter = field(default_factory=Counter)   # final status -> response messages
    refused: int = 0             # answers judged refused (sip_auth failure, or 403/404/604), once per transaction
    accounts: dict = field(default_factory=dict)        # To user -> [REGISTERs, refused]


@register
class RegistrationFlood(Detector):
    """Scanners, extension enumeration, digest brute force, registration abuse and SIP request floods.

    What: RF-01 SIP attack tools by User-Agent (friendly-scanner, sipvicious, sipcli, VaxSIPUserAgent, pplsip,
    sundayddr, iWar, SIVuS; sipsak low) or SIPVicious's From tag; one source probing >= 20 hosts or >= 10 ports
    in 60 s. RF-02 one source probing >= 30 identities in 60 s (REGISTER To users; INVITE/OPTIONS targets
    without credentials, not what an authenticated account dials), listing those the registrar revealed as
    valid (401/407/2xx while others got 404/604). RF-03 >= 10 rejected credentials (401/407/403 to a request
    with Authorization) for one user from one source in 60 s, or >= 100 refused REGISTERs from one source over
    hours (slow). RF-04 one user failing from >= 5 sources in 10 min, or one source failing on >= 20 users with
    <= 3 tries each (also over hours). RF-05 a 2xx after >= 10 consecutive failures of the user (3 for a
    fingerprinted scanner). RF-06 a REGISTER without credentials accepted with no 401/407 for the AOR in the
    last hour. RF-07 a 200 OK to REGISTER adding a contact beside another source's live binding or dropping
    one (the registrar's view, voipwatch.bindings), and a binding at a contact outside the site (rogue).
    RF-08 > 20 requests/s from one source over 10 s, corroborated by 503 answers.
    Why: NSA guide Part III "User accounts and passwords" (limit consecutive failed logins) and "Client
    registration protections" (authenticate clients, disable automatic registration); Part I "Network
    availability protections" (rate-limit traffic to UC VLANs).
    Tuning: thresholds in [detectors.registration_flood]; probes in allow_sources or [roles] scanner_ips;
    [roles] esc/sbc and learned registrars are exempt from sweeps, enumeration and spraying (esc/sbc from
    floods), sbc/pstn_gw/trusted_trunks from RF-06; [zones] sharpen RF-07 severities.
    False positives: OPTIONS pingers (allowlist them); a NATed office retrying slowly after a password change
    (RF-04); a stale password failing >= 10 times before it is fixed (RF-05 high, critical only when the
    failures were fast, from several sources or from a scanner), or for hours (slow_brute_force medium); a
    teleworker bound at a public address (rogue_binding: declare remote_vpn_pool); IP-trusted gateways and mTLS (RF-06); desk
    phone plus softphone on one AOR (RF-07 medium), a phone renumbered in its zone (RF-07 info); load tests
    and failover re-registration (RF-08 medium from internal sources). A 401/407 to credentials with
    stale=true is a stale-nonce re-challenge (RFC 7616 §3.3: the credentials were valid), not a failure.
    """
    name = "registration_flood"
    consumes = (SipMessage,)
    alerts = {
        "scanner": AlertSpec("RF-01", "medium", REGISTRATION, "A SIP attack tool fingerprint was seen"),
        "sweep": AlertSpec("RF-01", "medium", AVAILABILITY, "One source probed many SIP hosts or ports"),
        "enumeration": AlertSpec("RF-02", "medium", ACCOUNTS, "One source tried many SIP users (extension enumeration)"),
        "brute_force": AlertSpec("RF-03", "high", ACCOUNTS, "Many rejected credentials for one user from one source"),
        "spraying": AlertSpec("RF-04", "high", ACCOUNTS, "Distributed brute force or password spraying"),
        "lockout_not_enforced": AlertSpec("RF-05", "critical", ACCOUNTS, "Authentication succeeded after many consecutive failures"),
        "unauthenticated_registration": AlertSpec("RF-06", "high", REGISTRATION, "A REGISTER was accepted without any challenge"),
        "binding_hijack": AlertSpec("RF-07", "high", REGISTRATION, "A binding was added or removed from another source"),
        "rogue_binding": AlertSpec("RF-07", "critical", REGISTRATION, "An account is bound to a contact outside the site"),
        "request_flood": AlertSpec("RF-08", "high", AVAILABILITY, "One source sent SIP requests at a flood rate"),
        "slow_brute_force": AlertSpec("RF-03", "high", ACCOUNTS, "Many refused logins from one source over hours (slow brute force)"),
        "slow_spraying": AlertSpec("RF-04", "high", ACCOUNTS, "Many accounts refused a few times each from one source over hours (slow password spray)"),
    }
    Config = Config

    def __init__(self, config: Config, site):
        super().__init__(config, site)
        c, cap = config, config.max_tracked
        try:
            self._allow = [ipaddress.ip_network(n, strict=False) for n in c.allow_sources]
            self._tools = [re.compile(p, re.I) for p in c.scanner_user_agents]
            self._test_tools = [re.compile(p, re.I) for p in c.test_tool_user_agents]
        except (ValueError, re.error) as exc:
            raise ConfigError(f"[detectors.registration_flood]: {exc}") from exc
        self._txns: BoundedMap[_Txn] = BoundedMap(cap, TXN_IDLE_S)
        self._scanners: BoundedMap[bool] = BoundedMap(cap, c.remember_s)
        self._registrars: BoundedMap[bool] = BoundedMap(cap, c.remember_s)
        self._authenticated: BoundedMap[float] = BoundedMap(cap, c.remember_s)  # source -> when it last logged in
        self._campaigns: BoundedMap[_Campaign] = BoundedMap(cap, 2 * c.campaign_quiet_s)
        self._runs: BoundedMap[_Run] = BoundedMap(cap, c.lockout_window_s)
        self._challenged: BoundedMap[float] = BoundedMap(cap, c.auth_lookback_s)
        self._view = RegistrarView(cap, c.default_expires_s)            # bindings as the 200 OKs list them
        self._slow: BoundedMap[_Slow] = BoundedMap(cap, 2 * c.slow_quiet_s)   # source -> its slow campaign
        self._slow_accounts = Cap()                                      # accounts beyond campaign_max_users
        self._streaks: BoundedMap[int] = BoundedMap(cap, c.slow_max_s)  # account -> consecutive refusals
        self._cracked: BoundedMap[float] = BoundedMap(cap, c.remember_s)   # user -> when RF-05 found it guessed
        self._bound_before: BoundedMap[str] = BoundedMap(cap, 2 * c.default_expires_s)  # (aor, contact) -> source
        self._busy: BoundedMap[SlidingWindow] = BoundedMap(cap, c.flood_window_s, lambda: SlidingWindow(c.flood_window_s))
        self._hosts, self._ports = KeyedWindows(c.sweep_window_s, cap), KeyedWindows(c.sweep_window_s, cap)
        self._enum, self._bf = KeyedWindows(c.enum_window_s, cap), KeyedWindows(c.bf_window_s, cap)
        self._by_user, self._flood = KeyedWindows(c.spray_window_s, cap), KeyedWindows(c.flood_window_s, cap)
        # Running totals of each finding's activity (living findings, voipwatch.detect.Tally).
        self._scan_acts, self._sweep_acts = Tallies(c.remember_s, cap), Tallies(c.sweep_window_s, cap)
        self._bf_acts, self._spray_acts = Tallies(c.bf_window_s, cap), Tallies(c.spray_window_s, cap)
        self._flood_acts = Tallies(c.flood_window_s, cap)
        self._flood_last: BoundedMap[SipMessage] = BoundedMap(cap, c.flood_window_s)

    def on_sip_message(self, msg: SipMessage):
        yield from self._close_campaigns(msg.pkt.ts)
        yield from self._close_slow(msg.pkt.ts)
        if msg.is_request:
            yield from self._request(msg)
        elif msg.status is not None and msg.status >= 200:
            yield from self._final(msg)

    def finish(self):
        yield from self._close_campaigns(float("inf"))
        yield from self._close_slow(float("inf"))

    def _allowed(self, ip: str) -> bool:
        return (bool(self._allow) and any(ipaddress.ip_address(ip) in n for n in self._allow)
                or self.site.has_role(ip, "scanner_ips"))

    def _fans_out(self, ip: str) -> bool:
        return ip in self._registrars or any(self.site.has_role(ip, r) for r in FANOUT_ROLES)

    # -- requests: RF-01, RF-02, RF-08 ------------------------------------------------------------
    def _request(self, msg: SipMessage):
        p, method = msg.pkt, msg.method or ""
        if method not in ("ACK", "CANCEL") and msg.call_id is not None:
            cred = credentials(msg)
            key = (msg.call_id, msg.cseq, method)
            txn = self._txns.get(key) or _Txn(
                p.src, p.vlan, method, (cred and cred.username) or (msg.to_user if method == "REGISTER" else msg.from_user)
                or "", address_of_record(msg), msg.contact, msg.expires, msg.user_agent, _probed_user(msg),
                RegisterRequest.of(msg) if method == "REGISTER" else None)
            txn.credentials = cred and (cred.response_sha256 or "digest")   # svcrack re-guesses in one transaction
            self._txns.set(key, txn, p.ts)
        if self._allowed(p.src):
            return
        yield from self._fingerprint(msg)
        if method == "REGISTER" and not self._fans_out(p.src):
            yield from self._slow_register(msg)
        if method in PROBES and not self._fans_out(p.src):
            yield from self._sweep(msg)
            yield from self._enumerate(msg, credentials(msg) is not None)
        if not any(self.site.has_role(p.src, r) for r in FANOUT_ROLES):
            yield from self._request_flood(msg)

    def _fingerprint(self, msg: SipMessage):
        p, ua, via = msg.pkt, msg.user_agent or "", "user_agent"
        tool = next((rx.pattern for rx in self._tools if rx.search(ua)), None)
        if tool is None and self.config.match_sipvicious_tag and _sipvicious_tag(msg.from_tag):
            tool, via = "sipvicious", "from_tag"
        test = None if tool else next((rx.pattern for rx in self._test_tools if rx.search(ua)), None)
        if not (tool or test):
            return
        if tool:
            self._scanners.set(p.src, True, p.ts)
        public, at_esc = not self.site.is_internal(p.src), self._fans_out(p.dst)
        act = self._scan_acts.get(p.src, p.ts) or self._scan_acts.start(p.src, p.ts, p.ts)
        act.add(p.ts, requests=1)
        self._scan_acts.touch(p.src)
        n = act.counts["requests"]
        yield self.alert(
            "scanner", ts=p.ts, severity="low" if test else "high" if public and at_esc else "medium",
            identifier=p.src, src=p.src, sport=p.sport, dst=p.dst, dport=p.dport, vlan=p.vlan,
            first_ts=act.first_ts, totals={"requests": n},
            msg=f"{'Test tool' if test else 'SIP scanner'} at {'public ' if public else ''}{p.src} sent {n} request(s) "
                f"in {p.ts - act.first_ts:.1f} s, the latest {msg.method} to "
                f"{'the registrar/ESC ' if at_esc else ''}{p.dst}:{p.dport} (User-Agent {ua!r}, matched by {via}).",
            evidence={"user_agent": ua, "matched": via, "pattern": tool or test, "method": msg.method,
                      "ruri_user": msg.ruri_user, "public_source": public, "target_is_registrar": at_esc})

    def _sweep(self, msg: SipMessage):
        p, c = msg.pkt, self.config
        hosts, ports = self._hosts.add(p.src, p.ts, p.dst), self._ports.add(p.src, p.ts, p.dport)
        act = self._sweep_acts.get(p.src, p.ts)
        if act is None:
            if hosts.n_distinct() < c.sweep_hosts and ports.n_distinct() < c.sweep_ports:
                return
            # The sweep began with the first probe still in the window: its probes, hosts and ports count.
            act = self._sweep_acts.start(p.src, min(hosts.first_ts(), ports.first_ts()), p.ts)
            act.add(p.ts, probes=hosts.count())
            for host in hosts.distinct:
                act.see("hosts", host)
            for port in ports.distinct:
                act.see("ports", port)
        else:
            act.add(p.ts, probes=1)
            act.see("hosts", p.dst)
            act.see("ports", p.dport)
            self._sweep_acts.touch(p.src)
        n_hosts, n_ports = len(act.distinct["hosts"]), len(act.distinct["ports"])
        yield self.alert(
            "sweep", ts=p.ts, identifier=p.src, src=p.src, vlan=p.vlan, first_ts=act.first_ts,
            totals={"probes": act.counts["probes"]},
            msg=f"{p.src} probed {n_hosts} SIP hosts and {n_ports} ports with {act.counts['probes']} requests in "
                f"{p.ts - act.first_ts:.1f} s (threshold {c.sweep_hosts} hosts or {c.sweep_ports} ports within "
                f"{c.sweep_window_s:g} s).",
            evidence={"hosts": n_hosts, "ports": n_ports, "first_ts": act.first_ts, "last_ts": p.ts,
                      "sample_hosts": sorted(act.distinct["hosts"])[:c.max_listed],
                      "sample_ports": sorted(act.distinct["ports"])[:c.max_listed], "user_agent": msg.user_agent})

    def _enumerate(self, msg: SipMessage, has_credentials: bool):
        p, c, user = msg.pkt, self.config, _probed_user(msg)
        if not user:
            return
        logged_in = self._authenticated.get(p.src)
        if msg.method != "REGISTER" and (has_credentials or self.site.is_external_number(user)
                                         or logged_in is not None and p.ts - logged_in <= c.remember_s):
            # RF-02 probes identities. What an authenticated account dials (its request carries credentials,
            # or its source has logged in) and external numbers are destinations, not users: their 401/407
            # answers are the proxy asking the caller to log in (RFC 3261 §22.3), not a user revealed.
            self._not_a_probe(p.src, user)
            return
        camp = yield from self._campaign(p.src, p.ts, p.vlan, p.dst)
        camp.methods[msg.method] += 1
        if user not in camp.users:
            camp.tried += 1
            if len(camp.users) < c.campaign_max_users:
                camp.users[user] = None
                if msg.method != "REGISTER":
                    camp.dialled.add(user)
        if self._enum.add(p.src, p.ts, user).n_distinct() >= c.enum_users:
            camp.enumerating = True

    def _not_a_probe(self, src: str, user: str) -> None:
        """A target that src dialled as an authenticated account (say, after a 407) leaves its campaign."""
        camp = self._campaigns.get(src)
        if camp is not None and user in camp.dialled:
            camp.dialled.discard(user)
            camp.users.pop(user, None)
            camp.tried -= 1

    def _request_flood(self, msg: SipMessage):
        p, c = msg.pkt, self.config
        window = self._flood.add(p.src, p.ts, msg.method)
        act = self._flood_acts.get(p.src, p.ts)
        if act is None:
            if window.count() < c.flood_rate * c.flood_window_s or p.ts - window.first_ts() < c.flood_min_span_s:
                return
            # The flood began with the oldest request in the window; every request since is part of it.
            act = self._flood_acts.start(p.src, window.first_ts(), p.ts)
            busy = self._busy.get(p.src)              # 503s already sent to it within the window
            if busy is not None:
                busy.expire(p.ts)
            act.add(p.ts, requests=window.count(), responses_503=busy.count() if busy is not None else 0)
            act.counts.update({("method", m): n for m, n in window.distinct.items()})
        else:
            act.add(p.ts, requests=1)
            act.counts[("method", msg.method)] += 1
            self._flood_acts.touch(p.src)
        act.peak_at(window.count() / c.flood_window_s)
        self._flood_last.set(p.src, msg, p.ts)
        yield self._flood_alert(msg, act, p.ts)

    def _flood_alert(self, msg: SipMessage, act, ts: float):
        """RF-08 with the flood's totals so far; `msg` is the latest request of the flooding source."""
        p, c = msg.pkt, self.config
        n, busy, public = act.counts["requests"], act.counts["responses_503"], not self.site.is_internal(p.src)
        return self.alert(
            "request_flood", ts=ts, severity="high" if public or busy >= c.flood_503 else "medium",
            identifier=p.src, src=p.src, dst=p.dst, vlan=p.vlan, first_ts=act.first_ts,
            totals={"requests": n, "responses_503": busy},
            msg=f"{p.src} sent {n} SIP requests in {act.last_ts - act.first_ts:.1f} s, at most {act.peak:.0f}/s over "
                f"{c.flood_window_s:g} s (flood threshold {c.flood_rate:g}/s); {busy} were answered 503.",
            evidence={"requests": n, "window_s": c.flood_window_s, "first_ts": act.first_ts, "last_ts": act.last_ts,
                      "peak_rate_per_s": round(act.peak, 3),
                      "methods": {k[1]: v for k, v in act.counts.items() if isinstance(k, tuple)},
                      "responses_503": busy, "public_source": public, "user_agent": msg.user_agent})

    # -- slow campaigns: RF-03/RF-04 over hours, judged when the source goes quiet ----------------------
    def _slow_register(self, msg: SipMessage):
        p, c = msg.pkt, self.config
        slow = self._slow.get(p.src)
        if slow is not None and p.ts - slow.first_ts > c.slow_max_s:
            yield from self._judge_slow(p.src, self._slow.pop(p.src))
            slow = None
        if slow is None:
            slow = _Slow(p.ts, p.ts, p.vlan, msg.user_agent)
        slow.last_ts = p.ts
        slow.requests += 1
        slow.with_credentials += credentials(msg) is not None
        account = slow.accounts.get(msg.to_user or "")
        if account is None and len(slow.accounts) < c.campaign_max_users:
            account = slow.accounts[msg.to_user or ""] = [0, 0]
        elif account is None:
            self._slow_accounts.overflows += 1
        if account is not None:
            account[0] += 1
        self._slow.set(p.src, slow, p.ts)

    def _slow_outcome(self, txn: _Txn, result: str | None, status: int, ts: float) -> None:
        """Consecutive refusals per account (a success resets them: the guide's "consecutive failed logins")
        and the refusals of the sender's slow campaign."""
        account = txn.target or ""
        if result == "success":
            self._streaks.pop(account)
            return
        if not (result == "failure" or result == "rejected" and status in REFUSED):
            return
        self._streaks.set(account, self._streaks.get(account, 0) + 1, ts)
        slow = self._slow.get(txn.src)
        if slow is not None:
            slow.refused += 1
            if account in slow.accounts:
                slow.accounts[account][1] += 1

    def _close_slow(self, now: float):
        quiet = []
        for src, slow in self._slow.items():               # least recently active first
            if now - slow.last_ts <= self.config.slow_quiet_s:
                break
            quiet.append(src)
        for src in quiet:
            yield from self._judge_slow(src, self._slow.pop(src))

    def _judge_slow(self, src: str, slow: _Slow):
        c, span = self.config, slow.last_ts - slow.first_ts
        if slow.refused < c.slow_failures or span < c.slow_min_span_s:
            return
        refused = {a: v for a, v in slow.accounts.items() if v[1]}
        tries = sorted(v[1] for v in refused.values()) or [0]
        median = tries[len(tries) // 2]
        spray = len(refused) >= c.spray_users and median <= c.spray_max_tries
        public, scanner = not self.site.is_internal(src), src in self._scanners
        streaks = {a: self._streaks.get(a, 0) for a in refused}
        top = sorted(slow.accounts.items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))[:c.max_listed]
        answers = ", ".join(f"{n} x {s}" for s, n in sorted(slow.answers.items())) or "none"
        yield self.alert(
            "slow_spraying" if spray else "slow_brute_force", ts=slow.last_ts, identifier=src, src=src, vlan=slow.vlan,
            first_ts=slow.first_ts, totals={"requests": slow.requests, "refused": slow.refused},
            severity="medium" if len(refused) == 1 and not public and not scanner else "high",
            msg=f"{src} sent {slow.requests} REGISTERs for {len(slow.accounts)} accounts over {span / 3600:.1f} h; "
                f"{slow.refused} were refused, on {len(refused)} accounts about {median} times each (answers: "
                f"{answers}), each 60-s window staying under the thresholds: a slow "
                f"{'password spray' if spray else 'brute force'}. Block the source and lock accounts after "
                f"consecutive failed logins.",
            evidence={"pattern": "spray" if spray else "brute_force", "requests": slow.requests,
                      "with_credentials": slow.with_credentials, "accounts": len(slow.accounts),
                      "accounts_refused": len(refused), "refused": slow.refused, "median_refused_per_account": median,
                      "answers_by_status": {str(s): n for s, n in sorted(slow.answers.items())},
                      "first_ts": slow.first_ts, "last_ts": slow.last_ts, "span_s": round(span, 6),
                      "max_account_consecutive_refusals": max(streaks.values(), default=0),
                      "sample_accounts": [{"account": a, "requests": v[0], "refused": v[1],
                                           "account_consecutive_refusals": streaks.get(a, 0)} for a, v in top],
                      "user_agent": slow.user_agent, "public_source": public, "scanner_source": scanner})

    # -- campaigns: RF-02 enumeration and RF-04 spraying, judged when the source goes quiet ---------
    def _campaign(self, src: str, ts: float, vlan: tuple[int, ...], target: str):
        """The running campaign of src, marked active at ts; one older than campaign_max_s is judged first."""
        camp = self._campaigns.get(src)
        if camp is not None and ts - camp.first_ts > self.config.campaign_max_s:
            yield from self._judge(src, self._campaigns.pop(src))
            camp = None
        camp = camp or _Campaign(ts, ts, vlan)
        camp.last_ts = ts
        if len(camp.targets) < self.config.max_listed:
            camp.targets.add(target)
        self._campaigns.set(src, camp, ts)
        return camp

    def _close_campaigns(self, now: float):
        quiet = []
        for src, camp in self._campaigns.items():          # least recently active first
            if now - camp.last_ts <= self.config.campaign_quiet_s:
                break
            quiet.append(src)
        for src in quiet:
            yield from self._judge(src, self._campaigns.pop(src))

    def _judge(self, src: str, camp: _Campaign):
        c, span = self.config, camp.last_ts - camp.first_ts
        common = {"first_ts": camp.first_ts, "last_ts": camp.last_ts, "targets": sorted(camp.targets)}
        few = sorted(u for u, n in camp.fails.items() if n <= c.spray_max_tries)
        if len(few) >= c.spray_users:
            yield self.alert(
                "spraying", ts=camp.last_ts, identifier=f"src:{src}", src=src, vlan=camp.vlan, first_ts=camp.first_ts,
                totals={"failures": sum(camp.fails.values())},
                msg=f"{src} failed to authenticate as {len(few)} different users with at most {c.spray_max_tries} "
                    f"tries each in {span:.0f} s (password spraying).",
                evidence={"pattern": "spray", "users": few[:c.max_listed], "user_count": len(few),
                          "failures": sum(camp.fails.values()), **common})
        if not camp.enumerating or camp.tried < c.enum_users:    # destinations dialled later left the campaign
            return
        answers = [a for a in camp.users.values() if a is not None]
        statuses = Counter(status for status, _ in answers)
        # A responder reveals which users exist when it answers some 401/407/2xx and others 404/604.
        valid = {(status, r) for status, r in answers if status in CHALLENGES or 200 <= status < 300}
        leaky = {r for _, r in valid} & {r for status, r in answers if status in UNKNOWN_USER}
        revealed = sorted(u for u, a in camp.users.items() if a in valid and a[1] in leaky)
        unknown = sum(1 for status, r in answers if r in leaky and status in UNKNOWN_USER)
        yield self.alert(
            "enumeration", ts=camp.last_ts, severity="high" if revealed else "medium", identifier=src, src=src,
            vlan=camp.vlan, first_ts=camp.first_ts, totals={"probes": sum(camp.methods.values())},
            msg=f"{src} tried {camp.tried} SIP users in {span:.0f} s; " + (
                f"the registrar revealed {len(revealed)} as valid (401/407/2xx) and {unknown} as unknown (404/604)."
                if revealed else f"the answers ({', '.join(f'{n} x {k}' for k, n in sorted(statuses.items())) or 'none'}) "
                                 f"revealed no valid user."),
            evidence={"users_tried": camp.tried, "methods": dict(camp.methods), "leaks_validity": bool(revealed),
                      "responses": {str(k): v for k, v in sorted(statuses.items())},
                      "valid_users": revealed[:c.max_listed], "valid_count": len(revealed),
                      "revealed_by": sorted(leaky), **common})

    # -- final responses: RF-02 answers, RF-03 to RF-07 -------------------------------------------
    def _final(self, msg: SipMessage):
        p, ts, status = msg.pkt, msg.pkt.ts, msg.status
        if status == 503:                               # RFC 3261 §21.5.4: the server is overloaded
            self._busy.touch(p.dst, ts).add(ts)
            flood, last = self._flood_acts.get(p.dst, ts), self._flood_last.get(p.dst)
            if flood is not None and last is not None:
                flood.counts["responses_503"] += 1
                yield self._flood_alert(last, flood, ts)
        slow = self._slow.get(p.dst) if msg.cseq_method == "REGISTER" else None
        if slow is not None:
            slow.answers[status] += 1
        txn = self._txns.get((msg.call_id, msg.cseq, msg.cseq_method))
        if txn is None or txn.judged == (txn.credentials or ""):
            return                                      # unmatched, or a retransmitted final answer (§17.2)
        txn.judged = txn.credentials or ""
        camp = self._campaigns.get(txn.src)
        if camp is not None and txn.method != "OPTIONS" and camp.users.get(txn.target, 0) is None:
            camp.users[txn.target] = (status, p.src)      # an OPTIONS answer is about the server (RFC 3261 §11.2)
        if txn.method == "REGISTER":
            self._registrars.set(p.src, True, ts)
            if status in CHALLENGES:
                self._challenged.set(txn.aor, ts, ts)
        result = outcome(bool(txn.credentials), msg)    # the registrations table counts the same way
        if txn.method == "REGISTER":
            self._slow_outcome(txn, result, status, ts)
        if result == "failure":
            yield from self._failure(txn, msg)
        elif result == "success" and txn.method in ("REGISTER", "INVITE"):
            if txn.credentials:
                self._authenticated.set(txn.src, ts, ts)
            yield from self._success(txn, msg)
            if txn.method == "REGISTER":
                yield from self._unchallenged(txn, msg)
                yield from self._binding(txn, msg)

    def _failure(self, txn: _Txn, msg: SipMessage):
        c, ts, user, registrar = self.config, msg.pkt.ts, txn.user, msg.pkt.src
        run = self._runs.get(user)
        if run is None or ts - run.last_ts > c.lockout_window_s:
            run = _Run(ts, ts)
        run.last_ts = ts
        run.sources[txn.src] += 1
        self._runs.set(user, run, ts)
        base = {"user": user, "method": txn.method, "registrar": registrar, "last_status": msg.status,
                "user_agent": txn.user_agent}
        pair, key = self._bf.add((txn.src, user), ts), (txn.src, user)
        act = self._bf_acts.get(key, ts)
        if act is not None:
            act.add(ts, failures=1)
            self._bf_acts.touch(key)
        elif pair.count() >= c.bf_failures:     # the failures still in the window began it
            act = self._bf_acts.start(key, pair.first_ts(), ts).add(ts, failures=pair.count())
        if act is not None:
            run.burst = True
            n, peak = act.counts["failures"], act.peak_at(pair.count())
            yield self.alert(
                "brute_force", ts=ts, identifier=f"{txn.src}>{user}", src=txn.src, dst=registrar, vlan=txn.vlan,
                first_ts=act.first_ts, totals={"failures": n},
                msg=f"{txn.src} failed to authenticate as {user!r} {n} times in {ts - act.first_ts:.0f} s at "
                    f"{registrar}, at most {peak:.0f} within {c.bf_window_s:g} s (last answer {msg.status}).",
                evidence={**base, "failures": n, "peak_in_window": int(peak), "first_ts": act.first_ts, "last_ts": ts})
        sources = self._by_user.add(user, ts, txn.src)
        act = self._spray_acts.get(user, ts)
        if act is not None:
            act.add(ts, failures=1).see("sources", txn.src)
            self._spray_acts.touch(user)
        elif sources.n_distinct() >= c.spray_sources:
            act = self._spray_acts.start(user, sources.first_ts(), ts).add(ts, failures=sources.count())
            for src in sources.distinct:
                act.see("sources", src)
        if act is not None:
            srcs, n = sorted(act.distinct["sources"]), act.counts["failures"]
            yield self.alert(
                "spraying", ts=ts, identifier=f"user:{user}", dst=registrar, vlan=txn.vlan, first_ts=act.first_ts,
                totals={"failures": n}, actors=[f"ip:{s}" for s in srcs[:8]],
                msg=f"{len(srcs)} sources failed to authenticate as {user!r} {n} times in {ts - act.first_ts:.0f} s "
                    f"(distributed brute force).",
                evidence={**base, "pattern": "distributed", "sources": srcs[:c.max_listed], "source_count": len(srcs),
                          "failures": n, "first_ts": act.first_ts, "last_ts": ts})
        if not (self._allowed(txn.src) or self._fans_out(txn.src)):
            camp = yield from self._campaign(txn.src, ts, txn.vlan, registrar)
            camp.fails[user] += 1

    def _success(self, txn: _Txn, msg: SipMessage):
        c, ts, user, registrar = self.config, msg.pkt.ts, txn.user, msg.pkt.src
        run, scanner = self._runs.pop(user), txn.src in self._scanners
        failures = sum(run.sources.values()) if run is not None and ts - run.last_ts <= c.lockout_window_s else 0
        if failures < (c.lockout_failures_scanner if scanner else c.lockout_failures):
            return
        self._cracked.set(user, ts, ts)
        yield self.alert(
            "lockout_not_enforced", ts=ts, identifier=f"{txn.src}>{user}", src=txn.src, dst=registrar, vlan=txn.vlan,
            first_ts=run.first_ts, totals={"failures": failures}, actors=(f"ip:{txn.src}", f"account:{user}"),
            severity="critical" if scanner or run.burst or len(run.sources) > 1 else "high",
            msg=f"{registrar} accepted {txn.method} for {user!r} from {txn.src} after {failures} consecutive failed "
                f"authentications in {ts - run.first_ts:.0f} s: no lockout, credentials likely guessed.",
            evidence={"user": user, "method": txn.method, "registrar": registrar, "failures": failures,
                      "failure_sources": dict(run.sources), "first_ts": run.first_ts, "last_ts": ts,
                      "scanner_source": scanner, "brute_force_rate": run.burst, "user_agent": txn.user_agent,
                      "lockout_not_enforced": registrar})

    def _unchallenged(self, txn: _Txn, msg: SipMessage):
        ts, registrar, lookback = msg.pkt.ts, msg.pkt.src, self.config.auth_lookback_s
        if txn.credentials or self._allowed(txn.src) or any(self.site.has_role(txn.src, r) for r in TRUSTED_ROLES):
            return
        last = self._challenged.get(txn.aor)
        if last is not None and ts - last <= lookback:
            return
        yield self.alert(
            "unauthenticated_registration", ts=ts, identifier=f"{registrar}|{txn.aor}", src=txn.src, dst=registrar,
            vlan=txn.vlan, totals={"registrations": 1}, actors=(f"ip:{txn.src}", f"account:{txn.user}"),
            msg=f"Registrar {registrar} accepted a REGISTER for {txn.aor} from {txn.src} without credentials and "
                f"with no 401/407 challenge for it in the last {lookback:g} s.",
            evidence={"aor": txn.aor, "registrar": registrar, "status": msg.status, "contacts": list(txn.contacts),
                      "expires": txn.expires, "user_agent": txn.user_agent})

    def _binding(self, txn: _Txn, msg: SipMessage):
        """RFC 3261 §26.1.1 registration hijacking, judged on the registrar's view (voipwatch.bindings): the
        bindings a 200 OK lists (§10.3 step 8), not what the REGISTER asked for."""
        c, ts, site, registrar = self.config, msg.pkt.ts, self.site, msg.pkt.src
        others = [b for b in self._view.live(txn.aor, ts) if b.src != txn.src]    # src None: bound before the capture
        update = self._view.on_ok(txn.aor, txn.register, msg)
        yield from self._rogue(txn, msg, update)
        # A contact this source had bound before (a phone registering again after its own de-registration)
        # is its own device coming back, not a new one.
        added = [b for b in update.added if b.src == txn.src
                 and self._bound_before.get((txn.aor, contact_key(b.contact))) != txn.src]
        for b in update.added:
            if b.src is not None:
                self._bound_before.set((txn.aor, contact_key(b.contact)), b.src, ts)
        removed = [b for b in update.removed if b.src != txn.src]
        if not others or not (added or removed):
            return                          # a refresh, or a phone removing only its own contact
        zone, public = site.zone_of(txn.src, txn.vlan), not site.is_internal(txn.src)
        zones = {site.zone_of(b.src, b.vlan) for b in others if b.src}
        if public and any(b.src and site.is_internal(b.src) for b in others) or zone in c.hijack_zones and zone not in zones:
            severity = "high"
        elif zone not in zones or txn.user_agent not in {b.user_agent for b in others}:
            severity = "medium"
        else:
            severity = "info"                  # same zone and phone model: most likely renumbered by DHCP
        what = []
        if added:
            what.append(f"added {', '.join(b.contact for b in added)}")
        if removed:
            what.append(f"removed {len(removed)} binding(s) registered from "
                        f"{', '.join(sorted({b.src or 'before the capture' for b in removed}))}")
        listed = [_listing(b, ts) for b in update.listed]
        yield self.alert(
            "binding_hijack", ts=ts, severity=severity, identifier=f"{txn.aor}|{txn.src}", src=txn.src,
            dst=registrar, vlan=txn.vlan, totals={"registrations": 1}, actors=(f"ip:{txn.src}", f"account:{txn.user}"),
            msg=f"{registrar} accepted a REGISTER for {txn.aor} from {txn.src} (zone {zone or 'unknown'}) that "
                f"{' and '.join(what)}, while {len(others)} binding(s) from "
                f"{', '.join(sorted({b.src or 'before the capture' for b in others}))} were live; its 200 OK lists "
                f"{len(listed)} binding(s)" + (": " + "; ".join(
                    f"{b['contact']} from {b['registered_from'] or 'before the capture'}, {b['expires_in_s']:.0f} s left"
                    for b in listed[:5]) if listed else "") + ".",
            evidence={"aor": txn.aor, "action": "register" if added else "deregister", "new_zone": zone,
                      "new_user_agent": txn.user_agent, "new_contacts": list(txn.contacts),
                      "previous_sources": sorted({b.src or "" for b in others}),
                      "previous_zones": sorted(z or "unknown" for z in zones),
                      "previous_user_agents": sorted({b.user_agent or "" for b in others}),
                      "removed_bindings": [_listing(b, ts) for b in removed][:c.max_listed],
                      "listed_bindings": listed[:c.max_listed], "listed_count": len(listed),
                      "registrar": registrar, "public_source": public})

    def _outside_site(self, host: str | None) -> bool:
        """An address outside the organisation (site.internal_prefixes), its zones and its declared peers; a
        contact given by name cannot be judged passively."""
        try:
            ipaddress.ip_address(host or "")
        except ValueError:
            return False
        site = self.site
        return not (site.is_internal(host) or site.zone_of(host) is not None or self._allowed(host)
                    or any(site.has_role(host, r) for r in SITE_PEERS))

    def _rogue(self, txn: _Txn, msg: SipMessage, update):
        """A binding the registrar lists at an address outside the site that calls to the account now reach:
        one pointing at a third host (not the address that registered it, as svcrack's sip:123@1.1.1.1), or
        one made with a guessed password or by a scanner, or one beside a binding inside the site. A remote
        phone that registers its own public address is none of these (XV-07 judges it)."""
        c, ts, registrar = self.config, msg.pkt.ts, msg.pkt.src
        for b in update.added:
            if not self._outside_site(b.contact_host):
                continue
            scanner = b.src is not None and b.src in self._scanners
            cracked = self._cracked.get(txn.user) is not None
            inside = [x for x in update.listed if x is not b and not self._outside_site(x.contact_host)]
            third_host = b.src is not None and _addr(b.contact_host) != _addr(b.src)
            if not (scanner or cracked or inside or third_host):
                continue
            severity = "critical" if scanner or cracked or inside else "high"
            yield self.alert(
                "rogue_binding", ts=ts, severity=severity, identifier=f"{txn.aor}|{b.contact}", src=b.src,
                dst=registrar, vlan=b.vlan, first_ts=b.first_seen_ts,
                actors=tuple(a for a in (f"ip:{b.src}" if b.src else None, f"account:{txn.user}") if a),
                msg=f"{registrar} lists a binding of {txn.aor} to {b.contact}, outside the site, registered from "
                    f"{b.src or 'an unknown source before the capture'} and live for {b.expires_ts - ts:.0f} s: calls "
                    f"to {txn.aor} are sent there" + (" as well as to the account's own phone" if inside else "")
                    + (f" ({'the password was just guessed' if cracked else 'a SIP scanner registered it'})"
                       if cracked or scanner else "")
                    + ". Remove the binding at the registrar and change the account's password.",
                evidence={"aor": txn.aor, "contact": b.contact, "contact_host": b.contact_host,
                          "registered_from": b.src, "registrar": registrar, "user_agent": b.user_agent,
                          "first_seen_ts": b.first_seen_ts, "expires_ts": b.expires_ts,
                          "scanner_source": scanner, "account_cracked": cracked, "third_host": third_host,
                          "inside_bindings": [_listing(x, ts) for x in inside][:c.max_listed],
                          "listed_by_registrar": b.listed_by_registrar})


def _addr(text: str | None):
    try:
        return ipaddress.ip_address(text or "")
    except ValueError:
        return text


def _listing(b, ts: float) -> dict:
    return {"contact": b.contact, "registered_from": b.src, "expires_in_s": round(b.expires_ts - ts, 3)}


def _probed_user(msg: SipMessage) -> str | None:
    """The user a probe targets: the AOR of a REGISTER (RFC 3261 §10.2), else the Request-URI user."""
    return msg.to_user if msg.method == "REGISTER" else (msg.ruri_user or msg.to_user)


def _sipvicious_tag(tag: str | None) -> bool:
    return bool(tag and _SV_TAG.fullmatch(tag) and _SV_TAG_TEXT.fullmatch(bytes.fromhex(tag).decode("latin-1")))
