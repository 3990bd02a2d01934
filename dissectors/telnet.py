"""Telnet (RFC 854): option negotiation (IAC WILL/WONT/DO/DONT, RFC 855 subnegotiation) and, in the
server's text, the login exchange: "login:" and "Password:" prompts and failed logins. What the client
types is never kept."""
from __future__ import annotations

import re
from dataclasses import dataclass

from voipwatch.records import Anomaly, PacketMeta, at_packet, declare, r6, vlan_text

TELNET_PORT = 23
IAC, SB, SE = 0xFF, 0xFA, 0xF0                        # RFC 854: Interpret As Command; RFC 855 sub-negotiation
NEGOTIATION = frozenset((0xFB, 0xFC, 0xFD, 0xFE))     # WILL, WONT, DO, DONT
MAX_TEXT = 512                                        # server text kept to find a prompt across segments
_LOGIN = re.compile(rb"(?i)(login|username|user name)\s*:\s*$")
_PASSWORD = re.compile(rb"(?i)password\s*:\s*$")
_FAILED = re.compile(rb"(?i)(login incorrect|login failed|authentication failed|access denied|bad password)")

ANOMALIES: dict[str, str] = {}      # everything after the first byte is text or IAC commands: nothing is malformed


@dataclass(frozen=True, slots=True)
class TelnetEvent:
    """One notable moment of a Telnet direction: "negotiation" (its first IAC command), "login_prompt",
    "password_prompt" or "login_failed" (server text), "client_input" (the client typed after a password
    prompt: a password was sent, its value not kept)."""
    pkt: PacketMeta
    event: str
    options: int = 0                  # IAC negotiations seen in the direction so far


declare(TelnetEvent, rank=60, timeline=at_packet, table="telnet", sort=lambda e: (e.pkt.ts, e.pkt.frame), columns=(
    ("ts", "Float64", lambda e: r6(e.pkt.ts)),
    ("frame", "Int64", lambda e: e.pkt.frame),
    ("src", "string", lambda e: e.pkt.src),
    ("dst", "string", lambda e: e.pkt.dst),
    ("vlan", "string", lambda e: vlan_text(e.pkt.vlan)),
    ("event", "string", lambda e: e.event),
    ("options", "Int64", lambda e: e.options),
))


class TelnetFramer:
    """One Telnet direction: IAC commands counted and removed, the rest read as text for prompts."""
    __slots__ = ("synced", "abandoned", "options", "text", "server")

    def __init__(self) -> None:
        self.synced = True
        self.abandoned = False
        self.options = 0
        self.text = b""
        self.server: bool | None = None

    def frame(self, buf: bytes, meta: PacketMeta) -> tuple[list, int, list[Anomaly]]:
        if self.server is None:
            self.server = meta.sport == TELNET_PORT
        events: list[str] = []
        out = bytearray()
        pos, n = 0, len(buf)
        while pos < n:
            b = buf[pos]
            if b != IAC:
                out.append(b)
                pos += 1
                continue
            if pos + 1 >= n:
                break                        # an IAC split across segments: wait
            cmd = buf[pos + 1]
            if cmd in NEGOTIATION:
                if pos + 2 >= n:
                    break
                if not self.options:
                    events.append("negotiation")
                self.options += 1
                pos += 3
            elif cmd == SB:
                end = buf.find(bytes((IAC, SE)), pos + 2)
                if end < 0:
                    if n - pos > MAX_TEXT:
                        pos = n              # an unterminated sub-negotiation: dropped
                    break
                pos = end + 2
            elif cmd == IAC:
                out.append(IAC)              # an escaped 0xFF data byte
                pos += 2
            else:
                pos += 2                     # NOP, GA, AYT, ...
        if self.server:
            self.text = (self.text + bytes(out))[-MAX_TEXT:]
            tail = self.text.rstrip(b"\0")
            if _FAILED.search(bytes(out)):
                events.append("login_failed")
            if _PASSWORD.search(tail):
                events.append("password_prompt")
                self.text = b""
            elif _LOGIN.search(tail):
                events.append("login_prompt")
                self.text = b""
        return [(e, self.options) for e in events], pos, []

    def end(self, ts: float, frame: int, src: str, dst: str, why: str) -> list[Anomaly]:
        return []


def parse(meta: PacketMeta, unit: tuple[str, int]) -> tuple[TelnetEvent, list[Anomaly]]:
    return TelnetEvent(meta, unit[0], unit[1]), []
