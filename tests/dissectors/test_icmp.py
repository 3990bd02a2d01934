"""ICMP and ICMPv6 errors: the flow each one answers, read from the packet it quotes (RFC 792, RFC 4443)."""
from __future__ import annotations

import ipaddress
import struct

import pytest

from dissectors.icmp import parse_icmp_error
from peer import run
from voipwatch.analyze import analyze_files
from voipwatch.records import IcmpError


def _quoted_v6(src: str, dst: str, sport: int, dport: int) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8, 0)
    return struct.pack("!IHBB16s16s", 6 << 28, len(udp), 17, 64, ipaddress.IPv6Address(src).packed,
                       ipaddress.IPv6Address(dst).packed) + udp


@pytest.mark.peer
def test_quoted_flows_match_tshark(public_captures, tshark):
    """ipfixprobe sip.pcap: five ICMP host administratively prohibited (type 3 code 10) answering SIP scans;
    the quoted addresses and ports are the ones tshark decodes inside each error."""
    path = public_captures / "ipfixprobe/inputs/sip.pcap"
    peer = []
    for line in run(tshark, ["-r", str(path), "-Y", "icmp", "-T", "fields", "-E", "separator=;", "-e", "frame.number",
                             "-e", "icmp.type", "-e", "icmp.code", "-e", "ip.src", "-e", "udp.srcport", "-e", "ip.dst",
                             "-e", "udp.dstport"]).splitlines():
        frame, icmp_type, code, srcs, sport, dsts, dport = line.split(";")
        # the outer header first, then the quoted one (Wireshark lists both, comma-separated)
        peer.append((int(frame), int(icmp_type), int(code), srcs.split(",")[0], srcs.split(",")[1], int(sport),
                     dsts.split(",")[1], int(dport)))
    assert len(peer) == 5
    for mode in ("batch", "stream"):
        errors = analyze_files([str(path)], mode=mode).records[IcmpError]
        assert [(e.frame, e.icmp_type, e.code, e.src, e.quoted_src, e.quoted_sport, e.quoted_dst, e.quoted_dport)
                for e in errors] == peer
        assert {(e.meaning, e.quoted_transport) for e in errors} == {("host administratively prohibited", "udp")}


def test_icmpv6_port_unreachable():
    message = struct.pack("!BBHI", 1, 4, 0, 0) + _quoted_v6("2001:db8::1", "2001:db8::2", 5060, 5062)
    record, bad = parse_icmp_error("icmpv6", message, 1.0, 7, (), "2001:db8::2", "2001:db8::1", None)
    assert bad is None
    assert (record.meaning, record.quoted_transport, record.quoted_src, record.quoted_sport, record.quoted_dst,
            record.quoted_dport) == ("port unreachable", "udp", "2001:db8::1", 5060, "2001:db8::2", 5062)


def test_other_icmp_and_bad_quotes():
    echo = struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"ping"
    assert parse_icmp_error("icmp", echo, 1.0, 1, (), "10.0.0.1", "10.0.0.2", None) == (None, None)
    cut = struct.pack("!BBHI", 3, 3, 0, 0) + b"\x45\x00"
    record, bad = parse_icmp_error("icmp", cut, 1.0, 1, (), "10.0.0.1", "10.0.0.2", None)
    assert record is None and "quoted header" in bad
    v6_in_v4 = struct.pack("!BBHI", 3, 3, 0, 0) + _quoted_v6("2001:db8::1", "2001:db8::2", 1, 2)
    assert parse_icmp_error("icmp", v6_in_v4, 1.0, 1, (), "10.0.0.1", "10.0.0.2", None)[1] is not None
