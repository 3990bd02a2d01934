"""SIP over TCP (RFC 3261 §18.3): a direction's message framing, resynchronised on start lines, and
the probe that finds SIP on TCP directions outside the SIP ports."""
from __future__ import annotations

import re

from dissectors.sip import (_BLANK_LINE, _JUNK_PREVIEW, _VERSION, MAX_HEADER_LINE, _find_start, _line_end,
                            _skip_crlf, _start_line, looks_like_sip)
from voipwatch.records import Anomaly, PacketMeta

MAX_STREAM_HEAD = 131072    # bytes of an unterminated header block buffered before it is cut
MAX_STREAM_BODY = 1 << 20   # Content-Length honoured; longer bodies are cut and resynced
MAX_UNSYNCED_BYTES = 65536  # bytes a direction framed as SIP may hold without a start line before it is given up
PROBE_SEGMENTS = 32         # data segments of a direction outside the SIP ports probed for SIP

_LINE_END_BYTES = (10, 13)  # LF, CR

# Every Anomaly.name SipStreamFramer and SipStreamProbe give of their own (layer "sip"; the framer also
# gives sip.not_sip_on_sip_port, declared in dissectors.sip).
ANOMALIES = {
    "sip.resync_skipped_bytes": "over TCP, bytes between SIP messages that begin no start line (junk, the rest of "
                                "a message the capture began inside, an over-long body): skipped up to the next "
                                "start line, counted",
    "sip.probe_gave_up": f"a TCP direction outside the SIP ports whose first {PROBE_SEGMENTS} data segments held "
                         "'SIP/2.0' but began no SIP message (SIP inside another protocol?): no longer probed",
}
_STREAM_CL = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d{1,10})[ \t]*\r?$", re.I | re.M)


class SipStreamFramer:
    """One TCP direction's SIP framing (§18.3: the start line, the headers up to the empty line, then
    Content-Length bytes of body), resynchronised as Wireshark does.

    At every message boundary CR/LF keep-alives are skipped (RFC 5626 §4.4.1: "\\r\\n\\r\\n" pings and
    "\\r\\n" pongs); anything else that is not a Request-Line (§7.1) or Status-Line (§7.2) is skipped
    up to the next start line: junk after a message, the rest of a message whose start the capture
    missed (a capture begun mid-connection), a body longer than MAX_STREAM_BODY. Each run of skipped
    bytes is one `sip.resync_skipped_bytes` anomaly with its byte count, raised where the next start
    line is found or where the direction ends. A direction that holds no start line at all in its
    first MAX_UNSYNCED_BYTES (a non-SIP stream on a SIP port) is given up, once, as
    `sip.not_sip_on_sip_port`; a shorter one is reported so when it ends. The cost of a segment is
    bounded: an unfinished line is kept up to MAX_HEADER_LINE bytes, an unterminated header block up
    to MAX_STREAM_HEAD.
    """
    __slots__ = ("synced", "abandoned", "run", "run_head")

    def __init__(self) -> None:
        self.synced = False         # a start line has been seen in this direction
        self.abandoned = False      # no start line in MAX_UNSYNCED_BYTES: the bytes are not SIP
        self.run = 0                # bytes skipped since the last message, no start line found yet
        self.run_head = b""         # the first of them, quoted in the anomaly

    def frame(self, buf: bytes, meta: PacketMeta) -> tuple[list[bytes], int, list[Anomaly]]:
        messages: list[bytes] = []
        notes: list[Anomaly] = []
        if self.abandoned:
            return messages, len(buf), notes
        pos = 0
        n = len(buf)
        while pos < n:
            after = _skip_crlf(buf, pos)
            if self.run:                          # line ends inside skipped bytes belong to the run
                self.run += after - pos
            pos = after
            if pos >= n:
                break
            eol = _line_end(buf, pos)
            if eol == n:
                # An unfinished line waits for more data, up to the longest line kept.
                if n - pos > MAX_HEADER_LINE:
                    self._skip(buf, pos, n)
                    pos = n
                break
            if _start_line(buf[pos:eol], junk=False) is None:
                found = _find_start(buf, pos)
                if found is None:
                    # No start line: skip whole lines; an unfinished last line may still become one.
                    end = max(buf.rfind(b"\n", pos), buf.rfind(b"\r", pos)) + 1
                    self._skip(buf, pos, n if n - end > MAX_HEADER_LINE else end)
                    pos = n if n - end > MAX_HEADER_LINE else end
                    break
                self._skip(buf, pos, found[0])
                pos = found[0]
                continue
            self.synced = True
            if self.run:
                notes.append(Anomaly(meta.ts, meta.frame, "sip", "sip.resync_skipped_bytes",
                                     f"{self.run} bytes skipped before a SIP start line, starting "
                                     f"{self.run_head!r}", meta.src, meta.dst))
                self.run = 0
            blank = _BLANK_LINE.search(buf, eol)
            if blank is None:
                if n - pos <= MAX_STREAM_HEAD:
                    break
                messages.append(buf[pos:pos + MAX_STREAM_HEAD])
                pos += MAX_STREAM_HEAD
                continue
            cl = _STREAM_CL.search(buf, pos, blank.start() + 1)
            end = blank.end() + min(int(cl.group(1)) if cl else 0, MAX_STREAM_BODY)
            if end > n:
                break
            messages.append(buf[pos:end])
            pos = end
        if not self.synced and self.run >= MAX_UNSYNCED_BYTES:
            self.abandoned = True
            notes += self.end(meta.ts, meta.frame, meta.src, meta.dst, "no longer read as SIP")
            pos = n
        return messages, pos, notes

    def end(self, ts: float, frame: int, src: str, dst: str, why: str) -> list[Anomaly]:
        """The open run of skipped bytes, if any, as an anomaly; the run is closed."""
        if not self.run:
            return []
        run, self.run = self.run, 0
        if self.synced:
            return [Anomaly(ts, frame, "sip", "sip.resync_skipped_bytes",
                            f"{run} bytes skipped, starting {self.run_head!r}; no SIP start line followed "
                            f"({why})", src, dst)]
        return [Anomaly(ts, frame, "sip", "sip.not_sip_on_sip_port",
                        f"{run} bytes on a TCP connection to or from a SIP port, starting {self.run_head!r}, "
                        f"held no SIP start line ({why})", src, dst)]

    def _skip(self, buf: bytes, start: int, end: int) -> None:
        """Bytes start..end of buf are not SIP: add them to the current run."""
        if end > start:
            if not self.run:
                self.run_head = buf[start:min(end, start + _JUNK_PREVIEW)]
            self.run += end - start


class SipStreamProbe:
    """Recognises SIP on a TCP direction outside the SIP ports, segment by segment (Wireshark's SIP
    heuristic): a segment that begins, after keep-alive CRLFs, with a start line at a line boundary.

    A segment that continues the line the previous one left unfinished is not tested (its first
    bytes are the end of that line: "ITE sip:..." after "INV" is no Request-Line). Only the first line
    of a segment is read, nothing is buffered, and a direction is probed for its first PROBE_SEGMENTS
    data segments only (CRLF keep-alives not counted): a SIP connection, even one captured from its
    middle, begins a message in nearly every segment. Giving up is silent for a direction that never
    held "SIP/2.0", and one sip.probe_gave_up anomaly for one that did (SIP inside something else,
    e.g. WebSocket frames, RFC 7118).
    """
    __slots__ = ("next_seq", "mid_line", "probed", "mentions")

    def __init__(self) -> None:
        self.next_seq: int | None = None
        self.mid_line = False
        self.probed = 0             # data segments probed
        self.mentions = 0           # ... of which held "SIP/2.0" without beginning with a start line

    def check(self, meta: PacketMeta, seq: int, payload: bytes) -> tuple[str, Anomaly | None]:
        """The verdict on one data segment: "sip" (this segment begins the direction's SIP), "maybe"
        (probe the next one) or "other" (given up), with the give-up's anomaly if it has one."""
        continues_line = self.mid_line and seq == self.next_seq and payload[0] not in _LINE_END_BYTES
        self.next_seq = (seq + len(payload)) & 0xFFFFFFFF
        self.mid_line = payload[-1] not in _LINE_END_BYTES
        if not continues_line and looks_like_sip(payload):
            return "sip", None
        if payload[0] in _LINE_END_BYTES and not payload.strip(b"\r\n"):
            return "maybe", None    # RFC 5626 §4.4.1 keep-alive
        self.probed += 1
        self.mentions += _VERSION in payload
        if self.probed < PROBE_SEGMENTS:
            return "maybe", None
        if not self.mentions:
            return "other", None
        return "other", Anomaly(meta.ts, meta.frame, "sip", "sip.probe_gave_up",
                                f"{self.probed} TCP segments probed, {self.mentions} holding 'SIP/2.0' but none "
                                "beginning with a SIP start line: no longer probed", meta.src, meta.dst)
