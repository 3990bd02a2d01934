"""RTP packets to RtpStream records, in the two execution paths.

StreamingRtp updates the incremental tracker packet by packet (live monitoring, --mode stream).
BatchRtp keeps header fields in columns and computes every stream at the end with the vectorised
twin; it also takes the column blocks that fastpath decodes without building per-packet objects.
A stream belongs to the call whose SDP announced its flow when its first packet arrived.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import pandas as pd

from dissectors import rtp
from voipwatch.fastpath import Candidates, decode_vlan, ipv4_text
from voipwatch.records import RtpPacket, RtpStream
from voipwatch.rtpstats import RtpStreamTracker, streams_from_table
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


class BatchRtp:
    """Collects RTP header fields as columns; streams are computed once, at the end of input."""

    def __init__(self, idle_s: float, max_streams: int, expectations: MediaExpectations | None = None,
                 heuristic: bool = True):
        self.idle_s = idle_s
        self.expectations = expectations
        self.heuristic = heuristic
        self.overflows = 0            # offline analysis keeps every stream: no cap to hit
        self._addr = _Interner()
        self._vlan = _Interner()
        self._call = _Interner()
        self._codec = _Interner()
        self._rows: dict[str, list] = {name: [] for name in _COLUMNS}
        self._blocks: list[tuple[Candidates, np.ndarray, np.ndarray]] = []

    def add(self, pkt: RtpPacket, call_id: str | None, clock_rate_hz: int | None, codec: str | None) -> None:
        m = pkt.pkt
        for name, value in (
                ("ts", m.ts), ("frame", m.frame), ("vlan", self._vlan.code(m.vlan)),
                ("src", self._addr.code(m.src)), ("sport", m.sport), ("dst", self._addr.code(m.dst)),
                ("dport", m.dport), ("ssrc", pkt.ssrc), ("seq", pkt.seq), ("rtp_ts", pkt.rtp_ts), ("pt", pkt.pt),
                ("marker", pkt.marker), ("payload_len", pkt.payload_len), ("negotiated", pkt.negotiated),
                ("clock_rate_hz", clock_rate_hz or 0), ("codec", self._codec.code(codec)),
                ("call", -1 if call_id is None else self._call.code(call_id))):
            self._rows[name].append(value)

    def add_candidates(self, cands: Candidates, frames: np.ndarray, ts: np.ndarray) -> None:
        """RTP candidates decoded by fastpath; classified once every SDP of the capture is known."""
        self._blocks.append((cands, frames, ts))

    def expire(self, now: float, emit: Emit) -> None:
        """Nothing is emitted before the end of input in batch mode."""

    def finish(self, emit: Emit) -> int:
        """Emit every stream; returns how many fastpath candidates turned out not to be RTP."""
        parts = [{name: np.asarray(values, dtype=_DTYPES[name]) for name, values in self._rows.items()}]
        self._rows = {name: [] for name in _COLUMNS}
        index = AnnouncementIndex(self.expectations.log if self.expectations else [])
        not_rtp = 0
        while self._blocks:                   # classified block by block, each freed as it goes
            columns, rejected = self._classify(self._blocks.pop(0), index)
            parts.append(columns)
            not_rtp += rejected
        streams: list[RtpStream] = []
        # Streams never cross a flow, so flows are spread over partitions that are computed one at
        # a time: peak memory is that of one partition, not of every RTP packet of the capture.
        for part in parts:
            part["partition"] = (part["src"] * 7919 + part["dst"] * 104729 + part["sport"].astype(np.int64) * 31
                                 + part["dport"]) % STREAM_PARTITIONS
        for k in range(STREAM_PARTITIONS):
            selected = [part["partition"] == k for part in parts]
            table = {name: np.concatenate([part[name][sel] for part, sel in zip(parts, selected)])
                     for name in _COLUMNS}
            if len(table["ts"]):
                table["codec"] = np.asarray(self._codec.values, dtype=object)[table["codec"]]
                table["call_id"] = np.asarray([None] + self._call.values, dtype=object)[table.pop("call") + 1]
                streams.extend(streams_from_table(table, self.idle_s, self._vlan.values))
        addresses = self._addr.values
        streams.sort(key=lambda st: st.first_frame)
        emit([dataclasses.replace(st, src=addresses[int(st.src)], dst=addresses[int(st.dst)]) for st in streams])
        return not_rtp

    def _classify(self, block: tuple[Candidates, np.ndarray, np.ndarray],
                  index: "AnnouncementIndex") -> tuple[dict[str, np.ndarray], int]:
        """One block of fastpath candidates as RTP columns: announced by SDP, or accepted by the heuristic."""
        cands, frames, ts = block
        endpoint = index.lookup((cands.src.astype(np.int64) << 16) | cands.sport,
                                (cands.dst.astype(np.int64) << 16) | cands.dport, frames)
        keep = endpoint >= 0
        if self.heuristic:
            keep |= cands.heuristic
        rows = np.flatnonzero(keep)
        endpoint, pt = endpoint[rows], cands.pt[rows]
        log = index.log
        # Clock rate, codec and call per (announcement, payload type): few distinct pairs.
        pair_codes, pairs = pd.factorize(endpoint * 128 + pt)
        rates, codecs, calls = [], [], []
        for pair in pairs.tolist():
            ep_index, p = divmod(pair, 128)
            ep = log[ep_index][1] if ep_index >= 0 else None
            rtpmap = ep.rtpmap if ep is not None else None
            rates.append(rtp.clock_rate(p, rtpmap) or 0)
            codecs.append(self._codec.code(rtp.codec_name(p, rtpmap)))
            calls.append(-1 if ep is None else self._call.code(ep.call_id))
        vlan_codes, vlans = pd.factorize(cands.vlan[rows])
        vlan_index = np.asarray([self._vlan.code(decode_vlan(int(v))) for v in vlans], dtype=np.int64)
        columns = {
            "ts": ts[rows], "frame": frames[rows], "vlan": vlan_index[vlan_codes],
            "src": self._address_codes(cands.src[rows]), "sport": cands.sport[rows],
            "dst": self._address_codes(cands.dst[rows]), "dport": cands.dport[rows],
            "ssrc": cands.ssrc[rows], "seq": cands.seq[rows], "rtp_ts": cands.rtp_ts[rows], "pt": pt,
            "marker": cands.marker[rows], "payload_len": cands.payload_len[rows], "negotiated": endpoint >= 0,
            "clock_rate_hz": np.asarray(rates, dtype=np.int64)[pair_codes],
            "codec": np.asarray(codecs, dtype=np.int64)[pair_codes],
            "call": np.asarray(calls, dtype=np.int64)[pair_codes]}
        return columns, len(frames) - len(rows)

    def _address_codes(self, addresses: np.ndarray) -> np.ndarray:
        codes, uniques = pd.factorize(addresses)
        return np.asarray([self._addr.code(a) for a in ipv4_text(uniques)], dtype=np.int64)[codes]


# Flow partitions the batch statistics are computed in, one at a time, to bound peak memory.
STREAM_PARTITIONS = 8

_DTYPES = {"ts": np.float64, "frame": np.int64, "vlan": np.int64, "src": np.int64, "sport": np.uint16,
           "dst": np.int64, "dport": np.uint16, "ssrc": np.uint32, "seq": np.uint16, "rtp_ts": np.uint32,
           "pt": np.uint8, "marker": bool, "payload_len": np.int32, "negotiated": bool,
           "clock_rate_hz": np.int64, "codec": np.int64, "call": np.int64}
_COLUMNS = tuple(_DTYPES)


FRAME_SPAN = 1 << 31


class AnnouncementIndex:
    """MediaExpectations.lookup, vectorised over the log of every SDP announcement of the capture."""

    def __init__(self, log: list):
        self.log = log
        entries = [(i, ep.setup_frame, key) for i, ((addr, port), ep) in enumerate(log)
                   if (key := _ipv4_key(addr, port)) is not None]
        index, setup, key = (np.asarray(col, dtype=np.int64) for col in zip(*entries)) if entries else \
            (np.zeros(0, np.int64),) * 3
        order = np.lexsort((setup, key))             # by endpoint, then by setup frame
        self.index, self.setup, key = index[order], setup[order], key[order]
        ukeys, self.first = np.unique(key, return_index=True)
        self.count = np.diff(np.r_[self.first, len(key)])
        self.known = pd.Index(ukeys)
        # (endpoint rank, setup frame) as one sortable number; frame numbers stay below 2^31.
        self.ranked = np.repeat(np.arange(len(ukeys), dtype=np.int64), self.count) * FRAME_SPAN + self.setup

    def lookup(self, src_keys: np.ndarray, dst_keys: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """Per packet, the log index of the announcement of the endpoint it is sent to (else the one it
        is sent from), the latest set up before its frame; -1 when none. Keys are IPv4 << 16 | port."""
        result = np.full(len(frames), -1, dtype=np.int64)
        if not len(self.known) or not len(frames):
            return result
        for keys in (src_keys, dst_keys):            # the destination wins: looked up last
            code = self.known.get_indexer(keys)
            rows = np.flatnonzero(code >= 0)
            if not len(rows):
                continue
            code = code[rows]
            pos = self.first[code] + self.count[code] - 1     # the endpoint's latest announcement
            multi = np.flatnonzero(self.count[code] > 1)
            if len(multi):
                target = code[multi].astype(np.int64) * FRAME_SPAN + frames[rows[multi]] - 1
                pos[multi] = np.searchsorted(self.ranked, target, side="right") - 1
            valid = (pos >= self.first[code]) & (self.setup[np.maximum(pos, 0)] < frames[rows])
            result[rows[valid]] = self.index[pos[valid]]
        return result


def _ipv4_key(addr: str, port: int) -> int | None:
    parts = addr.split(".")
    if len(parts) != 4:
        return None
    try:
        value = 0
        for part in parts:
            octet = int(part)
            if not 0 <= octet <= 255:
                return None
            value = (value << 8) | octet
    except ValueError:
        return None
    return (value << 16) | port
