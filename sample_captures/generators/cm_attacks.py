"""Writes sample_captures/cm-attacks.pcap (cm_benign.py writes cm-benign.pcap from benign() here): cleartext
management, provisioning and logins.

Site (untagged): phones 10.40.1.21-22 (10.40.1.21 registers over SIP to the PBX 10.40.1.5, so it is known as a
phone), provisioning server 10.40.1.9, admin station 10.40.2.50, attacker 10.40.2.66.

cm-attacks.pcap, ground truth:
- UM-10: 10.40.2.50 SNMP v2c get-request with community "public" to phone 10.40.1.21, answered (critical);
  a set-request with community "rw-Secr3t" to 10.40.1.9 (high); SNMPv3 authNoPriv get + response between
  10.40.2.50 and 10.40.1.22 (low).
- UM-11: phone 10.40.1.21 TFTP RRQ SEP001122334455.cnf.xml from 10.40.1.9: 700 bytes of plaintext XML with
  <sipPassword> and <adminPassword> (critical); at +300 s the same name served with other content (OT-02).
- UM-12: HTTP GET / with Authorization: Basic admin:admin to 10.40.1.21:80 (critical, default password);
  a form POST /login with fields user, passwd to 10.40.1.21 (critical); FTP USER/PASS to 10.40.1.9:21;
  Telnet to 10.40.1.22:23: negotiation, "login:", "Password:".
- UM-15: phone 10.40.1.21 answers HTTP (200, Server: Phone-Web/1.0); phone 10.40.1.22 (in `phones` of
  cm.toml) answers Telnet.
- RF-10: 12 HTTP 401 from 10.40.1.21 to 10.40.2.66 within 12 s; 5 FTP 530 to 10.40.2.66 from 10.40.1.9;
  3 Telnet "Login incorrect" to 10.40.2.66 from 10.40.1.22; 5 SNMP communities from 10.40.2.66 to 10.40.1.21.

cm-benign.pcap, the same site managed properly (nothing above may fire):
- HTTPS (TLS records) from 10.40.2.50 to phone 10.40.1.21:443; SSH (SFTP) to 10.40.1.9:22.
- SNMPv3 authPriv get and response (encrypted scoped PDU) between 10.40.2.50 and 10.40.1.22.
- TFTP of SEP001122334455.cnf.xml.enc.sgn (random bytes: encrypted), served twice with the same content.
- HTTP GET /index.html from a non-phone web server 10.40.3.80, 200; three HTTP 401 (below the threshold).
"""
from __future__ import annotations

import base64
import random
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pcapgen import ETH_IPV4, PcapWriter, ethernet, ipv4, mac, sip_message, tcp, udp  # noqa: E402

T0 = 1_700_300_000.0
PHONE, PHONE2, PBX, PROV = "10.40.1.21", "10.40.1.22", "10.40.1.5", "10.40.1.9"
ADMIN, ATTACKER, WEB = "10.40.2.50", "10.40.2.66", "10.40.3.80"
CONFIG = (b'<?xml version="1.0"?>\n<device><deviceProtocol>SIP</deviceProtocol>\n<sipProfile><line>'
          b'<name>2101</name><authName>2101</authName><sipPassword>Lin3-Pa55</sipPassword></line></sipProfile>\n'
          b'<adminPassword>Adm1n-Pa55</adminPassword>\n' + b"<!-- padding -->\n" * 36 + b"</device>\n")


class Capture:
    def __init__(self):
        self.pcap = PcapWriter()
        self.ident = 0
        self.ports = 40000

    def ip(self, ts, src, dst, proto, segment):
        self.ident += 1
        self.pcap.add(ts, ethernet(ipv4(src, dst, proto, segment, ident=self.ident & 0xFFFF), ETH_IPV4,
                                   mac(int(src.split(".")[-1])), mac(int(dst.split(".")[-1]))))

    def udp(self, ts, src, sport, dst, dport, payload):
        self.ip(ts, src, dst, 17, udp(src, sport, dst, dport, payload))

    def port(self) -> int:
        self.ports += 1
        return self.ports

    def tcp_session(self, t, client, server, dport, exchanges):
        """SYN, SYN-ACK, ACK, then (from_client, bytes) segments, then FIN both ways."""
        sport = self.port()
        c, s = 1000, 50000
        self.ip(t, client, server, 6, tcp(client, sport, server, dport, c, 0, 0x02))
        self.ip(t + 0.001, server, client, 6, tcp(server, dport, client, sport, s, c + 1, 0x12))
        c, s = c + 1, s + 1
        self.ip(t + 0.002, client, server, 6, tcp(client, sport, server, dport, c, s, 0x10))
        t += 0.003
        for from_client, data in exchanges:
            t += 0.01
            if from_client:
                self.ip(t, client, server, 6, tcp(client, sport, server, dport, c, s, 0x18, data))
                c += len(data)
            else:
                self.ip(t, server, client, 6, tcp(server, dport, client, sport, s, c, 0x18, data))
                s += len(data)
        self.ip(t + 0.01, client, server, 6, tcp(client, sport, server, dport, c, s, 0x11))
        self.ip(t + 0.011, server, client, 6, tcp(server, dport, client, sport, s, c + 1, 0x11))
        self.ip(t + 0.012, client, server, 6, tcp(client, sport, server, dport, c + 1, s + 1, 0x10))


# -- protocol pieces ----------------------------------------------------------------------------------
def ber(tag: int, body: bytes) -> bytes:
    """X.690 §8.1: tag, definite length (short or long form), contents."""
    n = len(body)
    length = bytes([n]) if n < 128 else bytes([0x80 | 2]) + struct.pack("!H", n)
    return bytes([tag]) + length + body


def ber_int(v: int) -> bytes:
    return ber(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def varbind_null(oid: bytes = b"\x2b\x06\x01\x02\x01\x01\x05\x00") -> bytes:   # sysName.0
    return ber(0x30, ber(0x30, ber(0x06, oid) + b"\x05\x00"))


def snmp_v2c(community: bytes, pdu_tag: int, request_id: int) -> bytes:
    pdu = ber(pdu_tag, ber_int(request_id) + ber_int(0) + ber_int(0) + varbind_null())
    return ber(0x30, ber_int(1) + ber(0x04, community) + pdu)


def snmp_v3(flags: int, user: bytes, pdu_tag: int | None, request_id: int, rng: random.Random) -> bytes:
    """RFC 3412 §6 message with RFC 3414 USM parameters; with privacy the scoped PDU is an OCTET STRING."""
    header = ber(0x30, ber_int(request_id) + ber_int(65507) + ber(0x04, bytes([flags])) + ber_int(3))
    usm = ber(0x30, ber(0x04, b"\x80\x00\x1f\x88\x04engine") + ber_int(5) + ber_int(1000) + ber(0x04, user)
              + ber(0x04, rng.randbytes(12) if flags & 1 else b"") + ber(0x04, rng.randbytes(8) if flags & 2 else b""))
    if flags & 2:
        data = ber(0x04, rng.randbytes(48))
    else:
        data = ber(0x30, ber(0x04, b"\x80\x00\x1f\x88\x04engine") + ber(0x04, b"")
                   + ber(pdu_tag, ber_int(request_id) + ber_int(0) + ber_int(0) + varbind_null()))
    return ber(0x30, ber_int(3) + header + ber(0x04, usm) + data)


def tftp_download(cap: Capture, t: float, client: str, server: str, name: bytes, content: bytes) -> None:
    """RFC 1350: RRQ to 69, DATA blocks of 512 from a new server port, each ACKed; a short block ends it."""
    cport, sport = cap.port(), cap.port() + 20000
    cap.udp(t, client, cport, server, 69, b"\x00\x01" + name + b"\x00octet\x00")
    blocks = [content[i:i + 512] for i in range(0, len(content) + 1, 512)]
    for n, block in enumerate(blocks, 1):
        t += 0.01
        cap.udp(t, server, sport, client, cport, struct.pack("!HH", 3, n) + block)
        cap.udp(t + 0.002, client, cport, server, sport, struct.pack("!HH", 4, n))


def http_request(method: str, uri: str, host: str, headers: list[str] = (), body: bytes = b"") -> bytes:
    lines = [f"{method} {uri} HTTP/1.1", f"Host: {host}", "User-Agent: curl/8.5.0", *headers]
    if body:
        lines += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def http_response(status: str, body: bytes = b"", headers: list[str] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Server: Phone-Web/1.0", "Content-Type: text/html", *headers,
             f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def tls_records(rng: random.Random) -> list[tuple[bool, bytes]]:
    return [(i % 2 == 0, struct.pack("!BHH", kind, 0x0303, size) + rng.randbytes(size))
            for i, (kind, size) in enumerate(((0x16, 300), (0x16, 1200), (0x17, 400), (0x17, 900)))]


def register(cap: Capture, t: float) -> None:
    """Phone 10.40.1.21 registers (so the detector knows it is a phone)."""
    headers = [("Via", f"SIP/2.0/UDP {PHONE}:5060;branch=z9hG4bK-cm1"), ("From", f"<sip:2101@{PBX}>;tag=cm1"),
               ("To", f"<sip:2101@{PBX}>"), ("Call-ID", "cm-reg-1"), ("CSeq", "1 REGISTER"),
               ("Contact", f"<sip:2101@{PHONE}:5060>"), ("Expires", "3600")]
    cap.udp(t, PHONE, 5060, PBX, 5060, sip_message(f"REGISTER sip:{PBX} SIP/2.0", headers))
    cap.udp(t + 0.01, PBX, 5060, PHONE, 5060, sip_message("SIP/2.0 200 OK", headers))


# -- the two captures ---------------------------------------------------------------------------------
def attacks() -> PcapWriter:
    rng = random.Random(20261208)
    cap = Capture()
    register(cap, T0)
    # UM-10
    cap.udp(T0 + 1, ADMIN, 40001, PHONE, 161, snmp_v2c(b"public", 0xA0, 11))
    cap.udp(T0 + 1.01, PHONE, 161, ADMIN, 40001, snmp_v2c(b"public", 0xA2, 11))
    cap.udp(T0 + 2, ADMIN, 40002, PROV, 161, snmp_v2c(b"rw-Secr3t", 0xA3, 12))
    cap.udp(T0 + 3, ADMIN, 40003, PHONE2, 161, snmp_v3(0x05, b"ops", 0xA0, 13, rng))
    cap.udp(T0 + 3.01, PHONE2, 161, ADMIN, 40003, snmp_v3(0x01, b"ops", 0xA2, 13, rng))
    # UM-11 then OT-02
    tftp_download(cap, T0 + 5, PHONE, PROV, b"SEP001122334455.cnf.xml", CONFIG)
    tftp_download(cap, T0 + 305, PHONE, PROV, b"SEP001122334455.cnf.xml", CONFIG.replace(b"2101", b"6666"))
    # UM-12 and UM-15 over HTTP
    basic = base64.b64encode(b"admin:admin").decode()
    cap.tcp_session(T0 + 10, ADMIN, PHONE, 80, [
        (True, http_request("GET", "/", PHONE, [f"Authorization: Basic {basic}"])),
        (False, http_response("200 OK", b"<html>phone status</html>"))])
    cap.tcp_session(T0 + 12, ADMIN, PHONE, 80, [
        (True, http_request("POST", "/login", PHONE, body=b"user=admin&passwd=Adm1n-Pa55")),
        (False, http_response("302 Found", headers=["Location: /status"]))])
    # FTP
    cap.tcp_session(T0 + 14, ADMIN, PROV, 21, [
        (False, b"220 prov FTP ready\r\n"), (True, b"USER provadmin\r\n"), (False, b"331 Password required\r\n"),
        (True, b"PASS Pr0v-Pa55\r\n"), (False, b"230 Logged in\r\n"), (True, b"QUIT\r\n"), (False, b"221 Bye\r\n")])
    # Telnet to phone 2
    cap.tcp_session(T0 + 16, ADMIN, PHONE2, 23, [
        (False, b"\xff\xfd\x18\xff\xfd\x20\xff\xfb\x01"), (True, b"\xff\xfb\x18\xff\xfc\x20\xff\xfd\x01"),
        (False, b"\r\nphone2 login: "), (True, b"admin\r\n"), (False, b"Password: "), (True, b"Adm1n-Pa55\r\n"),
        (False, b"\r\nWelcome\r\n$ ")])
    # RF-10: HTTP 401 x12, FTP 530 x5, Telnet failures x3, SNMP 5 communities
    for i in range(12):
        cap.tcp_session(T0 + 20 + i, ATTACKER, PHONE, 80, [
            (True, http_request("GET", "/", PHONE, [f"Authorization: Basic {base64.b64encode(f'admin:guess{i}'.encode()).decode()}"])),
            (False, http_response("401 Unauthorized", headers=['WWW-Authenticate: Basic realm="phone"']))])
    exchanges = [(False, b"220 prov FTP ready\r\n")]
    for i in range(5):
        exchanges += [(True, f"USER admin{i}\r\n".encode()), (False, b"331 Password required\r\n"),
                      (True, f"PASS guess{i}\r\n".encode()), (False, b"530 Login incorrect\r\n")]
    cap.tcp_session(T0 + 40, ATTACKER, PROV, 21, exchanges)
    exchanges = [(False, b"\xff\xfd\x18"), (True, b"\xff\xfc\x18"), (False, b"phone2 login: ")]
    for i in range(3):
        exchanges += [(True, b"root\r\n"), (False, b"Password: "), (True, f"guess{i}\r\n".encode()),
                      (False, b"\r\nLogin incorrect\r\nphone2 login: ")]
    cap.tcp_session(T0 + 50, ATTACKER, PHONE2, 23, exchanges)
    for i, community in enumerate((b"public", b"private", b"admin", b"cisco", b"snmp")):
        cap.udp(T0 + 60 + i, ATTACKER, 41000 + i, PHONE, 161, snmp_v2c(community, 0xA0, 100 + i))
    return cap.pcap


def benign() -> PcapWriter:
    rng = random.Random(20261209)
    cap = Capture()
    register(cap, T0)
    cap.tcp_session(T0 + 1, ADMIN, PHONE, 443, tls_records(rng))
    cap.tcp_session(T0 + 2, ADMIN, PROV, 22, [(False, b"SSH-2.0-OpenSSH_9.6\r\n"), (True, b"SSH-2.0-OpenSSH_9.6\r\n"),
                                              (False, rng.randbytes(600)), (True, rng.randbytes(400))])
    cap.udp(T0 + 3, ADMIN, 40003, PHONE2, 161, snmp_v3(0x07, b"ops", None, 21, rng))
    cap.udp(T0 + 3.01, PHONE2, 161, ADMIN, 40003, snmp_v3(0x03, b"ops", None, 21, rng))
    signed = rng.randbytes(1500)
    tftp_download(cap, T0 + 5, PHONE, PROV, b"SEP001122334455.cnf.xml.enc.sgn", signed)
    tftp_download(cap, T0 + 305, PHONE, PROV, b"SEP001122334455.cnf.xml.enc.sgn", signed)
    cap.tcp_session(T0 + 10, ADMIN, WEB, 80, [(True, http_request("GET", "/index.html", WEB)),
                                              (False, http_response("200 OK", b"<html>intranet</html>"))])
    for i in range(3):
        cap.tcp_session(T0 + 20 + i, ADMIN, WEB, 80, [(True, http_request("GET", "/private/", WEB)),
                                                      (False, http_response("401 Unauthorized"))])
    return cap.pcap


if __name__ == "__main__":
    attacks().save(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "cm-attacks.pcap"))
