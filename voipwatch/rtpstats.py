"""RTP stream statistics (RFC 3550 §6.4.1, A.1, A.3, A.8) with the arithmetic of tshark 4.0 `-z rtp,streams`.

Two implementations give the same RtpStream records: `RtpStreamTracker` here (incremental, O(1)
state per stream, the streaming path) and its vectorised twin voipwatch.batch.stream_stats (over
columns, the batch path). Their integers are equal; their jitter figures agree to ~1e-12 relative
(the vectorised recursion sums in another order).

The arithmetic is Wireshark 4.0's rtppacket_analyse() (ui/tap-rtp-analysis.c), summed up by
rtpstream_info_calculate() (ui/tap-rtp-common.c) and printed by ui/cli/tap-rtp.c; the Wireshark 4.0.x
code was read and the results were checked against tshark 4.0.17 (tests/test_rtpstats.py). Per
packet, in capture order, with t = arrival time in ms:
- "in time sequence": the RTP timestamp is at most 2^31 ahead of the stream's first one (wrapping).
- Lost = expected - packets, expected = last packet's seq + 65536 * cycles - first packet's seq + 1.
  A cycle is counted when, not already "under", an in-sequence packet's seq is below the first seq
  (or is 0 right after 65535); "under" clears when an in-sequence seq exceeds the first seq.
  Duplicates make Lost negative, as in tshark.
- Jitter: for in-sequence packets whose payload type has a known clock rate,
      nominal = ((ts - first_ts) mod 2^32) / (clock_rate // 1000)       [integer division: 44100 -> 44]
      D = |t - (t_prev + nominal - nominal_prev)|,  J = (15 * J + D) / 16  (RFC 3550 §A.8, in ms)
  where t_prev is the arrival time of the previous in-sequence packet and nominal_prev the nominal
  time of the previous jitter update. Max Delta is the largest t - t_prev, Max Jitter the largest J,
  and Mean Jitter the running value mean = (mean * (n - 1) + J) / n, n being the number of packets
  before this one; all three only over "regular" packets: in sequence, not the first, marker bit
  clear, neither this nor the previous packet comfort noise (PT 13 or 19).
- Clock rate: static payload types (< 96) use tshark's table whatever SDP says; dynamic ones use the
  SDP rtpmap rate, no jitter for telephone-event (RFC 4733 §2.2.1: its timestamp does not advance)
  and none without an rtpmap.
Deliberate differences: streams are also keyed by VLAN and cut into segments by idle time (tshark
does neither); clock rates below 1000 Hz give no jitter (tshark divides by zero).

Duplicates and out-of-order packets follow tshark's "wrong sequence" test: a packet that does not
advance the highest accepted sequence number is a duplicate if it repeats it, else out of order.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

from dissectors.rtp import STATIC_PAYLOAD_TYPES, codec_name
from voipwatch.records import RtpPacket, RtpStream

# Wireshark 4.0 clock_map (ui/tap-rtp-analysis.c): RFC 3551 static types plus 1 (FS-1016), 2 (G.721)
# and 19 (old CN) kept from RFC 1890.
TSHARK_STATIC_CLOCK: dict[int, int] = {pt: rate for pt, (_, rate) in STATIC_PAYLOAD_TYPES.items()}
TSHARK_STATIC_CLOCK.update({1: 8000, 2: 8000, 19: 8000})

# Wireshark 4.0 mimetype_and_clock_map: clock rates of dynamic encodings by name, used when the
# rtpmap gives no rate. Looked up last-first by case-insensitive prefix, as Wireshark does.
DYNAMIC_CLOCK_BY_NAME: tuple[tuple[str, int], ...] = (
    ("AMR", 8000), ("AMR-WB", 16000), ("BMPEG", 90000), ("BT656", 90000), ("DV", 90000),
    ("EVRC", 8000), ("EVRC0", 8000), ("EVRC1", 8000), ("EVRCB", 8000), ("EVRCB0", 8000),
    ("EVRCB1", 8000), ("EVRCWB", 16000), ("EVRCWB0", 16000), ("EVRCWB1", 16000), ("G7221", 16000),
    ("G726-16", 8000), ("G726-24", 8000), ("G726-32", 8000), ("G726-40", 8000), ("G729D", 8000),
    ("G729E", 8000), ("GSM-EFR", 8000), ("H263-1998", 90000), ("H263-2000", 90000), ("H264", 90000),
    ("MP1S", 90000), ("MP2P", 90000), ("MP4V-ES", 90000), ("mpa-robust", 90000), ("pointer", 90000),
    ("raw", 90000), ("red", 1000), ("SMV", 8000), ("SMV0", 8000), ("t140", 1000),
    ("telephone-event", 8000),
)
TELEPHONE_EVENT = "telephone-event"
FIRST_DYNAMIC_PT = 96
COMFORT_NOISE_PTS = (13, 19)          # RFC 3389 CN and the old CN payload type
IN_SEQUENCE_SPAN = 0x80000000         # RTP timestamps within 2^31 ahead of the first are in sequence
WRAP_JUMP = 0xFF00                    # a seq this far below the highest is taken as a wrap (Wireshark #5958)
JITTER_WEIGHT = 1 / 16                # RFC 3550 §A.8

StreamKey = tuple[tuple[int, ...], str, int, str, int, int]   # (vlan, src, sport, dst, dport, ssrc)


@lru_cache(maxsize=4096)
def analysis_clock_rate(pt: int, clock_rate_hz: int | None, codec: str | None) -> int | None:
    """The clock rate (Hz) tshark uses for jitter, from what SDP said about payload type `pt`.

    `clock_rate_hz` and `codec` are rtp.clock_rate(pt, rtpmap) and rtp.codec_name(pt, rtpmap).
    """
    if pt < FIRST_DYNAMIC_PT:
        rate = TSHARK_STATIC_CLOCK.get(pt)
    elif codec is not None and codec.lower().startswith(TELEPHONE_EVENT):
        rate = None
    elif clock_rate_hz:
        rate = clock_rate_hz
    else:
        lowered = codec.lower() if codec else None
        rate = next((r for name, r in reversed(DYNAMIC_CLOCK_BY_NAME)
                     if lowered is not None and lowered.startswith(name.lower())), None)
    return rate if rate is not None and rate >= 1000 else None


def _in_time_sequence(first_ts: int, ts: int) -> bool:
    """Wireshark 4.0: the timestamp is not behind the first one (within 2^31, wrapping)."""
    if first_ts <= ts:
        return ts - first_ts < IN_SEQUENCE_SPAN
    return (0xFFFFFFFF - first_ts) + ts < IN_SEQUENCE_SPAN


@dataclass(slots=True)
class _Stream:
    """Per-stream state of rtppacket_analyse (tap_rtp_stat_t), O(1) in size."""
    key: StreamKey
    first_ts: float                 # capture time of the first packet (s): the ms time base
    first_frame: int
    first_rtp_ts: int
    start_seq: int
    codec: str | None
    payload_type: int
    call_id: str | None
    last_ts: float = 0.0
    stop_seq: int = 0               # seq of the last packet processed
    seq_num: int = 0                # highest accepted seq (Wireshark's statinfo->seq_num)
    under: bool = False
    cycles: int = 0
    pt: int = 0                     # payload type of the previous packet
    time_ms: float = 0.0            # arrival of the last in-sequence packet
    last_nominal: float = 0.0
    jitter: float = 0.0
    max_delta: float = 0.0
    max_jitter: float = 0.0
    mean_jitter: float = 0.0
    packets: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    bytes: int = 0
    negotiated: bool = False
    payload_types: set[int] = field(default_factory=set)

    def record(self) -> RtpStream:
        vlan, src, sport, dst, dport, ssrc = self.key
        expected = self.stop_seq + self.cycles * 65536 - self.start_seq + 1
        return RtpStream(
            src=src, sport=sport, dst=dst, dport=dport, vlan=vlan, ssrc=ssrc, payload_type=self.payload_type,
            codec=self.codec, packets=self.packets, expected=expected, lost=expected - self.packets,
            duplicates=self.duplicates, out_of_order=self.out_of_order, jitter_ms_mean=self.mean_jitter,
            jitter_ms_max=self.max_jitter, max_delta_ms=self.max_delta, first_ts=self.first_ts,
            last_ts=self.last_ts, first_frame=self.first_frame, call_id=self.call_id, negotiated=self.negotiated,
            payload_types=tuple(sorted(self.payload_types)), bytes=self.bytes)


class RtpStreamTracker:
    """Incremental RTP stream statistics: feed packets in capture order, collect closed streams.

    A stream is (vlan, src, sport, dst, dport, ssrc). It is closed and emitted by expire() once idle
    for more than `idle_s` of capture time; a packet arriving more than `idle_s` after the previous
    one of its key also closes it (returned by the next expire() or finish()) and starts a new
    segment: the same cut the vectorised twin (voipwatch.batch.stream_stats) makes. At most
    `max_streams` are open; beyond, the least recently active is closed early and counted in
    `overflows` (not done by the vectorised twin).
    A stream's call_id is the one given with its first packet (the dialog whose SDP announced the flow).
    """

    def __init__(self, idle_s: float = 60.0, max_streams: int | None = None):
        self.idle_s = idle_s
        self.max_streams = max_streams
        self.overflows = 0
        self._open: OrderedDict[StreamKey, _Stream] = OrderedDict()   # least recently active first
        self._closed: list[_Stream] = []

    def __len__(self) -> int:
        return len(self._open)

    def add(self, pkt: RtpPacket, clock_rate_hz: int | None, codec: str | None = None,
            call_id: str | None = None) -> None:
        """One RTP packet. `clock_rate_hz`/`codec`: rtp.clock_rate / rtp.codec_name of its payload type;
        `call_id`: the call whose SDP announced the flow, if any."""
        meta = pkt.pkt
        key = (meta.vlan, meta.src, meta.sport, meta.dst, meta.dport, pkt.ssrc)
        if codec is None:
            codec = codec_name(pkt.pt)
        st = self._open.get(key)
        if st is not None and meta.ts - st.last_ts > self.idle_s:
            self._closed.append(self._open.pop(key))
            st = None
        if st is None:
            if self.max_streams is not None and len(self._open) >= self.max_streams:
                self._closed.append(self._open.popitem(last=False)[1])
                self.overflows += 1
            st = _Stream(key=key, first_ts=meta.ts, first_frame=meta.frame, first_rtp_ts=pkt.rtp_ts,
                         start_seq=pkt.seq, codec=codec, payload_type=pkt.pt, call_id=call_id, seq_num=pkt.seq,
                         pt=pkt.pt)
            self._open[key] = st
        else:
            self._open.move_to_end(key)
            self._analyse(st, pkt, analysis_clock_rate(pkt.pt, clock_rate_hz, codec))
        st.stop_seq = pkt.seq
        st.last_ts = meta.ts
        st.packets += 1
        st.bytes += pkt.payload_len
        st.negotiated = st.negotiated or pkt.negotiated
        st.payload_types.add(pkt.pt)

    @staticmethod
    def _analyse(st: _Stream, pkt: RtpPacket, clock: int | None) -> None:
        """rtppacket_analyse() for every packet but the first."""
        t = (pkt.pkt.ts - st.first_ts) * 1000.0
        seq = pkt.seq
        in_seq = _in_time_sequence(st.first_rtp_ts, pkt.rtp_ts)
        if in_seq:
            if not st.under and (seq < st.start_seq or (seq == 0 and st.stop_seq == 65535)):
                st.cycles += 1
                st.under = True
            elif st.under and seq > st.start_seq:
                st.under = False
        if in_seq and (seq > st.seq_num or st.seq_num - seq > WRAP_JUMP):
            st.seq_num = seq
        elif seq < st.seq_num:
            st.out_of_order += 1
        elif seq == st.seq_num:
            st.duplicates += 1
        comfort_noise = pkt.pt in COMFORT_NOISE_PTS or st.pt in COMFORT_NOISE_PTS
        st.pt = pkt.pt
        current_jitter = 0.0
        if in_seq:
            delta = t - st.time_ms
            if clock is not None:
                nominal = ((pkt.rtp_ts - st.first_rtp_ts) & 0xFFFFFFFF) / (clock // 1000)
                diff = abs(t - (st.time_ms + (nominal - st.last_nominal)))
                current_jitter = (15 * st.jitter + diff) / 16
                st.jitter = current_jitter
                st.last_nominal = nominal
            if not pkt.marker and not comfort_noise:
                if delta > st.max_delta:
                    st.max_delta = delta
                if clock is not None:
                    if st.jitter > st.max_jitter:
                        st.max_jitter = st.jitter
                    n = st.packets
                    st.mean_jitter = (st.mean_jitter * (n - 1) + current_jitter) / n
            st.time_ms = t

    def expire(self, now: float) -> list[RtpStream]:
        """Streams idle for more than idle_s at capture time `now`, and any closed since the last call."""
        while self._open:
            key, st = next(iter(self._open.items()))
            if now - st.last_ts <= self.idle_s:
                break
            self._closed.append(self._open.pop(key))
        return self._drain()

    def finish(self) -> list[RtpStream]:
        """End of input: every stream, open or closed and not yet returned."""
        self._closed.extend(self._open.values())
        self._open.clear()
        return self._drain()

    def _drain(self) -> list[RtpStream]:
        closed, self._closed = self._closed, []
        return sorted((st.record() for st in closed), key=lambda s: s.first_frame)
