"""IAX2 (RFC 5456, UDP 4569): full frames' header (frame type and subclass, call numbers) and, in IAX
control frames, the called/calling number and ENCRYPTION information elements; mini and meta frames are
media, counted only."""
from __future__ import annotations

import struct

from voipwatch.records import Anomaly, PacketMeta, VoipControl

IAX2_PORT = 4569
FULL_HEADER = 12             # §8.1.1: F|source call, R|destination call, timestamp, oseqno, iseqno, type, C|subclass
MINI_HEADER = 4              # §8.1.2: F=0|source call, 16-bit timestamp
TYPE_CONTROL, TYPE_IAX = 4, 6
IE_CALLED_NUMBER, IE_CALLING_NUMBER, IE_ENCRYPTION = 0x01, 0x02, 0x2B   # §8.6.1, §8.6.2, §8.6.34
MAX_DIGITS = 32

# §8.2 frame types, §8.4 IAX subclasses, §8.3 control subclasses, named as Wireshark names them
# (iax2.type, iax2.iax.subclass, iax2.control.subclass).
FRAME_TYPES = {1: "DTMF End", 2: "Voice", 3: "Video", 4: "Control", 5: "NULL", 6: "IAX", 7: "Text", 8: "Image",
               9: "HTML", 10: "Comfort Noise", 11: "Modem", 12: "DTMF Begin"}
IAX_SUBCLASSES = {
    1: "NEW", 2: "PING", 3: "PONG", 4: "ACK", 5: "HANGUP", 6: "REJECT", 7: "ACCEPT", 8: "AUTHREQ", 9: "AUTHREP",
    10: "INVAL", 11: "LAGRQ", 12: "LAGRP", 13: "REGREQ", 14: "REGAUTH", 15: "REGACK", 16: "REGREJ", 17: "REGREL",
    18: "VNAK", 19: "DPREQ", 20: "DPREP", 21: "DIAL", 22: "TXREQ", 23: "TXCNT", 24: "TXACC", 25: "TXREADY",
    26: "TXREL", 27: "TXREJ", 28: "QUELCH", 29: "UNQUELCH", 30: "POKE", 32: "MWI", 33: "UNSUPPORT",
    34: "TRANSFER", 35: "PROVISION", 36: "FWDOWNL", 37: "FWDATA", 38: "TXMEDIA", 39: "RTKEY", 40: "CALLTOKEN",
}
CONTROL_SUBCLASSES = {1: "HANGUP", 2: "RING", 3: "RINGING", 4: "ANSWER", 5: "BUSY", 6: "TKOFFHK", 7: "OFFHOOK"}
# NEW and ACCEPT are where encryption is offered and chosen (§6.2.1, §8.6.34): absent there, there is none.
NEGOTIATING = frozenset((1, 7))

ANOMALIES = {
    "iax2.short_frame": "a datagram on UDP 4569 with the F bit set but shorter than a full frame's 12-octet "
                        "header (RFC 5456 §8.1.1)",
    "iax2.bad_ie": "an IAX2 information element whose length runs past the frame: the rest is not read",
}


def is_full_frame(payload: bytes) -> bool:
    """The F bit (§8.1): a full frame; a mini frame (or meta frame) has it clear."""
    return bool(payload) and payload[0] & 0x80 != 0


def is_mini_frame(payload: bytes) -> bool:
    return len(payload) >= MINI_HEADER and not payload[0] & 0x80


def parse(meta: PacketMeta, payload: bytes) -> tuple[VoipControl | None, list[Anomaly]]:
    if len(payload) < FULL_HEADER:
        return None, [Anomaly(meta.ts, meta.frame, "iax2", "iax2.short_frame", f"{len(payload)} bytes",
                              meta.src, meta.dst)]
    source, dest = struct.unpack_from(">HH", payload)
    ftype, csub = payload[10], payload[11]
    # §8.1.1: with the C bit the subclass is a power of two, 2**(low 7 bits).
    subclass = 1 << (csub & 0x7F) if csub & 0x80 else csub
    names = IAX_SUBCLASSES if ftype == TYPE_IAX else CONTROL_SUBCLASSES if ftype == TYPE_CONTROL else {}
    message = names.get(subclass) or FRAME_TYPES.get(ftype, f"type {ftype}")
    calls = f"{source & 0x7FFF}/{dest & 0x7FFF}"
    if ftype != TYPE_IAX:
        return VoipControl(meta, "iax2", message, subclass, calls), []
    called = calling = None
    encryption: int | None = None
    notes: list[Anomaly] = []
    pos = FULL_HEADER
    while pos + 2 <= len(payload):
        ie, length = payload[pos], payload[pos + 1]
        if pos + 2 + length > len(payload):
            notes.append(Anomaly(meta.ts, meta.frame, "iax2", "iax2.bad_ie", f"IE {ie} of {length} bytes, "
                                 f"{len(payload) - pos - 2} left", meta.src, meta.dst))
            break
        content = payload[pos + 2:pos + 2 + length]
        if ie == IE_CALLED_NUMBER:
            called = content[:MAX_DIGITS].decode("ascii", "replace")
        elif ie == IE_CALLING_NUMBER:
            calling = content[:MAX_DIGITS].decode("ascii", "replace")
        elif ie == IE_ENCRYPTION and length == 2:
            encryption = struct.unpack(">H", content)[0]
        pos += 2 + length
    secure = bool(encryption) if encryption is not None else (False if subclass in NEGOTIATING else None)
    return VoipControl(meta, "iax2", message, subclass, calls, calling=calling, called=called,
                       secure=secure), notes
