#!/usr/bin/env bash
# A development CA, a server certificate and client certificates, with the
# openssl command line (nothing of it is needed to build or run parcel-risk).
#
#   scripts/dev-certs.sh [--out certs] [--server-name localhost] [CLIENT ...]
#
# Writes OUT/ca.pem + ca.key (keep the key offline in real use),
# OUT/server.pem + server.key (names: --server-name, localhost, 127.0.0.1)
# and OUT/CLIENT.pem + CLIENT.key for each CLIENT name (its subject common
# name and DNS name; the name `cert:CLIENT` in an access file gives it roles).
# EC P-256 keys; certificates valid 825 days (CA: 10 years).
set -euo pipefail

out=certs server_name=localhost clients=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --server-name) server_name=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) clients+=("$1"); shift ;;
  esac
done
mkdir -p "$out"
umask 077

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [[ ! -f $out/ca.pem ]]; then
  key "$out/ca.key"
  openssl req -x509 -new -key "$out/ca.key" -sha256 -days 3650 -subj "/CN=parcel-risk dev CA" \
    -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$out/ca.pem"
  echo "made $out/ca.pem"
fi

# issue NAME SAN USAGE
issue() {
  local name=$1 san=$2 usage=$3
  key "$out/$name.key"
  openssl req -new -key "$out/$name.key" -subj "/CN=$4" -out "$out/$name.csr"
  openssl x509 -req -in "$out/$name.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" -CAcreateserial \
    -days 825 -sha256 -out "$out/$name.pem" -extfile <(printf '%s\n' \
      "basicConstraints=critical,CA:false" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=$usage" "subjectAltName=$san") 2>/dev/null
  rm -f "$out/$name.csr"
  echo "made $out/$name.pem"
}

issue server "DNS:$server_name,DNS:localhost,IP:127.0.0.1" serverAuth "$server_name"
for client in "${clients[@]}"; do
  issue "$client" "DNS:$client" clientAuth "$client"
done
