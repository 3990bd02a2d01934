#!/bin/sh
# Records the UM-05 golden captures with real OpenSSL on loopback (127.0.0.1:5061, SIP-TLS's port,
# RFC 3261 §26.2.2): tls-weak.pcap (TLS 1.0, AES128-SHA: static RSA + CBC, a self-signed RSA-1024
# server certificate signed with SHA-1, no CertificateRequest) and tls-strong.pcap (TLS 1.2,
# ECDHE-ECDSA-AES256-GCM-SHA384 on P-384, a server certificate from a private CA, mutual TLS with a
# client certificate) and tls-tls13.pcap (TLS 1.3, TLS_AES_128_GCM_SHA256 on x25519, the CA-signed
# server certificate: strong, but short of the CNSA suite). Unlike sample_captures/*.pcap these are recordings, not byte-reproducible:
# keys, randoms and times differ on every run. Needs openssl, tcpdump and the right to capture on lo.
# Every process started here is stopped by its own pid; traffic stays on loopback.
set -eu
OUT=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# weak: self-signed RSA-1024 with a SHA-1 signature
openssl req -x509 -newkey rsa:1024 -sha1 -nodes -keyout weak.key -out weak.crt -days 365 \
    -subj "/CN=weak-sbc.example" 2>/dev/null
# strong: a P-384 CA, a P-384 server and a P-384 client certificate, SHA-384 signatures
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-384 -sha384 -nodes -keyout ca.key -out ca.crt \
    -days 3650 -subj "/CN=Example Voice CA" 2>/dev/null
for who in sbc phone; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout $who.key -out $who.csr \
        -subj "/CN=$who.example" 2>/dev/null
    openssl x509 -req -in $who.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha384 -days 365 \
        -out $who.crt 2>/dev/null
done

record() {  # record NAME SERVER_ARGS -- CLIENT_ARGS
    name=$1; shift
    server_args=""; while [ "$1" != "--" ]; do server_args="$server_args $1"; shift; done; shift
    tcpdump -i lo -w "$OUT/$name.pcap" -U -s 0 'tcp port 5061' 2>/dev/null & dump=$!
    sleep 1
    openssl s_server -accept 127.0.0.1:5061 $server_args -quiet -naccept 1 </dev/null >/dev/null 2>&1 & srv=$!
    sleep 1
    echo "OPTIONS sip:sbc.example SIP/2.0" | timeout 10 openssl s_client -connect 127.0.0.1:5061 "$@" \
        -quiet >/dev/null 2>&1 || true
    sleep 1
    kill $srv 2>/dev/null || true
    kill $dump
    wait $dump 2>/dev/null || true
}

record tls-weak -cert weak.crt -key weak.key -tls1 -cipher 'AES128-SHA:@SECLEVEL=0' -- \
    -tls1 -cipher 'AES128-SHA:@SECLEVEL=0'
record tls-strong -cert sbc.crt -key sbc.key -CAfile ca.crt -Verify 1 -tls1_2 -cipher ECDHE-ECDSA-AES256-GCM-SHA384 \
    -groups P-384 -- -cert phone.crt -key phone.key -CAfile ca.crt -tls1_2 -cipher ECDHE-ECDSA-AES256-GCM-SHA384 \
    -groups P-384
record tls-tls13 -cert sbc.crt -key sbc.key -tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256 -groups X25519 -- \
    -CAfile ca.crt -tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256 -groups X25519
