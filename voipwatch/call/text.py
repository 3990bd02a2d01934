"""`voipwatch call`: the terminal account of one or more calls, and their evidence bundles.

Call-IDs, numbers, reason phrases, SDP fields and alert messages come from the capture: every line
goes out through safe_text.visible, so no control character reaches the terminal.
"""
from __future__ import annotations

from pathlib import Path

from voipwatch.call import ladder, quality
from voipwatch.analyze import analyze_files
from voipwatch.call.bundle import sdp_summary, write_bundle
from voipwatch.call.packets import collect
from voipwatch.call.select import CallView, protection_verdict, select_calls
from voipwatch.config import Settings
from voipwatch.safe_text import visible_lines


def investigate(paths: list[str], settings: Settings, call_id: str | None = None, number: str | None = None,
                ip: str | None = None, out_dir: str | None = None) -> tuple[str, int]:
    """The terminal text for the matching calls, and how many matched; bundles go to out_dir/<n>-<call-id>/."""
    result = analyze_files(paths, settings)
    views = select_calls(result, call_id=call_id, number=number, ip=ip)
    if not views:
        return "no call matches", 0
    lines = []
    if len(views) > 1:
        lines.append(f"{len(views)} calls match:")
        for i, v in enumerate(views, 1):
            c = v.call
            lines.append(f"  {i}. {c.call_id}  {c.caller} -> {c.callee}  {c.state} {c.final_status or ''}  "
                         f"{c.src} -> {c.dst}")
        lines.append("")
    frames, media = collect(paths, views, settings.pipeline) if out_dir else ({}, {})
    for i, view in enumerate(views, 1):
        lines += describe(view)
        if out_dir:
            folder = Path(out_dir) / f"{i}-{_safe(view.call.call_id)}"
            summary = write_bundle(view, frames[view.call.call_id], media, folder)
            lines.append(f"evidence bundle: {folder} ({summary['call_pcap_packets']} packets in call.pcap, "
                         f"manifest.json lists SHA-256 of every file)")
            lines += bundle_notes(summary)
        lines.append("")
    return visible_lines("\n".join(lines).rstrip()) + "\n", len(views)


def bundle_notes(summary: dict) -> list[str]:
    """What the bundle could not write, or wrote other than the capture said (from its summary)."""
    lines = [f"   NOT WRITTEN: {', '.join(part['files'])}: {part['error']} (listed in summary.json)"
             for part in summary["failed_parts"]]
    for stream in summary["streams"]:
        timing = stream["audio_timing"]
        if timing and timing["packets_placed_by_arrival"]:
            lines.append(f"   {stream['audio']}: {timing['packets_placed_by_arrival']} packet(s) placed at their arrival "
                         f"time, the RTP timestamp being more than {timing['max_clock_deviation_s']:g} s from it "
                         f"(sequence numbers {', '.join(map(str, timing['placed_by_arrival_seq']))})")
        if timing and timing["cut_s"]:
            lines.append(f"   {stream['audio']}: cut after {timing['max_duration_s']:,} s ({timing['cut_s']:,} s not written)")
    return lines


def describe(view: CallView) -> list[str]:
    c = view.call
    verdict = protection_verdict(view)
    lines = [f"== Call {c.call_id}",
             f"   {c.caller} -> {c.callee}   state {c.state}  final {c.final_status or '-'}  "
             f"setup {c.setup_s if c.setup_s is not None else '-'} s  duration {c.duration_s if c.duration_s is not None else '-'} s",
             f"   signalling {c.src} -> {c.dst} over {c.transport.upper()}"
             + (f" on VLAN {'/'.join(map(str, c.vlan))}" if c.vlan else ""), "",
             ladder.render_text(ladder.build_ladder(view.messages)), ""]
    for role, sdp in (("offer", view.offer), ("answer", view.answer)):
        summary = sdp_summary(sdp)
        if summary is None:
            lines.append(f"   SDP {role}: none seen")
            continue
        for m in summary["media"]:
            crypto = ", ".join(x["suite"] for x in m["crypto"]) or "no a=crypto"
            lines.append(f"   SDP {role}: {m['kind']} {m['address']}:{m['port']} {m['proto']}  "
                         f"codecs {', '.join(m['codecs']) or '-'}  {crypto}"
                         + ("  a=fingerprint" if m["fingerprint"] else "") + ("  a=zrtp-hash" if m["zrtp_hash"] else ""))
    lines += ["", f"   Protection: {verdict.protection}. Verdict: {verdict.reason}.", ""]
    if view.streams:
        lines.append("   Media streams:")
        for s in view.streams:
            q = quality.stream_quality(s)
            offered = "offered in SDP" if (s.src, s.sport) in view.offered and (s.dst, s.dport) in view.offered \
                else "NOT as offered in SDP"
            lines.append(f"   {s.src}:{s.sport} -> {s.dst}:{s.dport} SSRC 0x{s.ssrc:08x} {s.codec or s.payload_type}: "
                         f"{s.packets} pkts, lost {s.lost}, dup {s.duplicates}, out-of-order {s.out_of_order}, "
                         f"jitter mean {s.jitter_ms_mean:.2f} ms max {s.jitter_ms_max:.2f} ms, "
                         f"R {q['r_factor']:.1f} MOS {q['mos']:.2f}; {offered}")
    else:
        lines.append("   Media streams: none seen")
    if view.alerts:
        lines += ["", "   Alerts:"] + [f"   [{a.severity}] {a.name} ({a.check}): {a.msg}" for a in view.alerts]
    return lines


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.@" else "_" for ch in text)[:80]
