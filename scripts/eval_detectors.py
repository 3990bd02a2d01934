"""Precision and recall of each detector family on the project's labeled corpus.

  python scripts/eval_detectors.py [--json FILE]

The corpus is the golden cases (tests/golden/*/test.toml): every [[alerts]] entry labels the alerts a
generated capture must raise (count >= 1: positives) or must not raise (count = 0: the false-positive
traps the generators build). Each case is run through `voipwatch analyze` (batch path); per family:
- true positives: expected alerts that were raised (up to the expected count),
- false negatives: expected alerts that were not raised,
- false positives: alerts raised beyond the expected count, and any alert a negative label forbids.
It also reports, per family, the alerts of that family with severity medium or higher on its own
benign capture (sample_captures/<prefix>-benign.pcap with its site configuration), beyond what the
labels cover: noise an analyst would see on ordinary traffic. (The other families' benign captures
carry cleartext SIP on purpose, so unencrypted_media rightly fires there; they are not counted.)
"""
from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from test_golden import _matches  # noqa: E402
from voipwatch.alerts import alert_event  # noqa: E402
from voipwatch.analyze import analyze_files  # noqa: E402
from voipwatch.detect import SEVERITIES  # noqa: E402
from voipwatch.config import load_settings  # noqa: E402

SAMPLES = REPO / "sample_captures"
BENIGN = {"rf": ("registration_flood", "registration_flood.toml"), "tf": ("toll_fraud", "toll_fraud.toml"),
          "um": ("unencrypted_media", "unencrypted_media_site.toml"), "xv": ("cross_vlan", "cross_vlan.toml")}


def run(capture: str, config: str | None, cache: dict) -> list[dict]:
    key = (capture, config)
    if key not in cache:
        settings = load_settings(str(SAMPLES / config) if config else None)
        cache[key] = [alert_event(a) for a in analyze_files([str(SAMPLES / capture)], settings).alerts]
    return cache[key]


def evaluate() -> dict:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0, "labels": 0})
    cache: dict = {}
    for spec_file in sorted((REPO / "tests" / "golden").glob("*/test.toml")):
        spec = tomllib.loads(spec_file.read_text(encoding="utf-8"))
        if not spec.get("alerts"):
            continue
        events = run(spec["capture"], spec.get("config"), cache)
        for expect in spec["alerts"]:
            family = expect["name"].split(".")[0]
            wanted = expect.get("count", 1)
            found = sum(1 for e in events if _matches(e, expect))
            c = counts[family]
            c["labels"] += 1
            c["tp"] += min(found, wanted)
            c["fn"] += max(0, wanted - found)
            c["fp"] += max(0, found - wanted)
    noise: dict[str, list] = defaultdict(list)
    floor = SEVERITIES.index("medium")
    for prefix, (own_family, config) in BENIGN.items():
        capture = SAMPLES / f"{prefix}-benign.pcap"
        for e in run(capture.name, f"configs/{config}", cache):
            if e["alert"]["family"] == own_family and SEVERITIES.index(e["alert"]["severity"]) >= floor:
                noise[e["alert"]["family"]].append((capture.name, e["alert"]["name"], e["alert"]["severity"]))
    result = {}
    for family in sorted(set(counts) | set(noise)):
        c = counts[family]
        precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else None
        recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else None
        result[family] = {**c, "precision": precision, "recall": recall,
                          "benign_alerts_medium_or_higher": len(noise[family]),
                          "benign_examples": sorted(set(noise[family]))[:10]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    result = evaluate()
    print(f"{'family':<22}{'labels':>7}{'TP':>6}{'FP':>6}{'FN':>6}{'precision':>11}{'recall':>8}{'benign>=medium':>16}")
    for family, r in result.items():
        p = "-" if r["precision"] is None else f"{r['precision']:.3f}"
        rc = "-" if r["recall"] is None else f"{r['recall']:.3f}"
        print(f"{family:<22}{r['labels']:>7}{r['tp']:>6}{r['fp']:>6}{r['fn']:>6}{p:>11}{rc:>8}"
              f"{r['benign_alerts_medium_or_higher']:>16}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
