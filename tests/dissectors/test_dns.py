"""DNS dissector: byte-literal SIP discovery answers (SRV, NAPTR), malformed input, tshark peer, fuzzing."""
from __future__ import annotations

import struct
import subprocess

import pytest

from dissectors import dns
from dissectors.dispatch import UDP, PortIndex
from voipwatch.config import PipelineConfig
from voipwatch.records import Anomaly, DnsMessage, PacketMeta
from mutate import mutations

META = PacketMeta(ts=1700000000.25, frame=11, vlan=(), src="10.0.0.53", sport=53, dst="10.0.0.9", dport=33000,
                  transport="udp")


def name(text: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in text.split(".") if label) + b"\x00"


def rr(owner: bytes, rtype: int, rdata: bytes, ttl: int = 300) -> bytes:
    return owner + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


QNAME = name("_sip._udp.example.com")          # at offset 12; later names point back to it with 0xC00C
SRV_QUERY = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + QNAME + struct.pack("!HH", 33, 1)
SRV_RESPONSE = (struct.pack("!HHHHHH", 0x1234, 0x8180, 1, 2, 0, 1) + QNAME + struct.pack("!HH", 33, 1)
                + rr(b"\xc0\x0c", 33, struct.pack("!HHH", 10, 60, 5060) + name("sip.example.com"))
                + rr(b"\xc0\x0c", 33, struct.pack("!HHH", 20, 0, 5061) + b"\x03sip\xc0\x16")   # -> example.com
                + rr(name("sip.example.com"), 1, bytes([192, 0, 2, 10])))
NAPTR_RDATA = (struct.pack("!HH", 100, 10) + b"\x01S" + b"\x07SIP+D2U" + b"\x00" + name("_sip._udp.example.com"))
NAPTR_RESPONSE = (struct.pack("!HHHHHH", 0xBEEF, 0x8580, 1, 1, 0, 0) + name("example.com") + struct.pack("!HH", 35, 1)
                  + rr(b"\xc0\x0c", 35, NAPTR_RDATA))


def test_srv_query():
    msg = dns.parse_dns(META, SRV_QUERY)
    assert msg == DnsMessage(pkt=META, qid=0x1234, is_response=False, qname="_sip._udp.example.com", qtype="SRV",
                             rcode=None, answers=())


def test_srv_response_with_compression():
    msg = dns.parse_dns(META, SRV_RESPONSE)
    assert msg.is_response and msg.rcode == "NOERROR" and msg.qtype == "SRV" and msg.malformed is None
    assert msg.answers == ("SRV 10 60 5060 sip.example.com", "SRV 20 0 5061 sip.example.com")


def test_naptr_response():
    msg = dns.parse_dns(META, NAPTR_RESPONSE)
    assert (msg.qid, msg.qname, msg.qtype, msg.rcode) == (0xBEEF, "example.com", "NAPTR", "NOERROR")
    assert msg.answers == ("NAPTR 100 10 S SIP+D2U  _sip._udp.example.com",)


def test_other_answer_types_and_rcodes():
    answers = [rr(b"\xc0\x0c", 1, bytes([1, 2, 3, 4])), rr(b"\xc0\x0c", 28, bytes(15) + b"\x01"),
               rr(b"\xc0\x0c", 5, name("alias.example.net")), rr(b"\xc0\x0c", 15, b"\x00\x0a" + name("mx.example")),
               rr(b"\xc0\x0c", 16, b"\x05hello\x02\xff!"), rr(b"\xc0\x0c", 12, name("host.example")),
               rr(b"\xc0\x0c", 2, name("ns1.example")), rr(b"\xc0\x0c", 99, b""), rr(b"\xc0\x0c", 4242, b"\xab\xcd")]
    data = (struct.pack("!HHHHHH", 7, 0x8183, 1, len(answers), 0, 0) + name("example") + struct.pack("!HH", 255, 1)
            + b"".join(answers))
    msg = dns.parse_dns(META, data)
    assert msg.rcode == "NXDOMAIN" and msg.qtype == "ANY"
    assert msg.answers == ("A 1.2.3.4", "AAAA ::1", "CNAME alias.example.net", "MX 10 mx.example",
                           'TXT "hello" "\ufffd!"', "PTR host.example", "NS ns1.example", "SPF \\# 0",
                           "TYPE4242 \\# 2 abcd")
    refused = dns.parse_dns(META, data[:2] + b"\x81\x85" + data[4:])
    assert refused.rcode == "REFUSED"
    assert dns.parse_dns(META, data[:2] + b"\x81\x8c" + data[4:]).rcode == "12"


def test_root_and_unknown_question_type():
    data = struct.pack("!HHHHHH", 9, 0, 1, 0, 0, 0) + b"\x00" + struct.pack("!HH", 4242, 1)
    msg = dns.parse_dns(META, data)
    assert msg.qname == "." and msg.qtype == "4242" and msg.rcode is None


@pytest.mark.parametrize("data", [
    b"", SRV_QUERY[:11],                                       # shorter than the header
    SRV_QUERY[:20],                                            # question cut
    struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x03abc\xc0\x0c\x00\x01\x00\x01",   # pointer loop
    struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x43abc\x00\x00\x01\x00\x01",        # bad label type
    struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x02\xff\xfe\x00\x00\x01\x00\x01",   # not UTF-8
])
def test_malformed_question_is_an_anomaly(data):
    out = dns.parse_dns(META, data)
    assert isinstance(out, Anomaly) and out.name == "dns.malformed" and out.layer == "dns"
    assert (out.ts, out.frame, out.src, out.dst) == (META.ts, 11, "10.0.0.53", "10.0.0.9")


def test_damaged_later_section_keeps_the_answers():
    cut = dns.parse_dns(META, SRV_RESPONSE[:-3])               # the additional A record's RDATA is cut
    assert cut.answers == ("SRV 10 60 5060 sip.example.com", "SRV 20 0 5061 sip.example.com")
    assert cut.malformed.startswith("additional section")
    half = dns.parse_dns(META, SRV_RESPONSE[:80])              # the second answer is cut
    assert half.answers == ("SRV 10 60 5060 sip.example.com",) and half.malformed.startswith("answer section")
    bad_naptr = NAPTR_RESPONSE[:-len(NAPTR_RDATA) - 2] + struct.pack("!H", 5) + NAPTR_RDATA[:5]
    assert dns.parse_dns(META, bad_naptr).malformed.startswith("answer section")


def claimed_as_dns(payload: bytes, sport: int, dport: int) -> bool:
    """Whether the dispatch table gives this UDP datagram to DNS (its port rules and content probes)."""
    entries = PortIndex(UDP, PipelineConfig()).entries(sport, dport, payload)
    return next((e.bucket for e in entries if e.probe(payload)), None) == "dns"


def test_looks_like_dns():
    assert claimed_as_dns(SRV_QUERY, 33000, 53) and claimed_as_dns(SRV_RESPONSE, 53, 33000)
    assert not claimed_as_dns(SRV_QUERY, 33000, 5060)                       # wrong port
    assert not claimed_as_dns(SRV_QUERY[:11], 33000, 53)
    assert not claimed_as_dns(SRV_QUERY[:2] + b"\x18\x00" + SRV_QUERY[4:], 33000, 53)   # opcode 3
    assert not claimed_as_dns(SRV_QUERY[:2] + b"\x01\x40" + SRV_QUERY[4:], 33000, 53)   # Z bit
    assert not claimed_as_dns(SRV_QUERY[:4] + b"\x00\x09" + SRV_QUERY[6:], 33000, 53)   # 9 questions
    mdns_answer = struct.pack("!HHHHHH", 0, 0x8400, 0, 1, 0, 0) + rr(name("printer.local"), 1, bytes(4))
    assert claimed_as_dns(mdns_answer, 5353, 5353) and not claimed_as_dns(mdns_answer, 53, 33000)
    assert dns.looks_like_mdns_answer(mdns_answer) and not dns.looks_like_dns(mdns_answer)
    assert not dns.looks_like_dns(b"INVITE sip:bob@example.com SIP/2.0\r\n")


def test_tcp_framing():
    stream = struct.pack("!H", len(SRV_QUERY)) + SRV_QUERY + struct.pack("!H", len(SRV_RESPONSE)) + SRV_RESPONSE
    assert dns.frame_dns_tcp(stream) == ([SRV_QUERY, SRV_RESPONSE], len(stream))
    assert dns.frame_dns_tcp(stream[:-1]) == ([SRV_QUERY], len(SRV_QUERY) + 2)
    assert dns.frame_dns_tcp(b"\x00") == ([], 0) and dns.frame_dns_tcp(b"\x00\x00") == ([b""], 2)


def _tshark_answers(fields: dict[str, list[str]]) -> tuple[str, ...]:
    """Rendered answer section from tshark's per-type fields (which list every section, in order)."""
    queues = {key: list(values) for key, values in fields.items()}

    def take(key: str) -> str:
        return queues[key].pop(0)

    def text(key: str) -> str:            # tshark prints no value for an empty <character-string>
        return take(key) if take(f"{key}_length") != "0" else ""

    render = {
        "1": lambda: f"A {take('dns.a')}",
        "28": lambda: f"AAAA {take('dns.aaaa')}",
        "5": lambda: f"CNAME {take('dns.cname')}",
        "12": lambda: f"PTR {take('dns.ptr.domain_name')}",
        "33": lambda: f"SRV {take('dns.srv.priority')} {take('dns.srv.weight')} {take('dns.srv.port')} "
                      f"{take('dns.srv.target')}",
        "35": lambda: f"NAPTR {take('dns.naptr.order')} {take('dns.naptr.preference')} {text('dns.naptr.flags')} "
                      f"{text('dns.naptr.service')} {text('dns.naptr.regex')} {take('dns.naptr.replacement')}",
    }
    count = int(fields["dns.count.answers"][0]) if fields["dns.count.answers"] else 0
    return tuple(render[kind]() for kind in fields["dns.resp.type"][:count])


RCODES = {"0": "NOERROR", "3": "NXDOMAIN", "2": "SERVFAIL"}


@pytest.mark.parametrize("capture", [
    "zeek/Traces/dns/naptr.pcap", "suricata-verify/dns/dns-udp-eve-log-srv/input.pcap",
    "suricata-verify/dns/dns-corrupt-additionals/input.pcap", "sngrep/aaa.pcap", "rtp-pcap/nb6-startup.pcap",
])
@pytest.mark.peer
def test_agrees_with_tshark(capture, public_captures, tshark):
    names = ["udp.payload", "udp.srcport", "udp.dstport", "dns.id", "dns.flags.response", "dns.qry.name",
             "dns.qry.type", "dns.flags.rcode", "dns.count.answers", "dns.resp.type", "dns.a", "dns.aaaa",
             "dns.cname", "dns.ptr.domain_name", "dns.srv.priority", "dns.srv.weight", "dns.srv.port",
             "dns.srv.target", "dns.naptr.order", "dns.naptr.preference", "dns.naptr.flags", "dns.naptr.service",
             "dns.naptr.regex", "dns.naptr.replacement", "dns.naptr.flags_length", "dns.naptr.service_length",
             "dns.naptr.regex_length", "_ws.malformed"]
    args = [tshark, "-n", "-r", str(public_captures / capture), "-Y", "dns && udp", "-T", "fields",
            "-E", "occurrence=a", "-E", "aggregator=\x1f"]
    for field in names:
        args += ["-e", field]
    rows = subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines()
    assert rows
    for line in rows:
        fields = dict(zip(names, (v.split("\x1f") if v else [] for v in line.split("\t"))))
        payload = bytes.fromhex(fields["udp.payload"][0])
        assert claimed_as_dns(payload, int(fields["udp.srcport"][0]), int(fields["udp.dstport"][0]))
        msg = dns.parse_dns(META, payload)
        response = fields["dns.flags.response"][0] in ("1", "True")
        assert (msg.qid, msg.is_response, msg.qname) == (int(fields["dns.id"][0], 16), response,
                                                         fields["dns.qry.name"][0])
        assert msg.qtype == dns.TYPE_NAMES[int(fields["dns.qry.type"][0])]
        assert msg.rcode == (RCODES[fields["dns.flags.rcode"][0]] if response else None)
        assert msg.answers == _tshark_answers(fields)
        assert (msg.malformed is not None) == bool(fields["_ws.malformed"])


@pytest.mark.peer
def test_sip_and_rtp_payloads_are_not_dns(public_captures, tshark):
    out = subprocess.run([tshark, "-n", "-r", str(public_captures / "sngrep/aaa.pcap"), "-Y", "udp && !dns",
                          "-T", "fields", "-e", "udp.srcport", "-e", "udp.dstport", "-e", "udp.payload"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    assert rows and not any(claimed_as_dns(bytes.fromhex(p), int(s), int(d)) for s, d, p in rows)


def test_fuzz_never_raises():
    seeds = [SRV_QUERY, SRV_RESPONSE, NAPTR_RESPONSE]
    for data in mutations(3, seeds, 20000):
        out = dns.parse_dns(META, data)
        assert isinstance(out, (DnsMessage, Anomaly))
        dns.looks_like_dns(data)
        dns.looks_like_mdns_answer(data)
        messages, used = dns.frame_dns_tcp(data)
        assert used <= len(data) and sum(len(m) + 2 for m in messages) == used
