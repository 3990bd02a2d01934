"""The real-traffic lab: real tools on an isolated namespace network, captured on a tagged trunk.

Topology (every box is a network namespace named `vwlab<pid>x<n>-<role>`, created and deleted here;
no namespace has a default route or any link to the host's interfaces):

    ph1 10.110.0.11 (1001) ─┐
    ph2 10.110.0.12 (1002) ─┤ VLAN 110 voice       ┌─ rt110 ── v110 10.110.0.1 ┐
    ph3 10.110.0.13 (1003) ─┤                      │                           │
    kam 10.110.0.10 (ESC)  ─┤      ┌────────┐      ├─ rt20  ── v20  10.20.0.1  ├─ router ── wan 203.0.113.1
    data 10.20.0.20        ─┼──────┤ switch ├──────┤                           │       │
    gw  10.30.0.40 (PSTN)  ─┘ VLAN 20 data, 30 DMZ └─ rt30  ── v30  10.30.0.1  ┘       │
                                   │ mirror0 (every frame, 802.1Q-tagged)         att 203.0.113.66/.67/.68
                                 trunk0 in the capture namespace (tcpdump, or a live sensor)

`sw` runs vlan_switch.py (userspace tagging: the kernel has no 8021q module); the router has one plain
veth per VLAN and routes between the lab subnets; the attacker sits "outside" behind the router with
TEST-NET-3 addresses. Every process is started through `ip netns exec NS timeout ...` (so it is bounded
even if the harness dies), tracked by pid and ended by pid (then its process group) in `stop()`; the
namespaces are deleted there too.

Usage (the integration test does exactly this; a live-monitoring test starts its own sensor instead
of, or beside, tcpdump with `lab.spawn_capture(argv)`):

    with running_lab(workdir, pcap=workdir / "trunk.pcap") as lab:
        report = lab.run_scenario()
"""
from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "sample_captures" / "generators"))
from pcapgen import linear_to_ulaw  # noqa: E402 - the sample generators' G.711 encoder
SCENARIOS = HERE / "scenarios"
KAMAILIO_TEMPLATE = HERE / "kamailio.cfg"
SWITCH = HERE / "vlan_switch.py"

# ---- addressing ---------------------------------------------------------------------------------
VOICE_VLAN, DATA_VLAN, DMZ_VLAN = 110, 20, 30
VOICE_NET, DATA_NET, DMZ_NET = "10.110.0.0/24", "10.20.0.0/24", "10.30.0.0/24"
LAB_CIDRS = (VOICE_NET, DATA_NET, DMZ_NET)          # the only next hops kamailio may use
OUTSIDE_NET = "203.0.113.0/24"                        # TEST-NET-3: the "Internet" side of the router
ROUTER_IPS = {VOICE_VLAN: "10.110.0.1", DATA_VLAN: "10.20.0.1", DMZ_VLAN: "10.30.0.1"}
ROUTER_WAN_IP = "203.0.113.1"
KAMAILIO_IP = "10.110.0.10"
PSTN_GW_IP = "10.30.0.40"
DATA_HOST_IP = "10.20.0.20"
SCANNER_IP = "203.0.113.66"      # svmap, svwar, svcrack
FLOODER_IP = "203.0.113.67"      # SIPp REGISTER and INVITE floods
FRAUD_IP = "203.0.113.68"        # international-call burst with the cracked account
ATTACKER_IPS = (SCANNER_IP, FLOODER_IP, FRAUD_IP)


@dataclass(frozen=True)
class Host:
    role: str
    vlan: int
    ip: str
    user: str | None = None       # SIP user of a phone


HOSTS = (
    Host("kam", VOICE_VLAN, KAMAILIO_IP),
    Host("ph1", VOICE_VLAN, "10.110.0.11", "1001"),
    Host("ph2", VOICE_VLAN, "10.110.0.12", "1002"),
    Host("ph3", VOICE_VLAN, "10.110.0.13", "1003"),
    Host("data", DATA_VLAN, DATA_HOST_IP),
    Host("gw", DMZ_VLAN, PSTN_GW_IP),
)
HOST = {h.role: h for h in HOSTS}
PHONES = tuple(h for h in HOSTS if h.user)
NET_OF_VLAN = {VOICE_VLAN: VOICE_NET, DATA_VLAN: DATA_NET, DMZ_VLAN: DMZ_NET}
ROLES = ("sw", "cap", "rt", "att") + tuple(h.role for h in HOSTS)

# ---- SIP accounts ---------------------------------------------------------------------------------
REALM = "lab.voipwatch.test"
USERS = {f"10{n:02d}": f"Lab-{n:02d}-kq7V!x{n * 37 % 91:02d}" for n in range(1, 11)}
CRACKED_USER = "1005"
USERS[CRACKED_USER] = "summer2024"                    # the weak one svcrack finds
# svcrack's dictionary: 18 wrong guesses first (so the success follows >= 10 failures), then the hit.
DICTIONARY = ("123456", "password", "1005", "admin", "12345678", "qwerty", "letmein", "welcome",
              "111111", "abc123", "voip", "sip1005", "changeme", "secret", "pass1005", "test",
              "1234", "000000", "summer2024", "winter2024")
# International burst with the cracked account: one London number walked through dialling prefixes (the
# proxy routes only 00/011 to the gateway, the other variants get 404), then IRSF-style destinations.
INTL_NUMBERS = ("442071234567", "0442071234567", "00442071234567", "9011442071234567", "+442071234567",
                "011442071234567", "011972599123456", "00972599123456", "011882161234567", "00882161234567",
                "0112693456789", "002693456789", "011447911123456", "00447911123457", "0112693456790",
                "00882161234568")
INTL_ROUTED = r"^(00|011)[1-9][0-9]{6,}$"      # what the proxy sends to the PSTN gateway
HIGH_RISK = (r"^(\+|00|011|9011)882", r"^(\+|00|011|9011)269")   # international networks, Comoros
TRUNK_ROUTED = r"^7[0-9]{3}$"    # numbers the proxy sends over the SIP-over-TCP trunk (sip_tcp_trunk.py)
TRUNK_PEER_IP = "10.110.0.12"    # the trunk's carrier end (the ph2 namespace, in the proxy's VLAN)
PHONE_CALLS = 2                  # calls per calling phone (ph1 -> 1002, ph3 -> 1002)
CALL_AUDIO_S = 6                 # seconds of G.711 each way per call


def mac_for(ip: str) -> str:
    """A stable locally administered MAC derived from an IPv4 address."""
    return "06:76:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


ROUTER_MACS = tuple(mac_for(ip) for ip in ROUTER_IPS.values())


class LabError(RuntimeError):
    """The lab could not be built or a step of it failed."""


REQUIRED_TOOLS = ("ip", "timeout", "kamailio", "sipp", "svmap", "svwar", "svcrack", "tcpdump", "tshark", "ss")


def preflight() -> list[str]:
    """Reasons the lab cannot run here (empty when it can)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the real-traffic lab needs root (network namespaces, raw sockets); CI runs as root")
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if missing:
        problems.append("missing tools: " + ", ".join(missing) +
                        " (apt-get install -y kamailio sip-tester sipvicious tcpdump tshark iproute2)")
    return problems


# ---- processes ------------------------------------------------------------------------------------
@dataclass
class Proc:
    name: str
    role: str
    argv: list[str]
    popen: subprocess.Popen
    out: Path
    err: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stdout(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def stderr(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""


_counter = itertools.count()
_NS_RE = re.compile(r"^vwlab(\d+)x\d+-[a-z0-9]+$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run(argv: list[str], *, check: bool = True, timeout: float = 20.0, **kw) -> subprocess.CompletedProcess:
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and cp.returncode != 0:
        raise LabError(f"{' '.join(argv)} -> {cp.returncode}: {cp.stderr.strip() or cp.stdout.strip()}")
    return cp


def remove_stale_namespaces() -> list[str]:
    """Delete lab namespaces left by runs whose process is gone, if nothing runs in them any more."""
    removed = []
    cp = _run(["ip", "netns", "list"], check=False)
    for line in cp.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NS_RE.match(name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        pids = _run(["ip", "netns", "pids", name], check=False).stdout.split()
        if not pids and _run(["ip", "netns", "del", name], check=False).returncode == 0:
            removed.append(name)
    return removed


# ---- the lab --------------------------------------------------------------------------------------
class Lab:
    """One isolated lab instance. `start()`, then traffic (`run_scenario()` or your own), then `stop()`."""

    CAPTURE_IFACE = "trunk0"

    def __init__(self, workdir: Path, *, max_seconds: int = 240, mirror_tagged: bool = False):
        self.workdir = Path(workdir)
        self.mirror_tagged = mirror_tagged        # the mirror also copies tagged frames access ports drop
        self.logs = self.workdir / "logs"
        self.max_seconds = max_seconds            # bound of every long-running process
        self.id = f"vwlab{os.getpid()}x{next(_counter)}"
        self.ns = {role: f"{self.id}-{role}" for role in ROLES}
        self.procs: list[Proc] = []
        self.created_ns: list[str] = []
        self.switch: Proc | None = None
        self.kamailio: Proc | None = None
        self.tcpdump: Proc | None = None
        self.switch_stats: dict | None = None
        self.timings: dict[str, float] = {}
        self._t0 = time.monotonic()

    @property
    def capture_ns(self) -> str:
        return self.ns["cap"]

    # -- building ---------------------------------------------------------------------------------
    def start(self) -> "Lab":
        problems = preflight()
        if problems:
            raise LabError("; ".join(problems))
        remove_stale_namespaces()
        self.logs.mkdir(parents=True, exist_ok=True)
        t = time.monotonic()
        for role in ROLES:
            _run(["ip", "netns", "add", self.ns[role]])
            self.created_ns.append(self.ns[role])
            self._sysctl(role, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
            self._ipn(role, "link", "set", "lo", "up")
        self._sysctl("rt", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0",
                     "net.ipv4.conf.default.send_redirects=0")
        sw = self.ns["sw"]
        ports: list[str] = []
        # access ports: one veth per host namespace
        for h in HOSTS:
            self._veth(h.role, "sw", "eth0", h.role)
            ports.append(f"{h.role}={h.vlan}")
            self._ipn(h.role, "link", "set", "eth0", "address", mac_for(h.ip))
            self._ipn(h.role, "addr", "add", f"{h.ip}/24", "dev", "eth0")
            self._ipn(h.role, "link", "set", "eth0", "up")
            gw = ROUTER_IPS[h.vlan]
            for net in LAB_CIDRS + (OUTSIDE_NET,):
                if net != NET_OF_VLAN[h.vlan]:
                    self._ipn(h.role, "route", "add", net, "via", gw)
        # the router: one plain veth per VLAN, tagged/untagged by the switch
        for vlan, ip in ROUTER_IPS.items():
            self._veth(f"rt{vlan}", "sw", f"v{vlan}", "rt")
            ports.append(f"rt{vlan}={vlan}")
            self._ipn("rt", "link", "set", f"v{vlan}", "address", mac_for(ip))
            self._ipn("rt", "addr", "add", f"{ip}/24", "dev", f"v{vlan}")
            self._ipn("rt", "link", "set", f"v{vlan}", "up")
        # the outside: attacker behind the router's WAN leg (not through the switch)
        _run(["ip", "link", "add", "wan", "netns", self.ns["rt"], "type", "veth", "peer", "name", "eth0",
              "netns", self.ns["att"]])
        self._ipn("rt", "link", "set", "wan", "address", mac_for(ROUTER_WAN_IP))
        self._ipn("rt", "addr", "add", f"{ROUTER_WAN_IP}/24", "dev", "wan")
        self._ipn("rt", "link", "set", "wan", "up")
        self._ipn("att", "link", "set", "eth0", "address", mac_for(SCANNER_IP))
        for ip in ATTACKER_IPS:
            self._ipn("att", "addr", "add", f"{ip}/24", "dev", "eth0")
        self._ipn("att", "link", "set", "eth0", "up")
        for net in LAB_CIDRS:
            self._ipn("att", "route", "add", net, "via", ROUTER_WAN_IP)
        # the trunk to the capture namespace (receive-only there: no address, no IPv6)
        _run(["ip", "link", "add", "mirror0", "netns", sw, "mtu", "9000", "type", "veth", "peer", "name",
              self.CAPTURE_IFACE, "netns", self.ns["cap"], "mtu", "9000"])
        self._ipn("sw", "link", "set", "mirror0", "up")
        self._ipn("cap", "link", "set", self.CAPTURE_IFACE, "up")
        for h in HOSTS:
            self._ipn("sw", "link", "set", h.role, "up")
        for vlan in ROUTER_IPS:
            self._ipn("sw", "link", "set", f"rt{vlan}", "up")
        # software checksums and no segmentation offload, so raw-socket forwarding stays valid
        self._offload_off("sw", [h.role for h in HOSTS] + [f"rt{v}" for v in ROUTER_IPS] + ["mirror0"])
        self._offload_off("cap", [self.CAPTURE_IFACE])
        self._offload_off("rt", [f"v{v}" for v in ROUTER_IPS] + ["wan"])
        self._offload_off("att", ["eth0"])
        for h in HOSTS:
            self._offload_off(h.role, ["eth0"])
        self.timings["topology_s"] = time.monotonic() - t
        self.switch = self.spawn("sw", [sys.executable, str(SWITCH), *[f"--port={p}" for p in ports],
                                        "--mirror=mirror0", f"--max-seconds={self.max_seconds}",
                                        *(["--mirror-tagged"] if self.mirror_tagged else [])],
                                 name="switch", limit_s=self.max_seconds + 5)
        self._wait_for(lambda: '"ready"' in self.switch.stderr(), 10, "the switch did not start",
                       proc=self.switch)
        return self

    def start_capture(self, pcap: Path, max_packets: int = 2_000_000) -> Proc:
        """tcpdump on the trunk interface of the capture namespace, writing 802.1Q-tagged frames."""
        self.tcpdump = self.spawn_capture(["tcpdump", "-i", self.CAPTURE_IFACE, "-n", "-s", "0", "-U", "-Z", "root",
                                           "-c", str(max_packets), "-w", str(pcap)], name="tcpdump")
        self._wait_for(lambda: "listening on" in self.tcpdump.stderr(), 10, "tcpdump did not start",
                       proc=self.tcpdump)
        return self.tcpdump

    def spawn_capture(self, argv: list[str], *, name: str = "sensor", limit_s: int | None = None,
                      cwd: Path | None = None, env: dict | None = None) -> Proc:
        """Run a caller's process (a live sensor, tcpdump, ...) in the capture namespace, where the
        tagged trunk is interface `Lab.CAPTURE_IFACE` (receive-only: no address). Bounded by limit_s
        (default: the lab's max_seconds); ended by pid in `stop()`, or earlier with `lab.end(proc)`."""
        return self.spawn("cap", argv, name=name, limit_s=limit_s or self.max_seconds, cwd=cwd, env=env)

    def start_kamailio(self, tcp: bool = False, users: dict[str, str] | None = None) -> Proc:
        """kamailio in the kam namespace, on UDP 5060 (and on TCP 5060 with tcp=True); users: the SIP
        accounts and passwords (default USERS)."""
        cfg = self.workdir / "kamailio.cfg"
        cfg.write_text(render_kamailio_cfg(tcp, users))
        rundir = self.workdir / "kamailio-run"
        rundir.mkdir(exist_ok=True)
        check = _run(["ip", "netns", "exec", self.ns["kam"], "kamailio", "-c", "-f", str(cfg)], check=False)
        if check.returncode != 0:
            raise LabError(f"kamailio rejected its config: {check.stderr[-2000:]}")
        self.kamailio = self.spawn("kam", ["kamailio", "-DD", "-E", "-f", str(cfg), "-Y", str(rundir),
                                           "-m", "64", "-M", "16"], name="kamailio", limit_s=self.max_seconds)
        self._wait_for(lambda: ":5060" in _run(["ip", "netns", "exec", self.ns["kam"], "ss", "-Hlun"],
                                               check=False).stdout,
                       15, "kamailio is not listening", proc=self.kamailio)
        return self.kamailio

    def set_mtu(self, role: str, mtu: int) -> None:
        """The MTU of a host's interface (a small one makes TCP split SIP messages over segments)."""
        self._ipn(role, "link", "set", "eth0", "mtu", str(mtu))

    # -- processes -------------------------------------------------------------------------------
    def spawn(self, role: str, argv: list[str], *, name: str, limit_s: float, cwd: Path | None = None,
              env: dict | None = None) -> Proc:
        """Start argv in a lab namespace, bounded by coreutils timeout; tracked for stop()."""
        if time.monotonic() - self._t0 > self.max_seconds:
            raise LabError(f"lab time budget of {self.max_seconds}s exhausted; not starting {name}")
        n = sum(1 for p in self.procs if p.name.split(".")[0] == name)
        tag = name if n == 0 else f"{name}.{n}"
        out, err = self.logs / f"{tag}.out", self.logs / f"{tag}.err"
        full = ["ip", "netns", "exec", self.ns[role], "timeout", "--kill-after=3", f"{int(math.ceil(limit_s))}s", *argv]
        with open(out, "wb") as fo, open(err, "wb") as fe:
            popen = subprocess.Popen(full, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, cwd=cwd or self.workdir,
                                     env=env, start_new_session=True)
        proc = Proc(tag, role, full, popen, out, err)
        self.procs.append(proc)
        return proc

    def run(self, role: str, argv: list[str], *, name: str, limit_s: float, cwd: Path | None = None,
            env: dict | None = None) -> Proc:
        """spawn() and wait for it (at most limit_s + a grace); the Proc has its return code."""
        proc = self.spawn(role, argv, name=name, limit_s=limit_s, cwd=cwd, env=env)
        if proc.wait(limit_s + 5) is None:
            self.end(proc)
        return proc

    def end(self, proc: Proc, grace: float = 3.0) -> int | None:
        """End one process by its pid: SIGTERM, then SIGKILL to its process group."""
        if proc.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            proc.wait(grace)
        if proc.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(grace)
        # children left behind in its group (kamailio workers, ...): same group id = its pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.popen.returncode

    def stop(self) -> None:
        """End every process (newest first, the switch and the capture last), delete the namespaces."""
        errors = []
        order = [p for p in reversed(self.procs) if p not in (self.switch, self.tcpdump)]
        for proc in order:
            try:
                self.end(proc)
            except Exception as exc:          # keep tearing down
                errors.append(f"{proc.name}: {exc}")
        for proc in (p for p in self.procs if p is not self.switch and p.role == "cap"):
            self.end(proc)
        if self.tcpdump is not None:
            time.sleep(0.3)                   # let the last mirrored frames reach the file
            self.end(self.tcpdump, grace=5.0)
        if self.switch is not None:
            self.end(self.switch)
            for line in self.switch.stderr().splitlines():
                with contextlib.suppress(ValueError):
                    data = json.loads(line)
                    if "frames" in data:
                        self.switch_stats = data
        # safety net: anything still running inside our own namespaces (started by us) is killed
        for ns in self.created_ns:
            pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for ns in reversed(self.created_ns):
            cp = _run(["ip", "netns", "del", ns], check=False)
            if cp.returncode != 0:
                errors.append(f"netns del {ns}: {cp.stderr.strip()}")
        self.created_ns.clear()
        if errors:
            raise LabError("teardown: " + "; ".join(errors))

    # -- the scenario ----------------------------------------------------------------------------
    def run_scenario(self) -> dict:
        """Benign phones and data host, then the attacks; returns what each tool reported. Bounded."""
        t0 = time.monotonic()
        w = self.workdir
        (w / "tone.ulaw").write_bytes(ulaw_tone(CALL_AUDIO_S + 1))
        (w / "flood_users.csv").write_text("SEQUENTIAL\n" + "".join(f"{u};\n" for u in USERS))
        (w / "intl.csv").write_text("SEQUENTIAL\n" + "".join(f"{CRACKED_USER};{n};\n" for n in INTL_NUMBERS))
        (w / "dictionary.txt").write_text("\n".join(DICTIONARY) + "\n")
        (w / "www").mkdir(exist_ok=True)
        (w / "www" / "index.html").write_text("<html><body>intranet</body></html>\n")
        home = w / "home"
        home.mkdir(exist_ok=True)
        env = dict(os.environ, HOME=str(home))
        report: dict = {"tools": {}}

        if self.kamailio is None:
            self.start_kamailio()
        # benign data VLAN host: pings its gateway, fetches a page from the router's intranet server
        self.spawn("rt", [sys.executable, "-m", "http.server", "8080", "--bind", ROUTER_IPS[DATA_VLAN],
                          "--directory", str(w / "www")], name="intranet_http", limit_s=90)
        self.spawn("data", [sys.executable, str(Path(__file__)), "data-traffic", ROUTER_IPS[DATA_VLAN], "40", "25"],
                   name="data_host", limit_s=40)

        # phones register (digest: 401 then 200)
        regs = [self.spawn(p.role, self.sipp_argv(p.ip, "register.xml", service=p.user, auth=(p.user, USERS[p.user]),
                                              calls=1, limit_s=15), name=f"register_{p.role}", limit_s=20)
                for p in PHONES]
        for proc in regs:
            proc.wait(25)
        report["tools"]["register"] = {p.name: p.popen.returncode for p in regs}

        # callees: phone 1002 and the PSTN gateway answer
        n_calls = PHONE_CALLS * 2
        # (-m leaves room: the scanner's OPTIONS also start SIPp "calls" on the phone)
        uas = self.spawn("ph2", self.sipp_argv(HOST["ph2"].ip, "uas_rtp.xml", calls=n_calls + 20, limit_s=60, uas=True),
                         name="uas_ph2", limit_s=65)
        gw = self.spawn("gw", self.sipp_argv(PSTN_GW_IP, "uas_gateway.xml", calls=len(INTL_NUMBERS) + 20, limit_s=90,
                                          uas=True), name="uas_gw", limit_s=95)
        time.sleep(0.5)
        # callers: 1001 and 1003 call 1002, G.711 both ways
        uacs = []
        for i, role in enumerate(("ph1", "ph3")):
            h = HOST[role]
            csv = w / f"calls_{role}.csv"
            csv.write_text(f"SEQUENTIAL\n{h.user};1002;\n")
            uacs.append(self.spawn(role, self.sipp_argv(h.ip, "uac_call_rtp.xml", inf=csv, auth=(h.user, USERS[h.user]),
                                                    calls=PHONE_CALLS, limit=1, limit_s=50),
                                   name=f"uac_{role}", limit_s=55))
            time.sleep(1.0)

        # the outside attacker: sweep, enumerate, crack
        scan = self.run("att", ["svmap", "-b", SCANNER_IP, "-x", SCANNER_IP, "-t", "0.05", "10.110.0.1-30"],
                        name="svmap", limit_s=25, env=env)
        # probes to absent hosts die at the router (no ARP answer): then sweep ports of the hosts that exist
        ports = self.run("att", ["svmap", "-b", SCANNER_IP, "-x", SCANNER_IP, "-t", "0.05", "-p", "5060-5071",
                                 "10.110.0.10-13"], name="svmap_ports", limit_s=25, env=env)
        war = self.run("att", ["svwar", "-b", SCANNER_IP, "-x", SCANNER_IP, "-t", "0.05", "-e", "1000-1039",
                               "-m", "REGISTER", KAMAILIO_IP], name="svwar", limit_s=25, env=env)
        crack = self.run("att", ["svcrack", "-b", SCANNER_IP, "-x", SCANNER_IP, "-t", "0.05", "-u", CRACKED_USER,
                                 "-d", str(w / "dictionary.txt"), KAMAILIO_IP], name="svcrack", limit_s=30, env=env)
        cracked = parse_svcrack(crack.stdout() + crack.stderr())
        found = parse_svwar(war.stdout() + war.stderr())
        report["tools"]["svmap"] = {"rc": scan.popen.returncode, "found": parse_svmap(scan.stdout() + scan.stderr()),
                                    "ports_rc": ports.popen.returncode}
        report["tools"]["svwar"] = {"rc": war.popen.returncode, "extensions": found}
        report["tools"]["svcrack"] = {"rc": crack.popen.returncode, "cracked": cracked}
        password = cracked.get(CRACKED_USER) or USERS[CRACKED_USER]

        # safety probe: 1005's binding is now svcrack's sip:123@1.1.1.1; kamailio must refuse to go there
        probe_csv = w / "probe.csv"
        probe_csv.write_text(f"SEQUENTIAL\n{CRACKED_USER};{CRACKED_USER};\n")
        probe = self.run("att", self.sipp_argv(FRAUD_IP, "uac_safety_probe.xml", inf=probe_csv,
                                           auth=(CRACKED_USER, password), calls=1, limit_s=10),
                         name="safety_probe", limit_s=15)
        report["tools"]["safety_probe"] = {"rc": probe.popen.returncode}

        # floods and the international burst, at the same time
        reg_flood = self.spawn("att", self.sipp_argv(FLOODER_IP, "register_flood.xml", inf=w / "flood_users.csv",
                                                 calls=360, rate=30, limit=60, limit_s=30),
                               name="register_flood", limit_s=35)
        inv_flood = self.spawn("att", self.sipp_argv(FLOODER_IP, "invite_flood.xml", inf=w / "flood_users.csv",
                                                 calls=240, rate=30, limit=60, limit_s=30, port=5070),
                               name="invite_flood", limit_s=35)
        intl = self.spawn("att", self.sipp_argv(FRAUD_IP, "uac_intl.xml", inf=w / "intl.csv",
                                            auth=(CRACKED_USER, password), calls=len(INTL_NUMBERS), rate=2,
                                            limit=6, limit_s=40), name="intl_burst", limit_s=45)
        for proc in (reg_flood, inv_flood, intl, *uacs):
            if proc.wait(max(1.0, 75 - (time.monotonic() - t0))) is None:
                self.end(proc)
        time.sleep(1.0)                       # last BYE/200 exchanges reach the callees
        self.end(uas)
        self.end(gw)
        report["tools"].update({p.name: {"rc": p.popen.returncode} for p in
                                (reg_flood, inv_flood, intl, *uacs, uas, gw)})
        time.sleep(1.0)                       # trailing responses and retransmissions
        report["kamailio_safety_log"] = [l for l in self.kamailio.stderr().splitlines() if "LAB SAFETY" in l]
        report["kamailio_registered"] = [l for l in self.kamailio.stderr().splitlines() if "LAB registered" in l]
        report["scenario_s"] = round(time.monotonic() - t0, 1)
        self.timings["scenario_s"] = report["scenario_s"]
        return report

    def sipp_argv(self, local_ip: str, scenario: str, *, calls: int, limit_s: int, service: str | None = None,
              inf: Path | None = None, auth: tuple[str, str] | None = None, rate: float = 10, limit: int = 1,
              uas: bool = False, port: int = 5060, transport: str = "u1") -> list[str]:
        """SIPp's command line for a scenario of SCENARIOS (transport: SIPp's -t, e.g. t1 for one TCP
        connection carrying every call)."""
        argv = ["sipp"]
        if not uas:
            argv.append(f"{KAMAILIO_IP}:5060")
        argv += ["-sf", str(SCENARIOS / scenario), "-t", transport, "-i", local_ip, "-p", str(port), "-mi", local_ip,
                 "-m", str(calls), "-r", str(rate), "-l", str(limit), "-timeout", f"{limit_s}s", "-nostdin",
                 "-recv_timeout", "10000", "-max_retrans", "3"]
        if uas:
            argv.append("-aa")
        if service:
            argv += ["-s", service]
        if inf:
            argv += ["-inf", str(inf)]
        if auth:
            argv += ["-au", auth[0], "-ap", auth[1]]
        return argv

    # -- helpers ---------------------------------------------------------------------------------
    def _ipn(self, role: str, *args: str) -> None:
        _run(["ip", "-n", self.ns[role], *args])

    def _sysctl(self, role: str, *settings: str) -> None:
        _run(["ip", "netns", "exec", self.ns[role], "sysctl", "-q", "-w", *settings])

    def _veth(self, name_a: str, role_a: str, name_b: str, role_b: str) -> None:
        _run(["ip", "link", "add", name_a, "netns", self.ns[role_a], "type", "veth", "peer", "name", name_b,
              "netns", self.ns[role_b]])

    def _offload_off(self, role: str, ifaces: list[str]) -> None:
        _run(["ip", "netns", "exec", self.ns[role], sys.executable, str(Path(__file__)), "offload-off", *ifaces])

    def _wait_for(self, cond, timeout: float, what: str, proc: Proc | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            if proc is not None and not proc.running():
                break
            time.sleep(0.1)
        detail = f" ({proc.name} rc={proc.popen.returncode}: {proc.stderr()[-1500:]})" if proc else ""
        raise LabError(what + detail)


@contextlib.contextmanager
def running_lab(workdir: Path, *, pcap: Path | None = None, kamailio: bool = True,
                max_seconds: int = 240, mirror_tagged: bool = False) -> Iterator[Lab]:
    """Build the lab (switch, optional tcpdump on the trunk, kamailio), yield it, always tear it down.

    A live-monitoring test passes pcap=None and starts its sensor with `lab.spawn_capture([...,
    "-i", Lab.CAPTURE_IFACE, ...])` before calling `lab.run_scenario()`.
    """
    lab = Lab(workdir, max_seconds=max_seconds, mirror_tagged=mirror_tagged)
    try:
        lab.start()
        if pcap is not None:
            lab.start_capture(pcap)
        if kamailio:
            lab.start_kamailio()
        yield lab
    finally:
        lab.stop()


# ---- configuration the lab writes ---------------------------------------------------------------------
def render_kamailio_cfg(tcp: bool = False, users: dict[str, str] | None = None) -> str:
    module_path = next((p for p in ("/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/aarch64-linux-gnu/kamailio/modules",
                                    "/usr/lib/kamailio/modules", "/usr/local/lib64/kamailio/modules")
                        if Path(p, "tm.so").exists()), "/usr/lib/x86_64-linux-gnu/kamailio/modules")
    users = "\n".join(f'\t$sht(users=>{u}) = "{p}";' for u, p in (users or USERS).items())
    text = KAMAILIO_TEMPLATE.read_text()
    for key, value in {"KAMAILIO_IP": KAMAILIO_IP, "PSTN_GW_IP": PSTN_GW_IP, "REALM": REALM,
                       "LAB_CIDRS": ",".join(LAB_CIDRS), "MODULE_PATH": module_path, "USER_TABLE": users,
                       "INTL_REGEX": INTL_ROUTED, "TRUNK_REGEX": TRUNK_ROUTED, "TRUNK_PEER_IP": TRUNK_PEER_IP,
                       "TCP_LISTEN": f"listen=tcp:{KAMAILIO_IP}:5060" if tcp else ""}.items():
        text = text.replace("{{" + key + "}}", value)
    unfilled = re.findall(r"\{\{[A-Z_]+\}\}", text)
    if unfilled:
        raise LabError(f"kamailio.cfg template has unfilled fields {unfilled}")
    return text


def site_toml() -> str:
    """The voipwatch site model of the lab (zones by VLAN and CIDR, roles, dial plan)."""
    return f"""# voipwatch site model of the real-traffic lab (tests/lab/lab.py)
[site]
internal_prefixes = ["10.0.0.0/8"]

[zones.voice]
vlans = [{VOICE_VLAN}]
cidrs = ["{VOICE_NET}"]

[zones.data]
vlans = [{DATA_VLAN}]
cidrs = ["{DATA_NET}"]

[zones.uc_dmz]
vlans = [{DMZ_VLAN}]
cidrs = ["{DMZ_NET}"]

[roles]
esc = ["{KAMAILIO_IP}"]
pstn_gw = ["{PSTN_GW_IP}"]
gateway_macs = [{", ".join(f'"{m}"' for m in ROUTER_MACS)}]

[dialplan]
international = ['^\\+', '^00', '^011', '^9011']
premium = ['^1?900[0-9]{{7}}$']
high_risk = [{", ".join(f"'{p}'" for p in HIGH_RISK)}]
internal = ['^10[0-9][0-9]$']
# always business hours: the capture is taken at wall-clock time, alerts must not depend on it
business_hours = "00:00-24:00 Mon-Sun"
"""


# ---- tool output parsing ----------------------------------------------------------------------------
def parse_svcrack(text: str) -> dict[str, str]:
    """svcrack's result table: | Extension | Password |."""
    out = {}
    for m in re.finditer(r"^\|\s*(\S+)\s*\|\s*(\S+)\s*\|\s*$", text, re.M):
        if m.group(1).lower() != "extension":
            out[m.group(1)] = m.group(2)
    return out


def parse_svwar(text: str) -> list[str]:
    """svwar's result table: | Extension | Authentication |."""
    return sorted({m.group(1) for m in re.finditer(r"^\|\s*(\d+)\s*\|\s*(reqauth|noauth|weird)\s*\|", text, re.M)})


def parse_svmap(text: str) -> list[str]:
    """svmap's result table: | SIP Device | User Agent |."""
    return sorted({m.group(1) for m in re.finditer(r"^\|\s*(\d+\.\d+\.\d+\.\d+):\d+\s*\|", text, re.M)})


# ---- audio -------------------------------------------------------------------------------------------
def ulaw_tone(seconds: float) -> bytes:
    """A speech-band two-tone signal with a slow envelope, 8 kHz mu-law (what SIPp's rtp_stream plays)."""
    n = int(seconds * 8000)
    return bytes(linear_to_ulaw(int(9000 * (0.6 + 0.4 * math.sin(2 * math.pi * 1.3 * i / 8000))
                           * (0.7 * math.sin(2 * math.pi * 440 * i / 8000) + 0.3 * math.sin(2 * math.pi * 1170 * i / 8000))))
                 for i in range(n))


# ---- run inside a namespace: offloads off -----------------------------------------------------------------
def _offload_off(ifaces: list[str]) -> None:
    """Turn off TX checksum, scatter-gather, TSO, GSO and GRO (legacy SIOCETHTOOL ioctls; no ethtool needed)."""
    import array
    import fcntl
    import socket
    import struct
    siocethtool = 0x8946
    settings = (0x17, 0x19, 0x1F, 0x24, 0x2C)   # ETHTOOL_STXCSUM, _SSG, _STSO, _SGSO, _SGRO
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for iface in ifaces:
            for cmd in settings:
                buf = array.array("I", [cmd, 0])
                addr, _ = buf.buffer_info()
                ifreq = struct.pack("16sP", iface.encode(), addr)
                try:
                    fcntl.ioctl(s.fileno(), siocethtool, ifreq)
                except OSError as exc:
                    if cmd == 0x17:           # the checksum one matters; the rest are best effort
                        raise SystemExit(f"{iface}: cannot disable tx checksum offload: {exc}")


def _data_traffic(gateway: str, pings: int, seconds: float) -> None:
    """Benign data-VLAN host: ICMP echo to its gateway every 0.5 s and an HTTP GET of the intranet page
    every 4 s, bounded by count and time (no ping binary needed: a raw ICMP socket)."""
    import socket
    import struct
    import urllib.request

    def checksum(data: bytes) -> int:
        data += b"\0" * (len(data) % 2)
        total = sum(struct.unpack(f"!{len(data) // 2}H", data))
        total = (total >> 16) + (total & 0xFFFF)
        return ~(total + (total >> 16)) & 0xFFFF

    deadline = time.monotonic() + seconds
    ident = os.getpid() & 0xFFFF
    sent = replies = fetched = 0
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.settimeout(0.5)
        for seq in range(1, pings + 1):
            if time.monotonic() >= deadline:
                break
            payload = b"voipwatch-lab-data-host" + bytes(25)
            hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            s.sendto(struct.pack("!BBHHH", 8, 0, checksum(hdr + payload), ident, seq) + payload, (gateway, 0))
            sent += 1
            t_next = time.monotonic() + 0.5
            while time.monotonic() < t_next:
                try:
                    s.settimeout(max(0.01, t_next - time.monotonic()))
                    data = s.recv(2048)
                    if len(data) >= 28 and data[20] == 0 and struct.unpack_from("!H", data, 24)[0] == ident:
                        replies += 1
                except OSError:
                    pass
            if seq % 8 == 0:
                try:
                    urllib.request.urlopen(f"http://{gateway}:8080/", timeout=2).read()
                    fetched += 1
                except OSError as exc:
                    print("fetch failed:", exc, flush=True)
    print(json.dumps({"pings": sent, "replies": replies, "http_fetches": fetched}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "offload-off":
        _offload_off(sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "data-traffic":
        _data_traffic(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        print(__doc__)
