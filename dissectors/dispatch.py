"""The dispatch table: which dissector describes a UDP datagram or a TCP flow, declared as data.

The pipeline (voipwatch/pipeline.py) first gives a UDP datagram to the RTP/RTCP media that SDP
announced for its endpoints (a session-level lookup, kept explicit there). Everything else is
decided here: the pipeline walks UDP in order and the first entry whose probe accepts the
datagram claims it; a TCP flow direction is given to the first entry of TCP that accepts its first
data segment, and keeps it until idle for tcp_idle_s. A TCP entry makes each direction it claims its
own framer (dissectors.tcp.Framer: stateful, it may resynchronise or give up, when the direction
becomes tcp.other); an entry that seeks its protocol off its ports makes a stream probe instead,
asked segment by segment (a bounded number) until it finds the protocol, when the framer takes over.
As in Wireshark, a protocol that owns its
ports is tried before the heuristics, and heuristics never run on ports other services own
(epan/dissectors/packet-udp.c, decode_udp_ports).

Adding a protocol: a dissector module in this package with a content probe `(payload) -> bool`, a
parser `(meta, payload) -> (record or None, [Anomaly])` and its ANOMALIES (name -> meaning); then
one entry below. The pipeline emits the records the parser returns; the frame class and anomaly
names reach the README through `python -m voipwatch.docs`.

One rule binds UDP entries without ports: the batch path (voipwatch/batch/candidates.py) decodes UDP
datagrams whose first two bits are RTP's version 2 and whose second octet is not 192..223 (RTCP,
RFC 5761 §4) column-wise, without this table, except on the ports it names (`ports`, `home`); so no
such entry but RTP's may claim one (tests/dissectors/test_dispatch.py checks it).

A site's own protocols: a module named by an entry point of the group `voipwatch.dissectors` in any
installed distribution (pyproject.toml: [project.entry-points."voipwatch.dissectors"] name =
"package.module") is a dissector module as above: it declares its records (voipwatch.records.declare)
and ANOMALIES, and exposes `UDP` and/or `TCP`, tuples of Entry. Its entries are appended AFTER the
core's, so a site's entry never pre-empts a core protocol: it is probed only on what no core entry
claims. Every consumer reads the combined tables through udp_entries() and tcp_entries(); the plugins
are imported once, when first needed. A plugin that cannot be imported or breaks the contract is a
PluginError that names it.
"""
from __future__ import annotations

import functools
import importlib
import importlib.metadata
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from dissectors import dns, ftp, h225, http, iax2, megaco, mgcp, rtcp, rtp, sip, skinny, snmp, stun, telnet, tftp, tls, zrtp
from dissectors.sip_stream import SipStreamFramer, SipStreamProbe
from dissectors.tcp import Framer, StreamProbe
from voipwatch.records import Anomaly, PacketMeta, TlsFlow

Probe = Callable[[bytes], bool]           # a content test: where it runs is the entry's port rule
Parser = Callable[[PacketMeta, bytes], tuple[Any, list[Anomaly]]]

# RFC 3261 §19.1.2: the default SIP ports (5060 and, for TLS, 5061).
SIP_PORTS = frozenset((5060, 5061))


@dataclass(frozen=True, slots=True)
class Entry:
    """One protocol of one transport: when it claims traffic, and who describes what it claimed."""
    bucket: str                          # frame class of what it claims (summary.json frames_by_class)
    meaning: str                         # what that frame class holds, one line (README)
    probe: Probe | None                  # content test; None: the ports alone decide (TCP)
    parse: Parser | None = None          # describes a datagram (UDP) or each framed message (TCP); None: counted only
    failed: str | None = None            # UDP: frame class when parse returns no record; None: the walk goes on
    failed_meaning: str = ""
    framer: Callable[[], Framer] | None = None   # TCP: makes a direction's framer, which splits its in-order
                                                 # bytes into messages for parse
    seek: Callable[[], StreamProbe] | None = None  # TCP: makes a direction's stream probe, asked segment by
                                                   # segment before framing starts; None: framed from the first
    opens: Callable[[PacketMeta], Any] | None = None   # TCP: the record of a flow found to carry this protocol
    ports: frozenset[int] = frozenset()      # probed only when either port is one of these (registered ports)
    not_ports: frozenset[int] = frozenset()  # never probed when either port is one of these (heuristics)
    switch: str | None = None            # the PipelineConfig flag that turns the entry on
    first: frozenset[int] | None = None  # the first octets a payload it claims can have (never probed on
                                         # others, as RFC 7983 §7 demultiplexes by the first octet); None: any
    home: frozenset[int] = frozenset()   # its default ports: traffic there that no entry claims is `stray`
    stray: str | None = None             # that anomaly's name (declared by the protocol's dissector)
    fresh: Callable[[], Parser] | None = None   # UDP: makes a parser with state of its own for each Analyzer
                                                # (e.g. DTLS fragment reassembly); parse is then its stand-in

    @property
    def protocol(self) -> str:
        """The protocol's name in anomaly details: "SIP" for "sip" and "tcp.sip"."""
        return self.bucket.rpartition(".")[2].upper()


# RTP/RTCP found by their header on flows SDP did not announce (Wireshark's rtp_udp and rtcp_udp
# heuristics): never on the ports of LAN services that own their datagrams.
_MEDIA_HEURISTIC = dict(not_ports=rtp.HEURISTIC_EXCLUDED_PORTS, switch="rtp_heuristic", first=rtp.VERSION_2_OCTETS)
# DNS over UDP, with or without a question.
_DNS = dict(parse=dns.parse, failed="dns.malformed",
            failed_meaning="a DNS datagram whose header or question cannot be decoded")

UDP = (
    Entry("sip", "a SIP message (RFC 3261) on any port", sip.looks_like_sip, sip.parse_sip,
          failed="sip.unparsed", failed_meaning="a datagram that looked like SIP in which the parser finds no "
                                                "start line",
          home=SIP_PORTS, stray="sip.not_sip_on_sip_port", first=sip.FIRST_OCTETS),
    Entry("dns", "a DNS or mDNS message (RFC 1035, RFC 6762) on port 53 or 5353", dns.looks_like_dns,
          ports=frozenset(dns.DNS_PORTS), **_DNS),
    Entry("dns", "a multicast DNS response, which has no question (RFC 6762 §6), on port 5353",
          dns.looks_like_mdns_answer, ports=frozenset((dns.MDNS_PORT,)), **_DNS),
    Entry("snmp", "an SNMP v1/v2c/v3 message (RFC 3416, RFC 3412) on port 161 or 162", snmp.looks_like_snmp,
          snmp.parse, failed="snmp.malformed", failed_meaning="a datagram that looked like SNMP whose PDU cannot be "
                                                              "decoded", ports=snmp.SNMP_PORTS, first=snmp.FIRST_OCTETS),
    Entry("tftp", "a TFTP read or write request (RFC 1350 §5) on port 69", tftp.looks_like_request, tftp.parse,
          ports=frozenset((tftp.TFTP_PORT,)), first=tftp.FIRST_OCTETS),
    # Other VoIP control protocols on their registered ports, each recognised by its content first.
    Entry("mgcp", "an MGCP command or response (RFC 3435) on UDP 2427 or 2727", mgcp.looks_like_mgcp, mgcp.parse,
          failed="mgcp.unparsed", failed_meaning="a datagram that looked like MGCP without a valid command or "
                                                 "response line", ports=mgcp.MGCP_PORTS),
    Entry("megaco", "an H.248/Megaco message (RFC 3525) on UDP 2944 or 2945: text described, binary counted",
          megaco.looks_like_megaco, megaco.parse, failed="megaco.unparsed",
          failed_meaning="a datagram that looked like text Megaco whose header cannot be read",
          ports=megaco.MEGACO_PORTS),
    Entry("h225.ras", "an H.225.0 RAS message on UDP 1719, named by its PER choice", h225.looks_like_ras,
          h225.parse_ras, failed="h225.ras_unparsed", failed_meaning="a datagram on UDP 1719 whose first octet "
                                                                     "is no RasMessage choice",
          ports=frozenset((h225.H225_RAS_PORT,))),
    Entry("iax2", "an IAX2 full frame (RFC 5456 §8.1.1) on UDP 4569", iax2.is_full_frame, iax2.parse,
          failed="iax2.short_frame", failed_meaning="a datagram on UDP 4569 with the F bit but no full header",
          ports=frozenset((iax2.IAX2_PORT,))),
    Entry("iax2.media", "an IAX2 mini or meta frame (RFC 5456 §8.1.2, §8.1.3) on UDP 4569: media, counted",
          iax2.is_mini_frame, ports=frozenset((iax2.IAX2_PORT,))),
    Entry("zrtp", "ZRTP key agreement (RFC 6189)", zrtp.looks_like_zrtp, first=zrtp.FIRST_OCTETS),
    Entry("stun", "STUN (RFC 5389): ICE checks and NAT keep-alives", stun.looks_like_stun, first=stun.FIRST_OCTETS),
    # A DTLS datagram without a cleartext handshake (application data, alerts) is still DTLS: failed="dtls".
    Entry("dtls", "a DTLS record (RFC 6347; DTLS-SRTP keying, RFC 5764)", tls.looks_like_dtls, tls.DtlsParser(),
          failed="dtls", failed_meaning="a DTLS datagram without a cleartext handshake message (application data, "
                                        "alerts, encrypted handshake)", first=tls.FIRST_OCTETS, fresh=tls.DtlsParser),
    # TFTP moves the file between ports the request's answer picks (RFC 1350 §4): found by content, and
    # voipwatch.transfers keeps only packets of a transfer a request opened.
    Entry("tftp", "a TFTP DATA, ACK, ERROR or OACK packet (RFC 1350 §5, RFC 2347) on any port",
          tftp.looks_like_transfer, tftp.parse, first=tftp.FIRST_OCTETS, not_ports=rtp.HEURISTIC_EXCLUDED_PORTS),
    Entry("rtcp", "an RTCP packet (RFC 3550 §6) on announced media, or found by Wireshark's rtcp_udp heuristic",
          rtcp.looks_like_rtcp, rtcp.parse_rtcp,
          failed="rtcp.malformed", failed_meaning="a datagram taken as RTCP that cannot be decoded",
          **_MEDIA_HEURISTIC),
    Entry("rtp", "an RTP packet (RFC 3550 §5) on announced media, or found by Wireshark's rtp_udp heuristic",
          rtp.looks_like_rtp, rtp.parse_unannounced, **_MEDIA_HEURISTIC),
)
# A datagram no entry claims.
UDP_OTHER = "udp.other"
# A datagram to or from SDP-announced RTP media that is neither RTP nor RTCP (the pipeline's session step).
ANNOUNCED_NOT_MEDIA = "rtp.malformed"

TCP = (
    Entry("tcp.dns", "a TCP segment of a DNS flow (port 53; messages framed by RFC 1035 §4.2.2)", None,
          dns.parse, framer=dns.stream_framer, ports=frozenset((dns.DNS_PORT,))),
    Entry("tcp.tls", "a TCP segment of a flow that starts with a TLS record (SIP over TLS: handshake described, "
                     "never decrypted)",
          tls.looks_like_tls, tls.parse_tls, framer=tls.TlsRecordFramer, opens=TlsFlow, first=tls.FIRST_OCTETS),
    Entry("tcp.ftp", "a TCP segment of an FTP control connection (port 21, RFC 959: CRLF lines)", None, ftp.parse,
          framer=ftp.stream_framer, ports=frozenset((ftp.FTP_PORT,))),
    Entry("tcp.telnet", "a TCP segment of a Telnet connection (port 23, RFC 854)", None, telnet.parse,
          framer=telnet.TelnetFramer, ports=frozenset((telnet.TELNET_PORT,))),
    # SIP on its ports is framed from the first byte, as Wireshark's port table does: the framer skips to
    # the next start line and gives up a direction that holds none (sip.not_sip_on_sip_port).
    Entry("tcp.sip", "a TCP segment of a SIP flow direction once a start line was found in it (framed by "
                     "Content-Length, §18.3, and resynchronised on start lines): on port 5060 or 5061 from its "
                     "first byte, elsewhere from the first segment that begins a SIP message",
          None, sip.parse_sip, framer=SipStreamFramer, ports=SIP_PORTS),
    # HTTP/1.x on any port other than SIP's, from a first segment that begins a request or status line.
    Entry("tcp.http", "a TCP segment of an HTTP/1.x flow direction (RFC 9112) that began with a request or status "
                      "line", http.looks_like_http, http.parse, framer=http.HttpFramer, not_ports=SIP_PORTS,
          first=http.FIRST_OCTETS),
    # H.225.0 call signalling and SCCP on their ports, when the first data segment is theirs (before the
    # SIP heuristic, which would otherwise seek SIP in them).
    Entry("tcp.h225", "a TCP segment of an H.225.0 call signalling flow (TCP 1720 whose first data segment begins "
                      "a TPKT packet carrying Q.931; framed by TPKT length, RFC 1006)",
          h225.looks_like_tpkt_q931, h225.parse_q931, framer=h225.framer, ports=frozenset((h225.H225_CS_PORT,)),
          first=frozenset((h225.TPKT_VERSION,))),
    Entry("tcp.sccp", "a TCP segment of an SCCP/Skinny flow (TCP 2000 whose first data segment begins a plausible "
                      "12-octet Skinny header; framed by its length)",
          skinny.looks_like_skinny, skinny.parse, framer=skinny.framer, ports=frozenset((skinny.SKINNY_PORT,))),
    # Elsewhere SIP is sought segment by segment (Wireshark's SIP heuristic), for a bounded number of segments.
    Entry("tcp.sip", "a TCP segment of a SIP flow direction outside the SIP ports, from the first segment that "
                     "begins a SIP message", None, sip.parse_sip, framer=SipStreamFramer, seek=SipStreamProbe,
          not_ports=SIP_PORTS),
)
# What the pipeline answers for a TCP segment no entry describes.
TCP_OTHER = Entry("tcp.other", "a TCP segment of a flow direction no entry describes: none claimed it, its "
                               "protocol is still sought or was given up, or no message was found in it yet", None)
TCP_CONTROL = "tcp.control"     # a segment without data of a flow not yet classified (SYN, ACK, FIN, RST)


SITE_GROUP = "voipwatch.dissectors"


class PluginError(ValueError):
    """A site's dissector module that cannot be imported or breaks the contract above."""


def udp_entries() -> tuple[Entry, ...]:
    """The UDP dispatch table: the core's entries, then the site's."""
    return _tables()[0]


def tcp_entries() -> tuple[Entry, ...]:
    """The TCP dispatch table: the core's entries, then the site's."""
    return _tables()[1]


def site_modules() -> tuple[ModuleType, ...]:
    """The site's dissector modules (entry point group voipwatch.dissectors), imported, by entry point name."""
    return _tables()[2]


@functools.cache
def _tables() -> tuple[tuple[Entry, ...], tuple[Entry, ...], tuple[ModuleType, ...]]:
    udp, tcp, modules = list(UDP), list(TCP), []
    core_classes = set(frame_classes(UDP, TCP))
    for point in sorted(importlib.metadata.entry_points(group=SITE_GROUP), key=lambda e: e.name):
        origin = f"dissector plugin {point.name} = {point.value!r} (from {point.dist.name if point.dist else '?'})"
        try:
            module = importlib.import_module(point.module)
        except Exception as exc:     # a site's module: any failure is reported, with its origin
            raise PluginError(f"{origin}: {type(exc).__name__}: {exc}") from exc
        try:
            site_udp, site_tcp = _site_entries(module, core_classes)
        except ValueError as exc:
            raise PluginError(f"{origin}: {exc}") from exc
        udp += site_udp
        tcp += site_tcp
        modules.append(module)
    return tuple(udp), tuple(tcp), tuple(modules)


def _site_entries(module: ModuleType, core_classes: set[str]) -> tuple[tuple[Entry, ...], tuple[Entry, ...]]:
    """A site module's UDP and TCP entries, checked against the contract."""
    if not isinstance(getattr(module, "ANOMALIES", None), dict):
        raise ValueError("the module declares no ANOMALIES (anomaly name -> meaning)")
    tables = {name: getattr(module, name, ()) for name in ("UDP", "TCP")}
    for name, table in tables.items():
        if not isinstance(table, tuple) or not all(isinstance(e, Entry) for e in table):
            raise ValueError(f"{name} must be a tuple of dissectors.dispatch.Entry")
    if not any(tables.values()):
        raise ValueError("the module declares no UDP or TCP entry")
    for entry in (*tables["UDP"], *tables["TCP"]):
        for name in (entry.bucket, entry.failed):
            if name in core_classes:
                raise ValueError(f"frame class {name!r} is a core one")
    for entry in tables["UDP"]:
        # The batch path decodes version-2 datagrams on ports no entry names as RTP (docstring above).
        if not entry.ports and (entry.first is None or entry.first & rtp.VERSION_2_OCTETS):
            raise ValueError(f"UDP entry {entry.bucket!r} has no ports and may claim RTP's first octets: "
                             "give it ports, or first octets outside 0x80..0xBF")
    return tables["UDP"], tables["TCP"]


class PortIndex:
    """The entries of one table to probe for a port pair and a payload's first octet, precomputed.

    Ports fall into a few kinds: those no rule names (kind 0), and one kind per set of entries whose
    port rules or default ports name a port. `kinds` gives each port's kind in one octet;
    `tries[a][b][octet]` the entries to probe for a pair of kinds and a first octet (EMPTY: no
    payload), and `strays[a][b]` the entry whose default port one of them is. Choosing costs five
    indexings however many entries the table has; as RFC 7983 §7 demultiplexes a media port by the
    first octet, an entry is not even probed on a payload that cannot be its.
    """

    EMPTY = 256

    def __init__(self, table: tuple[Entry, ...], config: Any) -> None:
        entries = [e for e in table if e.switch is None or getattr(config, e.switch)]
        for e in entries:
            if e.ports and e.not_ports:
                raise ValueError(f"{e.bucket}: an entry has ports or not_ports, not both")
        # Sets of entries are bit masks (bit i: entries[i]). A port's kind: (the entries whose port rule
        # names it, the index of the first entry it is a default port of, or -1).
        signatures: dict[tuple[int, int], int] = {(0, -1): 0}
        kinds = bytearray(1 << 16)
        for port in sorted({p for e in entries for p in e.ports | e.not_ports | e.home}):
            named = sum(1 << i for i, e in enumerate(entries) if port in e.ports or port in e.not_ports)
            home = next((i for i, e in enumerate(entries) if port in e.home), -1)
            kinds[port] = signatures.setdefault((named, home), len(signatures))
        if len(signatures) > 256:
            raise ValueError("more than 256 kinds of port: widen PortIndex.kinds")
        self.kinds = bytes(kinds)
        # per first octet, the entries that may claim a payload starting with it
        may = [0] * (self.EMPTY + 1)
        for i, e in enumerate(entries):
            for octet in range(self.EMPTY + 1) if e.first is None else e.first:
                may[octet] |= 1 << i
        by_allowed: dict[int, list[tuple[Entry, ...]]] = {}

        def by_octet(named: int) -> list[tuple[Entry, ...]]:
            allowed = sum(1 << i for i, e in enumerate(entries) if _applies(e, named >> i & 1))
            if allowed not in by_allowed:
                subsets = {m: _subset(entries, allowed & m) for m in set(may)}
                by_allowed[allowed] = [subsets[m] for m in may]
            return by_allowed[allowed]

        self.tries = [[by_octet(a | b) for b, _ in signatures] for a, _ in signatures]
        self.strays = [[entries[i] if i >= 0 else entries[j] if j >= 0 else None for _, j in signatures]
                       for _, i in signatures]

    def entries(self, sport: int, dport: int, payload: bytes) -> tuple[Entry, ...]:
        kinds = self.kinds
        return self.tries[kinds[sport]][kinds[dport]][payload[0] if payload else self.EMPTY]

    def stray(self, sport: int, dport: int) -> Entry | None:
        """The entry whose default port either is (the source port's first), for traffic none claimed."""
        kinds = self.kinds
        return self.strays[kinds[sport]][kinds[dport]]


def _subset(entries: list[Entry], mask: int) -> tuple[Entry, ...]:
    """The entries of a bit mask, in table order."""
    return tuple(e for i, e in enumerate(entries) if mask >> i & 1)


def _applies(entry: Entry, named: int) -> bool:
    """Whether an entry is tried when `named` says if either port is in its port rule."""
    if entry.ports:
        return bool(named)
    return not named


def stray_datagram(entry: Entry, meta: PacketMeta, payload: bytes) -> Anomaly:
    """A UDP datagram on `entry`'s default ports that no entry claimed."""
    name = entry.protocol
    return Anomaly(meta.ts, meta.frame, entry.stray.partition(".")[0], entry.stray,
                   f"{len(payload)}-byte UDP datagram to or from a {name} port is not {name}", meta.src, meta.dst)


def frame_classes(udp: tuple[Entry, ...] | None = None, tcp: tuple[Entry, ...] | None = None) -> dict[str, str]:
    """Every frame class the UDP and TCP dispatch can count (the combined tables unless given), with its meaning."""
    udp = udp_entries() if udp is None else udp
    tcp = tcp_entries() if tcp is None else tcp
    classes: dict[str, str] = {}
    for entry in udp:
        classes.setdefault(entry.bucket, entry.meaning)
        if entry.failed is not None:
            classes.setdefault(entry.failed, entry.failed_meaning)
    classes[ANNOUNCED_NOT_MEDIA] = "a datagram to or from SDP-announced RTP media that is neither RTP nor RTCP"
    classes[UDP_OTHER] = "a UDP datagram no entry claims"
    for entry in tcp + (TCP_OTHER,):
        classes.setdefault(entry.bucket, entry.meaning)
    classes[TCP_CONTROL] = "a TCP segment without data of a flow not yet classified (SYN, ACK, FIN, RST)"
    return classes
