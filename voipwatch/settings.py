"""Every setting of a run, from one TOML file plus --set overrides: pipeline, site model, detectors, alerts.

Sections: [pipeline], [alerts], [site], [zones.<zone>], [roles], [dialplan], [detectors.<name>].
Unknown sections and keys are errors that name the valid ones. `render_toml` prints the effective
configuration with each setting's documentation (`voipwatch config show`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

from voipwatch.config import ConfigError, PipelineConfig, build, load_toml, merge, opt, parse_set
from voipwatch.detect import SEVERITIES, Detector, load_detectors
from voipwatch.site import ZONE_NAMES, DialplanConfig, RolesConfig, Site, SiteConfig, ZoneConfig


@dataclass(frozen=True)
class AlertsConfig:
    """Alert output."""
    suppress_for_s: float = opt(3600.0, "Repeats of one alert name and identifier within this many capture seconds are suppressed.")
    min_severity: str = opt("info", "Alerts below this severity are not written (info, low, medium, high, critical).")


@dataclass
class Settings:
    pipeline: PipelineConfig
    alerts: AlertsConfig
    site: Site
    detector_configs: dict[str, Any]
    enabled: dict[str, bool]
    tree: dict

    def detectors(self) -> list[Detector]:
        registry = load_detectors()
        return [registry[name](self.detector_configs[name], self.site)
                for name in registry if self.enabled.get(name, True)]


TOP_LEVEL = ("pipeline", "alerts", "site", "zones", "roles", "dialplan", "detectors")


def load_settings(path: str | None = None, sets: tuple[str, ...] = ()) -> Settings:
    tree = merge(load_toml(path), parse_set(sets))
    unknown = sorted(set(tree) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"unknown section(s) {', '.join(unknown)}; valid sections: {', '.join(TOP_LEVEL)}")
    pipeline = build(PipelineConfig, tree.get("pipeline", {}), "pipeline")
    alerts = build(AlertsConfig, tree.get("alerts", {}), "alerts")
    if alerts.min_severity not in SEVERITIES:
        raise ConfigError(f"[alerts] min_severity: {alerts.min_severity!r} is not one of {', '.join(SEVERITIES)}")
    site = Site({k: tree[k] for k in ("site", "zones", "roles", "dialplan") if k in tree})
    registry = load_detectors()
    sections = tree.get("detectors", {})
    unknown = sorted(set(sections) - set(registry))
    if unknown:
        raise ConfigError(f"[detectors]: unknown detector(s) {', '.join(unknown)}; valid: {', '.join(registry)}")
    configs, enabled = {}, {}
    for name, cls in registry.items():
        section = dict(sections.get(name, {}))
        enabled[name] = bool(section.pop("enabled", True))
        configs[name] = build(cls.Config, section, f"detectors.{name}")
    return Settings(pipeline, alerts, site, configs, enabled, tree)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def _section(title: str, doc: str | None, config: Any, extra: list[str] = ()) -> list[str]:
    lines = [f"[{title}]"]
    if doc:
        lines.insert(0, f"# {doc.strip().splitlines()[0]}")
    lines += list(extra)
    for f in fields(config):
        lines.append(f"# {f.metadata.get('doc', '')}")
        lines.append(f"{f.name} = {_value(getattr(config, f.name))}")
    return lines + [""]


def render_toml(settings: Settings) -> str:
    """The effective configuration as TOML, each setting preceded by its documentation."""
    out = ["# voipwatch effective configuration (voipwatch config show)", ""]
    out += _section("pipeline", PipelineConfig.__doc__, settings.pipeline)
    out += _section("alerts", AlertsConfig.__doc__, settings.alerts)
    out += _section("site", SiteConfig.__doc__, settings.site.site)
    for zone in ZONE_NAMES:
        out += _section(f"zones.{zone}", ZoneConfig.__doc__ if zone == ZONE_NAMES[0] else None,
                        settings.site.zones[zone])
    out += _section("roles", RolesConfig.__doc__, settings.site.roles)
    out += _section("dialplan", DialplanConfig.__doc__, settings.site.dialplan)
    for name, cls in load_detectors().items():
        det = cls(settings.detector_configs[name], settings.site)
        extra = ["# Whether this detector runs.", f"enabled = {_value(settings.enabled[name])}"]
        extra += [f"# IDLE until configured: {reason}" for reason in det.idle_reasons()]
        out += _section(f"detectors.{name}", cls.__doc__, settings.detector_configs[name], extra)
    return "\n".join(out)
