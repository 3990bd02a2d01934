"""SCCP/Skinny (Cisco Skinny Client Control Protocol, TCP 2000): the 12-octet header of each message, its
message id named as Wireshark names it, and the device name of a RegisterReq. Cisco publishes no
specification; the layout is Wireshark's (epan/dissectors/packet-skinny.c)."""
from __future__ import annotations

import struct

from dissectors.length_framer import LengthFramer
from voipwatch.records import Anomaly, PacketMeta, VoipControl

SKINNY_PORT = 2000          # SCCP over TLS uses 2443, which is TLS's business
HEADER = 12                 # data length (LE 32, counts from the message id), header version (LE 32), message id (LE 32)
MAX_MESSAGE = 64 * 1024
MAX_HEADER_VERSION = 0xFF   # 0 (basic) or a small version number (0x11, 0x12, 0x14, ... in Wireshark)
REGISTER_REQ = 0x0001
MAX_MESSAGE_ID = 0x01FF
DEVICE_NAME = 16            # RegisterReq: the station's device name, NUL-padded

# Message ids and names as Wireshark's skinny.messageId (the common ones; others shown as hex).
MESSAGES = {
    0x0000: "KeepAliveReq", 0x0001: "RegisterReq", 0x0002: "IpPort", 0x0003: "KeypadButton", 0x0004: "EnblocCall",
    0x0005: "Stimulus", 0x0006: "OffHook", 0x0007: "OnHook", 0x000F: "VersionReq", 0x0010: "CapabilitiesRes",
    0x0020: "Alarm", 0x0022: "OpenReceiveChannelAck", 0x0023: "ConnectionStatisticsRes", 0x0026: "SoftKeyEvent",
    0x0027: "UnregisterReq", 0x0028: "SoftKeyTemplateReq", 0x002C: "MediaResourceNotification",
    0x002D: "RegisterAvailableLines", 0x0049: "MediaPathEvent", 0x0081: "RegisterAck", 0x0082: "StartTone",
    0x0083: "StopTone", 0x0085: "SetRinger", 0x0086: "SetLamp", 0x0088: "SetSpeakerMode",
    0x008A: "StartMediaTransmission", 0x008B: "StopMediaTransmission", 0x008F: "CallInfo",
    0x0098: "VersionRes", 0x009B: "CapabilitiesReq", 0x009D: "RegisterReject", 0x009F: "Reset",
    0x0100: "KeepAliveAck", 0x0105: "OpenReceiveChannel", 0x0106: "CloseReceiveChannel",
    0x0110: "SelectSoftKeys", 0x0111: "CallState", 0x0116: "ActivateCallPlane", 0x011D: "DialedNumber",
    0x0118: "UnregisterAck", 0x0144: "DisplayPriNotifyV2", 0x0145: "DisplayPromptStatusV2", 0x014A: "CallInfoV2",
    0x0009: "ForwardStatReq", 0x000A: "SpeedDialStatReq", 0x000B: "LineStatReq", 0x000C: "ConfigStatReq",
    0x000D: "TimeDateReq", 0x000E: "ButtonTemplateReq", 0x0025: "SoftKeySetReq", 0x0090: "ForwardStatRes",
    0x0091: "SpeedDialStatRes", 0x0092: "LineStatRes", 0x0093: "ConfigStatRes", 0x0094: "TimeDateRes",
    0x0097: "ButtonTemplateRes", 0x0099: "DisplayText", 0x009A: "ClearDisplay", 0x0108: "SoftKeyTemplateRes",
    0x0109: "SoftKeySetRes", 0x0112: "DisplayPromptStatus", 0x0113: "ClearPromptStatus", 0x0114: "DisplayNotify",
    0x0115: "ClearNotify", 0x0117: "DeactivateCallPlane", 0x0154: "StartMediaTransmissionAck",
}

ANOMALIES = {
    "sccp.bad_header": "a TCP direction on port 2000 taken as SCCP/Skinny whose next 12-octet header has a length "
                       "under 4 or over 64 KiB or a header version over 255: no longer framed",
    "sccp.short_message": "an SCCP/Skinny message shorter than its 12-octet header or RegisterReq without its "
                          "device name",
}


def _size(header: bytes) -> int | None:
    """A message's total length from its header, or None when the header is not SCCP's."""
    length, version = struct.unpack_from("<II", header)
    return 8 + length if length >= 4 and version <= MAX_HEADER_VERSION else None


def looks_like_skinny(payload: bytes) -> bool:
    """The first segment begins with a plausible header: a message id of the station or call manager range
    (Wireshark names ids up to 0x0160, and 0x8000.. for SPCP)."""
    if len(payload) < HEADER or _size(payload[:HEADER]) is None:
        return False
    msg_id = struct.unpack_from("<I", payload, 8)[0]
    return msg_id <= MAX_MESSAGE_ID or msg_id in MESSAGES


def framer() -> LengthFramer:
    return LengthFramer(HEADER, _size, MAX_MESSAGE, "sccp", "sccp.bad_header")


def parse(meta: PacketMeta, message: bytes) -> tuple[VoipControl | None, list[Anomaly]]:
    if len(message) < HEADER:
        return None, [Anomaly(meta.ts, meta.frame, "sccp", "sccp.short_message", f"{len(message)} bytes",
                              meta.src, meta.dst)]
    msg_id = struct.unpack_from("<I", message, 8)[0]
    name = MESSAGES.get(msg_id, f"0x{msg_id:04x}")
    device = None
    if msg_id == REGISTER_REQ:
        raw = message[HEADER:HEADER + DEVICE_NAME]
        if len(raw) < DEVICE_NAME:
            return None, [Anomaly(meta.ts, meta.frame, "sccp", "sccp.short_message",
                                  f"RegisterReq of {len(message)} bytes", meta.src, meta.dst)]
        device = raw.split(b"\0", 1)[0].decode("ascii", "replace")
    return VoipControl(meta, "sccp", name, msg_id, endpoint=device), []
