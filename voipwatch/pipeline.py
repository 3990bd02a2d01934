"""The analysis pipeline: frames -> network decoding -> classification -> dissectors -> sessions -> sink.

One `Analyzer` serves both execution paths; they differ only in the RTP collector it is given. By
default every RTP packet updates an incremental tracker (voipwatch.media.StreamingRtp: live
monitoring, or a file replayed with --mode stream); analyze's batch mode gives it the batch room's
BatchRtp (voipwatch.batch.rtp), which keeps RTP header fields in columns and computes the streams at
the end. Both give identical records. All time is capture time.
"""
from __future__ import annotations

from collections import Counter, OrderedDict, defaultdict
from dataclasses import replace
from typing import Callable, Iterable, Protocol


from dissectors import dispatch, icmp, l2, rtp
from dissectors.tls import certificate_hash
from dissectors.dispatch import Entry, PortIndex
from dissectors.http import HttpMessage
from dissectors.net import Datagram, NetworkDecoder, Skipped
from dissectors.tcp import TcpReassembler
from dissectors.tftp import TftpPacket
from voipwatch.capture import FRAME_NOTES
from voipwatch.config import PipelineConfig
from voipwatch.dedup import ANOMALIES as DEDUP_ANOMALIES, Deduplicator
from voipwatch.flows import FirstSeen
from voipwatch.media import FramesTaken, RtpCollector, StreamingRtp
from voipwatch.records import Anomaly, FlowSeen, Frame, HostSeen, RtpPacket, RtpStream, SipMessage, TlsHandshake
from voipwatch.sessions import CallTracker, MediaExpectations, RegistrationTracker
from voipwatch.transfers import Transfers

# Buckets of frames that RtpStream records describe (no flow or host sightings for them).
MEDIA_BUCKETS = frozenset({"rtp", "rtcp", "rtcp.malformed"})
# How often (capture seconds) idle state is expired.
TICK_S = 1.0
# The RTCP entry of the dispatch table, which also describes RTCP multiplexed on announced media.
RTCP = next(entry for entry in dispatch.UDP if entry.bucket == "rtcp")

# The frame class of a copy of a packet already counted (voipwatch.dedup): one bucket, as every frame has.
DUPLICATES = "duplicates"
BUCKETS = {DUPLICATES: "a copy of a UDP, TCP or ICMP packet seen within the deduplication window on another VLAN "
                       "or port (SPAN of several VLANs, `encapsulation replicate`): dropped, the first copy "
                       "describes it"}

# Caps counted (not recorded as anomalies one by one) and reported at the end of input.
ANOMALIES = {
    **DEDUP_ANOMALIES,
    "sessions.media_expectations_overflow": "SDP-announced media endpoints over max_media_expectations: the least "
                                            "recently announced forgotten",
    "sessions.calls_overflow": "calls over max_calls: the least recently active closed early",
    "sessions.registrations_overflow": "registrations over max_registrations: the least recently active closed early",
    "sessions.bindings_overflow": "bindings over the caps (max_registrations addresses-of-record, 256 contacts "
                                  "each): the least recently answered AOR or the oldest contact ends as evicted",
    "sessions.register_transactions_overflow": "REGISTER transactions over max_register_transactions: the oldest "
                                               "forgotten, its response left unmatched",
    "rtp.streams_overflow": "open RTP streams over max_rtp_streams (streaming path): the least recently active "
                            "closed early",
    "sessions.flows_overflow": "flow directions over max_flows: the least recently seen forgotten (sighted anew later)",
    "sessions.hosts_overflow": "hosts over max_hosts: the least recently seen forgotten (sighted anew later)",
    "sessions.transfers_overflow": "TFTP transfers or HTTP requests awaiting their response over 10000 "
                                   "(voipwatch.transfers): the least recently active forgotten",
}


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
        # TCP flow direction -> [dispatch entry, its framer, its stream probe while one seeks the protocol,
        # last segment time]; least recently used first
        self._tcp_flows: OrderedDict[tuple, list] = OrderedDict()
        # entries whose parser keeps state get a parser of this Analyzer's own
        self._udp_table = PortIndex(tuple(replace(e, parse=e.fresh()) if e.fresh is not None else e
                                          for e in dispatch.udp_entries()), self.config)
        self._tcp_table = PortIndex(dispatch.tcp_entries(), self.config)
        self.transfers = Transfers()                    # TFTP and HTTP files (voipwatch.transfers)
        self.flows = FirstSeen(self.config.max_flows, self.config.sighting_idle_s)
        self.directions = FirstSeen(self.config.max_flows, self.config.sighting_idle_s)   # flows.keys without VLAN
        self.hosts = FirstSeen(self.config.max_hosts, self.config.sighting_idle_s)
        self.dedup = (Deduplicator(self.config.dedup_window_s, self.config.max_dedup_held)
                      if self.config.deduplicate else None)
        self._path: tuple | None = None          # VLAN stacks of the copies of the frame being described

    def connect(self, sink: Sink) -> None:
        """Send every record from now on to `sink` (monitor's reload gives it new detectors)."""
        self.sink = sink
        self.emit = sink.emit
        # Where a record a dispatch entry's parser returns goes: SIP messages feed the session trackers,
        # RTP packets the stream trackers; any other record goes out as it is.
        self._records = defaultdict(lambda: sink.emit, {SipMessage: self._sip, RtpPacket: self._unannounced_rtp,
                                                        TlsHandshake: self._tls, TftpPacket: self._tftp_packet,
                                                        HttpMessage: self._http})

    # -- input -------------------------------------------------------------------------------
    def run(self, items: Iterable[Frame | Anomaly], progress: Callable[[Frame], None] | None = None) -> None:
        for item in items:
            self.process(item)
            if progress is not None and type(item) is Frame:
                progress(item)
        self.finish()

    def process(self, item: Frame | Anomaly) -> None:
        dedup = self.dedup
        if type(item) is not Frame:
            if dedup is None or not dedup.held:
                self._capture_note(item)
            else:                                # after the frames before it
                dedup.held.append([dedup.held[-1][0], item, None, None])
            return
        frame = item
        self.frames_read += 1
        ts = frame.ts
        if self.last_ts is None:
            self.first_ts = self.last_ts = ts
            self._next_tick = ts + TICK_S
        elif ts > self.last_ts:
            self.last_ts = ts
        decoded = self.net.decode(frame)
        if dedup is None:
            self._handle(frame, decoded, None)
            return
        for entry in dedup.release(ts):
            self._release(entry)
        kind = type(decoded)
        if kind is Datagram:
            meta = decoded.meta
            key = (decoded.ip_id, meta.src, meta.dst, meta.sport, meta.dport, meta.transport, decoded.tcp_seq,
                   hash(decoded.payload))
            copy = dedup.offer([ts, frame, decoded, None], key, decoded.ip_id,
                               (meta.vlan, decoded.src_mac, decoded.dst_mac), meta.vlan)
        elif kind is Skipped and decoded.src is not None:
            key = (decoded.ip_id, decoded.src, decoded.dst, decoded.bucket, hash(decoded.payload))
            copy = dedup.offer([ts, frame, decoded, None], key, decoded.ip_id,
                               (decoded.vlan, decoded.src_mac, decoded.dst_mac), decoded.vlan)
        else:
            copy = dedup.offer([ts, frame, decoded, None], None, 0, (), ())
        if copy:
            self.frame_classes[DUPLICATES] += 1

    def _capture_note(self, item: Anomaly) -> None:
        if item.name not in FRAME_NOTES:       # a capture record that could not be read whole
            self.frames_read += 1
            self.frames_undecoded += 1
            self.frame_classes[item.name] += 1
        self._anomaly(item)

    def _release(self, entry: list) -> None:
        _, item, decoded, path = entry
        if decoded is None:
            self._capture_note(item)
        else:
            self._handle(item, decoded, tuple(path) if path is not None else None)

    def _handle(self, frame: Frame, decoded, path: tuple | None) -> None:
        """Describe one decoded frame (the first copy of its packet; `path` lists the VLAN stacks of
        every copy when there were several)."""
        ts = frame.ts
        if ts >= self._next_tick:
            self._tick(ts)
        self._path = path
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
            if bucket == "icmp" or bucket == "icmpv6":
                self._icmp(decoded, frame)
            elif bucket in ("lldp", "cdp"):
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
        direction = (meta.transport, meta.src, meta.sport, meta.dst, meta.dport)
        self.directions.add(direction, meta.ts)
        if self.flows.add((meta.vlan, direction), meta.ts):
            # A reply on any VLAN: with SPAN copies dropped, a routed request and its reply are each seen
            # once, on the VLAN of their first copy (the sender's, when the SPAN holds it).
            reverse = (meta.transport, meta.dst, meta.dport, meta.src, meta.sport)
            self.emit(FlowSeen(meta, bucket, self.directions.seen(reverse, meta.ts), dgram.src_mac, dgram.dst_mac,
                               dgram.tcp_flags, self._path))
        if self.hosts.add((dgram.src_mac, meta.src, meta.vlan), meta.ts):
            self.emit(HostSeen(meta.ts, meta.frame, meta.vlan, dgram.src_mac, meta.src))

    def _icmp(self, skipped: Skipped, frame: Frame) -> None:
        """An ICMP(v6) error names the flow it answers (dissectors.icmp)."""
        record, bad = icmp.parse_icmp_error(skipped.bucket, skipped.payload, frame.ts, frame.frame, skipped.vlan,
                                            skipped.src, skipped.dst, skipped.src_mac)
        if bad is not None:
            self._anomaly(Anomaly(frame.ts, frame.frame, "icmp", "icmp.bad_quote", bad, skipped.src, skipped.dst))
        elif record is not None:
            self.emit(record)

    # -- UDP ---------------------------------------------------------------------------------
    def _udp(self, dgram: Datagram) -> str:
        meta, payload = dgram.meta, dgram.payload
        # Session step: media SDP announced for these endpoints is RTP, or RTCP multiplexed beside it.
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
                return self._describe(RTCP, meta, payload)
            if "RTP/" not in endpoint.proto.upper():
                endpoint = None                  # T.38 (udptl) and other non-RTP media
        # Then the dispatch table, in order (PortIndex.entries and .stray inlined: this runs per datagram).
        table = self._udp_table
        kinds = table.kinds
        src_kind, dst_kind = kinds[meta.sport], kinds[meta.dport]
        for entry in table.tries[src_kind][dst_kind][payload[0] if payload else table.EMPTY]:
            if entry.probe(payload):
                bucket = self._describe(entry, meta, payload)
                if bucket is not None:
                    return bucket
        if endpoint is not None and payload:     # RFC 6263 §4.1: an empty datagram is a keep-alive
            self._anomaly(rtp.not_rtp(meta, payload))
            return dispatch.ANNOUNCED_NOT_MEDIA
        home = table.strays[src_kind][dst_kind]
        if home is not None:
            self._anomaly(dispatch.stray_datagram(home, meta, payload))
        return dispatch.UDP_OTHER

    def _describe(self, entry: Entry, meta, payload: bytes) -> str | None:
        """Hand a claimed datagram to its entry's parser: its frame class, or None when the entry declines."""
        if entry.parse is None:
            return entry.bucket
        record, anomalies = entry.parse(meta, payload)
        for anomaly in anomalies:
            self._anomaly(anomaly)
        if record is None:
            return entry.failed
        self._records[type(record)](record)
        return entry.bucket

    def _unannounced_rtp(self, pkt: RtpPacket) -> None:
        self.rtp.add(pkt, None, rtp.clock_rate(pkt.pt, None), rtp.codec_name(pkt.pt, None))

    # -- TCP ---------------------------------------------------------------------------------
    def _tcp(self, dgram: Datagram) -> str:
        meta = dgram.meta
        flow = (meta.vlan, meta.src, meta.sport, meta.dst, meta.dport)
        known = self._tcp_flows.get(flow)
        if known is not None and meta.ts - known[3] <= self.config.tcp_idle_s:
            known[3] = meta.ts
            self._tcp_flows.move_to_end(flow)
        else:
            if not dgram.payload:
                return dispatch.TCP_CONTROL
            known = self._tcp_flows[flow] = self._classify_tcp(meta, dgram.payload)
            self._tcp_flows.move_to_end(flow)
            if len(self._tcp_flows) > self.config.max_tcp_flows:
                self._tcp_flows.popitem(last=False)
        entry, framer, seeker = known[0], known[1], known[2]
        if seeker is not None:                   # the protocol is sought segment by segment until it shows
            if not dgram.payload:
                return dispatch.TCP_OTHER.bucket
            verdict, note = seeker.check(meta, dgram.tcp_seq or 0, dgram.payload)
            if note is not None:
                self._anomaly(note)
            if verdict == "maybe":
                return dispatch.TCP_OTHER.bucket
            if verdict == "other":
                known[0], known[2] = dispatch.TCP_OTHER, None
                return dispatch.TCP_OTHER.bucket
            framer = known[1] = entry.framer()  # this segment begins the protocol: framed from here
            known[2] = None
        elif framer is None:
            return entry.bucket
        messages, anomalies = self.tcp.feed(dgram, framer)
        for anomaly in anomalies:
            self._anomaly(anomaly)
        parse, records = entry.parse, self._records
        for msg_meta, data in messages:
            record, anomalies = parse(msg_meta, data)
            for anomaly in anomalies:
                self._anomaly(anomaly)
            if record is not None:
                records[type(record)](record)
        if framer.abandoned:                     # not this protocol after all: no longer framed
            known[0], known[1] = dispatch.TCP_OTHER, None
        return entry.bucket if framer.synced else dispatch.TCP_OTHER.bucket

    def _classify_tcp(self, meta, payload: bytes) -> list:
        """A new flow direction's state from its first data segment: [the TCP entry that claims it,
        a fresh framer (None: not framed, or not yet), a fresh stream probe if the entry seeks its
        protocol segment by segment, last segment time]."""
        for entry in self._tcp_table.entries(meta.sport, meta.dport, payload):
            if entry.probe is None or entry.probe(payload):
                if entry.opens is not None:
                    record = entry.opens(meta)
                    self._records[type(record)](record)
                if entry.seek is not None:
                    return [entry, None, entry.seek(), meta.ts]
                return [entry, entry.framer() if entry.framer is not None else None, None, meta.ts]
        return [dispatch.TCP_OTHER, None, None, meta.ts]

    # -- SIP and sessions --------------------------------------------------------------------
    def _sip(self, msg: SipMessage) -> None:
        if self._path is not None:
            msg = replace(msg, vlan_path=self._path)
        self.emit(msg)
        self.expectations.announce(msg)
        for call in self.calls.on_sip(msg):
            self.emit(call)
        for reg in self.registrations.on_sip(msg):
            self.emit(reg)

    def _tls(self, handshake: TlsHandshake) -> None:
        """A DTLS certificate on SDP-announced media is matched to the a=fingerprint its sender's SDP gave
        (RFC 5763 §5: the fingerprint is what authenticates a DTLS-SRTP certificate)."""
        pkt = handshake.pkt
        if handshake.protocol == "dtls" and handshake.certificates:
            endpoint = self.expectations.announced(pkt.src, pkt.sport, pkt.frame, pkt.ts)
            if endpoint is not None and endpoint.fingerprint is not None:
                function, value = endpoint.fingerprint
                ours = certificate_hash(handshake.certificates[0], function)
                verdict = "unchecked" if ours is None else "match" if ours == value else "mismatch"
                handshake = replace(handshake, call_id=endpoint.call_id, sdp_fingerprint=verdict)
        self.emit(handshake)

    # -- files moved in the clear -----------------------------------------------------------
    def _tftp_packet(self, packet: TftpPacket) -> None:
        self.emit(packet)
        for transfer in self.transfers.on_tftp(packet):
            self.emit(transfer)

    def _http(self, msg: HttpMessage) -> None:
        self.emit(msg)
        for transfer in self.transfers.on_http(msg):
            self.emit(transfer)

    def _emit_streams(self, streams: list[RtpStream]) -> None:
        for stream in streams:
            self.emit(stream)

    def _anomaly(self, anomaly: Anomaly) -> None:
        self.anomaly_counts[anomaly.name] += 1
        self.emit(anomaly)

    def advance(self, now: float) -> None:
        """Let capture time pass without a frame (a live source that has been quiet): expire state."""
        if self.dedup is not None and (self.last_ts is None or now >= self.last_ts):
            for entry in self.dedup.release(now):
                self._release(entry)
        if self._next_tick is not None and now >= self._next_tick and (self.last_ts is None or now >= self.last_ts):
            self._tick(now)

    def _tick(self, now: float) -> None:
        self._next_tick = now + TICK_S
        if self.dedup is not None:
            self._count_dedup_caps()
        self.rtp.expire(now, self._emit_streams)
        for anomaly in self.tcp.expire(now):
            self._anomaly(anomaly)
        for anomaly in self.net.expire(now):
            self._anomaly(anomaly)
        for transfer in self.transfers.expire(now):
            self.emit(transfer)
        self.sink.tick(now)
        for call in self.calls.expire(now):
            self.emit(call)
        for reg in self.registrations.expire(now):
            self.emit(reg)
        self.expectations.expire(now)
        while self._tcp_flows:
            flow, (_, _, _, last) = next(iter(self._tcp_flows.items()))
            if now - last <= self.config.tcp_idle_s:
                break
            del self._tcp_flows[flow]
        self.flows.expire(now)
        self.directions.expire(now)
        self.hosts.expire(now)

    def finish(self) -> None:
        """End of input: close every stream, call and registration still open, and report what the
        IP and TCP reassemblers still hold."""
        if self.dedup is not None:
            for entry in self.dedup.drain():
                self._release(entry)
            self._count_dedup_caps()
        for anomaly in self.net.finish() + self.tcp.finish():
            self._anomaly(anomaly)
        taken = self.rtp.finish(self._emit_streams)
        if taken is not None:
            self._count_taken(taken)
        for call in self.calls.finish():
            self.emit(call)
        for reg in self.registrations.finish(self.last_ts):
            self.emit(reg)
        for transfer in self.transfers.finish():
            self.emit(transfer)
        for name, count in (("sessions.media_expectations_overflow", self.expectations.overflows),
                            ("sessions.calls_overflow", self.calls.overflows),
                            ("sessions.registrations_overflow", self.registrations.overflows),
                            ("sessions.register_transactions_overflow", self.registrations.transaction_overflows),
                            ("sessions.bindings_overflow", self.registrations.bindings.overflows),
                            ("rtp.streams_overflow", self.rtp.overflows),
                            ("sessions.flows_overflow", self.flows.overflows + self.directions.overflows),
                            ("sessions.hosts_overflow", self.hosts.overflows),
                            ("sessions.transfers_overflow", self.transfers.overflows)):
            if count:
                self.anomaly_counts[name] += count

    def _count_dedup_caps(self) -> None:
        """The deduplication caps hit so far, as anomaly counts (monitor's stats show them as caps_hit)."""
        for name, count in (("dedup.held_overflow", self.dedup.held_overflows),
                            ("dedup.keys_overflow", self.dedup.key_overflows)):
            if count:
                self.anomaly_counts[name] = count

    def count_duplicates(self, frames: int) -> None:
        """Copies the batch reader dropped among its RTP candidates: frames read, class duplicates."""
        if frames:
            self.frames_read += frames
            self.frame_classes[DUPLICATES] += frames

    def settled_frame(self, frames_done: int) -> int:
        """The last frame number up to which every frame fed so far has been described (frames are
        held for the deduplication window)."""
        first = self.dedup.first_held_frame() if self.dedup is not None else None
        return frames_done if first is None else first - 1

    def _count_taken(self, taken: FramesTaken) -> None:
        """Frames the RTP collector took from the capture itself join the frame counts and the capture span."""
        self.frames_read += taken.frames
        self.frame_classes.update(taken.classes)
        if taken.first_ts is not None and (self.first_ts is None or taken.first_ts < self.first_ts):
            self.first_ts = taken.first_ts
        if taken.last_ts is not None and (self.last_ts is None or taken.last_ts > self.last_ts):
            self.last_ts = taken.last_ts
