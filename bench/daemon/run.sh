#!/usr/bin/env bash
# The background service (not a test): emit-to-stored latency at the receiver
# (p50, p99 over 1 000 events emitted one by one, min_batch_interval_ms 0), then
# the idle service's resident memory and its wake-ups over IDLE_S seconds.
#   bench/daemon/run.sh [BUILD_DIR]   (IDLE_S=60 by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
bench_prepare "${1:-}"
IDLE_S="${IDLE_S:-60}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sk-bench-daemon-XXXXXX")"
export SPEC_KITTY_HOME="$WORK/home"
trap '"$SK" sync daemon stop >/dev/null 2>&1 || true; bash scripts/receiver-down.sh "$WORK/rcv" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

SK_PREFIX="$PREFIX" bash scripts/receiver-up.sh "$WORK/rcv" --no-auth --quiet >/dev/null
. "$WORK/rcv/receiver.env"
mkdir -p "$SPEC_KITTY_HOME"
printf '{"server_url": "%s", "schedule": {"min_batch_interval_ms": 0}}\n' "$RECEIVER_URL" >"$SPEC_KITTY_HOME/sync.json"
"$SK" sync daemon start >/dev/null
PID="$(cat "$SPEC_KITTY_HOME/daemon.pid")"

N=1000
for ((i = 0; i < N; i++)); do
  "$SK" sync emit -t WPStatusChanged -a WP01 -p '{"wp_id":"WP01","previous_status":"planned","new_status":"doing"}' >/dev/null
  sleep 0.01
done
for _ in $(seq 200); do
  [ "$(sqlite3 "$RECEIVER_DB" 'SELECT count(*) FROM events')" -ge $N ] && break
  sleep 0.05
done
# Latency: the receiver's received_at (ms) minus the envelope's timestamp (set when emitted).
sqlite3 "$RECEIVER_DB" "SELECT received_at - CAST(round((julianday(json_extract(data, '\$.timestamp')) - 2440587.5) * 86400000) AS INTEGER) FROM events" | sort -n >"$WORK/lat"
COUNT=$(wc -l <"$WORK/lat")
pct() { sed -n "$(( ($1 * COUNT + 99) / 100 ))p" "$WORK/lat"; }
echo "machine: $(nproc) cores, $(df -T "$WORK" | awk 'NR==2 {print $2}'); events stored: $COUNT of $N"
echo "emit-to-stored latency: p50 $(pct 50) ms, p99 $(pct 99) ms, max $(tail -1 "$WORK/lat") ms"

sleep 2 # let the last batch settle, then the service is idle (empty queue)
switches() { cat /proc/"$PID"/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'; }
before=$(switches)
sleep "$IDLE_S"
after=$(switches)
grep -E "^(Rss|Anonymous|Shared_Clean|Private_Clean)" /proc/"$PID"/smaps_rollup | tr -s ' ' | tr '\n' ' '; echo
echo "idle service: RSS $(awk '/VmRSS/ {printf "%.1f MB", $2/1024}' /proc/"$PID"/status), threads $(ls /proc/"$PID"/task | wc -l), wake-ups in ${IDLE_S} s: $((after - before)) (target: 0 beyond the interval timer)"
