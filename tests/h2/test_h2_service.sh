#!/usr/bin/env bash
# The service with h2-stream: an emitted event leaves at once (no 5 s batch spacing
# for a streaming transport), over the one live connection, and `sync status` shows
# that connection and the transport's counters.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/h2_lib.sh"

rx_start rx
h2_config "$RX_TLS" '{}' '{"min_batch_interval_ms": 5000}'
login
sk sync daemon start
expect_rc 0 "daemon start"
echo "'$SK_BIN' sync daemon stop" >"$TEST_TMP/daemon.cleanup"
rows_at_least() { [ "$(rx_rows)" -ge "$1" ]; }
. "$(dirname "$0")/../integration/interrupt_lib.sh" # wait_for
emit_one() {
  sk sync emit -t WPStatusChanged -a WP01 \
    -p '{"wp_id":"WP01","previous_status":"planned","new_status":"doing"}'
  expect_rc 0 "emit"
}

emit_one
wait_for 20 rows_at_least 1 || fail "the first event never reached the server"
# Right after a batch, the next event still goes at once: with batch spacing it
# would wait 5 s.
for n in 2 3 4; do
  t0=$(now_ms)
  emit_one
  wait_for 20 rows_at_least "$n" || fail "event $n never reached the server"
  took=$(($(now_ms) - t0))
  echo "event $n stored $took ms after its emit" >&2
  expect_ge $((2500 + SK_TEST_SLACK_MS)) "$took" "emit→stored of event $n"
done

sk sync status
expect_rc 0 "status"
expect_out "Connection   Connected (HTTP/2, 0 streams in flight)"
sk sync status --json
expect_eq "$(jq -r .connection <<<"$OUT")" Connected "connection"
expect_eq "$(jq -r .connection_detail <<<"$OUT")" "Connected (HTTP/2, 0 streams in flight)"
expect_ge "$(jq -r .background.transport_metrics.requests <<<"$OUT")" 4 "requests counted"
expect_ge "$(jq -r .background.transport_metrics.bytes_sent <<<"$OUT")" 1 "bytes counted"
expect_eq "$(jq -r .background.transport_metrics.connections_open <<<"$OUT")" 1 "one connection"
sk sync daemon stop
expect_rc 0 "daemon stop"
stored_once 4
