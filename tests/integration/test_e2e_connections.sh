#!/usr/bin/env bash
# End to end against the real receiver (a thread per connection): http-batch keeps two
# batches in flight on two keep-alive connections. While the receiver holds the answer
# to one batch, every other batch is sent, stored and settled on the second connection;
# `connections: 1` uses one connection; a Retry-After on one of two batches in flight is
# waited out and resent once, nothing sent twice.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/interrupt_lib.sh"

rx_start rx
login_with() { e2e_config "$RX_URL" "$1" '{"max_batch_events": 10}'; login; }
stored() { [ "$(rx_rows)" -ge "$1" ]; }
# connects: the transport's connections opened so far (a counter kept across runs).
connects() {
  sk sync metrics; expect_rc 0 "sync metrics"
  awk '/^spec_kitty_sync_transport_connects_total\{transport="http-batch"\}/ {n = $2} END {print n + 0}' <<<"$OUT"
}
no_duplicates() {
  expect_eq "$(sqlite3 "$RX_DB" 'SELECT count(*) - count(DISTINCT event_id) FROM events')" 0 "stored twice"
}

# ---- 1. one answer held: the other batches go on the second connection meanwhile ----
# Batch 1 is stored at once but answered only after 60 s. With one batch in flight
# nothing else could be stored before that answer; here all 50 are, while the pass
# still waits for it (no clock: the answer has not come when we look).
login_with '{}'
emit_many 50
rx_fault '{"delay_ms": 60000}'
bg sync now
wait_for 20 stored 50 || fail "only $(rx_rows) of 50 stored while one answer was held: one batch in flight at a time?"
pass
kill -0 "$BG" 2>/dev/null || fail "sync now ended: the held answer came (or was not waited for)"; pass
expect_eq "$(queue_ready)" 10 "only the batch whose answer is held still queued"
interrupt INT
expect_rc 130 "sync now interrupted while one answer is held"
expect_out "Synced: 40 "
expect_out "Remaining: 10  (interrupted)"
rx_clear
sk sync now; expect_rc 0 "the held batch resent"
expect_out "Synced: 0  Duplicates: 10  Pending: 0  Rejected: 0  Parked: 0  Remaining: 0"
expect_eq "$(rx_rows)" 50 "stored once each"
no_duplicates

# ---- 2. connections opened: two by default, one with connections: 1 --------------
before=$(connects)
emit_many 60
sk sync now; expect_rc 0; expect_out "Synced: 60 "
expect_eq $(($(connects) - before)) 2 "connections opened by a pass (default)"
login_with '{"connections": 1}'
before=$(connects)
emit_many 60
sk sync now; expect_rc 0; expect_out "Synced: 60 "
expect_eq $(($(connects) - before)) 1 "connections opened by a pass (connections: 1)"
login_with '{"connections": 9}'
sk sync now; expect_rc 2 "connections out of range"; expect_err "connections must be 1..8"

# ---- 3. Retry-After on one of two batches in flight ------------------------------
login_with '{}'
emit_many 40
requests=$(rx_stats .batch_requests) stored_before=$(rx_rows) dups=$(rx_stats .duplicates)
rx_fault '{"status": 429, "retry_after": 1}'
sk sync now
expect_rc 0 "sync now through a 429 beside another batch"
expect_out "Synced: 40  Duplicates: 0"
expect_eq $(($(rx_stats .batch_requests) - requests)) 5 "four batches and one resend"
expect_eq $(($(rx_rows) - stored_before)) 40 "stored"
expect_eq "$(rx_stats '.http_status["429"]')" 1 "429 sent"
expect_eq $(($(rx_stats .duplicates) - dups)) 0 "no event sent twice"
expect_eq "$(queue_total)" 0
no_duplicates
