"""Configuration: typed defaults with a doc line at their point of use, overridden by one TOML file.

Every knob is `opt(default, doc)` on a frozen dataclass. A TOML file (read with stdlib tomllib)
overrides only what differs; unknown sections or keys are errors that name the valid ones.
"""
from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration file or override that does not fit the schema."""


def opt(default: Any, doc: str):
    """A configuration field: its default and the one line that documents it."""
    if isinstance(default, (list, tuple, dict, set)):
        return field(default_factory=lambda: default, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


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

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("max_") and value < 1:
                raise ConfigError(f"[pipeline] {f.name}: must be at least 1, got {value!r}")
            if f.name.endswith("_s") and value < 0:
                raise ConfigError(f"[pipeline] {f.name}: must not be negative, got {value!r}")


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check a TOML value against a field annotation; lists become tuples."""
    origin = typing.get_origin(annotation)
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_type, *_) = typing.get_args(annotation) or (Any,)
        return tuple(_coerce(v, item_type, where) for v in value)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            if option is type(None) and value is None:
                return None
            try:
                return _coerce(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} does not fit {annotation}")
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float, str, bool) and not (isinstance(value, annotation) and
                                                      (annotation is bool or not isinstance(value, bool))):
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")
    return value


def build(cls: type, overrides: dict[str, Any], where: str):
    """An instance of config dataclass `cls` with `overrides` applied, validated."""
    hints = typing.get_type_hints(cls)
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ConfigError(f"[{where}]: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(valid))}")
    values = {k: _coerce(v, hints[k], f"[{where}] {k}") for k, v in overrides.items()}
    return dataclasses.replace(cls(), **values)


def load_toml(path: str | Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except UnicodeDecodeError as exc:           # TOML is UTF-8 (toml.io v1.0.0)
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from exc


def parse_set(assignments: tuple[str, ...]) -> dict[str, Any]:
    """`section.key=value` overrides (Suricata's --set) as a nested dict; values are TOML literals."""
    tree: dict[str, Any] = {}
    for item in assignments:
        dotted, sep, raw = item.partition("=")
        if not sep or "." not in dotted:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        *sections, key = dotted.split(".")
        node = tree
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = value
    return tree


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out
