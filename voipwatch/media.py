"""Where the pipeline's RTP packets go: the RTP collector interface, and the streaming collector.

An RTP collector turns the RtpPacket records of the pipeline into RtpStream records. StreamingRtp
(here) updates the incremental tracker packet by packet (live monitoring, --mode stream); the batch
path's BatchRtp (voipwatch.batch.rtp) keeps header fields in columns and computes every stream at
the end of input. A stream belongs to the call whose SDP announced its flow when its first packet
arrived.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Protocol

from voipwatch.records import RtpPacket, RtpStream
from voipwatch.rtpstats import RtpStreamTracker

Emit = Callable[[list[RtpStream]], None]


@dataclass(frozen=True)
class FramesTaken:
    """Frames a collector took from the capture itself, never seen by Analyzer.process (the batch
    reader's column-decoded RTP candidates): they count as frames read, by class, in the capture span."""
    frames: int
    classes: Counter[str]          # frame class -> frames (classes with none are absent)
    first_ts: float | None
    last_ts: float | None


class RtpCollector(Protocol):
    """What the Analyzer needs of an RTP collector."""
    overflows: int                 # streams closed early by a cap (rtp.streams_overflow)
    announcements: list | None     # when a list, every SDP announcement is appended in order

    def add(self, pkt: RtpPacket, call_id: str | None, clock_rate_hz: int | None, codec: str | None) -> None: ...
    def expire(self, now: float, emit: Emit) -> None: ...
    def finish(self, emit: Emit) -> FramesTaken | None: ...


class StreamingRtp:
    """RTP streams tracked packet by packet, closed when idle (capture time) or at the end of input."""
    announcements = None           # lookups happen as packets come (MediaExpectations): no log to keep

    def __init__(self, idle_s: float, max_streams: int):
        self.tracker = RtpStreamTracker(idle_s, max_streams)

    @property
    def overflows(self) -> int:
        return self.tracker.overflows

    def add(self, pkt: RtpPacket, call_id: str | None, clock_rate_hz: int | None, codec: str | None) -> None:
        self.tracker.add(pkt, clock_rate_hz, codec, call_id)

    def expire(self, now: float, emit: Emit) -> None:
        emit(self.tracker.expire(now))

    def finish(self, emit: Emit) -> None:
        emit(self.tracker.finish())
