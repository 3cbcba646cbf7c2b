#!/usr/bin/env bash
# h2-stream against http-batch, side by side in one run (not a test), both to the
# same receiver: http-batch straight to it over HTTP/1.1, h2-stream through its
# nghttpx front over TLS (ALPN h2), as users would run them.
#   1. emit→stored latency through the service: N_LAT events emitted one at a time,
#      PACE_MS apart (p50/p99 from the receiver's received_at minus the envelope's
#      timestamp);
#   2. `sync now` of N_NOW events;
#   3. the service with h2-stream connected and idle: RSS, and its wake-ups over IDLE_S.
#   bench/h2/run.sh [BUILD_DIR]   (N_LAT=1000 PACE_MS=20 N_NOW=100000 IDLE_S=60)
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
bench_prepare "${1:-}"
N_LAT="${N_LAT:-1000}"
PACE_MS="${PACE_MS:-20}"
N_NOW="${N_NOW:-100000}"
IDLE_S="${IDLE_S:-60}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sk-bench-h2-XXXXXX")"
stop_all() {
  for home in "$WORK"/home-*; do
    [ -d "$home" ] && SPEC_KITTY_HOME=$home "$SK" sync daemon stop >/dev/null 2>&1 || true
  done
  bash scripts/receiver-down.sh "$WORK/rcv" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap stop_all EXIT

SK_PREFIX="$PREFIX" bash scripts/receiver-up.sh "$WORK/rcv" --no-auth --quiet >/dev/null
. "$WORK/rcv/receiver.env"
export SPEC_KITTY_ACCESS_TOKEN=bench # the receiver runs --no-auth

# use TRANSPORT: a fresh state root configured for that transport.
use() {
  export SPEC_KITTY_HOME="$WORK/home-$1-$RANDOM"
  mkdir -p "$SPEC_KITTY_HOME"
  case $1 in
  http-batch) printf '{"server_url": "%s", "transport": {"plugin": "http-batch"}, "schedule": {"min_batch_interval_ms": 0}}\n' \
    "$RECEIVER_URL" >"$SPEC_KITTY_HOME/sync.json" ;;
  h2-stream) printf '{"server_url": "%s", "transport": {"plugin": "h2-stream", "options": {"ca_file": "%s"}}, "schedule": {"min_batch_interval_ms": 0}}\n' \
    "$RECEIVER_TLS_URL" "$RECEIVER_CA" >"$SPEC_KITTY_HOME/sync.json" ;;
  esac
}
stored() { sqlite3 "$RECEIVER_DB" 'SELECT count(*) FROM events'; }
now_ns() { date +%s%N; }

echo "machine: $(nproc) cores; nghttp2 $(pkg-config --modversion libnghttp2), $(openssl version | cut -d' ' -f1-2)"

# ---- 1. latency through the service -------------------------------------------------
latency() { # latency TRANSPORT
  use "$1"
  "$SK" sync daemon start >/dev/null
  local before
  before=$(stored)
  "$SK" sync emit -t WPStatusChanged -a WP01 -p '{"wp_id":"WP01","previous_status":"planned","new_status":"doing"}' >/dev/null
  for _ in $(seq 100); do [ "$(stored)" -gt "$before" ] && break; sleep 0.05; done # connected
  local t_start
  t_start=$(($(date +%s%N) / 1000000))
  for ((i = 0; i < N_LAT; i++)); do
    "$SK" sync emit -t WPStatusChanged -a WP01 -p '{"wp_id":"WP01","previous_status":"planned","new_status":"doing"}' >/dev/null
    sleep "$(echo "scale=3; $PACE_MS / 1000" | bc)"
  done
  for _ in $(seq 400); do [ "$(stored)" -ge $((before + 1 + N_LAT)) ] && break; sleep 0.05; done
  sqlite3 "$RECEIVER_DB" "SELECT received_at - CAST(round((julianday(json_extract(data, '\$.timestamp')) - 2440587.5) * 86400000) AS INTEGER) FROM events WHERE received_at >= $t_start" |
    sort -n >"$WORK/lat"
  local count
  count=$(wc -l <"$WORK/lat")
  pct() { sed -n "$((($1 * count + 99) / 100))p" "$WORK/lat"; }
  echo "emit→stored, $1: p50 $(pct 50) ms, p99 $(pct 99) ms, max $(tail -1 "$WORK/lat") ms ($count of $N_LAT events, ${PACE_MS} ms apart)"
}
latency http-batch
"$SK" sync daemon stop >/dev/null
latency h2-stream
H2_HOME=$SPEC_KITTY_HOME # its service stays up for part 3

# ---- 2. sync now of N_NOW events ---------------------------------------------------
awk -v n="$N_NOW" 'BEGIN { for (i = 1; i <= n; i++)
  printf "{\"event_type\":\"WPStatusChanged\",\"aggregate_id\":\"WP%02d\",\"payload\":{\"wp_id\":\"WP%02d\",\"previous_status\":\"planned\",\"new_status\":\"doing\",\"feature_slug\":\"bench-feature\"}}\n", i % 100, i % 100 }' >"$WORK/events.ndjson"
for t in http-batch h2-stream; do
  use "$t"
  "$SK" sync emit --file "$WORK/events.ndjson" >/dev/null
  t0=$(now_ns)
  /usr/bin/time -f "%M" -o "$WORK/rss" "$SK" sync now >/dev/null
  t1=$(now_ns)
  echo "sync now, $t: $N_NOW events in $(((t1 - t0) / 1000000)) ms ($((N_NOW * 1000000000 / (t1 - t0))) events/s), peak RSS $(($(cat "$WORK/rss") / 1024)) MB"
done

# ---- 3. the idle service with h2-stream connected ----------------------------------
PID=$(cat "$H2_HOME/daemon.pid")
sleep 2
switches() { cat /proc/"$PID"/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'; }
before=$(switches)
sleep "$IDLE_S"
after=$(switches)
echo "idle service, h2-stream connected: RSS $(awk '/VmRSS/ {printf "%.1f MB", $2/1024}' /proc/"$PID"/status), threads $(ls /proc/"$PID"/task | wc -l), context switches in ${IDLE_S} s: $((after - before)) (PING every 30 s of silence)"
