"""The event contract: frozen records passed from dissectors to sessions, detectors and outputs.

Dissectors and detectors import from here, never from each other. Optional fields default to None;
units are in the names (ts is seconds since the epoch, capture time, never the wall clock).

Every record type that the pipeline emits is declared once with `declare()` (the role of Zeek's
events.bif; the core types at the end of this file): where it falls on the detectors' timeline and,
if it is written as a table, the table's name, columns and row order. The sinks
(voipwatch.analyze.Collector, the DetectorBus, the live writers) and voipwatch.tables read these
declarations; a record type defined in another module (a new dissector's) is declared the same way
in that module, with no list to edit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, NamedTuple

# -- declarations --------------------------------------------------------------------------------
DTYPES = ("string", "Int64", "Float64", "boolean")     # pandas nullable dtypes of table columns


class Column(NamedTuple):
    """One table column: its name, pandas dtype and the value a record gives (None when missing)."""
    name: str
    dtype: str
    get: Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Timing:
    """The waits after which the session trackers close a summary record (voipwatch.config
    PipelineConfig), handed by the DetectorBus to the timeline functions."""
    rtp_idle_s: float
    call_idle_s: float
    call_linger_s: float


@dataclass(frozen=True, slots=True)
class RecordSpec:
    """How one record type is ordered for the detectors and written as a table."""
    type: type
    rank: int                      # order among records released at the same capture time
    timeline: Callable[[Any, Timing], tuple[float, int]]   # record -> (release capture time, frame)
    table: str | None = None       # table name when the record type is written as a table
    columns: tuple[Column, ...] = ()
    sort: Callable[[Any], tuple] | None = None               # row order of the table


RECORDS: dict[type, RecordSpec] = {}      # every declared record type
TABLES: dict[str, RecordSpec] = {}        # table name -> its record type's declaration, in declaration order


def declare(record_type: type, *, rank: int, timeline: Callable[[Any, Timing], tuple[float, int]],
            table: str | None = None, sort: Callable[[Any], tuple] | None = None,
            columns: Iterable[tuple[str, str, Callable[[Any], Any]]] = ()) -> RecordSpec:
    """Declare a record type that the pipeline emits. `timeline(record, timing)` gives the capture time
    at which the record is complete and the frame that orders it; `rank` orders records released at
    the same time (packets before what summarises them). A table needs `sort` and `columns`
    ((name, dtype, extractor), in column order)."""
    spec = RecordSpec(record_type, rank, timeline, table, tuple(Column(*c) for c in columns), sort)
    problems = []
    if record_type in RECORDS:
        problems.append("declared twice")
    if (table is None) != (sort is None) or (table is None) != (not spec.columns):
        problems.append("a table needs a name, a sort key and columns; a record that is no table has none")
    if table is not None and table in TABLES:
        problems.append(f"table {table!r} is already declared by {TABLES[table].type.__name__}")
    names = [c.name for c in spec.columns]
    if len(set(names)) != len(names):
        problems.append("column names repeat")
    problems += [f"column {c.name!r} has dtype {c.dtype!r}, not one of {DTYPES}" for c in spec.columns
                 if c.dtype not in DTYPES]
    if problems:
        raise TypeError(f"record {record_type.__name__}: " + "; ".join(problems))
    RECORDS[record_type] = spec
    if table is not None:
        TABLES[table] = spec
    return spec


def at_packet(record: Any, timing: Timing) -> tuple[float, int]:
    """A record of one packet (it has .pkt) is complete at that packet."""
    return record.pkt.ts, record.pkt.frame


def at_ts(record: Any, timing: Timing) -> tuple[float, int]:
    """A record with its own .ts and .frame is complete then."""
    return record.ts, record.frame


def vlan_text(vlan: tuple[int, ...]) -> str:
    """A VLAN stack outer -> inner as text: "" untagged, "110", "10/20" for QinQ."""
    return "/".join(str(v) for v in vlan)


def r6(x: float | None) -> float | None:
    """Rounded to microseconds (table floats)."""
    return None if x is None else round(x, 6)


# -- records -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Frame:
    """One captured frame as read from a capture file or interface."""
    ts: float                      # capture time, seconds since the epoch
    frame: int                     # 1-based frame number across the whole run (merged inputs)
    linktype: int                  # LINKTYPE_* value (tcpdump.org/linktypes.html)
    data: bytes                    # captured bytes (may be shorter than wire_len)
    wire_len: int                  # original length on the wire
    source: int = 0                # index of the input file the frame came from
    offset: int | None = None      # byte offset of the record in its (uncompressed) file


@dataclass(frozen=True, slots=True)
class PacketMeta:
    """The common section of every record (EVE's flow tuple, Zeek's conn_id)."""
    ts: float                      # capture time of the frame that completed the record
    frame: int                     # 1-based frame number (EVE pcap_cnt)
    vlan: tuple[int, ...]          # 802.1Q/802.1ad ids outer -> inner; () when untagged
    src: str
    sport: int
    dst: str
    dport: int
    transport: str                 # "udp" | "tcp"


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A frame or message that could not be (fully) decoded: Zeek's weird, EVE's anomaly."""
    ts: float
    frame: int
    layer: str                     # "capture" | "link" | "ip" | "udp" | "tcp" | "sip" | "sdp" | "rtp" | "rtcp" | "dns" | "cdp" | "lldp"
    name: str                      # stable dotted reason, e.g. "sip.invalid_content_length"
    detail: str = ""               # human-readable specifics (never a secret)
    src: str | None = None
    dst: str | None = None


@dataclass(frozen=True, slots=True)
class SdpCrypto:
    """RFC 4568 a=crypto line. The key is never kept: only its SHA-256 and length."""
    tag: int | None
    suite: str                     # e.g. "AES_CM_128_HMAC_SHA1_80"
    key_sha256: str | None         # hex SHA-256 of the decoded inline key||salt
    key_len: int | None            # length in bytes of the decoded key||salt
    session_params: tuple[str, ...] = ()   # e.g. ("UNENCRYPTED_SRTP",)


@dataclass(frozen=True, slots=True)
class SdpMedia:
    """One m= section (RFC 4566 §5.14) with its attributes."""
    kind: str                      # "audio" | "video" | "image" | "application" | ...
    port: int
    proto: str                     # "RTP/AVP" | "RTP/SAVP" | "UDP/TLS/RTP/SAVPF" | "udptl" | ...
    formats: tuple[str, ...]       # payload types / format tokens as written
    rtpmap: tuple[tuple[int, str, int], ...] = ()   # (pt, encoding name, clock rate Hz)
    connection: str | None = None  # media-level c= address, else None (use the session's)
    direction: str | None = None   # sendrecv | sendonly | recvonly | inactive
    crypto: tuple[SdpCrypto, ...] = ()
    fingerprint: str | None = None  # hash function of a=fingerprint (RFC 8122), e.g. "sha-256"
    zrtp_hash: bool = False        # a=zrtp-hash present (RFC 6189)
    setup: str | None = None       # a=setup (RFC 4145) for DTLS-SRTP
    rtcp_port: int | None = None   # a=rtcp (RFC 3605)
    fingerprint_value: str | None = None  # the a=fingerprint value, hex lower case without colons


@dataclass(frozen=True, slots=True)
class SdpSession:
    """An SDP body (RFC 4566)."""
    origin_user: str | None
    origin_addr: str | None
    connection: str | None         # session-level c= address
    media: tuple[SdpMedia, ...]
    fingerprint: str | None = None  # session-level a=fingerprint hash function
    zrtp_hash: bool = False
    direction: str | None = None
    crypto: tuple[SdpCrypto, ...] = ()   # session-level a=crypto (non-standard, seen in the wild)
    fingerprint_value: str | None = None  # the session-level a=fingerprint value, hex lower case without colons


@dataclass(frozen=True, slots=True)
class SipAuth:
    """An Authorization/Proxy-Authorization or WWW-/Proxy-Authenticate header (RFC 3261 §22, RFC 7616).

    The digest response is never kept in clear: only its SHA-256 and length.
    """
    header: str                    # "authorization" | "proxy-authorization" | "www-authenticate" | "proxy-authenticate"
    scheme: str                    # "Digest" | ...
    username: str | None = None
    realm: str | None = None
    algorithm: str | None = None
    qop: str | None = None
    uri: str | None = None
    response_sha256: str | None = None
    response_len: int | None = None
    stale: bool | None = None      # a challenge's stale flag (RFC 7616 §3.3); None when absent or not a challenge


@dataclass(frozen=True, slots=True)
class SipMessage:
    """One SIP request or response (RFC 3261 §7)."""
    pkt: PacketMeta
    is_request: bool
    method: str | None             # request method; None for responses
    request_uri: str | None
    ruri_user: str | None
    status: int | None             # response status code; None for requests
    reason: str | None
    call_id: str | None
    cseq: int | None
    cseq_method: str | None
    from_uri: str | None
    from_user: str | None
    from_tag: str | None
    to_uri: str | None
    to_user: str | None
    to_tag: str | None
    via: tuple[str, ...] = ()      # Via values, topmost first
    contact: tuple[str, ...] = ()  # Contact URIs
    expires: int | None = None     # Expires header, or the first Contact ;expires=
    contact_expires: tuple[int | None, ...] = ()   # per Contact: its ;expires=, else the Expires header (RFC 3261 §10.2.1.1, §10.3 step 8)
    user_agent: str | None = None
    server: str | None = None
    content_type: str | None = None
    content_length: int | None = None
    body_len: int = 0
    auth: tuple[SipAuth, ...] = ()
    pai: tuple[str, ...] = ()      # P-Asserted-Identity URIs (RFC 3325)
    diversion: tuple[str, ...] = ()  # Diversion URIs (RFC 5806)
    refer_to: str | None = None    # Refer-To URI (RFC 3515)
    sdp: SdpSession | None = None
    body_has_dtmf_relay: bool = False  # INFO body application/dtmf-relay or dtmf (digits never kept)
    vlan_path: tuple[tuple[int, ...], ...] | None = None  # VLAN stacks of every SPAN copy of the packet, first
                                                          # first, when copies were dropped (voipwatch.dedup)
    reliable: bool = False         # a provisional response sent reliably: Require 100rel with an RSeq (RFC 3262 §3)
    session_ids: tuple[str, ...] = ()  # Session-ID UUIDs, local then remote, the null UUID left out (RFC 7989 §4)
    leg_refs: tuple[str, ...] = ()  # Call-IDs a B2BUA names as this call's other leg (X-CID, X-Orig-Call-ID, ...)


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """RTP fixed header fields (RFC 3550 §5.1) of one packet."""
    pkt: PacketMeta
    ssrc: int
    seq: int
    rtp_ts: int
    pt: int
    marker: bool
    payload_len: int
    negotiated: bool               # flow was announced in SDP (else found by the header heuristic)


@dataclass(frozen=True, slots=True)
class RtcpReportBlock:
    """A reception report block (RFC 3550 §6.4.1)."""
    ssrc: int
    fraction_lost: int             # 8-bit fixed point, /256
    cumulative_lost: int           # signed 24-bit
    highest_seq: int
    jitter: int                    # RTP timestamp units
    lsr: int
    dlsr: int


@dataclass(frozen=True, slots=True)
class RtcpPacket:
    """One UDP datagram of (compound) RTCP (RFC 3550 §6)."""
    pkt: PacketMeta
    kinds: tuple[str, ...]         # "SR" | "RR" | "SDES" | "BYE" | "APP" | "XR" | other PT numbers as str
    sender_ssrc: int | None
    reports: tuple[RtcpReportBlock, ...] = ()
    cnames: tuple[str, ...] = ()
    encrypted: bool = False        # SRTCP (RFC 3711): trailing E-flag/index present


@dataclass(frozen=True, slots=True)
class DnsMessage:
    """One DNS query or response (RFC 1035; SRV RFC 2782; NAPTR RFC 3403)."""
    pkt: PacketMeta
    qid: int
    is_response: bool
    qname: str | None
    qtype: str | None              # "A", "AAAA", "SRV", "NAPTR", ... or the number as str
    rcode: str | None              # "NOERROR", "NXDOMAIN", ... for responses
    answers: tuple[str, ...] = ()  # rendered answers, e.g. "SRV 10 60 5060 sip.example.com"
    malformed: str | None = None   # why a later section could not be decoded (answers before it kept)


@dataclass(frozen=True, slots=True)
class TlsFlow:
    """A TCP flow direction that starts with a TLS record (e.g. SIP over TLS on 5061): recorded, never
    decrypted; what its handshake says is in TlsHandshake records."""
    pkt: PacketMeta


@dataclass(frozen=True, slots=True)
class TlsHello:
    """A ClientHello or ServerHello (RFC 8446 §4.1.2/§4.1.3; RFC 5246 §7.4.1; DTLS RFC 6347 §4.2.1).
    Codes are the IANA registries' numbers; the chosen version prefers supported_versions (RFC 8446 §4.2.1)."""
    role: str                          # "client" | "server" | "hello_retry_request" (RFC 8446 §4.1.4) |
                                       # "hello_verify_request" (DTLS, RFC 6347 §4.2.1: server_version only)
    legacy_version: int                # e.g. 0x0303; DTLS 0xfefd
    versions: tuple[int, ...] = ()     # supported_versions: offered (client) or the one chosen (server)
    cipher_suites: tuple[int, ...] = ()  # offered (client) or the one chosen (server)
    groups: tuple[int, ...] = ()       # supported_groups (client)
    key_share_groups: tuple[int, ...] = ()  # key_share: offered groups (client) or the chosen one (server)
    signature_algorithms: tuple[int, ...] = ()
    sni: str | None = None             # server_name host_name (RFC 6066 §3), as sent (attacker text)
    alpn: tuple[str, ...] = ()         # RFC 7301 protocol names
    use_srtp: tuple[int, ...] = ()     # RFC 5764 §4.1.1 SRTP protection profiles
    extensions: tuple[int, ...] = ()   # extension types in order
    session_id_len: int = 0


@dataclass(frozen=True, slots=True)
class X509Summary:
    """One X.509 certificate of a Certificate message (RFC 5280), described, never trusted."""
    subject: str
    issuer: str
    not_before: float | None           # seconds since the epoch
    not_after: float | None
    key_alg: str                       # "rsa" | "ec" | "dsa" | "ed25519" | "ed448" | "dh" | ...
    key_bits: int | None               # RSA modulus / EC curve size
    curve: str | None                  # EC named curve (e.g. "secp256r1")
    signature_alg: str | None          # e.g. "sha256WithRSAEncryption" (OID name)
    self_signed: bool                  # issuer == subject and the signature verifies with its own key
    serial: str                        # hex
    sha1: str                          # DER hashes, hex lower case (RFC 8122 fingerprints)
    sha256: str
    der_len: int


@dataclass(frozen=True, slots=True)
class TlsHandshake:
    """The cleartext handshake messages of one TLS message (TCP) or one DTLS datagram: what each side
    offered, chose and showed. `certificates` is None without a Certificate message, () when it was
    empty (a client declining mutual authentication, RFC 5246 §7.4.6)."""
    pkt: PacketMeta
    protocol: str                      # "tls" | "dtls"
    messages: tuple[str, ...]          # handshake message names in order
    hello: TlsHello | None = None
    certificates: tuple[X509Summary, ...] | None = None
    certificate_request: bool = False
    # ServerKeyExchange (TLS <= 1.2), read both ways because its layout depends on the chosen suite:
    # the named curve if it is ECDHE's (RFC 8422 §5.4, curve_type 3), the prime's bits if DHE's (RFC 5246 §7.4.3)
    ske_curve: int | None = None
    ske_dh_bits: int | None = None
    # DTLS-SRTP (RFC 5763 §5): the call whose SDP announced the certificate sender's address:port, and
    # whether the certificate's hash equals that SDP's a=fingerprint (RFC 8122 §5): "match", "mismatch",
    # "unchecked" (a hash function not kept); None without such an SDP
    call_id: str | None = None
    sdp_fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class RtpStream:
    """One RTP stream: a (flow, SSRC) with RFC 3550 A.1/A.8 statistics."""
    src: str
    sport: int
    dst: str
    dport: int
    vlan: tuple[int, ...]
    ssrc: int
    payload_type: int              # the first payload type seen
    codec: str | None
    packets: int
    expected: int                  # RFC 3550 A.3: extended highest - base + 1
    lost: int                      # expected - packets (negative with duplicates, as tshark)
    duplicates: int
    out_of_order: int
    jitter_ms_mean: float
    jitter_ms_max: float
    max_delta_ms: float
    first_ts: float
    last_ts: float
    first_frame: int
    call_id: str | None
    negotiated: bool
    payload_types: tuple[int, ...] = ()
    bytes: int = 0
    payload_entropy: float | None = None   # bits/byte of the first payload bytes (>= 8 KB), None if fewer


@dataclass(frozen=True, slots=True)
class Call:
    """A SIP INVITE dialog set, keyed by Call-ID."""
    call_id: str
    first_ts: float
    last_ts: float
    caller: str | None
    callee: str | None
    src: str
    dst: str
    vlan: tuple[int, ...]
    transport: str
    state: str                     # "attempting" | "ringing" | "answered" | "ended" | "failed" | "cancelled"
    final_status: int | None
    setup_s: float | None
    duration_s: float | None
    user_agent: str | None
    media_protection: str          # "none" | "sdes" | "dtls" | "zrtp" | "unknown"
    n_streams: int = 0
    first_frame: int = 0
    ruri_user: str | None = None


ENDED_STATES = ("ended", "failed", "cancelled")     # Call.state values of a call that is over


@dataclass(frozen=True, slots=True)
class Registration:
    """REGISTER transactions of one address-of-record from one source, each counted by its final answer
    as voipwatch.sip_auth.outcome defines it (the registration checks count the same way)."""
    aor: str
    src: str
    vlan: tuple[int, ...]
    attempts: int
    challenges: int                # 401/407 to a REGISTER without credentials (or stale=true)
    successes: int                 # 2xx
    failures: int                  # 401/403/407 to a REGISTER carrying credentials: failed logins
    first_ts: float
    last_ts: float
    user_agent: str | None
    first_frame: int = 0
    rejected: int = 0              # any other answer >= 300 (404, 403 without credentials, 503, ...)


@dataclass(frozen=True, slots=True)
class Alert:
    """A detector's finding (EVE alert).

    A detector returns one Alert per raise (voipwatch.detect.Detector.alert): `ts` is the raise time and
    `first_ts` the start of the activity it describes. The DetectorBus merges the raises of one
    (name, identifier) into one living finding and reports it as Alerts with `state` "new", "update" or
    "final": there `ts` = `first_ts` (the first packet of the evidence), `last_ts` the latest activity,
    `raised_ts` the time of the first raise, `raises` how many raises were merged, `repeats` how many
    separate activities (distinct `first_ts`) beyond the first, and `incident` the incident it belongs to.
    """
    ts: float
    family: str                    # the name of the detector that raised it, e.g. "toll_fraud"
    name: str                      # stable dotted id, e.g. "registration_flood.brute_force"
    check: str                     # nsa-checks.md id, e.g. "RF-03"
    severity: str                  # critical | high | medium | low | info
    guide_ref: str
    msg: str
    identifier: str
    src: str | None = None
    sport: int | None = None
    dst: str | None = None
    dport: int | None = None
    vlan: tuple[int, ...] = ()
    call_id: str | None = None
    evidence: Mapping[str, object] = field(default_factory=dict)
    first_ts: float | None = None  # start of the activity (None: the raise time)
    totals: Mapping[str, int] = field(default_factory=dict)   # counts of this activity, summed over repeats
    actors: tuple[str, ...] = ()   # who did it, as "ip:", "account:" or "mac:" keys (default: the source address)
    last_ts: float | None = None
    raised_ts: float | None = None
    raises: int = 1
    repeats: int = 0
    state: str = "raise"           # raise (a detector's), new | update | final (the bus's)
    incident: str | None = None


@dataclass(frozen=True, slots=True)
class FlowSeen:
    """The first packet of a UDP/TCP flow direction (VLAN stack + 5-tuple), or its first reply.

    RTP/RTCP flows are described by RtpStream records instead, in both execution paths.
    """
    pkt: PacketMeta
    app: str                       # classification of this packet: sip, dns, tls, tcp.other, udp.other, ...
    reply: bool                    # the reverse direction was seen first: this packet answers it
    src_mac: str | None = None
    dst_mac: str | None = None
    tcp_flags: int | None = None
    vlan_path: tuple[tuple[int, ...], ...] | None = None   # as SipMessage.vlan_path


@dataclass(frozen=True, slots=True)
class IcmpError:
    """An ICMP or ICMPv6 error message and the flow it answers, read from the packet it quotes
    (dissectors/icmp.py): quoted_src/quoted_dst sent the datagram that caused the error."""
    ts: float
    frame: int
    vlan: tuple[int, ...]
    src: str                       # who sent the error: the target itself, or a router on the way
    dst: str
    src_mac: str | None
    family: str                    # "icmp" | "icmpv6"
    icmp_type: int
    code: int
    meaning: str                   # e.g. "port unreachable", "time exceeded"
    quoted_proto: int              # IP protocol of the quoted datagram
    quoted_transport: str | None   # "udp" | "tcp" | None (another protocol)
    quoted_src: str
    quoted_sport: int | None
    quoted_dst: str
    quoted_dport: int | None


def vlan_path_text(path: tuple[tuple[int, ...], ...] | None) -> str | None:
    """The VLANs a packet was seen on, in order: "200->100" (untagged copies as "untagged"); None
    when it was seen once."""
    return None if path is None else "->".join(vlan_text(v) or "untagged" for v in path)


@dataclass(frozen=True, slots=True)
class HostSeen:
    """The first sighting of a (MAC, IP, VLAN stack) combination as a packet source."""
    ts: float
    frame: int
    vlan: tuple[int, ...]
    mac: str | None
    ip: str | None


@dataclass(frozen=True, slots=True)
class L2Neighbor:
    """A CDP or LLDP(-MED) advertisement: what its sender says about itself (dissectors/l2.py).

    Cisco CDP as Wireshark decodes it; IEEE 802.1AB-2016 LLDP; ANSI/TIA-1057 LLDP-MED. Claims, not facts:
    any host can send these frames.
    """
    ts: float
    frame: int
    vlan: tuple[int, ...]
    src_mac: str | None
    protocol: str                  # "cdp" | "lldp"
    device_id: str | None = None   # CDP Device ID; LLDP Chassis ID (a MAC, an address, else text or hex)
    port_id: str | None = None     # CDP Port ID; LLDP Port ID: the sender's port the frame left by
    system_name: str | None = None  # CDP System Name; LLDP System Name
    platform: str | None = None    # CDP Platform; LLDP-MED inventory Model Name, e.g. "Cisco IP Phone 7940"
    description: str | None = None  # CDP Software Version; LLDP System Description
    mgmt_address: str | None = None  # first CDP (management) address or LLDP management address
    capabilities: tuple[str, ...] = ()  # enabled capabilities: router, bridge, switch, phone, ...
    phone: bool | None = None      # claims to be a phone (CDP capability, LLDP telephone or LLDP-MED class III)
    network_device: bool = False   # claims to be a switch/router (CDP/LLDP capability or LLDP-MED class 4)
    med_class: int | None = None   # LLDP-MED device type: 1-3 endpoint class I-III, 4 network connectivity
    med_policy: bool = False       # carries an LLDP-MED network policy TLV
    voice_vlan: int | None = None  # CDP VoIP VLAN Reply, or the VLAN of an LLDP-MED tagged voice policy
    voice_vlan_query: bool = False  # carries a CDP VoIP VLAN Query: the sender asks for the voice VLAN
    native_vlan: int | None = None  # CDP Native VLAN; LLDP 802.1 Port VLAN ID (untagged VLAN of the port)
    ttl: int | None = None         # seconds the receiver may keep this information


# -- the core record types, declared ---------------------------------------------------------------
# The tables, in the order they are written; then the records that only feed the detectors. Ranks
# leave room between them for the record types of new dissectors.
def call_closed(call: Call, timing: Timing) -> tuple[float, int]:
    """When voipwatch.sessions.CallTracker.expire closes the call, computed from the record."""
    wait = timing.call_linger_s if call.state in ENDED_STATES else timing.call_idle_s
    return call.last_ts + wait, call.first_frame


declare(SipMessage, rank=50, timeline=at_packet, table="sip_messages", sort=lambda m: (m.pkt.ts, m.pkt.frame),
        columns=(
    ("ts", "Float64", lambda m: r6(m.pkt.ts)),
    ("frame", "Int64", lambda m: m.pkt.frame),
    ("src", "string", lambda m: m.pkt.src),
    ("sport", "Int64", lambda m: m.pkt.sport),
    ("dst", "string", lambda m: m.pkt.dst),
    ("dport", "Int64", lambda m: m.pkt.dport),
    ("vlan", "string", lambda m: vlan_text(m.pkt.vlan)),
    ("transport", "string", lambda m: m.pkt.transport),
    ("method", "string", lambda m: m.method),
    ("status", "Int64", lambda m: m.status),
    ("call_id", "string", lambda m: m.call_id),
    ("cseq", "Int64", lambda m: m.cseq),
    ("cseq_method", "string", lambda m: m.cseq_method),
    ("from_user", "string", lambda m: m.from_user),
    ("to_user", "string", lambda m: m.to_user),
    ("ruri_user", "string", lambda m: m.ruri_user),
    ("user_agent", "string", lambda m: m.user_agent or m.server),
    ("reason", "string", lambda m: m.reason),
    ("from_tag", "string", lambda m: m.from_tag),
    ("to_tag", "string", lambda m: m.to_tag),
    ("contact", "string", lambda m: ",".join(m.contact) or None),
    ("expires", "Int64", lambda m: m.expires),
    ("auth_user", "string", lambda m: next((a.username for a in m.auth if a.username), None)),
    ("has_sdp", "boolean", lambda m: m.sdp is not None),
    ("body_len", "Int64", lambda m: m.body_len),
    ("vlan_path", "string", lambda m: vlan_path_text(m.vlan_path)),
))


declare(Call, rank=100, timeline=call_closed, table="calls", sort=lambda c: (c.first_ts, c.first_frame, c.call_id),
        columns=(
    ("call_id", "string", lambda c: c.call_id),
    ("first_ts", "Float64", lambda c: r6(c.first_ts)),
    ("last_ts", "Float64", lambda c: r6(c.last_ts)),
    ("caller", "string", lambda c: c.caller),
    ("callee", "string", lambda c: c.callee),
    ("src", "string", lambda c: c.src),
    ("dst", "string", lambda c: c.dst),
    ("vlan", "string", lambda c: vlan_text(c.vlan)),
    ("transport", "string", lambda c: c.transport),
    ("state", "string", lambda c: c.state),
    ("final_status", "Int64", lambda c: c.final_status),
    ("setup_s", "Float64", lambda c: r6(c.setup_s)),
    ("duration_s", "Float64", lambda c: r6(c.duration_s)),
    ("user_agent", "string", lambda c: c.user_agent),
    ("media_protection", "string", lambda c: c.media_protection),
    ("n_streams", "Int64", lambda c: c.n_streams),
    ("ruri_user", "string", lambda c: c.ruri_user),
    ("first_frame", "Int64", lambda c: c.first_frame),
))


declare(Registration, rank=110, timeline=lambda r, timing: (r.last_ts, r.first_frame), table="registrations",
        sort=lambda r: (r.first_ts, r.first_frame, r.aor, r.src), columns=(
    ("aor", "string", lambda r: r.aor),
    ("src", "string", lambda r: r.src),
    ("vlan", "string", lambda r: vlan_text(r.vlan)),
    ("attempts", "Int64", lambda r: r.attempts),
    ("challenges", "Int64", lambda r: r.challenges),
    ("successes", "Int64", lambda r: r.successes),
    ("failures", "Int64", lambda r: r.failures),
    ("first_ts", "Float64", lambda r: r6(r.first_ts)),
    ("last_ts", "Float64", lambda r: r6(r.last_ts)),
    ("user_agent", "string", lambda r: r.user_agent),
    ("first_frame", "Int64", lambda r: r.first_frame),
    ("rejected", "Int64", lambda r: r.rejected),
))


declare(RtpStream, rank=90, timeline=lambda s, timing: (s.last_ts + timing.rtp_idle_s, s.first_frame),
        table="rtp_streams", sort=lambda s: (s.first_ts, s.first_frame, s.ssrc), columns=(
    ("src", "string", lambda s: s.src),
    ("sport", "Int64", lambda s: s.sport),
    ("dst", "string", lambda s: s.dst),
    ("dport", "Int64", lambda s: s.dport),
    ("vlan", "string", lambda s: vlan_text(s.vlan)),
    ("ssrc", "string", lambda s: f"0x{s.ssrc:08x}"),
    ("payload_type", "Int64", lambda s: s.payload_type),
    ("codec", "string", lambda s: s.codec),
    ("packets", "Int64", lambda s: s.packets),
    ("lost", "Int64", lambda s: s.lost),
    ("duplicates", "Int64", lambda s: s.duplicates),
    ("out_of_order", "Int64", lambda s: s.out_of_order),
    ("jitter_ms_mean", "Float64", lambda s: r6(s.jitter_ms_mean)),
    ("jitter_ms_max", "Float64", lambda s: r6(s.jitter_ms_max)),
    ("first_ts", "Float64", lambda s: r6(s.first_ts)),
    ("last_ts", "Float64", lambda s: r6(s.last_ts)),
    ("call_id", "string", lambda s: s.call_id),
    ("negotiated", "boolean", lambda s: s.negotiated),
    ("expected", "Int64", lambda s: s.expected),
    ("max_delta_ms", "Float64", lambda s: r6(s.max_delta_ms)),
    ("payload_types", "string", lambda s: ",".join(str(p) for p in s.payload_types)),
    ("bytes", "Int64", lambda s: s.bytes),
    ("first_frame", "Int64", lambda s: s.first_frame),
))


declare(DnsMessage, rank=60, timeline=at_packet, table="dns", sort=lambda d: (d.pkt.ts, d.pkt.frame), columns=(
    ("ts", "Float64", lambda d: r6(d.pkt.ts)),
    ("frame", "Int64", lambda d: d.pkt.frame),
    ("src", "string", lambda d: d.pkt.src),
    ("dst", "string", lambda d: d.pkt.dst),
    ("vlan", "string", lambda d: vlan_text(d.pkt.vlan)),
    ("qname", "string", lambda d: d.qname),
    ("qtype", "string", lambda d: d.qtype),
    ("rcode", "string", lambda d: d.rcode),
    ("answers", "string", lambda d: "; ".join(d.answers) or None),
    ("qid", "Int64", lambda d: d.qid),
    ("is_response", "boolean", lambda d: d.is_response),
    ("transport", "string", lambda d: d.pkt.transport),
    ("malformed", "string", lambda d: d.malformed),
))


declare(Anomaly, rank=80, timeline=at_ts, table="anomalies", sort=lambda a: (a.frame, a.name), columns=(
    ("ts", "Float64", lambda a: r6(a.ts)),
    ("frame", "Int64", lambda a: a.frame),
    ("layer", "string", lambda a: a.layer),
    ("name", "string", lambda a: a.name),
    ("detail", "string", lambda a: a.detail),
    ("src", "string", lambda a: a.src),
    ("dst", "string", lambda a: a.dst),
))


declare(L2Neighbor, rank=10, timeline=at_ts)
declare(HostSeen, rank=20, timeline=at_ts)
declare(FlowSeen, rank=30, timeline=at_packet)
declare(IcmpError, rank=35, timeline=at_ts)
declare(TlsFlow, rank=40, timeline=at_packet)


def _codes(codes: tuple[int, ...]) -> str | None:
    """IANA code points as 4-digit hex, space separated (tshark shows them as 0x....)."""
    return " ".join(f"0x{c:04x}" for c in codes) or None


def _hello(h: Any, get: Callable[[Any], Any]) -> Any:
    return None if h.hello is None else get(h.hello)


def _leaf(h: Any, get: Callable[[Any], Any]) -> Any:
    """A field of the sender's own certificate (the first of the chain)."""
    return get(h.certificates[0]) if h.certificates else None


declare(TlsHandshake, rank=45, timeline=at_packet, table="tls", sort=lambda h: (h.pkt.ts, h.pkt.frame), columns=(
    ("ts", "Float64", lambda h: r6(h.pkt.ts)),
    ("frame", "Int64", lambda h: h.pkt.frame),
    ("src", "string", lambda h: h.pkt.src),
    ("sport", "Int64", lambda h: h.pkt.sport),
    ("dst", "string", lambda h: h.pkt.dst),
    ("dport", "Int64", lambda h: h.pkt.dport),
    ("vlan", "string", lambda h: vlan_text(h.pkt.vlan)),
    ("protocol", "string", lambda h: h.protocol),
    ("messages", "string", lambda h: " ".join(h.messages)),
    ("hello", "string", lambda h: _hello(h, lambda x: x.role)),
    ("legacy_version", "string", lambda h: _hello(h, lambda x: f"0x{x.legacy_version:04x}")),
    ("versions", "string", lambda h: _hello(h, lambda x: _codes(x.versions))),
    ("cipher_suites", "string", lambda h: _hello(h, lambda x: _codes(x.cipher_suites))),
    ("groups", "string", lambda h: _hello(h, lambda x: _codes(x.groups))),
    ("key_share_groups", "string", lambda h: _hello(h, lambda x: _codes(x.key_share_groups))),
    ("signature_algorithms", "string", lambda h: _hello(h, lambda x: _codes(x.signature_algorithms))),
    ("sni", "string", lambda h: _hello(h, lambda x: x.sni)),
    ("alpn", "string", lambda h: _hello(h, lambda x: ",".join(x.alpn) or None)),
    ("use_srtp", "string", lambda h: _hello(h, lambda x: _codes(x.use_srtp))),
    ("certificates", "Int64", lambda h: None if h.certificates is None else len(h.certificates)),
    ("cert_subject", "string", lambda h: _leaf(h, lambda c: c.subject)),
    ("cert_issuer", "string", lambda h: _leaf(h, lambda c: c.issuer)),
    ("cert_not_before", "Float64", lambda h: _leaf(h, lambda c: c.not_before)),
    ("cert_not_after", "Float64", lambda h: _leaf(h, lambda c: c.not_after)),
    ("cert_key_alg", "string", lambda h: _leaf(h, lambda c: c.key_alg)),
    ("cert_key_bits", "Int64", lambda h: _leaf(h, lambda c: c.key_bits)),
    ("cert_sig_alg", "string", lambda h: _leaf(h, lambda c: c.signature_alg)),
    ("cert_self_signed", "boolean", lambda h: _leaf(h, lambda c: c.self_signed)),
    ("cert_sha256", "string", lambda h: _leaf(h, lambda c: c.sha256)),
    ("certificate_request", "boolean", lambda h: h.certificate_request),
    ("ske_curve", "string", lambda h: None if h.ske_curve is None else f"0x{h.ske_curve:04x}"),
    ("ske_dh_bits", "Int64", lambda h: h.ske_dh_bits),
    ("call_id", "string", lambda h: h.call_id),
    ("sdp_fingerprint", "string", lambda h: h.sdp_fingerprint),
))
declare(RtcpPacket, rank=70, timeline=at_packet)


@dataclass(frozen=True, slots=True)
class VoipControl:
    """One message of a VoIP control protocol other than SIP (MGCP, H.248/Megaco, H.225.0/Q.931 and RAS,
    SCCP/Skinny, IAX2): what was said, by whom, and whether the protocol shows its own protection."""
    pkt: PacketMeta
    protocol: str                  # "mgcp" | "megaco" | "h225" (Q.931 over TPKT) | "h225.ras" | "sccp" | "iax2"
    message: str                   # verb, response code, message name (as Wireshark names it) or "0x...."
    code: int | None = None        # the numeric message type/id/response code, when the protocol has one
    transaction: str | None = None  # MGCP/Megaco transaction id, Q.931 call reference, IAX2 "src/dst" calls
    endpoint: str | None = None    # MGCP endpoint name, Megaco mId, SCCP device name (RegisterReq)
    call_id: str | None = None     # MGCP CallId (C:)
    calling: str | None = None     # calling party number (Q.931 IE 0x6C, IAX2 IE 2)
    called: str | None = None      # called party number (Q.931 IE 0x70, IAX2 IE 1)
    secure: bool | None = None     # True: the message offers/negotiates protection (MGCP SDP RTP/SAVP, IAX2
                                   # ENCRYPTION IE); False: it shows none where it could; None: not visible


declare(VoipControl, rank=55, timeline=at_packet, table="voip_control", sort=lambda m: (m.pkt.ts, m.pkt.frame),
        columns=(
    ("ts", "Float64", lambda m: r6(m.pkt.ts)),
    ("frame", "Int64", lambda m: m.pkt.frame),
    ("protocol", "string", lambda m: m.protocol),
    ("message", "string", lambda m: m.message),
    ("code", "Int64", lambda m: m.code),
    ("src", "string", lambda m: m.pkt.src),
    ("sport", "Int64", lambda m: m.pkt.sport),
    ("dst", "string", lambda m: m.pkt.dst),
    ("dport", "Int64", lambda m: m.pkt.dport),
    ("transport", "string", lambda m: m.pkt.transport),
    ("vlan", "string", lambda m: vlan_text(m.pkt.vlan)),
    ("transaction", "string", lambda m: m.transaction),
    ("endpoint", "string", lambda m: m.endpoint),
    ("call_id", "string", lambda m: m.call_id),
    ("calling", "string", lambda m: m.calling),
    ("called", "string", lambda m: m.called),
    ("secure", "boolean", lambda m: m.secure),
))
