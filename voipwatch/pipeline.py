"""The analysis pipeline: frames -> network decoding -> classification -> dissectors -> sessions -> sink.

One `Analyzer` serves both execution paths; they differ only in the RTP collector it is given. By
default every RTP packet updates an incremental tracker (voipwatch.media.StreamingRtp: live
monitoring, or a file replayed with --mode stream); analyze's batch mode gives it the batch room's
BatchRtp (voipwatch.batch.rtp), which keeps RTP header fields in columns and computes the streams at
the end. Both give identical records. All time is capture time.
"""
from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Callable, Iterable, Protocol

from dissectors import dns, l2, rtcp, rtp, sip, sip_stream
from dissectors.net import Datagram, NetworkDecoder, Skipped
from dissectors.tcp import Framer, Splitter, TcpReassembler
from voipwatch.capture import FRAME_NOTES
from voipwatch.config import PipelineConfig
from voipwatch.flows import FirstSeen
from voipwatch.media import FramesTaken, RtpCollector, StreamingRtp
from voipwatch.records import Anomaly, DnsMessage, FlowSeen, Frame, HostSeen, RtpStream, SipMessage, TlsFlow
from voipwatch.sessions import CallTracker, MediaExpectations, RegistrationTracker

# Buckets of frames that RtpStream records describe (no flow or host sightings for them).
MEDIA_BUCKETS = frozenset({"rtp", "rtcp", "rtcp.malformed"})
# How often (capture seconds) idle state is expired.
TICK_S = 1.0

# RFC 6189 §5: every ZRTP message carries the magic cookie 'ZRTP' (0x5a525450) at offset 4.
ZRTP_COOKIE = b"ZRTP"
# RFC 5389 §6: STUN magic cookie at offset 4; the first two bits are zero.
STUN_COOKIE = b"\x21\x12\xa4\x42"
# RFC 3261 §19.1.2: the default SIP ports (5060 and, for TLS, 5061).
SIP_PORTS = (5060, 5061)
# RFC 5246 §6.2.1: a TLS record starts with content type 20-23 and version major 3.
TLS_CONTENT_TYPES = range(20, 24)


class Sink(Protocol):
    """Where records go: a collector for analyze, writers for monitor, detectors for both. Every record
    type emitted is declared in voipwatch.records (declare())."""
    def emit(self, record: object) -> None: ...
    def tick(self, now: float) -> None: ...


class Analyzer:
    """Feed it frames in capture order; it tells its sink what it found."""

    def __init__(self, sink: Sink, config: PipelineConfig | None = None, rtp: RtpCollector | None = None):
        self.config = config or PipelineConfig()
        self.connect(sink)
        if rtp is None:
            rtp = StreamingRtp(self.config.rtp_idle_timeout_s, self.config.max_rtp_streams)
        self.rtp = rtp
        self.net = NetworkDecoder()
        self.tcp = TcpReassembler(max_flows=self.config.max_tcp_flows)
        self.expectations = MediaExpectations(self.config.max_media_expectations, self.config.media_binding_max_s,
                                              log=self.rtp.announcements)
        self.calls = CallTracker(self.config.max_calls, self.config.call_idle_s, self.config.call_linger_s)
        self.registrations = RegistrationTracker(self.config.max_registrations,
                                                 self.config.max_register_transactions,
                                                 self.config.registration_idle_s)
        self.frames_read = 0
        self.frames_undecoded = 0                       # frames whose link/IP/transport layer failed
        self.frame_classes: Counter[str] = Counter()   # every frame lands in exactly one bucket
        self.anomaly_counts: Counter[str] = Counter()
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self._next_tick: float | None = None
        # TCP flow direction -> [(protocol, its framer or SIP probe), last segment time]; least recently used first
        self._tcp_framers: OrderedDict[tuple, list] = OrderedDict()
        self.flows = FirstSeen(self.config.max_flows, self.config.sighting_idle_s)
        self.hosts = FirstSeen(self.config.max_hosts, self.config.sighting_idle_s)

    def connect(self, sink: Sink) -> None:
        """Send every record from now on to `sink` (monitor's reload gives it new detectors)."""
        self.sink = sink
        self.emit = sink.emit

    # -- input -------------------------------------------------------------------------------
    def run(self, items: Iterable[Frame | Anomaly], progress: Callable[[Frame], None] | None = None) -> None:
        for item in items:
            self.process(item)
            if progress is not None and type(item) is Frame:
                progress(item)
        self.finish()

    def process(self, item: Frame | Anomaly) -> None:
        if type(item) is not Frame:
            if item.name not in FRAME_NOTES:   # a capture record that could not be read whole
                self.frames_read += 1
                self.frames_undecoded += 1
                self.frame_classes[item.name] += 1
            self._anomaly(item)
            return
        frame = item
        self.frames_read += 1
        ts = frame.ts
        if self.last_ts is None:
            self.first_ts = self.last_ts = ts
            self._next_tick = ts + TICK_S
        elif ts > self.last_ts:
            self.last_ts = ts
        if ts >= self._next_tick:
            self._tick(ts)
        decoded = self.net.decode(frame)
        kind = type(decoded)
        if kind is Datagram:
            if decoded.anomaly is not None:
                self._anomaly(decoded.anomaly)
            bucket = self._udp(decoded) if decoded.meta.transport == "udp" else self._tcp(decoded)
            if bucket != "rtp" and bucket not in MEDIA_BUCKETS and not (
                    decoded.meta.transport == "udp" and decoded.payload[:1] and decoded.payload[0] >> 6 == 2):
                self._sightings(decoded, bucket)
        elif kind is Skipped:
            bucket = decoded.bucket
            if self.hosts.add((decoded.src_mac, None, decoded.vlan), ts):
                self.emit(HostSeen(ts, frame.frame, decoded.vlan, decoded.src_mac, None))
            if bucket in ("lldp", "cdp"):
                neighbor, anomalies = l2.parse_l2(bucket, decoded.payload, ts, frame.frame, decoded.vlan,
                                                  decoded.src_mac)
                for anomaly in anomalies:
                    self._anomaly(anomaly)
                self.emit(neighbor)
        else:
            bucket = decoded.name
            self.frames_undecoded += 1
            self._anomaly(decoded)
        self.frame_classes[bucket] += 1

    def _sightings(self, dgram: Datagram, bucket: str) -> None:
        """First sightings of this flow direction and of its source host.

        Media (RTP/RTCP, and any UDP payload with RTP's version bits, which the batch path decodes
        column-wise) is described by RtpStream records instead, so both paths report the same.
        """
        meta = dgram.meta
        key = (meta.vlan, meta.transport, meta.src, meta.sport, meta.dst, meta.dport)
        if self.flows.add(key, meta.ts):
            reverse = (meta.vlan, meta.transport, meta.dst, meta.dport, meta.src, meta.sport)
            self.emit(FlowSeen(meta, bucket, self.flows.seen(reverse, meta.ts), dgram.src_mac, dgram.dst_mac,
                               dgram.tcp_flags))
        if self.hosts.add((dgram.src_mac, meta.src, meta.vlan), meta.ts):
            self.emit(HostSeen(meta.ts, meta.frame, meta.vlan, dgram.src_mac, meta.src))

    # -- UDP ---------------------------------------------------------------------------------
    def _udp(self, dgram: Datagram) -> str:
        meta, payload = dgram.meta, dgram.payload
        endpoint = self.expectations.lookup(meta.src, meta.sport, meta.dst, meta.dport, meta.frame, meta.ts)
        if endpoint is not None:
            pkt = rtp.parse_rtp(meta, payload, True)
            if pkt is not None:
                media = endpoint.payload_types.get(pkt.pt)
                if media is None:
                    media = endpoint.payload_types[pkt.pt] = (rtp.clock_rate(pkt.pt, endpoint.rtpmap),
                                                              rtp.codec_name(pkt.pt, endpoint.rtpmap))
                self.rtp.add(pkt, endpoint.call_id, media[0], media[1])
                return "rtp"
            if rtp.is_rtcp_payload(payload):
                return self._rtcp(meta, payload)
            if "RTP/" not in endpoint.proto.upper():
                endpoint = None                  # T.38 (udptl) and other non-RTP media
        if sip.looks_like_sip(payload):
            msg, anomalies = sip.parse_sip(meta, payload)
            for anomaly in anomalies:
                self._anomaly(anomaly)
            if msg is None:
                return "sip.unparsed"
            self._sip(msg)
            return "sip"
        if dns.looks_like_dns(payload, meta.sport, meta.dport):
            parsed = dns.parse_dns(meta, payload)
            if type(parsed) is Anomaly:
                self._anomaly(parsed)
                return "dns.malformed"
            self._dns(parsed)
            return "dns"
        return self._udp_other(meta, payload, endpoint is not None)

    def _udp_other(self, meta, payload: bytes, announced: bool = False) -> str:
        if payload[4:8] == ZRTP_COOKIE and payload[:1] == b"\x10":
            return "zrtp"
        if len(payload) >= 20 and payload[4:8] == STUN_COOKIE and payload[0] < 4:
            return "stun"
        if payload and payload[0] in TLS_CONTENT_TYPES and payload[1:2] == b"\xfe":
            return "dtls"        # RFC 6347 §4.1: DTLS versions are 0xfeff / 0xfefd
        if self.config.rtp_heuristic and rtp.heuristic_ports_ok(meta.sport, meta.dport):
            if rtcp.looks_like_rtcp(payload):
                return self._rtcp(meta, payload)
            if rtp.looks_like_rtp(payload):
                pkt = rtp.parse_rtp(meta, payload, False)
                if pkt is not None:
                    self.rtp.add(pkt, None, rtp.clock_rate(pkt.pt, None), rtp.codec_name(pkt.pt, None))
                    return "rtp"
        if announced and payload:                # RFC 6263 §4.1: an empty datagram is a keep-alive
            self._anomaly(Anomaly(meta.ts, meta.frame, "rtp", "rtp.malformed",
                                  f"{len(payload)}-byte datagram to or from SDP-announced RTP media: "
                                  f"{rtp.header_problem(payload)}", meta.src, meta.dst))
            return "rtp.malformed"
        if meta.sport in SIP_PORTS or meta.dport in SIP_PORTS:
            self._anomaly(Anomaly(meta.ts, meta.frame, "sip", "sip.not_sip_on_sip_port",
                                  f"{len(payload)}-byte UDP datagram to or from a SIP port is not SIP",
                                  meta.src, meta.dst))
        return "udp.other"

    def _dns(self, msg: DnsMessage) -> None:
        self.emit(msg)
        if msg.malformed is not None:           # the answers before the damage are kept in the record
            self._anomaly(Anomaly(msg.pkt.ts, msg.pkt.frame, "dns", "dns.malformed_section", msg.malformed,
                                  msg.pkt.src, msg.pkt.dst))

    def _rtcp(self, meta, payload: bytes) -> str:
        pkt, anomalies = rtcp.parse_rtcp(meta, payload)
        for anomaly in anomalies:
            self._anomaly(anomaly)
        if pkt is None:
            return "rtcp.malformed"
        self.emit(pkt)
        return "rtcp"

    # -- TCP ---------------------------------------------------------------------------------
    def _tcp(self, dgram: Datagram) -> str:
        meta = dgram.meta
        flow = (meta.vlan, meta.src, meta.sport, meta.dst, meta.dport)
        known = self._tcp_framers.get(flow)
        if known is not None and meta.ts - known[1] <= self.config.tcp_idle_s:
            known[1] = meta.ts
            self._tcp_framers.move_to_end(flow)
        else:
            if not dgram.payload:
                return "tcp.control"
            known = self._tcp_framers[flow] = [self._choose_framer(dgram), meta.ts]
            self._tcp_framers.move_to_end(flow)
            if len(self._tcp_framers) > self.config.max_tcp_flows:
                self._tcp_framers.popitem(last=False)
            if known[0][0] == "tls":
                self.emit(TlsFlow(meta))
        name, framer = known[0]
        if name == "probe":                      # re-probed segment by segment until SIP shows
            if not dgram.payload:
                return "tcp.other"
            verdict, note = framer.check(meta, dgram.tcp_seq or 0, dgram.payload)
            if note is not None:
                self._anomaly(note)
            if verdict != "sip":
                if verdict == "other":
                    known[0] = ("other", None)
                return "tcp.other"
            name, framer = known[0] = ("sip", sip_stream.SipStreamFramer())
        elif framer is None:
            return f"tcp.{name}"
        messages, anomalies = self.tcp.feed(dgram, framer)
        for anomaly in anomalies:
            self._anomaly(anomaly)
        for msg_meta, data in messages:
            if name == "sip":
                msg, sip_anomalies = sip.parse_sip(msg_meta, data)
                for anomaly in sip_anomalies:
                    self._anomaly(anomaly)
                if msg is not None:
                    self._sip(msg)
            else:
                parsed = dns.parse_dns(msg_meta, data)
                if type(parsed) is Anomaly:
                    self._anomaly(parsed)
                else:
                    self._dns(parsed)
        if framer.abandoned:                     # not this protocol after all: no longer framed
            known[0] = ("other", None)
        return f"tcp.{name}" if framer.synced else "tcp.other"

    @staticmethod
    def _choose_framer(dgram: Datagram) -> tuple[str, Framer | sip_stream.SipStreamProbe | None]:
        """What a TCP direction carries, from its first data segment: DNS by port (RFC 1035 §4.2.2),
        TLS by its record header, SIP on the SIP ports from the first byte on (as Wireshark's port
        table does; the framer resynchronises on the next start line); elsewhere SIP is probed for
        segment by segment, for a bounded number of segments."""
        meta, payload = dgram.meta, dgram.payload
        if 53 in (meta.sport, meta.dport):
            return ("dns", Splitter(dns.frame_dns_tcp))
        if payload[0] in TLS_CONTENT_TYPES and payload[1:2] == b"\x03":
            return ("tls", None)
        if meta.sport in SIP_PORTS or meta.dport in SIP_PORTS:
            return ("sip", sip_stream.SipStreamFramer())
        return ("probe", sip_stream.SipStreamProbe())

    # -- SIP and sessions --------------------------------------------------------------------
    def _sip(self, msg: SipMessage) -> None:
        self.emit(msg)
        self.expectations.announce(msg)
        for call in self.calls.on_sip(msg):
            self.emit(call)
        for reg in self.registrations.on_sip(msg):
            self.emit(reg)

    def _emit_streams(self, streams: list[RtpStream]) -> None:
        for stream in streams:
            self.emit(stream)

    def _anomaly(self, anomaly: Anomaly) -> None:
        self.anomaly_counts[anomaly.name] += 1
        self.emit(anomaly)

    def advance(self, now: float) -> None:
        """Let capture time pass without a frame (a live source that has been quiet): expire state."""
        if self._next_tick is not None and now >= self._next_tick and (self.last_ts is None or now >= self.last_ts):
            self._tick(now)

    def _tick(self, now: float) -> None:
        self._next_tick = now + TICK_S
        self.rtp.expire(now, self._emit_streams)
        for anomaly in self.tcp.expire(now):
            self._anomaly(anomaly)
        for anomaly in self.net.expire(now):
            self._anomaly(anomaly)
        self.sink.tick(now)
        for call in self.calls.expire(now):
            self.emit(call)
        for reg in self.registrations.expire(now):
            self.emit(reg)
        self.expectations.expire(now)
        while self._tcp_framers:
            flow, (_, last) = next(iter(self._tcp_framers.items()))
            if now - last <= self.config.tcp_idle_s:
                break
            del self._tcp_framers[flow]
        self.flows.expire(now)
        self.hosts.expire(now)

    def finish(self) -> None:
        """End of input: close every stream, call and registration still open, and report what the
        IP and TCP reassemblers still hold."""
        for anomaly in self.net.finish() + self.tcp.finish():
            self._anomaly(anomaly)
        taken = self.rtp.finish(self._emit_streams)
        if taken is not None:
            self._count_taken(taken)
        for call in self.calls.finish():
            self.emit(call)
        for reg in self.registrations.finish():
            self.emit(reg)
        for name, count in (("sessions.media_expectations_overflow", self.expectations.overflows),
                            ("sessions.calls_overflow", self.calls.overflows),
                            ("sessions.registrations_overflow", self.registrations.overflows),
                            ("sessions.register_transactions_overflow", self.registrations.transaction_overflows),
                            ("rtp.streams_overflow", self.rtp.overflows),
                            ("sessions.flows_overflow", self.flows.overflows),
                            ("sessions.hosts_overflow", self.hosts.overflows)):
            if count:
                self.anomaly_counts[name] += count

    def _count_taken(self, taken: FramesTaken) -> None:
        """Frames the RTP collector took from the capture itself join the frame counts and the capture span."""
        self.frames_read += taken.frames
        self.frame_classes.update(taken.classes)
        if taken.first_ts is not None and (self.first_ts is None or taken.first_ts < self.first_ts):
            self.first_ts = taken.first_ts
        if taken.last_ts is not None and (self.last_ts is None or taken.last_ts > self.last_ts):
            self.last_ts = taken.last_ts
