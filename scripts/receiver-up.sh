#!/usr/bin/env bash
# receiver-up.sh DIR [receiver flags...]
#
# Starts spec-kitty-receiver and, in front of it, nghttpx (HTTP/2 over TLS with
# ALPN, and h2c with prior knowledge), all on free loopback ports. Generates a
# throw-away CA and server certificate into DIR, waits until both answer, then
# writes DIR/receiver.env (shell-sourceable) and prints the same lines.
# Defaults added unless given: --listen 127.0.0.1:0, --db DIR/receiver.db,
# --no-auth (when neither --users nor --no-auth is given).
# The receiver is $SK_PREFIX/bin/spec-kitty-receiver, else the one on PATH.
# Stop everything with scripts/receiver-down.sh DIR.
set -euo pipefail

die() {
  echo "receiver-up.sh: $*" >&2
  exit 1
}

[ $# -ge 1 ] || { echo "usage: receiver-up.sh DIR [receiver flags...]" >&2; exit 2; }
mkdir -p "$1"
dir=$(cd "$1" && pwd)
shift

bin=""
if [ -n "${SK_PREFIX:-}" ] && [ -x "$SK_PREFIX/bin/spec-kitty-receiver" ]; then
  bin=$SK_PREFIX/bin/spec-kitty-receiver
else
  bin=$(command -v spec-kitty-receiver) || die "spec-kitty-receiver not found (set SK_PREFIX or PATH)"
fi
command -v nghttpx >/dev/null || die "nghttpx not found (Debian package nghttp2-proxy)"

# The receiver flags, with defaults for what the caller left out.
flags=("$@")
has_flag() {
  local f
  for f in "${flags[@]}"; do [ "$f" = "$1" ] && return 0; done
  return 1
}
has_flag --listen || flags+=(--listen 127.0.0.1:0)
db=$dir/receiver.db
for ((i = 0; i < ${#flags[@]}; i++)); do
  [ "${flags[$i]}" = "--db" ] && db=${flags[$((i + 1))]:-}
done
has_flag --db || flags+=(--db "$db")
has_flag --users || has_flag --no-auth || flags+=(--no-auth)

# Throw-away CA and a server certificate for 127.0.0.1 and localhost.
make_certs() {
  [ -s "$dir/server.pem" ] && [ -s "$dir/ca.pem" ] && return 0
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=spec-kitty-receiver test CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 2 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
  chmod 600 "$dir/ca.key" "$dir/server.key"
}
make_certs || die "openssl could not make the test certificates"

# Polls a URL until it answers with an HTTP status (any: 401 is ready too).
wait_http() { # pid url [curl options...]
  local pid=$1 url=$2 code
  shift 2
  for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || return 1
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" "$url" || true)
    case $code in 2?? | 4??) return 0 ;; esac
    sleep 0.05
  done
  return 1
}

"$bin" "${flags[@]}" >"$dir/receiver.log" 2>&1 &
rpid=$!
url=""
for _ in $(seq 1 200); do
  url=$(grep -m1 -o 'listening on http://[^ ]*' "$dir/receiver.log" 2>/dev/null | cut -d' ' -f3 || true)
  [ -n "$url" ] && break
  kill -0 "$rpid" 2>/dev/null || die "receiver exited: $(tail -n 3 "$dir/receiver.log")"
  sleep 0.05
done
[ -n "$url" ] || { kill "$rpid"; die "receiver did not start"; }
wait_http "$rpid" "$url/api/v1/sync/health/" || { kill "$rpid"; die "receiver not answering"; }
rport=${url##*:}

# A port nobody listens on now (nghttpx may still lose a race: retried below).
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

npid=""
for _ in 1 2 3 4 5; do
  h2c_port=$(free_port)
  tls_port=$(free_port)
  [ "$h2c_port" != "$tls_port" ] || continue
  nghttpx --conf=/dev/null --workers=1 --no-ocsp \
    --frontend="127.0.0.1,$h2c_port;no-tls" --frontend="127.0.0.1,$tls_port" \
    --backend="127.0.0.1,$rport;;proto=http/1.1" --backend-read-timeout=5m \
    --errorlog-file="$dir/nghttpx.log" \
    "$dir/server.key" "$dir/server.pem" >/dev/null 2>&1 &
  npid=$!
  if wait_http "$npid" "http://127.0.0.1:$h2c_port/api/v1/sync/health/" --http2-prior-knowledge &&
    wait_http "$npid" "https://127.0.0.1:$tls_port/api/v1/sync/health/" --http2 --cacert "$dir/ca.pem"; then
    break
  fi
  kill "$npid" 2>/dev/null || true
  wait "$npid" 2>/dev/null || true
  npid=""
done
[ -n "$npid" ] || { kill "$rpid"; die "nghttpx did not start (see $dir/nghttpx.log)"; }

cat >"$dir/receiver.env" <<ENV
RECEIVER_URL=$url
RECEIVER_H2C_URL=http://127.0.0.1:$h2c_port
RECEIVER_TLS_URL=https://127.0.0.1:$tls_port
RECEIVER_CA=$dir/ca.pem
RECEIVER_PID=$rpid
NGHTTPX_PID=$npid
RECEIVER_DB=$db
RECEIVER_LOG=$dir/receiver.log
ENV
cat "$dir/receiver.env"
