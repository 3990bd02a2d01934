#!/usr/bin/env python3
"""benchmark.py --hostile: voipwatch on adversarial input, in both paths, with its caps.

Three captures of N packets each (default 1,000,000), generated once into WORKDIR/hostile/:

- `rtp_like`: N one-packet UDP flows from N sources whose payload looks like RTP (first byte 0x80:
  version 2, RFC 3550 §5.1; a 12-byte header and 160 bytes, a G.711 20 ms packet);
- `invite`: an INVITE flood, N INVITEs with distinct Call-IDs (and tags, branches, SDP ports) from
  one source to one PBX;
- `register`: N REGISTERs for N distinct users from one source.

Frames are Ethernet/IPv4/UDP at 50,000 packets/s of capture time (the flood rate of issue 13),
built from one template per kind with fixed-width fields patched in place (struct.pack_into), with
correct IPv4 and UDP checksums. For each capture, `voipwatch analyze` (batch, --jobs 1) and
`voipwatch monitor -r` (the streaming path) run as measured children (measure.run_measured): peak
memory, wall and CPU time, messages/s, the caps hit (summary.json anomalies ending in _overflow,
the monitor's final stats.jsonl caps_hit) and the alerts raised, against the targets of issue 13:
peak memory < 400 MB in both paths, and a SIP flood analysed in < 30 s per million messages.

    python scripts/hostile.py gen invite 1000 /tmp/invite.pcap     # just write one capture
"""
from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import struct
import sys
from collections import Counter
from pathlib import Path

from measure import probe_voipwatch, run_measured, summarize, tail, voipwatch_command, warm_cache

KINDS = ("rtp_like", "invite", "register")
SIP_KINDS = ("invite", "register")
TARGET_PEAK_MB = 400.0
TARGET_S_PER_MILLION = 30.0

RATE_PPS = 50_000                    # one frame every 20 us of capture time
START_S = 1_700_000_000
PBX, ATTACKER = bytes((10, 110, 0, 2)), bytes((203, 0, 113, 66))
PBX_MAC, ROUTER_MAC = bytes.fromhex("02000a6e0002"), bytes.fromhex("020000000001")
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
RECORD = struct.Struct("<IIII")
ETH, IP, UDP = 14, 14, 34            # where each header starts in a frame
PAYLOAD = 42

INVITE = (
    "INVITE sip:100@10.110.0.2 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 203.0.113.66:5060;branch=z9hG4bK{N}\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:flood@203.0.113.66>;tag={N}\r\n"
    "To: <sip:100@10.110.0.2>\r\n"
    "Call-ID: {N}@203.0.113.66\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:flood@203.0.113.66:5060>\r\n"
    "User-Agent: hostile-bench\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: {L}\r\n\r\n")
SDP = ("v=0\r\no=- 1 1 IN IP4 203.0.113.66\r\ns=-\r\nc=IN IP4 203.0.113.66\r\nt=0 0\r\n"
       "m=audio {P} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
REGISTER = (
    "REGISTER sip:10.110.0.2 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 203.0.113.66:5060;branch=z9hG4bK{N}\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:u{U}@10.110.0.2>;tag={N}\r\n"
    "To: <sip:u{U}@10.110.0.2>\r\n"
    "Call-ID: {N}@203.0.113.66\r\n"
    "CSeq: 1 REGISTER\r\n"
    "Contact: <sip:u{U}@203.0.113.66:5060>\r\n"
    "Expires: 3600\r\n"
    "User-Agent: hostile-bench\r\n"
    "Content-Length: 0\r\n\r\n")
HEX, USER, PORT = "{N}", "{U}", "{P}"
HEX_WIDTH, USER_WIDTH, PORT_WIDTH = 8, 7, 5


def _sum16(data: bytes | bytearray) -> int:
    """One's complement sum (RFC 1071) as a residue mod 0xFFFF (2**16 is 1 mod 0xFFFF)."""
    return int.from_bytes(data + (b"\0" if len(data) & 1 else b""), "big") % 0xFFFF


def _template(payload: bytes, src: bytes, sport: int, dport: int) -> bytearray:
    ulen = 8 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 0, 0x4000, 64, 17, 0, src, PBX)
    udp = struct.pack("!HHHH", sport, dport, ulen, 0)
    return bytearray(PBX_MAC + ROUTER_MAC + b"\x08\x00" + ip + udp + payload)


def _sip_template(kind: str) -> tuple[bytearray, dict[str, list[int]]]:
    """The frame template of one SIP kind and where each fixed-width field sits in it."""
    if kind == "invite":
        body = SDP.replace(PORT, "0" * PORT_WIDTH)
        text = INVITE.replace("{L}", str(len(body))) + SDP
    else:
        text = REGISTER
    fields: dict[str, list[int]] = {}
    widths = {HEX: HEX_WIDTH, USER: USER_WIDTH, PORT: PORT_WIDTH}
    parts = re.split("({N}|{U}|{P})", text)          # marks in text order: each offset after the last
    out = ""
    for part in parts:
        if part in widths:
            fields.setdefault(part, []).append(PAYLOAD + len(out))
            part = "0" * widths[part]
        out += part
    return _template(out.encode(), ATTACKER, 5060, 5060), fields


def generate(kind: str, count: int, out: Path) -> None:
    """Write the capture of one kind (see the module docstring)."""
    if kind == "rtp_like":
        frame = _template(b"\x80\x00" + bytes(10) + b"\xff" * 160, bytes(4), 0, 30000)
        fields: dict[str, list[int]] = {}
    else:
        frame, fields = _sip_template(kind)
    ulen = len(frame) - UDP
    record = bytearray(RECORD.size)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb", buffering=8 << 20) as f:
        f.write(PCAP_HEADER)
        for n in range(count):
            if kind == "rtp_like":
                # one flow per source 10.64.0.0 + n, each a single packet with its own SSRC
                src = struct.pack("!I", 0x0A400000 + n)
                frame[IP + 12:IP + 16] = src
                struct.pack_into("!H", frame, UDP, 16384 + 2 * (n % 8192))
                struct.pack_into("!HII", frame, PAYLOAD + 2, n & 0xFFFF, (n * 160) & 0xFFFFFFFF,
                                 (n * 2654435761) & 0xFFFFFFFF)
            else:
                hexid = b"%08x" % n
                for at in fields[HEX]:
                    frame[at:at + HEX_WIDTH] = hexid
                for at in fields.get(USER, ()):
                    frame[at:at + USER_WIDTH] = b"%07d" % n
                for at in fields.get(PORT, ()):
                    frame[at:at + PORT_WIDTH] = b"%05d" % (10000 + 2 * (n % 25000))
            struct.pack_into("!HH", frame, IP + 4, n & 0xFFFF, 0x4000)
            struct.pack_into("!H", frame, IP + 10, 0)
            struct.pack_into("!H", frame, IP + 10, 0xFFFF - _sum16(frame[IP:IP + 20]))
            struct.pack_into("!H", frame, UDP + 6, 0)
            pseudo = frame[IP + 12:IP + 20] + struct.pack("!HH", 17, ulen)
            struct.pack_into("!H", frame, UDP + 6, 0xFFFF - (_sum16(pseudo) + _sum16(frame[UDP:])) % 0xFFFF)
            ts_us = n * (1_000_000 // RATE_PPS)
            RECORD.pack_into(record, 0, START_S + ts_us // 1_000_000, ts_us % 1_000_000, len(frame), len(frame))
            f.write(record)
            f.write(frame)
    tmp.replace(out)


def hostile_capture(workdir: Path, kind: str, count: int) -> Path:
    """The capture of one kind, generated once per count and generator version."""
    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:8]
    folder = workdir / "hostile"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}-{count}-{code}.pcap"
    if not path.is_file():
        for old in folder.glob(f"{kind}-{count}-*.pcap"):
            old.unlink()
        print(f"generating {path.name} ...", flush=True)
        generate(kind, count, path)
    return path


# ----------------------------------------------------------------------------- running


def _caps_batch(out: Path) -> tuple[dict, dict]:
    """(caps hit, alerts by name) from an analyze run's summary.json."""
    summary = json.loads((out / "summary.json").read_text())
    caps = {k: v for k, v in summary.get("anomalies_by_reason", {}).items() if k.endswith("_overflow")}
    return caps, summary.get("alerts_by_name", {})


def _caps_monitor(out: Path) -> tuple[dict, dict]:
    """(caps hit, alerts by name) from a monitor run's last stats.jsonl record and alerts.jsonl,
    read a line at a time (this process must stay small: its peak RSS is its children's floor)."""
    caps: dict = {}
    with open(out / "stats.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                caps = json.loads(line).get("caps_hit", caps)
    names: Counter = Counter()
    alerts = out / "alerts.jsonl"
    if alerts.is_file():
        with open(alerts, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    names[json.loads(line).get("alert", {}).get("name", "?")] += 1
    return caps, dict(sorted(names.items()))


PATHS = {
    "analyze": (lambda cap, out: ["analyze", str(cap), "-o", str(out), "--format", "csv", "--jobs", "1"], _caps_batch),
    "monitor -r": (lambda cap, out: ["monitor", "-r", str(cap), "-o", str(out)], _caps_monitor),
}


def run(args, workdir: Path) -> int:
    """The --hostile run; exit 1 with --fail-on-target when a target fails, 2 when voipwatch cannot run."""
    vw_cmd, vw_env = voipwatch_command(args.voipwatch)
    problem, _ = probe_voipwatch(vw_cmd, vw_env)
    if problem:
        print(f"error: voipwatch cannot be measured: {problem}", file=sys.stderr)
        return 2
    kinds = args.hostile_kinds.split(",")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        print(f"error: unknown --hostile-kinds {', '.join(unknown)} (known: {', '.join(KINDS)})", file=sys.stderr)
        return 2
    count = args.hostile_count
    results = []
    logs = workdir / "hostile" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        capture = hostile_capture(workdir, kind, count)
        warm_cache(capture)
        for path, (argv, read_caps) in PATHS.items():
            tag = f"{kind}-{path.split()[0]}"
            runs, caps, alerts = [], {}, {}
            for rep in range(args.repeat):
                out = workdir / "hostile" / "out" / tag
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                r = run_measured([*vw_cmd, *argv(capture, out)], logs / f"{tag}-r{rep}.out", logs / f"{tag}-r{rep}.err",
                                 env=vw_env, timeout=args.timeout)
                runs.append(r)
                print(f"  {kind:<9} {path:<11} run {rep + 1}/{args.repeat}: {r['wall_s']:.1f} s, "
                      f"{r['peak_mb']:.0f} MB, rc {r['returncode']}", flush=True)
                if r["returncode"] == 0:
                    caps, alerts = read_caps(out)
                else:
                    print(f"    FAILED: {shlex.join([*vw_cmd, *argv(capture, out)])}\n{tail(r['stderr'], 5)}")
            s = summarize(runs, count)
            peak_ok = s.get("ok") and s["peak_mb"] < TARGET_PEAK_MB
            per_million = s["wall_s"] * 1_000_000 / count if s.get("ok") else None
            time_target = "N/A" if kind not in SIP_KINDS or per_million is None else \
                ("PASS" if per_million < TARGET_S_PER_MILLION else "FAIL")
            results.append(dict(kind=kind, path=path, capture=str(capture), messages=count, **s,
                                s_per_million=round(per_million, 1) if per_million else None,
                                caps_hit=caps, alerts_by_name=alerts, runs=runs,
                                targets=dict(memory=("PASS" if peak_ok else "FAIL") if s.get("ok") else "N/A",
                                             time=time_target)))
    _print(results, count)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(dict(kind="voipwatch-benchmark-hostile", messages=count,
                                                   targets=dict(peak_mb=TARGET_PEAK_MB,
                                                                s_per_million_sip=TARGET_S_PER_MILLION),
                                                   results=results), indent=1) + "\n")
        print(f"JSON: {args.json}")
    if args.fail_on_target and any(v == "FAIL" for r in results for v in r["targets"].values()):
        return 1
    return 0


def _print(results: list[dict], count: int) -> None:
    print(f"\nhostile input, {count:,} packets each; median of the repeats, peak = highest")
    hdr = (f"{'input':<10}{'path':<12}{'wall s':>8}{'CPU s':>8}{'msgs/s':>9}{'s/1M':>7}{'peak MB':>9}"
           f"  {'mem<400':<8}{'<30s/1M':<8} caps hit / alerts")
    print(hdr)
    print("-" * (len(hdr) + 20))
    for r in results:
        if not r.get("ok"):
            print(f"{r['kind']:<10}{r['path']:<12}  failed (see above)")
            continue
        caps = ", ".join(f"{k} {v:,}" for k, v in r["caps_hit"].items()) or "none"
        alerts = ", ".join(f"{k} {v:,}" for k, v in r["alerts_by_name"].items()) or "none"
        print(f"{r['kind']:<10}{r['path']:<12}{r['wall_s']:>8.1f}{r['cpu_s']:>8.1f}{r['pps']:>9,}"
              f"{r['s_per_million']:>7.1f}{r['peak_mb']:>9.0f}  {r['targets']['memory']:<8}{r['targets']['time']:<8}"
              f" caps: {caps}\n{'':<48}alerts: {alerts}")
    print(f"targets (issue 13): peak memory < {TARGET_PEAK_MB:g} MB in both paths; a SIP flood "
          f"< {TARGET_S_PER_MILLION:g} s per million messages on one core")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 4 or argv[0] != "gen" or argv[1] not in KINDS:
        print(f"usage: hostile.py gen {{{','.join(KINDS)}}} COUNT OUT.pcap", file=sys.stderr)
        return 2
    generate(argv[1], int(argv[2]), Path(argv[3]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
