"""The event contract: frozen records passed from dissectors to sessions, detectors and outputs.

Dissectors and detectors import from here, never from each other. Field order is column order in
outputs; optional fields default to None; units are in the names (ts is seconds since the epoch,
capture time, never the wall clock).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


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
    layer: str                     # "capture" | "link" | "ip" | "udp" | "tcp" | "sip" | "sdp" | "rtp" | "rtcp" | "dns"
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
    """A TCP flow carrying TLS (e.g. SIP over TLS on 5061): recorded, never decrypted."""
    pkt: PacketMeta
    sni: str | None = None


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


@dataclass(frozen=True, slots=True)
class Registration:
    """REGISTER transactions of one address-of-record from one source."""
    aor: str
    src: str
    vlan: tuple[int, ...]
    attempts: int
    challenges: int
    successes: int
    failures: int
    first_ts: float
    last_ts: float
    user_agent: str | None
    first_frame: int = 0


@dataclass(frozen=True, slots=True)
class Alert:
    """A detector's finding (EVE alert)."""
    ts: float
    family: str                    # detector name: unencrypted_media | toll_fraud | registration_flood | cross_vlan
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


@dataclass(frozen=True, slots=True)
class HostSeen:
    """The first sighting of a (MAC, IP, VLAN stack) combination as a packet source."""
    ts: float
    frame: int
    vlan: tuple[int, ...]
    mac: str | None
    ip: str | None


@dataclass(frozen=True, slots=True)
class L2Control:
    """A link-layer control frame worth judging: LLDP (IEEE 802.1AB, LLDP-MED) or CDP."""
    ts: float
    frame: int
    vlan: tuple[int, ...]
    src_mac: str | None
    protocol: str                  # "lldp" | "cdp"
    payload: bytes
