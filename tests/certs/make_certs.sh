#!/usr/bin/env bash
# Regenerates the test certificates (valid for 100 years):
#   ca.pem / ca.key            the test CA
#   server.pem / server.key    CN=localhost, SAN localhost, 127.0.0.1, ::1; signed by the CA
#   client.pem / client.key    CN=patio-test-client; signed by the CA (mutual TLS)
#   other-ca.pem               an unrelated CA (a client trusting it must refuse the server)
#   expired.pem / expired.key  as server.pem, but valid only in January 2020 (a client must refuse it)
# Usage: tests/certs/make_certs.sh   (writes next to itself)
set -euo pipefail
cd "$(dirname "$0")"
days=36500
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days $days -subj "/CN=patio test CA" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days $days -subj "/CN=other CA" 2>/dev/null
rm -f other-ca.key

openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days $days \
  -extfile server.ext 2>/dev/null

openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj "/CN=patio-test-client" 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' > client.ext
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days $days \
  -extfile client.ext 2>/dev/null

# An expired server certificate: `openssl x509` cannot back-date, `openssl ca` can.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
touch "$work/index.txt"
cat > "$work/ca.cnf" <<CNF
[ca]
default_ca = test_ca
[test_ca]
database = $work/index.txt
new_certs_dir = $work
serial = $work/serial
default_md = sha256
policy = any
copy_extensions = none
[any]
commonName = supplied
[server]
subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1
extendedKeyUsage = serverAuth
CNF
echo 01 > "$work/serial"
openssl req -newkey rsa:2048 -nodes -keyout expired.key -out "$work/expired.csr" -subj "/CN=localhost" 2>/dev/null
openssl ca -batch -config "$work/ca.cnf" -cert ca.pem -keyfile ca.key -in "$work/expired.csr" -out expired.pem \
  -startdate 20200101000000Z -enddate 20200201000000Z -extensions server -notext 2>/dev/null

rm -f server.csr client.csr server.ext client.ext ca.srl ca.key
echo "certificates written to $(pwd)"
