"""Writes sample_captures/um-control-benign.pcap: VoIP control that is protected, the UM-07 negative: the
IAX2 trunk of um_control.py whose NEW/ACCEPT negotiate encryption (ENCRYPTION IE = AES-128, RFC 5456
§8.6.34), and a Skinny phone's SCCP over TLS on TCP 2443 (only a TLS 1.2 ClientHello, RFC 5246 §7.4.1.2)."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pcapgen import PcapWriter, UdpCapture  # noqa: E402
from um_control import ACK, CUCM, PHONE, PSH, T0, TcpFlow, iax2_encrypted  # noqa: E402


def build() -> PcapWriter:
    cap = UdpCapture()
    iax2_encrypted(cap)
    flow = TcpFlow(cap.pcap, PHONE, 49300, CUCM, 2443, [2000])
    flow.open(T0 + 40.0)
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\xc0\x2f" + b"\x01\x00"   # version, random, session, suites, null compression
    hello = bytes((1,)) + len(body).to_bytes(3, "big") + body
    flow.send(T0 + 40.01, True, PSH | ACK, b"\x16\x03\x01" + struct.pack(">H", len(hello)) + hello)
    return cap.pcap


def main(out: str) -> None:
    build().save(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "um-control-benign.pcap"))
