"""Investigating one call: find it and judge its media protection.

The library behind `voipwatch call`. It starts from an analysis (voipwatch.analyze) and selects calls
and other dialogs by Call-ID, number prefix or address (and flows by address), with the legs and
offer/answer exchanges of voipwatch.legs; voipwatch.call.packets then reads the captures once more for each
call's own packets.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from dataclasses import dataclass, field

from dissectors.sdp import active_rtp_lines, is_secure_profile, line_protection, session_protection
from voipwatch.analyze import AnalysisResult
from voipwatch.legs import Leg, Link, call_groups, legs_of
from voipwatch.records import Alert, Call, FlowSeen, RtpStream, SdpSession, SipMessage

MIN_NUMBER_DIGITS = 3     # shorter --number values would match almost anything


@dataclass
class CallView:
    """Everything known about one call, or one dialog that is not a call (REGISTER, OPTIONS, ...).

    A call through a proxy keeps its Call-ID on every hop: its legs are the hops (voipwatch.legs). A
    call through a B2BUA has a Call-ID per side: they are joined here (call_ids, links), the first one
    by time naming the view."""
    call: Call | None                    # the INVITE dialog's record (first Call-ID's); None for other dialogs
    messages: list[SipMessage]
    streams: list[RtpStream]
    alerts: list[Alert]
    call_ids: list[str] = field(default_factory=list)
    legs: list[Leg] = field(default_factory=list)          # every leg of every Call-ID, in order of first frame
    links: list[Link] = field(default_factory=list)        # why the Call-IDs are one call
    offer: SdpSession | None = None      # the first leg's first offer and its answer (None until answered)
    answer: SdpSession | None = None
    offered: set[tuple[str, int]] = field(default_factory=set)    # SDP media + RTCP endpoints, any leg
    dropped_legs: int = 0                # messages on legs beyond voipwatch.legs.MAX_LEGS per Call-ID

    @property
    def call_id(self) -> str:
        return self.call_ids[0]

    @property
    def first_ts(self) -> float:
        return self.messages[0].pkt.ts if self.messages else self.call.first_ts

    @property
    def last_ts(self) -> float:
        ends = [m.pkt.ts for m in self.messages[-1:]] + [s.last_ts for s in self.streams]
        return max(ends + ([self.call.last_ts] if self.call else []))

    def line(self) -> Match:
        """The view as one line of `--list`."""
        if self.call is not None:
            c = self.call
            return Match(c.first_ts, c.call_id, "INVITE", c.caller, c.callee, f"{c.src} -> {c.dst}",
                         f"{c.state} {c.final_status or ''}".strip())
        first = next((m for m in self.messages if m.is_request), self.messages[0])
        finals = [m for m in self.messages if not m.is_request and (m.status or 0) >= 200]
        state = f"{finals[-1].status} {finals[-1].reason or ''}".strip() if finals else "no final response"
        return Match(first.pkt.ts, self.call_id, first.method or first.cseq_method or "?", first.from_user,
                     first.to_user, f"{first.pkt.src} -> {first.pkt.dst}", state)


@dataclass(frozen=True)
class Match:
    """One line of `voipwatch call --list`: a dialog (call_id set) or a flow outside any dialog."""
    ts: float
    call_id: str | None
    method: str                          # request method; for a flow, what it carried (udp.other, rtp, ...)
    from_user: str | None
    to_user: str | None
    path: str                            # "src -> dst"
    state: str

    def text(self) -> str:
        when = datetime.fromtimestamp(self.ts, tz=timezone.utc).isoformat(timespec="milliseconds")
        return (f"{when}  {self.call_id or '-'}  {self.method}  {self.from_user or '-'} -> {self.to_user or '-'}"
                f"  {self.path}  {self.state}")


def _digits(text: str | None) -> str:
    return re.sub(r"\D", "", text or "")


def _users(msg: SipMessage) -> list[str]:
    users = [msg.from_user, msg.to_user, msg.ruri_user]
    for uri in msg.pai + msg.diversion:
        m = re.search(r"(?:sips?:|tel:)\+?([^@;>]+)", uri)
        if m:
            users.append(m.group(1))
    return [u for u in users if u]


def select_calls(result: AnalysisResult, call_id: str | None = None, number: str | None = None,
                 ip: str | None = None) -> list[CallView]:
    """Calls and other dialogs matching a Call-ID, a number prefix (caller, callee, R-URI, PAI, Diversion)
    or an address (signalling or media), in order of their first message. The Call-IDs of a B2BUA call
    are one view."""
    wanted_digits = _digits(number)
    if number is not None and len(wanted_digits) < MIN_NUMBER_DIGITS:
        raise ValueError(f"--number needs at least {MIN_NUMBER_DIGITS} digits")
    messages: dict[str, list[SipMessage]] = {}
    for msg in result.records["sip_messages"]:
        if msg.call_id is not None:
            messages.setdefault(msg.call_id, []).append(msg)
    streams: dict[str, list[RtpStream]] = {}
    for stream in result.records["rtp_streams"]:
        if stream.call_id is not None:
            streams.setdefault(stream.call_id, []).append(stream)
    calls = {c.call_id: c for c in result.records["calls"]}
    groups, links = call_groups(list(calls.values()), result.records["sip_messages"])

    def matches(cid: str) -> bool:
        msgs = messages.get(cid, [])
        if call_id is not None and cid != call_id:
            return False
        if number is not None and not any(_digits(u).startswith(wanted_digits) for m in msgs for u in _users(m)):
            return False
        if ip is not None and not any(ip in (m.pkt.src, m.pkt.dst) for m in msgs) \
                and not any(ip in (s.src, s.dst) for s in streams.get(cid, ())):
            return False
        return True

    views, shown = [], set()
    for cid in sorted(set(messages) | set(calls), key=lambda c: _first(messages.get(c), calls.get(c))):
        group = groups.get(cid, [cid])
        if group[0] in shown or not any(matches(c) for c in group):
            continue
        shown.add(group[0])
        msgs = sorted((m for c in group for m in messages.get(c, ())), key=lambda m: (m.pkt.ts, m.pkt.frame))
        view = CallView(calls.get(group[0]), msgs,
                        sorted((s for c in group for s in streams.get(c, ())), key=lambda s: s.first_frame),
                        [a for a in result.alerts if a.call_id in group   # or a roll-up listing the call
                         or any(c in (a.evidence.get("call_ids") or ()) for c in group)],
                        call_ids=list(group), links=links.get(group[0], []))
        per_call = legs_of(msgs)
        view.legs = sorted((leg for legs in per_call.values() for leg in legs.legs.values()),
                           key=lambda leg: leg.first_frame)
        view.dropped_legs = sum(legs.dropped_legs for legs in per_call.values())
        view.offer, view.answer = first_offer_answer(view.legs)
        view.offered = offered_endpoints(msgs)
        views.append(view)
    return views


def _first(msgs: list[SipMessage] | None, call: Call | None) -> tuple[float, int]:
    if msgs:
        first = min(msgs, key=lambda m: (m.pkt.ts, m.pkt.frame))
        return first.pkt.ts, first.pkt.frame
    return call.first_ts, call.first_frame


def select_flows(result: AnalysisResult, ip: str) -> list[Match]:
    """Flows to or from `ip` outside any dialog: first packets of UDP/TCP flows that carried no SIP
    (scans, probes), and RTP streams no call's SDP announced."""
    replied = {(f.pkt.dst, f.pkt.dport, f.pkt.src, f.pkt.sport, f.pkt.transport)
               for f in result.records[FlowSeen] if f.reply}
    out = [Match(f.pkt.ts, None, f.app, None, None, f"{f.pkt.src}:{f.pkt.sport} -> {f.pkt.dst}:{f.pkt.dport}",
                 "replied" if (f.pkt.src, f.pkt.sport, f.pkt.dst, f.pkt.dport, f.pkt.transport) in replied
                 else "no reply seen")
           for f in result.records[FlowSeen]
           if not f.reply and f.app != "sip" and ip in (f.pkt.src, f.pkt.dst)]
    out += [Match(s.first_ts, None, "rtp", None, None, f"{s.src}:{s.sport} -> {s.dst}:{s.dport}",
                  f"{s.packets} packets, no SDP")
            for s in result.records["rtp_streams"] if s.call_id is None and ip in (s.src, s.dst)]
    return sorted(out, key=lambda m: m.ts)


def first_offer_answer(legs: list[Leg]) -> tuple[SdpSession | None, SdpSession | None]:
    """The call's initial media as the caller negotiated it: the first offer on the first leg that has one,
    and its answer (RFC 3264 §4; per leg, voipwatch.legs)."""
    for leg in legs:
        exchange = leg.first_complete() or next((x for x in leg.exchanges if x.offer), None)
        if exchange is not None:
            return exchange.offer.sdp, exchange.answer.sdp if exchange.answer else None
    return None, None


def stream_leg(view: CallView, stream: RtpStream) -> int | None:
    """The number (1-based, view.legs order) of the first leg on which one offer/answer exchange announced
    both ends of the stream (its media or RTCP ports), or None."""
    for n, leg in enumerate(view.legs, 1):
        for x in leg.exchanges:
            announced = _endpoints(seen.sdp for seen in (x.offer, x.answer, x.preview) if seen is not None)
            if (stream.src, stream.sport) in announced and (stream.dst, stream.dport) in announced:
                return n
    return None


def _endpoints(sdps) -> set[tuple[str, int]]:
    endpoints = set()
    for sdp in sdps:
        for media in sdp.media:
            addr = media.connection or sdp.connection
            if addr and media.port:
                endpoints.add((addr, media.port))
                endpoints.add((addr, media.rtcp_port or media.port + 1))
    return endpoints


def offered_endpoints(messages: list[SipMessage]) -> set[tuple[str, int]]:
    """Every media address:port (and its RTCP port, RFC 3550 §11 / RFC 3605) any SDP of the call offered."""
    return _endpoints(msg.sdp for msg in messages if msg.sdp is not None)


@dataclass(frozen=True)
class Verdict:
    protection: str          # none | SDES over cleartext SIP | SDES over TLS | DTLS-SRTP | ZRTP | unknown
    readable: bool | None    # could anyone on the path listen to the media?
    reason: str


def protection_verdict(view: CallView) -> Verdict:
    """The call's media protection (dissectors.sdp.session_protection of its first leg's answer, else its offer),
    and whether anyone on the path could listen to it."""
    sdp = view.answer or view.offer
    if sdp is None:
        return Verdict("unknown", None, "no SDP was seen in this call or dialog, so its media protection is unknown")
    media = active_rtp_lines(sdp)
    if not media:
        return Verdict("unknown", None, "the SDP offers no active RTP media (none, or only port 0: RFC 3264 §6)")
    protection = session_protection(sdp)
    if protection == "zrtp":
        return Verdict("ZRTP", False, "ZRTP (RFC 6189) keys the media end to end; nothing on the path can decrypt it")
    if protection == "none":
        if any(a.name == "unencrypted_media.zrtp_suspected" for a in view.alerts):
            return Verdict("ZRTP (inferred)", False,
                           "the SDP offered plain RTP/AVP, but every payload carries an SRTP authentication tag "
                           "(frame + 4/10 bytes, RFC 3711 §4.2): the keys were negotiated on the media path, "
                           "most likely by ZRTP (RFC 6189), so the path sees ciphertext")
        protos = ", ".join(sorted({m.proto for m in media if not is_secure_profile(m.proto)}))
        return Verdict("none", True, f"media readable by anyone on the path: the SDP negotiated {protos}, "
                                     "plain RTP with no encryption (RFC 3550)")
    if protection == "sdes":
        cleartext = [m for m in view.messages if m.sdp is not None and any(x.crypto for x in m.sdp.media)]
        if cleartext:
            transports = sorted({m.pkt.transport.upper() for m in cleartext})
            return Verdict("SDES over cleartext SIP", True,
                           f"media readable by anyone on the path: the SRTP keys (RFC 4568 a=crypto) travelled in "
                           f"SIP over {'/'.join(transports)} without TLS, so whoever captured the SIP can decrypt it")
        return Verdict("SDES over TLS", False, "SRTP keyed by SDES inside TLS-protected signalling")
    if protection == "dtls":
        return Verdict("DTLS-SRTP", False, "DTLS-SRTP (RFC 5763/5764) derives the keys in a DTLS handshake "
                                           "between the endpoints; the path sees only ciphertext")
    kinds = sorted({line_protection(sdp, m) for m in media})
    if kinds == ["srtp"]:
        return Verdict("unknown", None, "secure RTP profile without a visible key exchange")
    return Verdict("unknown", None, f"the m= lines are protected in different ways ({', '.join(kinds)})")
