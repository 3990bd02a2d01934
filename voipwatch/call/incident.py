"""The evidence bundle of one incident: its packets, its findings and its timeline.

A packet belongs to the incident when, within the incident's time span (its first to its last finding's
activity, inclusive), it is a UDP or TCP datagram to or from one of its actor addresses, or a frame
sent by one of its actor MACs; the SIP messages of the calls its findings name belong to it whatever
their addresses (a proxy's onward leg). Frames keep their original order and link layer (call.pcap's
writer), so tshark reads the bundle's incident.pcap as it reads the capture.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from dissectors.net import Datagram, NetworkDecoder, Skipped
from voipwatch.alerts import alert_event
from voipwatch.analyze import AnalysisResult
from voipwatch.call.bundle import write_pcap
from voipwatch.capture import read_captures
from voipwatch.incidents import Incident, one_line
from voipwatch.records import Frame, SipMessage
from voipwatch.safe_text import json_line, visible, visible_lines


def find_incident(result: AnalysisResult, incident_id: str) -> Incident | None:
    """The incident with this id, or the one that absorbed it (merged_ids)."""
    return next((i for i in result.incidents if incident_id == i.id or incident_id in i.merged_ids), None)


def incident_frames(paths: list[str], result: AnalysisResult, incident: Incident) -> list[Frame]:
    """Every frame of the incident (see the module docstring), in capture order."""
    ids = {incident.id, *incident.merged_ids}
    call_ids = {a.call_id for a in result.alerts if a.incident in ids and a.call_id}
    sip_frames = {m.pkt.frame for m in result.records[SipMessage] if m.call_id in call_ids}
    addresses = {a[3:] for a in incident.actors if a.startswith("ip:")}
    macs = {a[4:].lower() for a in incident.actors if a.startswith("mac:")}
    decoder = NetworkDecoder()
    frames = []
    for item in read_captures(paths):
        if type(item) is not Frame:
            continue
        keep = item.frame in sip_frames
        if not keep and incident.first_ts <= item.ts <= incident.last_ts:
            got = decoder.decode(item)
            if type(got) is Datagram:
                keep = got.meta.src in addresses or got.meta.dst in addresses or (got.src_mac or "").lower() in macs
            elif type(got) is Skipped:
                keep = (got.src_mac or "").lower() in macs
        if keep:
            frames.append(item)
    return frames


def investigate_incident(paths: list[str], settings, incident_id: str, out_dir: str | None) -> tuple[str, int]:
    """The terminal text for the incident and, with out_dir, its bundle; (text, 1) or (why, 0)."""
    from voipwatch.analyze import analyze_files
    result = analyze_files(paths, settings)
    incident = find_incident(result, incident_id)
    if incident is None:
        known = ", ".join(i.id for i in result.incidents[:10])
        return visible(f"no incident {incident_id} in these captures (incidents: {known or 'none'})") + "\n", 0
    ids = {incident.id, *incident.merged_ids}
    alerts = [a for a in result.alerts if a.incident in ids]
    lines = [one_line(incident), f"   victims: {', '.join(incident.victims) or '-'}", ""]
    lines += [f"   {_clock(a.ts)}  {a.severity:<8} {a.name}  {a.msg}" for a in alerts]
    if out_dir:
        out = Path(out_dir)
        summary = write_incident_bundle(incident, alerts, incident_frames(paths, result, incident), out)
        lines += ["", f"evidence bundle: {out} ({summary['incident_pcap_packets']} packets in incident.pcap, "
                      f"{len(alerts)} findings; manifest.json lists SHA-256 of every file)"]
    return visible_lines("\n".join(lines)) + "\n", 1


def write_incident_bundle(incident: Incident, alerts: list, frames: list[Frame], out: Path) -> dict:
    """incident.pcap, findings.jsonl, timeline.png, summary.json and manifest.json in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    write_pcap(frames, out / "incident.pcap")
    with open(out / "findings.jsonl", "w", encoding="utf-8") as fh:
        for a in alerts:
            fh.write(json_line(alert_event(a), default=str) + "\n")
    _timeline_png(incident, alerts, out / "timeline.png")
    summary = {
        "incident": incident.id, "merged_ids": list(incident.merged_ids), "actors": list(incident.actors),
        "victims": list(incident.victims), "first_ts": incident.first_ts, "last_ts": incident.last_ts,
        "phases": list(incident.phases), "max_severity": incident.max_severity, "findings": len(alerts),
        "timeline": [{"first_ts": a.ts, "last_ts": a.last_ts, "severity": a.severity, "name": a.name, "id": alert_event(a)["alert"]["id"], "msg": a.msg} for a in alerts],
        "incident_pcap_packets": len(frames),
        "packets_rule": "UDP/TCP to or from an actor address, or frames from an actor MAC, between first_ts and "
                        "last_ts inclusive; and the SIP messages of the findings' calls",
    }
    (out / "summary.json").write_text(json_line(summary, indent=2, default=str) + "\n", encoding="utf-8")
    manifest = {p.name: {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "bytes": p.stat().st_size}
                for p in sorted(out.iterdir()) if p.is_file() and p.name != "manifest.json"}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return summary


def _timeline_png(incident: Incident, alerts: list, path: Path) -> None:
    """The incident's findings over capture time, one row per alert name."""
    from voipwatch.report.figures import SEVERITY_COLORS, STYLE, _new_figure, _time_axis
    from matplotlib import rc_context
    names = sorted({a.name for a in alerts}, key=lambda n: min(a.ts for a in alerts if a.name == n))
    with rc_context(STYLE):
        fig = _new_figure(10.0, 1.2 + 0.3 * len(names))
        ax = fig.add_axes((0.33, 0.8 / (1.2 + 0.3 * len(names)), 0.64, 0.3 * len(names) / (1.2 + 0.3 * len(names))))
        for a in alerts:
            y, color = names.index(a.name), SEVERITY_COLORS.get(a.severity, "#6b7280")
            ax.plot([a.ts / 86400.0, a.last_ts / 86400.0], [y, y], color=color, linewidth=6, solid_capstyle="butt")
            ax.plot([a.ts / 86400.0], [y], marker="o", color=color, linestyle="none")
        ax.set_yticks(range(len(names)), labels=names, fontsize=8)
        ax.set_ylim(len(names) - 0.5, -0.5)
        _time_axis(ax)
        ax.set_title(visible(f"{incident.id}: {' > '.join(incident.phases)}"))
        fig.savefig(path, format="png", metadata={"Software": None})


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts))
