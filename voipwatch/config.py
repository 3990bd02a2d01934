"""Every setting of a run, from one TOML file plus --set overrides: pipeline, site model, detectors, alerts.

Sections: [pipeline], [alerts], [site], [zones.<zone>], [roles], [dialplan], [detectors.<name>].
Unknown sections and keys are errors that name the valid ones. `render_toml` prints the effective
configuration with each setting's documentation (`voipwatch config show`). How a setting is
declared and checked is voipwatch.config_schema's (opt, build).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

from dissectors import dispatch
from voipwatch.config_schema import ConfigError, build, load_toml, merge, opt, parse_set
from voipwatch.detect import SEVERITIES, Detector, load_detectors
from voipwatch.site import ZONE_NAMES, DialplanConfig, RolesConfig, Site, SiteConfig, ZoneConfig


@dataclass(frozen=True)
class PipelineConfig:
    """Decoding, correlation and state limits shared by analyze and monitor."""
    rtp_idle_timeout_s: float = opt(60.0, "An RTP stream idle this long (capture time) is closed; a later packet starts a new segment.")
    max_rtp_streams: int = opt(200_000, "Cap on RTP streams tracked at once; the oldest is closed when hit (counted).")
    max_media_expectations: int = opt(100_000, "Cap on SDP-announced media endpoints remembered at once (counted when hit).")
    max_calls: int = opt(100_000, "Cap on calls tracked at once; the oldest is closed when hit (counted).")
    call_idle_s: float = opt(3600.0, "A call with no SIP for this long (capture time) is closed.")
    call_linger_s: float = opt(64.0, "An ended call is closed this long after its last message (RFC 3261 64*T1).")
    registration_idle_s: float = opt(7200.0, "A registration row with no REGISTER traffic for this long is closed.")
    max_registrations: int = opt(200_000, "Cap on (address-of-record, source, VLAN) registration rows tracked at once.")
    max_register_transactions: int = opt(200_000, "Cap on REGISTER transactions remembered to match their responses.")
    tcp_idle_s: float = opt(300.0, "A TCP flow direction idle this long is forgotten (its next data is sniffed anew).")
    max_tcp_flows: int = opt(50_000, "Cap on TCP flows reassembled at once (oldest evicted, counted).")
    media_binding_max_s: float = opt(21600.0, "An SDP-announced media endpoint stays bound to its call this long after its SDP.")
    sighting_idle_s: float = opt(3600.0, "A flow or host unseen this long counts as a new sighting (and is forgotten).")
    max_flows: int = opt(200_000, "Cap on flow directions remembered for first-sighting records (LRU, counted).")
    max_hosts: int = opt(100_000, "Cap on (MAC, IP, VLAN) host sightings remembered (LRU, counted).")
    rtp_heuristic: bool = opt(True, "Find RTP on flows SDP did not announce by a header heuristic (flagged negotiated=false).")
    deduplicate: bool = opt(True, "Drop copies of one IP packet seen on several VLANs or ports of a SPAN (same IP id, addresses, ports and payload; counted as duplicates).")
    dedup_window_s: float = opt(0.01, "Capture seconds after a copy of a packet within which another copy counts as a duplicate.")
    max_dedup_held: int = opt(100_000, "Cap on frames held, and on packet keys remembered, for deduplication (counted when hit).")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("max_") and value < 1:
                raise ConfigError(f"[pipeline] {f.name}: must be at least 1, got {value!r}")
            if f.name.endswith("_s") and value < 0:
                raise ConfigError(f"[pipeline] {f.name}: must not be negative, got {value!r}")



@dataclass(frozen=True)
class AlertsConfig:
    """Alert output."""
    suppress_for_s: float = opt(3600.0, "Raises of one alert name and identifier within this many capture seconds of the last one update one finding; a finding idle this long is final.")
    update_every_s: float = opt(60.0, "Streaming: a growing finding is reported again (state update) at most this often in capture seconds, and at once when its severity rises.")
    incident_gap_s: float = opt(3600.0, "Findings sharing an actor (address, account, MAC) within this many capture seconds form one incident.")
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
    try:
        dispatch.udp_entries()       # a site's dissectors load first: its detectors may consume their records
    except dispatch.PluginError as exc:
        raise ConfigError(str(exc)) from exc
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
