"""Live frame sources for `voipwatch monitor`: a tcpdump/dumpcap child writing pcap into a pipe, or pyshark.

The pipe backend reads the child's classic pcap stream with os.read, so each record is handed on as
soon as it arrives (tcpdump -U flushes per packet). Several interfaces run one child each; their
frames are merged as they come. Drop counters come from the capture tool itself.
"""
from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from voipwatch.capture_format import LINKTYPE_MASK, MAX_CAPLEN, PCAP_HEADER, PCAP_MAGICS, PCAP_RECORD
from voipwatch.records import Frame

# tcpdump prints its counters on SIGUSR1 (Linux) and at exit: "N packets dropped by kernel".
_DROPPED = re.compile(rb"(\d+) packets? dropped by kernel")
_CAPTURED = re.compile(rb"(\d+) packets? captured")
# WTAP encapsulations pyshark reports (frame.encap_type) -> LINKTYPE values.
_WTAP_TO_LINKTYPE = {1: 1, 25: 113, 210: 276, 7: 101, 15: 0}


class LiveError(Exception):
    """A live capture that cannot start or stopped: one clear sentence for the user."""


def check_interface(name: str) -> None:
    if name != "any" and not Path("/sys/class/net", name).exists():
        known = sorted(p.name for p in Path("/sys/class/net").iterdir()) if Path("/sys/class/net").exists() else []
        raise LiveError(f"interface {name!r} does not exist (interfaces here: {', '.join(known) or 'none'})")


@dataclass
class CaptureStats:
    captured: int = 0
    dropped: int = 0
    per_interface: dict[str, int] = field(default_factory=dict)


class PipeCapture:
    """One tcpdump (or dumpcap) child per interface, pcap on its stdout."""

    def __init__(self, interfaces: list[str], bpf: str | None = None, tool: str = "tcpdump"):
        if tool not in ("tcpdump", "dumpcap"):
            raise LiveError(f"unknown capture tool {tool!r}: use tcpdump or dumpcap")
        self.tool = shutil.which(tool)
        if self.tool is None:
            raise LiveError(f"{tool} is not installed (Debian: apt-get install {'tcpdump' if tool == 'tcpdump' else 'wireshark-common'})")
        for name in interfaces:
            check_interface(name)
        self.interfaces = interfaces
        self.bpf = bpf
        self.stats = CaptureStats()
        self._procs: list[subprocess.Popen] = []
        self._queue: queue.Queue = queue.Queue(maxsize=1_000)    # batches of frames, one per pipe read
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def _command(self, interface: str) -> list[str]:
        if self.tool.endswith("tcpdump"):
            cmd = [self.tool, "-i", interface, "-U", "-w", "-", "-s", "0", "-n", "--immediate-mode"]
        else:
            cmd = [self.tool, "-i", interface, "-P", "-w", "-", "-q", "-s", "0"]
        if self.bpf:
            cmd += [self.bpf] if self.tool.endswith("tcpdump") else ["-f", self.bpf]
        return cmd

    def start(self) -> None:
        for interface in self.interfaces:
            proc = subprocess.Popen(self._command(interface), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL)
            self._procs.append(proc)
            for target, args in ((self._read_pcap, (interface, proc)), (self._read_stderr, (interface, proc))):
                thread = threading.Thread(target=target, args=args, daemon=True)
                thread.start()
                self._threads.append(thread)

    def frames(self) -> Iterator[Frame | None]:
        """Frames as they arrive; None every 0.5 s without traffic (so the caller can do housekeeping)."""
        running = len(self.interfaces)
        while running:
            try:
                item = self._queue.get(timeout=IDLE_STEP_S)
            except queue.Empty:
                yield None
                continue
            if isinstance(item, Exception):
                raise item
            if item is _EOF:
                running -= 1
                continue
            yield from item

    def request_stats(self) -> None:
        for proc in self._procs:
            if proc.poll() is None and self.tool.endswith("tcpdump"):
                proc.send_signal(signal.SIGUSR1)

    def stop(self) -> None:
        self._stopping = True
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # -- reader threads ------------------------------------------------------------------------
    def _read_pcap(self, interface: str, proc: subprocess.Popen) -> None:
        fd = proc.stdout.fileno()
        buf = b""
        try:
            while len(buf) < PCAP_HEADER["<"].size:
                more = os.read(fd, 65536)
                if not more:
                    raise LiveError(self._startup_failure(interface, proc))
                buf += more
            if buf[:4] not in PCAP_MAGICS:
                raise LiveError(f"{interface}: the capture tool did not write pcap (magic {buf[:4].hex()})")
            order, units = PCAP_MAGICS[buf[:4]]
            linktype = PCAP_HEADER[order].unpack_from(buf)[6] & LINKTYPE_MASK
            record = PCAP_RECORD[order]
            pos, count = PCAP_HEADER[order].size, 0
            while True:
                batch = []                      # one queue hand-off per read, not per frame
                while len(buf) - pos >= 16:
                    sec, frac, caplen, wire_len = record.unpack_from(buf, pos)
                    if caplen > MAX_CAPLEN:
                        raise LiveError(f"{interface}: corrupt record length {caplen} from the capture tool")
                    if len(buf) - pos < 16 + caplen:
                        break
                    count += 1
                    batch.append(Frame(sec + frac / units, count, linktype, buf[pos + 16:pos + 16 + caplen],
                                       wire_len, 0, None))
                    pos += 16 + caplen
                if batch:
                    self._queue.put(batch)
                buf = buf[pos:]
                pos = 0
                more = os.read(fd, 1 << 20)
                if not more:
                    break
                buf += more
            self.stats.per_interface[interface] = count
        except LiveError as exc:
            if not self._stopping:
                self._queue.put(exc)
        finally:
            self._queue.put(_EOF)

    def _read_stderr(self, interface: str, proc: subprocess.Popen) -> None:
        self._stderr = getattr(self, "_stderr", {})
        lines = []
        for line in proc.stderr:
            lines.append(line)
            del lines[:-20]
            self._stderr[interface] = lines
            m = _DROPPED.search(line)
            if m:
                self.stats.dropped = int(m.group(1))
            m = _CAPTURED.search(line)
            if m:
                self.stats.captured = int(m.group(1))

    def _startup_failure(self, interface: str, proc: subprocess.Popen) -> str:
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        text = b"".join(getattr(self, "_stderr", {}).get(interface, [])).decode(errors="replace").strip()
        low = text.lower()
        if "permission" in low or "not permitted" in low:
            return (f"no permission to capture on {interface}: run as root or give {os.path.basename(self.tool)} "
                    f"the cap_net_raw,cap_net_admin capabilities")
        if "no such device" in low or "doesn't exist" in low:
            return f"interface {interface!r} does not exist"
        return f"{os.path.basename(self.tool)} on {interface} stopped: {text.splitlines()[-1] if text else 'no output'}"


_EOF = object()
IDLE_STEP_S = 0.5            # without packets for this long, frames() yields None (monitor advances its clock)


class PysharkCapture:
    """pyshark.LiveCapture (tshark in JSON mode with raw bytes): slower, no kernel drop counter."""

    def __init__(self, interfaces: list[str], bpf: str | None = None):
        for name in interfaces:
            check_interface(name)
        if shutil.which("tshark") is None:
            raise LiveError("the pyshark backend needs tshark (Debian: apt-get install tshark)")
        import pyshark
        self._capture = pyshark.LiveCapture(interface=interfaces, bpf_filter=bpf, use_json=True, include_raw=True)
        self.stats = CaptureStats()

    def start(self) -> None:
        """pyshark starts tshark lazily, on the first packet requested."""

    def frames(self) -> Iterator[Frame | None]:
        for n, pkt in enumerate(self._capture.sniff_continuously(), 1):
            encap = int(getattr(pkt.frame_info, "encap_type", 1))
            self.stats.captured = n
            yield Frame(float(pkt.sniff_timestamp), n, _WTAP_TO_LINKTYPE.get(encap, 1), pkt.get_raw_packet(),
                        int(pkt.length), 0, None)

    def request_stats(self) -> None:
        """tshark reports no kernel drop counters through pyshark."""

    def stop(self) -> None:
        self._capture.close()
