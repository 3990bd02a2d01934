"""The project's own promises, checked: detector contract, documentation, golden coverage, CLI help, one clock."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import click
import pytest

from voipwatch.cli import cli
from voipwatch.detect import load_detectors

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
# The detectors this repository ships (and documents); a site's plugins are documented by the site.
DETECTORS = {name: cls for name, cls in load_detectors().items() if cls.__module__ == f"detectors.{name}"}


def _golden_alert_expectations() -> list[tuple[str, int]]:
    found = []
    for spec_file in (REPO / "tests" / "golden").glob("*/test.toml"):
        spec = tomllib.loads(spec_file.read_text(encoding="utf-8"))
        found += [(a["name"], a.get("count", 1)) for a in spec.get("alerts", [])]
    return found


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_detector_is_documented_in_the_readme(name):
    cls = DETECTORS[name]
    assert f"### {name}" in README, f"README needs a '### {name}' section"
    for key in cls.alerts:
        assert f"{name}.{key}" in README, f"README does not name alert {name}.{key}"


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_every_check_has_a_positive_and_a_negative_golden_case(name):
    cls = DETECTORS[name]
    expectations = _golden_alert_expectations()
    for check in sorted({spec.check for spec in cls.alerts.values()}):
        names = {f"{name}.{key}" for key, spec in cls.alerts.items() if spec.check == check}
        assert any(n in names and c >= 1 for n, c in expectations), f"{check}: no positive golden case"
        assert any(n in names and c == 0 for n, c in expectations), f"{check}: no negative golden case"


def _commands(group: click.Group, prefix: str = ""):
    for name, command in group.commands.items():
        yield f"{prefix}{name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")


@pytest.mark.parametrize("name,command", list(_commands(cli)))
def test_every_command_has_help_with_an_example(name, command):
    if isinstance(command, click.Group):
        assert command.help
    else:
        assert command.help and re.search(r"^\s*Examples?:\n\n\s+voipwatch " + name, command.help, re.M), \
            f"voipwatch {name}: help needs an Example: block"


def test_no_wall_clock_where_capture_time_rules():
    pattern = re.compile(r"time\.time\(|datetime\.now\(|datetime\.utcnow\(|time\.monotonic\(")
    places = list((REPO / "dissectors").glob("*.py")) + list((REPO / "detectors").glob("*.py")) + [
        REPO / "voipwatch" / name for name in ("sessions.py", "rtpstats.py", "media.py", "pipeline.py",
                                                "detect.py", "windows.py", "flows.py")]
    offenders = [f"{p.name}:{i}" for p in places for i, line in enumerate(p.read_text().splitlines(), 1)
                 if pattern.search(line)]
    assert not offenders


def test_every_module_of_detectors_is_one_registered_family():
    """The registry is the list: a new family is a file in detectors/, found without being named anywhere."""
    modules = {p.stem for p in (REPO / "detectors").glob("*.py") if p.stem != "__init__"}
    assert set(DETECTORS) == modules
    assert {"unencrypted_media", "toll_fraud", "registration_flood", "cross_vlan"} <= modules
