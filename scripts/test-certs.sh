#!/usr/bin/env bash
# test-certs.sh DIR [CA_NAME [SERVER_NAMES]]
#
# A throw-away CA (DIR/ca.pem, DIR/ca.key) and a server certificate it signed for
# SERVER_NAMES, an openssl subjectAltName list, by default 127.0.0.1 and localhost
# (DIR/server.pem, DIR/server.key): P-256 keys, valid two days, the keys owner-only.
# A DIR that already holds both certificates is left as it is.
# For tests and demos on loopback (receiver-up.sh, the nats.* TLS test); never for a
# real server.
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: test-certs.sh DIR [CA_NAME [SERVER_NAMES]]" >&2; exit 2; }
dir=$1
ca_name=${2:-spec-kitty test CA}
names=${3:-IP:127.0.0.1,DNS:localhost}
[ -s "$dir/server.pem" ] && [ -s "$dir/ca.pem" ] && exit 0
mkdir -p "$dir"
# Keys are written owner-only from the start, not narrowed afterwards.
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=$ca_name" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=spec-kitty test server" \
  -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$names" >"$dir/server.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
  -CAcreateserial -days 2 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
# Certificates are public: readable by whoever runs the server or the client.
chmod 644 "$dir/ca.pem" "$dir/server.pem"
