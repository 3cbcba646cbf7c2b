#!/usr/bin/env bash
# End to end against the real receiver: answers lost after the server stored the
# batch (connection cut, client timeout) are resent and counted duplicate, never
# stored twice nor lost; a Retry-After longer than the engine waits stops the pass
# with the events kept; a 400 naming events rejects just those.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/e2e_lib.sh"

rx_start rx
e2e_config "$RX_URL" '{"timeout_ms": 1500}' '{"max_batch_events": 50}'
login
# Counted once each on the server, whatever the client saw.
stored_once() {
  expect_eq "$(rx_rows)" "$1" "events stored"
  expect_eq "$(sqlite3 "$RX_DB" "SELECT count(*) - count(DISTINCT event_id) FROM events")" 0 "stored twice"
}

# ---- the answer is cut off after the batch was stored: resent, duplicate -------
emit_many 120
rx_fault '{"drop": true}'
sk sync now
expect_rc 1 "sync now when the answer is cut off"
# The cut batch stays queued; the batch beside it on the other connection (and the
# one after it) were answered and left the queue.
kept=$(queue_ready)
expect_ge "$kept" 50 "nothing dropped from the queue without an answer"
stored_once $((120 - kept + 50))
sk sync now
expect_rc 0 "resend after the cut"
expect_out "Synced: $((kept - 50))  Duplicates: 50  Pending: 0  Rejected: 0  Parked: 0  Remaining: 0"
expect_eq "$(queue_total)" 0
stored_once 120

# ---- a slow answer past timeout_ms: the request is abandoned, then resent ------
emit_many 80
rx_fault '{"delay_ms": 3000}'
t0=$(now_ms)
sk sync now
elapsed=$(($(now_ms) - t0))
expect_rc 1 "sync now past timeout_ms"
expect_err "timed out"
expect_ge "$elapsed" 1400 "gave up after timeout_ms"; expect_ge 2900 "$elapsed" "did not wait for the slow answer"
# The abandoned batch (50 or 30 events) stays queued; the other one was answered.
kept=$(queue_ready)
[ "$kept" = 50 ] || [ "$kept" = 30 ] || [ "$kept" = 80 ] || fail "queue after a timeout: $kept"; pass
sleep 2 # the receiver finishes the abandoned request
sk sync now
expect_rc 0 "resend after the timeout"
synced=$(grep -o 'Synced: [0-9]*' <<<"$OUT" | cut -d' ' -f2)
dups=$(grep -o 'Duplicates: [0-9]*' <<<"$OUT" | cut -d' ' -f2)
expect_eq $((synced + dups)) "$kept" "synced + duplicates after the timeout"
expect_eq "$(queue_total)" 0
stored_once 200

# ---- Retry-After longer than the engine waits: the pass stops, events kept -----
emit_many 30
rx_fault '{"status": 429, "retry_after": 900}'
t0=$(now_ms)
sk sync now
expect_rc 1 "sync now told to wait 900 s"
expect_err "the server asked to wait 900 s"
expect_ge 5000 $(($(now_ms) - t0)) "returned without waiting 900 s"
expect_eq "$(queue_ready)" 30 "queue intact"
# The wait is persisted: the next `sync now` honours it without sending anything.
requests=$(rx_stats .batch_requests)
sk sync now
expect_rc 1 "sync now within the server's 900 s"
expect_err "the server asked to wait"
expect_eq "$(rx_stats .batch_requests)" "$requests" "nothing sent while the server's wait runs"
expect_eq "$(queue_ready)" 30 "queue intact"
rm "$SPEC_KITTY_HOME/sync-state.json" # what a user does to override the server's wait
sk sync now; expect_rc 0; expect_out "Synced: 30 "
stored_once 230

# ---- 400 with details: only the named events are rejected ----------------------
emit_many 50
rx_fault '{"status": 400, "details": "string", "error": "invalid events"}'
sk sync now
expect_rc 1 "sync now with events named in a 400"
expect_out "Rejected: 50"
expect_eq "$(queue_ready)" 50 "rejected events kept for a retry"
expect_eq "$(sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT count(*) FROM queue WHERE retry_count = 1")" 50 "retry_count"
sk sync now; expect_rc 0 "the retry"; expect_out "Synced: 50 "
expect_eq "$(queue_total)" 0
stored_once 280
expect_eq "$(rx_stats .events_stored)" 280
