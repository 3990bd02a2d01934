#!/usr/bin/env python3
"""Deterministic generator of a large, realistic, labeled VoIP site capture.

Writes a classic pcap (Ethernet, microsecond timestamps) of one site seen on a trunk SPAN port:

* a PBX (B2BUA, media anchored on it) at 10.110.0.2 and N phones on the voice VLAN;
* G.711 calls (PCMU / PCMA) in both directions: INVITE with SDP, 100, 180, 200 with SDP, ACK,
  RTP both ways every 20 ms (160-byte payload), RTCP SR+SDES every ~5 s, BYE / 200; some calls
  fail (486 Busy Here, 404 Not Found) or are cancelled (CANCEL, 200, 487, ACK);
* REGISTER with a digest challenge (401, then REGISTER with Authorization, 200), refreshed every
  Expires/2 (reusing the nonce; every 4th refresh gets a stale=TRUE challenge), preceded by DNS
  (SRV _sip._udp then A) to a resolver; OPTIONS keep-alives from the PBX to every phone;
* background: DNS from PCs on the data VLAN, untagged management traffic (syslog, NTP), a few
  QinQ (802.1ad outer tag + 802.1Q inner tag) DNS exchanges, and a few misplaced phones (2 %)
  sitting on the data VLAN or untagged;
* optionally a sipvicious-like scan from the data VLAN every --scan-every-s seconds: an OPTIONS
  sweep of 10.110.0.0/24 with User-Agent friendly-scanner, then REGISTER extension guessing
  against the PBX (401 for an existing extension, 404 otherwise).

Everything is derived from --seed with one random.Random and a (ts, seq) heap, so two runs with
the same arguments write byte-identical files. IPv4 header and UDP checksums are correct, UDP
lengths and SIP Content-Length match, Call-IDs are unique, CSeq numbers are consistent.

Next to OUT.pcap it writes OUT.truth.json, the ground truth counted from what was actually
written (after the seeded loss and the --packets cut): see scripts/README.md for its format.

Example:
    python scripts/gen_site_capture.py -o /tmp/site.pcap                 # 2M packets, bench
    python scripts/gen_site_capture.py -o /tmp/soak.pcap --profile soak  # 24 h, RTP thinned
"""
from __future__ import annotations

import argparse
import hashlib
import heapq
import itertools
import json
import os
import random
import struct
import sys
import time
from dataclasses import dataclass, field

TRUTH_FORMAT_VERSION = 1

# Profile defaults: an option left unset on the command line takes its profile's value.
PROFILES: dict[str, dict[str, object]] = {
    "bench": dict(
        packets=2_000_000, calls_concurrent=300, duration_s=0.0, rtp_every=1,
        scan_every_s=0.0, options_every_s=60.0, qinq_every_s=10.0, data_dns_per_s=0.5,
    ),
    "soak": dict(
        packets=0, calls_concurrent=50, duration_s=86_400.0, rtp_every=100,
        scan_every_s=14_400.0, options_every_s=300.0, qinq_every_s=900.0, data_dns_per_s=0.2,
    ),
}

US = 1_000_000
PCAP_GLOBAL = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
REC = struct.Struct("<IIII")
TPID_VLAN = 0x8100
TPID_QINQ = 0x88A8
DOMAIN = "example.net"
PBX_NAME = "pbx.example.net"
REALM = "example.net"
PBX_UA = "Asterisk PBX 18.20.0"
SCANNER_UA = "friendly-scanner"
PHONE_UAS = (
    "Yealink SIP-T46S 66.86.0.15",
    "PolycomVVX-VVX_411-UA/6.4.3.5018",
    "Cisco-CP8865/12.8.1",
    "Grandstream GXP2170 1.0.11.23",
)
CODECS = ((0, "PCMU"), (8, "PCMA"))
DATA_NAMES = (
    "www.example.com", "mail.example.org", "intranet.example.net", "updates.example.com",
    "cdn.example.com", "login.example.net", "files.example.org", "time.example.net",
)
# Relative call attempt rate per hour of day (UTC), 1.0 = busy hour; interpolated linearly.
DAY_CURVE = (0.02, 0.02, 0.02, 0.02, 0.02, 0.03, 0.08, 0.30, 0.70, 0.92, 1.00, 0.95,
             0.60, 0.75, 1.00, 0.92, 0.80, 0.45, 0.20, 0.10, 0.06, 0.04, 0.03, 0.02)
# Call outcomes: (weight, outcome); inbound calls cannot get 404 (the PBX routes to a real phone).
OUTCOMES_OUT = ((0.84, "answer"), (0.06, "busy"), (0.04, "notfound"), (0.06, "cancel"))
OUTCOMES_IN = ((0.86, "answer"), (0.07, "busy"), (0.07, "cancel"))
RTP_PAYLOAD = 160
RTP_UDP_LEN = 8 + 12 + RTP_PAYLOAD
JT_SIZE = 4096


# ----------------------------------------------------------------------------- helpers

def ip4(s: str) -> bytes:
    return bytes(int(x) for x in s.split("."))


def mac(s: str) -> bytes:
    return bytes.fromhex(s.replace(":", ""))


def fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def words_sum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    return sum(struct.unpack("!%dH" % (len(data) // 2), data))


def dns_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"


def md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


def us_to_s(t: int) -> float:
    return round(t / US, 6)


@dataclass(eq=False)
class Segment:
    """Where a frame is seen on the trunk: its tag stack and a key for the truth file."""
    key: str
    tags: bytes
    ids: tuple[int, ...]


@dataclass(eq=False)
class Host:
    name: str
    ip: str
    mac: bytes
    seg: Segment
    ipid: int = 0

    def __post_init__(self) -> None:
        self.ipb = ip4(self.ip)


@dataclass(eq=False)
class Phone(Host):
    idx: int = 0
    ext: str = ""
    ua: str = ""
    password: str = ""
    reg_call_id: str = ""
    reg_cseq: int = 0
    reg_tag: str = ""
    nonce: str = ""
    nc: int = 0
    refreshes: int = 0
    registered: bool = False
    just_challenged: bool = False
    in_call: bool = False
    misplaced: bool = False
    # truth counters
    t_register: int = 0
    t_challenges: int = 0
    t_successes: int = 0
    t_failures: int = 0
    t_first_ts: int = -1
    t_last_ts: int = -1


@dataclass(eq=False)
class Call:
    call_id: str
    direction: str                 # "outbound" (phone -> PBX) | "inbound" (PBX -> phone)
    phone: Phone
    remote_number: str
    codec: tuple[int, str]
    outcome: str
    duration_us: int
    caller_tag: str
    phone_rtp: int
    pbx_rtp: int
    invite_branch: str = ""
    callee_tag: str = ""
    caller_cseq: int = 1
    callee_cseq: int = 0
    streams: list = field(default_factory=list)
    ended: bool = False
    replace: bool = False
    invite_headers: list = field(default_factory=list)
    # truth
    t_invite_ts: int = -1
    t_invite_frame: int = 0
    t_ringing_ts: int = -1
    t_final_status: int | None = None
    t_final_ts: int = -1
    t_cancel_ts: int = -1
    t_bye_ts: int = -1
    t_bye_from: str | None = None
    t_bye_ok: bool = False


class Stream:
    """One RTP stream: a preallocated frame template patched per packet (ts, IP id/checksum,
    UDP checksum, RTP marker/seq/timestamp, payload chunk)."""
    __slots__ = (
        "buf", "o_ipid", "o_udpck", "o_pay", "ipbase", "udpbase", "ipid", "pt", "seq0", "ts0",
        "tsinc", "interval", "start", "idx", "sig", "jo", "loss", "pool", "active",
        "npk", "first_idx", "last_idx", "first_ts", "last_ts", "first_frame", "octets",
        "src", "sport", "dst", "dport", "ssrc", "codec", "seg", "call", "peer", "ttlproto",
    )


# ----------------------------------------------------------------------------- generator

class SiteGenerator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.a = args
        self.rng = random.Random(args.seed)
        self.heap: list = []
        self.seq = itertools.count()
        self.start = int(args.start) * US
        self.end = self.start + int(args.duration_s * US) if args.duration_s > 0 else None
        self.limit = args.packets if args.packets > 0 else None
        self.frames = 0
        self.now = 0
        self.out_bytes = len(PCAP_GLOBAL)
        self.call_ids: set[str] = set()
        self.jt = self._jitter_table()
        self.pools = {pt: self._payload_pool(pt) for pt, _ in CODECS}
        self.pbx_ports_used: set[int] = set()
        # RTCP every 5 s, thinned along with the RTP (--rtp-every 100: every 50 s)
        self.rtcp_every_us = 5 * US * max(1, args.rtp_every // 10)
        self._build_network()
        # truth
        self.t_sip_req: dict[str, int] = {}
        self.t_sip_resp: dict[str, int] = {}
        self.t_sip_resp_by_method: dict[str, dict[str, int]] = {}
        self.t_frames_by_seg: dict[str, int] = {}
        self.t_dns = dict(queries=0, responses=0)
        self.t_dns_qtype: dict[str, int] = {}
        self.t_dns_rcode: dict[str, int] = {}
        self.t_dns_by_seg: dict[str, int] = {}
        self.t_rtcp = 0
        self.t_call_ids: set[str] = set()
        self.t_options = dict(requests=0, responses=0)
        self.t_other = dict(syslog=0, ntp=0)
        self.calls: list[Call] = []
        self.streams: list[Stream] = []
        self.scans: list[dict] = []
        self.first_ts: int | None = None
        self.last_ts: int | None = None

    # ------------------------------------------------------------------ set-up
    def _jitter_table(self) -> list[int]:
        # standard normal deviates in thousandths, clipped at +-3.5 sigma
        return [int(max(-3500, min(3500, round(self.rng.gauss(0.0, 1.0) * 1000))))
                for _ in range(JT_SIZE)]

    def _payload_pool(self, pt: int) -> list[tuple[bytes, int]]:
        # G.711 "comfort" audio: low-amplitude codes around the codec's silence value
        pool = []
        for _ in range(16):
            if pt == 0:   # mu-law: 0xFF / 0x7F are +-0
                b = bytes((0xFF - self.rng.randrange(12)) if self.rng.random() < 0.5
                          else (0x7F - self.rng.randrange(12)) for _ in range(RTP_PAYLOAD))
            else:         # A-law: 0xD5 / 0x55 are +-0 (even bits inverted)
                b = bytes((0xD5 ^ self.rng.randrange(12)) if self.rng.random() < 0.5
                          else (0x55 ^ self.rng.randrange(12)) for _ in range(RTP_PAYLOAD))
            pool.append((b, words_sum(b)))
        return pool

    def _segment(self, key: str, tags: list[tuple[int, int, int]]) -> Segment:
        raw = b"".join(struct.pack("!HH", tpid, (pcp << 13) | vid) for tpid, vid, pcp in tags)
        return Segment(key, raw, tuple(vid for _, vid, _ in tags))

    def _build_network(self) -> None:
        a, rng = self.a, self.rng
        for v in (a.vlan_voice, a.vlan_data, a.vlan_qinq_outer):
            if not 1 <= v <= 4094:
                raise SystemExit(f"VLAN id {v} out of range 1..4094")
        self.seg_voice = self._segment(str(a.vlan_voice), [(TPID_VLAN, a.vlan_voice, 5)])
        self.seg_data = self._segment(str(a.vlan_data), [(TPID_VLAN, a.vlan_data, 0)])
        self.seg_native = self._segment("untagged", [])
        self.seg_qinq = self._segment(f"{a.vlan_qinq_outer}.{a.vlan_data}",
                                      [(TPID_QINQ, a.vlan_qinq_outer, 0), (TPID_VLAN, a.vlan_data, 0)])
        self.router_mac = mac("00:00:5e:00:01:01")
        self.pbx = Host("pbx", "10.110.0.2", mac("52:54:00:6e:00:02"), self.seg_voice)
        self.resolver = Host("resolver", "10.1.0.53", mac("52:54:00:01:00:35"), self.seg_native)
        self.scanner = Host("scanner", "10.20.0.66", mac("3c:97:0e:20:00:42"), self.seg_data)
        self.switch = Host("switch", "10.0.0.2", mac("00:1b:54:00:00:02"), self.seg_native)
        self.syslogd = Host("syslog", "10.0.0.10", mac("52:54:00:00:00:0a"), self.seg_native)
        self.ntpd = Host("ntp", "10.0.0.1", mac("52:54:00:00:00:01"), self.seg_native)
        self.pcs = [Host(f"pc{i}", f"10.20.1.{10 + i}", mac(f"a4:bb:6d:14:01:{10 + i:02x}"), self.seg_data)
                    for i in range(40)]
        self.remote_pcs = [Host(f"rpc{i}", f"10.30.0.{10 + i}", mac(f"a4:bb:6d:1e:00:{10 + i:02x}"),
                                self.seg_qinq) for i in range(4)]
        for h in [self.pbx, self.resolver, self.scanner, self.switch, self.syslogd, self.ntpd,
                  *self.pcs, *self.remote_pcs]:
            h.ipid = rng.randrange(65536)
        self.phones: list[Phone] = []
        n_misplaced = 0
        for i in range(a.phones):
            misplaced = a.misplaced_phones and i % 50 == 49
            if misplaced:
                k = n_misplaced
                n_misplaced += 1
                seg = self.seg_data if k % 2 == 0 else self.seg_native
                ip = f"10.20.2.{20 + k}" if k % 2 == 0 else f"10.0.2.{20 + k}"
            else:
                seg, ip = self.seg_voice, f"10.110.{i // 200}.{20 + i % 200}"
            p = Phone(f"phone{i}", ip, bytes([0x00, 0x04, 0xF2, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF]),
                      seg, idx=i, ext=str(200 + i), ua=PHONE_UAS[i % len(PHONE_UAS)],
                      password=f"{rng.getrandbits(48):012x}", misplaced=bool(misplaced))
            p.ipid = rng.randrange(65536)
            p.reg_call_id = self.new_call_id(p.ip)
            p.reg_tag = self.hexid(32)
            p.reg_cseq = rng.randrange(1, 100)
            self.phones.append(p)
        self.free_phones = list(self.phones)
        self.ext_set = {p.ext for p in self.phones}

    # ------------------------------------------------------------------ utilities
    def hexid(self, bits: int = 64) -> str:
        return f"{self.rng.getrandbits(bits):0{bits // 4}x}"

    def branch(self) -> str:
        return "z9hG4bK" + self.hexid(48)

    def new_call_id(self, host: str) -> str:
        while True:
            cid = f"{self.hexid(96)}@{host}"
            if cid not in self.call_ids:
                self.call_ids.add(cid)
                return cid

    def at(self, ts: int, fn, *args) -> None:
        """Schedule fn(ts, *args); never before the event being run (the output stays in time order)."""
        if ts < self.now:
            ts = self.now
        heapq.heappush(self.heap, (ts, next(self.seq), 1, fn, args))

    def ms(self, lo: float, hi: float) -> int:
        """A random delay in microseconds between lo and hi milliseconds."""
        return int(self.rng.uniform(lo, hi) * 1000)

    def l2(self, src: Host, dst: Host, seg: Segment) -> bytes:
        smac = src.mac if src.seg is seg else self.router_mac
        dmac = dst.mac if dst.seg is seg else self.router_mac
        return dmac + smac + seg.tags + b"\x08\x00"

    def _count_ts(self, ts: int) -> None:
        if self.first_ts is None:
            self.first_ts = ts
        self.last_ts = ts

    # ------------------------------------------------------------------ frame output
    def udp(self, ts: int, src: Host, sport: int, dst: Host, dport: int, seg: Segment,
            payload: bytes, tos: int = 0) -> int:
        """Write one UDP/IPv4 frame; return its 1-based frame number."""
        src.ipid = (src.ipid + 1) & 0xFFFF
        ttl = 64 if src.seg is seg else 63
        ulen = 8 + len(payload)
        iph = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + ulen, src.ipid, 0x4000, ttl, 17, 0,
                          src.ipb, dst.ipb)
        ipck = ~fold(words_sum(iph)) & 0xFFFF
        ps = words_sum(src.ipb + dst.ipb) + 17 + ulen + sport + dport + ulen + words_sum(payload)
        uck = (~fold(ps) & 0xFFFF) or 0xFFFF
        frame = b"".join((self.l2(src, dst, seg), iph[:10], struct.pack("!H", ipck), iph[12:],
                          struct.pack("!HHHH", sport, dport, ulen, uck), payload))
        if len(frame) < 60:
            frame += b"\0" * (60 - len(frame))
        self.out.write(REC.pack(ts // US, ts % US, len(frame), len(frame)))
        self.out.write(frame)
        self.out_bytes += 16 + len(frame)
        self.frames += 1
        self.t_frames_by_seg[seg.key] = self.t_frames_by_seg.get(seg.key, 0) + 1
        self._count_ts(ts)
        return self.frames

    def sip(self, ts: int, src: Host, dst: Host, seg: Segment, text: str, cseq_method: str,
            sport: int = 5060, dport: int = 5060) -> int:
        first = text[:text.index(" ")]
        if first == "SIP/2.0":
            code = text[8:11]
            self.t_sip_resp[code] = self.t_sip_resp.get(code, 0) + 1
            d = self.t_sip_resp_by_method.setdefault(cseq_method, {})
            d[code] = d.get(code, 0) + 1
        else:
            self.t_sip_req[first] = self.t_sip_req.get(first, 0) + 1
        i = text.index("\r\nCall-ID: ") + 11
        self.t_call_ids.add(text[i:text.index("\r", i)])
        return self.udp(ts, src, sport, dst, dport, seg, text.encode(), tos=0x60)

    @staticmethod
    def sip_msg(start: str, headers: list[tuple[str, str]], body: str = "",
                ctype: str = "application/sdp") -> str:
        lines = [start] + [f"{k}: {v}" for k, v in headers]
        if body:
            lines.append(f"Content-Type: {ctype}")
        lines.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(lines) + "\r\n\r\n" + body

    def sdp(self, host: Host, port: int, codec: tuple[int, str], offer: bool, sess: int) -> str:
        pt, name = codec
        other = 8 if pt == 0 else 0
        other_name = "PCMA" if pt == 0 else "PCMU"
        fmts = f"{pt} {other} 101" if offer else f"{pt} 101"
        lines = ["v=0", f"o=- {sess} {sess} IN IP4 {host.ip}", "s=-", f"c=IN IP4 {host.ip}", "t=0 0",
                 f"m=audio {port} RTP/AVP {fmts}", f"a=rtpmap:{pt} {name}/8000"]
        if offer:
            lines.append(f"a=rtpmap:{other} {other_name}/8000")
        lines += ["a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=ptime:20", "a=sendrecv"]
        return "\r\n".join(lines) + "\r\n"

    def dns_exchange(self, ts: int, client: Host, seg: Segment, qname: str, qtype: int,
                     answers: list[bytes], rcode: int = 0, additional: list[bytes] = ()) -> int:
        """Query now, response after the resolver's RTT; returns the response time."""
        qid = self.rng.randrange(65536)
        sport = self.rng.randrange(32768, 61000)
        q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + dns_name(qname) + struct.pack("!HH", qtype, 1)
        self.udp(ts, client, sport, self.resolver, 53, seg, q)
        self._dns_count(seg, qtype, None)
        resp = (struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, len(answers), 0, len(additional))
                + q[12:] + b"".join(answers) + b"".join(additional))
        t2 = ts + self.ms(0.4, 12)
        self.at(t2, self._dns_resp, client, sport, seg, resp, qtype, rcode)
        return t2

    def _dns_resp(self, ts: int, client: Host, sport: int, seg: Segment, resp: bytes, qtype: int,
                  rcode: int) -> None:
        self.udp(ts, self.resolver, 53, client, sport, seg, resp)
        self._dns_count(seg, qtype, rcode)

    QTYPES = {1: "A", 28: "AAAA", 33: "SRV"}
    RCODES = {0: "NOERROR", 3: "NXDOMAIN"}

    def _dns_count(self, seg: Segment, qtype: int, rcode: int | None) -> None:
        self.t_dns_by_seg[seg.key] = self.t_dns_by_seg.get(seg.key, 0) + 1
        if rcode is None:
            self.t_dns["queries"] += 1
            q = self.QTYPES[qtype]
            self.t_dns_qtype[q] = self.t_dns_qtype.get(q, 0) + 1
        else:
            self.t_dns["responses"] += 1
            r = self.RCODES[rcode]
            self.t_dns_rcode[r] = self.t_dns_rcode.get(r, 0) + 1

    @staticmethod
    def rr_a(ip: str, ttl: int = 300, name: bytes = b"\xc0\x0c") -> bytes:
        return name + struct.pack("!HHIH", 1, 1, ttl, 4) + ip4(ip)

    # ------------------------------------------------------------------ registrations
    def register_start(self, ts: int, p: Phone, first: bool) -> None:
        t = ts
        if first:
            srv = dns_name(PBX_NAME)
            rr = b"\xc0\x0c" + struct.pack("!HHIH", 33, 1, 300, 6 + len(srv)) + struct.pack("!HHH", 10, 60, 5060) + srv
            t = self.dns_exchange(t, p, p.seg, f"_sip._udp.{DOMAIN}", 33, [rr],
                                  additional=[self.rr_a(self.pbx.ip, name=srv)])
            t += self.ms(0.2, 2)
            self.at(t, self._register_a, p, first)
        else:
            self._register_a(ts, p, first)

    def _register_a(self, ts: int, p: Phone, first: bool) -> None:
        t = self.dns_exchange(ts, p, p.seg, PBX_NAME, 1, [self.rr_a(self.pbx.ip)])
        self.at(t + self.ms(0.2, 2), self._register_send, p, first)

    def _reg_headers(self, p: Phone, branch: str, cseq: int) -> list[tuple[str, str]]:
        return [("Via", f"SIP/2.0/UDP {p.ip}:5060;branch={branch};rport"),
                ("Max-Forwards", "70"),
                ("From", f"\"{p.ext}\" <sip:{p.ext}@{DOMAIN}>;tag={p.reg_tag}"),
                ("To", f"\"{p.ext}\" <sip:{p.ext}@{DOMAIN}>"),
                ("Call-ID", p.reg_call_id),
                ("CSeq", f"{cseq} REGISTER")]

    def _register_send(self, ts: int, p: Phone, fresh: bool) -> None:
        """fresh: no credentials yet (first registration of the phone)."""
        p.reg_cseq += 1
        br = self.branch()
        h = self._reg_headers(p, br, p.reg_cseq)
        h += [("Contact", f"<sip:{p.ext}@{p.ip}:5060>;expires={self.a.expires}"),
              ("User-Agent", p.ua), ("Expires", str(self.a.expires)),
              ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, REFER, INFO")]
        if not fresh:
            p.nc += 1
            uri = f"sip:{DOMAIN}"
            cnonce = self.hexid(32)
            nc = f"{p.nc:08x}"
            ha1 = md5(f"{p.ext}:{REALM}:{p.password}")
            ha2 = md5(f"REGISTER:{uri}")
            resp = md5(f"{ha1}:{p.nonce}:{nc}:{cnonce}:auth:{ha2}")
            h.append(("Authorization",
                      f"Digest username=\"{p.ext}\", realm=\"{REALM}\", nonce=\"{p.nonce}\", uri=\"{uri}\", "
                      f"response=\"{resp}\", algorithm=MD5, cnonce=\"{cnonce}\", qop=auth, nc={nc}"))
        self.sip(ts, p, self.pbx, p.seg, self.sip_msg(f"REGISTER sip:{DOMAIN} SIP/2.0", h, ""), "REGISTER")
        p.t_register += 1
        if p.t_first_ts < 0:
            p.t_first_ts = ts
        p.t_last_ts = ts
        challenge = fresh or (p.refreshes > 0 and p.refreshes % 4 == 0 and not p.just_challenged)
        self.at(ts + self.ms(0.5, 4), self._register_reply, p, br, p.reg_cseq, challenge)

    def _register_reply(self, ts: int, p: Phone, br: str, cseq: int, challenge: bool) -> None:
        h = self._reg_headers(p, br, cseq)
        h[0] = ("Via", f"SIP/2.0/UDP {p.ip}:5060;branch={br};rport=5060;received={p.ip}")
        h[3] = ("To", f"\"{p.ext}\" <sip:{p.ext}@{DOMAIN}>;tag=as{self.hexid(32)}")
        h.pop(1)
        p.t_last_ts = ts
        if challenge:
            stale = p.nonce != ""
            p.nonce = self.hexid(64)
            p.nc = 0
            auth = f"Digest algorithm=MD5, realm=\"{REALM}\", nonce=\"{p.nonce}\", qop=\"auth\""
            if stale:
                auth += ", stale=TRUE"
            h += [("Server", PBX_UA), ("WWW-Authenticate", auth)]
            self.sip(ts, self.pbx, p, p.seg, self.sip_msg("SIP/2.0 401 Unauthorized", h), "REGISTER")
            p.t_challenges += 1
            p.just_challenged = True
            self.at(ts + self.ms(5, 25), self._register_send, p, False)
        else:
            h += [("Server", PBX_UA), ("Contact", f"<sip:{p.ext}@{p.ip}:5060>;expires={self.a.expires}"),
                  ("Expires", str(self.a.expires)), ("Date", time.strftime(
                      "%a, %d %b %Y %H:%M:%S GMT", time.gmtime(ts // US)))]
            self.sip(ts, self.pbx, p, p.seg, self.sip_msg("SIP/2.0 200 OK", h), "REGISTER")
            p.t_successes += 1
            p.just_challenged = False
            first_ok = not p.registered
            p.registered = True
            p.refreshes += 1
            # refresh at Expires/2 (a little earlier or later, like real phones)
            half = self.a.expires * US // 2
            self.at(ts + half + self.ms(-3000, 3000), self.register_start, p, False)
            if first_ok and self.a.options_every_s > 0:
                self.at(ts + self.ms(1000, self.a.options_every_s * 1000), self._options, p)

    # ------------------------------------------------------------------ OPTIONS keep-alives
    def _options(self, ts: int, p: Phone) -> None:
        cid = self.new_call_id(self.pbx.ip)
        br = self.branch()
        tag = f"as{self.hexid(32)}"
        h = [("Via", f"SIP/2.0/UDP {self.pbx.ip}:5060;branch={br};rport"),
             ("Max-Forwards", "70"),
             ("From", f"\"asterisk\" <sip:asterisk@{self.pbx.ip}>;tag={tag}"),
             ("To", f"<sip:{p.ext}@{p.ip}:5060>"),
             ("Contact", f"<sip:asterisk@{self.pbx.ip}:5060>"),
             ("Call-ID", cid), ("CSeq", "102 OPTIONS"), ("User-Agent", PBX_UA),
             ("Accept", "application/sdp")]
        self.sip(ts, self.pbx, p, p.seg, self.sip_msg(f"OPTIONS sip:{p.ext}@{p.ip}:5060 SIP/2.0", h), "OPTIONS")
        self.t_options["requests"] += 1
        self.at(ts + self.ms(0.3, 3), self._options_reply, p, h)
        self.at(ts + int(self.a.options_every_s * US) + self.ms(-200, 200), self._options, p)

    def _options_reply(self, ts: int, p: Phone, req: list[tuple[str, str]]) -> None:
        h = [x for x in req if x[0] in ("Via", "From", "Call-ID", "CSeq")]
        h.insert(2, ("To", f"<sip:{p.ext}@{p.ip}:5060>;tag={self.hexid(40)}"))
        h += [("Contact", f"<sip:{p.ext}@{p.ip}:5060>"), ("User-Agent", p.ua),
              ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, REFER, INFO"),
              ("Accept", "application/sdp")]
        self.sip(ts, p, self.pbx, p.seg, self.sip_msg("SIP/2.0 200 OK", h), "OPTIONS")
        self.t_options["responses"] += 1

    # ------------------------------------------------------------------ calls
    def _pick(self, choices: tuple[tuple[float, str], ...]) -> str:
        r = self.rng.random()
        acc = 0.0
        for w, v in choices:
            acc += w
            if r < acc:
                return v
        return choices[-1][1]

    def _pbx_port(self) -> int:
        while True:
            port = 10000 + 2 * self.rng.randrange(5000)
            if port not in self.pbx_ports_used:
                self.pbx_ports_used.add(port)
                return port

    def call_start(self, ts: int, replace: bool) -> None:
        """Start one call attempt; replace: bench mode, start another when this one is over."""
        rng = self.rng
        if not self.free_phones:
            if replace:
                self.at(ts + self.ms(500, 2000), self.call_start, True)
            return
        i = rng.randrange(len(self.free_phones))
        p = self.free_phones[i]
        self.free_phones[i] = self.free_phones[-1]
        self.free_phones.pop()
        p.in_call = True
        direction = "outbound" if rng.random() < 0.6 else "inbound"
        outcome = self._pick(OUTCOMES_OUT if direction == "outbound" else OUTCOMES_IN)
        remote = f"+1555{rng.randrange(10 ** 7):07d}"
        codec = CODECS[0] if rng.random() < 0.55 else CODECS[1]
        lo, hi = self.a.call_duration_s
        dur = int(min(hi, lo + rng.expovariate(1 / max(1e-3, (hi - lo) * 0.3))) * US)
        host = p.ip if direction == "outbound" else self.pbx.ip
        c = Call(self.new_call_id(host), direction, p, remote, codec, outcome, dur,
                 self.hexid(40), 16384 + 2 * rng.randrange(8192), self._pbx_port())
        c.replace = replace
        c.caller_cseq = rng.randrange(1, 200) if direction == "outbound" else 102
        c.callee_cseq = rng.randrange(1, 200) if direction == "inbound" else 102
        self._invite(ts, c)

    def _ends(self, c: Call) -> tuple[Host, Host]:
        """(caller host, callee host)"""
        return (c.phone, self.pbx) if c.direction == "outbound" else (self.pbx, c.phone)

    def _caller_uri(self, c: Call) -> str:
        return f"sip:{c.phone.ext}@{DOMAIN}" if c.direction == "outbound" else f"sip:{c.remote_number}@{DOMAIN}"

    def _callee_uri(self, c: Call) -> str:
        return f"sip:{c.remote_number}@{DOMAIN}" if c.direction == "outbound" else f"sip:{c.phone.ext}@{DOMAIN}"

    def _contact(self, h: Host) -> str:
        return f"<sip:{h.ext}@{h.ip}:5060>" if isinstance(h, Phone) else f"<sip:asterisk@{h.ip}:5060>"

    def _ua(self, h: Host) -> str:
        return h.ua if isinstance(h, Phone) else PBX_UA

    def _ruri(self, c: Call) -> str:
        return (f"sip:{c.remote_number}@{DOMAIN}" if c.direction == "outbound"
                else f"sip:{c.phone.ext}@{c.phone.ip}:5060")

    def _dialog_headers(self, c: Call, via_host: Host, branch: str, cseq: int, method: str,
                        to_tag: bool, from_caller: bool = True) -> list[tuple[str, str]]:
        fr = f"<{self._caller_uri(c)}>;tag={c.caller_tag}"
        to = f"<{self._callee_uri(c)}>" + (f";tag={c.callee_tag}" if to_tag else "")
        if not from_caller:
            fr, to = to, fr
        return [("Via", f"SIP/2.0/UDP {via_host.ip}:5060;branch={branch};rport"),
                ("Max-Forwards", "70"), ("From", fr), ("To", to), ("Call-ID", c.call_id),
                ("CSeq", f"{cseq} {method}")]

    def _invite(self, ts: int, c: Call) -> None:
        caller, callee = self._ends(c)
        c.invite_branch = self.branch()
        h = self._dialog_headers(c, caller, c.invite_branch, c.caller_cseq, "INVITE", False)
        h += [("Contact", self._contact(caller)), ("User-Agent", self._ua(caller)),
              ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, REFER, INFO")]
        port = c.phone_rtp if caller is c.phone else c.pbx_rtp
        body = self.sdp(caller, port, c.codec, True, self.rng.randrange(10 ** 9))
        frame = self.sip(ts, caller, callee, c.phone.seg,
                         self.sip_msg(f"INVITE {self._ruri(c)} SIP/2.0", h, body), "INVITE")
        c.t_invite_ts, c.t_invite_frame = ts, frame
        self.calls.append(c)
        c.invite_headers = h
        self.at(ts + self.ms(0.5, 5), self._provisional, c, 100)

    def _resp_headers(self, c: Call, code_tag: bool) -> list[tuple[str, str]]:
        caller, _ = self._ends(c)
        src = [x for x in c.invite_headers if x[0] in ("Via", "From", "To", "Call-ID", "CSeq")]
        out = []
        for k, v in src:
            if k == "Via":
                v = f"SIP/2.0/UDP {caller.ip}:5060;branch={c.invite_branch};received={caller.ip};rport=5060"
            if k == "To" and code_tag:
                v += f";tag={c.callee_tag}"
            out.append((k, v))
        return out

    def _respond_invite(self, ts: int, c: Call, start: str, extra: list[tuple[str, str]],
                        body: str = "") -> None:
        caller, callee = self._ends(c)
        h = self._resp_headers(c, not start.startswith("SIP/2.0 100"))
        h += extra
        self.sip(ts, callee, caller, c.phone.seg, self.sip_msg(start, h, body), "INVITE")

    def _provisional(self, ts: int, c: Call, code: int) -> None:
        caller, callee = self._ends(c)
        if code == 100:
            self._respond_invite(ts, c, "SIP/2.0 100 Trying", [("Server", self._ua(callee))] if callee is self.pbx
                                 else [("User-Agent", self._ua(callee))])
            if c.outcome == "notfound":
                self.at(ts + self.ms(5, 80), self._final, c, 404)
            elif c.outcome == "busy":
                self.at(ts + self.ms(100, 2000), self._final, c, 486)
            else:
                self.at(ts + self.ms(50, 400), self._provisional, c, 180)
        else:
            c.callee_tag = self.hexid(40) if callee is c.phone else f"as{self.hexid(32)}"
            self._respond_invite(ts, c, "SIP/2.0 180 Ringing", [("Contact", self._contact(callee))])
            c.t_ringing_ts = ts
            ring = self.ms(1500, 12000)
            if c.outcome == "cancel":
                self.at(ts + ring + self.ms(2000, 15000), self._cancel, c)
            else:
                self.at(ts + ring, self._final, c, 200)

    REASONS = {200: "OK", 404: "Not Found", 486: "Busy Here", 487: "Request Terminated"}

    def _final(self, ts: int, c: Call, code: int) -> None:
        caller, callee = self._ends(c)
        if code in (404, 486) and not c.callee_tag:
            c.callee_tag = self.hexid(40) if callee is c.phone else f"as{self.hexid(32)}"
        extra = [("Contact", self._contact(callee))] if code == 200 else []
        extra.append(("Server", PBX_UA) if callee is self.pbx else ("User-Agent", self._ua(callee)))
        body = ""
        if code == 200:
            extra.append(("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, REFER, INFO"))
            port = c.phone_rtp if callee is c.phone else c.pbx_rtp
            body = self.sdp(callee, port, c.codec, False, self.rng.randrange(10 ** 9))
        self._respond_invite(ts, c, f"SIP/2.0 {code} {self.REASONS[code]}", extra, body)
        c.t_final_status, c.t_final_ts = code, ts
        self.at(ts + self.ms(1, 6), self._ack, c, code)

    def _ack(self, ts: int, c: Call, code: int) -> None:
        caller, callee = self._ends(c)
        if code == 200:   # new transaction, to the Contact
            h = self._dialog_headers(c, caller, self.branch(), c.caller_cseq, "ACK", True)
            ruri = self._contact(callee)[1:-1]
        else:             # same transaction as the INVITE
            h = self._dialog_headers(c, caller, c.invite_branch, c.caller_cseq, "ACK", True)
            ruri = self._ruri(c)
        self.sip(ts, caller, callee, c.phone.seg, self.sip_msg(f"ACK {ruri} SIP/2.0", h), "ACK")
        if code == 200:
            self._media_start(ts, c)
            self.at(ts + c.duration_us, self._bye, c)
        else:
            self._call_over(ts, c)

    def _cancel(self, ts: int, c: Call) -> None:
        caller, callee = self._ends(c)
        h = self._dialog_headers(c, caller, c.invite_branch, c.caller_cseq, "CANCEL", False)
        h.append(("User-Agent", self._ua(caller)))
        self.sip(ts, caller, callee, c.phone.seg, self.sip_msg(f"CANCEL {self._ruri(c)} SIP/2.0", h), "CANCEL")
        c.t_cancel_ts = ts
        self.at(ts + self.ms(0.5, 4), self._cancel_ok, c, h)

    def _cancel_ok(self, ts: int, c: Call, req: list[tuple[str, str]]) -> None:
        caller, callee = self._ends(c)
        h = [x for x in req if x[0] in ("Via", "From", "To", "Call-ID", "CSeq")]
        h = [(k, v + f";tag={c.callee_tag}" if k == "To" else v) for k, v in h]
        self.sip(ts, callee, caller, c.phone.seg, self.sip_msg("SIP/2.0 200 OK", h), "CANCEL")
        self.at(ts + self.ms(0.3, 3), self._final, c, 487)

    def _bye(self, ts: int, c: Call) -> None:
        caller, callee = self._ends(c)
        for s in c.streams:
            s.active = False
        from_caller = self.rng.random() < 0.5
        if from_caller:
            c.caller_cseq += 1
            src, dst, cseq = caller, callee, c.caller_cseq
        else:
            c.callee_cseq += 1
            src, dst, cseq = callee, caller, c.callee_cseq
        h = self._dialog_headers(c, src, self.branch(), cseq, "BYE", True, from_caller)
        h.append(("User-Agent", self._ua(src)))
        self.sip(ts, src, dst, c.phone.seg, self.sip_msg(f"BYE {self._contact(dst)[1:-1]} SIP/2.0", h), "BYE")
        c.t_bye_ts, c.t_bye_from = ts, ("caller" if from_caller else "callee")
        self.at(ts + self.ms(0.5, 5), self._bye_ok, c, src, dst, h)

    def _bye_ok(self, ts: int, c: Call, src: Host, dst: Host, req: list[tuple[str, str]]) -> None:
        h = [x for x in req if x[0] in ("Via", "From", "To", "Call-ID", "CSeq")]
        h.append(("Server", PBX_UA) if dst is self.pbx else ("User-Agent", self._ua(dst)))
        self.sip(ts, dst, src, c.phone.seg, self.sip_msg("SIP/2.0 200 OK", h), "BYE")
        c.t_bye_ok = True
        self._call_over(ts, c)

    def _call_over(self, ts: int, c: Call) -> None:
        c.ended = True
        p = c.phone
        p.in_call = False
        self.free_phones.append(p)
        self.pbx_ports_used.discard(c.pbx_rtp)
        if c.replace:
            self.at(ts + self.ms(200, 3000), self.call_start, True)

    # ------------------------------------------------------------------ media
    def _media_start(self, ts: int, c: Call) -> None:
        rng = self.rng
        p, seg = c.phone, c.phone.seg
        loss_kind = rng.random()
        a = self._stream(ts + self.ms(10, 40), p, c.phone_rtp, self.pbx, c.pbx_rtp, seg, c, loss_kind)
        b = self._stream(ts + self.ms(10, 40), self.pbx, c.pbx_rtp, p, c.phone_rtp, seg, c, rng.random())
        a.peer, b.peer = b, a
        c.streams = [a, b]
        for s in (a, b):
            self.at(s.start + self.ms(1000, 5000), self._rtcp, s)

    def _stream(self, start: int, src: Host, sport: int, dst: Host, dport: int, seg: Segment, c: Call,
                loss_kind: float) -> Stream:
        rng = self.rng
        s = Stream()
        s.src, s.sport, s.dst, s.dport, s.seg, s.call = src, sport, dst, dport, seg, c
        s.pt, s.codec = c.codec
        s.ssrc = rng.getrandbits(32)
        s.seq0 = rng.randrange(65536)
        s.ts0 = rng.getrandbits(32)
        every = self.a.rtp_every
        s.tsinc = 160 * every
        s.interval = 20_000 * every
        s.start = start
        s.idx = 0
        s.sig = rng.randrange(150, 2500)          # jitter sigma, microseconds
        s.jo = rng.randrange(JT_SIZE)
        s.loss = 0.0 if loss_kind < 0.6 else (rng.uniform(0.001, 0.01) if loss_kind < 0.93
                                              else rng.uniform(0.02, 0.05))
        s.pool = self.pools[s.pt]
        s.active = True
        s.npk = 0
        s.first_idx = s.last_idx = -1
        s.first_ts = s.last_ts = 0
        s.first_frame = 0
        s.ipid = rng.randrange(65536)
        l2 = self.l2(src, dst, seg)
        ttl = 64 if src.seg is seg else 63
        s.ttlproto = (ttl << 8) | 17
        o_ip = 16 + len(l2)
        iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0xB8, 20 + RTP_UDP_LEN, 0, 0x4000, ttl, 17, 0, src.ipb, dst.ipb)
        s.ipbase = words_sum(iph)
        s.udpbase = (words_sum(src.ipb + dst.ipb) + 17 + RTP_UDP_LEN + sport + dport + RTP_UDP_LEN
                     + (s.ssrc >> 16) + (s.ssrc & 0xFFFF))
        flen = len(l2) + 20 + RTP_UDP_LEN
        s.buf = bytearray(REC.pack(0, 0, flen, flen) + l2 + iph
                          + struct.pack("!HHHH", sport, dport, RTP_UDP_LEN, 0)
                          + struct.pack("!BBHII", 0x80, s.pt, 0, 0, s.ssrc) + bytes(RTP_PAYLOAD))
        s.o_ipid = o_ip + 4
        s.o_udpck = o_ip + 26
        s.o_pay = o_ip + 40
        s.octets = 16 + flen
        first = start + self.jt[s.jo] * s.sig // 1000
        heapq.heappush(self.heap, (first, next(self.seq), 0, s, None))
        return s

    def _rtcp(self, ts: int, s: Stream) -> None:
        if not s.active:
            return
        sent = s.idx
        if sent > 0:
            ntp_sec = ts // US + 2208988800
            ntp_frac = ((ts % US) << 32) // US
            rts = (s.ts0 + sent * s.tsinc) & 0xFFFFFFFF
            o = s.peer
            o_exp = (o.last_idx - o.first_idx + 1) if o.npk else 0
            o_lost = max(0, o_exp - o.npk)
            frac = min(255, (o_lost * 256) // o_exp) if o_exp else 0
            hseq = (o.seq0 + max(0, o.last_idx)) & 0xFFFF if o.npk else 0
            jit = o.sig * 8 // 1000                     # ~ sigma in 8 kHz timestamp units
            sr = struct.pack("!BBHIIIIII", 0x81, 200, 12, s.ssrc, ntp_sec, ntp_frac, rts, sent,
                             sent * RTP_PAYLOAD)
            sr += struct.pack("!IIIIII", o.ssrc, (frac << 24) | (o_lost & 0xFFFFFF), hseq, jit, 0, 0)
            cname = f"{s.sport}@{s.src.ip}".encode()
            item = bytes([1, len(cname)]) + cname + b"\0"
            item += b"\0" * ((-(4 + len(item))) % 4)
            sdes = struct.pack("!BBHI", 0x81, 202, (4 + len(item)) // 4, s.ssrc) + item
            self.udp(ts, s.src, s.sport + 1, s.dst, s.dport + 1, s.seg, sr + sdes, tos=0xB8)
            self.t_rtcp += 1
        self.at(ts + self.rtcp_every_us + self.ms(-500, 500), self._rtcp, s)

    # ------------------------------------------------------------------ scans
    def scan_start(self, ts: int) -> None:
        targets = [f"10.110.0.{i}" for i in range(1, 255)]
        by_ip = {p.ip: p for p in self.phones if p.seg is self.seg_voice}
        by_ip[self.pbx.ip] = self.pbx
        ev = dict(kind="options_sweep", scanner=self.scanner.ip, vlan=list(self.seg_data.ids),
                  user_agent=SCANNER_UA, start_ts=None, end_ts=None, requests=0, responses=0,
                  targets=f"{targets[0]}-{targets[-1]}")
        self.scans.append(ev)
        t = ts
        for ip in targets:
            self.at(t, self._scan_options, ip, by_ip.get(ip), ev)
            t += self.ms(2, 6)
        ev2 = dict(kind="register_guess", scanner=self.scanner.ip, vlan=list(self.seg_data.ids),
                   user_agent=SCANNER_UA, start_ts=None, end_ts=None, requests=0, responses=0,
                   target=self.pbx.ip, responses_by_status={})
        self.scans.append(ev2)
        t += self.ms(800, 1500)
        for ext in range(100, 100 + self.a.scan_guesses):
            self.at(t, self._scan_register, str(ext), ev2)
            t += self.ms(3, 8)

    def _scan_mark(self, ev: dict, ts: int, req: bool) -> None:
        if ev["start_ts"] is None:
            ev["start_ts"] = us_to_s(ts)
        ev["end_ts"] = us_to_s(ts)
        ev["requests" if req else "responses"] += 1

    def _scan_hdrs(self, uri: str, method: str) -> list[tuple[str, str]]:
        sc = self.scanner
        user = uri.split(":")[1].split("@")[0]
        return [("Via", f"SIP/2.0/UDP {sc.ip}:5060;branch={self.branch()};rport"),
                ("Max-Forwards", "70"), ("To", f"\"{user}\" <{uri}>"),
                ("From", f"\"{user}\" <{uri}>;tag={self.hexid(40)}"),
                ("User-Agent", SCANNER_UA), ("Call-ID", self.new_call_id(sc.ip)),
                ("Contact", f"<sip:{user}@{sc.ip}:5060>"), ("CSeq", f"1 {method}"),
                ("Accept", "application/sdp")]

    def _scan_options(self, ts: int, ip: str, target: Host | None, ev: dict) -> None:
        tgt = target or Host("void", ip, self.router_mac, self.seg_voice)
        uri = f"sip:100@{ip}"
        h = self._scan_hdrs(uri, "OPTIONS")
        self.sip(ts, self.scanner, tgt, self.seg_data, self.sip_msg(f"OPTIONS {uri} SIP/2.0", h), "OPTIONS")
        self._scan_mark(ev, ts, True)
        if target is not None:
            self.at(ts + self.ms(0.3, 3), self._scan_options_reply, target, h, ev)

    def _scan_options_reply(self, ts: int, target: Host, req: list, ev: dict) -> None:
        h = [(k, v + f";tag={self.hexid(40)}" if k == "To" else v) for k, v in req
             if k in ("Via", "To", "From", "Call-ID", "CSeq")]
        h.append(("User-Agent", self._ua(target)) if isinstance(target, Phone) else ("Server", PBX_UA))
        self.sip(ts, target, self.scanner, self.seg_data, self.sip_msg("SIP/2.0 200 OK", h), "OPTIONS")
        self._scan_mark(ev, ts, False)

    def _scan_register(self, ts: int, ext: str, ev: dict) -> None:
        uri = f"sip:{ext}@{self.pbx.ip}"
        h = self._scan_hdrs(uri, "REGISTER")
        self.sip(ts, self.scanner, self.pbx, self.seg_data,
                 self.sip_msg(f"REGISTER sip:{self.pbx.ip} SIP/2.0", h), "REGISTER")
        self._scan_mark(ev, ts, True)
        self.at(ts + self.ms(0.5, 3), self._scan_register_reply, ext, h, ev)

    def _scan_register_reply(self, ts: int, ext: str, req: list, ev: dict) -> None:
        h = [(k, v + f";tag=as{self.hexid(32)}" if k == "To" else v) for k, v in req
             if k in ("Via", "To", "From", "Call-ID", "CSeq")]
        h.append(("Server", PBX_UA))
        if ext in self.ext_set:
            h.append(("WWW-Authenticate", f"Digest algorithm=MD5, realm=\"{REALM}\", nonce=\"{self.hexid(64)}\""))
            code = "401 Unauthorized"
        else:
            code = "404 Not Found"
        self.sip(ts, self.pbx, self.scanner, self.seg_data, self.sip_msg(f"SIP/2.0 {code}", h), "REGISTER")
        self._scan_mark(ev, ts, False)
        d = ev["responses_by_status"]
        d[code[:3]] = d.get(code[:3], 0) + 1

    # ------------------------------------------------------------------ background traffic
    def data_dns(self, ts: int) -> None:
        rng = self.rng
        pc = self.pcs[rng.randrange(len(self.pcs))]
        r = rng.random()
        if r < 0.1:
            self.dns_exchange(ts, pc, pc.seg, f"host-{self.hexid(24)}.example.com", 1, [], rcode=3)
        elif r < 0.3:
            self.dns_exchange(ts, pc, pc.seg, DATA_NAMES[rng.randrange(len(DATA_NAMES))], 28, [])
        else:
            ip = f"192.0.2.{rng.randrange(1, 255)}"
            self.dns_exchange(ts, pc, pc.seg, DATA_NAMES[rng.randrange(len(DATA_NAMES))], 1, [self.rr_a(ip, 60)])
        self.at(ts + int(rng.expovariate(self.a.data_dns_per_s) * US) + 1, self.data_dns)

    def qinq_dns(self, ts: int) -> None:
        pc = self.remote_pcs[self.rng.randrange(len(self.remote_pcs))]
        self.dns_exchange(ts, pc, pc.seg, DATA_NAMES[self.rng.randrange(len(DATA_NAMES))], 1,
                          [self.rr_a(f"198.51.100.{self.rng.randrange(1, 255)}", 60)])
        self.at(ts + int(self.a.qinq_every_s * US) + self.ms(-500, 500), self.qinq_dns)

    def syslog(self, ts: int) -> None:
        stamp = time.strftime("%b %d %H:%M:%S", time.gmtime(ts // US))
        port = self.rng.randrange(1, 49)
        msg = (f"<189>{stamp} sw-access-1: %LINK-5-CHANGED: Interface GigabitEthernet1/0/{port}, "
               f"changed state to {'up' if self.rng.random() < 0.5 else 'down'}")
        self.udp(ts, self.switch, 514, self.syslogd, 514, self.seg_native, msg.encode())
        self.t_other["syslog"] += 1
        self.at(ts + self.ms(3000, 15000), self.syslog)

    def ntp(self, ts: int) -> None:
        def ntpts(t: int) -> bytes:
            return struct.pack("!II", t // US + 2208988800, ((t % US) << 32) // US)
        req = bytes([0x23, 0, 6, 0xEC]) + bytes(36) + ntpts(ts)
        self.udp(ts, self.switch, 123, self.ntpd, 123, self.seg_native, req)
        t2 = ts + self.ms(0.2, 1.5)
        resp = (bytes([0x24, 2, 6, 0xEC]) + struct.pack("!II", 0x100, 0x200) + ip4("192.0.2.123")
                + ntpts(ts - 60 * US) + ntpts(ts) + ntpts(t2 - 50) + ntpts(t2))
        self.at(t2, self._ntp_resp, resp)
        self.t_other["ntp"] += 1
        self.at(ts + 64 * US + self.ms(-100, 100), self.ntp)

    def _ntp_resp(self, ts: int, resp: bytes) -> None:
        self.udp(ts, self.ntpd, 123, self.switch, 123, self.seg_native, resp)
        self.t_other["ntp"] += 1

    # ------------------------------------------------------------------ call arrivals (soak)
    @staticmethod
    def day_rate(ts: int) -> float:
        h = (ts / US % 86400) / 3600.0
        i = int(h) % 24
        f = h - int(h)
        return DAY_CURVE[i] * (1 - f) + DAY_CURVE[(i + 1) % 24] * f

    def call_arrival(self, ts: int, lam_max: float) -> None:
        """Non-homogeneous Poisson arrivals by thinning against the daily curve."""
        if self.rng.random() < self.day_rate(ts):
            self.call_start(ts, False)
        self.at(ts + int(self.rng.expovariate(lam_max) * US) + 1, self.call_arrival, lam_max)

    # ------------------------------------------------------------------ run
    def estimated_duration_s(self) -> float:
        if self.a.duration_s > 0:
            return self.a.duration_s
        pps = self.a.calls_concurrent * 2 * 50 / self.a.rtp_every * 0.85 + self.a.phones / 30.0 + 5
        return (self.limit or 2_000_000) / pps

    def schedule(self) -> None:
        a, rng, t0 = self.a, self.rng, self.start
        est = self.estimated_duration_s()
        self.est_duration_s = est
        spread = a.reg_spread_s if a.reg_spread_s is not None else min(a.expires / 2, max(1.0, est * 0.5))
        self.reg_spread_s = spread
        for p in self.phones:
            self.at(t0 + int(rng.uniform(0, spread) * US), self.register_start, p, True)
        if a.profile == "soak":
            lo, hi = a.call_duration_s
            mean_hold_s = 0.85 * (lo + 0.3 * (hi - lo)) + 6
            lam_max = a.calls_concurrent / mean_hold_s
            self.at(t0 + int(rng.expovariate(lam_max) * US), self.call_arrival, lam_max)
        else:
            ramp = min(10.0, est / 4)
            for _ in range(a.calls_concurrent):
                self.at(t0 + int(rng.uniform(0, ramp) * US), self.call_start, True)
        if a.data_dns_per_s > 0:
            self.at(t0 + int(rng.expovariate(a.data_dns_per_s) * US), self.data_dns)
        if a.qinq_every_s > 0:
            self.at(t0 + int(a.qinq_every_s * US / 2), self.qinq_dns)
        self.at(t0 + self.ms(100, 3000), self.syslog)
        self.at(t0 + self.ms(100, 20000), self.ntp)
        if a.scan_every_s > 0:
            t = t0 + int(a.scan_every_s * US / 2)
            horizon = self.end if self.end is not None else t0 + int(est * 1.5 * US)
            while t < horizon:
                self.at(t, self.scan_start)
                t += int(a.scan_every_s * US)

    def run(self, path: str) -> None:
        self.schedule()
        heap = self.heap
        heappop, heapreplace = heapq.heappop, heapq.heapreplace
        seqc = self.seq
        rand = self.rng.random
        jt = self.jt
        pack_into = struct.pack_into
        limit = self.limit if self.limit is not None else 1 << 62
        end = self.end if self.end is not None else 1 << 62
        streams = self.streams
        rtp_frames = rtp_bytes = 0
        last_rtp_ts = -1
        with open(path, "wb", buffering=1 << 23) as out:
            self.out = out
            write = out.write
            write(PCAP_GLOBAL)
            frames = 0          # local copy of self.frames; synced around non-RTP events
            while heap and frames < limit:
                ts, _, kind, s, args = heap[0]
                if ts > end:
                    break
                if kind:        # a scheduled event: writes through self.udp(), which counts frames
                    heappop(heap)
                    self.now = ts
                    self.frames = frames
                    s(ts, *args)
                    frames = self.frames
                    continue
                if not s.active:
                    heappop(heap)
                    continue
                idx = s.idx
                ipid = (s.ipid + 1) & 0xFFFF
                s.ipid = ipid
                if s.loss == 0.0 or rand() >= s.loss:
                    buf = s.buf
                    pack_into("<II", buf, 0, ts // 1_000_000, ts % 1_000_000)
                    c = s.ipbase + ipid
                    c = (c & 0xFFFF) + (c >> 16)
                    c = (c & 0xFFFF) + (c >> 16)
                    seq = (s.seq0 + idx) & 0xFFFF
                    rts = (s.ts0 + idx * s.tsinc) & 0xFFFFFFFF
                    b1 = s.pt if idx else s.pt | 0x80
                    chunk, csum = s.pool[idx & 15]
                    u = s.udpbase + 0x8000 + b1 + seq + (rts >> 16) + (rts & 0xFFFF) + csum
                    u = (u & 0xFFFF) + (u >> 16)
                    u = (u & 0xFFFF) + (u >> 16)
                    u = (~u & 0xFFFF) or 0xFFFF
                    pack_into("!HHHH", buf, s.o_ipid, ipid, 0x4000, s.ttlproto, ~c & 0xFFFF)
                    pack_into("!HBBHI", buf, s.o_udpck, u, 0x80, b1, seq, rts)
                    o = s.o_pay
                    buf[o:o + 160] = chunk
                    write(buf)
                    frames += 1
                    rtp_frames += 1
                    rtp_bytes += s.octets
                    last_rtp_ts = ts
                    if not s.npk:
                        s.first_idx = idx
                        s.first_ts = ts
                        s.first_frame = frames
                        streams.append(s)
                    s.npk += 1
                    s.last_idx = idx
                    s.last_ts = ts
                idx += 1
                s.idx = idx
                heapreplace(heap, (s.start + idx * s.interval + jt[(s.jo + idx) & 4095] * s.sig // 1000,
                                   next(seqc), 0, s, None))
            self.frames = frames
        self.out = None
        self.rtp_frames = rtp_frames
        self.out_bytes += rtp_bytes
        for s in streams:
            seg = s.seg.key
            self.t_frames_by_seg[seg] = self.t_frames_by_seg.get(seg, 0) + s.npk
        if streams:
            f = min(s.first_ts for s in streams)
            self.first_ts = f if self.first_ts is None else min(self.first_ts, f)
            self.last_ts = last_rtp_ts if self.last_ts is None else max(self.last_ts, last_rtp_ts)

    # ------------------------------------------------------------------ truth
    @staticmethod
    def call_state(c: Call) -> str:
        if c.t_bye_ts >= 0:
            return "ended"
        if c.t_final_status == 200:
            return "answered"
        if c.t_final_status == 487:
            return "cancelled"
        if c.t_final_status is not None:
            return "failed"
        if c.t_ringing_ts >= 0:
            return "ringing"
        return "attempting"

    def truth(self, path: str) -> dict:
        """The ground truth, counted from what was written; no wall-clock value, so it is as
        deterministic as the capture."""
        a = self.a
        by_status: dict[str, int] = {}
        by_state: dict[str, int] = {}
        by_dir: dict[str, int] = {}
        by_codec: dict[str, int] = {}
        calls = []
        for c in self.calls:
            st = self.call_state(c)
            k = str(c.t_final_status) if c.t_final_status is not None else "none"
            by_status[k] = by_status.get(k, 0) + 1
            by_state[st] = by_state.get(st, 0) + 1
            by_dir[c.direction] = by_dir.get(c.direction, 0) + 1
            by_codec[c.codec[1]] = by_codec.get(c.codec[1], 0) + 1
            caller, callee = ((c.phone.ext, c.remote_number) if c.direction == "outbound"
                              else (c.remote_number, c.phone.ext))
            src, dst = self._ends(c)
            calls.append(dict(
                call_id=c.call_id, direction=c.direction, caller=caller, callee=callee,
                src=src.ip, dst=dst.ip, vlan=list(c.phone.seg.ids), codec=c.codec[1],
                invite_ts=us_to_s(c.t_invite_ts), invite_frame=c.t_invite_frame,
                ringing_ts=us_to_s(c.t_ringing_ts) if c.t_ringing_ts >= 0 else None,
                final_status=c.t_final_status,
                final_ts=us_to_s(c.t_final_ts) if c.t_final_ts >= 0 else None,
                cancel_ts=us_to_s(c.t_cancel_ts) if c.t_cancel_ts >= 0 else None,
                bye_ts=us_to_s(c.t_bye_ts) if c.t_bye_ts >= 0 else None,
                bye_from=c.t_bye_from, bye_answered=c.t_bye_ok, state=st,
                rtp_streams=sum(1 for s in c.streams if s.npk)))
        streams = []
        lost_total = 0
        for s in sorted(self.streams, key=lambda s: s.first_frame):
            expected = s.last_idx - s.first_idx + 1
            lost_total += expected - s.npk
            streams.append(dict(
                src=s.src.ip, sport=s.sport, dst=s.dst.ip, dport=s.dport, ssrc=s.ssrc,
                ssrc_hex=f"0x{s.ssrc:08X}", payload_type=s.pt, codec=s.codec, vlan=list(s.seg.ids),
                call_id=s.call.call_id, packets=s.npk, expected=expected, lost=expected - s.npk,
                first_seq=(s.seq0 + s.first_idx) & 0xFFFF, first_ts=us_to_s(s.first_ts),
                last_ts=us_to_s(s.last_ts), first_frame=s.first_frame,
                loss_rate=round(s.loss, 6), jitter_sigma_ms=s.sig / 1000))
        phones = [p for p in self.phones if p.t_register]
        regs = dict(
            aors=len(phones),
            register_requests=sum(p.t_register for p in phones),
            challenges=sum(p.t_challenges for p in phones),
            successes=sum(p.t_successes for p in phones),
            failures=sum(p.t_failures for p in phones),
            expires_s=a.expires,
            per_aor=[dict(aor=f"sip:{p.ext}@{DOMAIN}", src=p.ip, vlan=list(p.seg.ids),
                          user_agent=p.ua, attempts=p.t_register, challenges=p.t_challenges,
                          successes=p.t_successes, failures=p.t_failures,
                          first_ts=us_to_s(p.t_first_ts), last_ts=us_to_s(p.t_last_ts))
                     for p in phones])
        size = os.path.getsize(path)
        ids = sorted({v for key in self.t_frames_by_seg if key != "untagged" for v in map(int, key.split("."))})
        sips = sum(self.t_sip_req.values()) + sum(self.t_sip_resp.values())
        return dict(
            format="voipwatch-site-truth", format_version=TRUTH_FORMAT_VERSION,
            generator=dict(script="scripts/gen_site_capture.py",
                           params={k: v for k, v in sorted(vars(a).items())
                                   if k not in ("output", "quiet", "truth")}),
            capture=dict(file=os.path.basename(path), linktype=1, snaplen=65535, packets=self.frames,
                         bytes=size, first_ts=us_to_s(self.first_ts) if self.first_ts is not None else None,
                         last_ts=us_to_s(self.last_ts) if self.last_ts is not None else None,
                         rtp_packets=self.rtp_frames, estimated_duration_s=round(self.est_duration_s, 3),
                         reg_spread_s=round(self.reg_spread_s, 3)),
            network=dict(pbx=self.pbx.ip, resolver=self.resolver.ip, scanner=self.scanner.ip,
                         domain=DOMAIN, phones=len(self.phones),
                         misplaced_phones=[dict(ip=p.ip, ext=p.ext, vlan=list(p.seg.ids))
                                           for p in self.phones if p.misplaced]),
            sip=dict(messages=sips, requests=dict(sorted(self.t_sip_req.items())),
                     responses=dict(sorted(self.t_sip_resp.items())),
                     responses_by_cseq_method={m: dict(sorted(d.items()))
                                               for m, d in sorted(self.t_sip_resp_by_method.items())},
                     call_ids=len(self.t_call_ids)),
            calls=dict(total=len(self.calls), by_final_status=dict(sorted(by_status.items())),
                       by_state=dict(sorted(by_state.items())), by_direction=dict(sorted(by_dir.items())),
                       by_codec=dict(sorted(by_codec.items())), calls=calls),
            rtp=dict(streams=len(streams), packets=self.rtp_frames, lost=lost_total,
                     rtp_every=a.rtp_every, streams_detail=streams),
            rtcp=dict(packets=self.t_rtcp),
            registrations=regs,
            options_keepalives=dict(self.t_options),
            dns=dict(queries=self.t_dns["queries"], responses=self.t_dns["responses"],
                     by_qtype=dict(sorted(self.t_dns_qtype.items())),
                     by_rcode=dict(sorted(self.t_dns_rcode.items())),
                     messages_by_vlan=dict(sorted(self.t_dns_by_seg.items()))),
            vlans=dict(ids=ids, voice=a.vlan_voice, data=a.vlan_data, qinq_outer=a.vlan_qinq_outer,
                       frames_by_stack=dict(sorted(self.t_frames_by_seg.items())),
                       qinq_frames=self.t_frames_by_seg.get(self.seg_qinq.key, 0),
                       untagged_frames=self.t_frames_by_seg.get("untagged", 0)),
            other=dict(self.t_other),
            scans=[dict(sorted(e.items())) for e in self.scans if e["requests"]],
        )


# ----------------------------------------------------------------------------- CLI

def truth_path(pcap: str) -> str:
    base = pcap[:-5] if pcap.endswith(".pcap") else pcap
    return base + ".truth.json"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description="Write a deterministic, labeled VoIP site capture (classic pcap) and OUT.truth.json.",
        epilog="Options left unset take the --profile's value: "
               + "; ".join(f"{k}: " + ", ".join(f"{o}={v}" for o, v in d.items()) for k, d in PROFILES.items()))
    ap.add_argument("-o", "--output", required=True, help="output .pcap path")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="bench",
                    help="bench: a busy site at steady load, cut at --packets; soak: 24 h with a "
                         "daily busy-hour curve, RTP thinned, scans now and then")
    ap.add_argument("--packets", type=int, help="stop after this many frames (0 = no limit)")
    ap.add_argument("--duration-s", type=float, help="stop at this capture time (0 = no limit)")
    ap.add_argument("--calls-concurrent", type=int,
                    help="bench: concurrent calls kept up; soak: busy-hour concurrency")
    ap.add_argument("--phones", type=int, default=500)
    ap.add_argument("--call-duration-s", type=float, nargs=2, default=[30.0, 300.0], metavar=("MIN", "MAX"),
                    help="answered-call talk time: MIN + exponential(mean 0.3 x (MAX-MIN)), capped at MAX")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start", type=int, default=1_700_000_000, help="first timestamp, epoch seconds")
    ap.add_argument("--vlan-voice", type=int, default=110)
    ap.add_argument("--vlan-data", type=int, default=20)
    ap.add_argument("--vlan-qinq-outer", type=int, default=1000, help="802.1ad S-tag of the QinQ frames")
    ap.add_argument("--scan-every-s", type=float, help="a sipvicious-like scan every N s (0 = none)")
    ap.add_argument("--scan-guesses", type=int, default=200,
                    help="extensions tried by each REGISTER guessing run (100, 101, ...)")
    ap.add_argument("--rtp-every", type=int,
                    help="thin RTP: one packet every N x 20 ms (seq +1, timestamp +160N)")
    ap.add_argument("--expires", type=int, default=3600, help="REGISTER Expires; refresh at half")
    ap.add_argument("--reg-spread-s", type=float,
                    help="first registrations spread over this many seconds "
                         "(default: min(expires/2, half the expected capture length))")
    ap.add_argument("--options-every-s", type=float, help="PBX OPTIONS keep-alive period per phone")
    ap.add_argument("--qinq-every-s", type=float, help="one QinQ DNS exchange every N s")
    ap.add_argument("--data-dns-per-s", type=float, help="DNS queries per second from data-VLAN PCs")
    ap.add_argument("--no-misplaced-phones", dest="misplaced_phones", action="store_false",
                    help="keep every phone on the voice VLAN (default: 2%% on the data VLAN or untagged)")
    ap.add_argument("--no-truth", dest="truth", action="store_false", help="do not write OUT.truth.json")
    ap.add_argument("-q", "--quiet", action="store_true")
    return ap


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    for k, v in PROFILES[args.profile].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.rtp_every < 1:
        raise SystemExit("--rtp-every must be >= 1")
    if args.phones < 1 or args.calls_concurrent < 0:
        raise SystemExit("--phones must be >= 1 and --calls-concurrent >= 0")
    lo, hi = args.call_duration_s
    if not 0 < lo <= hi:
        raise SystemExit("--call-duration-s needs 0 < MIN <= MAX")
    if args.packets <= 0 and args.duration_s <= 0:
        raise SystemExit("one of --packets or --duration-s must be > 0")
    return args


def generate(argv: list[str] | None = None) -> dict:
    args = resolve_args(build_parser().parse_args(argv))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    t0 = time.perf_counter()
    g = SiteGenerator(args)
    g.run(args.output)
    elapsed = time.perf_counter() - t0
    truth = g.truth(args.output)
    if args.truth:
        with open(truth_path(args.output), "w") as f:
            json.dump(truth, f, indent=1, sort_keys=False)
            f.write("\n")
    if not args.quiet:
        cap = truth["capture"]
        span = (cap["last_ts"] - cap["first_ts"]) if cap["first_ts"] is not None else 0.0
        print(f"{args.output}: {cap['packets']} packets, {cap['bytes'] / 1e6:.1f} MB, {span:.1f} s of capture, "
              f"{truth['calls']['total']} calls, {truth['rtp']['streams']} RTP streams, "
              f"written in {elapsed:.1f} s ({cap['packets'] / max(elapsed, 1e-9) / 1e3:.0f}k packets/s)",
              file=sys.stderr)
    return truth


def main(argv: list[str] | None = None) -> int:
    generate(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
