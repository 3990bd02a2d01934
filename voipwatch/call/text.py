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
from voipwatch.call.select import CallView, protection_verdict, select_calls, select_flows, stream_leg
from voipwatch.config import Settings
from voipwatch.legs import MAX_LEGS
from voipwatch.safe_text import visible_lines

MATCH_HEADER = "time (UTC)  Call-ID  method  from -> to  src -> dst  state"
MAX_BARE_LEGS = 3            # legs without SDP shown one per line; the rest counted
MAX_FLOW_LINES = 50          # flows listed under the dialogs (all of them with --list)
LINK_BASIS = {"session-id": "same Session-ID, RFC 7989", "header": "named in an X-CID-like header",
              "number+time": "same numbers, INVITE sent on by the host the first one reached"}


def investigate(paths: list[str], settings: Settings, call_id: str | None = None, number: str | None = None,
                ip: str | None = None, out_dir: str | None = None, list_only: bool = False) -> tuple[str, int]:
    """The terminal text for the matching calls and dialogs (and, by address, flows outside any dialog),
    and how many matched; bundles go to out_dir/<n>-<call-id>/. list_only: one line per match."""
    result = analyze_files(paths, settings)
    views = select_calls(result, call_id=call_id, number=number, ip=ip)
    flows = select_flows(result, ip) if ip is not None else []
    if not views and not flows:
        return "no call, dialog or flow matches\n", 0
    if list_only:
        lines = [MATCH_HEADER] + [m.text() for m in sorted([v.line() for v in views] + flows, key=lambda m: m.ts)]
        return visible_lines("\n".join(lines)) + "\n", len(views) + len(flows)
    lines = []
    if len(views) > 1:
        lines.append(f"{len(views)} calls or dialogs match:")
        lines += [f"  {i}. {v.line().text()}" for i, v in enumerate(views, 1)]
        lines.append("")
    frames, media = collect(paths, views, settings.pipeline) if out_dir and views else ({}, {})
    for i, view in enumerate(views, 1):
        lines += describe(view)
        if out_dir:
            folder = Path(out_dir) / f"{i}-{_safe(view.call_id)}"
            summary = write_bundle(view, frames[view.call_id], media, folder)
            lines.append(f"evidence bundle: {folder} ({summary['call_pcap_packets']} packets in call.pcap, "
                         f"manifest.json lists SHA-256 of every file)")
            lines += bundle_notes(summary)
        lines.append("")
    if flows:
        lines.append(f"{len(flows)} flow(s) of {ip} outside any dialog:")
        lines += [f"   {m.text()}" for m in flows[:MAX_FLOW_LINES]]
        if len(flows) > MAX_FLOW_LINES:
            lines.append(f"   ... {len(flows) - MAX_FLOW_LINES} more (--list shows them all)")
    return visible_lines("\n".join(lines).rstrip()) + "\n", len(views) + len(flows)


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
    if c is None:
        m = view.line()
        lines = [f"== {m.method} dialog {m.call_id}",
                 f"   {m.from_user} -> {m.to_user}   {m.state}   {m.path}", "",
                 ladder.render_text(ladder.build_ladder(view.messages)), ""]
    else:
        verdict = protection_verdict(view)
        lines = [f"== Call {c.call_id}" + "".join(f" + {cid}" for cid in view.call_ids[1:]),
                 f"   {c.caller} -> {c.callee}   state {c.state}  final {c.final_status or '-'}  "
                 f"setup {c.setup_s if c.setup_s is not None else '-'} s  duration {c.duration_s if c.duration_s is not None else '-'} s",
                 f"   signalling {c.src} -> {c.dst} over {c.transport.upper()}"
                 + (f" on VLAN {'/'.join(map(str, c.vlan))}" if c.vlan else "")]
        lines += [f"   Call-ID {lk.other} is another leg of this call ({LINK_BASIS[lk.basis]})" for lk in view.links]
        lines += ["", ladder.render_text(ladder.build_ladder(view.messages)), ""]
        lines += leg_lines(view)
        lines += ["", f"   Protection: {verdict.protection}. Verdict: {verdict.reason}.", ""]
        if view.streams:
            lines.append("   Media streams:")
            for s in view.streams:
                q = quality.stream_quality(s)
                leg = stream_leg(view, s)
                offered = f"as negotiated on leg {leg}" if leg else \
                    "offered in SDP" if (s.src, s.sport) in view.offered and (s.dst, s.dport) in view.offered \
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


def leg_lines(view: CallView) -> list[str]:
    """Each leg's offer/answer exchanges: who offered, in which message, what each side announced."""
    lines, bare = [], 0
    for n, leg in enumerate(view.legs, 1):
        if not leg.exchanges:
            bare += 1
            if bare > MAX_BARE_LEGS:
                continue
        where = f" (Call-ID {leg.call_id})" if len(view.call_ids) > 1 else ""
        lines.append(f"   Leg {n}: {leg.ends[0]} <-> {leg.ends[1]}{where}"
                     + ("" if leg.exchanges else ": no SDP on this leg"))
        for k, x in enumerate(leg.exchanges, 1):
            if len(leg.exchanges) > 1:
                lines.append(f"     exchange {k} ({x.method} CSeq {x.cseq})")
            if x.answer is None:
                lines.append("       SDP answer: none seen" + (f" (offer rejected {x.rejected})" if x.rejected else ""))
            seen_in_order = sorted(((role, seen) for role, seen in (("offer", x.offer), ("answer", x.answer),
                                                                     ("preview", x.preview)) if seen is not None),
                                   key=lambda item: item[1].frame)
            for role, seen in seen_in_order:
                label = "preview (SDP of a non-reliable 18x, not the answer)" if role == "preview" else role
                lines.append(f"       SDP {label} from {seen.sender} in {seen.message} (frame {seen.frame}):")
                lines += [f"         {text}" for text in media_texts(seen.sdp)]
        if leg.dropped_exchanges:
            lines.append(f"     ({leg.dropped_exchanges} older exchange(s) not kept)")
    if bare > MAX_BARE_LEGS:
        lines.append(f"   ... and {bare - MAX_BARE_LEGS} more leg(s) without SDP (summary.json lists every leg)")
    if view.dropped_legs:
        lines.append(f"   {view.dropped_legs} message(s) on legs beyond {MAX_LEGS} per Call-ID were not followed")
    return lines


def media_texts(sdp) -> list[str]:
    out = []
    for m in sdp_summary(sdp)["media"]:
        crypto = ", ".join(x["suite"] for x in m["crypto"]) or "no a=crypto"
        out.append(f"{m['kind']} {m['address']}:{m['port']} {m['proto']}  "
                   f"codecs {', '.join(m['codecs']) or ' '.join(m['formats']) or '-'}  {crypto}"
                   + (f"  a={m['direction']}" if m["direction"] else "")
                   + ("  a=fingerprint" if m["fingerprint"] else "") + ("  a=zrtp-hash" if m["zrtp_hash"] else ""))
    return out


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.@" else "_" for ch in text)[:80]
