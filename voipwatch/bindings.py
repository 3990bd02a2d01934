"""The registrar's view of bindings: which contacts each address-of-record is bound to, from when to when.

RFC 3261 §10.3 step 8: a registrar answers a REGISTER it accepted with a 200 OK whose Contact header fields
list every current binding of the address-of-record, each with its expires parameter (else the Expires
header field). That list, not the REGISTER, says what is bound: a REGISTER with Expires: 0 removes only the
contacts it names (§10.2.2), and another source's binding stays listed. A registrar that answers 200 with
no Contact at all to a REGISTER that added contacts does not enumerate its bindings; the view then takes
the REGISTER's contacts (a row's `listed_by_registrar` is false).

One view serves the bindings table (voipwatch.sessions.RegistrationTracker) and the registration checks
(detectors/registration_flood.py); it is bounded (`max_aors`, the least recently answered address-of-record
is dropped and counted) and runs on capture time only.
"""
from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import NamedTuple

from dissectors.sip_headers import uri_host
from voipwatch.records import SipMessage, declare, r6, vlan_text

# Contacts kept per address-of-record: a registrar that enumerates nothing lets a REGISTER add up to 64
# contacts each time (dissectors/sip.py MAX_LIST_VALUES); beyond this the oldest ends as evicted, counted.
MAX_CONTACTS_PER_AOR = 256

# How a binding's row ended: it lapsed (expires_ts passed with no refresh), a later 200 OK no longer
# listed it (removed_by names the source of that REGISTER), it was still bound at the end of the capture,
# or the view's cap dropped its address-of-record.
ENDS = ("expired", "removed", "bound_at_end", "evicted")


@dataclass(frozen=True, slots=True)
class Binding:
    """One contact bound to an address-of-record, as the registrar's 200 OKs to REGISTER listed it."""
    aor: str
    contact: str                   # the Contact URI as the 200 OK listed it
    contact_host: str | None       # its host (an address or a name)
    src: str | None                # the source whose REGISTER named this contact; None when the 200 OK listed
    vlan: tuple[int, ...]          #   a binding made before the capture began
    registrar: str
    user_agent: str | None
    first_seen_ts: float           # the first 200 OK that listed it
    last_confirmed_ts: float       # the last 200 OK that listed it
    expires_ts: float              # when it lapses, per the last listing
    end: str                       # one of ENDS
    ended_ts: float | None         # when it expired or was removed; None while bound at the end
    removed_by: str | None         # the source of the REGISTER whose 200 OK dropped it
    confirmations: int             # 200 OKs that listed it
    listed_by_registrar: bool      # False when only the REGISTER named it (its 200 OK listed no Contact)
    first_frame: int


@dataclass(slots=True)
class BindingState:
    aor: str
    contact: str
    contact_host: str | None
    src: str | None
    vlan: tuple[int, ...]
    registrar: str
    user_agent: str | None
    first_seen_ts: float
    first_frame: int
    last_confirmed_ts: float
    expires_ts: float
    listed_by_registrar: bool
    confirmations: int = 1

    def to_record(self, end: str, ended_ts: float | None, removed_by: str | None = None) -> Binding:
        return Binding(self.aor, self.contact, self.contact_host, self.src, self.vlan, self.registrar,
                       self.user_agent, self.first_seen_ts, self.last_confirmed_ts, self.expires_ts, end, ended_ts,
                       removed_by, self.confirmations, self.listed_by_registrar, self.first_frame)


@dataclass(slots=True)
class Update:
    """What one 200 OK to a REGISTER changed in the view."""
    listed: list[BindingState] = field(default_factory=list)    # every binding it lists, after it
    added: list[BindingState] = field(default_factory=list)     # listed for the first time
    removed: list[BindingState] = field(default_factory=list)   # live before, no longer listed
    ended: list[Binding] = field(default_factory=list)          # rows closed (removed now, or lapsed before)


class RegisterRequest(NamedTuple):
    """What the view needs of a REGISTER until its answer: who sent it, and the contacts it named."""
    src: str
    vlan: tuple[int, ...]
    user_agent: str | None
    contacts: tuple[str, ...]
    expiries: tuple[int | None, ...]   # per contact: its expires param, else the Expires header

    @classmethod
    def of(cls, msg: SipMessage) -> "RegisterRequest":
        return cls(msg.pkt.src, msg.pkt.vlan, msg.user_agent, msg.contact, _expiries(msg))


def contact_key(uri: str) -> str:
    """Contacts compare as URIs (RFC 3261 §19.1.4): scheme and host case-insensitive, URI parameters aside."""
    scheme, _, rest = uri.partition(":")
    user, at, hostport = rest.rpartition("@")
    return f"{scheme.lower()}:{user}{at}{hostport.split(';', 1)[0].lower()}"


class RegistrarView:
    """address-of-record -> contact -> its binding, as the registrar's 200 OKs list them."""

    def __init__(self, max_aors: int, default_expires_s: float = 3600.0):
        """At most max_aors addresses-of-record and MAX_CONTACTS_PER_AOR contacts each; `overflows` counts
        what either cap dropped."""
        self.max_aors = max_aors
        self.default_expires_s = default_expires_s
        self.overflows = 0
        self._aors: OrderedDict[str, dict[str, BindingState]] = OrderedDict()
        self._lapse: list[tuple[float, str, str]] = []      # (expires_ts, aor, key), stale entries skipped
        self._compact_at = 1024                             # heap size that triggers dropping stale entries

    def __len__(self) -> int:
        return len(self._aors)

    def live(self, aor: str, now: float) -> list[BindingState]:
        """The bindings of aor that have not lapsed at `now`."""
        return [b for b in self._aors.get(aor, {}).values() if b.expires_ts > now]

    def on_ok(self, aor: str, request: RegisterRequest, response: SipMessage) -> Update:
        """Apply a 2xx to a REGISTER for aor (the request whose transaction it answers)."""
        ts, update = response.pkt.ts, Update()
        bindings = self._aors.pop(aor, None)
        if bindings is None:
            bindings = {}
        self._aors[aor] = bindings                          # most recently answered last
        for key in [k for k, b in bindings.items() if b.expires_ts <= ts]:
            b = bindings.pop(key)
            update.ended.append(b.to_record("expired", b.expires_ts))
        requested = {contact_key(uri): exp for uri, exp in zip(request.contacts, request.expiries)}
        listed_by_registrar = bool(response.contact)
        if listed_by_registrar:
            pairs = zip(response.contact, _expiries(response))
        elif request.contacts and request.contacts != ("*",):
            pairs = zip(request.contacts, request.expiries)     # a 200 OK that enumerates nothing
        else:
            pairs = ()
        listed: dict[str, tuple[str, float]] = {}
        for uri, expires in pairs:
            key = contact_key(uri)
            if expires is None:
                expires = requested.get(key)
            if uri == "*" or expires == 0:
                continue
            listed[key] = (uri, float(self.default_expires_s if expires is None else expires))
        for key, (uri, expires) in listed.items():
            b = bindings.get(key)
            if b is None:
                ours = key in requested                      # else the registrar listed an older binding
                b = BindingState(aor, uri, uri_host(uri), request.src if ours else None,
                                 request.vlan if ours else (), response.pkt.src,
                                 request.user_agent if ours else None, ts, response.pkt.frame, ts, ts + expires,
                                 listed_by_registrar)
                bindings[key] = b
                update.added.append(b)
            else:
                b.last_confirmed_ts, b.expires_ts = ts, ts + expires
                b.confirmations += 1
                b.listed_by_registrar = b.listed_by_registrar or listed_by_registrar
            heapq.heappush(self._lapse, (b.expires_ts, aor, key))
            update.listed.append(b)
        # Without an enumeration, only what the REGISTER removed itself is gone (Contact: *, or expires=0).
        gone = ([k for k in bindings if k not in listed] if listed_by_registrar or request.contacts == ("*",)
                else [k for k, exp in requested.items() if exp == 0 and k in bindings])
        for key in gone:
            b = bindings.pop(key)
            update.removed.append(b)
            update.ended.append(b.to_record("removed", ts, request.src))
        while len(bindings) > MAX_CONTACTS_PER_AOR:
            oldest = min(bindings, key=lambda k: bindings[k].first_seen_ts)
            self.overflows += 1
            update.ended.append(bindings.pop(oldest).to_record("evicted", ts))
        if not bindings:
            del self._aors[aor]
        if len(self._lapse) > self._compact_at:         # refreshes leave stale entries; keep the heap bounded
            self._lapse = [(b.expires_ts, a, k) for a, bs in self._aors.items() for k, b in bs.items()]
            heapq.heapify(self._lapse)
            self._compact_at = 2 * len(self._lapse) + 1024
        while len(self._aors) > self.max_aors:
            _, dropped = self._aors.popitem(last=False)
            self.overflows += 1
            update.ended += [b.to_record("evicted", ts) for b in dropped.values()]
        return update

    def expire(self, now: float) -> list[Binding]:
        """Rows of bindings whose expiry passed before `now` with no refresh."""
        ended, lapse = [], self._lapse
        while lapse and lapse[0][0] < now:
            expires_ts, aor, key = heapq.heappop(lapse)
            bindings = self._aors.get(aor)
            b = bindings.get(key) if bindings is not None else None
            if b is None or b.expires_ts != expires_ts:
                continue                                    # removed, or refreshed since
            del bindings[key]
            if not bindings:
                del self._aors[aor]
            ended.append(b.to_record("expired", expires_ts))
        return ended

    def finish(self, now: float | None) -> list[Binding]:
        """End of input: every binding left, lapsed ones as expired, the others still bound."""
        out = []
        for bindings in self._aors.values():
            for b in bindings.values():
                lapsed = now is not None and b.expires_ts <= now
                out.append(b.to_record("expired" if lapsed else "bound_at_end", b.expires_ts if lapsed else None))
        self._aors.clear()
        self._lapse.clear()
        return out


def _expiries(msg: SipMessage) -> tuple[int | None, ...]:
    return msg.contact_expires or (msg.expires,) * len(msg.contact)


declare(Binding, rank=115, timeline=lambda b, timing: (b.ended_ts if b.ended_ts is not None else b.last_confirmed_ts,
                                                        b.first_frame),
        table="bindings", sort=lambda b: (b.first_seen_ts, b.first_frame, b.aor, b.contact), columns=(
    ("aor", "string", lambda b: b.aor),
    ("contact", "string", lambda b: b.contact),
    ("contact_host", "string", lambda b: b.contact_host),
    ("src", "string", lambda b: b.src),
    ("vlan", "string", lambda b: vlan_text(b.vlan)),
    ("registrar", "string", lambda b: b.registrar),
    ("first_seen_ts", "Float64", lambda b: r6(b.first_seen_ts)),
    ("last_confirmed_ts", "Float64", lambda b: r6(b.last_confirmed_ts)),
    ("expires_ts", "Float64", lambda b: r6(b.expires_ts)),
    ("end", "string", lambda b: b.end),
    ("ended_ts", "Float64", lambda b: r6(b.ended_ts)),
    ("removed_by", "string", lambda b: b.removed_by),
    ("confirmations", "Int64", lambda b: b.confirmations),
    ("listed_by_registrar", "boolean", lambda b: b.listed_by_registrar),
    ("user_agent", "string", lambda b: b.user_agent),
    ("first_frame", "Int64", lambda b: b.first_frame),
))
