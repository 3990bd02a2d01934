"""Writes sample_captures/dtls-srtp.pcap: two DTLS-SRTP calls (RFC 5763/5764), one whose certificates
are those the SDP a=fingerprint announced and one where the media path shows another certificate.

- Call 1 (dtls-good@10.40.1.5): 10.40.1.11 calls 10.40.1.12 through the proxy 10.40.1.5 (UDP 5060).
  The INVITE offers m=audio 40000 UDP/TLS/RTP/SAVPF with a=setup:actpass and the SHA-256 fingerprint of
  10.40.1.11's certificate; the 200 OK answers 40002 with a=setup:active and 10.40.1.12's. Then
  10.40.1.12:40002 (DTLS client, RFC 5763 §5) sends ClientHello (use_srtp SRTP_AES128_CM_HMAC_SHA1_80);
  10.40.1.11:40000 answers ServerHello, Certificate, CertificateRequest, ServerHelloDone in one datagram;
  the client sends its Certificate and ClientKeyExchange. Both certificates match their SDP.
- Call 2 (dtls-mitm@10.40.1.5): 10.40.1.13 calls 10.40.1.14 the same way, but the certificate sent from
  10.40.1.13:40010 is another one (a man in the middle on the media path): its hash is not the SDP's.

DTLS 1.2 (0xfefd), TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, self-signed P-256 certificates made from
fixed keys and signed deterministically (RFC 6979), so the file is byte-identical on every run.
"""
from __future__ import annotations

import datetime
import hashlib
import random
import struct
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pcapgen import UdpCapture, sdp_body, sip_message  # noqa: E402

T0 = 1_700_300_000.0
PROXY = "10.40.1.5"
SUITE = 0xC02B                 # TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
SRTP_PROFILE = 0x0001          # RFC 5764 §4.1.2 SRTP_AES128_CM_HMAC_SHA1_80
DTLS12 = 0xFEFD
RNG = random.Random(5764)


def certificate(secret: int, name: str) -> bytes:
    """A self-signed P-256 certificate (as WebRTC and SIP endpoints make for DTLS-SRTP)."""
    key = ec.derive_private_key(secret, ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
               .serial_number(secret).not_valid_before(datetime.datetime(2023, 11, 1, tzinfo=datetime.timezone.utc))
               .not_valid_after(datetime.datetime(2024, 11, 1, tzinfo=datetime.timezone.utc)))
    return builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True).public_bytes(Encoding.DER)


def fingerprint(der: bytes) -> str:
    """RFC 8122 §5: upper-case hex octets joined by colons."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def vec(data: bytes, length_octets: int) -> bytes:
    return len(data).to_bytes(length_octets, "big") + data


def extension(ext_type: int, data: bytes) -> bytes:
    return struct.pack("!H", ext_type) + vec(data, 2)


def handshake(msg_type: int, seq: int, body: bytes) -> bytes:
    """RFC 6347 §4.2.2: one unfragmented handshake message."""
    n = len(body).to_bytes(3, "big")
    return bytes([msg_type]) + n + struct.pack("!H", seq) + b"\0\0\0" + n + body


def record(seq: int, fragment: bytes) -> bytes:
    """RFC 6347 §4.1: a handshake record of epoch 0."""
    return struct.pack("!BHH", 22, DTLS12, 0) + seq.to_bytes(6, "big") + vec(fragment, 2)


def client_hello() -> bytes:
    exts = (extension(14, vec(struct.pack("!H", SRTP_PROFILE), 2) + b"\0")       # use_srtp, no MKI
            + extension(10, vec(struct.pack("!H", 0x0017), 2))                   # supported_groups secp256r1
            + extension(13, vec(struct.pack("!H", 0x0403), 2)))                  # ecdsa_secp256r1_sha256
    return (struct.pack("!H", DTLS12) + RNG.randbytes(32) + vec(b"", 1) + vec(b"", 1)
            + vec(struct.pack("!H", SUITE), 2) + vec(b"\0", 1) + vec(exts, 2))


def server_hello() -> bytes:
    exts = extension(14, vec(struct.pack("!H", SRTP_PROFILE), 2) + b"\0")
    return struct.pack("!H", DTLS12) + RNG.randbytes(32) + vec(b"", 1) + struct.pack("!HB", SUITE, 0) + vec(exts, 2)


def certificate_message(der: bytes) -> bytes:
    return vec(vec(der, 3), 3)


def certificate_request() -> bytes:
    # RFC 5246 §7.4.4: certificate_types (ecdsa_sign 64), supported_signature_algorithms, no CA names
    return vec(b"\x40", 1) + vec(struct.pack("!H", 0x0403), 2) + vec(b"", 2)


def call(cap: UdpCapture, t: float, call_id: str, caller: str, callee: str, port: int,
         caller_cert: bytes, callee_cert: bytes, shown_cert: bytes) -> None:
    """An INVITE/200 OK/ACK through the proxy, then the DTLS handshake on the media ports."""
    offer = sdp_body(caller, caller, port, "UDP/TLS/RTP/SAVPF", ((111, "opus/48000/2"),),
                     (f"a=fingerprint:sha-256 {fingerprint(caller_cert)}", "a=setup:actpass"))
    answer = sdp_body(callee, callee, port + 2, "UDP/TLS/RTP/SAVPF", ((111, "opus/48000/2"),),
                      (f"a=fingerprint:sha-256 {fingerprint(callee_cert)}", "a=setup:active"), session_id=2)
    common = [("Call-ID", call_id), ("From", f"<sip:{caller}@{PROXY}>;tag=a{port}"), ("Max-Forwards", "70")]
    invite = sip_message(f"INVITE sip:{callee}@{PROXY} SIP/2.0",
                         [("Via", f"SIP/2.0/UDP {caller}:5060;branch=z9hG4bK{port}i"), *common,
                          ("To", f"<sip:{callee}@{PROXY}>"), ("CSeq", "1 INVITE"),
                          ("Contact", f"<sip:{caller}:5060>")], offer)
    ok = sip_message("SIP/2.0 200 OK",
                     [("Via", f"SIP/2.0/UDP {caller}:5060;branch=z9hG4bK{port}i"), *common,
                      ("To", f"<sip:{callee}@{PROXY}>;tag=b{port}"), ("CSeq", "1 INVITE"),
                      ("Contact", f"<sip:{callee}:5060>")], answer)
    ack = sip_message(f"ACK sip:{callee}:5060 SIP/2.0",
                      [("Via", f"SIP/2.0/UDP {caller}:5060;branch=z9hG4bK{port}a"), *common,
                       ("To", f"<sip:{callee}@{PROXY}>;tag=b{port}"), ("CSeq", "1 ACK")])
    cap.udp(t, caller, 5060, PROXY, 5060, invite)
    cap.udp(t + 0.01, PROXY, 5060, callee, 5060, invite)
    cap.udp(t + 1.0, callee, 5060, PROXY, 5060, ok)
    cap.udp(t + 1.01, PROXY, 5060, caller, 5060, ok)
    cap.udp(t + 1.05, caller, 5060, PROXY, 5060, ack)
    # a=setup:active: the answerer is the DTLS client (RFC 5763 §5)
    cap.udp(t + 1.2, callee, port + 2, caller, port, record(0, handshake(1, 0, client_hello())))
    flight = (record(0, handshake(2, 0, server_hello())) + record(1, handshake(11, 1, certificate_message(shown_cert)))
              + record(2, handshake(13, 2, certificate_request())) + record(3, handshake(14, 3, b"")))
    cap.udp(t + 1.25, caller, port, callee, port + 2, flight)
    key_exchange = vec(b"\x04" + RNG.randbytes(64), 1)            # RFC 8422 §5.7 uncompressed point
    cap.udp(t + 1.3, callee, port + 2, caller, port,
            record(1, handshake(11, 1, certificate_message(callee_cert))) + record(2, handshake(16, 2, key_exchange)))


def main(out: str) -> None:
    cap = UdpCapture()
    good_a, good_b = certificate(1001, "phone-11"), certificate(1002, "phone-12")
    mitm_a, mitm_b, intruder = certificate(1003, "phone-13"), certificate(1004, "phone-14"), certificate(6666, "x")
    call(cap, T0, f"dtls-good@{PROXY}", "10.40.1.11", "10.40.1.12", 40000, good_a, good_b, good_a)
    call(cap, T0 + 10, f"dtls-mitm@{PROXY}", "10.40.1.13", "10.40.1.14", 40010, mitm_a, mitm_b, intruder)
    cap.pcap.save(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parent.parent / "dtls-srtp.pcap"))
