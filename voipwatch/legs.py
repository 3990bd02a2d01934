"""SDP offer/answer per leg of a call, and which Call-IDs are legs of one call.

A leg is one hop between two signalling addresses for one Call-ID: a proxy forwards a call with the
same Call-ID, so a proxied call shows two legs (caller -> proxy, proxy -> callee), each with its own
offer and answer; a B2BUA starts a new dialog with a new Call-ID for its outgoing leg.

Offer/answer on a leg (RFC 3264 §4, RFC 3261 §13.2.1):
- an offer in an INVITE is answered in a reliable non-failure response of the same transaction on the
  same leg: the 2xx, or a reliable 18x (Require: 100rel with RSeq, RFC 3262). SDP in a non-reliable
  18x is a preview of the answer, not the answer;
- an INVITE without SDP gets the offer in the 2xx (or reliable 18x) and the answer in the ACK (or the
  PRACK, RFC 3262 §5);
- a PRACK may carry a new offer, answered in its 2xx; an UPDATE (RFC 3311 §5.2) or a re-INVITE
  renegotiates: a new exchange, answered in its own 2xx; a failure response rejects it (RFC 3264 §8).
- SDP repeated later in the same transaction (a 2xx after a reliable 18x answer, a retransmission) is a
  repeat of that exchange, not a new one.

This module is the one home of these rules: the call view (voipwatch.call) and its evidence bundle, the
calls table's media_protection (voipwatch.sessions), the UM-03 downgrade check, UM-01's binding of a stream to its negotiated m= line (media_exchange) and XV-04
unannounced_media_peer read them from here. (The pipeline's endpoint bindings, voipwatch.sessions.
MediaExpectations, need no leg: every SDP, offer or answer on any leg, announces where its own sender
receives, RFC 3264 §5.)
All state is bounded: legs per Call-ID and exchanges per leg have caps, counted when hit.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from voipwatch.records import Call, SdpSession, SipMessage

MAX_LEGS = 16              # legs kept per Call-ID (a spiral or a fork beyond it is not followed)
MAX_EXCHANGES = 8          # offer/answer exchanges kept per leg (re-INVITEs beyond it drop the oldest)
OFFER_CARRIERS = ("INVITE", "UPDATE", "PRACK")
# A B2BUA sends its outgoing INVITE as soon as it has the incoming one; 10 s covers a slow routing lookup
# (no RFC bounds it) while two unrelated calls from the same caller to the same callee are rarer.
B2BUA_WINDOW_S = 10.0
MIN_NUMBER_DIGITS = 3      # numbers shorter than this link nothing (they would match too much)
MAX_JOINED = 8             # Call-IDs one Session-ID UUID or referenced Call-ID may join (a B2BUA chain is short)
MAX_CANDIDATES = 64        # later INVITEs examined per call for a number+time link (a flood stays linear)


def leg_ends(src: str, sport: int, dst: str, dport: int) -> tuple[str, str]:
    """The two signalling addresses of a hop, in a fixed order: hosts, or host:port when both ends are
    one host (a proxy and its user agents on one machine). Ports are left out otherwise, since a TCP
    request in the other direction may come from a new ephemeral port (RFC 3261 §18.2.2)."""
    a, b = (src, dst) if src != dst else (f"{src}:{sport}", f"{dst}:{dport}")
    return (a, b) if a <= b else (b, a)


def _addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(slots=True)
class SdpSeen:
    """One SDP body as it was seen on a leg."""
    sdp: SdpSession
    frame: int
    ts: float
    sender: str               # address:port of the message's sender
    receiver: str
    message: str              # "INVITE", "200 INVITE", "183 INVITE (reliable)", "ACK", ...


@dataclass(slots=True)
class Exchange:
    """One offer and its answer on one leg."""
    method: str                           # the transaction that carried the offer: INVITE, UPDATE, PRACK
    cseq: int | None
    offer: SdpSeen | None = None          # None while an INVITE without SDP awaits the offer in its response
    answer: SdpSeen | None = None
    preview: SdpSeen | None = None        # SDP in a non-reliable 18x: the answer to come, not the answer
    offer_in_response: bool = False       # the offer came in the 2xx/reliable 18x: answered in ACK/PRACK
    rejected: int | None = None           # the failure status that rejected the offer (RFC 3264 §8)
    repeats: int = 0                      # SDP bodies that repeated this exchange's offer or answer

    @property
    def offerer(self) -> str | None:
        return self.offer.sender if self.offer else None


@dataclass(slots=True)
class Leg:
    """The offer/answer exchanges on one hop of one Call-ID, oldest first."""
    call_id: str
    ends: tuple[str, str]
    first_ts: float
    first_frame: int
    exchanges: list[Exchange] = field(default_factory=list)
    dropped_exchanges: int = 0
    strays: list[SdpSeen] = field(default_factory=list)   # SDP that fits no exchange (its request not captured)

    def first_complete(self) -> Exchange | None:
        """The first exchange with an offer and an answer (the call's initial media)."""
        return next((x for x in self.exchanges if x.offer and x.answer), None)

    def in_force(self, ts: float) -> Exchange | None:
        """The exchange that set the media at capture time ts: the latest one not rejected whose offer came
        before ts, preferring answered ones; else the first one."""
        usable = [x for x in self.exchanges if x.offer and x.rejected is None]
        before = [x for x in usable if x.offer.ts <= ts]
        answered = [x for x in before if x.answer]
        chosen = answered or before or usable[:1]
        return chosen[-1] if chosen else None

    def sdps(self):
        """Every SDP body kept on the leg: its exchanges' offers, answers and previews, and strays."""
        for x in self.exchanges:
            for seen in (x.offer, x.answer, x.preview):
                if seen is not None:
                    yield seen
        yield from self.strays


@dataclass(frozen=True, slots=True)
class SdpRole:
    """What one SIP message's SDP is on its leg."""
    leg: Leg
    exchange: Exchange | None
    role: str                 # offer | answer | preview | repeat | stray (no exchange it belongs to)


def _may_negotiate(msg: SipMessage) -> bool:
    """Whether a message can change an offer/answer exchange: it carries SDP, opens an INVITE transaction
    (whose offer may come in the 2xx), or rejects an offer (a failure response to INVITE, UPDATE, PRACK)."""
    if msg.sdp is not None:
        return True
    if msg.is_request:
        return msg.method == "INVITE"
    return (msg.status or 0) >= 300 and msg.cseq_method in OFFER_CARRIERS


class CallLegs:
    """The legs of one Call-ID and their offer/answer exchanges, fed its SIP messages in capture order.

    every_hop: also keep the legs that carry no offer/answer (BYE straight between the phones when a proxy
    did not record-route), as the call view shows them; the trackers and detectors skip such messages."""

    def __init__(self, call_id: str, max_legs: int = MAX_LEGS, max_exchanges: int = MAX_EXCHANGES,
                 every_hop: bool = False):
        self.call_id = call_id
        self.every_hop = every_hop
        self.max_legs = max_legs
        self.max_exchanges = max_exchanges
        self.legs: dict[tuple[str, str], Leg] = {}
        self.dropped_legs = 0                # messages on legs beyond the cap, not followed

    def ordered(self) -> list[Leg]:
        return sorted(self.legs.values(), key=lambda leg: leg.first_frame)

    def on_sip(self, msg: SipMessage) -> SdpRole | None:
        """Follow one message; what its SDP is (None when it has no SDP or its leg is beyond the cap)."""
        if not self.every_hop and not _may_negotiate(msg):
            return None
        p = msg.pkt
        key = leg_ends(p.src, p.sport, p.dst, p.dport)
        leg = self.legs.get(key)
        if leg is None:
            if len(self.legs) >= self.max_legs:
                self.dropped_legs += 1
                return None
            leg = self.legs[key] = Leg(self.call_id, key, p.ts, p.frame)
        role = self._request(leg, msg) if msg.is_request else self._response(leg, msg)
        if role is not None and role.role == "stray" and len(leg.strays) < self.max_exchanges:
            leg.strays.append(self._seen(msg))
        return role

    def _seen(self, msg: SipMessage) -> SdpSeen:
        p = msg.pkt
        if msg.is_request:
            label = msg.method or "?"
        else:
            label = f"{msg.status} {msg.cseq_method or '?'}" + (" (reliable)" if msg.reliable else "")
        return SdpSeen(msg.sdp, p.frame, p.ts, _addr(p.src, p.sport), _addr(p.dst, p.dport), label)

    def _find(self, leg: Leg, method: str | None, cseq: int | None) -> Exchange | None:
        for x in reversed(leg.exchanges):
            if x.method == method and x.cseq == cseq:
                return x
        return None

    def _add(self, leg: Leg, exchange: Exchange) -> None:
        leg.exchanges.append(exchange)
        if len(leg.exchanges) > self.max_exchanges:
            del leg.exchanges[0]
            leg.dropped_exchanges += 1

    def _request(self, leg: Leg, msg: SipMessage) -> SdpRole | None:
        method, sdp = msg.method, msg.sdp
        if method in ("INVITE", "UPDATE"):
            known = self._find(leg, method, msg.cseq)
            if known is not None:                     # a retransmission of the request (RFC 3261 §17.1.1.2)
                if sdp is None:
                    return None
                known.repeats += 1
                return SdpRole(leg, known, "repeat")
            if sdp is None and method == "UPDATE":
                return None                           # an UPDATE without a body only refreshes (RFC 3311 §5.1)
            exchange = Exchange(method, msg.cseq)
            self._add(leg, exchange)
            if sdp is None:
                return None                           # the offer will come in the 2xx (RFC 3261 §13.2.1)
            exchange.offer = self._seen(msg)
            return SdpRole(leg, exchange, "offer")
        if sdp is None:
            return None
        if method in ("ACK", "PRACK"):
            # The answer to an offer made in a response: in the ACK for a 2xx offer (same CSeq number as the
            # INVITE, RFC 3261 §17.1.1.3), in the PRACK for a reliable 18x offer (RFC 3262 §5).
            for x in reversed(leg.exchanges):
                if x.method == "INVITE" and x.offer_in_response and x.answer is None \
                        and (method == "PRACK" or x.cseq == msg.cseq):
                    x.answer = self._seen(msg)
                    return SdpRole(leg, x, "answer")
            if method == "PRACK":                     # RFC 3262 §5: a PRACK may carry a new offer
                known = self._find(leg, "PRACK", msg.cseq)
                if known is not None:
                    known.repeats += 1
                    return SdpRole(leg, known, "repeat")
                exchange = Exchange("PRACK", msg.cseq, offer=self._seen(msg))
                self._add(leg, exchange)
                return SdpRole(leg, exchange, "offer")
        return SdpRole(leg, None, "stray")

    def _response(self, leg: Leg, msg: SipMessage) -> SdpRole | None:
        status = msg.status or 0
        if (msg.sdp is None and status < 300) or msg.cseq_method not in OFFER_CARRIERS:
            return None if msg.sdp is None else SdpRole(leg, None, "stray")
        exchange = self._find(leg, msg.cseq_method, msg.cseq)
        if exchange is not None and status >= 300 and exchange.answer is None:
            exchange.rejected = status
        if msg.sdp is None or status < 101:
            return None
        if exchange is None:
            return SdpRole(leg, None, "stray")        # its request was not seen on this leg
        answering = 200 <= status < 300 or (status < 200 and msg.reliable)
        if exchange.offer is None:                    # the INVITE had no SDP: this response offers
            if answering:
                exchange.offer, exchange.offer_in_response = self._seen(msg), True
                exchange.preview = None
                return SdpRole(leg, exchange, "offer")
            if status < 200:
                exchange.preview = self._seen(msg)
                return SdpRole(leg, exchange, "preview")
            return SdpRole(leg, exchange, "stray")
        if exchange.offer_in_response or exchange.answer is not None:
            exchange.repeats += 1
            return SdpRole(leg, exchange, "repeat")
        if answering:
            exchange.answer = self._seen(msg)
            return SdpRole(leg, exchange, "answer")
        if status < 200:
            exchange.preview = self._seen(msg)
            return SdpRole(leg, exchange, "preview")
        return SdpRole(leg, exchange, "stray")


    def has_offer(self) -> bool:
        return any(x.offer for leg in self.legs.values() for x in leg.exchanges)

    def negotiated(self) -> bool:
        """Whether some leg has an offer and its answer (or the preview of it that early media follows)."""
        return any(x.offer and (x.answer or x.preview) for leg in self.legs.values() for x in leg.exchanges)

    def announced_addresses(self) -> set[str]:
        """Every media address that an SDP of any leg announced (RFC 3264 §5: where its sender receives)."""
        return {m.connection or seen.sdp.connection for leg in self.legs.values() for seen in leg.sdps()
                for m in seen.sdp.media if m.port} - {None}

    def exchanges(self):
        """Every exchange of every leg, legs in order of their first frame."""
        for leg in self.ordered():
            yield from leg.exchanges

    def media_exchange(self, src: str, sport: int, dst: str, dport: int, ts: float) -> Exchange | None:
        """The exchange that set up a media flow: on the leg whose exchange in force at ts announced most of
        the flow's two ends (SDP announces where its sender receives, RFC 3264 §5), the first such leg on a
        tie; the first leg's exchange in force when no leg announced either end; the first offer when every
        offer was rejected."""
        best, best_hits = None, -1
        for leg in self.ordered():
            exchange = leg.in_force(ts)
            if exchange is None:
                continue
            announced = {(m.connection or seen.sdp.connection, m.port)
                         for seen in (exchange.offer, exchange.answer, exchange.preview) if seen is not None
                         for m in seen.sdp.media}
            hits = ((src, sport) in announced) + ((dst, dport) in announced)
            if hits > best_hits:
                best, best_hits = exchange, hits
        return best or next((x for x in self.exchanges() if x.offer), None)   # every offer was rejected


def legs_of(messages: list[SipMessage]) -> dict[str, CallLegs]:
    """The legs of every Call-ID in these messages (taken in capture order)."""
    out: dict[str, CallLegs] = {}
    for msg in sorted(messages, key=lambda m: (m.pkt.ts, m.pkt.frame)):
        if msg.call_id is None:
            continue
        legs = out.get(msg.call_id)
        if legs is None:
            legs = out[msg.call_id] = CallLegs(msg.call_id, every_hop=True)
        legs.on_sip(msg)
    return out


# -- B2BUA legs: Call-IDs that belong to one call ------------------------------------------------------
def _digits(text: str | None) -> str:
    return re.sub(r"\D", "", text or "")


def _same_number(a: str | None, b: str | None) -> bool:
    """Two numbers name the same party: equal digits, or one ends with the other (a B2BUA adds or strips
    a prefix such as +, 00 or a trunk code), at least MIN_NUMBER_DIGITS long."""
    x, y = _digits(a), _digits(b)
    if min(len(x), len(y)) < MIN_NUMBER_DIGITS:
        return False
    return x.endswith(y) or y.endswith(x)


@dataclass(frozen=True, slots=True)
class Link:
    """Why two Call-IDs are legs of one call."""
    call_id: str
    other: str
    basis: str                # session-id | header | number+time


def link_calls(calls: list[Call], messages: list[SipMessage], window_s: float = B2BUA_WINDOW_S) -> list[Link]:
    """Pairs of Call-IDs that a B2BUA joined, strongest evidence first: a shared Session-ID UUID (RFC 7989 §6:
    intermediaries pass it on unchanged), a header naming the other Call-ID (X-CID and the like), or the
    same caller and callee numbers with the second INVITE sent, within window_s, by the host the first one
    was sent to (the B2BUA): the first such INVITE not already taken by an earlier call."""
    ids = {c.call_id for c in calls}
    uuids: dict[str, set[str]] = {}
    links: dict[frozenset, Link] = {}

    def link(a: str, b: str, basis: str) -> None:
        if a != b and a in ids and b in ids:
            links.setdefault(frozenset((a, b)), Link(a, b, basis))

    for msg in messages:
        if msg.call_id in ids:
            for uuid in msg.session_ids:
                group = uuids.setdefault(uuid, set())
                if len(group) <= MAX_JOINED:
                    group.add(msg.call_id)
    for group in uuids.values():
        if len(group) > MAX_JOINED:
            continue                 # a UUID on many Call-IDs is no session identifier (reused or forged)
        first, *rest = sorted(group)
        for other in rest:
            link(first, other, "session-id")
    named: dict[str, set[str]] = {}       # referenced Call-ID -> the Call-IDs whose messages name it
    for msg in messages:
        if msg.call_id in ids:
            for ref in msg.leg_refs:
                if ref in ids and len(named.setdefault(ref, set())) <= MAX_JOINED:
                    named[ref].add(msg.call_id)
    for ref, namers in named.items():
        if len(namers) <= MAX_JOINED:    # a Call-ID named by many others is no leg reference (forged)
            for cid in sorted(namers):
                link(ref, cid, "header")
    # Candidates by (sending host, last MIN_NUMBER_DIGITS digits of the callee): two numbers of which one
    # ends with the other share those digits. Each list is in time order.
    by_sender: dict[tuple[str, str], list[Call]] = {}
    for call in sorted(calls, key=lambda c: (c.first_ts, c.first_frame)):
        tail = _digits(call.callee)[-MIN_NUMBER_DIGITS:]
        if len(tail) == MIN_NUMBER_DIGITS:
            by_sender.setdefault((call.src, tail), []).append(call)
    claimed: set[str] = set()        # one outgoing leg per incoming call: busy numbers are not chained
    for inbound in sorted(calls, key=lambda c: (c.first_ts, c.first_frame)):
        candidates = by_sender.get((inbound.dst, _digits(inbound.callee)[-MIN_NUMBER_DIGITS:]), [])
        start = bisect.bisect_right(candidates, (inbound.first_ts, inbound.first_frame),
                                    key=lambda c: (c.first_ts, c.first_frame))
        for outbound in candidates[start:start + MAX_CANDIDATES]:
            if outbound.first_ts - inbound.first_ts > window_s:
                break
            if outbound.call_id not in claimed and _same_number(inbound.callee, outbound.callee) \
                    and (inbound.caller is None or outbound.caller is None or _same_number(inbound.caller, outbound.caller)):
                claimed.add(outbound.call_id)
                link(inbound.call_id, outbound.call_id, "number+time")
                break
    return list(links.values())


def call_groups(calls: list[Call], messages: list[SipMessage]) -> tuple[dict[str, list[str]], dict[str, list[Link]]]:
    """Call-ID -> the Call-IDs of its call (itself first-ordered by first INVITE), and each group's links."""
    parent = {c.call_id: c.call_id for c in calls}

    def root(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    links = link_calls(calls, messages)
    for lk in links:
        a, b = root(lk.call_id), root(lk.other)
        if a != b:
            parent[b] = a
    order = {c.call_id: (c.first_ts, c.first_frame) for c in calls}
    members: dict[str, list[str]] = {}
    for cid in parent:
        members.setdefault(root(cid), []).append(cid)
    groups, group_links = {}, {}
    for ids in members.values():
        ids.sort(key=order.__getitem__)
        for cid in ids:
            groups[cid] = ids
            group_links[cid] = [lk for lk in links if lk.call_id in ids]
    return groups, group_links
