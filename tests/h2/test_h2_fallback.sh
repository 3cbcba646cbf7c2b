#!/usr/bin/env bash
# The service with h2-stream and transport.fallback http-batch: with the nghttpx
# front down, the h2 passes fail, and after transport.fallback_after of them the
# events go through http-batch to the receiver's plain HTTP port while `sync
# status` says OfflineBatchMode; once the front is back, the idle service's next
# probe (backoff_max_ms after the last pass) connects and it streams again
# (Connected, over HTTP/2).
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/h2_lib.sh"
. "$(dirname "$0")/../integration/interrupt_lib.sh" # wait_for

rx_start rx
config "{\"server_url\": \"$RX_TLS\",
  \"transport\": {\"plugin\": \"h2-stream\", \"options\": {\"ca_file\": \"$RX_CA\"},
    \"fallback\": \"http-batch\", \"fallback_after\": 2, \"fallback_url\": \"$RX_URL\"},
  \"schedule\": {\"backoff_min_ms\": 200, \"backoff_max_ms\": 400,
    \"min_batch_interval_ms\": 200}}"
login
front_kill

sk sync config --keys
expect_rc 0 "config --keys"
expect_out "transport.fallback_after"

sk sync daemon start
expect_rc 0 "daemon start"
echo "'$SK_BIN' sync daemon stop" >"$TEST_TMP/daemon.cleanup"
rows_at_least() { [ "$(rx_rows)" -ge "$1" ]; }
connection_is() { [ "$(status_json .connection)" = "$1" ]; }
emit_one() {
  sk sync emit -t WPStatusChanged -a WP01 \
    -p '{"wp_id":"WP01","previous_status":"planned","new_status":"doing"}'
  expect_rc 0 "emit"
}

# ---- the front is down: the events go through the fallback --------------------
emit_one
emit_one
wait_for 20 rows_at_least 2 || fail "the events never reached the server through the fallback"
wait_for 10 connection_is OfflineBatchMode || fail "connection: $(status_json .connection)"
sk sync status --json
expect_eq "$(jq -r .connection <<<"$OUT")" OfflineBatchMode "connection while falling back"
expect_eq "$(jq -r .queue.size <<<"$OUT")" 0 "queue after the fallback passes"
expect_eq "$(jq -r ".background.transport_metrics.connections_open // 0" <<<"$OUT")" 0 \
  "no HTTP/2 connection while falling back"
sk sync status
expect_out "Connection   OfflineBatchMode"
grep -q 'h2-stream failed 2 passes in a row: sending through http-batch' \
  "$SPEC_KITTY_HOME/sync-daemon.log" || fail "the fallback was not logged"

# Still down: the next event goes through the fallback too.
emit_one
wait_for 20 rows_at_least 3 || fail "the third event never arrived"
expect_eq "$(status_json .connection)" OfflineBatchMode "connection with the front still down"

# ---- the front is back: the probe connects, the service streams again ----------
# Nothing waits to be sent: the idle service probes again after backoff_max_ms.
front_restart
wait_for 10 connection_is Connected || fail "connection after the front came back, idle: $(status_json .connection)"
emit_one
wait_for 20 rows_at_least 4 || fail "the fourth event never arrived"
sk sync status --json
expect_eq "$(jq -r .connection_detail <<<"$OUT")" "Connected (HTTP/2, 0 streams in flight)"
expect_eq "$(jq -r .background.transport_metrics.connections_open <<<"$OUT")" 1 \
  "the HTTP/2 connection is up again"
grep -q 'h2-stream answers again' "$SPEC_KITTY_HOME/sync-daemon.log" ||
  fail "the end of the fallback was not logged"
sk sync daemon stop
expect_rc 0 "daemon stop"
stored_once 4
