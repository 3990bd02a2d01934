"""A TCP direction framed by a length in each message's header (TPKT, RFC 1006 §6; SCCP/Skinny): a framer
that gives up the direction, once, with a named anomaly when a header is not the protocol's."""
from __future__ import annotations

from typing import Callable

from voipwatch.records import Anomaly, PacketMeta


class LengthFramer:
    """Splits whole messages by `size(header)` (the message's total length, or None when the header is not
    the protocol's); `header_len` octets are needed to read it. Bounded: a size over `max_size` is not the
    protocol either. A direction given up is consumed without being framed."""
    __slots__ = ("header_len", "size", "max_size", "layer", "bad", "synced", "abandoned")

    def __init__(self, header_len: int, size: Callable[[bytes], int | None], max_size: int, layer: str,
                 bad: str) -> None:
        self.header_len, self.size, self.max_size, self.layer, self.bad = header_len, size, max_size, layer, bad
        self.synced = True
        self.abandoned = False

    def frame(self, buf: bytes, meta: PacketMeta) -> tuple[list[bytes], int, list[Anomaly]]:
        messages: list[bytes] = []
        if self.abandoned:
            return messages, len(buf), []
        pos, n = 0, len(buf)
        while n - pos >= self.header_len:
            size = self.size(buf[pos:pos + self.header_len])
            if size is None or size > self.max_size:
                self.abandoned = True
                return messages, n, [Anomaly(meta.ts, meta.frame, self.layer, self.bad,
                                             f"header {buf[pos:pos + self.header_len].hex()} at byte {pos} of a "
                                             f"segment: the direction is no longer framed ({n - pos} bytes dropped)",
                                             meta.src, meta.dst)]
            if n - pos < size:
                break
            messages.append(buf[pos:pos + size])
            pos += size
        return messages, pos, []

    def end(self, ts: float, frame: int, src: str, dst: str, why: str) -> list[Anomaly]:
        return []
