"""Unencrypted media and signalling: cleartext RTP and SIP, SDES keys in the clear, weak SRTP, clear DTMF."""
from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass, field

from dissectors.sdp import is_secure_profile, line_protection
from voipwatch.config_schema import ConfigError, opt
from voipwatch.detect import SEVERITIES, AlertSpec, Detector, register
from voipwatch.legs import CallLegs
from voipwatch.records import Call, RtpStream, SdpCrypto, SdpSession, SipMessage
from voipwatch.severity import severity_of
from voipwatch.windows import BoundedMap

EAVES, TRUST = "Part I: Call eavesdropping protections", "Part I: Trusted path and channel protections"
SG, PUBLIC = "Part II: Signaling gateway protections", "Part II: Protections for public IP networks functioning as voice carriers"
MEDIA_KINDS = ("audio", "video")
# G.711 (RFC 3551 §4.5.14) and G.722 (§4.5.2) fill 8 bits per 8 kHz sample period, 40 bytes per 5 ms: a
# cleartext payload is a whole number of 40-byte units at any ptime. Compressed codecs (Opus, G.729, Speex)
# have variable or tiny frames and near-random bytes, so neither payload test applies to them.
WAVEFORM_PTS, WAVEFORM_CODECS, FRAME_UNIT_B = frozenset((0, 8, 9)), frozenset(("PCMU", "PCMA", "G722")), 40
# SRTP appends an HMAC-SHA1 tag of 4 (_32) or 10 (_80) bytes (RFC 3711 §4.2), or a 16-byte AEAD-GCM tag
# (RFC 7714 §7), each optionally after a 4-byte MKI (RFC 3711 §3.1).
SRTP_TRAILERS_B = (4, 10, 16, 8, 14, 20)
EVENT_PAYLOAD_B = 4                          # RFC 4733 §2.3: one telephone-event is a 4-byte payload
DYNAMIC_PTS = range(96, 128)                 # RFC 3551 §3: payload types bound only by SDP
# RFC 4568 §6.3.2-6.3.4 session parameters that switch SRTP protection off, by what they expose.
WEAK_PARAMS = {"UNENCRYPTED_SRTP": "high", "UNAUTHENTICATED_SRTP": "medium", "UNENCRYPTED_SRTCP": "medium"}
ROLLUP_ROLES = ("esc", "sbc", "pstn_gw", "trusted_trunks")   # a server in a role is a place of its own
ROLLUPS = ("site", "pair")


@dataclass(frozen=True)
class Config:
    summary_window_s: float = opt(60.0, "Capture seconds over which related records become one alert (streams and DTMF per call, per public peer).")
    rollup: str = opt("site", "How cleartext SIP (UM-04) and media (UM-01) become findings: 'site' (one per pair of places, a place "
                              "being a public address, a server in a role (esc, sbc, pstn_gw, trusted_trunks), a zone by CIDR, or "
                              "'internal hosts') or 'pair' (one per host pair); the calls and host pairs are the evidence.")
    rollup_window_s: float = opt(3600.0, "Capture seconds a roll-up gathers before it is reported with its totals (at most one "
                                         "finding per roll-up key per window; keep >= [alerts] suppress_for_s).")
    min_packets: int = opt(10, "UM-01: payload tests judge only streams with at least this many packets.")
    min_payload_b: float = opt(20.0, "UM-01: streams with a smaller mean payload (comfort noise, events) are never judged by payload.")
    length_tolerance_b: float = opt(0.5, "UM-01: a mean payload within this of whole G.711/G.722 frames (+ an SRTP tag) has that size.")
    clear_entropy_max: float = opt(7.5, "UM-01: byte entropy (bits/byte over >= 8 KB) below this says cleartext G.711/G.722.")
    srtp_entropy_min: float = opt(7.9, "UM-01: byte entropy above this says encrypted (8 KB of random bytes measure about 7.98).")
    internal_media_severity: str = opt(severity_of("exposure"), "UM-01: severity of cleartext media between internal hosts, "
                                       "hygiene (a public end is always critical).")
    allow_cleartext_pairs: tuple[str, ...] = opt((), "UM-01/UM-04: 'A B' address or CIDR pairs where cleartext is accepted by design (SBC inside leg): info.")
    private_transport_peers: tuple[str, ...] = opt((), "UM-06: CIDRs outside the internal prefixes reached over a private or encrypted transport (MPLS trunk, VPN).")
    sensitive_numbers: tuple[str, ...] = opt((), "UM-08: regexes of dialled numbers whose digits are PINs (voicemail, IVR, conference): critical.")
    dtmf_min_packets: int = opt(3, "UM-08: a stream without SDP needs this many bare 4-byte event payloads to count as DTMF.")
    require_aes256: bool = opt(False, "UM-03: CNSA profile (CNSSP 15): an SRTP suite without AES-256 is reported (low).")
    max_listed: int = opt(20, "Streams, users, keys or Call-IDs listed in one alert's evidence at most.")
    max_negotiations: int = opt(8, "Offer/answer exchanges remembered per leg of a call (re-INVITEs beyond it drop the oldest).")
    max_calls: int = opt(50000, "Cap on calls whose SDP is remembered (least recent dropped).")
    call_idle_s: float = opt(7200.0, "A call's SDP is forgotten after this many capture seconds without SIP or media.")
    max_pending: int = opt(20000, "Cap on alerts being gathered at once; the oldest is reported early when hit.")


@dataclass(slots=True)
class _CallState:
    ruri_user: str | None
    legs: CallLegs                                  # offer/answer per leg (voipwatch.legs)
    keys: list = field(default_factory=list)        # (sdp side, SdpCrypto) with an inline key seen in clear
    streams: int = 0
    key_messages: int = 0                           # SIP messages that carried inline keys in clear (UM-02)
    first_key_ts: float | None = None


@dataclass(slots=True)
class _Group:
    """Records gathered under one key until `due` (capture time), then reported as one alert."""
    due: float
    first_ts: float
    last_ts: float
    src: str | None
    dst: str | None
    vlan: tuple[int, ...]
    call_id: str | None = None
    call: _CallState | None = None
    counts: Counter = field(default_factory=Counter)
    items: list = field(default_factory=list)
    notes: set = field(default_factory=set)
    pairs: Counter = field(default_factory=Counter)  # roll-ups: (host, host) -> messages or streams, first seen first
    severity: str = "info"                           # roll-ups: the most severe contribution


def _step(severity: str, n: int) -> str:
    return SEVERITIES[max(0, min(len(SEVERITIES) - 1, SEVERITIES.index(severity) + n))]


def _nets(values, where: str) -> list:
    try:
        return [ipaddress.ip_network(v, strict=False) for v in values]
    except ValueError as exc:
        raise ConfigError(f"[detectors.unencrypted_media] {where}: {exc}") from exc


def _in(ip: str | None, nets: list) -> bool:
    try:
        return ip is not None and any(ipaddress.ip_address(ip) in n for n in nets)
    except ValueError:
        return False


def _pts(s: RtpStream) -> set[int]:
    return set(s.payload_types or (s.payload_type,))


def _flow(s: RtpStream) -> str:
    return "~".join(sorted((f"{s.src}:{s.sport}", f"{s.dst}:{s.dport}")))


def _key(crypto: SdpCrypto) -> dict:
    """An SDES key as evidence: suite, tag, SHA-256 and length of the key||salt (never the key)."""
    return {"tag": crypto.tag, "suite": crypto.suite, "key_sha256": crypto.key_sha256, "key_len": crypto.key_len}


@register
class UnencryptedMedia(Detector):
    """Unencrypted media and signalling (NSA guide Part I: Call eavesdropping protections, Trusted path and
    channel protections; Part II: Signaling gateway and Public IP network protections).

    What: cleartext RTP (UM-01) from SDP (m= RTP/AVP(F) without a=crypto, a=fingerprint or a=zrtp-hash, per
    negotiated line) or, with no SDP, from G.711/G.722 payloads: whole frames (160 B per 20 ms) are
    cleartext, frames + 4/10/16 B (SRTP tag, + MKI) are SRTP; byte entropy over >= 8 KB when measured. SDES
    keys (a=crypto inline) in SIP without TLS (UM-02, critical), then the call's streams those keys decrypt.
    SRTP offers answered with plain RTP; chosen crypto with UNENCRYPTED_SRTP/SRTCP, UNAUTHENTICATED_SRTP,
    NULL cipher or 32-bit tags, or not AES-256 under require_aes256 (UM-03). Cleartext SIP with counts by
    method, one level higher with REGISTER (UM-04). Cleartext SIP and media are rolled up per pair of places
    (public address, server in a role, zone, internal hosts; or per host pair) over rollup_window_s, with
    their calls and host pairs as evidence: one finding per problem, not per call. A public end raises
    UM-01/UM-04 a level and adds one summary per public peer (UM-06). RFC 4733 telephone-events in cleartext RTP and
    SIP INFO dtmf-relay (UM-08): counts, never digits.
    Why: the guide's best mitigation against eavesdropping is encrypting all voice and video end to end,
    and all signalling that can be (SIP/TLS, SRTP; encrypted trunks over public networks).
    Severity (voipwatch.severity): cleartext media seen between internal hosts is hygiene, medium by default:
    the conversation is readable by anyone on the path, but no attacker is shown. SDP that negotiated cleartext for an
    answered call whose media is not in the capture is one level lower. Sites that accept cleartext inside
    (802.1X, port security) lower internal_media_severity; allow_cleartext_pairs makes a pair info. Calls
    protected by SRTP with keys not seen, DTLS-SRTP or ZRTP raise nothing above info.
    Tune: allow_cleartext_pairs, private_transport_peers (MPLS trunks), sensitive_numbers (voicemail/IVR).
    False positives: ZRTP without a=zrtp-hash keys on the media path under RTP/AVP; streams with SRTP-sized
    payloads are reported as zrtp_suspected (info), not cleartext, but ZRTP on a compressed codec or on a
    stream mixing events cannot be told apart. Entropy cannot tell cleartext Opus/G.729/Speex from SRTP
    (7.9-7.97 bits/byte measured), so those streams are never judged without SDP. A capture taken before a
    VPN/IPsec gateway sees cleartext that is encrypted further on.
    """
    name = "unencrypted_media"
    consumes = (SipMessage, RtpStream, Call)
    Config = Config
    alerts = {
        "cleartext_rtp": AlertSpec("UM-01", severity_of("exposure"), EAVES, "Voice or video crossed the network as cleartext RTP"),
        "zrtp_suspected": AlertSpec("UM-01", "info", EAVES, "SDP offered plain RTP but the payloads look like SRTP keyed on the media path (ZRTP)"),
        "sdes_key_in_cleartext_sip": AlertSpec("UM-02", "critical", TRUST, "SRTP keys (SDES a=crypto) were sent in SIP without TLS"),
        "sdes_media_decryptable": AlertSpec("UM-02", "high", EAVES, "SRTP streams whose SDES keys were seen in cleartext SIP can be decrypted"),
        "srtp_downgrade": AlertSpec("UM-03", "high", TRUST, "An SRTP offer was answered with plain RTP"),
        "weak_srtp": AlertSpec("UM-03", "medium", TRUST, "The SRTP crypto chosen disables encryption or authentication, or is weak"),
        "cleartext_sip": AlertSpec("UM-04", "medium", SG, "SIP signalling between two hosts is not encrypted (no TLS)"),
        "cleartext_on_public_path": AlertSpec("UM-06", "critical", PUBLIC, "Cleartext media or signalling crossed a public network"),
        "dtmf_in_clear": AlertSpec("UM-08", "high", EAVES, "DTMF digits (PINs, card numbers) were sent readable"),
    }

    def __init__(self, config: Config, site):
        super().__init__(config, site)
        if config.internal_media_severity not in SEVERITIES:
            raise ConfigError(f"[detectors.unencrypted_media] internal_media_severity: {config.internal_media_severity!r}"
                              f" is not one of {', '.join(SEVERITIES)}")
        self._allowed = []
        for pair in config.allow_cleartext_pairs:
            ends = pair.replace(",", " ").split()
            if len(ends) != 2:
                raise ConfigError(f"[detectors.unencrypted_media] allow_cleartext_pairs: {pair!r} is not 'A B'")
            self._allowed.append(tuple(_nets(ends, "allow_cleartext_pairs")))
        self._private = _nets(config.private_transport_peers, "private_transport_peers")
        try:
            self._sensitive = [re.compile(p) for p in config.sensitive_numbers]
        except re.error as exc:
            raise ConfigError(f"[detectors.unencrypted_media] sensitive_numbers: {exc}") from exc
        self._calls: BoundedMap[_CallState] = BoundedMap(config.max_calls, config.call_idle_s)
        if config.rollup not in ROLLUPS:
            raise ConfigError(f"[detectors.unencrypted_media] rollup: {config.rollup!r} is not one of {', '.join(ROLLUPS)}")
        self._pending: dict[tuple, _Group] = {}      # insertion order is due order (one window, one clock)
        self._rollups: dict[tuple, _Group] = {}      # the same, over rollup_window_s
        self._now = float("-inf")

    def idle_reasons(self) -> list[str]:
        reasons = ["UM-06 (cleartext_on_public_path) judges public addresses only: the site model has no per-site prefixes for inter-site WAN paths"]
        if not self._sensitive:
            reasons.append("UM-08 (dtmf_in_clear) critical escalation for voicemail/IVR PINs needs sensitive_numbers")
        return reasons

    def _public(self, ip: str | None) -> bool:
        return ip is not None and not self.site.is_internal(ip) and not _in(ip, self._private)

    def _allowed_pair(self, a: str, b: str) -> bool:
        return any((_in(a, [x]) and _in(b, [y])) or (_in(a, [y]) and _in(b, [x])) for x, y in self._allowed)

    # -- gathering: one clock (the latest capture time seen), groups reported when due ----------------
    def _tick(self, ts: float):
        self._now = max(self._now, ts)
        for pending in (self._pending, self._rollups):
            while pending:
                key, group = next(iter(pending.items()))
                if group.due > self._now and len(pending) <= self.config.max_pending:
                    break
                del pending[key]
                yield from getattr(self, f"_report_{key[0]}")(key[1], group)

    def _group(self, key: tuple, ts: float, src, dst, vlan, call_id=None, call=None) -> _Group:
        group = self._pending.get(key)
        if group is None:
            group = self._pending[key] = _Group(self._now + self.config.summary_window_s, ts, ts, src, dst, vlan,
                                                call_id, call)
        group.first_ts, group.last_ts = min(group.first_ts, ts), max(group.last_ts, ts)
        return group

    def _place(self, ip: str) -> str:
        """Where an end of cleartext traffic sits, for roll-ups: the same label for an address every time."""
        if self.config.rollup == "pair" or not self.site.is_internal(ip):
            return ip                            # a public peer, or one reached over a private transport
        role = next((r for r in ROLLUP_ROLES if self.site.has_role(ip, r)), None)
        if role:
            return f"{role} {ip}"
        zone = self.site.cidr_zone(ip)           # by CIDR: a frame's VLAN names the sender's zone only
        return f"zone {zone}" if zone else "internal hosts"

    def _rollup(self, kind: str, a: str, b: str, ts: float, vlan, severity: str, allowed: bool) -> _Group:
        """The roll-up group of cleartext `kind` between the places of a and b; records the host pair."""
        places = tuple(sorted((self._place(a), self._place(b))))
        key = (kind, places + (("allowed",) if allowed else ()))
        pending = self._pending if self._public(a) or self._public(b) else self._rollups
        group = pending.get(key)
        if group is None:                        # a public peer is a place of its own: reported without delay
            window = self.config.summary_window_s if pending is self._pending else self.config.rollup_window_s
            group = pending[key] = _Group(self._now + window, ts, ts, a, b, vlan)
        group.first_ts, group.last_ts = min(group.first_ts, ts), max(group.last_ts, ts)
        if SEVERITIES.index(severity) > SEVERITIES.index(group.severity):
            group.severity = severity
        pair = (b, a) if (b, a) in group.pairs else (a, b)   # in the direction first seen (address-family neutral)
        if pair in group.pairs or len(group.pairs) < self.config.max_calls:
            group.pairs[pair] += 1
        else:
            group.counts["pairs_over_cap"] += 1   # a contribution from a pair beyond the cap (not counted as a pair)
        return group

    def finish(self):
        for pending in (self._pending, self._rollups):   # per-call groups feed the roll-ups: first
            while pending:
                key = next(iter(pending))
                yield from getattr(self, f"_report_{key[0]}")(key[1], pending.pop(key))

    # -- SIP: UM-02, UM-03, UM-04, UM-08 (INFO) ------------------------------------------------------
    def on_sip_message(self, msg: SipMessage):
        pkt = msg.pkt
        yield from self._tick(pkt.ts)
        allowed = self._allowed_pair(pkt.src, pkt.dst)
        exposure = _step(severity_of("exposure"), (msg.method == "REGISTER") + (self._public(pkt.src) or self._public(pkt.dst)))
        group = self._rollup("sip", pkt.src, pkt.dst, pkt.ts, pkt.vlan, "info" if allowed else exposure, allowed)
        kind = msg.method if msg.is_request else "responses"
        group.counts[kind if kind in group.counts or len(group.counts) < self.config.max_listed else "other"] += 1
        group.notes.add(pkt.transport)
        if any(v.split(None, 1)[0].upper().endswith("/TLS") for v in msg.via if v.strip()):
            group.counts["via_tls"] += 1          # TLS used on other hops only (nsa-checks UM-04)
        if msg.method == "REGISTER" and msg.to_user and msg.to_user not in group.items \
                and len(group.items) < self.config.max_listed:
            group.items.append(msg.to_user)
        state = self._calls.get(msg.call_id) if msg.call_id else None
        if state is None and msg.call_id and (msg.sdp is not None or msg.method == "INVITE"):
            state = _CallState(msg.ruri_user, CallLegs(msg.call_id, max_exchanges=self.config.max_negotiations))
        if state is None:
            return
        self._calls.set(msg.call_id, state, pkt.ts)
        if msg.body_has_dtmf_relay:
            self._group(("dtmf", msg.call_id), pkt.ts, pkt.src, pkt.dst, pkt.vlan, msg.call_id, state).counts["info"] += 1
        role = state.legs.on_sip(msg)
        if msg.sdp is not None:
            yield from self._sdp(msg, state, role)

    def _sdp(self, msg: SipMessage, state: _CallState, role):
        sdp, pkt, cid = msg.sdp, msg.pkt, msg.call_id
        # What this SDP is on its leg (voipwatch.legs: RFC 3264 §4 offer/answer per hop).
        side = role.role if role is not None else "stray"
        keys = [c for m in sdp.media for c in m.crypto if c.key_sha256] + [c for c in sdp.crypto if c.key_sha256]
        if keys and state.first_key_ts is None:
            state.first_key_ts = pkt.ts
        known = {k.key_sha256 for _, k in state.keys}
        state.keys = (state.keys + [(side, k) for k in keys if k.key_sha256 not in known])[:self.config.max_listed]
        where = dict(ts=pkt.ts, identifier=cid, src=pkt.src, sport=pkt.sport, dst=pkt.dst, dport=pkt.dport,
                     vlan=pkt.vlan, call_id=cid)
        if keys:
            state.key_messages += 1
            exposed = [dict(_key(k), side=s) for s, k in state.keys]      # every key of the call so far
            yield self.alert(
                "sdes_key_in_cleartext_sip", **where, first_ts=state.first_key_ts or pkt.ts,
                totals={"sip_messages": state.key_messages},
                msg=(f"{state.key_messages} SIP message(s) of call {cid} carried {len(exposed)} SDES SRTP key(s) over "
                     f"SIP/{pkt.transport.upper()} without TLS (the latest: {msg.method or msg.status}): anyone on the "
                     f"path can decrypt the call's media; send SDES only over SIP/TLS or use DTLS-SRTP."),
                evidence={"call_id": cid, "sip_message": msg.method or msg.status, "sip_transport": pkt.transport,
                          "sdp_side": side, "sdes_keys": exposed,
                          "media_endpoints": [f"{m.connection or sdp.connection}:{m.port}" for m in sdp.media if m.port],
                          "from_user": msg.from_user, "to_user": msg.to_user, "first_ts": pkt.ts, "last_ts": pkt.ts})
        if side == "answer":
            yield from self._negotiation(role.exchange.offer.sdp, sdp, where)

    def _negotiation(self, offer: SdpSession, answer: SdpSession, where: dict):
        """UM-03 on one completed offer/answer; m= lines pair up by position (RFC 3264 §6)."""
        downgraded, weak = [], {}
        for i, media in enumerate(answer.media):
            if media.port == 0 or media.kind not in MEDIA_KINDS or media.direction == "inactive":
                continue                         # rejected or held lines carry no media (RFC 3264 §6, §8.4)
            offered = offer.media[i] if i < len(offer.media) else None
            if offered and (is_secure_profile(offered.proto) or offered.crypto or offer.crypto) \
                    and line_protection(answer, media) == "clear":
                downgraded.append(f"{media.kind} {offered.proto} -> {media.proto}")
            for crypto in media.crypto or answer.crypto:
                weak.update({f"{crypto.suite} {p}": WEAK_PARAMS[p] for p in crypto.session_params if p in WEAK_PARAMS})
                suite = crypto.suite.upper()
                if suite.startswith("NULL"):
                    weak[crypto.suite] = "high"     # RFC 3711 §4.1.3 NULL cipher: no confidentiality
                elif suite.endswith("_32"):
                    weak[crypto.suite] = "medium"   # RFC 3711 §9.5: a 32-bit tag is a weak integrity check
                elif self.config.require_aes256 and "256" not in suite:
                    weak[crypto.suite] = "low"
        span = {"call_id": where["call_id"], "first_ts": where["ts"], "last_ts": where["ts"]}
        if downgraded:
            yield self.alert("srtp_downgrade", **where, evidence={**span, "lines": downgraded},
                             msg=f"Call {where['call_id']}: the SRTP offer was answered with plain RTP on {len(downgraded)} "
                                 f"m= line(s) ({'; '.join(downgraded)}): the media will be cleartext.")
        if weak:
            yield self.alert("weak_srtp", **where, severity=max(weak.values(), key=SEVERITIES.index),
                             evidence={**span, "issues": sorted(weak)},
                             msg=f"Call {where['call_id']}: the chosen SRTP crypto weakens protection ({', '.join(sorted(weak))}).")

    # -- media: UM-01, UM-02 (streams), UM-08 (events) -----------------------------------------------
    def on_rtp_stream(self, stream: RtpStream):
        yield from self._tick(stream.last_ts)
        state = self._calls.get(stream.call_id) if stream.call_id else None
        verdict, basis = self._payload_verdict(stream)
        events = False
        exchanges = state is not None and state.legs.has_offer()
        if exchanges:
            state.streams += 1
            self._calls.set(stream.call_id, state, stream.last_ts)
            # Judge the stream by the exchange in force on its leg when it started (a later hold re-INVITE does
            # not count); early media follows the SDP of a non-reliable 18x until the answer comes.
            current = state.legs.media_exchange(stream.src, stream.sport, stream.dst, stream.dport, stream.first_ts)
            answer = current.answer or current.preview
            protection, event_pts = self._line_of(current.offer.sdp, answer.sdp if answer else None, stream)
            if protection == "clear":
                kind, events = ("inband" if verdict == "srtp" else "clear"), bool(event_pts & _pts(stream))
            elif protection == "sdes" and state.keys:
                kind = "decryptable"
            else:
                return
        elif verdict == "clear":
            kind = "clear"
        else:
            if self._events_only(stream):
                group = self._group(("dtmf", _flow(stream)), stream.first_ts, stream.src, stream.dst, stream.vlan)
                group.counts["event_packets"] += stream.packets
                group.counts["event_streams"] += 1
            return
        cid = stream.call_id if exchanges else None
        group = self._group(("media", cid or _flow(stream)), stream.first_ts, stream.src, stream.dst, stream.vlan, cid, state)
        group.last_ts = max(group.last_ts, stream.last_ts)
        group.items.append((kind, verdict, basis, stream, events))

    def _payload_verdict(self, s: RtpStream) -> tuple[str, dict]:
        """clear | srtp | unknown from the mean payload length, then entropy; waveform codecs only."""
        c = self.config
        if s.packets < c.min_packets or s.bytes / s.packets < c.min_payload_b:
            return "unknown", {}
        basis = {"mean_payload_b": round(s.bytes / s.packets, 2)}
        if _pts(s) <= WAVEFORM_PTS:
            rest = (s.bytes / s.packets) % FRAME_UNIT_B
            if min(rest, FRAME_UNIT_B - rest) <= c.length_tolerance_b:
                return "clear", {**basis, "basis": "payload_length"}
            trailer = next((t for t in SRTP_TRAILERS_B if abs(rest - t) <= c.length_tolerance_b), None)
            if trailer is not None:
                return "srtp", {**basis, "basis": "payload_length", "srtp_trailer_b": trailer}
        elif (s.codec or "").upper() not in WAVEFORM_CODECS:
            return "unknown", {}
        if s.payload_entropy is not None:
            basis.update(basis="entropy", entropy=round(s.payload_entropy, 3))
            if s.payload_entropy < c.clear_entropy_max:
                return "clear", basis
            if s.payload_entropy > c.srtp_entropy_min:
                return "srtp", basis
        return "unknown", {}

    def _events_only(self, s: RtpStream) -> bool:
        """A dynamic-PT stream of bare 4-byte payloads: RFC 4733 events in the clear (SRTP would add a tag)."""
        return (len(_pts(s)) == 1 and s.payload_type in DYNAMIC_PTS and s.packets >= self.config.dtmf_min_packets
                and s.bytes == EVENT_PAYLOAD_B * s.packets)

    @staticmethod
    def _line_of(offer: SdpSession, answer: SdpSession | None, s: RtpStream) -> tuple[str, set[int]]:
        """Protection of the negotiated m= line the stream belongs to (by SDP address:port), its event PTs."""
        chosen = answer or offer
        matches = [i for sdp in (offer, answer) if sdp for i, m in enumerate(sdp.media)
                   if m.port in (s.sport, s.dport) and (m.connection or sdp.connection) in (s.src, s.dst)]
        lines = [i for i, m in enumerate(chosen.media) if m.kind in MEDIA_KINDS and m.port]
        index = matches[0] if matches and matches[0] < len(chosen.media) else (lines[0] if lines else None)
        if index is None:
            return "none", set()
        events = {pt for sdp in (offer, answer) if sdp and index < len(sdp.media)
                  for pt, name, _ in sdp.media[index].rtpmap if name.lower() == "telephone-event"}
        return line_protection(chosen, chosen.media[index]), events

    def on_call(self, call: Call):
        """An answered call whose SDP negotiated cleartext media, but no stream of it was captured."""
        yield from self._tick(call.last_ts)
        state = self._calls.pop(call.call_id)
        if state is None or state.streams or call.setup_s is None:
            return
        lines, ends = [], set()
        for x in state.legs.exchanges():
            offer, answer = (x.offer.sdp if x.offer else None), (x.answer.sdp if x.answer else None)
            clear = [m for m in (answer.media if answer else ()) if m.kind in MEDIA_KINDS and m.port
                     and m.direction != "inactive" and line_protection(answer, m) == "clear"]
            lines += [m for m in clear if m not in lines]
            ends |= {m.connection or sdp.connection for sdp in (offer, answer) if clear and sdp for m in sdp.media}
        if not lines:
            return
        public = sorted(a for a in ends if a and self._public(a))
        allowed = self._allowed_pair(call.src, call.dst)
        severity = "info" if allowed else _step("critical" if public else self.config.internal_media_severity, -1)
        group = self._rollup("rtp", call.src, call.dst, call.first_ts, call.vlan, severity, allowed)
        group.last_ts = max(group.last_ts, call.last_ts)
        group.counts["sdp_only_calls"] += 1
        self._count_call(group, call.call_id)

    # -- reports ------------------------------------------------------------------------------------------
    def _report_sip(self, places: tuple, g: _Group):
        a, b = places[:2]
        methods = {k: v for k, v in sorted(g.counts.items()) if k not in ("via_tls", "pairs_over_cap")}
        n, register = sum(methods.values()), bool(g.counts["REGISTER"])
        public = sorted({ip for pair in g.pairs for ip in pair if self._public(ip)})
        where = f"within {a}" if a == b else f"between {a} and {b}"
        yield self.alert(
            "cleartext_sip", ts=g.last_ts, first_ts=g.first_ts, identifier=self._rollup_id(places), src=g.src,
            dst=g.dst, vlan=g.vlan, severity=g.severity, totals={"messages": n},
            msg=(f"{n} SIP message(s) {where} ({self._n_pairs(g)} host pair(s)) were sent in cleartext over "
                 f"{'/'.join(sorted(g.notes)).upper()} ({', '.join(f'{k} x{v}' for k, v in methods.items())})"
                 f"{'; REGISTER exposes digest credentials' if register else ''}; use SIP over TLS."),
            evidence={"places": list(places[:2]), "messages": n, "methods": methods, "transports": sorted(g.notes),
                      **self._pairs_evidence(g), "register_users": g.items, "via_tls_messages": g.counts["via_tls"],
                      "public_ends": public, "allowed_pair": "allowed" in places, "first_ts": g.first_ts, "last_ts": g.last_ts})
        if "allowed" not in places:
            for (x, y), count in g.pairs.items():
                if self._public(x) or self._public(y):
                    self._contribute_public(x, y, g.first_ts, g.last_ts, g.vlan, None, "sip", count)

    @staticmethod
    def _rollup_id(places: tuple) -> str:
        return " <-> ".join(places[:2]) + ("|allowed" if "allowed" in places else "")

    @staticmethod
    def _n_pairs(g: _Group) -> str:
        """The number of host pairs, with '+' when more were seen than max_calls."""
        return f"{len(g.pairs)}{'+' if g.counts['pairs_over_cap'] else ''}"

    def _pairs_evidence(self, g: _Group) -> dict:
        """Host pairs of a roll-up: their total and the busiest max_listed with their counts."""
        top = sorted(g.pairs.items(), key=lambda kv: -kv[1])[:self.config.max_listed]   # ties: first seen first
        return {"host_pairs": len(g.pairs), "host_pairs_capped": bool(g.counts["pairs_over_cap"]),
                "top_host_pairs": [{"hosts": list(pair), "count": n} for pair, n in top]}

    def _report_rtp(self, places: tuple, g: _Group):
        """UM-01 roll-up: cleartext RTP between two places, with its calls and host pairs."""
        a, b = places[:2]
        calls, flows, streams = g.counts["calls"], g.counts["flows"], g.counts["streams"]
        public = sorted({ip for pair in g.pairs for ip in pair if self._public(ip)})
        where = f"within {a}" if a == b else f"between {a} and {b}"
        seen = [f"{calls} call(s)"] * bool(calls) + [f"{flows} flow(s) without signalling"] * bool(flows)
        sdp_only = g.counts["sdp_only_calls"]
        yield self.alert(
            "cleartext_rtp", ts=g.last_ts, first_ts=g.first_ts, identifier=self._rollup_id(places), src=g.src,
            dst=g.dst, vlan=g.vlan, severity=g.severity,
            totals={"calls": calls, "flows": flows, "streams": streams, "packets": g.counts["packets"]},
            msg=(f"Cleartext RTP {where}: {' and '.join(seen)} over {self._n_pairs(g)} host pair(s), {streams} stream(s) "
                 f"and {g.counts['packets']} packets seen ({', '.join(sorted(g.notes)) or 'SDP only'})"
                 f"{f', {sdp_only} call(s) known from SDP only' if sdp_only else ''}"
                 f"{'; public end ' + ', '.join(public[:3]) if public else ''}: anyone on the path can listen. "
                 f"Use SRTP with keys over TLS, or DTLS-SRTP."),
            evidence={"places": list(places[:2]), "calls": calls, "call_ids": g.items, "flows": flows, "streams": streams,
                      "packets": g.counts["packets"], "sdp_only_calls": sdp_only, "codecs": sorted(g.notes),
                      "basis": {k.split(" ", 1)[1]: v for k, v in sorted(g.counts.items()) if k.startswith("basis ")},
                      **self._pairs_evidence(g), "public_ends": public, "allowed_pair": "allowed" in places,
                      "first_ts": g.first_ts, "last_ts": g.last_ts})

    def _report_media(self, key: str, g: _Group):
        inband = [item for item in g.items if item[0] == "inband"]
        decryptable = [item for item in g.items if item[0] == "decryptable"]
        # With ZRTP-looking streams in the call, only streams whose payloads show cleartext count.
        clear = [item for item in g.items if item[0] == "clear" and (not inband or item[1] == "clear")]
        what = f"call {g.call_id}" if g.call_id else f"flow {key} (no signalling seen)"
        if inband:
            yield self._media_alert("zrtp_suspected", key, g, inband, "info",
                                    f"SDP of {what} offered plain RTP/AVP but {len(inband)} stream(s) carry SRTP-sized "
                                    f"payloads: media keyed on the path, most likely ZRTP (RFC 6189); check SAS use.")
        if decryptable:
            keys = [dict(_key(k), side=side) for side, k in g.call.keys]
            yield self._media_alert("sdes_media_decryptable", key, g, decryptable, "high",
                                    f"{len(decryptable)} SRTP stream(s) of {what} ({sum(i[3].packets for i in decryptable)} "
                                    f"packets) can be decrypted with the {len(keys)} SDES key(s) sent in cleartext SIP.",
                                    sdes_keys=keys)
        if not clear:
            return
        basis = "sdp" if g.call_id else clear[0][2]["basis"]
        groups = set()
        for item in clear:
            s = item[3]
            allowed, public = self._allowed_pair(s.src, s.dst), self._public(s.src) or self._public(s.dst)
            severity = "info" if allowed else "critical" if public else self.config.internal_media_severity
            group = self._rollup("rtp", s.src, s.dst, g.first_ts, s.vlan, severity, allowed)
            group.last_ts = max(group.last_ts, g.last_ts)
            group.counts["streams"] += 1
            group.counts["packets"] += s.packets
            group.counts[f"basis {basis}"] += 1
            if len(group.notes) < self.config.max_listed:
                group.notes.add((s.codec or str(s.payload_type)).upper())
            if id(group) not in groups:
                groups.add(id(group))
                self._count_call(group, g.call_id)
            if public and not allowed:
                self._contribute_public(s.src, s.dst, g.first_ts, g.last_ts, g.vlan, g.call_id, "rtp", 1)
        if any(item[4] for item in clear):
            self._group(("dtmf", key), g.first_ts, g.src, g.dst, g.vlan, g.call_id, g.call).counts["event_streams"] += \
                sum(item[4] for item in clear)

    def _count_call(self, group: _Group, call_id: str | None) -> None:
        """A roll-up's calls: a total and the first max_listed Call-IDs (streams without SIP count as flows)."""
        group.counts["calls" if call_id else "flows"] += 1
        if call_id and len(group.items) < self.config.max_listed:
            group.items.append(call_id)

    def _media_alert(self, name: str, key: str, g: _Group, items: list, severity: str, msg: str, **extra):
        streams = [{"ssrc": f"0x{s.ssrc:08x}", "flow": f"{s.src}:{s.sport}>{s.dst}:{s.dport}", "codec": s.codec,
                    "payload_types": sorted(_pts(s)), "packets": s.packets, "payload_verdict": verdict, **basis}
                   for _, verdict, basis, s, _ in items[:self.config.max_listed]]
        first = items[0][3]
        return self.alert(name, ts=g.last_ts, identifier=key, src=first.src, sport=first.sport, dst=first.dst,
                          dport=first.dport, vlan=first.vlan, call_id=g.call_id, severity=severity, msg=msg,
                          first_ts=g.first_ts, totals={"n_streams": len(items), "packets": sum(i[3].packets for i in items)},
                          evidence={"call_id": g.call_id, "n_streams": len(items), "packets": sum(i[3].packets for i in items),
                                    "streams": streams, **extra, "first_ts": g.first_ts, "last_ts": g.last_ts})

    def _report_dtmf(self, key: str, g: _Group):
        number = g.call.ruri_user if g.call else None
        sensitive = bool(number) and any(p.search(number) for p in self._sensitive)
        info, streams = g.counts["info"], g.counts["event_streams"]
        parts = [f"{info} SIP INFO dtmf-relay message(s)"] * bool(info) + \
                [f"{streams} cleartext RTP stream(s) with RFC 4733 telephone-events"] * bool(streams)
        yield self.alert(
            "dtmf_in_clear", ts=g.last_ts, identifier=key, src=g.src, dst=g.dst, vlan=g.vlan, call_id=g.call_id,
            first_ts=g.first_ts,
            severity="critical" if sensitive else "high",
            msg=(f"DTMF digits were readable in {' and '.join(parts)} of {'call' if g.call_id else 'flow'} {key}"
                 f"{', dialled ' + number if number else ''}{' (a PIN destination)' if sensitive else ''}; "
                 f"carry DTMF only inside SRTP and SIP/TLS."),
            evidence={"call_id": g.call_id, "info_messages": info, "event_streams": streams,
                      "event_packets": g.counts["event_packets"], "dialled": number, "sensitive_number": sensitive,
                      "first_ts": g.first_ts, "last_ts": g.last_ts})

    def _contribute_public(self, a: str, b: str, first_ts: float, last_ts: float, vlan, call_id: str | None,
                           kind: str, n: int) -> None:
        for peer, other in ((a, b), (b, a)):
            if self._public(peer):
                group = self._group(("public", peer), first_ts, other, peer, vlan)
                group.last_ts = max(group.last_ts, last_ts)
                group.counts[kind] += n
                if len(group.notes) < self.config.max_listed:
                    group.notes.add(other)
                if call_id and call_id not in group.items and len(group.items) < self.config.max_listed:
                    group.items.append(call_id)

    def _report_public(self, peer: str, g: _Group):
        media, sip = g.counts["rtp"], g.counts["sip"]
        what = " and ".join([f"media ({media} RTP streams)"] * bool(media) + [f"signalling ({sip} SIP messages)"] * bool(sip))
        yield self.alert(
            "cleartext_on_public_path", ts=g.last_ts, identifier=peer, src=g.src, dst=peer, vlan=g.vlan,
            first_ts=g.first_ts, totals={"rtp_streams": media, "sip_messages": sip}, actors=(f"ip:{peer}",),
            severity="critical" if media else "high",
            msg=(f"Public peer {peer} exchanged cleartext {what} with {len(g.notes)}"
                 f"{'+' if len(g.notes) >= self.config.max_listed else ''} host(s): "
                 f"use an encrypted trunk (SIP/TLS + SRTP, or IPsec)."),
            evidence={"peer": peer, "rtp_streams": media, "sip_messages": sip, "hosts": sorted(g.notes),
                      "call_ids": g.items, "first_ts": g.first_ts, "last_ts": g.last_ts})
