"""The detector framework: one class per detector file, records in, alerts out, capture time only.

A detector declares the records it consumes (a handler `on_<record_in_snake_case>` each), the alerts
it may raise (a stable key per alert, with its NSA check id, severity and guide section) and a frozen
`Config` dataclass whose fields are `opt(default, doc)`. `@register` checks that contract. The registry
is open: `load_detectors` imports every module of the detectors package and every module a site
declares under the entry point group `voipwatch.detectors`; nothing else lists the detectors.

Living findings: a detector raises an alert with `self.alert(...)` every time its evidence grows, stating
the totals of the activity since it began (`first_ts`, and `totals`, counts summed over repeats) in its
message and evidence. The bus keeps one Finding per (alert name, identifier) while it recurs within
`[alerts] suppress_for_s` of capture time: the latest raise gives the words and evidence, the finding
keeps the first and last time, the first raise time, the number of raises, the repeats (raises with
another `first_ts`, i.e. separate activities) and the highest severity. It reports a finding as an
Alert with state "new" at its first raise, "update" when it grew again at least `update_every_s` after
the last report (or its severity rose), and "final" once it has been idle for `suppress_for_s` on the
timeline, or at the end of input. The batch path keeps only the final ones, which equal the streaming
path's final records. Every finding joins an incident (voipwatch.incidents).

The DetectorBus is the sink that feeds detectors. It delivers every record in one timeline order,
by the capture time at which the record is complete (a packet's own time; an RTP stream's last
packet plus the idle timeout; a call's last message plus the call idle time), then record rank, then
frame, as each record type declares them (voipwatch.records.declare). In batch mode it holds records
until the end of input; in stream mode it releases them `horizon_s` behind the capture clock. Either
way detectors see the same sequence, so the batch and streaming paths raise the same alerts.
"""
from __future__ import annotations

import dataclasses
import functools
import heapq
import importlib
import importlib.metadata
import pkgutil
import re
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Callable, ClassVar, Hashable, Iterable

from voipwatch.config_schema import ConfigError
from voipwatch.incidents import SEVERITIES, Grouper, finding_id
from voipwatch.records import RECORDS, Alert, HostSeen, Timing
from voipwatch.site import Site

MAX_OPEN_FINDINGS = 100_000         # findings kept open at once; beyond it the least recently active one closes
MAX_LISTED_TOTALS = 32              # count keys a finding sums over its repeats
PLUGIN_GROUP = "voipwatch.detectors"  # entry point group of detectors shipped outside this package
# Evidence keys that could carry a secret; only "<name>_sha256" and "<name>_len" forms are allowed.
_SECRET_KEY = re.compile(r"(password|passwd|secret|inline|srtp_key|digest_response|^response$|^key$|community)", re.I)


@dataclass(frozen=True)
class AlertSpec:
    check: str                   # nsa-checks.md id, e.g. "RF-03"
    severity: str                # default severity (a detector may raise or lower it per alert)
    guide_ref: str               # NSA guide part and heading, e.g. "Part III: User accounts and passwords"
    title: str                   # what the alert means, one line
    phase: str | None = None     # attack phase for incidents (voipwatch.incidents.PHASES); None: by check id


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Tally:
    """The running totals of one activity, kept by a detector between raises of its finding.

    `first_ts` is fixed when the activity starts, so raises from it update one finding; `counts` are
    what the detector sums (requests, failures, calls); `peak` is the highest value `peak_at` was given
    (a rate, a concurrency); `distinct` keeps up to `max_distinct` values per field (`capped` names the
    fields that reached it).
    """
    __slots__ = ("first_ts", "last_ts", "counts", "peak", "distinct", "capped", "max_distinct", "owner")

    def __init__(self, first_ts: float, max_distinct: int = 10_000, owner: "Tallies | None" = None):
        self.first_ts = self.last_ts = first_ts
        self.counts: Counter = Counter()
        self.peak = 0.0
        self.distinct: dict[str, set] = {}
        self.capped: set[str] = set()        # fields that reached max_distinct: their count is a lower bound
        self.max_distinct = max_distinct
        self.owner = owner                   # the Tallies whose value_overflows count what was not kept

    def add(self, ts: float, **counts: int) -> "Tally":
        self.last_ts = max(self.last_ts, ts)
        self.counts.update(counts)
        return self

    def see(self, field: str, value: Hashable) -> None:
        """A value of `field` (a host, a user, a number): counted once, listed while under the cap."""
        values = self.distinct.setdefault(field, set())
        if len(values) < self.max_distinct:
            values.add(value)
        elif value not in values:
            self.capped.add(field)
            if self.owner is not None:
                self.owner.value_overflows += 1

    def peak_at(self, value: float) -> float:
        self.peak = max(self.peak, value)
        return self.peak


class Tallies:
    """One Tally per key (a source, an account), least recently active first, at most `cap`: an activity
    idle for more than `gap_s` ends, and the next one starts a new Tally (a repeat of its finding)."""

    def __init__(self, gap_s: float, cap: int = 100_000):
        self.gap_s = gap_s
        self.cap = cap
        self._data: OrderedDict[Hashable, Tally] = OrderedDict()
        self.overflows = 0                    # activities dropped at `cap` (Detector.caps_hit reports both)
        self.value_overflows = 0              # distinct values a Tally did not keep (Tally.max_distinct)

    def get(self, key: Hashable, ts: float) -> Tally | None:
        """The key's activity if it is still going on at `ts`."""
        tally = self._data.get(key)
        return tally if tally is not None and ts - tally.last_ts <= self.gap_s else None

    def start(self, key: Hashable, first_ts: float, ts: float) -> Tally:
        """A new activity of `key` that began at `first_ts` (its first packet) and is seen at `ts`."""
        tally = Tally(first_ts, owner=self)
        tally.last_ts = ts
        data = self._data
        data.pop(key, None)
        while data and ts - next(iter(data.values())).last_ts > self.gap_s:
            data.popitem(last=False)          # ended activities
        data[key] = tally
        while len(data) > self.cap:
            data.popitem(last=False)
            self.overflows += 1
        return tally

    def touch(self, key: Hashable) -> None:
        """The key's activity went on (call after Tally.add): it is now the most recently active."""
        self._data.move_to_end(key)

    def pop(self, key: Hashable) -> Tally | None:
        return self._data.pop(key, None)


class Detector:
    """Base class. Subclasses set name, consumes, alerts, Config and write on_* handlers (generators).

    A detector is one family of checks: its name (= its module's name) is the `family` of its alerts
    and the prefix of their names.
    """
    name: ClassVar[str]
    consumes: ClassVar[tuple[type, ...]]
    alerts: ClassVar[dict[str, AlertSpec]]
    Config: ClassVar[type]

    def __init__(self, config: Any, site: Site):
        self.config = config
        self.site = site

    def idle_reasons(self) -> list[str]:
        """Checks that stay idle until the site model says more (reported once at start-up)."""
        return []

    def alert(self, key: str, *, ts: float, msg: str, identifier: str, src: str | None = None,
              sport: int | None = None, dst: str | None = None, dport: int | None = None,
              vlan: tuple[int, ...] = (), call_id: str | None = None, evidence: dict | None = None,
              severity: str | None = None, first_ts: float | None = None, totals: dict | None = None,
              actors: Iterable[str] | None = None) -> Alert:
        """Raise or update the finding (key, identifier) at capture time `ts`.

        `first_ts`: when the activity began (the first packet of its evidence; default `ts`); the same
        `first_ts` in a later call means the same activity grew, another one a repeat. `totals`: counts of
        this activity so far (e.g. {"requests": 1200}); the finding sums them over its repeats and writes
        them into the evidence. `actors`: who did it, as "ip:ADDR", "account:USER" or "mac:MAC" (default:
        the source address), for grouping into incidents.
        """
        spec = self.alerts[key]
        severity = severity or spec.severity
        if severity not in SEVERITIES:
            raise ValueError(f"{self.name}.{key}: unknown severity {severity!r}")
        evidence = dict(evidence or {})
        for name in evidence:
            if _SECRET_KEY.search(name) and not name.endswith(("_sha256", "_len")):
                raise ValueError(f"{self.name}.{key}: evidence key {name!r} may carry a secret")
        actors = tuple(actors) if actors is not None else ((f"ip:{src}",) if src else ())
        return Alert(ts=ts, family=self.name, name=f"{self.name}.{key}", check=spec.check,
                     severity=severity, guide_ref=spec.guide_ref, msg=msg, identifier=identifier, src=src,
                     sport=sport, dst=dst, dport=dport, vlan=tuple(vlan), call_id=call_id, evidence=evidence,
                     first_ts=ts if first_ts is None else first_ts, totals=dict(totals or {}), actors=actors)

    def finish(self) -> Iterable[Alert]:
        """End of input: alerts that need the whole picture (both paths call it once)."""
        return ()

    def caps_hit(self) -> dict[str, int]:
        """'<detector>.<table>' -> entries its bounded state dropped at its cap (voipwatch.windows: keys
        by BoundedMap/KeyedWindows `overflows`, values by KeyedWindows `value_overflows`); zeros left out."""
        hits = {}
        for attr, state in vars(self).items():
            for suffix, count in (("", getattr(state, "overflows", 0)), (".values", getattr(state, "value_overflows", 0))):
                if isinstance(count, int) and count:
                    hits[f"{self.name}.{attr.lstrip('_')}{suffix}"] = count
        return hits


REGISTRY: dict[str, type[Detector]] = {}


def register(cls: type[Detector]) -> type[Detector]:
    """Check the detector contract and add it to the registry."""
    module_name = cls.__module__.rsplit(".", 1)[-1]
    problems = []
    if getattr(cls, "name", None) != module_name:
        problems.append(f"name must equal its module name {module_name!r}")
    if not cls.__doc__ or not cls.__doc__.strip():
        problems.append("needs a docstring")
    for record_type in getattr(cls, "consumes", ()):
        if not callable(getattr(cls, f"on_{snake(record_type.__name__)}", None)):
            problems.append(f"consumes {record_type.__name__} but has no on_{snake(record_type.__name__)}")
    for key, spec in getattr(cls, "alerts", {}).items():
        if not isinstance(spec, AlertSpec) or spec.severity not in SEVERITIES or not re.fullmatch(r"[a-z0-9_]+", key):
            problems.append(f"alert {key!r} is not a valid AlertSpec")
    config_cls = getattr(cls, "Config", None)
    if not (is_dataclass(config_cls) and config_cls.__dataclass_params__.frozen):
        problems.append("Config must be a frozen dataclass")
    else:
        for f in fields(config_cls):
            if not f.metadata.get("doc"):
                problems.append(f"Config.{f.name} has no opt() doc")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        problems.append("name already registered")
    if problems:
        raise TypeError(f"detector {cls.__name__}: " + "; ".join(problems))
    REGISTRY[cls.name] = cls
    return cls


def load_detectors() -> dict[str, type[Detector]]:
    """Every registered detector by name: the modules of the detectors package, then the site's plugins.

    A plugin is a module named by an entry point of the group `voipwatch.detectors` in any installed
    distribution (pyproject.toml: [project.entry-points."voipwatch.detectors"] name = "package.module");
    importing it runs its @register. A plugin that cannot be imported or breaks the contract is a
    ConfigError that names it.
    """
    _import_detector_modules()
    return dict(sorted(REGISTRY.items()))


@functools.cache
def _import_detector_modules() -> None:
    import detectors                 # the one import of detectors/ outside it (tests/test_layers.py)
    for info in pkgutil.iter_modules(detectors.__path__):
        importlib.import_module(f"detectors.{info.name}")
    for entry in sorted(importlib.metadata.entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        origin = f"detector plugin {entry.name} = {entry.value!r} (from {entry.dist.name if entry.dist else '?'})"
        try:
            importlib.import_module(entry.module)
        except Exception as exc:     # a site's module: any failure is reported, with its origin
            raise ConfigError(f"{origin}: {type(exc).__name__}: {exc}") from exc
        if not any(cls.__module__ == entry.module for cls in REGISTRY.values()):
            raise ConfigError(f"{origin}: the module registers no detector (@register)")


@dataclass(slots=True)
class Finding:
    """One living finding: the raises of one (alert name, identifier) merged while they recur.

    Its addresses (src, dst, ports, VLAN, Call-ID) are those of the first raise, which started it; its
    words and evidence those of the latest, which state the totals so far."""
    id: str
    latest: Alert                  # the latest raise: words, evidence
    where: dict                    # the first raise's addresses
    first_ts: float
    last_ts: float
    raised_ts: float
    severity: int                  # highest so far (index in SEVERITIES)
    episode_ts: float              # first_ts of the current activity
    current: dict                  # totals of the current activity
    banked: Counter                # totals of the earlier activities
    actors: tuple[str, ...]
    incident: Any                  # its group in the incident Grouper
    raises: int = 1
    episodes: int = 1
    reported_ts: float | None = None   # raise time of the last new/update reported
    reported_severity: int = -1

    def merge(self, alert: Alert) -> None:
        start = alert.first_ts if alert.first_ts is not None else alert.ts
        if start != self.episode_ts:
            self.banked.update(self.current)
            self.episodes += 1
            self.episode_ts, self.current = start, {}
        self.current = {k: v for k, v in alert.totals.items()}
        self.latest = alert
        self.first_ts, self.last_ts = min(self.first_ts, start), max(self.last_ts, alert.ts)
        self.severity = max(self.severity, SEVERITIES.index(alert.severity))
        self.raises += 1
        if alert.actors and not set(alert.actors) <= set(self.actors):
            self.actors = tuple(dict.fromkeys(self.actors + alert.actors))[:8]

    def totals(self) -> dict:
        total = Counter(self.banked)
        total.update(self.current)
        return dict(list(total.items())[:MAX_LISTED_TOTALS])

    def as_alert(self, state: str, incident: str | None) -> Alert:
        a, totals, repeats = self.latest, self.totals(), self.episodes - 1
        evidence = {**a.evidence, **totals}
        for key, value in (("first_ts", self.first_ts), ("last_ts", self.last_ts)):
            if key in evidence:
                evidence[key] = value
        msg = a.msg
        if repeats:
            msg += (f" Seen {self.episodes} times from {_clock(self.first_ts)} to {_clock(self.last_ts)} UTC"
                    + (f"; in all: {', '.join(f'{v} {k}' for k, v in totals.items())}." if totals else "."))
        return dataclasses.replace(
            a, **self.where, ts=self.first_ts, first_ts=self.first_ts, last_ts=self.last_ts, raised_ts=self.raised_ts,
            severity=SEVERITIES[self.severity], msg=msg, evidence=evidence, totals=totals, actors=self.actors,
            raises=self.raises, repeats=repeats, state=state, incident=incident)


def _clock(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


class DetectorBus:
    """A pipeline sink that feeds the detectors one timeline and keeps their findings (see the module
    docstring): `on_alert` gets every reported state of every finding at or above `min_severity`."""

    def __init__(self, detectors: list[Detector], on_alert: Callable[[Alert], None], mode: str,
                 rtp_idle_s: float, call_idle_s: float, suppress_for_s: float, horizon_s: float = 5.0,
                 call_linger_s: float = 64.0, update_every_s: float = 60.0, incident_gap_s: float = 3600.0,
                 min_severity: str = "info", site: Site | None = None):
        self.detectors = detectors
        self.on_alert = on_alert
        self.mode = mode
        self.timing = Timing(rtp_idle_s, call_idle_s, call_linger_s)
        self.suppress_for_s = suppress_for_s
        self.update_every_s = update_every_s
        self.floor = SEVERITIES.index(min_severity)
        self.horizon_s = horizon_s
        self.suppressed = 0                           # raises merged into an open finding
        self.closed_early = 0                         # findings closed by MAX_OPEN_FINDINGS
        self.grouper = Grouper(site, incident_gap_s)
        self._released: Counter[type] = Counter()    # records handed to the detectors, by type
        self._heap: list = []
        self._seq = 0
        self._open: OrderedDict[tuple[str, str], Finding] = OrderedDict()   # least recently raised first
        self._phases = {f"{d.name}.{k}": spec.phase for d in detectors for k, spec in getattr(d, "alerts", {}).items()}
        self._handlers: dict[type, list[Callable]] = {}
        # The site model learns where hosts live (voipwatch.places) from HostSeen, before any detector
        # sees the record, whichever detectors run.
        for site in {id(det.site): det.site for det in detectors if getattr(det, "site", None) is not None}.values():
            site.new_places()
            self._handlers.setdefault(HostSeen, []).append(site.observe_host)
        for det in detectors:
            for record_type in det.consumes:
                if record_type not in RECORDS:
                    raise TypeError(f"detector {det.name} consumes {record_type.__name__}, which is no declared "
                                    f"record (voipwatch.records.declare)")
                self._handlers.setdefault(record_type, []).append(getattr(det, f"on_{snake(record_type.__name__)}"))
        # record type -> (its timeline function, its rank), for the types some detector consumes
        self._timeline = {t: (RECORDS[t].timeline, RECORDS[t].rank) for t in self._handlers}

    # -- Sink -------------------------------------------------------------------------------
    def emit(self, record: Any) -> None:
        declared = self._timeline.get(type(record))
        if declared is None:                  # no detector consumes it
            return
        timeline, rank = declared
        release_ts, frame = timeline(record, self.timing)
        self._seq += 1
        heapq.heappush(self._heap, (release_ts, rank, frame, self._seq, record))

    def tick(self, now: float) -> None:
        if self.mode == "stream":
            self._release(now - self.horizon_s)

    def finish(self) -> None:
        self._release(float("inf"))
        for det in self.detectors:
            self._report(det.finish())
        while self._open:
            self._close(self._open.popitem(last=False)[1])

    def caps_hit(self) -> dict[str, int]:
        """Every detector's cap hits (Detector.caps_hit), by '<detector>.<table>'."""
        return {k: v for det in self.detectors for k, v in sorted(det.caps_hit().items())}

    def records_delivered(self) -> dict[str, dict[str, int]]:
        """Detector name -> record type name -> records delivered to it so far (shows that it ran)."""
        return {det.name: {t.__name__: self._released[t] for t in det.consumes} for det in self.detectors}

    def incidents(self):
        """The incidents so far (voipwatch.incidents.Incident), in time order."""
        return self.grouper.incidents()

    # -- internals --------------------------------------------------------------------------
    def _release(self, until: float) -> None:
        heap, released, findings = self._heap, self._released, self._open
        while heap and heap[0][0] <= until:
            release_ts, _, _, _, record = heapq.heappop(heap)
            # Findings idle for suppress_for_s of timeline time close here, on the record's own release
            # time: the same point of the same sequence in both paths.
            while findings and release_ts - next(iter(findings.values())).last_ts > self.suppress_for_s:
                self._close(findings.popitem(last=False)[1])
            released[type(record)] += 1
            for handler in self._handlers[type(record)]:
                self._report(handler(record))

    def _report(self, alerts: Iterable[Alert] | None) -> None:
        for alert in alerts or ():
            key = (alert.name, alert.identifier)
            finding = self._open.get(key)
            if finding is not None and alert.ts - finding.last_ts > self.suppress_for_s:
                self._close(self._open.pop(key))
                finding = None
            if finding is None:
                start = alert.first_ts if alert.first_ts is not None else alert.ts
                fid = finding_id(alert.name, alert.identifier, alert.ts)
                group = self.grouper.add(fid, alert.name, alert.check, self._phases.get(alert.name), alert.severity,
                                         start, alert.ts, alert.actors, alert.dst)
                where = {k: getattr(alert, k) for k in ("src", "sport", "dst", "dport", "vlan", "call_id")}
                finding = Finding(fid, alert, where, start, alert.ts, alert.ts, SEVERITIES.index(alert.severity), start,
                                  dict(alert.totals), Counter(), alert.actors, group)
                self._open[key] = finding
                if len(self._open) > MAX_OPEN_FINDINGS:
                    self.closed_early += 1
                    self._close(self._open.popitem(last=False)[1])
            else:
                self.suppressed += 1
                finding.merge(alert)
                finding.incident = self.grouper.grow(
                    finding.incident, alert.name, alert.check, self._phases.get(alert.name), alert.severity,
                    finding.first_ts, finding.last_ts, finding.actors, alert.dst)
                self._open.move_to_end(key)
            self._maybe_report(finding, alert.ts)

    def _maybe_report(self, finding: Finding, ts: float) -> None:
        if finding.severity < self.floor:
            return
        if finding.reported_ts is None:
            state = "new"
        elif finding.severity > finding.reported_severity or ts - finding.reported_ts >= self.update_every_s:
            state = "update"
        else:
            return
        finding.reported_ts, finding.reported_severity = ts, finding.severity
        self.on_alert(finding.as_alert(state, self.grouper.root(finding.incident).id))

    def _close(self, finding: Finding) -> None:
        if finding.severity >= self.floor:
            self.on_alert(finding.as_alert("final", self.grouper.root(finding.incident).id))
