"""RTP audio decoding: G.711 tables and tones, G.722 tones and a reference digest, reconstruction, WAV."""
from __future__ import annotations

import hashlib
import wave

import numpy as np
import pytest

from voipwatch.call import audio
from voipwatch.call.audio import (DECODERS, decode_alaw, decode_g722, decode_ulaw, reconstruct, stereo_mix,
                             tone_metrics, write_wav)


def tone(freq_hz: float, dbfs: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    """A sine whose AES17 level is `dbfs` (peak 32768 * 10**(dbfs/20))."""
    t = np.arange(int(rate * seconds)) / rate
    return np.round(32768 * 10 ** (dbfs / 20) * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


# ---------------------------------------------------------------- G.711 encoders (test-only)

def encode_ulaw(pcm: np.ndarray) -> bytes:
    # G.711 µ-law on the 16-bit scale: bias 0x84, clip at 32635, bits inverted on the line.
    x = pcm.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), 32635) + 0x84
    segment = np.floor(np.log2(mag)).astype(np.int32) - 7
    step = (mag >> (segment + 3)) & 0x0F
    return (~(sign | (segment << 4) | step) & 0xFF).astype(np.uint8).tobytes()


def encode_alaw(pcm: np.ndarray) -> bytes:
    # G.711 A-law on the 13-bit scale; negative values map to |x| - 1; even bits inverted (XOR 0x55).
    x = pcm.astype(np.int32) >> 3
    mask = np.where(x >= 0, 0xD5, 0x55)
    mag = np.where(x >= 0, x, -x - 1)
    segment = np.searchsorted(np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF]), mag)
    step = np.where(segment < 2, mag >> 1, mag >> np.maximum(segment, 1)) & 0x0F
    code = np.where(segment >= 8, 0x7F, (np.minimum(segment, 7) << 4) | step)
    return (code ^ mask).astype(np.uint8).tobytes()


def test_g711_table_values():
    assert decode_ulaw(b"\xff\x00\x80\x7f").tolist() == [0, -32124, 32124, 0]
    assert decode_alaw(b"\xd5\x55\xaa\x2a").tolist() == [8, -8, 32256, -32256]
    assert decode_ulaw(b"").dtype == np.int16 and decode_alaw(b"\x00").dtype == np.int16


@pytest.mark.parametrize("encode, decode", [(encode_ulaw, decode_ulaw), (encode_alaw, decode_alaw)])
def test_g711_test_encoders_invert_the_tables(encode, decode):
    every = decode(bytes(range(256)))
    assert (decode(encode(every)) == every).all()


@pytest.mark.parametrize("encode, decode", [(encode_ulaw, decode_ulaw), (encode_alaw, decode_alaw)])
@pytest.mark.parametrize("freq, dbfs", [(1000, -6.0), (440, -12.0)])
def test_g711_tone_frequency_and_level(encode, decode, freq, dbfs):
    pcm = decode(encode(tone(freq, dbfs, 8000)))
    measured_freq, measured_dbfs = tone_metrics(pcm, 8000)
    assert measured_freq == pytest.approx(freq, abs=2)
    assert measured_dbfs == pytest.approx(dbfs, abs=0.5)


def test_tone_metrics_silence_and_short_input():
    assert tone_metrics(np.zeros(800, dtype=np.int16), 8000)[1] == float("-inf")
    with pytest.raises(ValueError):
        tone_metrics(np.zeros(2, dtype=np.int16), 8000)


# ---------------------------------------------------------------- G.722 encoder (test-only)
# The matching SB-ADPCM encoder: transmit QMF, then the quantizers QUANTL / QUANTH; the adaptation
# (LOGSCL/SCALEL, block 4) is the decoder's, so encoder and decoder track the same state.
_Q6 = (0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940,
       1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919)
_ILN = (0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12,
        11, 10, 9, 8, 7, 6, 5, 4)
_ILP = (0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40,
        39, 38, 37, 36, 35, 34, 33, 32)


def encode_g722(pcm: np.ndarray) -> bytes:
    low, high = audio._Band(32), audio._Band(8)
    x = [0] * 24
    coeffs = [int(c) for c in audio._QMF]
    out = bytearray()
    for j in range(0, len(pcm) - 1, 2):
        x[:22] = x[2:]
        x[22], x[23] = int(pcm[j]), int(pcm[j + 1])
        sumodd = sum(x[2 * i] * coeffs[i] for i in range(12))
        sumeven = sum(x[2 * i + 1] * coeffs[11 - i] for i in range(12))
        xlow, xhigh = (sumeven + sumodd) >> 14, (sumeven - sumodd) >> 14

        el = audio._sat16(xlow - low.s)
        wd = el if el >= 0 else -(el + 1)
        i = next((i for i in range(1, 30) if wd < (_Q6[i] * low.det) >> 12), 30)
        ilow = _ILN[i] if el < 0 else _ILP[i]
        il4 = ilow >> 2
        dlow = (low.det * audio._QM4[il4]) >> 15
        low.scale(max(0, min(18432, ((low.nb * 127) >> 7) + audio._WL[audio._RL42[il4]])), 8)
        low.update(dlow)

        eh = audio._sat16(xhigh - high.s)
        wd = eh if eh >= 0 else -(eh + 1)
        big = wd >= (564 * high.det) >> 12
        ihigh = (0 if big else 1) if eh < 0 else (2 if big else 3)
        dhigh = (high.det * audio._QM2[ihigh]) >> 15
        high.scale(max(0, min(22528, ((high.nb * 127) >> 7) + audio._WH[audio._RH2[ihigh]])), 10)
        high.update(dhigh)
        out.append(ihigh << 6 | ilow)
    return bytes(out)


@pytest.mark.parametrize("freq, dbfs", [(1000, -6.0), (440, -12.0), (6000, -12.0)])
def test_g722_tone_frequency_and_level(freq, dbfs):
    """6 kHz lies in the upper sub-band: it checks the 2-bit ADPCM and the QMF recombination."""
    pcm = decode_g722(encode_g722(tone(freq, dbfs, 16000)))
    assert len(pcm) == 16000
    measured_freq, measured_dbfs = tone_metrics(pcm[1600:], 16000)   # past the adaptation transient
    assert measured_freq == pytest.approx(freq, abs=2)
    assert measured_dbfs == pytest.approx(dbfs, abs=0.5)


def test_g722_matches_reference_decoder_digest():
    """SHA-256 of the spandsp fixed-point decoder's output for these octets (computed once offline)."""
    data = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(125))
    pcm = decode_g722(data)
    assert pcm[:16].tolist() == [-1, 0, 0, -1, 0, -1, -1, 0, 0, -2, 0, 1, -5, -9, 12, 23]
    assert hashlib.sha256(pcm.astype("<i2").tobytes()).hexdigest() == \
        "cbe86e1f1acb74d83a517ad0619f412275ab0d45707e2796b044af7577787526"


def test_decoders_table():
    assert DECODERS["PCMU"] == (8000, decode_ulaw)
    assert DECODERS["PCMA"] == (8000, decode_alaw)
    assert DECODERS["G722"] == (16000, decode_g722)
    assert DECODERS["pcmu".upper()][0] == 8000


# ---------------------------------------------------------------- reconstruction

def octets(payload: bytes) -> np.ndarray:
    """Test decoder: each octet is one sample of its own value, so placement is visible."""
    return np.frombuffer(payload, dtype=np.uint8).astype(np.int16)


def test_reconstruct_loss_reordering_duplicates_and_wraps():
    base_ts = (1 << 32) - 2 * 160            # the timestamp wraps between the 2nd and 3rd packet
    seqs = [65534, 65535, 0, 1, 2, 3]        # the sequence number wraps too
    sent = [(0.02 * k, seq, (base_ts + 160 * k) & 0xFFFFFFFF, bytes([k + 1]) * 160)
            for k, seq in enumerate(seqs)]
    arrived = [sent[0], sent[2], sent[1],                          # 0 overtakes 65535
               sent[4], (0.09, 2, sent[4][2], b"\x63" * 160),      # seq 2 duplicated: first copy wins
               sent[5]]                                            # seq 1 lost
    arrived = [(0.01 * i, *pkt[1:]) for i, pkt in enumerate(arrived)]
    pcm = reconstruct(arrived, 8000, 8000, octets).pcm
    expected = np.concatenate([np.full(160, v, np.int16) for v in (1, 2, 3, 0, 5, 6)])
    assert pcm.dtype == np.int16
    assert (pcm == expected).all()


def test_reconstruct_g722_clock_is_half_the_sample_rate():
    """RFC 3551 §4.5.2: 20 ms of G.722 is 160 octets, 160 timestamp units and 320 samples."""
    def two_per_octet(payload):
        return np.repeat(octets(payload), 2)
    packets = [(0.0, 10, 1000, b"\x01" * 160), (0.04, 12, 1320, b"\x03" * 160)]
    pcm = reconstruct(packets, 8000, 16000, two_per_octet).pcm
    assert pcm.tolist() == [1] * 320 + [0] * 320 + [3] * 320


def test_reconstruct_g722_keeps_decoder_state_across_packets():
    data = encode_g722(tone(1000, -6.0, 16000, 0.1))
    packets = [(k * 0.02, k, 160 * k, data[160 * k:160 * (k + 1)]) for k in range(5)]
    assert (reconstruct(packets, 8000, 16000, decode_g722).pcm == decode_g722(data)).all()


def test_reconstruct_edges():
    assert reconstruct([], 8000, 8000, octets).pcm.size == 0
    with pytest.raises(ValueError, match="fixed ratio"):
        reconstruct([(0.0, 1, 0, b"\x01\x02")], 8000, 8000, lambda p: np.zeros(3, np.int16))


def steady(n: int, start_seq: int = 100, start_ts: int = 5000) -> list[tuple[float, int, int, bytes]]:
    """n packets of 20 ms (160 octets at 8000 Hz), packet k holding the octet value k + 1."""
    return [(0.02 * k, start_seq + k, start_ts + 160 * k, bytes([k + 1]) * 160) for k in range(n)]


def test_one_wild_timestamp_is_placed_at_its_arrival_and_the_rest_stays_on_the_clock():
    for jump in ((1 << 31) - 1, -(1 << 31)):          # as far as a 32-bit timestamp can say, later or earlier
        packets = steady(10)
        packets[4] = (packets[4][0], packets[4][1], (packets[4][2] + jump) & 0xFFFFFFFF, packets[4][3])
        result = reconstruct(packets, 8000, 8000, octets)
        # placed where it arrived, 80 ms in, like the others; the packets after it stay on the clock
        assert result.pcm.tolist() == [v for k in range(10) for v in [k + 1] * 160]
        assert (result.placed_by_arrival, result.placed_by_arrival_seq, result.cut_s) == (1, [104], 0.0)


def test_a_timestamp_rebase_starts_a_new_timeline_at_its_arrival():
    """RFC 3550 §5.1 leaves the timestamp base free: a sender that jumps it mid-stream (same SSRC)
    is followed on its new clock from where the jump arrived."""
    packets = steady(4) + [(0.02 * k, 100 + k, 900_000_000 + 160 * (k - 4), bytes([k + 1]) * 160) for k in (4, 5, 7)]
    result = reconstruct(packets, 8000, 8000, octets)
    assert result.pcm.tolist() == [v for k in (0, 1, 2, 3, 4, 5) for v in [k + 1] * 160] + [0] * 160 + [8] * 160
    assert (result.placed_by_arrival, result.placed_by_arrival_seq) == (1, [104])


def test_within_the_allowed_deviation_timestamps_rule(monkeypatch):
    """A burst after a network stall arrives late but is played where its timestamps say."""
    packets = [(t + (3.0 if k >= 5 else 0.0), seq, ts, data) for k, (t, seq, ts, data) in enumerate(steady(8))]
    result = reconstruct(packets, 8000, 8000, octets)
    assert result.pcm.tolist() == [v for k in range(8) for v in [k + 1] * 160]
    assert result.placed_by_arrival == 0
    monkeypatch.setattr(audio, "MAX_CLOCK_DEVIATION_S", 2.0)
    late = reconstruct(packets, 8000, 8000, octets)
    assert (late.placed_by_arrival, late.placed_by_arrival_seq) == (1, [105])
    assert len(late.pcm) == round(3.0 * 8000) + 8 * 160


def test_output_beyond_the_longest_duration_is_cut_and_counted(monkeypatch):
    monkeypatch.setattr(audio, "MAX_DURATION_S", 0.1)                # 800 samples: 5 of the 8 packets
    result = reconstruct(steady(8), 8000, 8000, octets)
    assert result.pcm.tolist() == [v for k in range(5) for v in [k + 1] * 160]
    assert result.cut_s == pytest.approx(3 * 0.02)
    assert result.notes()["cut_s"] == 0.06


def test_stereo_mix_aligns_and_pads():
    left = np.array([1, 2, 3], np.int16)
    right = np.array([7], np.int16)
    assert stereo_mix(left, right, 0, 2).tolist() == [[1, 0], [2, 0], [3, 7]]
    assert stereo_mix(left, right, 2, 0).tolist() == [[0, 7], [0, 0], [1, 0], [2, 0], [3, 0]]


def test_wav_round_trip(tmp_path):
    mono = tone(1000, -6.0, 8000, 0.05)
    write_wav(tmp_path / "mono.wav", mono, 8000)
    with wave.open(str(tmp_path / "mono.wav"), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert (np.frombuffer(wav.readframes(wav.getnframes()), "<i2") == mono).all()

    both = stereo_mix(mono, -mono, 0, 80)
    write_wav(tmp_path / "stereo.wav", both, 16000, channels=2)
    with wave.open(str(tmp_path / "stereo.wav"), "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getnframes()) == (2, 16000, len(both))
        assert (np.frombuffer(wav.readframes(len(both)), "<i2").reshape(-1, 2) == both).all()

    with pytest.raises(ValueError):
        write_wav(tmp_path / "bad.wav", both, 8000, channels=1)
