"""Investigating one call: find it and judge its media protection.

The library behind `voipwatch call`. It starts from an analysis (voipwatch.analyze) and selects calls
by Call-ID, number or address; voipwatch.call.packets then reads the captures once more for each
call's own packets.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from dissectors.sdp import active_rtp_lines, is_secure_profile, line_protection, session_protection
from voipwatch.analyze import AnalysisResult
from voipwatch.records import Alert, Call, RtpStream, SdpSession, SipMessage

MIN_NUMBER_DIGITS = 3     # shorter --number values would match almost anything


@dataclass
class CallView:
    """Everything known about one call."""
    call: Call
    messages: list[SipMessage]
    streams: list[RtpStream]
    alerts: list[Alert]
    offer: SdpSession | None = None
    answer: SdpSession | None = None
    offered: set[tuple[str, int]] = field(default_factory=set)    # SDP media + RTCP endpoints


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
    """Calls matching a Call-ID, a number (caller, callee, R-URI, PAI, Diversion) or an address
    (signalling or media), in order of their first message."""
    messages: dict[str, list[SipMessage]] = {}
    for msg in result.records["sip_messages"]:
        if msg.call_id is not None:
            messages.setdefault(msg.call_id, []).append(msg)
    streams: dict[str, list[RtpStream]] = {}
    for stream in result.records["rtp_streams"]:
        if stream.call_id is not None:
            streams.setdefault(stream.call_id, []).append(stream)
    wanted_digits = _digits(number)
    if number is not None and len(wanted_digits) < MIN_NUMBER_DIGITS:
        raise ValueError(f"--number needs at least {MIN_NUMBER_DIGITS} digits")
    views = []
    for call in sorted(result.records["calls"], key=lambda c: (c.first_ts, c.first_frame)):
        msgs = sorted(messages.get(call.call_id, []), key=lambda m: (m.pkt.ts, m.pkt.frame))
        media = streams.get(call.call_id, [])
        if call_id is not None and call.call_id != call_id:
            continue
        if number is not None and not any(_digits(u).endswith(wanted_digits) or wanted_digits.endswith(_digits(u))
                                          for m in msgs for u in _users(m) if len(_digits(u)) >= MIN_NUMBER_DIGITS):
            continue
        if ip is not None and not any(ip in (m.pkt.src, m.pkt.dst) for m in msgs) \
                and not any(ip in (s.src, s.dst) for s in media):
            continue
        view = CallView(call, msgs, sorted(media, key=lambda s: s.first_frame),
                        [a for a in result.alerts if a.call_id == call.call_id   # or a roll-up listing the call
                         or call.call_id in (a.evidence.get("call_ids") or ())])
        view.offer, view.answer = offer_answer(msgs)
        view.offered = offered_endpoints(msgs)
        views.append(view)
    return views


def offer_answer(messages: list[SipMessage]) -> tuple[SdpSession | None, SdpSession | None]:
    """RFC 3264 §4: the first SDP of the INVITE transaction is the offer, the first from the other side the answer."""
    offer = answer = None
    offer_src = None
    for msg in messages:
        if msg.sdp is None or msg.cseq_method not in ("INVITE", "ACK", "PRACK", "UPDATE"):
            continue
        if offer is None:
            offer, offer_src = msg.sdp, msg.pkt.src
        elif answer is None and msg.pkt.src != offer_src:
            answer = msg.sdp
            break
    return offer, answer


def offered_endpoints(messages: list[SipMessage]) -> set[tuple[str, int]]:
    """Every media address:port (and its RTCP port, RFC 3550 §11 / RFC 3605) any SDP of the call offered."""
    endpoints = set()
    for msg in messages:
        if msg.sdp is None:
            continue
        for media in msg.sdp.media:
            addr = media.connection or msg.sdp.connection
            if addr and media.port:
                endpoints.add((addr, media.port))
                endpoints.add((addr, media.rtcp_port or media.port + 1))
    return endpoints


@dataclass(frozen=True)
class Verdict:
    protection: str          # none | SDES over cleartext SIP | SDES over TLS | DTLS-SRTP | ZRTP | unknown
    readable: bool | None    # could anyone on the path listen to the media?
    reason: str


def protection_verdict(view: CallView) -> Verdict:
    """The call's media protection (dissectors.sdp.session_protection of its answer, else its offer),
    and whether anyone on the path could listen to it."""
    sdp = view.answer or view.offer
    if sdp is None:
        return Verdict("unknown", None, "no SDP was seen for this call, so its media protection is unknown")
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
