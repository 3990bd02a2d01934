"""The evidence bundle of one call: its packets, audio, ladder, quality plots, a JSON summary, a manifest.

Every file's SHA-256 goes into manifest.json so the bundle can be handed on and verified.
Encrypted media is never "decoded": the summary says which streams were not and why.
"""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Callable, TypeVar

from matplotlib.figure import Figure

from dissectors.rtp import STATIC_PAYLOAD_TYPES
from voipwatch import __version__
from voipwatch.call import audio, ladder, quality
from voipwatch.alerts import alert_event
from voipwatch.call.packets import MediaPackets
from voipwatch.call.select import CallView, Verdict, protection_verdict, stream_leg
from voipwatch.legs import Leg
from voipwatch.records import Frame, RtpStream
from voipwatch.safe_text import json_line, visible


T = TypeVar("T")


def write_pcap(frames: list[Frame], path: Path) -> None:
    """Frames in original order with their original link layer: classic pcap (microseconds) when they
    share one link type, else pcapng with one interface per link type."""
    linktypes = sorted({f.linktype for f in frames}) or [1]
    with open(path, "wb") as fh:
        if len(linktypes) == 1:
            fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktypes[0]))
            for f in frames:
                usec = int(round(f.ts * 1_000_000))
                fh.write(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(f.data), f.wire_len))
                fh.write(f.data)
            return
        # pcapng (draft-ietf-opsawg-pcapng): SHB, one IDB per link type, then EPBs (microsecond units).
        fh.write(struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28))
        for lt in linktypes:
            fh.write(struct.pack("<IIHHII", 1, 20, lt, 0, 262144, 20))
        for f in frames:
            pad = (-len(f.data)) % 4
            usec = int(round(f.ts * 1_000_000))
            blen = 32 + len(f.data) + pad
            fh.write(struct.pack("<IIIIIII", 6, blen, linktypes.index(f.linktype), usec >> 32, usec & 0xFFFFFFFF,
                                 len(f.data), f.wire_len))
            fh.write(f.data + b"\0" * pad + struct.pack("<I", blen))


def stream_series(mp: MediaPackets, clock_rate: int | None) -> dict[str, list[float]]:
    """Per packet: time since the stream started, RFC 3550 §A.8 interarrival jitter (ms), and per second
    of the stream: packets lost (expected from the sequence numbers minus received)."""
    pkts = sorted(mp.packets, key=lambda p: p[0])
    t, jitter = [], []
    j, prev = 0.0, None
    for ts, seq, rtp_ts, _ in pkts:
        if prev is not None and clock_rate:
            ts_delta = ((rtp_ts - prev[1] + 2**31) % 2**32) - 2**31     # signed, across the 32-bit wrap
            d = (ts - prev[0]) - ts_delta / clock_rate
            j += (abs(d) * 1000.0 - j) / 16
        prev = (ts, rtp_ts)
        t.append(ts - pkts[0][0])
        jitter.append(j)
    # Loss per second: each gap above the highest sequence number seen so far (RFC 3550 A.1,
    # 16-bit wrap unrolled) counts against the second in which the packet after it arrived.
    lost_by_second: dict[int, int] = {}
    highest = None
    for ts, seq, _, _ in pkts:
        second = int(ts - pkts[0][0])
        lost_by_second.setdefault(second, 0)
        if highest is None:
            highest = seq
            continue
        ext = highest + ((seq - highest + 32768) % 65536) - 32768
        if ext > highest:
            lost_by_second[second] += ext - highest - 1
            highest = ext
    loss_t = [float(k) for k in sorted(lost_by_second)]
    loss = [float(lost_by_second[k]) for k in sorted(lost_by_second)]
    return {"t_s": t, "jitter_ms": jitter, "loss_t_s": loss_t, "lost": loss}


def quality_figure(stream: RtpStream, series: dict) -> Figure:
    fig = Figure(figsize=(8, 4), dpi=100)
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(series["t_s"], series["jitter_ms"], color="tab:blue", linewidth=1)
    top.set_ylabel("jitter (ms)")
    # The codec name comes from the SDP: shown with visible escapes, and never read as TeX ("$...$").
    top.set_title(f"{stream.src}:{stream.sport} → {stream.dst}:{stream.dport}  SSRC 0x{stream.ssrc:08x}  "
                  f"{visible(stream.codec or str(stream.payload_type))}", fontsize=9, parse_math=False)
    bottom.bar(series["loss_t_s"], series["lost"], width=0.8, color="tab:red")
    bottom.set_ylabel("lost / s")
    bottom.set_xlabel("seconds since the stream's first packet")
    fig.tight_layout()
    return fig


def decodable(stream: RtpStream, verdict: Verdict) -> tuple[bool, str]:
    if verdict.readable is False or verdict.protection not in ("none", "SDES over cleartext SIP", "unknown"):
        return False, f"encrypted ({verdict.protection}): not decoded"
    if verdict.protection == "SDES over cleartext SIP":
        return False, "SRTP (keys exposed in cleartext SIP, but voipwatch does not decrypt): not decoded"
    if (stream.codec or "").upper() not in audio.DECODERS:
        return False, f"codec {stream.codec or stream.payload_type} is not one voipwatch decodes (PCMU, PCMA, G722)"
    if stream.payload_entropy is not None and stream.payload_entropy > 7.9:
        return False, "payload looks encrypted (byte entropy above 7.9 bits): not decoded"
    return True, ""


class _Parts:
    """The bundle's files, each written on its own: a part that fails is recorded (and whatever it
    left behind removed), and the rest of the bundle is still written."""

    def __init__(self, out: Path):
        self.out = out
        self.failed: list[dict] = []

    def write(self, names: list[str], writer: Callable[..., T], *args) -> T | None:
        """writer(*args), which writes the files `names`; None when it failed."""
        try:
            return writer(*args)
        except Exception as exc:      # noqa: BLE001 - any failure of one part is reported, never a lost bundle
            for name in names:
                (self.out / name).unlink(missing_ok=True)
            self.failed.append({"files": names, "error": f"{type(exc).__name__}: {exc}"})
            return None


def write_bundle(view: CallView, frames: list[Frame], media: dict[tuple, MediaPackets], out: Path) -> dict:
    """Write the bundle for one call into `out`; returns the JSON summary written. A part that cannot be
    written is listed under failed_parts in the summary, and the bundle is complete without it."""
    out.mkdir(parents=True, exist_ok=True)
    parts = _Parts(out)
    verdict = protection_verdict(view)
    parts.write(["call.pcap"], write_pcap, frames, out / "call.pcap")
    lad = ladder.build_ladder(view.messages)
    parts.write(["ladder.png", "ladder.svg"], ladder.save_ladder, lad, out / "ladder.png", out / "ladder.svg")
    streams_out, pcm = [], []
    for i, stream in enumerate(view.streams):
        mp = media.get((stream.vlan, stream.src, stream.sport, stream.dst, stream.dport, stream.ssrc),
                       MediaPackets(stream))
        clock = _clock(stream)
        name = f"stream{i + 1}"
        parts.write([f"{name}-quality.png"], _save_quality, stream, stream_series(mp, clock), out / f"{name}-quality.png")
        ok, why = decodable(stream, verdict)
        wav = timing = None
        if ok and mp.packets:
            rate, decoder = audio.DECODERS[stream.codec.upper()]
            rebuilt = parts.write([f"{name}.wav"], _save_audio, mp, clock or 8000, rate, decoder, out / f"{name}.wav")
            if rebuilt is not None:
                wav, timing = f"{name}.wav", rebuilt.notes()
                pcm.append((stream, rebuilt.pcm, rate))
        streams_out.append({
            "file_prefix": name, "src": stream.src, "sport": stream.sport, "dst": stream.dst, "dport": stream.dport,
            "ssrc": f"0x{stream.ssrc:08x}", "codec": stream.codec, "packets": stream.packets, "lost": stream.lost,
            "duplicates": stream.duplicates, "out_of_order": stream.out_of_order,
            "jitter_ms_mean": round(stream.jitter_ms_mean, 3), "jitter_ms_max": round(stream.jitter_ms_max, 3),
            **quality.stream_quality(stream),
            "offered_in_sdp": {"src": (stream.src, stream.sport) in view.offered,
                               "dst": (stream.dst, stream.dport) in view.offered, "leg": stream_leg(view, stream)},
            "audio": wav, "audio_timing": timing, "not_decoded_because": None if ok else why,
        })
    if len(pcm) >= 2 and pcm[0][2] == pcm[1][2]:
        (s_a, a, rate), (s_b, b, _) = pcm[0], pcm[1]
        start = min(s_a.first_ts, s_b.first_ts)
        mix = audio.stereo_mix(a, b, int(round((s_a.first_ts - start) * rate)), int(round((s_b.first_ts - start) * rate)))
        parts.write(["mix-stereo.wav"], audio.write_wav, out / "mix-stereo.wav", mix, rate, 2)
    call, drawn, match = view.call, ladder.bounded_view(lad), view.line()
    summary = {
        "tool": "voipwatch", "version": __version__, "call_id": view.call_id, "call_ids": view.call_ids,
        "method": match.method, "caller": call.caller if call else match.from_user,
        "callee": call.callee if call else match.to_user, "state": call.state if call else match.state,
        "final_status": call.final_status if call else None,
        "first_ts": view.first_ts, "last_ts": view.last_ts,
        "setup_s": call.setup_s if call else None, "duration_s": call.duration_s if call else None,
        "signalling": {"src": call.src, "dst": call.dst, "transport": call.transport, "vlan": list(call.vlan)}
        if call else {"path": match.path},
        "protection": verdict.protection, "media_readable_on_path": verdict.readable, "verdict": verdict.reason,
        "sdp": {"offer": sdp_summary(view.offer), "answer": sdp_summary(view.answer)},
        "legs": [leg_summary(leg) for leg in view.legs],
        "linked_call_ids": [{"call_id": lk.call_id, "other": lk.other, "basis": lk.basis} for lk in view.links],
        "legs_not_followed": view.dropped_legs,
        "ladder": [{"t_s": round(r.ts - lad.rows[0].ts, 6), "frame": r.frame, "from": lad.parties[r.src],
                    "to": lad.parties[r.dst], "label": r.label, "retransmission": r.is_retransmission}
                   for r in lad.rows],
        "ladder_drawn": drawn.summary(),
        "streams": streams_out,
        "alerts": [alert_event(a) for a in view.alerts],
        "call_pcap_packets": len(frames),
        "failed_parts": parts.failed,
    }
    (out / "summary.json").write_text(json_line(summary, indent=2, default=str) + "\n", encoding="utf-8")
    manifest = {p.name: {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "bytes": p.stat().st_size}
                for p in sorted(out.iterdir()) if p.is_file() and p.name != "manifest.json"}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return summary


def _save_quality(stream: RtpStream, series: dict, path: Path) -> None:
    quality_figure(stream, series).savefig(path)


def _save_audio(mp: MediaPackets, clock: int, rate: int, decoder: audio.Decoder, path: Path) -> audio.Reconstruction:
    rebuilt = audio.reconstruct(mp.packets, clock, rate, decoder)
    audio.write_wav(path, rebuilt.pcm, rate)
    return rebuilt


def _clock(stream: RtpStream) -> int | None:
    """The RTP clock of a decodable stream (RFC 3551 static rates; G.722 keeps 8000 by §4.5.2)."""
    name = (stream.codec or "").upper()
    if stream.payload_type in STATIC_PAYLOAD_TYPES:
        return STATIC_PAYLOAD_TYPES[stream.payload_type][1]
    return {"PCMU": 8000, "PCMA": 8000, "G722": 8000, "OPUS": 48000}.get(name)


def leg_summary(leg: Leg) -> dict:
    """One leg's offer/answer exchanges (voipwatch.legs) as the bundle's summary states them."""
    def seen(s):
        return None if s is None else {"frame": s.frame, "ts": s.ts, "from": s.sender, "to": s.receiver,
                                       "message": s.message, "sdp": sdp_summary(s.sdp)}
    return {"call_id": leg.call_id, "ends": list(leg.ends), "first_ts": leg.first_ts, "first_frame": leg.first_frame,
            "exchanges": [{"method": x.method, "cseq": x.cseq, "offerer": x.offerer, "offer": seen(x.offer),
                           "answer": seen(x.answer), "preview": seen(x.preview), "rejected": x.rejected,
                           "repeats": x.repeats}
                          for x in leg.exchanges],
            "older_exchanges_not_kept": leg.dropped_exchanges}


def sdp_summary(sdp) -> dict | None:
    if sdp is None:
        return None
    return {"origin": sdp.origin_addr, "connection": sdp.connection,
            "media": [{"kind": m.kind, "address": m.connection or sdp.connection, "port": m.port, "proto": m.proto,
                       "formats": list(m.formats),
                       "codecs": [f"{pt} {name}/{rate}" for pt, name, rate in m.rtpmap],
                       "direction": m.direction or sdp.direction,
                       "crypto": [{"suite": c.suite, "key_sha256": c.key_sha256, "key_len": c.key_len,
                                   "session_params": list(c.session_params)} for c in m.crypto],
                       "fingerprint": m.fingerprint or sdp.fingerprint, "zrtp_hash": m.zrtp_hash or sdp.zrtp_hash}
                      for m in sdp.media]}
