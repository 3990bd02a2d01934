"""Alerts as EVE-like JSON lines: common fields first, then an "alert" object (Suricata's eve.json shape)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Iterable

from voipwatch.incidents import finding_id
from voipwatch.records import Alert
from voipwatch.safe_text import json_line


def alert_event(alert: Alert) -> dict:
    """One finding as an EVE-like event. `ts` is the capture time (epoch seconds) at which its activity
    began (the first packet of its evidence), `timestamp` the same in ISO 8601, `last_ts` its latest
    activity and `raised_ts` the capture time at which a detector first raised it; `alert.state` is
    new, update or final (voipwatch.detect, living findings)."""
    return {
        "timestamp": datetime.fromtimestamp(alert.ts, tz=timezone.utc).isoformat(timespec="microseconds"),
        "ts": round(alert.ts, 6),
        "last_ts": _r6(alert.last_ts),
        "raised_ts": _r6(alert.raised_ts),
        "event_type": "alert",
        "src": alert.src, "sport": alert.sport, "dst": alert.dst, "dport": alert.dport,
        "vlan": list(alert.vlan),
        "call_id": alert.call_id,
        "incident": alert.incident,
        "alert": {
            "family": alert.family, "name": alert.name, "check": alert.check, "severity": alert.severity,
            "guide_ref": alert.guide_ref, "msg": alert.msg, "identifier": alert.identifier,
            "id": finding_id(alert.name, alert.identifier, alert.raised_ts if alert.raised_ts is not None else alert.ts),
            "state": alert.state, "raises": alert.raises, "repeats": alert.repeats,
            "actors": list(alert.actors), "totals": dict(alert.totals),
            "evidence": alert.evidence,
        },
    }


def _r6(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def alert_line(alert: Alert) -> str:
    """One alert as a JSON line (no line end), as alerts.jsonl and monitor --alerts-stdout write it:
    UTF-8, with controls and other invisible characters escaped (safe_text.json_line)."""
    return json_line(alert_event(alert), sort_keys=False, default=_jsonable)


def dump_alert(alert: Alert, fh: IO[str]) -> None:
    fh.write(alert_line(alert) + "\n")


def write_alerts(alerts: Iterable[Alert], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for alert in alerts:
            dump_alert(alert, fh)


def _jsonable(value):
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    return str(value)
