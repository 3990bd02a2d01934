"""Listening quality of an RTP stream: the ITU-T G.107 E-model rating R and its MOS estimate.

G.107 §3 rates a connection as R = Ro - Is - Id - Ie,eff + A. A passive capture sees neither the
terminals nor the whole path, so this module simplifies it:

- Ro - Is is 93.2, the rating G.107 gives when every parameter has its default value (loudness
  ratings, noise, sidetone, echo losses); A (advantage factor) = 0.
- Id: the Cole-Rosenbluth (2001) fit of G.107's delay impairment for default echo conditions,
  Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3), d the one-way mouth-to-ear delay in ms, H the step
  function. No talker or listener echo terms are computed.
- d, when not measured: 20 ms packetization (RFC 3551 §4.2 default) + a jitter buffer of twice the
  mean interarrival jitter + the codec's look-ahead. Network transit is invisible from one capture
  point and is not added, so this d (and Id) is a lower bound. A given d is taken as the full
  mouth-to-ear delay and jitter is then not counted again.
- Ie,eff = Ie + (95 - Ie) Ppl / (Ppl / BurstR + Bpl) with Ppl the loss in percent; BurstR = 1
  (random loss) unless given. Packets a jitter buffer would discard as late are not visible on the
  wire and are not counted as loss.
- Ie and Bpl from ITU-T G.113 Appendix I: G.711 Ie = 0, Bpl = 25.1, the value with the G.711
  Appendix I packet loss concealment (assumed present; 4.3 without it); G.729 is scored as G.729A
  (Ie = 11, Bpl = 19); G.722 is wideband, outside the narrowband G.107 scale, and is scored with the
  G.711 values; any other or unknown codec is scored with the G.711 values.
- R is clamped to [0, 100]; MOS follows G.107 Annex B, clamped to [1, 4.5].
"""
from __future__ import annotations

from dataclasses import dataclass

from voipwatch.records import RtpStream

R_DEFAULTS = 93.2              # G.107: R with every parameter at its default value (Ro - Is)
PACKETIZATION_MS = 20.0        # assumed packet duration when the delay is estimated (RFC 3551 §4.2)
JITTER_BUFFER_FACTOR = 2.0     # assumed jitter buffer depth, in multiples of the mean jitter
RANDOM_LOSS = 1.0              # G.107 BurstR for independent (random) loss


@dataclass(frozen=True, slots=True)
class _Codec:
    name: str
    ie: float                  # equipment impairment factor (G.113 Appendix I)
    bpl: float                 # packet-loss robustness factor (G.113 Appendix I)
    lookahead_ms: float        # algorithmic delay beyond the frame itself
    note: str


_G711 = _Codec("G.711", 0.0, 25.1, 0.0, "G.711 with packet loss concealment (G.113 App. I: Ie 0, Bpl 25.1)")
_CODECS = {
    "PCMU": _G711,
    "PCMA": _G711,
    # G.722's two 24-tap QMFs at 16 kHz delay the signal by 23 samples, about 1.5 ms.
    "G722": _Codec("G.722", 0.0, 25.1, 1.5,
                   "G.722 is wideband, outside the narrowband G.107 scale: scored with G.711 values"),
    # G.729 (RFC 3551 §4.5.6): 10 ms frames with a 5 ms look-ahead.
    "G729": _Codec("G.729A", 11.0, 19.0, 5.0, "G.729 scored as G.729A (G.113 App. I: Ie 11, Bpl 19)"),
}


def _codec(name: str | None) -> _Codec:
    known = _CODECS.get(name.upper()) if name else None
    if known is not None:
        return known
    return _Codec("G.711", _G711.ie, _G711.bpl, _G711.lookahead_ms,
                  f"codec {name or 'unknown'} not in G.113 App. I: scored with G.711 values")


def _estimated_delay_ms(codec: _Codec, jitter_ms: float) -> float:
    return PACKETIZATION_MS + JITTER_BUFFER_FACTOR * jitter_ms + codec.lookahead_ms


def _delay_impairment(delay_ms: float) -> float:
    # Cole & Rosenbluth, "Voice over IP performance monitoring", ACM CCR 31(2), 2001.
    return 0.024 * delay_ms + 0.11 * max(0.0, delay_ms - 177.3)


def r_factor(codec: str | None, loss_fraction: float, jitter_ms: float,
             one_way_delay_ms: float | None = None, burst_ratio: float = RANDOM_LOSS) -> float:
    """E-model R of one direction (see the module docstring for every simplification).

    `codec` is the SDP/RFC 3551 encoding name; `loss_fraction` in [0, 1]; `jitter_ms` the mean
    interarrival jitter; `one_way_delay_ms` the mouth-to-ear delay if known, else estimated.
    """
    if not 0.0 <= loss_fraction <= 1.0:
        raise ValueError(f"loss_fraction {loss_fraction} outside [0, 1]")
    if not jitter_ms >= 0.0:
        raise ValueError(f"jitter_ms {jitter_ms} is negative or not a number")
    if not burst_ratio > 0.0:
        raise ValueError(f"burst_ratio {burst_ratio} is not positive")
    profile = _codec(codec)
    delay = _estimated_delay_ms(profile, jitter_ms) if one_way_delay_ms is None else one_way_delay_ms
    ppl = 100.0 * loss_fraction
    ie_eff = profile.ie + (95.0 - profile.ie) * ppl / (ppl / burst_ratio + profile.bpl)
    return min(100.0, max(0.0, R_DEFAULTS - _delay_impairment(delay) - ie_eff))


def mos_from_r(r: float) -> float:
    """G.107 Annex B: MOS_CQE = 1 + 0.035 R + R (R - 60)(100 - R) 7e-6 for 0 < R < 100.

    The cubic dips just under 1 for R below about 6.5; the result is clamped to [1, 4.5].
    """
    if r <= 0.0:
        return 1.0
    if r >= 100.0:
        return 4.5
    return max(1.0, 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6)


def stream_quality(stream: RtpStream) -> dict:
    """R, MOS and the assumptions behind them for one RTP stream, from its RFC 3550 statistics.

    Loss is lost / expected, with a negative `lost` (duplicates outnumbering losses) counted as 0.
    """
    lost = max(stream.lost, 0)
    loss = min(1.0, lost / stream.expected) if stream.expected > 0 else 0.0
    profile = _codec(stream.codec)
    delay = _estimated_delay_ms(profile, stream.jitter_ms_mean)
    r = r_factor(stream.codec, loss, stream.jitter_ms_mean)
    assumptions = [
        profile.note,
        f"loss {lost}/{stream.expected} packets ({100 * loss:.2f} %) taken as random (BurstR 1)",
        f"one-way delay not measured: {delay:.1f} ms = {PACKETIZATION_MS:g} ms packetization"
        f" + {JITTER_BUFFER_FACTOR:g} x {stream.jitter_ms_mean:.2f} ms jitter buffer"
        f" + {profile.lookahead_ms:g} ms codec look-ahead; network transit not included",
        "G.107 defaults elsewhere (Ro - Is = 93.2, A = 0, no echo); Id per Cole-Rosenbluth",
    ]
    return {"r_factor": round(r, 2), "mos": round(mos_from_r(r), 2), "assumptions": assumptions}
