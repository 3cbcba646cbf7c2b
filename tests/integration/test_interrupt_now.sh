#!/usr/bin/env bash
# Ctrl+C during `sync now` (http-batch) against a server that does not answer: the
# transfer is aborted, what the server acknowledged is settled, the summary says
# "interrupted", exit 130 (SIGINT) or 143 (SIGTERM), within a second, queue intact.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/interrupt_lib.sh"

rx_start rx
# One connection: the receiver's faults script each request in arrival order, which
# two batches in flight would make a race (two connections: test_http_batch).
e2e_config "$RX_URL" '{"connections": 1}' '{"max_batch_events": 10}'
login
stored() { [ "$(rx_rows)" -eq "$1" ]; }
no_duplicates() {
  expect_eq "$(sqlite3 "$RX_DB" 'SELECT count(*) - count(DISTINCT event_id) FROM events')" 0 "events stored twice"
}

# 1. SIGINT: batch 1 is answered; batch 2 is stored but its answer hangs (the
#    receiver's delay fault; 60 s request timeout): the client never learns of it.
emit_many 30
rx_fault '{"faults": [{"endpoint": "batch", "delay_ms": 1}, {"endpoint": "batch", "delay_ms": 30000, "count": 5}]}'
bg sync now
wait_for 10 stored 20 || fail "the first two batches did not reach the server"
sleep 0.3 # the answer to batch 2 is now awaited
interrupt INT
expect_rc 130 "sync now after SIGINT"
expect_out "Synced: 10 "
expect_out "Remaining: 20  (interrupted)"
expect_err "sync interrupted by SIGINT"
expect_eq "$(queue_ready)" 20 "events queued after the interrupt"
expect_eq "$(rx_rows)" 20 "events the server stored"

# 2. SIGTERM, --json: 143, the JSON says so; then a second signal right after the first.
bg sync now --json
bg_waiting
interrupt TERM
expect_rc 143 "sync now after SIGTERM"
expect_eq "$(jq -r .interrupted <<<"$OUT")" SIGTERM "json interrupted"
expect_eq "$(jq -r .status <<<"$OUT")" cancelled "json status"
expect_eq "$(queue_ready)" 20 "events queued after SIGTERM"
bg sync now
bg_waiting
interrupt INT INT
expect_rc 130 "sync now after two SIGINTs"
expect_eq "$(queue_ready)" 20 "events queued after two SIGINTs"

# Nothing lost, nothing stored twice: the server answers again and the rest goes.
rx_clear
sk sync now; expect_rc 0 "sync now after the interrupts"
expect_out "Synced: 10  Duplicates: 10  Pending: 0  Rejected: 0  Parked: 0  Remaining: 0"
expect_eq "$(queue_ready)" 0
expect_eq "$(rx_rows)" 30 "events the server stored"
no_duplicates

# 4. Two connections (http-batch's default): a batch hangs on each; SIGINT aborts both
#    transfers within the bound, and nothing unanswered leaves the queue.
e2e_config "$RX_URL" '{}' '{"max_batch_events": 10}'
emit_many 30
rx_fault '{"faults": [{"endpoint": "batch", "delay_ms": 30000, "count": 10}]}'
bg sync now
wait_for 10 stored 50 || fail "two batches did not reach the server at once"
sleep 0.3 # both answers are now awaited
interrupt INT
expect_rc 130 "sync now on two connections after SIGINT"
expect_out "Remaining: 30  (interrupted)"
expect_eq "$(queue_ready)" 30 "events queued after the interrupt on two connections"
