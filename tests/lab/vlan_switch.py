"""A tiny userspace 802.1Q switch for the lab (the kernel here has no 8021q module).

Run inside the switch namespace:

    python3 vlan_switch.py --port kam=110 --port ph1=110 --port rt110=110 --port data=20 --port rt20=20 \
        --mirror mirror0 --max-seconds 240

Every `--port IFACE=VID` is an access port: frames arriving on it belong to VLAN VID (frames that
arrive already tagged are dropped, as an access port would, so no VLAN hopping; with --mirror-tagged
the mirror still gets a copy of them as received, the way a SPAN session copies a port's ingress). The switch learns
source MACs per VLAN and forwards only between ports of the same VLAN (flooding broadcast, multicast
and unknown unicast within that VLAN). Every frame accepted from an access port is also mirrored,
with an 802.1Q tag carrying its VLAN id, to the `--mirror` interface (the trunk a SPAN sensor sees).

Bounded: it exits after --max-seconds or --max-frames, on SIGTERM/SIGINT, and writes its counters as
one JSON line to stderr on exit. Standard library only (raw AF_PACKET sockets).
"""
from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_OUTGOING = 4
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
MAX_MACS = 4096             # learned (vlan, mac) entries before the table is flushed
RCVBUF = 4 << 20
SNAPLEN = 65535


class Port:
    def __init__(self, name: str, vid: int | None):
        self.name = name
        self.vid = vid      # None: the mirror (trunk) port
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, RCVBUF)
        self.sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        self.sock.bind((name, ETH_P_ALL))
        self.sock.setblocking(False)
        self.rx = self.tx = self.dropped = self.errors = 0

    def send(self, frame: bytes) -> None:
        try:
            self.sock.send(frame)
            self.tx += 1
        except OSError:
            self.errors += 1


def tag(frame: bytes, vid: int, pcp: int = 0) -> bytes:
    return frame[:12] + struct.pack("!HH", ETH_P_8021Q, (pcp << 13) | (vid & 0x0FFF)) + frame[12:]


def was_tagged(frame: bytes, ancdata) -> bool:
    """True when the frame carried a VLAN tag on arrival (inline, or stripped into the aux data)."""
    if len(frame) >= 14 and struct.unpack_from("!H", frame, 12)[0] in (ETH_P_8021Q, ETH_P_8021AD):
        return True
    for level, kind, data in ancdata:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= 4:
            if struct.unpack_from("I", data, 0)[0] & TP_STATUS_VLAN_VALID:
                return True
    return False


def as_received(frame: bytes, ancdata) -> bytes:
    """The frame with the outer tag the kernel stripped into the aux data put back (struct
    tpacket_auxdata: tp_status, tp_len, tp_snaplen, tp_mac, tp_net, tp_vlan_tci, tp_vlan_tpid)."""
    for level, kind, data in ancdata:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= 20:
            status, tci, tpid = struct.unpack_from("I", data, 0)[0], *struct.unpack_from("HH", data, 16)
            if status & TP_STATUS_VLAN_VALID:
                tpid = tpid if status & TP_STATUS_VLAN_TPID_VALID and tpid else ETH_P_8021Q
                return frame[:12] + struct.pack("!HH", tpid, tci) + frame[12:]
    return frame


def mirror_copy_of_tagged(frame: bytes, vid: int) -> bytes:
    """A tagged frame that arrived on an access port of VLAN vid, as the trunk mirror carries it: as
    received when its outer tag already is vid (a double-tagging hop from the port's own VLAN), else
    with vid's tag on top."""
    if struct.unpack_from("!H", frame, 12)[0] in (ETH_P_8021Q, ETH_P_8021AD) and \
            struct.unpack_from("!H", frame, 14)[0] & 0x0FFF == vid:
        return frame
    return tag(frame, vid)


def run(ports: list[Port], mirror: Port | None, max_seconds: float, max_frames: int,
        mirror_tagged: bool = False) -> dict:
    stop = False

    def on_signal(signum, _frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    by_fd = {p.sock.fileno(): p for p in ports}
    if mirror is not None:
        by_fd[mirror.sock.fileno()] = mirror
    by_vlan: dict[int, list[Port]] = {}
    for p in ports:
        by_vlan.setdefault(p.vid, []).append(p)
    macs: dict[tuple[int, bytes], Port] = {}
    poller = select.poll()
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + max_seconds
    frames = mirrored = flushes = 0
    reason = "signal"
    while not stop:
        if time.monotonic() >= deadline:
            reason = "max_seconds"
            break
        if frames >= max_frames:
            reason = "max_frames"
            break
        try:
            events = poller.poll(200)
        except InterruptedError:
            continue
        for fd, _ev in events:
            port = by_fd[fd]
            while True:       # drain the socket
                try:
                    frame, ancdata, _flags, addr = port.sock.recvmsg(SNAPLEN, socket.CMSG_SPACE(32))
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    port.errors += 1
                    break
                if addr[2] == PACKET_OUTGOING:      # our own transmissions, seen by the tap
                    continue
                if port is mirror:                  # the trunk is a capture port: ignore its input
                    port.dropped += 1
                    continue
                port.rx += 1
                frames += 1
                if len(frame) < 14:
                    port.dropped += 1
                    continue
                if was_tagged(frame, ancdata):
                    port.dropped += 1
                    if mirror is not None and mirror_tagged:
                        mirror.send(mirror_copy_of_tagged(as_received(frame, ancdata), port.vid))
                        mirrored += 1
                    continue
                vid = port.vid
                dst, src = frame[0:6], frame[6:12]
                if not src[0] & 1:
                    if len(macs) >= MAX_MACS:
                        macs.clear()
                        flushes += 1
                    macs[(vid, src)] = port
                if mirror is not None:
                    mirror.send(tag(frame, vid))
                    mirrored += 1
                out = None if dst[0] & 1 else macs.get((vid, dst))
                if out is not None:
                    if out is not port:
                        out.send(frame)
                else:
                    for other in by_vlan[vid]:
                        if other is not port:
                            other.send(frame)
    return {"reason": reason, "frames": frames, "mirrored": mirrored, "mac_flushes": flushes,
            "macs": len(macs),
            "ports": {p.name: {"vlan": p.vid, "rx": p.rx, "tx": p.tx, "dropped": p.dropped, "errors": p.errors}
                      for p in list(ports) + ([mirror] if mirror else [])}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", action="append", default=[], metavar="IFACE=VID", help="access port and its VLAN id")
    ap.add_argument("--mirror", metavar="IFACE", help="trunk port that receives a tagged copy of every frame")
    ap.add_argument("--mirror-tagged", action="store_true",
                    help="mirror tagged frames that access ports drop (as received), e.g. a double-tagging hop")
    ap.add_argument("--max-seconds", type=float, default=300.0, help="exit after this long (default 300)")
    ap.add_argument("--max-frames", type=int, default=5_000_000, help="exit after this many frames (default 5M)")
    args = ap.parse_args(argv)
    ports = []
    for spec in args.port:
        name, sep, vid = spec.partition("=")
        if not sep or not vid.isdigit() or not 1 <= int(vid) <= 4094:
            ap.error(f"--port {spec!r}: expected IFACE=VID with VID 1..4094")
        ports.append(Port(name, int(vid)))
    if not ports:
        ap.error("at least one --port is needed")
    mirror = Port(args.mirror, None) if args.mirror else None
    print(json.dumps({"ready": True, "ports": [p.name for p in ports], "mirror": args.mirror}), file=sys.stderr,
          flush=True)
    stats = run(ports, mirror, args.max_seconds, args.max_frames, args.mirror_tagged)
    print(json.dumps(stats), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
