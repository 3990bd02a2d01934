"""H.225.0 call signalling (Q.931 over TPKT, TCP 1720) and RAS (UDP 1719): for call signalling the Q.931
message type, call reference and the calling/called party numbers (ITU-T Q.931 §4.5.10, §4.5.8); for RAS the
message name from the PER choice index of RasMessage (ITU-T H.225.0 Annex; X.691). The H.225.0 user-user
information element (PER-encoded ASN.1, where H.235 tokens would travel) is not decoded."""
from __future__ import annotations

import struct

from dissectors.length_framer import LengthFramer
from voipwatch.records import Anomaly, PacketMeta, VoipControl

H225_CS_PORT = 1720          # H.225.0 call signalling over TCP
H225_RAS_PORT = 1719         # RAS over UDP
TPKT_VERSION = 3             # RFC 1006 §6: version 3, reserved 0, 16-bit length including the 4-octet header
TPKT_HEADER = 4
TPKT_MAX = 0xFFFF
Q931_DISCRIMINATOR = 0x08    # Q.931 §4.2: protocol discriminator of Q.931 user-network call control
IE_CALLING = 0x6C            # Q.931 §4.5.10 calling party number
IE_CALLED = 0x70             # Q.931 §4.5.8 called party number
IE_USER_USER = 0x7E          # H.225.0 §7.2.2.1: its length is two octets in H.225.0
MAX_DIGITS = 32

# Q.931 §4.4 message types, named as Wireshark's q931.message_type (the ones H.225.0 uses, and a few more).
MESSAGE_TYPES = {
    0x01: "ALERTING", 0x02: "CALL PROCEEDING", 0x03: "PROGRESS", 0x05: "SETUP", 0x07: "CONNECT",
    0x0D: "SETUP ACKNOWLEDGE", 0x0F: "CONNECT ACKNOWLEDGE", 0x20: "USER INFORMATION", 0x45: "DISCONNECT",
    0x4D: "RELEASE", 0x5A: "RELEASE COMPLETE", 0x62: "FACILITY", 0x6E: "NOTIFY", 0x75: "STATUS ENQUIRY",
    0x7B: "INFORMATION", 0x7D: "STATUS",
}
# H.225.0 RasMessage: a CHOICE with an extension marker and 25 root alternatives (5 bits of index after the
# extension bit, X.691 §23); extension alternatives as Wireshark's h225.RasMessage names them.
RAS_MESSAGES = (
    "gatekeeperRequest", "gatekeeperConfirm", "gatekeeperReject", "registrationRequest", "registrationConfirm",
    "registrationReject", "unregistrationRequest", "unregistrationConfirm", "unregistrationReject",
    "admissionRequest", "admissionConfirm", "admissionReject", "bandwidthRequest", "bandwidthConfirm",
    "bandwidthReject", "disengageRequest", "disengageConfirm", "disengageReject", "locationRequest",
    "locationConfirm", "locationReject", "infoRequest", "infoRequestResponse", "nonStandardMessage",
    "unknownMessageResponse", "requestInProgress", "resourcesAvailableIndicate", "resourcesAvailableConfirm",
    "infoRequestAck", "infoRequestNak", "serviceControlIndication", "serviceControlResponse",
    "admissionConfirmSequence",
)
RAS_ROOT = 25

ANOMALIES = {
    "h225.bad_tpkt": "a TCP direction on port 1720 whose next TPKT header (RFC 1006 §6) is not version 3 with a "
                     "length of at least 4: no longer framed",
    "h225.not_q931": "a TPKT message on port 1720 that is not Q.931 (protocol discriminator not 0x08) or is cut "
                     "before its message type",
    "h225.bad_ie": "a Q.931 information element whose length runs past the message: the rest is not read",
    "h225.ras_unparsed": "a datagram on UDP 1719 whose first octet is no RasMessage choice: counted, not described",
}


def _tpkt_size(header: bytes) -> int | None:
    version, _reserved, length = struct.unpack(">BBH", header)
    return length if version == TPKT_VERSION and length >= TPKT_HEADER else None


def looks_like_tpkt_q931(payload: bytes) -> bool:
    """A first segment that begins a TPKT packet carrying Q.931, or is a TPKT header alone (some stacks send
    the 4-octet header in a segment of its own, as ndpi/pcap/h323.pcap frame 48 shows)."""
    if len(payload) < TPKT_HEADER or _tpkt_size(payload[:TPKT_HEADER]) is None:
        return False
    return len(payload) == TPKT_HEADER or payload[TPKT_HEADER] == Q931_DISCRIMINATOR


def framer() -> LengthFramer:
    return LengthFramer(TPKT_HEADER, _tpkt_size, TPKT_MAX, "h225", "h225.bad_tpkt")


def _number(content: bytes) -> str:
    """Digits of a party number IE's contents: octet 3, then octet 3a when octet 3's extension bit is 0."""
    start = 1 if content[0] & 0x80 else 2
    return content[start:start + MAX_DIGITS].decode("ascii", "replace")


def parse_q931(meta: PacketMeta, message: bytes) -> tuple[VoipControl | None, list[Anomaly]]:
    q931 = message[TPKT_HEADER:]
    if len(q931) < 2 or q931[0] != Q931_DISCRIMINATOR or len(q931) < 3 + (q931[1] & 0x0F):
        return None, [Anomaly(meta.ts, meta.frame, "h225", "h225.not_q931", f"{len(message)}-byte TPKT message "
                              f"starting {q931[:4].hex()}", meta.src, meta.dst)]
    ref_len = q931[1] & 0x0F
    ref = q931[2:2 + ref_len]
    # Q.931 §4.3: the flag (top bit of the first octet) says which side allocated the call reference.
    reference = str(int.from_bytes(bytes((ref[0] & 0x7F,)) + ref[1:], "big")) if ref else None
    pos = 2 + ref_len
    mtype = q931[pos]
    pos += 1
    calling = called = None
    notes: list[Anomaly] = []
    while pos < len(q931):
        ie = q931[pos]
        if ie & 0x80:                    # §4.5.1: a single-octet IE has no length
            pos += 1
            continue
        wide = ie == IE_USER_USER
        if pos + 2 + wide > len(q931):
            notes.append(Anomaly(meta.ts, meta.frame, "h225", "h225.bad_ie", f"IE 0x{ie:02x} without its length",
                                 meta.src, meta.dst))
            break
        length = struct.unpack_from(">H", q931, pos + 1)[0] if wide else q931[pos + 1]
        start = pos + 2 + wide
        if start + length > len(q931):
            notes.append(Anomaly(meta.ts, meta.frame, "h225", "h225.bad_ie", f"IE 0x{ie:02x} of {length} bytes, "
                                 f"{len(q931) - start} left", meta.src, meta.dst))
            break
        content = q931[start:start + length]
        if content and ie == IE_CALLING:
            calling = _number(content)
        elif content and ie == IE_CALLED:
            called = content[1:1 + MAX_DIGITS].decode("ascii", "replace")
        pos = start + length
    return VoipControl(meta, "h225", MESSAGE_TYPES.get(mtype, f"0x{mtype:02x}"), mtype, reference,
                       calling=calling, called=called), notes


def looks_like_ras(payload: bytes) -> bool:
    """At least the choice octet and one more (every RAS message has a requestSeqNum)."""
    return len(payload) >= 2


def parse_ras(meta: PacketMeta, payload: bytes) -> tuple[VoipControl | None, list[Anomaly]]:
    """X.691 aligned PER: bit 8 of the first octet is the extension bit; a root choice's index is the next 5
    bits; an extension's index is a normally small number: bit 7 zero, then a 6-bit value."""
    first = payload[0]
    if first & 0x80:
        index = RAS_ROOT + (first & 0x3F) if not first & 0x40 else None
    else:
        index = (first >> 2) & 0x1F
    if index is None or index >= len(RAS_MESSAGES) or (not first & 0x80 and index >= RAS_ROOT):
        return None, [Anomaly(meta.ts, meta.frame, "h225", "h225.ras_unparsed", f"{len(payload)}-byte datagram "
                              f"starting {payload[:4].hex()}", meta.src, meta.dst)]
    return VoipControl(meta, "h225.ras", RAS_MESSAGES[index], index), []
