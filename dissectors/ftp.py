"""FTP control connections (RFC 959): commands and replies, one per line. USER's name is kept; PASS's
argument never is (SHA-256 + length only)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from dissectors.secrets import DEFAULT_PASSWORDS, fingerprint
from dissectors.tcp import Splitter
from voipwatch.records import Anomaly, PacketMeta, at_packet, declare, r6, vlan_text

FTP_PORT = 21
MAX_LINE = 4096       # RFC 959 sets no limit; a longer run without CRLF is cut here
# RFC 959 §4.1: a command is 3-4 letters, then SP argument; §4.2: a reply is a 3-digit code then SP or "-".
_COMMAND = re.compile(rb"([A-Za-z]{3,4})(?: ([^\r\n]*))?\r?$")
_REPLY = re.compile(rb"([1-5]\d\d)([ -])([^\r\n]*)\r?$")
_SECRET_ARGS = frozenset(("PASS", "ACCT"))

ANOMALIES = {
    "ftp.line_too_long": f"an FTP control line longer than {MAX_LINE} bytes: cut",
}


@dataclass(frozen=True, slots=True)
class FtpCommand:
    """One FTP control line: a command (with its argument, except a password's) or a reply code."""
    pkt: PacketMeta
    is_request: bool
    command: str | None = None
    arg: str | None = None
    secret_sha256: str | None = None
    secret_len: int | None = None
    secret_default: bool | None = None
    reply_code: int | None = None
    reply_text: str | None = None


declare(FtpCommand, rank=60, timeline=at_packet, table="ftp", sort=lambda c: (c.pkt.ts, c.pkt.frame), columns=(
    ("ts", "Float64", lambda c: r6(c.pkt.ts)),
    ("frame", "Int64", lambda c: c.pkt.frame),
    ("src", "string", lambda c: c.pkt.src),
    ("dst", "string", lambda c: c.pkt.dst),
    ("vlan", "string", lambda c: vlan_text(c.pkt.vlan)),
    ("is_request", "boolean", lambda c: c.is_request),
    ("command", "string", lambda c: c.command),
    ("arg", "string", lambda c: c.arg),
    ("secret_sha256", "string", lambda c: c.secret_sha256),
    ("secret_len", "Int64", lambda c: c.secret_len),
    ("reply_code", "Int64", lambda c: c.reply_code),
    ("reply_text", "string", lambda c: c.reply_text),
))


def split_lines(buf: bytes) -> tuple[list[bytes], int]:
    """Telnet-style lines (RFC 959 §4: CRLF-terminated); an over-long run is cut into MAX_LINE pieces."""
    lines, pos = [], 0
    while True:
        eol = buf.find(b"\n", pos)
        if eol < 0:
            if len(buf) - pos > MAX_LINE:
                lines.append(buf[pos:pos + MAX_LINE])
                pos += MAX_LINE
                continue
            return lines, pos
        lines.append(buf[pos:eol])
        pos = eol + 1


def stream_framer() -> Splitter:
    return Splitter(split_lines)


def parse(meta: PacketMeta, line: bytes) -> tuple[FtpCommand | None, list[Anomaly]]:
    notes = [] if len(line) <= MAX_LINE - 1 or line.endswith(b"\r") else \
        [Anomaly(meta.ts, meta.frame, "ftp", "ftp.line_too_long", f"{len(line)} bytes", meta.src, meta.dst)]
    to_server = meta.dport == FTP_PORT or (meta.sport != FTP_PORT and not _REPLY.match(line))
    if not to_server:
        m = _REPLY.match(line)
        if m is None:
            return None, notes              # a continuation line of a multi-line reply (§4.2)
        return FtpCommand(meta, False, reply_code=int(m.group(1)),
                          reply_text=m.group(3).decode("utf-8", "replace")[:256]), notes
    m = _COMMAND.match(line)
    if m is None:
        return None, notes
    command, arg = m.group(1).decode().upper(), m.group(2) or b""
    if command in _SECRET_ARGS:
        digest, length = fingerprint(arg)
        return FtpCommand(meta, True, command, secret_sha256=digest, secret_len=length,
                          secret_default=arg.lower() in DEFAULT_PASSWORDS), notes
    return FtpCommand(meta, True, command, arg.decode("utf-8", "replace")[:512] or None), notes
