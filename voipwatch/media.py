"""RTP packets to RtpStream records, in the two execution paths.

StreamingRtp updates the incremental tracker packet by packet (live monitoring, --mode stream).
BatchRtp keeps header fields in columns and computes every stream at the end with the vectorised
twin; it also takes the column blocks that the batch driver decodes without building per-packet objects.
A stream belongs to the call whose SDP announced its flow when its first packet arrived.
"""
from __future__ import annotations

import ctypes
from ipaddress import IPv4Address
from typing import Callable

import numpy as np

from dissectors import rtp
from voipwatch.batch.driver import Candidates, decode_vlan
from voipwatch.batch.grouping import factorize, stable_order
from voipwatch.batch.workers import map_forked
from voipwatch.records import RtpPacket, RtpStream
from voipwatch.rtpstats import RtpStreamTracker, analysis_clock_rate, segment_rows, stream_records
from voipwatch.sessions import MediaExpectations

Emit = Callable[[list[RtpStream]], None]


class StreamingRtp:
    def __init__(self, idle_s: float, max_streams: int, expectations: MediaExpectations | None = None,
                 heuristic: bool = True):
        self.tracker = RtpStreamTracker(idle_s, max_streams)

    @property
    def overflows(self) -> int:
        return self.tracker.overflows

    def add(self, pkt: RtpPacket, call_id: str | None, clock_rate_hz: int | None, codec: str | None) -> None:
        self.tracker.add(pkt, clock_rate_hz, codec, call_id)

    def expire(self, now: float, emit: Emit) -> None:
        emit(self.tracker.expire(now))

    def finish(self, emit: Emit) -> int:
        emit(self.tracker.finish())
        return 0


class _Interner:
    """Values -> dense integer codes, so columns stay numeric."""

    def __init__(self):
        self.codes: dict = {}
        self.values: list = []

    def code(self, value) -> int:
        code = self.codes.get(value)
        if code is None:
            code = self.codes[value] = len(self.values)
            self.values.append(value)
        return code


# Per-packet columns kept until the end of input (fastpath candidates carry "heuristic" too, and the
# per-frame path's packets their "negotiated" and "profile"): the dtypes bound the memory per RTP packet.
_DTYPES = {"ts": np.float64, "frame": np.int64, "flow": np.int32, "ssrc": np.uint32, "seq": np.uint16,
           "rtp_ts": np.uint32, "b1": np.uint8, "payload_len": np.int32}
_COLUMN_DTYPES = {**_DTYPES, "negotiated": np.bool_, "profile": np.int32}
# Rows per unit of work of the end-of-input statistics; a unit holds whole streams, so one stream
# longer than this is a unit of its own. Peak memory is a few dozen bytes per row of a unit.
UNIT_ROWS = 1 << 17


class BatchRtp:
    """Collects RTP header fields as columns; streams are computed once, at the end of input.

    A flow is (vlan, src, sport, dst, dport); a profile is what a stream takes from its first packet
    and its packets' jitter clock: (analysis clock rate, codec, call_id).
    """

    def __init__(self, idle_s: float, max_streams: int, expectations: MediaExpectations | None = None,
                 heuristic: bool = True):
        self.idle_s = idle_s
        self.expectations = expectations
        self.heuristic = heuristic
        self.overflows = 0            # offline analysis keeps every stream: no cap to hit
        self.jobs = 1                 # processes the end-of-input statistics may use (set by fastpath.feed_file)
        # With analyze --jobs, the process that keeps the candidates (fastpath.KeptCandidates): given
        # handover(), it returns (streams, not_rtp) as finish() would; share() tells it the SDP log as
        # it grows.
        self.remote: Callable[[dict], tuple[list[RtpStream], int]] | None = None
        self.tell: Callable[[tuple], None] | None = None
        self._log_told = 0
        self._classified_blocks = 0                    # self._blocks[:n] are classified
        self._not_rtp = 0
        self._flows = _Interner()
        self._fast_flows: dict[tuple[int, int, int], int] = {}     # fastpath flow key -> flow code
        self._profiles = _Interner()
        self._rows: dict[str, list] = {name: [] for name in _COLUMN_DTYPES}
        self._blocks: list[dict[str, np.ndarray]] = []

    def add(self, pkt: RtpPacket, call_id: str | None, clock_rate_hz: int | None, codec: str | None) -> None:
        m = pkt.pkt
        profile = (analysis_clock_rate(pkt.pt, clock_rate_hz, codec) or 0, codec, call_id)
        for name, value in (
                ("ts", m.ts), ("frame", m.frame), ("flow", self._flows.code((m.vlan, m.src, m.sport, m.dst, m.dport))),
                ("ssrc", pkt.ssrc), ("seq", pkt.seq), ("rtp_ts", pkt.rtp_ts), ("b1", pkt.pt | (pkt.marker << 7)),
                ("payload_len", pkt.payload_len), ("negotiated", pkt.negotiated),
                ("profile", self._profiles.code(profile))):
            self._rows[name].append(value)

    def add_candidates(self, cands: Candidates, frames: np.ndarray) -> None:
        """RTP candidates decoded by the batch driver; classified once every SDP of the capture is known."""
        flows = np.fromiter(map(self._fast_flow, map(tuple, cands.flows.tolist())), dtype=np.int32,
                            count=len(cands.flows))
        self._blocks.append({
            "ts": cands.ts, "frame": frames, "flows": flows, "local": cands.flow, "ssrc": cands.ssrc, "seq": cands.seq,
            "rtp_ts": cands.rtp_ts, "b1": cands.b1, "payload_len": cands.payload_len, "heuristic": cands.heuristic})

    def _fast_flow(self, key: tuple[int, int, int]) -> int:
        code = self._fast_flows.get(key)
        if code is None:
            vlan, addresses, ports = key
            code = self._fast_flows[key] = self._flows.code((
                decode_vlan(vlan), str(IPv4Address(addresses >> 32)), ports >> 16,
                str(IPv4Address(addresses & 0xFFFFFFFF)), ports & 0xFFFF))
        return code

    def expire(self, now: float, emit: Emit) -> None:
        """Nothing is emitted before the end of input in batch mode."""

    def finish(self, emit: Emit) -> int:
        """Emit every stream; returns how many batch-driver candidates turned out not to be RTP."""
        if self.remote is not None:
            streams, not_rtp = self.remote(self.handover())
            emit(streams)
            return not_rtp
        per_frame = len(self._rows["ts"])
        columns, not_rtp = self._classified()
        streams: list[RtpStream] = []
        if len(columns["ts"]):
            # Streams are (flow, ssrc): rows sorted by stream, then capture order, cut into units of
            # whole streams that are computed one at a time (in `jobs` processes). The candidate blocks
            # are in capture order and each is grouped by stream in capture order, so a stable sort by
            # stream keeps capture order within a stream; the per-frame path's packets, after them, are
            # put in place by frame in the streams that have any.
            stream = factorize((columns["flow"].astype(np.int64) << 32) | columns["ssrc"])[0].astype(np.int32)
            order = stable_order(stream).astype(np.int32)
            if per_frame:
                mixed = np.isin(stream[order], stream[len(stream) - per_frame:])
                rows = order[mixed]
                order[mixed] = rows[np.lexsort((columns["frame"][rows], stream[rows]))]
            stream = stream[order]
            _release_free_memory()
            clock = np.asarray([p[0] for p in self._profiles.values], dtype=np.int64)
            work = [(columns, order, stream, clock, self.idle_s, lo, hi) for lo, hi in _units(stream, UNIT_ROWS)]
            for part in map_forked(_unit_segments, work, self.jobs):
                streams.extend(self._records(part))
        streams.sort(key=lambda st: st.first_frame)
        emit(streams)
        return not_rtp

    def share(self, frames_done: int) -> None:
        """Tell the remote collector the SDP announcements made so far: every one up to frame
        frames_done, so that it can classify the candidates of those frames already (hear())."""
        if self.tell is not None and self.expectations is not None:
            log = self.expectations.log
            self.tell((log[self._log_told:], frames_done))
            self._log_told = len(log)

    def hear(self, notes: list[tuple[list, int]]) -> None:
        """share()'s notes of the collector in the per-frame process: the announcements join this one's
        log, and the candidate blocks of the frames they cover are classified."""
        for announcements, _ in notes:
            self.expectations.log.extend(announcements)
        self._classify(until_frame=notes[-1][1])

    def handover(self) -> dict:
        """This collector's per-frame packets and the SDP announcements not yet shared, for take_over()."""
        log = self.expectations.log if self.expectations is not None else []
        return {"rows": self._rows, "flows": self._flows.values, "profiles": self._profiles.values,
                "log": log[self._log_told:]}

    def take_over(self, handover: dict) -> None:
        """Adopt another collector's handover(): its per-frame packets come after this one's candidate
        blocks (as its own would), and its announcements join the log."""
        self.expectations.log.extend(handover["log"])
        flows = [self._flows.code(flow) for flow in handover["flows"]]
        profiles = [self._profiles.code(profile) for profile in handover["profiles"]]
        rows = handover["rows"]
        rows["flow"] = [flows[code] for code in rows["flow"]]
        rows["profile"] = [profiles[code] for code in rows["profile"]]
        for name, values in rows.items():
            self._rows[name].extend(values)

    def _classify(self, until_frame: float) -> None:
        """Classify the candidate blocks not yet classified whose frames all come no later than
        until_frame (every announcement set up before them is in the log by then): keep the RTP
        packets, with whether SDP announced them and their profile; count the others."""
        ready = self._classified_blocks
        while ready < len(self._blocks) and self._blocks[ready]["frame"].max(initial=0) <= until_frame:
            ready += 1
        if ready == self._classified_blocks:
            return
        index = AnnouncementIndex(*((self.expectations.log, self.expectations.max_age_s)
                                    if self.expectations is not None else ([], 0.0)))
        src_keys = np.asarray([_ipv4_key(src, sport) for _, src, sport, _, _ in self._flows.values], dtype=np.int64)
        dst_keys = np.asarray([_ipv4_key(dst, dport) for _, _, _, dst, dport in self._flows.values], dtype=np.int64)
        profiles = np.full((len(index.log) + 1) * 128, -1, dtype=np.int32)
        for block in self._blocks[self._classified_blocks:ready]:    # block by block: small temporaries
            flows, local = block.pop("flows"), block.pop("local")
            endpoint = index.lookup_block(src_keys, dst_keys, flows, local, block["frame"], block["ts"])
            block["flow"] = flows[local]
            keep = endpoint >= 0
            heuristic = block.pop("heuristic")
            if self.heuristic:
                keep |= heuristic
            if not keep.all():
                rows = np.flatnonzero(keep)
                self._not_rtp += len(keep) - len(rows)
                for name, column in block.items():
                    block[name] = column[rows]
                endpoint = endpoint[rows]
            block["negotiated"] = endpoint >= 0
            block["profile"] = self._announced_profiles(endpoint, block["b1"] & 0x7F, index.log, profiles)
        self._classified_blocks = ready

    def _classified(self) -> tuple[dict[str, np.ndarray], int]:
        """Every RTP packet as columns (those of _DTYPES, negotiated and profile): the candidate blocks', then
        the per-frame path's packets; and how many batch-driver candidates are not RTP: neither announced by
        SDP nor accepted by the heuristic."""
        self._classify(until_frame=float("inf"))
        blocks, self._blocks, self._classified_blocks = self._blocks, [], 0
        names = (*_DTYPES, "negotiated", "profile")
        columns = {}
        for name in names:                            # one column at a time, freeing the blocks' arrays
            columns[name] = np.concatenate([b.pop(name) for b in blocks] or [np.zeros(0, _COLUMN_DTYPES[name])])
            _release_free_memory()
        if self._rows["ts"]:                          # packets of the per-frame path, after the candidates
            rows, self._rows = self._rows, {name: [] for name in self._rows}
            for name in names:
                columns[name] = np.concatenate([columns[name], np.asarray(rows[name], dtype=_COLUMN_DTYPES[name])])
        not_rtp, self._not_rtp = self._not_rtp, 0
        return columns, not_rtp

    def _announced_profiles(self, endpoint: np.ndarray, pt: np.ndarray, log: list, table: np.ndarray) -> np.ndarray:
        """Profile code per packet from its announcement (-1: none) and payload type. `table` holds the
        code per (announcement + 1) * 128 + payload type, -1 until first needed."""
        pair = (endpoint + 1) * 128 + pt
        for new in np.unique(pair[table[pair] < 0]).tolist():
            ep_index, p = divmod(new, 128)
            ep = log[ep_index - 1][1] if ep_index else None
            rtpmap = ep.rtpmap if ep is not None else None
            codec = rtp.codec_name(p, rtpmap)
            table[new] = self._profiles.code((analysis_clock_rate(p, rtp.clock_rate(p, rtpmap), codec) or 0, codec,
                                              None if ep is None else ep.call_id))
        return table[pair]

    def _records(self, part: dict) -> list[RtpStream]:
        """RtpStream records of one unit of work."""
        flows = [self._flows.values[f] for f in part["flow"].tolist()]
        profiles = [self._profiles.values[p] for p in part["profile"].tolist()]
        return stream_records(
            part["segments"], src=[f[1] for f in flows], sport=[f[2] for f in flows], dst=[f[3] for f in flows],
            dport=[f[4] for f in flows], vlan=[f[0] for f in flows], ssrc=part["ssrc"].tolist(),
            payload_type=part["pt"].tolist(), codec=[p[1] for p in profiles], call_id=[p[2] for p in profiles],
            first_ts=part["first_ts"].tolist(), last_ts=part["last_ts"].tolist(),
            first_frame=part["first_frame"].tolist())


def _release_free_memory() -> None:
    """Give the heap pages freed by now back to the system (glibc's malloc_trim(3); elsewhere nothing).

    glibc keeps freed blocks below its (adaptive) mmap threshold in its heap, where live allocations
    around them keep their pages resident until trimmed: the candidate blocks, freed as their columns
    are joined, and the temporaries of sorting the rows by stream.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _units(stream: np.ndarray, size: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges of about `size` rows sorted by stream that never split a stream."""
    n = len(stream)
    starts = np.flatnonzero(stream[1:] != stream[:-1]) + 1
    at = np.searchsorted(starts, np.arange(size, n, size))
    cuts = np.unique(np.r_[0, starts[at[at < len(starts)]], n]).tolist()
    return list(zip(cuts[:-1], cuts[1:]))


def _unit_segments(work: tuple) -> dict:
    """Segment statistics of sorted rows lo..hi, and what each segment's record takes from its first row."""
    columns, order, stream, clock, idle_s, lo, hi = work
    rows = order[lo:hi]
    b1 = columns["b1"][rows]
    profile = columns["profile"][rows]
    ts = columns["ts"][rows]
    segments = segment_rows(
        stream=stream[lo:hi], ts=ts, seq=columns["seq"][rows], rtp_ts=columns["rtp_ts"][rows], pt=b1 & 0x7F,
        marker=b1 >= 0x80, clock=clock[profile], payload_len=columns["payload_len"][rows],
        negotiated=columns["negotiated"][rows], idle_s=idle_s)
    first = rows[segments.first]
    return {"segments": segments, "flow": columns["flow"][first], "ssrc": columns["ssrc"][first],
            "pt": b1[segments.first] & 0x7F, "profile": profile[segments.first], "first_ts": ts[segments.first],
            "last_ts": ts[segments.last], "first_frame": columns["frame"][first]}


FRAME_SPAN = 1 << 31


class AnnouncementIndex:
    """MediaExpectations.lookup, vectorised over the log of every SDP announcement of the capture."""

    def __init__(self, log: list, max_age_s: float):
        self.log = log
        self.max_age_s = max_age_s
        entries = [(i, ep.setup_frame, key) for i, ((addr, port), ep) in enumerate(log)
                   if (key := _ipv4_key(addr, port)) >= 0]
        index, setup, key = (np.asarray(col, dtype=np.int64) for col in zip(*entries)) if entries else \
            (np.zeros(0, np.int64),) * 3
        order = np.lexsort((setup, key))             # by endpoint, then by setup frame
        self.index, self.setup, key = index[order], setup[order], key[order]
        self.setup_ts = np.asarray([log[i][1].setup_ts for i in self.index.tolist()], dtype=np.float64)
        self.known, self.first = np.unique(key, return_index=True)     # sorted endpoint keys
        self.count = np.diff(np.r_[self.first, len(key)])
        # (endpoint rank, setup frame) as one sortable number; frame numbers stay below 2^31.
        self.ranked = np.repeat(np.arange(len(self.known), dtype=np.int64), self.count) * FRAME_SPAN + self.setup

    def lookup(self, src_keys: np.ndarray, dst_keys: np.ndarray, flow: np.ndarray, frames: np.ndarray,
               ts: np.ndarray) -> np.ndarray:
        """Per packet, the log index of the announcement of the endpoint it is sent to (else the one it
        is sent from): the latest set up before its frame, if no more than max_age_s before its time;
        -1 when none. Keys are IPv4 << 16 | port per flow (-1: not IPv4); flow, frames, ts per packet."""
        result = np.full(len(frames), -1, dtype=np.int64)
        for keys in (src_keys, dst_keys):            # the destination wins: looked up last
            rows, code, pos = self._latest(keys[flow], frames)
            valid = (pos >= self.first[code]) & (ts[rows] - self.setup_ts[np.maximum(pos, 0)] <= self.max_age_s)
            result[rows[valid]] = self.index[pos[valid]]
        return result

    def lookup_block(self, src_keys: np.ndarray, dst_keys: np.ndarray, flows: np.ndarray, local: np.ndarray,
                     frames: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """lookup() for a block of packets whose flows are flows[local]: once per flow, at the block's
        first frame and time, which holds for all its packets unless an announcement of one of the
        flow's endpoints is set up, or comes of age, within the block (those flows' packets are looked
        up one by one)."""
        first, last, t0, t1 = int(frames.min()), int(frames.max()), float(ts.min()), float(ts.max())
        result = self.lookup(src_keys, dst_keys, flows, np.full(len(flows), first), np.full(len(flows), t0))[local]
        changing = np.zeros(len(flows), dtype=bool)
        for keys in (src_keys[flows], dst_keys[flows]):
            known, code, pos = self._latest(keys, np.full(len(flows), first))
            announced = np.searchsorted(self.ranked, code * FRAME_SPAN + last) > pos + 1
            # Whether the packets' age test can differ within the block (a second's margin for rounding).
            expiry = self.setup_ts[np.maximum(pos, 0)] + self.max_age_s
            ageing = (pos >= self.first[code]) & (expiry >= t0 - 1) & (expiry <= t1 + 1)
            changing[known] |= announced | ageing
        rows = np.flatnonzero(changing[local])
        if len(rows):
            result[rows] = self.lookup(src_keys, dst_keys, flows[local[rows]], frames[rows], ts[rows])
        return result

    def _latest(self, keys: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the packets whose endpoint key was announced (rows), its code and the position of its
        latest announcement set up before the packet's frame (below first[code] when none)."""
        code = np.minimum(np.searchsorted(self.known, keys), max(len(self.known) - 1, 0))
        rows = np.flatnonzero(self.known[code] == keys) if len(self.known) else np.zeros(0, dtype=np.int64)
        code = code[rows].astype(np.int64)
        pos = np.searchsorted(self.ranked, code * FRAME_SPAN + frames[rows] - 1, side="right") - 1
        return rows, code, pos


def _ipv4_key(addr: str, port: int) -> int:
    """IPv4 address << 16 | port; -1 when `addr` is not a dotted-quad IPv4 address."""
    parts = addr.split(".")
    if len(parts) != 4:
        return -1
    try:
        value = 0
        for part in parts:
            octet = int(part)
            if not 0 <= octet <= 255:
                return -1
            value = (value << 8) | octet
    except ValueError:
        return -1
    return (value << 16) | port
