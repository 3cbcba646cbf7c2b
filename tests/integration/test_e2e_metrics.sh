#!/usr/bin/env bash
# Metrics as Prometheus reads them: `sync metrics` passes `promtool check metrics` and
# counts what happened (delivered, refused because the queue was full, batches, bytes,
# the latency histogram); the service writes the same to a node_exporter textfile,
# atomically, after each pass; a real prometheus-node-exporter serves the values; and
# `sync status` shows the refusals.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/e2e_lib.sh"
echo "\"$SK_BIN\" sync daemon stop --timeout 10" >"$TEST_TMP/a-daemon.cleanup"
wait_for() { # wait_for SECONDS CONDITION...
  local end=$(($(date +%s) + $1)); shift
  until "$@"; do [ "$(date +%s)" -lt $end ] || return 1; sleep 0.1; done
}
# metric NAME [FILE]: the value of one sample in `sync metrics` (or FILE).
metric() {
  if [ $# -gt 1 ]; then cat "$2"; else "$SK_BIN" sync metrics; fi |
    awk -v n="$1" '$1 == n { print $2; found = 1 } END { exit !found }'
}
promcheck() { # promcheck FILE: promtool's verdict on a scrape
  promtool check metrics <"$1" >"$TEST_TMP/promtool.out" 2>&1 || fail "promtool on $1: $(cat "$TEST_TMP/promtool.out")"
  pass
}

TEXTDIR="$TEST_TMP/textfile"
mkdir -p "$TEXTDIR"
rx_start rx
e2e_config "$RX_URL" '{}' '{"min_batch_interval_ms": 0}'
jq --arg f "$TEXTDIR/spec-kitty.prom" '. + {queue: {max_events: 20}, metrics: {textfile: $f, interval_s: 1}}' \
  "$SPEC_KITTY_HOME/sync.json" >"$TEST_TMP/sync.json" && mv "$TEST_TMP/sync.json" "$SPEC_KITTY_HOME/sync.json"
login

# Before anything happened: every counter at 0, valid for promtool.
sk sync metrics; expect_rc 0
printf '%s\n' "$OUT" >"$TEST_TMP/empty.prom"
promcheck "$TEST_TMP/empty.prom"
expect_eq "$(metric spec_kitty_sync_events_delivered_total "$TEST_TMP/empty.prom")" 0 "delivered before any sync"
# Reading writes nothing: neither `sync metrics` nor `sync status` creates the counters' file.
sk sync status; expect_rc 0
[ ! -e "$SPEC_KITTY_HOME/metrics.db" ] || fail "a read created metrics.db"; pass

# Full queue: the refused events are counted, and status says how many and when.
emit_many 15
awk 'NR <= 10' "$TEST_TMP/events.ndjson" | sed 's/"WP/"XP/g' >"$TEST_TMP/more.ndjson"
sk sync emit --file "$TEST_TMP/more.ndjson"; expect_rc 1 "emit into a full queue"
expect_eq "$(metric spec_kitty_sync_events_refused_full_total)" 10 "refused because full"
last=$(metric spec_kitty_sync_last_refused_full_timestamp_seconds)
expect_ge "${last%.*}" $(($(date +%s) - 60)) "last refusal time"
sk sync status; expect_rc 0; expect_out "Refused      10 events (queue full), last"
expect_eq "$(status_json .refused_full.count)" 10 "status --json refused_full.count"

sk sync now; expect_rc 0; expect_out "Synced: 15"
sk sync metrics; expect_rc 0
printf '%s\n' "$OUT" >"$TEST_TMP/now.prom"
promcheck "$TEST_TMP/now.prom"
expect_eq "$(metric spec_kitty_sync_events_delivered_total "$TEST_TMP/now.prom")" 15 "delivered"
expect_eq "$(metric spec_kitty_sync_queue_events "$TEST_TMP/now.prom")" 0 "queue size"
expect_ge "$(metric spec_kitty_sync_batches_total "$TEST_TMP/now.prom")" 1 "batches"
expect_ge "$(metric spec_kitty_sync_sent_bytes_total "$TEST_TMP/now.prom")" 100 "bytes sent"
expect_eq "$(metric spec_kitty_sync_delivery_latency_seconds_count "$TEST_TMP/now.prom")" 15 "latency count"
expect_eq "$(metric 'spec_kitty_sync_delivery_latency_seconds_bucket{le="+Inf"}' "$TEST_TMP/now.prom")" 15 "latency +Inf bucket"
expect_eq "$(metric spec_kitty_sync_service_up "$TEST_TMP/now.prom")" 0 "service up without a service"
grep -q '^spec_kitty_sync_transport_requests_total{transport="http-batch"} [1-9]' "$TEST_TMP/now.prom" ||
  fail "transport counters: $(grep transport_ "$TEST_TMP/now.prom")"; pass

# The service: the textfile after its first pass, then after each pass.
sk sync daemon start; expect_rc 0
wait_for 30 test -s "$TEXTDIR/spec-kitty.prom" || fail "no textfile written"; pass
promcheck "$TEXTDIR/spec-kitty.prom"
expect_eq "$(metric spec_kitty_sync_service_up "$TEXTDIR/spec-kitty.prom")" 1 "service up in the textfile"
emit_many 5
delivered_20() { [ "$(metric spec_kitty_sync_events_delivered_total "$TEXTDIR/spec-kitty.prom")" = 20 ]; }
wait_for 30 delivered_20 || fail "textfile after the pass: $(grep delivered "$TEXTDIR/spec-kitty.prom")"; pass
# Written atomically: only whole files, no temporary left for node_exporter to read.
expect_eq "$(ls "$TEXTDIR")" spec-kitty.prom "files in the textfile folder"
up1=$(metric spec_kitty_sync_service_uptime_seconds "$TEXTDIR/spec-kitty.prom")
uptime_grew() { [ "$(metric spec_kitty_sync_service_uptime_seconds "$TEXTDIR/spec-kitty.prom")" -gt "$up1" ]; }
wait_for 30 uptime_grew || fail "the textfile is not rewritten every interval_s"; pass

# A real node_exporter serving the folder.
for _ in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 40000))
  prometheus-node-exporter --web.listen-address="127.0.0.1:$port" --collector.disable-defaults \
    --collector.textfile --collector.textfile.directory="$TEXTDIR" >"$TEST_TMP/node.log" 2>&1 &
  echo "kill $!" >"$TEST_TMP/node-exporter.cleanup"
  scrape() { curl -sf "http://127.0.0.1:$port/metrics" >"$TEST_TMP/scrape" 2>/dev/null; }
  wait_for 10 scrape && break
  kill "$!" 2>/dev/null || true
done
[ -s "$TEST_TMP/scrape" ] || fail "node_exporter: $(cat "$TEST_TMP/node.log")"; pass
expect_eq "$(metric spec_kitty_sync_events_delivered_total "$TEST_TMP/scrape")" 20 "delivered, through node_exporter"
expect_eq "$(metric spec_kitty_sync_events_refused_full_total "$TEST_TMP/scrape")" 10 "refused, through node_exporter"
expect_eq "$(metric node_textfile_scrape_error "$TEST_TMP/scrape")" 0 "node_exporter's textfile errors"
sk sync daemon stop; expect_rc 0
