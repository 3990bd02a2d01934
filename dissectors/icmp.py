"""ICMP and ICMPv6 error messages: which flow they answer, from the packet they quote.

An ICMP error carries the IP header and at least the first 8 octets of the datagram that caused it
(RFC 792; RFC 1812 §4.3.2.3 lets routers quote more), an ICMPv6 error as much of it as fits (RFC 4443
§2.4(c)); 8 octets hold the UDP ports (RFC 768) and the TCP ports and sequence number (RFC 9293). So
an error names the flow it answers: a host's port unreachable says the datagram reached the host.
Other ICMP messages (echo, router advertisements, ...) describe no flow and give no record.
"""
from __future__ import annotations

import struct

from dissectors import ip
from voipwatch.records import IcmpError

# ICMP error types (RFC 792, RFC 1812 §5.2.7) and ICMPv6 error types (RFC 4443 §3): type -> name
ERRORS_V4 = {3: "destination unreachable", 4: "source quench", 5: "redirect", 11: "time exceeded",
             12: "parameter problem"}
ERRORS_V6 = {1: "destination unreachable", 2: "packet too big", 3: "time exceeded", 4: "parameter problem"}
# Destination unreachable codes: RFC 792, RFC 1122 §3.2.2.1, RFC 1812 §5.2.7.1; ICMPv6 RFC 4443 §3.1
UNREACHABLE_V4 = {0: "net unreachable", 1: "host unreachable", 2: "protocol unreachable", 3: "port unreachable",
                  4: "fragmentation needed", 5: "source route failed", 6: "destination network unknown",
                  7: "destination host unknown", 9: "network administratively prohibited",
                  10: "host administratively prohibited", 13: "communication administratively prohibited"}
UNREACHABLE_V6 = {0: "no route to destination", 1: "communication administratively prohibited",
                  2: "beyond scope of source address", 3: "address unreachable", 4: "port unreachable",
                  5: "source address failed ingress/egress policy", 6: "reject route to destination"}
_PORTS = struct.Struct("!HH")

ANOMALIES = {
    "icmp.bad_quote": "an ICMP or ICMPv6 error whose quote is not an IP header of its own family followed by "
                      "the UDP/TCP ports (RFC 792, RFC 4443 §2.4): the flow it answers is unknown",
}


def meaning(family: str, icmp_type: int, code: int) -> str:
    """A short name of an ICMP error, e.g. "port unreachable"."""
    if family == "icmp":
        return UNREACHABLE_V4.get(code, f"unreachable code {code}") if icmp_type == 3 else ERRORS_V4[icmp_type]
    return UNREACHABLE_V6.get(code, f"unreachable code {code}") if icmp_type == 1 else ERRORS_V6[icmp_type]


def parse_icmp_error(family: str, message: bytes, ts: float, frame: int, vlan: tuple[int, ...], src: str, dst: str,
                     src_mac: str | None) -> tuple[IcmpError | None, str | None]:
    """(record, None) for an error quoting a flow; (None, None) for other ICMP; (None, detail) when
    the quote cannot be read (anomaly icmp.bad_quote)."""
    if len(message) < 8:
        return None, None
    icmp_type, code = message[0], message[1]
    errors = ERRORS_V4 if family == "icmp" else ERRORS_V6
    if icmp_type not in errors:
        return None, None
    start, end = 8, len(message)            # the quote follows the 8-octet ICMP header
    quoted = ip.parse_ipv4(message, start, end) if family == "icmp" else ip.parse_ipv6(message, start, end)
    if type(quoted) is tuple:
        return None, f"{errors[icmp_type]}: quoted header: {quoted[1]}"
    if quoted.frag_offset:
        return None, f"{errors[icmp_type]}: quotes a later fragment (no transport header)"
    transport = {ip.PROTO_UDP: "udp", ip.PROTO_TCP: "tcp"}.get(quoted.proto)
    sport = dport = None
    if transport is not None:
        if quoted.end - quoted.start < 4:
            return None, f"{errors[icmp_type]}: quoted {transport} header cut short"
        sport, dport = _PORTS.unpack_from(message, quoted.start)
    return IcmpError(ts, frame, vlan, src, dst, src_mac, family, icmp_type, code, meaning(family, icmp_type, code),
                     quoted.proto, transport, ip.ntop(quoted.src), sport, ip.ntop(quoted.dst), dport), None
