"""RTP audio payloads to PCM (ITU-T G.711, G.722) and WAV files, time-aligned on RTP timestamps.

Samples are signed 16-bit PCM (numpy int16). Levels are in dBFS relative to a full-scale sine (peak
32768), as AES17 defines it, so a sine of peak 32768 * 10**(-6/20) reads -6 dBFS.
"""
from __future__ import annotations

import os
import wave
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

Decoder = Callable[[bytes], np.ndarray]

MAX_DURATION_S = 4 * 3600      # longest reconstruction written: bounds memory; a longer stream is cut (stated)
MAX_CLOCK_DEVIATION_S = 10.0   # how far a packet's RTP time may stray from its arrival time, see reconstruct
MAX_LISTED = 20                # sequence numbers listed of the packets placed by arrival time


# ------------------------------------------------------------------------------------------ G.711

def _ulaw_table() -> np.ndarray:
    # G.711 Table 2 (µ-law): the code word is sent with every bit inverted; sign(1) segment(3)
    # step(4); on the 16-bit scale the segment origin is biased by 0x84 (33 on the 14-bit scale).
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    segment, step = (u >> 4) & 7, u & 0x0F
    magnitude = (((step << 3) + 0x84) << segment) - 0x84
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> np.ndarray:
    # G.711 Table 1 (A-law): the even bits are inverted (XOR 0x55); sign bit 1 means positive;
    # segments 0 and 1 share one step size; outputs are interval midpoints (×8 from 13 bits).
    a = np.arange(256, dtype=np.int32) ^ 0x55
    segment, step = (a >> 4) & 7, a & 0x0F
    magnitude = np.where(segment == 0, (step << 4) + 8,
                         ((step << 4) + 0x108) << np.maximum(segment - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


_ULAW = _ulaw_table()
_ALAW = _alaw_table()


def decode_ulaw(data: bytes) -> np.ndarray:
    """G.711 µ-law (RTP PCMU, RFC 3551 §4.5.14): one sample per byte at 8000 Hz."""
    return _ULAW[np.frombuffer(data, dtype=np.uint8)]


def decode_alaw(data: bytes) -> np.ndarray:
    """G.711 A-law (RTP PCMA, RFC 3551 §4.5.14): one sample per byte at 8000 Hz."""
    return _ALAW[np.frombuffer(data, dtype=np.uint8)]


# ------------------------------------------------------------------------------------------ G.722
# ITU-T G.722, 64 kbit/s mode 1: each octet is IH(2 bits) | IL(6 bits), one 8 kHz sample of the
# lower (0-4 kHz) and of the upper (4-8 kHz) sub-band ADPCM; the receive QMF turns the pair into two
# 16 kHz output samples. Block names (INVQAL, LOGSCL, ...) and tables are the recommendation's,
# the quantizer tables indexed directly by the code word bits.
_QM2 = (-7408, -1616, 7408, 1616)                     # upper-band 2-bit inverse quantizer
_QM4 = (0, -20456, -12896, -8968, -6288, -4240, -2584, -1200,
        20456, 12896, 8968, 6288, 4240, 2584, 1200, 0)  # lower-band 4-bit (IL >> 2) inverse quantizer
_QM6 = (-136, -136, -136, -136, -24808, -21904, -19008, -16704,
        -14984, -13512, -12280, -11192, -10232, -9360, -8576, -7856,
        -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576,
        -3168, -2776, -2400, -2032, -1688, -1360, -1040, -728,
        24808, 21904, 19008, 16704, 14984, 13512, 12280, 11192,
        10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456,
        4944, 4464, 4008, 3576, 3168, 2776, 2400, 2032,
        1688, 1360, 1040, 728, 432, 136, -432, -136)  # lower-band 6-bit inverse quantizer
_RL42 = (0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0)  # IL >> 2 -> log scale factor multiplier index
_WL = (-60, -30, 58, 172, 334, 538, 1198, 3042)           # lower-band log scale factor multipliers
_RH2 = (2, 1, 2, 1)
_WH = (0, -214, 798)                                      # upper-band log scale factor multipliers
_ILB = (2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714,
        2774, 2834, 2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676,
        3756, 3838, 3922, 4008)                           # antilog table of the scale factor
# QMF coefficients h0..h11 (h12..h23 mirror them); the 24 taps sum to 8192.
_QMF = np.array((3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11), dtype=np.int64)


def _sat16(x: int) -> int:
    return -32768 if x < -32768 else 32767 if x > 32767 else x


class _Band:
    """One sub-band's adaptive predictor (G.722 block 4): 2 poles, 6 zeros, in 16-bit fixed point."""

    __slots__ = ("s", "sz", "r1", "r2", "p1", "p2", "a1", "a2", "d", "b", "nb", "det")

    def __init__(self, det: int):
        self.s = self.sz = self.r1 = self.r2 = self.p1 = self.p2 = self.a1 = self.a2 = self.nb = 0
        self.det = det                 # quantizer scale factor at reset: 32 lower band, 8 upper band
        self.d = [0] * 6               # 2·d(n-1) .. 2·d(n-6), saturated, as FILTEZ weights them
        self.b = [0] * 6               # zero-predictor coefficients b1 .. b6

    def scale(self, nb: int, shift: int) -> None:
        # Blocks 3L/3H SCALEL/SCALEH: det = antilog of the log scale factor nb.
        self.nb = nb
        wd = shift - (nb >> 11)
        ilb = _ILB[(nb >> 6) & 31]
        self.det = (ilb << -wd if wd < 0 else ilb >> wd) << 2

    def update(self, d: int) -> None:
        """Block 4 with the quantized difference d: RECONS, PARREC, UPPOL2, UPPOL1, UPZERO, DELAYA,
        FILTEP, FILTEZ, PREDIC. Signs are taken as x >> 15 on 16-bit values, as in the recommendation."""
        r0 = _sat16(self.s + d)
        p0 = _sat16(self.sz + d)
        a1, p1 = self.a1, self.p1
        sg0, same1 = p0 >> 15, (p0 >> 15) == (p1 >> 15)
        # UPPOL2: the second pole, limited to |a2| <= 12288 (0.375).
        wd = _sat16(a1 << 2)
        wd = min(-wd if same1 else wd, 32767)
        a2 = (128 if sg0 == self.p2 >> 15 else -128) + (wd >> 7) + ((self.a2 * 32512) >> 15)
        a2 = max(-12288, min(12288, a2))
        # UPPOL1: the first pole, limited to |a1| <= 15360 - a2 for stability.
        limit = _sat16(15360 - a2)
        a1 = max(-limit, min(limit, _sat16((192 if same1 else -192) + ((a1 * 32640) >> 15))))
        # UPZERO: sign-sign update with leakage 32640/32768 (the sum stays within 16 bits, so the
        # reference's saturation is a no-op here), then the difference delay line.
        step, sgd = (128 if d else 0), d >> 15
        self.b = b = [(step if di >> 15 == sgd else -step) + ((bi * 32640) >> 15)
                      for di, bi in zip(self.d, self.b)]
        self.d = dl = [_sat16(d + d)] + self.d[:5]
        # DELAYA, then FILTEP (poles), FILTEZ (zeros) and PREDIC for the next sample.
        r2, self.r1, self.r2 = self.r1, r0, self.r1
        self.p1, self.p2, self.a1, self.a2 = p0, p1, a1, a2
        sp = _sat16(((a1 * _sat16(r0 + r0)) >> 15) + ((a2 * _sat16(r2 + r2)) >> 15))
        self.sz = _sat16(sum([(bi * di) >> 15 for bi, di in zip(b, dl)]))
        self.s = _sat16(sp + self.sz)


def decode_g722(data: bytes) -> np.ndarray:
    """G.722 64 kbit/s (mode 1) to 16 kHz PCM: two output samples per octet, decoder reset at start.

    The sub-band ADPCM follows the recommendation's fixed-point blocks; the receive QMF is applied
    as one vectorised FIR. Verification: bit-exact, checked offline, with the spandsp fixed-point
    decoder (WebRTC's copy) on a real capture and on random octets, and pinned in the tests by an
    output digest; it has not been run against the ITU-T G.722 test vectors (not available here).
    """
    low, high = _Band(32), _Band(8)
    rlow = np.empty(len(data), dtype=np.int64)
    rhigh = np.empty(len(data), dtype=np.int64)
    for j, code in enumerate(data):
        il, ih = code & 0x3F, code >> 6
        # Block 5L INVQBL + RECONS + LIMIT: the 6-bit quantizer reconstructs the output signal.
        rlow[j] = max(-16384, min(16383, low.s + ((low.det * _QM6[il]) >> 15)))
        # Block 2L INVQAL: the predictor adapts on the 4 most significant bits only, so that modes 2
        # and 3 (IL's low bits taken for data) keep encoder and decoder in step.
        il4 = il >> 2
        dlow = (low.det * _QM4[il4]) >> 15
        low.scale(max(0, min(18432, ((low.nb * 127) >> 7) + _WL[_RL42[il4]])), 8)
        low.update(dlow)
        # Blocks 2H, 5H, 6H, 3H and 4 for the upper band.
        dhigh = (high.det * _QM2[ih]) >> 15
        rhigh[j] = max(-16384, min(16383, high.s + dhigh))
        high.scale(max(0, min(22528, ((high.nb * 127) >> 7) + _WH[_RH2[ih]])), 10)
        high.update(dhigh)
    # Receive QMF: the first sample of each output pair is a 12-tap FIR of rL - rH, the second one
    # of rL + rH with the taps reversed; >> 11 removes the filters' 4096 gain and restores the
    # 1-bit input scaling.
    n = len(data)
    xout1 = np.convolve(rlow - rhigh, _QMF)[:n] >> 11
    xout2 = np.convolve(rlow + rhigh, _QMF[::-1])[:n] >> 11
    out = np.empty(2 * n, dtype=np.int16)
    out[0::2] = np.clip(xout1, -32768, 32767)
    out[1::2] = np.clip(xout2, -32768, 32767)
    return out


# Encoding name as in an SDP rtpmap, upper-cased -> (output sample rate Hz, decoder).
DECODERS: dict[str, tuple[int, Decoder]] = {
    "PCMU": (8000, decode_ulaw),
    "PCMA": (8000, decode_alaw),
    "G722": (16000, decode_g722),
}


# -------------------------------------------------------------------------------- reconstruction

def _unwrap(value: int, previous: int | None, modulus: int) -> int:
    """Extend a wrapping counter to the value nearest the previous extended one (RFC 3550 §A.1)."""
    if previous is None:
        return value
    delta = (value - previous + modulus // 2) % modulus - modulus // 2
    return previous + delta


@dataclass
class Reconstruction:
    """One direction as PCM, and what the RTP timestamps did not allow to place as they said."""
    pcm: np.ndarray
    placed_by_arrival: int = 0                       # packets whose RTP time strayed from their arrival
    placed_by_arrival_seq: list[int] = field(default_factory=list)   # their sequence numbers, the first MAX_LISTED
    cut_s: float = 0.0                               # seconds beyond MAX_DURATION_S not written

    def notes(self) -> dict:
        """What summary.json states about the placement."""
        return {"max_clock_deviation_s": MAX_CLOCK_DEVIATION_S, "packets_placed_by_arrival": self.placed_by_arrival,
                "placed_by_arrival_seq": self.placed_by_arrival_seq, "max_duration_s": MAX_DURATION_S,
                "cut_s": round(self.cut_s, 3)}


def reconstruct(packets: list[tuple[float, int, int, bytes]], clock_rate: int, sample_rate: int,
                decoder: Decoder) -> Reconstruction:
    """One direction of a call as PCM, each packet placed at its RTP timestamp; gaps are silence.

    `packets` are (arrival_ts, seq, rtp_timestamp, payload) of one SSRC and one payload type, in
    any order. Sequence numbers (16-bit) are unwrapped in arrival order, a repeated one is a
    duplicate and dropped; timestamps (32-bit) are unwrapped against the first packet's, so that one
    wild timestamp cannot shift the later ones by 2^32 (unambiguous for 2^31 units, 74 h at 8000 Hz). Payloads are decoded in sequence order as
    one bitstream, as a receiver's decoder would run (ADPCM state carries across packets), so the
    decoder must emit a fixed number of samples per octet (G.711: 1, G.722: 2). Timestamps count
    `clock_rate` units per second and samples are `sample_rate` per second: for G.722 the RTP clock
    is 8000 Hz though the codec samples at 16000 Hz (RFC 3551 §4.5.2).

    A timestamp is trusted while it keeps the packet within MAX_CLOCK_DEVIATION_S of its arrival
    time (both counted from the first packet): a sender may jump its timestamps (RFC 3550 §5.1 lets
    the base be anything) and one corrupt or hostile packet may say any time at all. Such a packet
    is placed at its arrival time instead; the packets after it follow its timestamp from there, or
    the earlier timeline when they fit it again (a lone stray packet). So the output is never longer
    than the stream's arrival span plus twice that deviation. Beyond
    MAX_DURATION_S the output is cut. Both are counted in the result.
    """
    by_seq: dict[int, tuple[float, int, int, bytes]] = {}
    seq = first_ts = None
    for arrival, raw_seq, raw_ts, payload in sorted(packets, key=lambda pkt: pkt[0]):
        seq = _unwrap(raw_seq, seq, 1 << 16)
        first_ts = raw_ts if first_ts is None else first_ts
        by_seq.setdefault(seq, (arrival, raw_seq, _unwrap(raw_ts, first_ts, 1 << 32), payload))
    ordered = [by_seq[s] for s in sorted(by_seq)]
    stream = b"".join(payload for *_, payload in ordered)
    if not stream:
        return Reconstruction(np.zeros(0, dtype=np.int16))
    pcm = decoder(stream)
    per_octet, rest = divmod(len(pcm), len(stream))
    if rest:
        raise ValueError(f"decoder gave {len(pcm)} samples for {len(stream)} octets: not a fixed ratio")
    result = Reconstruction(pcm)
    first_arrival = ordered[0][0]
    anchor = before = (ordered[0][2], 0)          # (RTP timestamp, sample) the timeline follows, and the one before
    positions = []
    for arrival, raw_seq, ts, _ in ordered:
        arrived = arrival - first_arrival
        position = anchor[1] + (ts - anchor[0]) * sample_rate // clock_rate
        if abs(position / sample_rate - arrived) > MAX_CLOCK_DEVIATION_S:
            back = before[1] + (ts - before[0]) * sample_rate // clock_rate
            if abs(back / sample_rate - arrived) <= MAX_CLOCK_DEVIATION_S:
                anchor, position = before, back    # the stray packet was alone: back on the earlier timeline
            else:
                before, anchor = anchor, (ts, int(round(arrived * sample_rate)))
                position = anchor[1]
                result.placed_by_arrival += 1
                if len(result.placed_by_arrival_seq) < MAX_LISTED:
                    result.placed_by_arrival_seq.append(raw_seq)
        positions.append(position)
    origin = min(positions)
    offsets = [p - origin for p in positions]
    length = max(off + len(payload) * per_octet for off, (*_, payload) in zip(offsets, ordered))
    limit = int(MAX_DURATION_S * sample_rate)
    if length > limit:
        result.cut_s = (length - limit) / sample_rate
        length = limit
    out = np.zeros(length, dtype=np.int16)
    cursor = 0
    for off, (*_, payload) in zip(offsets, ordered):
        n = len(payload) * per_octet
        end = min(off + n, length)
        if off < end:
            out[off:end] = pcm[cursor:cursor + end - off]
        cursor += n
    result.pcm = out
    return result


def stereo_mix(a: np.ndarray, b: np.ndarray, offset_a: int = 0, offset_b: int = 0) -> np.ndarray:
    """Two directions as one (n, 2) int16 array: `a` left, `b` right, each delayed by its offset in
    samples (from a common start), the shorter padded with silence."""
    length = max(offset_a + len(a), offset_b + len(b))
    out = np.zeros((length, 2), dtype=np.int16)
    out[offset_a:offset_a + len(a), 0] = a
    out[offset_b:offset_b + len(b), 1] = b
    return out


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int, channels: int = 1) -> None:
    """16-bit PCM WAV: `samples` of shape (n,) for mono or (n, channels), interleaved on write."""
    frames = np.asarray(samples, dtype="<i2")
    if frames.ndim != 1 + (channels > 1) or (channels > 1 and frames.shape[1] != channels):
        raise ValueError(f"samples of shape {frames.shape} do not hold {channels} channel(s)")
    with wave.open(os.fspath(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(np.ascontiguousarray(frames).tobytes())


def tone_metrics(samples: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """(dominant frequency Hz, RMS level dBFS) of mono PCM: Hann-windowed FFT peak refined by
    parabolic interpolation of the log magnitude; -inf dBFS for digital silence."""
    x = np.asarray(samples, dtype=np.float64)
    if len(x) < 3:
        raise ValueError("need at least 3 samples")
    rms = float(np.sqrt(np.mean(x * x)))
    level = 20 * np.log10(rms * np.sqrt(2) / 32768) if rms > 0 else float("-inf")
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spectrum[1:-1])) + 1
    left, mid, right = np.log(spectrum[k - 1:k + 2] + 1e-12)
    curvature = left - 2 * mid + right
    shift = 0.5 * (left - right) / curvature if curvature else 0.0
    return float((k + shift) * sample_rate / len(x)), float(level)
