"""Whether two shapes of the same traffic gave the same answers, from tshark and from voipwatch.

A shape changes the framing only, so every output must be the same as on the original, except for
what the framing itself changes, which is mapped back before comparing:

- IPv6 shapes: the addresses (map_back_ipv6); a SIP message's body length, which grows with the
  longer SDP addresses (`IN IP6 fd00:4:6::a6e:2` instead of `IN IP4 10.110.0.2`); and the order of
  an address pair that an alert writes in text order ("between A and B", "A<->B"), which the
  longer addresses change (both sides are put in one order);
- link layers without VLAN tags (raw IP, null, loopback): the VLAN stack, blanked on both sides;
- QinQ: the two tags pushed in front of every frame's own, removed again.

summary.json is compared without run_s (wall-clock time) and inputs (the file names).
"""
from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

from shapes import QINQ_INNER, QINQ_OUTER, Shape, map_back_ipv6

VOLATILE_SUMMARY_KEYS = ("run_s", "inputs")
IPV6_LENGTH_COLUMNS = ("body_len",)          # sip_messages: SIP body bytes, SDP addresses included
_QINQ = [QINQ_OUTER, QINQ_INNER]
_QINQ_TEXT = f"{QINQ_OUTER}/{QINQ_INNER}"
_IP4 = r"\d{1,3}(?:\.\d{1,3}){3}"
_PAIRS = (re.compile(rf"(?P<a>{_IP4})(?P<sep><->)(?P<b>{_IP4})"),
          re.compile(rf"(?<=between )(?P<a>{_IP4})(?P<sep> and )(?P<b>{_IP4})"))
# incidents.csv: finding and incident ids are hashes of content that holds the addresses
HASHED_ID_COLUMNS = ("id", "findings", "merged_ids")
DERIVED_FROM_ALERTS = ("incidents.csv",)


def _pair_order(text: str) -> str:
    """An IPv4 address pair written in text order, in one fixed order."""
    for pattern in _PAIRS:
        text = pattern.sub(lambda m: m["sep"].join(sorted((m["a"], m["b"]))), text)
    return text


def _ipv6_text(text: str, theirs: bool) -> str:
    return _pair_order(map_back_ipv6(text) if theirs else text)


def _vlan_text(value: str, shape: Shape, theirs: bool) -> str:
    if shape.vlan == "drop":
        return ""
    if shape.vlan == "qinq" and theirs:
        return value[len(_QINQ_TEXT) + 1:] if value.startswith(_QINQ_TEXT + "/") else \
            ("" if value == _QINQ_TEXT else value)
    return value


def _value(value, shape: Shape, theirs: bool, key: str | None = None):
    """One JSON value, normalised (theirs: it comes from the shape, not from the original)."""
    if key in ("id", "incident") and isinstance(value, str) and value[:2] in ("F-", "I-"):
        return "(id)"           # finding and incident ids hash content that holds the addresses
    if key == "vlan" and isinstance(value, list):
        if shape.vlan == "drop":
            return []
        if shape.vlan == "qinq" and theirs and value[:2] == _QINQ:
            return value[2:]
        return value
    if isinstance(value, dict):
        return {k: _value(v, shape, theirs, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_value(v, shape, theirs) for v in value]
    if isinstance(value, str) and shape.ipv6:
        return _ipv6_text(value, theirs)
    return value


def _csv_rows(path: Path, shape: Shape, theirs: bool) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return rows
    header = rows[0]
    vlan = header.index("vlan") if "vlan" in header else None
    hashed = [i for i, name in enumerate(header) if name in HASHED_ID_COLUMNS] if path.name == "incidents.csv" else []
    lengths = [i for i, name in enumerate(header) if name in IPV6_LENGTH_COLUMNS] if shape.ipv6 else []
    out = [header]
    for row in rows[1:]:
        if shape.ipv6:
            row = [_ipv6_text(cell, theirs) for cell in row]
        if vlan is not None and vlan < len(row):
            row[vlan] = _vlan_text(row[vlan], shape, theirs)
        for i in lengths:
            if i < len(row):
                row[i] = "(length)"
        for i in hashed:
            if i < len(row):
                row[i] = "(ids)"
        out.append(row)
    return out


def normalised_outputs(outdir: Path, shape: Shape, theirs: bool) -> dict[str, object]:
    """Every output file of one voipwatch run, parsed and normalised for this shape."""
    files: dict[str, object] = {}
    for path in sorted(outdir.iterdir()):
        if path.suffix == ".csv":
            files[path.name] = _csv_rows(path, shape, theirs)
        elif path.suffix == ".jsonl":
            with open(path, encoding="utf-8") as f:
                files[path.name] = [_value(json.loads(line), shape, theirs) for line in f if line.strip()]
        elif path.name == "summary.json":
            summary = json.loads(path.read_text(encoding="utf-8"))
            for key in VOLATILE_SUMMARY_KEYS:
                summary.pop(key, None)
            files[path.name] = _value(summary, shape, theirs)
        else:
            files[path.name] = path.read_bytes()
    return files


def compare_outputs(reference: Path, other: Path, shape: Shape) -> dict:
    """What differs between two runs' normalised outputs: `tables` (the CSV tables) and `others`
    (alerts.jsonl, summary.json, ...) name each differing file with its first differing row;
    `alerts` counts the alerts by name that only one side raised (+ the shape, - the original)."""
    ref = normalised_outputs(reference, shape, theirs=False)
    got = normalised_outputs(other, shape, theirs=True)
    tables, others = [], []
    for name in sorted(ref.keys() | got.keys()):
        a, b = ref.get(name), got.get(name)
        if a == b:
            continue
        if a is None or b is None:
            what = f"{name} (only in {'the shape' if a is None else 'the original'})"
        elif isinstance(a, list) and isinstance(b, list):
            first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            what = f"{name} (row {first + 1} of {len(a)} vs {len(b)})"
        else:
            what = name
        # incidents.csv is made from the alerts (voipwatch.incidents), so it is judged with them
        (tables if name.endswith(".csv") and name not in DERIVED_FROM_ALERTS else others).append(what)
    names = Counter(_alert_names(got.get("alerts.jsonl")))
    names.subtract(_alert_names(ref.get("alerts.jsonl")))
    return dict(tables=tables, others=others, alerts={k: v for k, v in sorted(names.items()) if v})


def _alert_names(records) -> list[str]:
    return [r.get("alert", {}).get("name", "?") for r in records or () if isinstance(r, dict)]


def map_streams(streams: dict[tuple, dict], shape: Shape) -> dict[tuple, dict]:
    """tshark rtp,streams keyed (src, sport, dst, dport, ssrc), addresses mapped back for IPv6."""
    if not shape.ipv6:
        return streams
    return {(map_back_ipv6(k[0]), k[1], map_back_ipv6(k[2]), k[3], k[4]): v for k, v in streams.items()}


def compare_streams(reference: dict[tuple, dict], other: dict[tuple, dict], shape: Shape) -> str | None:
    """None when the shape's streams (packets, lost) are the original's, else what differs."""
    if shape.ipv6:
        ipv4 = sum(1 for k in other if ":" not in k[0] or ":" not in k[2])
        if ipv4:
            return f"{ipv4} of {len(other)} streams have IPv4 addresses in the IPv6 shape"
    mapped = map_streams(other, shape)
    figures = lambda s: {k: (v["packets"], v["lost"]) for k, v in s.items()}      # noqa: E731
    a, b = figures(reference), figures(mapped)
    if a == b:
        return None
    missing, extra = len(a.keys() - b.keys()), len(b.keys() - a.keys())
    differ = sum(1 for k in a.keys() & b.keys() if a[k] != b[k])
    return f"{len(b)} streams vs {len(a)}: {missing} missing, {extra} extra, {differ} with other packets/lost"
