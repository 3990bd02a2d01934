"""Severity follows impact: one table (voipwatch/severity.py), and on a capture the compromise outranks hygiene."""
from __future__ import annotations

from pathlib import Path

from voipwatch.analyze import analyze_files
from voipwatch.config import load_settings
from voipwatch.detect import SEVERITIES
from voipwatch.severity import IMPACTS, severity_of

SAMPLES = Path(__file__).resolve().parents[1] / "sample_captures"


def test_the_impact_table_runs_from_critical_down_without_gaps():
    assert [severity for severity, _ in IMPACTS.values()] == list(reversed(SEVERITIES))
    assert severity_of("compromise") == "critical" and severity_of("exposure") == "medium"


def test_a_completed_fraud_call_and_a_taken_over_account_outrank_cleartext_hygiene():
    """tf-accounts.pcap, no configuration: the account taken over from the Internet, its answered fraud calls
    and the answered Wangiri callback are critical; cleartext SIP and media inside the site are below that."""
    alerts = analyze_files([str(SAMPLES / "tf-accounts.pcap")], load_settings(None)).alerts
    compromise = sorted({(a.name, a.src) for a in alerts if a.severity == "critical" and a.family == "toll_fraud"})
    assert compromise == [("toll_fraud.account_takeover", "198.51.100.90"),
                          ("toll_fraud.new_account_external_call", "198.51.100.90"),
                          ("toll_fraud.wangiri_callback", "10.3.10.7")]
    inside = [a for a in alerts if a.name.endswith(("cleartext_sip", "cleartext_rtp")) and not a.evidence["public_ends"]]
    assert [a.name for a in inside] == ["unencrypted_media.cleartext_sip"] and all(SEVERITIES.index(a.severity) < SEVERITIES.index("critical") for a in inside)
