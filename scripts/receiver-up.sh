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
#
# receiver-up.sh --front DIR
#   (Re)starts only nghttpx, on the ports DIR/receiver.env names (after its front
#   end was killed), and updates NGHTTPX_PID there.
#
# nghttpx is set up as an HTTP/2 front for h2-stream: backend connections kept
# alive for a minute (steady latency), no cap on backend connections per
# client connection (one per concurrent stream), 1 MiB stream and 16 MiB
# connection windows (a 1000-event batch uploads without waiting for
# WINDOW_UPDATE), and the h2c listener on loopback. RECEIVER_NGHTTPX_FLAGS adds
# flags (split on spaces), e.g. --frontend-max-requests=3 for GOAWAY tests.
set -euo pipefail

die() {
  echo "receiver-up.sh: $*" >&2
  exit 1
}

front_only=0
if [ "${1:-}" = --front ]; then
  front_only=1
  shift
fi
[ $# -ge 1 ] || { echo "usage: receiver-up.sh [--front] DIR [receiver flags...]" >&2; exit 2; }
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
bash "$(dirname "${BASH_SOURCE[0]}")/test-certs.sh" "$dir" "spec-kitty-receiver test CA" ||
  die "openssl could not make the test certificates"

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

# start_front H2C_PORT TLS_PORT: nghttpx in front of the receiver at $rport; sets npid,
# or returns 1 when it does not answer on both ports.
start_front() {
  local extra=()
  # shellcheck disable=SC2206  # split on spaces on purpose
  [ -z "${RECEIVER_NGHTTPX_FLAGS:-}" ] || extra=($RECEIVER_NGHTTPX_FLAGS)
  nghttpx --conf=/dev/null --workers=1 --no-ocsp \
    --frontend="127.0.0.1,$1;no-tls" --frontend="127.0.0.1,$2" \
    --backend="127.0.0.1,$rport;;proto=http/1.1" --backend-read-timeout=5m \
    --backend-keep-alive-timeout=60s --backend-connections-per-frontend=0 \
    --frontend-http2-window-size=1048576 --frontend-http2-connection-window-size=16777216 \
    --errorlog-file="$dir/nghttpx.log" "${extra[@]}" \
    "$dir/server.key" "$dir/server.pem" >/dev/null 2>&1 &
  npid=$!
  if wait_http "$npid" "http://127.0.0.1:$1/api/v1/sync/health/" --http2-prior-knowledge &&
    wait_http "$npid" "https://127.0.0.1:$2/api/v1/sync/health/" --http2 --cacert "$dir/ca.pem"; then
    return 0
  fi
  kill "$npid" 2>/dev/null || true
  wait "$npid" 2>/dev/null || true
  npid=""
  return 1
}

if [ $front_only = 1 ]; then
  # shellcheck disable=SC1091
  . "$dir/receiver.env"
  rport=${RECEIVER_URL##*:}
  for _ in $(seq 1 40); do # the old front's ports may linger a moment
    start_front "${RECEIVER_H2C_URL##*:}" "${RECEIVER_TLS_URL##*:}" && break
    sleep 0.1
  done
  [ -n "$npid" ] || die "nghttpx did not restart (see $dir/nghttpx.log)"
  sed -i "s/^NGHTTPX_PID=.*/NGHTTPX_PID=$npid/" "$dir/receiver.env"
  cat "$dir/receiver.env"
  exit 0
fi

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
  start_front "$h2c_port" "$tls_port" && break
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
