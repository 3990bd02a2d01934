"""The batch path (vectorised RTP) and the streaming path (per-packet tracker) give identical results.

Every table, written as CSV, must be byte-identical between the two paths, and so must the frame
accounting in summary.json, on public captures and on the bundled samples.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from voipwatch.analyze import write_outputs
from voipwatch.records import FlowSeen, HostSeen, L2Neighbor

SAMPLES = Path(__file__).resolve().parents[1] / "sample_captures"
PUBLIC = [
    "sipnab/SIP_CALL_RTP_G711",
    "sipnab/sip-rtp-g711.pcap",
    "sipnab/codec-negotiation.pcap",
    "sipnab/sip-over-tcp.pcap",
    "sipnab/sipp-branch-scenario.pcapng",
    "rtp-pcap/sip-rtp-speex.pcap",
    "rtp-pcap/marseillaise-srtp.pcap",
    "voipshark/SIP-RTP-Normal_Call_two_parties.pcap",
    "voipshark/SIP-over-TLS-RSA-SRTP_Normal_Call_two_parties.pcap",
    "snort3_demo/inspectors/sip/SIP_Eyebeam2Eyebeam_Video_Audio.pcap",
    "ndpi/pcap/fuzz-2006-06-26-2594.pcap",
    "ndpi/pcap/stun.pcap",
    "sngrep/ipv6frag.pcap",
    "ndpi/pcap/rtcp_multiple_pkts_in_the_same_datagram.pcap",     # Linux cooked v1
    "heplify/ipip0.pcap",
    "zeek/Traces/sip/sip-long-request-response-paths.pcap",       # raw IPv4
    "sngrep/aaa.pcap",
    "sipp/dtmf_2833_1.pcap",
]
SUMMARY_KEYS = ("frames_read", "frames_undecoded", "frames_by_class", "counts", "anomalies_by_reason",
                "first_ts", "last_ts")


def _tables(result, out: Path) -> tuple[dict[str, str], dict]:
    write_outputs(result, out, "csv")
    tables = {p.name: p.read_text(encoding="utf-8") for p in sorted(out.glob("*.csv"))}
    # The sightings that feed the separation checks are records, not tables: compare them too.
    tables["flows"] = sorted(map(repr, result.records[FlowSeen]))
    tables["hosts"] = sorted(map(repr, result.records[HostSeen]))
    tables["l2"] = sorted(map(repr, result.records[L2Neighbor]))
    return tables, {k: result.summary[k] for k in SUMMARY_KEYS}


@pytest.mark.parametrize("capture", PUBLIC + ["sample:" + p.name for p in sorted(SAMPLES.glob("*.pcap"))])
def test_batch_and_stream_agree(capture, public_captures, tmp_path, analysis):
    path = SAMPLES / capture[7:] if capture.startswith("sample:") else public_captures / capture
    batch, batch_summary = _tables(analysis(path, mode="batch"), tmp_path / "batch")
    stream, stream_summary = _tables(analysis(path, mode="stream"), tmp_path / "stream")
    assert batch_summary == stream_summary
    assert batch.keys() == stream.keys()
    for name in batch:
        assert batch[name] == stream[name], f"{name} differs between batch and stream"
