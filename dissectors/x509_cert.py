"""X.509 certificates of TLS/DTLS Certificate messages (RFC 5280), described with the `cryptography`
package: names, validity, public key, signature algorithm, self-signature and DER hashes."""
from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dh, dsa, ec, ed448, ed25519, padding, rsa

from voipwatch.records import X509Summary

# What a certificate that is no valid X.509 DER raises (beside ValueError).
CertificateError = (TypeError, UnsupportedAlgorithm)


def describe_certificate(der: bytes) -> X509Summary:
    """One DER certificate described (ValueError when it is no X.509 certificate)."""
    cert = x509.load_der_x509_certificate(der)
    key = cert.public_key()
    curve = None
    if isinstance(key, rsa.RSAPublicKey):
        alg, bits = "rsa", key.key_size
    elif isinstance(key, ec.EllipticCurvePublicKey):
        alg, bits, curve = "ec", key.curve.key_size, key.curve.name
    elif isinstance(key, dsa.DSAPublicKey):
        alg, bits = "dsa", key.key_size
    elif isinstance(key, dh.DHPublicKey):
        alg, bits = "dh", key.key_size
    elif isinstance(key, ed25519.Ed25519PublicKey):
        alg, bits = "ed25519", 256
    elif isinstance(key, ed448.Ed448PublicKey):
        alg, bits = "ed448", 456
    else:
        alg, bits = type(key).__name__, None
    try:
        sig = cert.signature_algorithm_oid._name
    except ValueError:
        sig = None
    return X509Summary(
        subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc.timestamp(), not_after=cert.not_valid_after_utc.timestamp(),
        key_alg=alg, key_bits=bits, curve=curve, signature_alg=sig, self_signed=_self_signed(cert),
        serial=format(cert.serial_number, "x"), sha1=hashlib.sha1(der).hexdigest(),
        sha256=hashlib.sha256(der).hexdigest(), der_len=len(der))


def _self_signed(cert: x509.Certificate) -> bool:
    """RFC 5280 §3.2: issued by itself (issuer = subject) and its signature verifies with its own key
    (checked here directly: `verify_directly_issued_by` refuses SHA-1 and MD5 signatures, which weak
    self-signed certificates use)."""
    if cert.issuer != cert.subject:
        return False
    key, signature, tbs = cert.public_key(), cert.signature, cert.tbs_certificate_bytes
    digest = cert.signature_hash_algorithm
    try:
        if isinstance(key, rsa.RSAPublicKey):
            pss = cert.signature_algorithm_oid == x509.SignatureAlgorithmOID.RSASSA_PSS
            key.verify(signature, tbs, padding.PSS(padding.MGF1(digest), padding.PSS.AUTO) if pss
                       else padding.PKCS1v15(), digest)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, tbs, ec.ECDSA(digest))
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(signature, tbs, digest)
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(signature, tbs)
        else:
            return False
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True
