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
        columns = {name: np.asarray(values) for name, values in self._rows.items()}
        not_rtp = 0
        if self._blocks:
            fast, not_rtp = self._classify_blocks()
            columns = {name: np.concatenate([columns[name].astype(fast[name].dtype), fast[name]])
                       for name in _COLUMNS}
        if len(columns["ts"]) == 0:
            return not_rtp
        streams = streams_from_table(
            {**columns, "codec": np.asarray(self._codec.values, dtype=object)[columns["codec"]],
             "call_id": columns["call"]},
            self.idle_s, self._vlan.values)
        addresses, calls = self._addr.values, self._call.values
        emit([dataclasses.replace(s, src=addresses[int(s.src)], dst=addresses[int(s.dst)],
                                  call_id=None if s.call_id is None else calls[int(s.call_id)])
              for s in streams])
        return not_rtp

    def _classify_blocks(self) -> tuple[dict[str, np.ndarray], int]:
        cands = Candidates(*(np.concatenate([getattr(b[0], f.name) for b in self._blocks])
                             for f in dataclasses.fields(Candidates)))
        frames = np.concatenate([b[1] for b in self._blocks])
        ts = np.concatenate([b[2] for b in self._blocks])
        endpoint = _announced_endpoints(self.expectations.log if self.expectations else [], cands, frames)
        negotiated = endpoint >= 0
        keep = negotiated | (cands.heuristic if self.heuristic else False)
        not_rtp = int(len(keep) - keep.sum())
        idx = np.flatnonzero(keep)
        endpoint, negotiated = endpoint[idx], negotiated[idx]
        pt = cands.pt[idx]
        log = self.expectations.log if self.expectations else []
        # Clock rate, codec and call per (announcement, payload type): few distinct pairs.
        pair_keys = endpoint * 128 + pt
        uniq, inverse = np.unique(pair_keys, return_inverse=True)
        rates, codecs, calls = [], [], []
        for key in uniq.tolist():
            ep_index, p = divmod(key, 128)
            ep = log[ep_index][1] if ep_index >= 0 else None
            rtpmap = ep.rtpmap if ep is not None else None
            rates.append(rtp.clock_rate(p, rtpmap) or 0)
            codecs.append(self._codec.code(rtp.codec_name(p, rtpmap)))
            calls.append(-1 if ep is None else self._call.code(ep.call_id))
        vlan_codes = np.array([self._vlan.code(decode_vlan(int(v))) for v in np.unique(cands.vlan[idx])])
        vlan_index = vlan_codes[np.searchsorted(np.unique(cands.vlan[idx]), cands.vlan[idx])] \
            if len(idx) else np.zeros(0, np.int64)
        src_codes = self._address_codes(cands.src[idx])
        dst_codes = self._address_codes(cands.dst[idx])
        return {
            "ts": ts[idx], "frame": frames[idx], "vlan": vlan_index, "src": src_codes,
            "sport": cands.sport[idx], "dst": dst_codes, "dport": cands.dport[idx], "ssrc": cands.ssrc[idx],
            "seq": cands.seq[idx], "rtp_ts": cands.rtp_ts[idx], "pt": pt, "marker": cands.marker[idx],
            "payload_len": cands.payload_len[idx], "negotiated": negotiated,
            "clock_rate_hz": np.asarray(rates, dtype=np.int64)[inverse] if len(idx) else np.zeros(0, np.int64),
            "codec": np.asarray(codecs, dtype=np.int64)[inverse] if len(idx) else np.zeros(0, np.int64),
            "call": np.asarray(calls, dtype=np.int64)[inverse] if len(idx) else np.zeros(0, np.int64),
        }, not_rtp

    def _address_codes(self, addresses: np.ndarray) -> np.ndarray:
        uniq, inverse = np.unique(addresses, return_inverse=True)
        codes = np.asarray([self._addr.code(a) for a in ipv4_text(uniq)], dtype=np.int64)
        return codes[inverse] if len(addresses) else np.zeros(0, np.int64)


_COLUMNS = ("ts", "frame", "vlan", "src", "sport", "dst", "dport", "ssrc", "seq", "rtp_ts", "pt", "marker",
            "payload_len", "negotiated", "clock_rate_hz", "codec", "call")


def _announced_endpoints(log, cands: Candidates, frames: np.ndarray) -> np.ndarray:
    """Per candidate, the index in `log` of the SDP announcement its packet is sent to (else from),
    the latest one set up before its frame; -1 when none (MediaExpectations.lookup, vectorised)."""
    result = np.full(len(frames), -1, dtype=np.int64)
    entries = [(i, ep.setup_frame, _ipv4_key(addr, port)) for i, ((addr, port), ep) in enumerate(log)]
    entries = [e for e in entries if e[2] is not None]
    if not entries or not len(frames):
        return result
    index, setup, key = (np.asarray(col, dtype=np.int64) for col in zip(*entries))
    ukeys, key_rank = np.unique(key, return_inverse=True)
    span = int(max(frames.max(), setup.max())) + 2
    composite = key_rank * span + setup
    order = np.argsort(composite, kind="stable")
    composite, index = composite[order], index[order]
    for addr, port in ((cands.src, cands.sport), (cands.dst, cands.dport)):   # dst wins: looked up last
        ckey = (addr.astype(np.int64) << 16) | port
        pos = np.searchsorted(ukeys, ckey)
        pos = np.minimum(pos, len(ukeys) - 1)
        known = ukeys[pos] == ckey
        target = pos * span + frames - 1            # latest announcement with setup_frame < frame
        hit = np.searchsorted(composite, target, side="right") - 1
        valid = known & (hit >= 0)
        valid[valid] &= composite[hit[valid]] // span == pos[valid]
        result = np.where(valid, index[np.maximum(hit, 0)], result)
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
