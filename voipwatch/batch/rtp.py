"""The batch path's RTP collector: header fields kept as columns, every stream computed at the end.

BatchRtp stands where the streaming path has voipwatch.media.StreamingRtp (the Analyzer add()s the
RTP packets of its per-frame path), and also takes the RTP candidates that voipwatch.batch.driver
decodes column-wise without building per-packet objects. Candidates are classified once every SDP
announced before their frames is known (voipwatch.batch.announcements), and the streams are
computed with the vectorised twin of the RTP statistics (voipwatch.batch.stream_stats). A stream
belongs to the call whose SDP announced its flow when its first packet arrived.
"""
from __future__ import annotations

import ctypes
from collections import Counter
from typing import Callable

import numpy as np

from dissectors import rtp
from voipwatch.batch.announcements import AnnouncementIndex
from voipwatch.batch.candidates import Candidates, flow_of
from voipwatch.batch.grouping import factorize, stable_order
from voipwatch.batch.stream_stats import segment_rows, stream_records
from voipwatch.batch.workers import map_forked
from voipwatch.config import PipelineConfig
from voipwatch.media import Emit, FramesTaken
from voipwatch.records import RtpPacket, RtpStream
from voipwatch.rtpstats import analysis_clock_rate

Ask = Callable[[dict], tuple[list[RtpStream], int]]     # handover() -> (streams, candidates not RTP)
Tell = Callable[[tuple], None]                          # (announcements, frames done)


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


# Per-packet columns kept until the end of input (batch.driver candidates carry "heuristic" too, and the
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

    The batch driver (voipwatch.batch.driver) feeds it, per chunk of the capture:
      count_candidates(n, lo, hi)    the chunk's RTP candidates, counted as frames this collector took;
      add_candidates(cands, frames)  the candidates themselves, when this process keeps them;
      share(frames_done)             after the chunk: a delegate hears the SDP announcements so far.
    With analyze --jobs another process keeps the candidates (batch.driver.KeptCandidates, with its
    own copy of this collector, which hear()s, take_over()s and computes the streams()); delegate()
    names it, and finish() then asks it for the streams.
    """

    def __init__(self, config: PipelineConfig, jobs: int = 1):
        self.idle_s = config.rtp_idle_timeout_s
        self.heuristic = config.rtp_heuristic
        self.max_age_s = config.media_binding_max_s
        self.jobs = jobs              # processes the end-of-input statistics may use
        # the batch reader drops SPAN copies among its candidates as the per-frame path does (voipwatch.dedup)
        self.dedup_window_s = config.dedup_window_s if config.deduplicate else None
        self.overflows = 0            # offline analysis keeps every stream: no cap to hit
        # Every SDP announcement in order, appended by the Analyzer's MediaExpectations.
        self.announcements: list = []
        self._ask: Ask | None = None
        self._tell: Tell | None = None
        self._log_told = 0
        self._candidates = 0                           # frames taken as candidates (count_candidates)
        self._span: tuple[float, float] | None = None  # their earliest and latest capture time
        self._classified_blocks = 0                    # self._blocks[:n] are classified
        self._not_rtp = 0
        self._flows = _Interner()
        self._fast_flows: dict[tuple[int, ...], int] = {}          # batch.candidates flow key -> flow code
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

    def count_candidates(self, n: int, lo: float, hi: float) -> None:
        """n RTP candidates of capture times lo..hi that the batch driver took from the capture (kept
        here or by the delegate): frames read, classified at the end (finish())."""
        self._candidates += n
        self._span = (lo, hi) if self._span is None else (min(self._span[0], lo), max(self._span[1], hi))

    def add_candidates(self, cands: Candidates, frames: np.ndarray) -> None:
        """RTP candidates decoded by the batch driver; classified once every SDP of the capture is known."""
        flows = np.fromiter(map(self._fast_flow, map(tuple, cands.flows.tolist())), dtype=np.int32,
                            count=len(cands.flows))
        self._blocks.append({
            "ts": cands.ts, "frame": frames, "flows": flows, "local": cands.flow, "ssrc": cands.ssrc, "seq": cands.seq,
            "rtp_ts": cands.rtp_ts, "b1": cands.b1, "payload_len": cands.payload_len, "heuristic": cands.heuristic})

    def _fast_flow(self, key: tuple[int, ...]) -> int:
        code = self._fast_flows.get(key)
        if code is None:
            code = self._fast_flows[key] = self._flows.code(flow_of(key))
        return code

    def delegate(self, ask: Ask, tell: Tell) -> None:
        """Another process keeps the candidates (analyze --jobs): share() tells it the SDP announcements
        as they are made, and finish() asks it for the streams, given handover()."""
        self._ask, self._tell = ask, tell

    def expire(self, now: float, emit: Emit) -> None:
        """Nothing is emitted before the end of input in batch mode."""

    def finish(self, emit: Emit) -> FramesTaken:
        """Emit every stream; returns the frames taken as candidates, by class (rtp, or udp.other for
        those neither announced by SDP nor accepted by the heuristic)."""
        if self._ask is not None:
            streams, not_rtp = self._ask(self.handover())
            emit(streams)
        else:
            not_rtp = self.streams(emit)
        classes: Counter[str] = Counter()
        if self._candidates > not_rtp:
            classes["rtp"] = self._candidates - not_rtp
        if not_rtp:
            classes["udp.other"] = not_rtp
        lo, hi = self._span if self._span is not None else (None, None)
        return FramesTaken(self._candidates, classes, lo, hi)

    def streams(self, emit: Emit) -> int:
        """Emit every stream of the packets and candidates held here; returns how many candidates
        turned out not to be RTP."""
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
        """Tell the delegate the SDP announcements made so far: every one up to frame frames_done, so
        that it can classify the candidates of those frames already (hear())."""
        if self._tell is not None:
            self._tell((self.announcements[self._log_told:], frames_done))
            self._log_told = len(self.announcements)

    def hear(self, notes: list[tuple[list, int]]) -> None:
        """share()'s notes of the collector in the per-frame process: the announcements join this one's
        log, and the candidate blocks of the frames they cover are classified."""
        for announcements, _ in notes:
            self.announcements.extend(announcements)
        self._classify(until_frame=notes[-1][1])

    def handover(self) -> dict:
        """This collector's per-frame packets and the SDP announcements not yet shared, for take_over()."""
        return {"rows": self._rows, "flows": self._flows.values, "profiles": self._profiles.values,
                "log": self.announcements[self._log_told:]}

    def take_over(self, handover: dict) -> None:
        """Adopt another collector's handover(): its per-frame packets come after this one's candidate
        blocks (as its own would), and its announcements join the log."""
        self.announcements.extend(handover["log"])
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
        index = AnnouncementIndex(self.announcements, self.max_age_s)
        src_keys = index.keys([(src, sport) for _, src, sport, _, _ in self._flows.values])
        dst_keys = index.keys([(dst, dport) for _, _, _, dst, dport in self._flows.values])
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
