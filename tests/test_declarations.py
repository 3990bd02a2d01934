"""Frame classes and anomaly names are declared beside the code that produces them, and the README
lists exactly the declared ones (voipwatch.docs renders that list)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from voipwatch import docs
from voipwatch.capture import CaptureError, read_captures
from voipwatch.config import PipelineConfig
from voipwatch.pipeline import Analyzer

REPO = Path(__file__).resolve().parents[1]
ANOMALIES = docs.anomalies()
CLASSES = docs.frame_classes()
DECLARED = ANOMALIES.keys() | CLASSES
# The first component of every declared name: "sip" of "sip.bad_cseq", "tcp" of "tcp.sip".
LAYERS = {name.partition(".")[0] for name in DECLARED if "." in name}
DOTTED = re.compile(r"[a-z][a-z0-9]*(\.[a-z0-9_]+)+")
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz")


def test_the_readme_lists_the_declared_names():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert docs.with_section(readme) == readme, "README.md is out of step: run python -m voipwatch.docs"
    for name in DECLARED:
        assert f"`{name}`" in readme


def _declaration_keys(tree: ast.AST) -> set[int]:
    """ids of the key nodes of ANOMALIES = {...} / BUCKETS = {...} literals: declarations, not uses."""
    keys = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict) and any(
                isinstance(t, ast.Name) and t.id in ("ANOMALIES", "BUCKETS") for t in node.targets):
            keys |= {id(k) for k in node.value.keys if k is not None}
    return keys


def _names_in_code() -> tuple[dict[str, list[str]], list[str]]:
    """Dotted name literals in dissectors/ (any) and voipwatch/ (those of a declared layer), with where
    they are used; and f-strings that would build such a name at run time."""
    used: dict[str, list[str]] = {}
    built: list[str] = []
    for path in sorted([*(REPO / "dissectors").rglob("*.py"), *(REPO / "voipwatch").rglob("*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        declarations = _declaration_keys(tree)
        in_dissectors = path.parent.name == "dissectors"
        where = f"{path.relative_to(REPO)}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and DOTTED.fullmatch(node.value):
                # "voipwatch.<group>" in dissectors/ names an entry point group (dispatch.SITE_GROUP), no anomaly
                layer = node.value.partition(".")[0]
                if ((in_dissectors and layer != "voipwatch") or layer in LAYERS) and id(node) not in declarations:
                    used.setdefault(node.value, []).append(f"{where}:{node.lineno}")
            elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
                head = str(node.values[0].value)
                if re.fullmatch(r"[a-z][a-z0-9]*\.[a-z0-9_]*", head) and head.partition(".")[0] in LAYERS:
                    built.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return used, built


def test_every_name_the_code_uses_is_declared():
    used, built = _names_in_code()
    undeclared = {name: places for name, places in used.items() if name not in DECLARED}
    assert not undeclared, f"declare these in the ANOMALIES of the module that produces them: {undeclared}"
    assert not built, f"names built at run time cannot be declared: {built}"


def test_every_declared_anomaly_is_produced_somewhere():
    used, _ = _names_in_code()
    assert sorted(ANOMALIES.keys() - used.keys()) == []
    assert len(ANOMALIES) > 80 and {"sip.bad_cseq", "tcp.gap", "capture.truncated_record"} <= ANOMALIES.keys()


def test_no_anomaly_is_declared_without_a_meaning():
    assert all(meaning.strip() and "\n" not in meaning and "|" not in meaning for meaning in ANOMALIES.values())
    assert all(meaning.strip() and "|" not in meaning for meaning in docs.named_classes().values())


class _Nothing:
    """A sink that drops every record: only the analyzer's own counters are read."""

    def __getattr__(self, name):
        return lambda *args: None


def _captures() -> list[Path]:
    roots = [REPO / "sample_captures", (REPO / ".." / "shared" / "captures").resolve()]
    if not roots[1].is_dir():
        pytest.fail(f"captures not found at {roots[1]}: the checkout must sit beside shared/")
    return [p for root in roots for p in sorted(root.rglob("*")) if p.is_file() and p.name.endswith(CAPTURE_SUFFIXES)]


def test_the_product_counts_only_declared_classes_and_anomalies():
    """Every sample capture and every capture in ../shared/captures, through the per-frame pipeline."""
    classes, reasons, analysed = set(), set(), 0
    for path in _captures():
        analyzer = Analyzer(_Nothing(), PipelineConfig())
        try:
            analyzer.run(read_captures([str(path)]))
        except CaptureError:
            continue                      # not a capture voipwatch can open (the CLI says so and exits 1)
        analysed += 1
        classes |= analyzer.frame_classes.keys()
        reasons |= analyzer.anomaly_counts.keys()
    assert analysed > 80
    assert classes - CLASSES == set(), "frame classes counted but not declared"
    assert reasons - ANOMALIES.keys() == set(), "anomalies counted but not declared"
    # Not an empty run: the captures hold every kind of traffic the dispatch table knows.
    assert {"sip", "rtp", "rtcp", "dns", "stun", "zrtp", "dtls", "udp.other", "tcp.sip", "tcp.tls", "tcp.other",
            "tcp.control", "arp", "rtp.malformed"} <= classes
    assert {"sip.not_sip_on_sip_port", "dns.malformed_section", "rtp.malformed"} <= reasons
