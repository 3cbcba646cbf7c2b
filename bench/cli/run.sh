#!/usr/bin/env bash
# CLI benchmarks (not a test): one `sync emit` process, `sync status` with
# 100 000 queued events, `sync now` draining 100 000 events to file-drop and to
# the reference receiver over http-batch (gzip levels 1 and 6), and the
# background service's emit-to-stored latency and idle footprint.
#   bench/cli/run.sh [BUILD_DIR]      (default: build/bench, built RelWithDebInfo)
# Prints one line per figure; bench/README.md records them with the machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
bench_prepare "${1:-}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sk-bench-XXXXXX")"
trap 'bash scripts/receiver-down.sh "$WORK/rcv" >/dev/null 2>&1 || true; "$SK" sync daemon stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
export SPEC_KITTY_HOME="$WORK/home"
N=100000

now_ns() { date +%s%N; }
ms() { echo "scale=2; $1 / 1000000" | bc; }

gen_events() { # gen_events N FILE
  awk -v n="$1" 'BEGIN { for (i = 1; i <= n; i++)
    printf "{\"event_type\":\"WPStatusChanged\",\"aggregate_id\":\"WP%02d\",\"payload\":{\"wp_id\":\"WP%02d\",\"previous_status\":\"planned\",\"new_status\":\"doing\",\"feature_slug\":\"bench-feature\"}}\n", i % 100, i % 100 }' >"$2"
}
gen_events $N "$WORK/events.ndjson"

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(df -T "$WORK" | awk 'NR==2 {print $2}') on $(df "$WORK" | awk 'NR==2 {print $1}')"

# 1. One `sync emit` process, wall time (durability full).
"$SK" sync emit -t FeatureCreated -a f -p '{"feature_slug":"001-f","feature_number":"001","target_branch":"main","wp_count":1}' >/dev/null
RUNS=200; t0=$(now_ns)
for ((i = 0; i < RUNS; i++)); do
  "$SK" sync emit -t WPStatusChanged -a WP01 -p '{"wp_id":"WP01","previous_status":"planned","new_status":"doing"}' >/dev/null
done
echo "emit: one process, mean wall $(ms $((($(now_ns) - t0) / RUNS))) ms over $RUNS runs (target <= 5 ms)"

# 2. Batched emit through the CLI, then `sync status` with 100 000 queued.
rm -rf "$SPEC_KITTY_HOME"
t0=$(now_ns); "$SK" sync emit --file "$WORK/events.ndjson" >/dev/null; t1=$(now_ns)
echo "emit --file: $N events in $(ms $((t1 - t0))) ms ($(echo "$N * 1000000000 / ($t1 - $t0)" | bc) events/s, one process)"
RUNS=50; t0=$(now_ns)
for ((i = 0; i < RUNS; i++)); do "$SK" sync status >/dev/null; done
echo "status: mean wall $(ms $((($(now_ns) - t0) / RUNS))) ms with $N queued (target <= 10 ms)"

# 3. sync now to file-drop.
printf '{"transport": {"plugin": "file-drop", "options": {"outbox": "%s"}}}\n' "$WORK/outbox" >"$SPEC_KITTY_HOME/sync.json"
t0=$(now_ns)
/usr/bin/time -f "%M" -o "$WORK/rss" "$SK" sync now >/dev/null
t1=$(now_ns)
echo "sync now -> file-drop: $N events in $(ms $((t1 - t0))) ms ($(echo "$N * 1000000000 / ($t1 - $t0)" | bc) events/s), peak RSS $(($(cat "$WORK/rss") / 1024)) MB (target >= 200000/s)"

# 4. sync now to the receiver over http-batch (loopback, no auth, rate limit off).
if [ -x "$PREFIX/bin/spec-kitty-receiver" ]; then
  SK_PREFIX="$PREFIX" bash scripts/receiver-up.sh "$WORK/rcv" --no-auth >/dev/null
  . "$WORK/rcv/receiver.env"
  for level in 1 6; do
    rm -f "$SPEC_KITTY_HOME/queue.db"*
    "$SK" sync emit --file "$WORK/events.ndjson" >/dev/null
    printf '{"server_url": "%s", "transport": {"plugin": "http-batch", "options": {"gzip_level": %d}}}\n' "$RECEIVER_URL" $level >"$SPEC_KITTY_HOME/sync.json"
    t0=$(now_ns)
    SPEC_KITTY_ACCESS_TOKEN=bench /usr/bin/time -f "%M" -o "$WORK/rss" "$SK" sync now >/dev/null
    t1=$(now_ns)
    echo "sync now -> receiver (http-batch, gzip $level): $N events in $(ms $((t1 - t0))) ms ($(echo "$N * 1000000000 / ($t1 - $t0)" | bc) events/s), peak RSS $(($(cat "$WORK/rss") / 1024)) MB (target >= 100000/s, <= 30 MB)"
  done
fi
