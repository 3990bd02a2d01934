"""SIP session state: calls (INVITE dialogs), registrations, and the media flows SDP announces.

All state is bounded (a cap per table, counted when hit) and expires on capture time only.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from dissectors.sip import address_of_record
from voipwatch.bindings import Binding, RegisterRequest, RegistrarView
from voipwatch.legs import CallLegs
from voipwatch.records import ENDED_STATES, Call, Registration, SdpSession, SipMessage
from voipwatch.sip_auth import credentials, outcome

# RFC 3261 §17.1.1.2: an INVITE client transaction gives up after 64*T1 = 32 s; a dialog with no
# signalling for far longer than that and no media is treated as gone.
CALL_IDLE_S = 3600.0
# RFC 3261 §17.1.2.2: a non-INVITE client transaction lives 64*T1 = 32 s; a response later than that
# belongs to no transaction still open.
TRANSACTION_S = 32.0
# A binding whose 200 OK states no expiry lasts this long: the registrar's choice when the REGISTER asked
# for none (RFC 3261 §10.3 step 7); 3600 s is the common default (Kamailio, Asterisk).
DEFAULT_EXPIRES_S = 3600.0


@dataclass(slots=True)
class MediaEndpoint:
    """An address:port that SDP announced as a media receiver (RFC 3264 §5)."""
    call_id: str
    setup_frame: int             # frame of the SIP message carrying the SDP
    setup_ts: float
    kind: str                    # m= media type
    proto: str                   # m= transport protocol
    rtpmap: dict[int, tuple[str, int]]
    is_rtcp: bool                # the RTCP port of the m= line (port+1, RFC 3550 §11, or a=rtcp)
    payload_types: dict = field(default_factory=dict)   # pt -> (clock rate, codec name), filled on first use
    fingerprint: tuple[str, str] | None = None   # a=fingerprint (hash function, hex value), RFC 8122


def endpoints_in_lookup_order(sent_from, sent_to) -> tuple:
    """The endpoints a media packet is looked up by, in order: the one it is sent to, then the one it
    is sent from. SDP announces where its author receives media (RFC 3264 §5), and symmetric RTP sends
    from that same port (RFC 4961 §3). The first endpoint whose binding holds wins.

    The one statement of this rule: MediaExpectations.lookup applies it to (address, port) keys, the
    batch path's vectorised twin (voipwatch.batch.announcements) to arrays of endpoint keys.
    """
    return sent_to, sent_from


def binding_holds(setup_frame, setup_ts, frame, ts, max_age_s):
    """Whether an announcement binds a packet: set up in an earlier frame than the packet's, and no
    more than max_age_s before the packet's capture time (so both execution paths judge a binding by
    the packet alone). Element-wise on numpy arrays, for the vectorised twin."""
    return (setup_frame < frame) & (ts - setup_ts <= max_age_s)


class MediaExpectations:
    """(address, port) -> what SDP last said will arrive there.

    An endpoint stays bound until another SDP announces the same address:port (a later call reusing
    the port), until `max_age_s` after its SDP (binding_holds), or until the LRU cap evicts it. Given
    a `log`, every announcement is also appended to it in order (the batch path's vectorised lookup
    reads it).
    """

    def __init__(self, max_entries: int, max_age_s: float = 21600.0,
                 log: list[tuple[tuple[str, int], MediaEndpoint]] | None = None):
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self._table: OrderedDict[tuple[str, int], MediaEndpoint] = OrderedDict()
        self.log = log
        self.overflows = 0

    def __len__(self) -> int:
        return len(self._table)

    def announce(self, msg: SipMessage) -> None:
        sdp = msg.sdp
        if sdp is None or msg.call_id is None:
            return
        for media in sdp.media:
            addr = media.connection or sdp.connection
            if not addr or media.port == 0 or addr in ("0.0.0.0", "::"):
                continue  # RFC 3264 §8.4 hold (0.0.0.0) and §6 rejected streams (port 0)
            rtpmap = {pt: (name, rate) for pt, name, rate in media.rtpmap}
            rtcp_port = media.rtcp_port or media.port + 1
            fingerprint = ((media.fingerprint, media.fingerprint_value) if media.fingerprint else
                           (sdp.fingerprint, sdp.fingerprint_value) if sdp.fingerprint else (None, None))
            fingerprint = fingerprint if fingerprint[1] else None
            self._put((addr, media.port), MediaEndpoint(
                msg.call_id, msg.pkt.frame, msg.pkt.ts, media.kind, media.proto, rtpmap, False, {}, fingerprint))
            self._put((addr, rtcp_port), MediaEndpoint(
                msg.call_id, msg.pkt.frame, msg.pkt.ts, media.kind, media.proto, rtpmap, True, {}, fingerprint))

    def _put(self, key: tuple[str, int], endpoint: MediaEndpoint) -> None:
        old = self._table.get(key)
        if old is not None and endpoint.is_rtcp and not old.is_rtcp and old.call_id == endpoint.call_id:
            return  # an m= line's own RTP port keeps priority over a neighbouring line's RTCP port
        self._table[key] = endpoint
        self._table.move_to_end(key)
        if self.log is not None:
            self.log.append((key, endpoint))
        while len(self._table) > self.max_entries:
            self._table.popitem(last=False)
            self.overflows += 1

    def lookup(self, src: str, sport: int, dst: str, dport: int, frame: int, ts: float) -> MediaEndpoint | None:
        """The announced endpoint this packet belongs to (endpoints_in_lookup_order, binding_holds)."""
        table = self._table
        for key in endpoints_in_lookup_order((src, sport), (dst, dport)):
            endpoint = table.get(key)
            if endpoint is not None and binding_holds(endpoint.setup_frame, endpoint.setup_ts, frame, ts,
                                                      self.max_age_s):
                return endpoint
        return None

    def announced(self, addr: str, port: int, frame: int, ts: float) -> MediaEndpoint | None:
        """What SDP announced at exactly this address:port, while its binding holds."""
        endpoint = self._table.get((addr, port))
        if endpoint is not None and binding_holds(endpoint.setup_frame, endpoint.setup_ts, frame, ts, self.max_age_s):
            return endpoint
        return None

    def expire(self, now: float) -> None:
        """Forget bindings older than max_age_s (lookup already ignores them): memory stays flat."""
        table = self._table
        while table:
            key, endpoint = next(iter(table.items()))
            if now - endpoint.setup_ts <= self.max_age_s:
                break
            del table[key]


def media_protection(offer: SdpSession | None, answer: SdpSession | None) -> str:
    """How the negotiated media is protected: none, sdes (RFC 4568), dtls (RFC 5763), zrtp (RFC 6189)."""
    sdp = answer or offer
    if sdp is None:
        return "unknown"
    audio_video = [m for m in sdp.media if m.port != 0 and "RTP" in m.proto.upper()]
    if not audio_video:
        return "unknown"
    if sdp.zrtp_hash or any(m.zrtp_hash for m in audio_video):
        return "zrtp"
    secure = [m for m in audio_video if "SAVP" in m.proto.upper()]
    if len(secure) < len(audio_video):
        return "none"
    if all(m.fingerprint or sdp.fingerprint for m in secure) and any("TLS" in m.proto.upper() for m in secure):
        return "dtls"
    if all(m.crypto or sdp.crypto for m in secure):
        return "sdes"
    if all(m.fingerprint or sdp.fingerprint for m in secure):
        return "dtls"
    return "unknown"


# Weakest first: plain RTP, keys in the signalling (SDES), keys from a handshake on the media path.
PROTECTION_STRENGTH = ("none", "sdes", "dtls", "zrtp")


def call_protection(legs: CallLegs) -> str:
    """The media protection of a call as its weakest leg has it: on each leg, the exchange in force at the
    end (voipwatch.legs; the first offer when every offer was rejected), its answer (or the 18x preview
    early media follows) else its offer. A call with
    DTLS-SRTP on the caller's leg and plain RTP behind an SBC is "none": its media crossed in clear."""
    found = set()
    for leg in legs.legs.values():
        # a call whose offers were all rejected is described by what it offered
        exchange = leg.in_force(float("inf")) or next((x for x in leg.exchanges if x.offer), None)
        if exchange is not None:
            answer = exchange.answer or exchange.preview
            found.add(media_protection(exchange.offer.sdp, answer.sdp if answer else None))
    return next((p for p in PROTECTION_STRENGTH if p in found), "unknown")


@dataclass(slots=True)
class CallState:
    call_id: str
    first_ts: float
    last_ts: float
    first_frame: int
    caller: str | None
    callee: str | None
    ruri_user: str | None
    src: str
    dst: str
    vlan: tuple[int, ...]
    transport: str
    user_agent: str | None
    state: str = "attempting"
    final_status: int | None = None
    answer_ts: float | None = None
    end_ts: float | None = None
    legs: CallLegs | None = None          # offer/answer per leg (voipwatch.legs)

    def to_record(self) -> Call:
        setup_s = None if self.answer_ts is None else round(self.answer_ts - self.first_ts, 6)
        duration_s = None
        if self.answer_ts is not None:
            end = self.end_ts if self.end_ts is not None else self.last_ts
            duration_s = round(end - self.answer_ts, 6)
        return Call(
            call_id=self.call_id, first_ts=self.first_ts, last_ts=self.last_ts, caller=self.caller,
            callee=self.callee, src=self.src, dst=self.dst, vlan=self.vlan, transport=self.transport,
            state=self.state, final_status=self.final_status, setup_s=setup_s, duration_s=duration_s,
            user_agent=self.user_agent, media_protection=call_protection(self.legs),
            first_frame=self.first_frame, ruri_user=self.ruri_user)


class CallTracker:
    """INVITE dialogs keyed by Call-ID (RFC 3261 §12-§15).

    A call is closed `linger_s` after its last message once it has ended (BYE, a final failure or a
    CANCEL), so late retransmissions still land on it, and after `idle_s` of silence otherwise.
    """

    def __init__(self, max_calls: int, idle_s: float = CALL_IDLE_S, linger_s: float = 64.0):
        self.max_calls = max_calls
        self.idle_s = idle_s
        self.linger_s = linger_s
        self._calls: OrderedDict[str, CallState] = OrderedDict()
        self.overflows = 0

    def __len__(self) -> int:
        return len(self._calls)

    def get(self, call_id: str | None) -> CallState | None:
        return None if call_id is None else self._calls.get(call_id)

    def on_sip(self, msg: SipMessage) -> list[Call]:
        """Update the call this message belongs to; returns calls evicted by the cap."""
        evicted: list[Call] = []
        if msg.call_id is None:
            return evicted
        call = self._calls.get(msg.call_id)
        if call is None:
            if not (msg.is_request and msg.method == "INVITE"):
                return evicted
            call = CallState(
                call_id=msg.call_id, first_ts=msg.pkt.ts, last_ts=msg.pkt.ts, first_frame=msg.pkt.frame,
                caller=msg.from_user, callee=msg.to_user or msg.ruri_user, ruri_user=msg.ruri_user,
                src=msg.pkt.src, dst=msg.pkt.dst, vlan=msg.pkt.vlan, transport=msg.pkt.transport,
                user_agent=msg.user_agent, legs=CallLegs(msg.call_id))
            self._calls[msg.call_id] = call
            while len(self._calls) > self.max_calls:
                _, old = self._calls.popitem(last=False)
                evicted.append(old.to_record())
                self.overflows += 1
        self._calls.move_to_end(msg.call_id)
        call.last_ts = max(call.last_ts, msg.pkt.ts)
        call.legs.on_sip(msg)
        if msg.is_request:
            self._on_request(call, msg)
        else:
            self._on_response(call, msg)
        return evicted

    @staticmethod
    def _on_request(call: CallState, msg: SipMessage) -> None:
        if msg.method == "INVITE":
            if call.answer_ts is None and call.state in ("failed", "attempting"):
                call.state = "attempting"  # a new INVITE after a 401/407 challenge retries the call
        elif msg.method == "BYE" and call.end_ts is None:
            call.end_ts = msg.pkt.ts
            call.state = "ended" if call.answer_ts is not None else "cancelled"
        elif msg.method == "CANCEL" and call.answer_ts is None:
            call.state = "cancelled"

    @staticmethod
    def _on_response(call: CallState, msg: SipMessage) -> None:
        status = msg.status or 0
        if msg.cseq_method != "INVITE":
            return
        if 100 < status < 200 and call.state == "attempting":
            call.state = "ringing"
        elif 200 <= status < 300:
            if call.answer_ts is None:
                call.answer_ts = msg.pkt.ts
                call.final_status = status
            if call.end_ts is None:
                call.state = "answered"
        elif status >= 300 and call.answer_ts is None:
            call.final_status = status
            if call.state != "cancelled" or status == 487:
                call.state = "cancelled" if status == 487 else "failed"

    def expire(self, now: float) -> list[Call]:
        done = [cid for cid, c in self._calls.items()
                if now - c.last_ts > (self.linger_s if c.state in ENDED_STATES else self.idle_s)]
        return [self._calls.pop(cid).to_record() for cid in done]

    def finish(self) -> list[Call]:
        calls = [c.to_record() for c in self._calls.values()]
        self._calls.clear()
        return calls


@dataclass(slots=True)
class RegistrationState:
    aor: str
    src: str
    vlan: tuple[int, ...]
    first_ts: float
    last_ts: float
    first_frame: int
    user_agent: str | None
    attempts: int = 0
    challenges: int = 0
    successes: int = 0
    failures: int = 0
    rejected: int = 0

    def to_record(self) -> Registration:
        return Registration(
            aor=self.aor, src=self.src, vlan=self.vlan, attempts=self.attempts, challenges=self.challenges,
            successes=self.successes, failures=self.failures, rejected=self.rejected, first_ts=self.first_ts, last_ts=self.last_ts,
            user_agent=self.user_agent, first_frame=self.first_frame)


def top_branch(msg: SipMessage) -> str | None:
    """The branch parameter of the topmost Via: with Call-ID and CSeq it names the transaction
    (RFC 3261 §17.1.3, §17.2.3); tools like svcrack reuse one CSeq with a new branch per guess."""
    if not msg.via:
        return None
    for param in msg.via[0].split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "branch":
            return value.strip()
    return msg.via[0]


class RegistrationTracker:
    """REGISTER attempts and outcomes per (address-of-record, source, VLAN), and the bindings that the
    registrar's 200 OKs list (voipwatch.bindings)."""

    def __init__(self, max_entries: int, max_transactions: int, idle_s: float = 7200.0):
        self.max_entries = max_entries
        self.max_transactions = max_transactions
        self.idle_s = idle_s
        self._regs: OrderedDict[tuple, RegistrationState] = OrderedDict()
        # (Call-ID, CSeq, branch) of REGISTER requests -> [registration key, request time, answered,
        # carried credentials, RegisterRequest],
        # to match responses (RFC 3261 §17.1.3) within a transaction's lifetime
        self._transactions: OrderedDict[tuple, list] = OrderedDict()
        self.bindings = RegistrarView(max_entries, DEFAULT_EXPIRES_S)
        self.overflows = 0
        self.transaction_overflows = 0      # transactions forgotten by the cap: their responses go unmatched

    def __len__(self) -> int:
        return len(self._regs)

    def on_sip(self, msg: SipMessage) -> list[Registration | Binding]:
        """Count a REGISTER or its final answer; returns rows closed by it (evicted registrations, ended bindings)."""
        evicted: list[Registration | Binding] = []
        if msg.is_request and msg.method == "REGISTER":
            key = (address_of_record(msg), msg.pkt.src, msg.pkt.vlan)
            reg = self._regs.get(key)
            if reg is None:
                reg = RegistrationState(key[0], key[1], key[2], msg.pkt.ts, msg.pkt.ts, msg.pkt.frame,
                                        msg.user_agent)
                self._regs[key] = reg
                while len(self._regs) > self.max_entries:
                    _, old = self._regs.popitem(last=False)
                    evicted.append(old.to_record())
                    self.overflows += 1
            self._regs.move_to_end(key)
            reg.last_ts = msg.pkt.ts
            txn = (msg.call_id, msg.cseq, top_branch(msg))
            known = self._transactions.get(txn)
            if known is None or msg.pkt.ts - known[1] > TRANSACTION_S:   # a retransmission is not a new attempt
                reg.attempts += 1
                self._transactions[txn] = [key, msg.pkt.ts, False, credentials(msg) is not None,
                                           RegisterRequest.of(msg)]
                self._transactions.move_to_end(txn)
                while len(self._transactions) > self.max_transactions:
                    self._transactions.popitem(last=False)
                    self.transaction_overflows += 1
        elif not msg.is_request and msg.cseq_method == "REGISTER" and msg.status and msg.status >= 200:
            txn = (msg.call_id, msg.cseq, top_branch(msg))
            known = self._transactions.get(txn)
            if known is None or known[2] or msg.pkt.ts - known[1] > TRANSACTION_S:
                return evicted                      # unmatched, expired or retransmitted final response
            reg = self._regs.get(known[0])
            if reg is None:
                return evicted
            known[2] = True
            reg.last_ts = msg.pkt.ts
            self._regs.move_to_end(known[0])    # least recently active first, as expire() reads them
            result = outcome(known[3], msg)       # the registration checks count with the same definition
            if result == "success":
                reg.successes += 1
                evicted += self.bindings.on_ok(known[0][0], known[4], msg).ended
            elif result == "challenge":
                reg.challenges += 1
            elif result == "failure":
                reg.failures += 1
            else:
                reg.rejected += 1
        return evicted

    def expire(self, now: float) -> list[Registration | Binding]:
        """Rows with no REGISTER traffic for idle_s: closed (a later REGISTER starts a new row); bindings
        that lapsed."""
        txns = self._transactions
        while txns:
            txn, (_, started, *_) = next(iter(txns.items()))
            if now - started <= TRANSACTION_S:
                break
            del txns[txn]
        done = []
        for key, reg in self._regs.items():          # least recently active first
            if now - reg.last_ts <= self.idle_s:
                break
            done.append(key)
        return [self._regs.pop(key).to_record() for key in done] + self.bindings.expire(now)

    def finish(self, now: float | None = None) -> list[Registration | Binding]:
        """Every row still open; a binding is still bound unless it lapsed before `now` (the capture's end)."""
        regs = [r.to_record() for r in self._regs.values()]
        self._regs.clear()
        return regs + self.bindings.finish(now)
