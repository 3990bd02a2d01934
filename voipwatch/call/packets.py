"""A call's own packets: the captures read again through the pipeline, which says what each frame is.

Every SIP message, RTP and RTCP packet of the selected calls, in original order and link layer, and
each stream's media payloads. A packet belongs to a call as the pipeline decides it does: SIP by
its Call-ID; RTP by the stream (flow, SSRC and time span) the analysis put in the call; RTCP when it
is sent to or from an endpoint the call's SDP announced (its a=rtcp port, RFC 3605, else the RTP
port + 1, RFC 3550 §11, or the RTP port itself when multiplexed, RFC 5761), the binding the
pipeline used to accept it as RTCP. SIP over TCP brings every segment of its connection while the
call lasts, so that the bundle's capture reassembles.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from dissectors.net import Datagram, NetworkDecoder
from voipwatch.call.select import CallView
from voipwatch.capture import read_captures
from voipwatch.config import PipelineConfig
from voipwatch.media import Emit
from voipwatch.pipeline import Analyzer
from voipwatch.records import Frame, RtcpPacket, RtpPacket, RtpStream, SipMessage
from voipwatch.sessions import MediaExpectations

StreamKey = tuple[tuple[int, ...], str, int, str, int, int]     # (vlan, src, sport, dst, dport, ssrc)


@dataclass
class MediaPackets:
    """The RTP packets of one stream, as read back from the capture."""
    stream: RtpStream
    packets: list[tuple[float, int, int, bytes]] = field(default_factory=list)   # (ts, seq, rtp_ts, payload)


class _CallPackets:
    """The pipeline's sink and RTP collector while collect() reads the captures: it notes the frames
    of the calls' SIP messages, RTP packets and RTCP packets as the pipeline reports them."""
    announcements = None          # RtpCollector: no announcement log
    overflows = 0

    def __init__(self, views: list[CallView], bindings: MediaExpectations | None = None):
        self.frames: dict[str, dict[int, Frame]] = {}      # Call-ID -> its view's frames (one dict per view)
        for v in views:
            found: dict[int, Frame] = {}
            for cid in v.call_ids:
                self.frames[cid] = found
        self.media: dict[StreamKey, MediaPackets] = {}
        self.bindings = bindings   # the analyzer's SDP bindings (the RTCP of a call is sent to or from one)
        self.frame: Frame | None = None            # the frame the pipeline is processing
        self.datagram: Datagram | None = None      # ... and its UDP/TCP datagram
        for v in views:
            for s in v.streams:
                self.media[(s.vlan, s.src, s.sport, s.dst, s.dport, s.ssrc)] = MediaPackets(s)

    def _keep(self, call_id: str | None) -> None:
        frames = self.frames.get(call_id) if call_id is not None else None
        if frames is not None:
            frames[self.frame.frame] = self.frame

    # -- as the pipeline's sink ----------------------------------------------------------------
    def emit(self, record: object) -> None:
        """A SIP message of a call, or RTCP sent to or from one of its SDP-announced endpoints, puts
        the frame in that call; other records put no packet in a call."""
        kind = type(record)
        if kind is SipMessage:
            self._keep(record.call_id)
        elif kind is RtcpPacket:
            m = record.pkt
            endpoint = self.bindings.lookup(m.src, m.sport, m.dst, m.dport, m.frame, m.ts)
            if endpoint is not None:
                self._keep(endpoint.call_id)

    def tick(self, now: float) -> None:
        """Nothing here depends on the passing of time."""

    # -- as the pipeline's RTP collector -------------------------------------------------------
    def add(self, pkt: RtpPacket, call_id: str | None, clock_rate_hz: int | None, codec: str | None) -> None:
        m = pkt.pkt
        found = self.media.get((m.vlan, m.src, m.sport, m.dst, m.dport, pkt.ssrc))
        if found is None or not found.stream.first_ts <= m.ts <= found.stream.last_ts:
            return
        payload = self.datagram.payload
        padding = payload[-1] if payload[0] & 0x20 else 0           # RFC 3550 §5.1: P bit, count in the last octet
        header = len(payload) - pkt.payload_len - padding
        found.packets.append((m.ts, pkt.seq, pkt.rtp_ts, payload[header:header + pkt.payload_len]))
        self._keep(found.stream.call_id)

    def expire(self, now: float, emit: Emit) -> None:
        """Streams are the analysis's: none are made here."""

    def finish(self, emit: Emit) -> None:
        """Streams are the analysis's: none are made here."""


def collect(paths: list[str], views: list[CallView], config: PipelineConfig | None = None
            ) -> tuple[dict[str, list[Frame]], dict[StreamKey, MediaPackets]]:
    """Read the captures again through the pipeline (with the analysis's `config`): each view's frames
    (SIP, RTP, RTCP of all its Call-IDs) in frame order, keyed by the view's Call-ID, and each stream's
    payloads."""
    calls = _CallPackets(views)
    # Every frame is described as it is read (the sink notes the frame being processed), so SPAN copies
    # are not held back and dropped here: the bundle keeps each copy the capture holds, as captured.
    analyzer = Analyzer(calls, replace(config or PipelineConfig(), deduplicate=False), rtp=calls)
    calls.bindings = analyzer.expectations
    tcp_flows: dict[tuple, tuple[str, float, float]] = {}      # SIP over TCP: connection -> (call, window)
    for v in views:
        for m in v.messages:
            if m.pkt.transport == "tcp":
                key = (m.pkt.vlan, m.pkt.src, m.pkt.sport, m.pkt.dst, m.pkt.dport)
                tcp_flows[key] = (v.call_id, v.first_ts - 1.0, v.last_ts + 1.0)
    decoder = NetworkDecoder()           # the datagram the pipeline's own decoder sees in each frame
    for item in read_captures(paths):
        if type(item) is Frame:
            calls.frame = item
            dgram = decoder.decode(item)
            calls.datagram = dgram if type(dgram) is Datagram else None
            if calls.datagram is not None and dgram.meta.transport == "tcp":
                meta = dgram.meta
                hit = tcp_flows.get((meta.vlan, meta.src, meta.sport, meta.dst, meta.dport)) or \
                    tcp_flows.get((meta.vlan, meta.dst, meta.dport, meta.src, meta.sport))
                if hit and hit[1] <= meta.ts <= hit[2]:
                    calls.frames[hit[0]][item.frame] = item
        analyzer.process(item)
    analyzer.finish()
    frames = {v.call_id: [calls.frames[v.call_id][n] for n in sorted(calls.frames[v.call_id])] for v in views}
    return frames, calls.media
