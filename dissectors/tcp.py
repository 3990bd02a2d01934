"""Per-direction TCP stream reassembly (RFC 9293 §3.4 sequence space) feeding a caller's message framer.

Each direction of a connection keeps the next expected sequence number, the in-order bytes the
framer has not consumed yet, a bounded set of out-of-order segments, and the framer itself (an
application protocol's per-direction framing state, told when the direction ends). Time is capture time.
"""
from __future__ import annotations

from typing import Callable, Protocol

from dissectors.ip import TCP_FIN, TCP_RST, TCP_SYN
from dissectors.net import Datagram
from voipwatch.records import Anomaly, PacketMeta


class Framer(Protocol):
    """One direction's application framing: splits its in-order bytes into whole messages."""
    synced: bool        # the protocol has been recognised in this direction's bytes
    abandoned: bool     # the framer has given up: the bytes are not this protocol

    def frame(self, buf: bytes, meta: PacketMeta) -> tuple[list[bytes], int, list[Anomaly]]:
        """(whole messages, bytes consumed, anomalies about consumed bytes that were not messages)."""
        ...

    def end(self, ts: float, frame: int, src: str, dst: str, why: str) -> list[Anomaly]:
        """The direction is gone (why: "connection closed", ...): anomalies about what the framer still held."""
        ...


class Splitter:
    """A Framer without per-direction state, for protocols whose framing never skips bytes
    (e.g. DNS, RFC 1035 §4.2.2): split(buf) -> (messages, bytes consumed)."""
    synced = True
    abandoned = False

    def __init__(self, split: Callable[[bytes], tuple[list[bytes], int]]) -> None:
        self.split = split

    def frame(self, buf: bytes, meta: PacketMeta) -> tuple[list[bytes], int, list[Anomaly]]:
        messages, used = self.split(buf)
        return messages, used, []

    def end(self, ts: float, frame: int, src: str, dst: str, why: str) -> list[Anomaly]:
        return []


class StreamProbe(Protocol):
    """Seeks a protocol in one direction's data segments one at a time, before any byte is framed
    (a heuristic on a port the protocol does not own): nothing is buffered, and it gives up in time."""

    def check(self, meta: PacketMeta, seq: int, payload: bytes) -> tuple[str, Anomaly | None]:
        """The verdict on one data segment: "maybe" (ask about the next one), "other" (given up), or the
        protocol's name (this segment begins it: framing starts here); with the give-up's anomaly, if any."""
        ...


DEFAULT_MAX_FLOWS = 10_000                # directions tracked at once
DEFAULT_MAX_BUFFER_BYTES = 256 * 1024     # per direction, for unframed bytes and for held out-of-order bytes
DEFAULT_IDLE_S = 300.0                    # capture seconds without a segment before a direction is dropped
DEFAULT_GAP_S = 5.0                       # capture seconds a hole may stay open before it is skipped
MAX_OUT_OF_ORDER_SEGMENTS = 64            # held segments per direction

# Every Anomaly.name feed(), expire() and finish() produce (layer "tcp").
ANOMALIES = {
    "tcp.flow_table_full": "max_tcp_flows directions reassembled at once: the least recently active one was "
                           "evicted with its pending bytes",
    "tcp.gap": f"bytes never seen (a hole open over {DEFAULT_GAP_S:g} s, or too much held after it): skipped "
               "ahead, the partial message dropped",
    "tcp.buffer_overflow": f"more than {DEFAULT_MAX_BUFFER_BYTES // 1024} KiB the framer could not split into "
                           "messages: dropped",
    "tcp.unframed_bytes": "bytes not yet framed when a direction was reset, closed, restarted or idle: dropped",
    "tcp.unframed_bytes_at_end": "bytes not yet framed at the end of the capture (a message cut off by it)",
}

_MOD = 1 << 32                            # RFC 9293 §3.4: sequence numbers are modulo 2**32
_HALF = 1 << 31

FlowKey = tuple[tuple[int, ...], str, int, str, int]


class _Direction:
    __slots__ = ("isn", "next_seq", "buf", "held", "held_bytes", "gap_since", "last_ts", "last_frame", "framer")

    def __init__(self, isn: int | None, next_seq: int, ts: float, frame: int) -> None:
        self.isn = isn                        # initial sequence number, when the SYN was seen
        self.next_seq = next_seq
        self.buf = b""                        # in-order bytes not yet framed
        self.held: dict[int, bytes] = {}      # out-of-order segments by sequence number
        self.held_bytes = 0
        self.gap_since: float | None = None   # capture time the current hole was first seen
        self.last_ts = ts
        self.last_frame = frame
        self.framer: Framer | None = None     # the framer last given for this direction


class TcpReassembler:
    """Delivers whole messages per direction: retransmissions dropped, reordering undone, holes bounded."""

    def __init__(self, max_flows: int = DEFAULT_MAX_FLOWS, max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
                 idle_s: float = DEFAULT_IDLE_S, gap_s: float = DEFAULT_GAP_S) -> None:
        self.max_flows = max_flows
        self.max_buffer_bytes = max_buffer_bytes
        self.idle_s = idle_s
        self.gap_s = gap_s
        self._flows: dict[FlowKey, _Direction] = {}   # ordered by last activity, oldest first

    def __len__(self) -> int:
        return len(self._flows)

    def feed(self, dgram: Datagram, framer: Framer) -> tuple[list[tuple[PacketMeta, bytes]], list[Anomaly]]:
        """Add one segment; return the messages it completed (with its meta) and any anomalies.

        `framer` is this direction's framer (the caller keeps one per direction); given a different one
        than last time, the direction tells the old one it ended."""
        meta = dgram.meta
        flags, seq, payload = dgram.tcp_flags or 0, dgram.tcp_seq or 0, dgram.payload
        key = (meta.vlan, meta.src, meta.sport, meta.dst, meta.dport)
        anomalies: list[Anomaly] = []
        if flags & TCP_RST:                       # the connection is gone in both directions
            for k in (key, (meta.vlan, meta.dst, meta.dport, meta.src, meta.sport)):
                self._close(k, meta, "reset", anomalies)
            return [], anomalies
        st = self._flows.pop(key, None)           # re-inserted below: dict order tracks activity
        if flags & TCP_SYN:
            if st is None or st.isn != seq:       # a new connection (a retransmitted SYN repeats the ISN)
                if st is not None:
                    self._lost(st, meta, "connection restarted with a new SYN", anomalies)
                st = _Direction(seq, (seq + 1) % _MOD, meta.ts, meta.frame)
            seq = (seq + 1) % _MOD                # the SYN occupies one sequence number; data follows it
        elif st is None:
            if not payload:                       # a bare ACK/FIN of an unknown connection holds no state
                return [], anomalies
            st = _Direction(None, seq, meta.ts, meta.frame)   # SYN not captured: start at the first byte seen
        if len(self._flows) >= self.max_flows:
            old_key = next(iter(self._flows))
            old = self._flows.pop(old_key)
            anomalies.append(Anomaly(meta.ts, meta.frame, "tcp", "tcp.flow_table_full",
                                     f"{self.max_flows} directions tracked: evicted {_name(old_key)}"
                                     f" with {len(old.buf) + old.held_bytes} bytes pending",
                                     meta.src, meta.dst))
            if old.framer is not None:
                anomalies += old.framer.end(meta.ts, meta.frame, old_key[1], old_key[3], "direction evicted")
        self._flows[key] = st
        if st.framer is not framer:
            if st.framer is not None:
                anomalies += st.framer.end(meta.ts, meta.frame, meta.src, meta.dst, "framing restarted")
            st.framer = framer
        st.last_ts, st.last_frame = meta.ts, meta.frame
        grew = self._accept(st, seq, payload, meta.ts) if payload else False
        if st.held and (st.held_bytes > self.max_buffer_bytes or len(st.held) > MAX_OUT_OF_ORDER_SEGMENTS
                        or (st.gap_since is not None and meta.ts - st.gap_since > self.gap_s)):
            self._skip_gap(st, meta, anomalies)
            grew = True
        messages: list[tuple[PacketMeta, bytes]] = []
        if grew and st.buf:
            found, used, notes = framer.frame(st.buf, meta)
            st.buf = st.buf[max(0, min(used, len(st.buf))):]
            messages = [(meta, m) for m in found]
            anomalies += notes
            if len(st.buf) > self.max_buffer_bytes:
                anomalies.append(Anomaly(meta.ts, meta.frame, "tcp", "tcp.buffer_overflow",
                                         f"{len(st.buf)} unframed bytes dropped (limit {self.max_buffer_bytes})",
                                         meta.src, meta.dst))
                st.buf = b""
        if flags & TCP_FIN:
            self._close(key, meta, "closed", anomalies)
        return messages, anomalies

    def expire(self, now: float) -> list[Anomaly]:
        """Drop directions idle for more than idle_s capture seconds; report bytes they still held."""
        anomalies: list[Anomaly] = []
        flows = self._flows
        while flows:
            key = next(iter(flows))
            st = flows[key]
            if now - st.last_ts <= self.idle_s:
                break
            del flows[key]
            if st.framer is not None:
                anomalies += st.framer.end(now, st.last_frame, key[1], key[3], "direction went idle")
            if st.buf or st.held:
                anomalies.append(Anomaly(now, st.last_frame, "tcp", "tcp.unframed_bytes",
                                         f"{_name(key)} idle: {len(st.buf)} unframed and {st.held_bytes}"
                                         " out-of-order bytes dropped", key[1], key[3]))
        return anomalies

    def finish(self) -> list[Anomaly]:
        """End of input: the bytes each direction still holds (a message cut off by the end of the capture)."""
        anomalies: list[Anomaly] = []
        for key, st in self._flows.items():
            if st.framer is not None:
                anomalies += st.framer.end(st.last_ts, st.last_frame, key[1], key[3], "end of the capture")
            if st.buf or st.held:
                anomalies.append(Anomaly(st.last_ts, st.last_frame, "tcp", "tcp.unframed_bytes_at_end",
                                         f"{_name(key)}: {len(st.buf)} unframed and {st.held_bytes} out-of-order "
                                         "bytes at the end of the capture", key[1], key[3]))
        self._flows.clear()
        return anomalies

    def _accept(self, st: _Direction, seq: int, data: bytes, ts: float) -> bool:
        """Place one segment's bytes; True when in-order bytes were added."""
        ahead = (seq - st.next_seq) % _MOD
        if ahead >= _HALF:                        # starts before the next expected byte
            behind = _MOD - ahead
            if behind >= len(data):
                return False                      # a retransmission of bytes already delivered
            data, ahead = data[behind:], 0
        if ahead:
            held = st.held.get(seq)
            if held is None or len(held) < len(data):
                st.held_bytes += len(data) - (len(held) if held else 0)
                st.held[seq] = data
            if st.gap_since is None:
                st.gap_since = ts
            return False
        st.buf += data
        st.next_seq = (st.next_seq + len(data)) % _MOD
        self._drain(st)
        return True

    def _drain(self, st: _Direction) -> None:
        """Append held segments that the in-order stream has now reached."""
        progress = True
        while progress and st.held:
            progress = False
            for seq in list(st.held):
                ahead = (seq - st.next_seq) % _MOD
                if ahead and ahead < _HALF:
                    continue
                data = st.held.pop(seq)
                st.held_bytes -= len(data)
                skip = _MOD - ahead if ahead else 0
                if skip < len(data):
                    st.buf += data[skip:]
                    st.next_seq = (st.next_seq + len(data) - skip) % _MOD
                    progress = True
        st.gap_since = st.gap_since if st.held else None

    def _skip_gap(self, st: _Direction, meta: PacketMeta, anomalies: list[Anomaly]) -> None:
        """Give up on the hole before the nearest held segment: drop the partial message, jump ahead."""
        nearest = min(st.held, key=lambda s: (s - st.next_seq) % _MOD)
        missing = (nearest - st.next_seq) % _MOD
        anomalies.append(Anomaly(meta.ts, meta.frame, "tcp", "tcp.gap",
                                 f"{missing} bytes never seen; skipped ahead, dropping {len(st.buf)} unframed bytes",
                                 meta.src, meta.dst))
        st.buf, st.next_seq, st.gap_since = b"", nearest, None
        self._drain(st)

    def _close(self, key: FlowKey, meta: PacketMeta, why: str, anomalies: list[Anomaly]) -> None:
        st = self._flows.pop(key, None)
        if st is not None:
            self._lost(st, meta, f"connection {why}", anomalies)

    @staticmethod
    def _lost(st: _Direction, meta: PacketMeta, why: str, anomalies: list[Anomaly]) -> None:
        if st.framer is not None:
            anomalies += st.framer.end(meta.ts, meta.frame, meta.src, meta.dst, why)
        if st.buf or st.held:
            anomalies.append(Anomaly(meta.ts, meta.frame, "tcp", "tcp.unframed_bytes",
                                     f"{why}: {len(st.buf)} unframed and {st.held_bytes} out-of-order bytes dropped",
                                     meta.src, meta.dst))


def _name(key: FlowKey) -> str:
    vlan, src, sport, dst, dport = key
    return f"{src}:{sport} -> {dst}:{dport}" + (f" vlan {'/'.join(map(str, vlan))}" if vlan else "")
