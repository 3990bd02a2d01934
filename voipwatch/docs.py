"""The README's frame classes and anomaly names, rendered from where the code declares them.

    python -m voipwatch.docs            rewrite the section of README.md between the markers
    python -m voipwatch.docs --check    exit 1 when that section is out of step with the code

Declarations: each module of the dissectors package declares the anomaly names it produces
(ANOMALIES: name -> meaning); dissectors.net the frame classes of frames that are not UDP or TCP
(BUCKETS); dissectors.dispatch those of UDP and TCP (a site's dissector modules, entry point group
voipwatch.dissectors, included); voipwatch.capture and voipwatch.pipeline their own anomaly names. tests/test_declarations.py holds the code and the README to them.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

import dissectors
from dissectors import dispatch, net
from voipwatch import capture, pipeline

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN = "<!-- BEGIN declared names: written by `python -m voipwatch.docs` from the code; do not edit -->"
END = "<!-- END declared names -->"


def dissector_modules() -> list:
    """Every module of the dissectors package, imported."""
    return [importlib.import_module(f"dissectors.{info.name}") for info in pkgutil.iter_modules(dissectors.__path__)]


def anomalies() -> dict[str, str]:
    """Every declared anomaly name with its meaning, sorted by name."""
    found: dict[str, str] = {}
    for module in [*dissector_modules(), *dispatch.site_modules(), capture, pipeline]:
        for name, meaning in getattr(module, "ANOMALIES", {}).items():
            if found.setdefault(name, meaning) != meaning:
                raise ValueError(f"anomaly {name} is declared twice with different meanings ({module.__name__})")
    return dict(sorted(found.items()))


def named_classes() -> dict[str, str]:
    """The frame classes that are not anomaly names, with their meanings: frames that are not UDP or
    TCP, then UDP and TCP in dispatch order."""
    return {**net.BUCKETS, **pipeline.BUCKETS, **dispatch.frame_classes()}


def anomaly_classes() -> dict[str, list[str]]:
    """The anomaly names a frame is counted under when it cannot be read or decoded, by what happened."""
    return {"capture records that could not be read whole":
            [name for name in capture.ANOMALIES if name not in capture.FRAME_NOTES],
            "frames whose link, IP or transport header could not be decoded":
            [name for name in net.ANOMALIES if name not in net.NOT_FRAMES]}


def frame_classes() -> set[str]:
    """Every class summary.json's frames_by_class can count."""
    return set(named_classes()).union(*anomaly_classes().values())


def render() -> str:
    """The README section, markers included."""
    lines = [BEGIN, "", "### Frame classes", "",
             "Every frame read is counted in exactly one class of `frames_by_class` in summary.json. UDP and TCP",
             "classes are listed in the order the dispatch table (`dissectors/dispatch.py`) tries them.", "",
             "| class | frames |", "|---|---|"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in named_classes().items()]
    lines += ["", "Counted under the name of their anomaly:", ""]
    lines += [f"- {what}: " + ", ".join(f"`{name}`" for name in names) + "."
              for what, names in anomaly_classes().items()]
    lines += ["", "### Anomaly names", "",
              "`anomalies_by_reason` in summary.json counts these, and the anomalies table has a row for each",
              "one but the caps counted at the end of input (`*_overflow`).", "",
              "| name | meaning |", "|---|---|"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in anomalies().items()]
    return "\n".join([*lines, "", END])


def with_section(text: str) -> str:
    """`text` (the README) with the section between the markers rendered anew."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README.md needs the markers {BEGIN!r} and {END!r}")
    return text[:start] + render() + text[end + len(END):]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report whether README.md is up to date")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    new = with_section(text)
    if args.check:
        if new != text:
            print("README.md is out of step with the declared names: run python -m voipwatch.docs", file=sys.stderr)
            return 1
        return 0
    if new != text:
        README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
