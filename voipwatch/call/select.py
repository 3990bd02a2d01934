"""Investigating one call: find it, judge its media protection, and gather its evidence.

The library behind `voipwatch call`. It starts from an analysis (voipwatch.analyze), selects calls
by Call-ID, number or address, then reads the captures once more to collect the call's own packets
(every SIP message, RTP and RTCP packet, in original order and link layer) and its media payloads.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from dissectors import rtp
from dissectors.sdp import active_rtp_lines, is_secure_profile, line_protection, session_protection
from dissectors.net import Datagram, NetworkDecoder
from voipwatch.analyze import AnalysisResult
from voipwatch.capture import read_captures
from voipwatch.records import Alert, Call, Frame, RtpStream, SdpSession, SipMessage

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
                        [a for a in result.alerts if a.call_id == call.call_id])
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


@dataclass
class MediaPackets:
    """The RTP packets of one stream, as read back from the capture."""
    stream: RtpStream
    packets: list[tuple[float, int, int, bytes]] = field(default_factory=list)   # (ts, seq, rtp_ts, payload)


def collect(paths: list[str], views: list[CallView]) -> tuple[dict[str, list[Frame]], dict[tuple, MediaPackets]]:
    """Read the captures again: each call's frames (SIP, RTP, RTCP) and each stream's payloads."""
    sip_frames = {m.pkt.frame: v.call.call_id for v in views for m in v.messages}
    sip_flows: dict[tuple, tuple[str, float, float]] = {}
    for v in views:
        for m in v.messages:
            if m.pkt.transport == "tcp":
                key = (m.pkt.vlan, m.pkt.src, m.pkt.sport, m.pkt.dst, m.pkt.dport)
                sip_flows[key] = (v.call.call_id, v.call.first_ts - 1.0, v.call.last_ts + 1.0)
    media: dict[tuple, MediaPackets] = {}
    rtcp_ends: dict[tuple[str, int], tuple[str, float, float]] = {}
    for v in views:
        for s in v.streams:
            media[(s.vlan, s.src, s.sport, s.dst, s.dport, s.ssrc)] = MediaPackets(s)
            window = (v.call.call_id, s.first_ts - 1.0, s.last_ts + 10.0)
            rtcp_ends[(s.src, s.sport + 1)] = window
            rtcp_ends[(s.dst, s.dport + 1)] = window
        for addr, port in v.offered:
            rtcp_ends.setdefault((addr, port), (v.call.call_id, v.call.first_ts, v.call.last_ts + 10.0))
    frames: dict[str, list[Frame]] = {v.call.call_id: [] for v in views}
    decoder = NetworkDecoder()
    for item in read_captures(paths):
        if type(item) is not Frame:
            continue
        if item.frame in sip_frames:
            frames[sip_frames[item.frame]].append(item)
            continue
        dgram = decoder.decode(item)
        if type(dgram) is not Datagram:
            continue
        meta = dgram.meta
        if meta.transport == "tcp":
            hit = sip_flows.get((meta.vlan, meta.src, meta.sport, meta.dst, meta.dport)) or \
                sip_flows.get((meta.vlan, meta.dst, meta.dport, meta.src, meta.sport))
            if hit and hit[1] <= meta.ts <= hit[2]:
                frames[hit[0]].append(item)
            continue
        payload = dgram.payload
        if rtp.is_rtcp_payload(payload):
            hit = rtcp_ends.get((meta.dst, meta.dport)) or rtcp_ends.get((meta.src, meta.sport))
            if hit and hit[1] <= meta.ts <= hit[2]:
                frames[hit[0]].append(item)
            continue
        pkt = rtp.parse_rtp(meta, payload, True)
        if pkt is None:
            continue
        found = media.get((meta.vlan, meta.src, meta.sport, meta.dst, meta.dport, pkt.ssrc))
        if found and found.stream.first_ts <= meta.ts <= found.stream.last_ts:
            header = len(payload) - pkt.payload_len - (payload[-1] if payload[0] & 0x20 and payload else 0)
            found.packets.append((meta.ts, pkt.seq, pkt.rtp_ts, payload[header:header + pkt.payload_len]))
            frames[found.stream.call_id].append(item)
    for call_frames in frames.values():
        call_frames.sort(key=lambda f: f.frame)
    return frames, media
