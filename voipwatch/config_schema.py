"""How a setting is declared, checked and read: the schema toolkit under voipwatch.config.

Every knob is `opt(default, doc)` on a frozen dataclass; `build` applies overrides from a TOML file
(read with stdlib tomllib) or --set, checking each value against its field's type. Unknown keys are
errors that name the valid ones. The configuration sections themselves live beside their users
(voipwatch.config, voipwatch.site, each detector's Config).
"""
from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration file or override that does not fit the schema."""


def opt(default: Any, doc: str):
    """A configuration field: its default and the one line that documents it."""
    if isinstance(default, (list, tuple, dict, set)):
        return field(default_factory=lambda: default, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


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
