"""Domain Name System messages (RFC 1035 §4) for SIP server discovery: SRV (RFC 2782), NAPTR (RFC 3403)."""
from __future__ import annotations

import socket
import struct

import dpkt

from dissectors.tcp import Splitter
from voipwatch.records import Anomaly, DnsMessage, PacketMeta

# RFC 1035 §4.1.1 header:
#      0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15
#    |                      ID                       |
#    |QR|   Opcode  |AA|TC|RD|RA| Z|AD|CD|   RCODE   |
#    |                    QDCOUNT                    |
#    |                    ANCOUNT                    |
#    |                    NSCOUNT                    |
#    |                    ARCOUNT                    |
HEADER = struct.Struct("!HHHHHH")   # id | flags | qdcount | ancount | nscount | arcount
QR_BIT = 0x8000
OPCODE_SHIFT, OPCODE_MASK = 11, 0xF
Z_BIT = 0x0040                      # RFC 1035: must be zero (AD/CD beside it are RFC 4035's)
RCODE_MASK = 0xF
# RFC 1035 §4.2.2: over TCP each message is preceded by a two-octet length.
TCP_LENGTH = struct.Struct("!H")

DNS_PORT = 53                       # RFC 1035 §4.2: over UDP and TCP
MDNS_PORT = 5353                    # RFC 6762 §3: multicast DNS, over UDP
DNS_PORTS = (DNS_PORT, MDNS_PORT)
# Opcodes a DNS message over UDP may carry: QUERY, IQUERY (obsolete, RFC 3425), STATUS, NOTIFY
# (RFC 1996), UPDATE (RFC 2136). DSO (6, RFC 8490) is TCP-only.
UDP_OPCODES = frozenset({0, 1, 2, 4, 5})
# Questions a plausible message carries: RFC 9619 allows one; mDNS (RFC 6762 §5.3) a few more.
MAX_QUESTIONS = 4

# RFC 1035 §3.2.2 and IANA "Resource Record (RR) TYPEs".
TYPE_NAMES: dict[int, str] = {
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 13: "HINFO", 15: "MX", 16: "TXT", 28: "AAAA",
    33: "SRV", 35: "NAPTR", 39: "DNAME", 41: "OPT", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY",
    52: "TLSA", 64: "SVCB", 65: "HTTPS", 99: "SPF", 252: "AXFR", 255: "ANY", 257: "CAA",
}
# RFC 1035 §4.1.1 and RFC 2136 §2.2 response codes.
RCODE_NAMES: dict[int, str] = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE",
}
A, NS, CNAME, SOA, PTR, HINFO, MX, TXT, AAAA, SRV, NAPTR = 1, 2, 5, 6, 12, 13, 15, 16, 28, 33, 35
# Record types whose RDATA dpkt 1.9.8 decodes itself; the others are decoded here or kept raw.
DPKT_DECODES = frozenset({A, NS, CNAME, PTR, SOA, MX, AAAA, SRV})
# RFC 3403 §4.1 NAPTR RDATA: ORDER | PREFERENCE, then FLAGS, SERVICES, REGEXP as
# <character-string>s and REPLACEMENT as a domain name.
NAPTR_FIXED = struct.Struct("!HH")

# dpkt raises these on malformed input (R2: NeedData < UnpackError; UnicodeDecodeError < ValueError);
# struct.error and IndexError come from short RDATA (seen when fuzzing).
DECODE_ERRORS = (dpkt.UnpackError, ValueError, struct.error, IndexError)

# Every Anomaly.name of this module (layer "dns").
ANOMALIES = {
    "dns.malformed": "the header or question section cannot be decoded (RFC 1035 §4.1): not described",
    "dns.malformed_section": "an answer, authority or additional record cannot be decoded; the answers before it "
                             "are kept",
}


def _character_strings(data: bytes) -> list[str]:
    """RFC 1035 §3.3 <character-string>s: a length octet, then that many octets."""
    out, off = [], 0
    while off < len(data):
        n = data[off]
        if off + 1 + n > len(data):
            raise dpkt.UnpackError("character-string overruns its RDATA")
        out.append(data[off + 1:off + 1 + n].decode("utf-8", errors="replace"))
        off += 1 + n
    return out


class _RR(dpkt.dns.DNS.RR):
    """dpkt's resource record, decoding NAPTR and keeping unknown types raw instead of failing."""

    def unpack_rdata(self, buf: bytes, off: int) -> None:
        if len(self.rdata) != self.rlen:
            raise dpkt.NeedData(f"RDATA of {self.rlen} octets, {len(self.rdata)} left")
        if self.type in DPKT_DECODES:
            super().unpack_rdata(buf, off)
        elif self.type in (TXT, HINFO):
            self.text = _character_strings(self.rdata)
        elif self.type == NAPTR:
            self.order, self.preference = NAPTR_FIXED.unpack_from(self.rdata)
            pos = NAPTR_FIXED.size
            strings = []
            for _ in range(3):
                n = self.rdata[pos]
                strings.append(self.rdata[pos + 1:pos + 1 + n].decode("utf-8", errors="replace"))
                pos += 1 + n
            if pos > len(self.rdata):
                raise dpkt.UnpackError("NAPTR character-strings overrun the RDATA")
            self.flags, self.services, self.regexp = strings
            self.replacement, _ = dpkt.dns.unpack_name(buf, off + pos)


class _Message(dpkt.dns.DNS):
    RR = _RR


def _name(name: str) -> str:
    return name or "."             # the root domain is the empty name


def _render(rr: _RR) -> str:
    """One answer as text: type, then RDATA fields in zone-file order (RFC 1035 §5.1)."""
    kind = TYPE_NAMES.get(rr.type, f"TYPE{rr.type}")
    if rr.type == A and len(rr.rdata) == 4:
        return f"A {socket.inet_ntop(socket.AF_INET, rr.rdata)}"
    if rr.type == AAAA and len(rr.rdata) == 16:
        return f"AAAA {socket.inet_ntop(socket.AF_INET6, rr.rdata)}"
    if rr.type == CNAME:
        return f"CNAME {_name(rr.cname)}"
    if rr.type == NS:
        return f"NS {_name(rr.nsname)}"
    if rr.type == PTR:
        return f"PTR {_name(rr.ptrname)}"
    if rr.type == MX:
        return f"MX {rr.preference[0]} {_name(rr.mxname)}"
    if rr.type == SRV:
        return f"SRV {rr.priority} {rr.weight} {rr.port} {_name(rr.srvname)}"
    if rr.type == NAPTR:
        return (f"NAPTR {rr.order} {rr.preference} {rr.flags} {rr.services} {rr.regexp} "
                f"{_name(rr.replacement)}")
    if rr.type == SOA:
        return (f"SOA {_name(rr.mname)} {_name(rr.rname)} {rr.serial} {rr.refresh} {rr.retry} "
                f"{rr.expire} {rr.minimum}")
    if rr.type in (TXT, HINFO):
        return " ".join([kind, *(f'"{s}"' for s in rr.text)])
    return f"{kind} \\# {len(rr.rdata)} {rr.rdata.hex()}".rstrip()    # RFC 3597 §5 generic form


def parse_dns(meta: PacketMeta, payload: bytes) -> DnsMessage | Anomaly:
    """One DNS message, or an Anomaly (layer "dns") when its header or question cannot be decoded.

    Never raises. When a later section is malformed, the answers decoded before it are kept and
    DnsMessage.malformed says what went wrong (as tshark shows the answers and "Malformed Packet").
    """
    def anomaly(name: str, detail: str) -> Anomaly:
        return Anomaly(ts=meta.ts, frame=meta.frame, layer="dns", name=name, detail=detail,
                       src=meta.src, dst=meta.dst)

    msg = _Message()
    try:
        dpkt.Packet.unpack(msg, payload)
        counts = {"qd": msg.qd, "an": msg.an, "ns": msg.ns, "ar": msg.ar}
        off = msg.__hdr_len__
        questions = []
        for _ in range(counts["qd"]):
            question, off = msg.unpack_q(payload, off)
            questions.append(question)
    except DECODE_ERRORS as exc:
        return anomaly("dns.malformed", f"header or question: {type(exc).__name__}: {exc}".rstrip(": "))
    answers: list[str] = []
    malformed = None
    section = "answer"
    try:
        for _ in range(counts["an"]):
            rr, off = msg.unpack_rr(payload, off)
            answers.append(_render(rr))
        for section in ("authority", "additional"):
            for _ in range(counts["ns" if section == "authority" else "ar"]):
                _, off = msg.unpack_rr(payload, off)
    except DECODE_ERRORS as exc:
        malformed = f"{section} section: {type(exc).__name__}: {exc}".rstrip(": ")
    is_response = bool(msg.op & QR_BIT)
    first = questions[0] if questions else None
    return DnsMessage(
        pkt=meta, qid=msg.id, is_response=is_response,
        qname=_name(first.name) if first is not None else None,
        qtype=TYPE_NAMES.get(first.type, str(first.type)) if first is not None else None,
        rcode=RCODE_NAMES.get(msg.op & RCODE_MASK, str(msg.op & RCODE_MASK)) if is_response else None,
        answers=tuple(answers), malformed=malformed)


def parse(meta: PacketMeta, payload: bytes) -> tuple[DnsMessage | None, list[Anomaly]]:
    """The dispatch table's parser: parse_dns, with a damaged later section as its own anomaly."""
    msg = parse_dns(meta, payload)
    if type(msg) is Anomaly:
        return None, [msg]
    if msg.malformed is None:
        return msg, []
    return msg, [Anomaly(meta.ts, meta.frame, "dns", "dns.malformed_section", msg.malformed, meta.src, meta.dst)]


def looks_like_dns(payload: bytes) -> bool:
    """A DNS message with a sane header: Z bit clear, an opcode of UDP, 1..4 questions.

    Only on ports 53 and 5353: the dispatch table's port rule (dissectors.dispatch).
    """
    if len(payload) < HEADER.size:
        return False
    _, flags, qdcount, _, _, _ = HEADER.unpack_from(payload)
    return _sane(flags) and 1 <= qdcount <= MAX_QUESTIONS


def looks_like_mdns_answer(payload: bytes) -> bool:
    """A multicast DNS response, which carries no question (RFC 6762 §6): a sane header with answers.

    Only on port 5353: the dispatch table's port rule (dissectors.dispatch).
    """
    if len(payload) < HEADER.size:
        return False
    _, flags, qdcount, ancount, _, _ = HEADER.unpack_from(payload)
    return _sane(flags) and qdcount == 0 and bool(flags & QR_BIT) and ancount > 0


def _sane(flags: int) -> bool:
    """The Z bit clear (RFC 1035 §4.1.1) and an opcode a message over UDP may carry."""
    return not flags & Z_BIT and (flags >> OPCODE_SHIFT) & OPCODE_MASK in UDP_OPCODES


def frame_dns_tcp(buf: bytes) -> tuple[list[bytes], int]:
    """Split a TCP byte stream into DNS messages (RFC 1035 §4.2.2 two-octet length prefix).

    Returns the complete messages and how many octets of `buf` they used; the rest awaits more data.
    """
    messages, off = [], 0
    while off + TCP_LENGTH.size <= len(buf):
        (length,) = TCP_LENGTH.unpack_from(buf, off)
        end = off + TCP_LENGTH.size + length
        if end > len(buf):
            break
        messages.append(buf[off + TCP_LENGTH.size:end])
        off = end
    return messages, off


def stream_framer() -> Splitter:
    """A DNS-over-TCP direction's framer: the length prefix frames every message, nothing is skipped."""
    return Splitter(frame_dns_tcp)
