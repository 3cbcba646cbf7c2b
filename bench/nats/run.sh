#!/usr/bin/env bash
# `sync now` of 100 000 events into one local nats-server (the nats-jetstream example,
# file storage, built out of tree against the install) beside the same drain to the
# reference receiver over http-batch, alternating, ROUNDS times each in one run.
#   bench/nats/run.sh [BUILD_DIR]       (default: build/bench, built RelWithDebInfo)
#   N=100000 ROUNDS=3                   (environment)
# Prints one line per drain, then the medians and their ratio; bench/README.md keeps them.
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
bench_prepare "${1:-}"
N=${N:-100000}
ROUNDS=${ROUNDS:-3}
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sk-bench-nats-XXXXXX")"
NATS_PID=""
trap 'bash scripts/receiver-down.sh "$WORK/rcv" >/dev/null 2>&1 || true
  [ -z "$NATS_PID" ] || kill "$NATS_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
export SPEC_KITTY_HOME="$WORK/home"

NJ="$(cd "$BUILD" && pwd)/nats-example"
cmake -S examples/nats-jetstream -B "$NJ" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_PREFIX_PATH="$PREFIX" >/dev/null
cmake --build "$NJ" -j"$(nproc)" >/dev/null

nats-server -js -a 127.0.0.1 -p -1 -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
NATS_PID=$!
for _ in $(seq 1 200); do grep -q "Server is ready" "$WORK/nats.log" && break; sleep 0.05; done
NATS_URL="nats://127.0.0.1:$(grep -m1 -o 'client connections on [0-9.]*:[0-9]*' "$WORK/nats.log" | sed 's/.*://')"
SK_PREFIX="$PREFIX" bash scripts/receiver-up.sh "$WORK/rcv" --no-auth >/dev/null
. "$WORK/rcv/receiver.env"

awk -v n="$N" 'BEGIN { for (i = 1; i <= n; i++)
  printf "{\"event_type\":\"WPStatusChanged\",\"aggregate_id\":\"WP%02d\",\"payload\":{\"wp_id\":\"WP%02d\",\"previous_status\":\"planned\",\"new_status\":\"doing\",\"feature_slug\":\"bench-feature\"}}\n", i % 100, i % 100 }' >"$WORK/events.ndjson"

# drain NAME CONFIG_JSON: queues N fresh events, times `sync now`, prints events/s.
drain() {
  rm -rf "$SPEC_KITTY_HOME"
  mkdir -p "$SPEC_KITTY_HOME"
  printf '%s\n' "$2" >"$SPEC_KITTY_HOME/sync.json"
  "$SK" sync emit --file "$WORK/events.ndjson" >/dev/null
  local t0 t1 rate
  t0=$(date +%s%N)
  SPEC_KITTY_ACCESS_TOKEN=bench "$SK" sync now >"$WORK/now.out"
  t1=$(date +%s%N)
  grep -q "Synced: $N " "$WORK/now.out" || { echo "$1: $(cat "$WORK/now.out")" >&2; exit 1; }
  rate=$((N * 1000000000 / (t1 - t0)))
  echo "$rate" >>"$WORK/$1.rates"
  echo "sync now -> $1: $N events in $(((t1 - t0) / 1000000)) ms ($rate events/s)"
}
median() { sort -n "$1" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); nats-server $(nats-server --version | sed 's/nats-server: //'), file storage"
for ((r = 1; r <= ROUNDS; r++)); do
  drain http-batch "{\"server_url\": \"$RECEIVER_URL\", \"transport\": {\"plugin\": \"http-batch\"}}"
  drain nats-jetstream "{\"transport\": {\"plugin\": \"$NJ/nats-jetstream.so\",
    \"options\": {\"servers\": [\"$NATS_URL\"], \"create_stream\": true}}}"
done
hb=$(median "$WORK/http-batch.rates")
nj=$(median "$WORK/nats-jetstream.rates")
echo "median of $ROUNDS: nats-jetstream $nj events/s, http-batch $hb events/s, ratio $(echo "scale=2; $nj / $hb" | bc)"
