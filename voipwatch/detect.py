"""The detector framework: one class per detector file, records in, alerts out, capture time only.

A detector declares the records it consumes (a handler `on_<record_in_snake_case>` each), the alerts
it may raise (a stable key per alert, with its NSA check id, severity and guide section) and a frozen
`Config` dataclass whose fields are `opt(default, doc)`. `@register` checks that contract. The registry
is open: `load_detectors` imports every module of the detectors package and every module a site
declares under the entry point group `voipwatch.detectors`; nothing else lists the detectors.

The DetectorBus is the sink that feeds detectors. It delivers every record in one timeline order,
by the capture time at which the record is complete (a packet's own time; an RTP stream's last
packet plus the idle timeout; a call's last message plus the call idle time), then record rank, then
frame, as each record type declares them (voipwatch.records.declare). In batch mode it holds records
until the end of input; in stream mode it releases them `horizon_s` behind the capture clock. Either
way detectors see the same sequence, so the batch and streaming paths raise the same alerts.
"""
from __future__ import annotations

import functools
import heapq
import importlib
import importlib.metadata
import pkgutil
import re
from collections import Counter
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Callable, ClassVar, Iterable

from voipwatch.config_schema import ConfigError
from voipwatch.records import RECORDS, Alert, HostSeen, Timing
from voipwatch.site import Site

MAX_SUPPRESSION_KEYS = 100_000      # (name, identifier) pairs remembered for suppression before pruning
PRUNE_EVERY = 1_000                 # alerts between prunes of expired suppression entries
SEVERITIES = ("info", "low", "medium", "high", "critical")
PLUGIN_GROUP = "voipwatch.detectors"  # entry point group of detectors shipped outside this package
# Evidence keys that could carry a secret; only "<name>_sha256" and "<name>_len" forms are allowed.
_SECRET_KEY = re.compile(r"(password|passwd|secret|inline|srtp_key|digest_response|^response$|^key$|community)", re.I)


@dataclass(frozen=True)
class AlertSpec:
    check: str                   # nsa-checks.md id, e.g. "RF-03"
    severity: str                # default severity (a detector may raise or lower it per alert)
    guide_ref: str               # NSA guide part and heading, e.g. "Part III: User accounts and passwords"
    title: str                   # what the alert means, one line


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


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
              severity: str | None = None) -> Alert:
        spec = self.alerts[key]
        severity = severity or spec.severity
        if severity not in SEVERITIES:
            raise ValueError(f"{self.name}.{key}: unknown severity {severity!r}")
        evidence = dict(evidence or {})
        for name in evidence:
            if _SECRET_KEY.search(name) and not name.endswith(("_sha256", "_len")):
                raise ValueError(f"{self.name}.{key}: evidence key {name!r} may carry a secret")
        return Alert(ts=ts, family=self.name, name=f"{self.name}.{key}", check=spec.check,
                     severity=severity, guide_ref=spec.guide_ref, msg=msg, identifier=identifier, src=src,
                     sport=sport, dst=dst, dport=dport, vlan=tuple(vlan), call_id=call_id, evidence=evidence)

    def finish(self) -> Iterable[Alert]:
        """End of input: alerts that need the whole picture (both paths call it once)."""
        return ()


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


class DetectorBus:
    """A pipeline sink that feeds the detectors one timeline, suppresses repeats and reports alerts."""

    def __init__(self, detectors: list[Detector], on_alert: Callable[[Alert], None], mode: str,
                 rtp_idle_s: float, call_idle_s: float, suppress_for_s: float, horizon_s: float = 5.0,
                 call_linger_s: float = 64.0):
        self.detectors = detectors
        self.on_alert = on_alert
        self.mode = mode
        self.timing = Timing(rtp_idle_s, call_idle_s, call_linger_s)
        self.suppress_for_s = suppress_for_s
        self.horizon_s = horizon_s
        self.suppressed = 0
        self._released: Counter[type] = Counter()    # records handed to the detectors, by type
        self._heap: list = []
        self._seq = 0
        self._last_alert: dict[tuple[str, str], float] = {}
        self._alerts_since_prune = 0
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

    def records_delivered(self) -> dict[str, dict[str, int]]:
        """Detector name -> record type name -> records delivered to it so far (shows that it ran)."""
        return {det.name: {t.__name__: self._released[t] for t in det.consumes} for det in self.detectors}

    # -- internals --------------------------------------------------------------------------
    def _release(self, until: float) -> None:
        heap, released = self._heap, self._released
        while heap and heap[0][0] <= until:
            record = heapq.heappop(heap)[4]
            released[type(record)] += 1
            for handler in self._handlers[type(record)]:
                self._report(handler(record))

    def _report(self, alerts: Iterable[Alert] | None) -> None:
        for alert in alerts or ():
            key = (alert.name, alert.identifier)
            last = self._last_alert.get(key)
            if last is not None and 0 <= alert.ts - last < self.suppress_for_s:
                self.suppressed += 1
                continue
            self._last_alert[key] = alert.ts
            self._alerts_since_prune += 1
            if self._alerts_since_prune >= PRUNE_EVERY or len(self._last_alert) > MAX_SUPPRESSION_KEYS:
                # entries older than the window can no longer suppress anything
                self._alerts_since_prune = 0
                horizon = alert.ts - self.suppress_for_s
                self._last_alert = {k: t for k, t in self._last_alert.items() if t >= horizon}
            self.on_alert(alert)
