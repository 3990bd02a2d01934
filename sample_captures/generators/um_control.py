"""Writes sample_captures/um-control.pcap: VoIP control protocols other than SIP, in cleartext, and one
IAX2 trunk that negotiates encryption (the trap).

(sample_captures/um-control-benign.pcap, by um_control_benign.py, holds only the protected ones.)
Internal hosts 10.30.0.x (untagged): call agent 10.30.0.2, MGCP gateway 10.30.0.3, Megaco MGC 10.30.0.4
and MG 10.30.0.5, H.323 endpoint 10.30.0.10 and gatekeeper/gateway 10.30.0.11, Skinny phone 10.30.0.20 and
call manager 10.30.0.21, IAX2 peers 10.30.0.30/31 (cleartext) and 10.30.0.40/41 (encrypted).
- MGCP (RFC 3435): CRCX from the call agent to aaln/1@gw3.example.net with a CallId and an RTP/AVP
  SDP, the gateway's 200 with its own RTP/AVP SDP; then an MDCX offering RTP/SAVP and its 200.
- H.248 text (RFC 3525 Annex B): a ServiceChange transaction from the MG and the MGC's reply.
- H.225.0 over TPKT on TCP 1720: SETUP (calling 4001, called 5551234), CALL PROCEEDING, ALERTING, CONNECT,
  RELEASE COMPLETE; RAS on UDP 1719: a registrationRequest and registrationConfirm, cut after their PER choice
  octet and sequence number (tshark names them, then calls them malformed).
- SCCP on TCP 2000: RegisterReq of device SEP00112233AABB, RegisterAck, KeepAliveReq, KeepAliveAck.
- IAX2 on UDP 4569: NEW (called 6000, calling 4002) / ACCEPT without ENCRYPTION, two mini frames of voice;
  and NEW / ACCEPT with ENCRYPTION = 0x0001 (AES-128) between the other two peers.
"""
from __future__ import annotations

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pcapgen import ETH_IPV4, PcapWriter, UdpCapture, ethernet, ipv4, mac, tcp  # noqa: E402

T0 = 1_700_300_000.0
CA, GW, MGC, MG, H323_EP, H323_GW, PHONE, CUCM = ("10.30.0.2", "10.30.0.3", "10.30.0.4", "10.30.0.5", "10.30.0.10",
                                                   "10.30.0.11", "10.30.0.20", "10.30.0.21")
IAX_A, IAX_B, IAX_C, IAX_D = "10.30.0.30", "10.30.0.31", "10.30.0.40", "10.30.0.41"
SYN, ACK, PSH = 0x02, 0x10, 0x08


def sdp(ip: str, port: int, proto: str) -> str:
    return (f"v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
            f"m=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\n")


def mgcp(cap: UdpCapture) -> None:
    call = "A3C47F21456789F0"
    crcx = (f"CRCX 1204 aaln/1@gw3.example.net MGCP 1.0\r\nC: {call}\r\nL: p:20, a:PCMU\r\nM: recvonly\r\n\r\n"
            + sdp(CA, 4000, "RTP/AVP"))
    cap.udp(T0 + 0.0, CA, 2727, GW, 2427, crcx.encode())
    cap.udp(T0 + 0.01, GW, 2427, CA, 2727, ("200 1204 OK\r\nI: FDE234C8\r\n\r\n" + sdp(GW, 3456, "RTP/AVP")).encode())
    mdcx = (f"MDCX 1205 aaln/1@gw3.example.net MGCP 1.0\r\nC: {call}\r\nI: FDE234C8\r\nM: sendrecv\r\n\r\n"
            + sdp(CA, 4002, "RTP/SAVP"))
    cap.udp(T0 + 1.0, CA, 2727, GW, 2427, mdcx.encode())
    cap.udp(T0 + 1.01, GW, 2427, CA, 2727, b"200 1205 OK\r\n")


def megaco(cap: UdpCapture) -> None:
    change = (f"MEGACO/1 [{MG}]:2944\r\nTransaction = 9998 {{\r\n  Context = - {{\r\n    ServiceChange = ROOT "
              "{Services {Method=Restart, ServiceChangeAddress=55555, Profile=ResGW/1}}\r\n  }\r\n}\r\n")
    cap.udp(T0 + 2.0, MG, 2944, MGC, 2944, change.encode())
    cap.udp(T0 + 2.01, MGC, 2944, MG, 2944, f"MEGACO/1 [{MGC}]:2944\r\nReply = 9998 {{\r\n  Context = - "
                                            "{ServiceChange = ROOT {Services {ServiceChangeAddress=55555}}}\r\n}\r\n".encode())


def q931(mtype: int, call_ref: int, from_originator: bool, ies: bytes = b"") -> bytes:
    """TPKT (RFC 1006) + Q.931: discriminator 0x08, 2-octet call reference, message type, IEs."""
    ref = call_ref | (0 if from_originator else 0x8000)
    body = bytes((0x08, 2)) + struct.pack(">H", ref) + bytes((mtype,)) + ies
    return struct.pack(">BBH", 3, 0, 4 + len(body)) + body


def ie(ident: int, content: bytes) -> bytes:
    return bytes((ident, len(content))) + content


class TcpFlow:
    """One TCP connection's segments (handshake, then data in each direction)."""

    def __init__(self, pcap: PcapWriter, client: str, cport: int, server: str, sport: int, ident: list[int]):
        self.pcap, self.ends, self.ident = pcap, ((client, cport), (server, sport)), ident
        self.seq = [1000, 5000]

    def send(self, ts: float, from_client: bool, flags: int, payload: bytes = b"") -> None:
        i = 0 if from_client else 1
        (src, sp), (dst, dp) = self.ends[i], self.ends[1 - i]
        self.ident[0] += 1
        segment = tcp(src, sp, dst, dp, self.seq[i], self.seq[1 - i], flags, payload)
        frame = ipv4(src, dst, 6, segment, ident=self.ident[0])
        self.pcap.add(ts, ethernet(frame, ETH_IPV4, mac(int(src.split(".")[-1])), mac(int(dst.split(".")[-1]))))
        self.seq[i] += len(payload) + (1 if flags & SYN else 0)

    def open(self, ts: float) -> None:
        self.send(ts, True, SYN)
        self.send(ts + 0.001, False, SYN | ACK)
        self.send(ts + 0.002, True, ACK)


def h225(cap: UdpCapture, ident: list[int]) -> None:
    cap.udp(T0 + 3.0, H323_EP, 1719, H323_GW, 1719, bytes((3 << 2, 0x00, 0x01)))   # registrationRequest, seq 1
    cap.udp(T0 + 3.01, H323_GW, 1719, H323_EP, 1719, bytes((4 << 2, 0x00, 0x01)))  # registrationConfirm
    flow = TcpFlow(cap.pcap, H323_EP, 40100, H323_GW, 1720, ident)
    flow.open(T0 + 4.0)
    setup_ies = ie(0x04, b"\x80\x90\xa2") + ie(0x6C, b"\x81" + b"4001") + ie(0x70, b"\x81" + b"5551234")
    flow.send(T0 + 4.01, True, PSH | ACK, q931(0x05, 77, True, setup_ies))
    for i, mtype in enumerate((0x02, 0x01, 0x07)):           # CALL PROCEEDING, ALERTING, CONNECT
        flow.send(T0 + 4.1 + i * 0.5, False, PSH | ACK, q931(mtype, 77, False))
    flow.send(T0 + 10.0, True, PSH | ACK, q931(0x5A, 77, True, ie(0x08, b"\x80\x90")))   # RELEASE COMPLETE


def skinny_msg(msg_id: int, data: bytes = b"") -> bytes:
    return struct.pack("<III", 4 + len(data), 0, msg_id) + data


def skinny(cap: UdpCapture, ident: list[int]) -> None:
    flow = TcpFlow(cap.pcap, PHONE, 49200, CUCM, 2000, ident)
    flow.open(T0 + 11.0)
    register = b"SEP00112233AABB".ljust(16, b"\0") + struct.pack("<II", 0, 1) + bytes((10, 30, 0, 20)) + \
        struct.pack("<III", 7, 0, 0)
    flow.send(T0 + 11.01, True, PSH | ACK, skinny_msg(0x0001, register))
    flow.send(T0 + 11.02, False, PSH | ACK, skinny_msg(0x0081, struct.pack("<I", 30) + b"M/D/YA\0\0" + b"\0" * 8))
    flow.send(T0 + 41.0, True, PSH | ACK, skinny_msg(0x0000))
    flow.send(T0 + 41.01, False, PSH | ACK, skinny_msg(0x0100))


def iax_full(src_call: int, dst_call: int, ts_ms: int, oseq: int, iseq: int, ftype: int, subclass: int,
             ies: bytes = b"") -> bytes:
    return struct.pack(">HHIBBBB", 0x8000 | src_call, dst_call, ts_ms, oseq, iseq, ftype, subclass) + ies


def iax2(cap: UdpCapture) -> None:
    new = ie(11, b"\x00\x02") + ie(1, b"6000") + ie(2, b"4002") + ie(9, struct.pack(">I", 4)) + \
        ie(8, struct.pack(">I", 4))
    cap.udp(T0 + 20.0, IAX_A, 4569, IAX_B, 4569, iax_full(1, 0, 1, 0, 0, 6, 1, new))
    cap.udp(T0 + 20.01, IAX_B, 4569, IAX_A, 4569, iax_full(2, 1, 2, 0, 1, 6, 7, ie(9, struct.pack(">I", 4))))
    for i in range(2):                                                            # mini frames: voice
        cap.udp(T0 + 20.1 + i * 0.02, IAX_A, 4569, IAX_B, 4569, struct.pack(">HH", 1, 100 + 20 * i) + b"\xff" * 160)
    iax2_encrypted(cap)


def iax2_encrypted(cap: UdpCapture) -> None:
    secure = ie(11, b"\x00\x02") + ie(1, b"7000") + ie(0x2B, b"\x00\x01")
    cap.udp(T0 + 30.0, IAX_C, 4569, IAX_D, 4569, iax_full(5, 0, 1, 0, 0, 6, 1, secure))
    cap.udp(T0 + 30.01, IAX_D, 4569, IAX_C, 4569, iax_full(6, 5, 2, 0, 1, 6, 7, ie(0x2B, b"\x00\x01")))


def build() -> PcapWriter:
    cap = UdpCapture()
    ident = [1000]
    mgcp(cap)
    megaco(cap)
    h225(cap, ident)
    skinny(cap, ident)
    iax2(cap)
    return cap.pcap


def main(out: str) -> None:
    build().save(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "um-control.pcap"))
