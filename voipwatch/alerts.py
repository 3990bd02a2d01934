"""Alerts as EVE-like JSON lines: common fields first, then an "alert" object (Suricata's eve.json shape)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Iterable

from voipwatch.records import Alert
from voipwatch.safe_text import json_line


def alert_event(alert: Alert) -> dict:
    """One alert as an EVE-like event. `ts` is capture time (epoch seconds), `timestamp` the same in ISO 8601."""
    return {
        "timestamp": datetime.fromtimestamp(alert.ts, tz=timezone.utc).isoformat(timespec="microseconds"),
        "ts": round(alert.ts, 6),
        "event_type": "alert",
        "src": alert.src, "sport": alert.sport, "dst": alert.dst, "dport": alert.dport,
        "vlan": list(alert.vlan),
        "call_id": alert.call_id,
        "alert": {
            "family": alert.family, "name": alert.name, "check": alert.check, "severity": alert.severity,
            "guide_ref": alert.guide_ref, "msg": alert.msg, "identifier": alert.identifier,
            "evidence": alert.evidence,
        },
    }


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
