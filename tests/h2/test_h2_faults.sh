#!/usr/bin/env bash
# h2-stream through nghttpx to the real receiver, with the server misbehaving: 412
# stops the pass with the guidance, 429 Retry-After is waited out, 413 halves, 400
# without details bisects, 401 refreshes and resends, GOAWAYs every few streams
# (--frontend-max-requests) move the rest to new connections, the front end killed
# and restarted, the backend stopped and started again. Each ends with every valid
# event stored exactly once and the queue as expected.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/h2_lib.sh"

# GOAWAY after every 3 streams: each later connection serves three batches.
RECEIVER_NGHTTPX_FLAGS=--frontend-max-requests=3 rx_start rx
h2_config "$RX_TLS" '{}' '{"max_batch_events": 10}'
login
total=0
delivered() { # delivered N: N more events are stored, once each, queue empty
  total=$((total + $1))
  stored_once "$total"
}

# ---- GOAWAY mid-run: 25 batches over at least 9 connections --------------------
emit_many 250
sk sync now
expect_rc 0 "sync now through GOAWAYs"; expect_out "Synced: 250 "
delivered 250
expect_eq "$(rx_stats .batch_requests)" 25 "one request per batch (nothing lost to a GOAWAY)"

# ---- 412: the pass stops with the server's guidance -----------------------------
emit_many 30
rx_fault '{"status": 412, "upgrade_guidance": "install spec-kitty 9.9 from the h2 channel"}'
sk sync now
expect_rc 1 "sync now on a 412"
expect_err "install spec-kitty 9.9 from the h2 channel"
# Batches in flight beside the refused one were answered 200 and settled; the
# refused batch and everything not yet sent stay queued.
left=$(queue_ready)
expect_ge "$left" 10 "the refused batch is kept"
expect_eq $((left + $(rx_rows) - total)) 30 "kept + stored after a 412"
sk sync now; expect_rc 0 "after the 412"; delivered 30

# ---- 429 with Retry-After: waited out within the pass ----------------------------
emit_many 10
rx_fault '{"status": 429, "retry_after": 1}'
t0=$(now_ms)
sk sync now
expect_rc 0 "sync now through a 429"; expect_out "Synced: 10 "
expect_ge $(($(now_ms) - t0)) 1000 "the resend waited for Retry-After"
delivered 10

# ---- 413: halved until it fits ---------------------------------------------------
emit_many 10
req0=$(rx_stats .batch_requests)
rx_fault '{"status": 413}'
sk sync now
expect_rc 0 "sync now through a 413"; expect_out "Synced: 10 "
expect_eq $(($(rx_stats .batch_requests) - req0)) 3 "the 413 and its two halves"
delivered 10

# ---- 400 without details: bisected down to the poison event ----------------------
emit_many 10
mapfile -t IDS < <(sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT event_id FROM queue ORDER BY id")
rx_admin poison "{\"event_id\": \"${IDS[6]}\"}"
sk sync now
expect_rc 1 "the poison event remains"; expect_out "Synced: 9 "; expect_out "rejected ${IDS[6]}"
expect_eq "$(queue_ready)" 1 "only the poison event left"
rx_clear
sk sync now; expect_rc 0 "poison cleared"; delivered 10

# ---- 401: the token is refreshed once and the batch resent -----------------------
emit_many 10
r401=$(rx_stats '.http_status["401"] // 0')
rx_fault '{"status": 401}'
sk sync now
expect_rc 0 "sync now through a 401"; expect_out "Synced: 10 "
expect_eq $(($(rx_stats '.http_status["401"] // 0') - r401)) 1 "one 401"
delivered 10

# ---- the front end killed, then restarted -----------------------------------------
emit_many 20
front_kill
sk sync now
expect_rc 1 "sync now with the front end down"
expect_err "cannot connect to 127.0.0.1:${RX_TLS##*:}"
expect_eq "$(queue_ready)" 20 "queue intact with the front end down"
front_restart
sk sync now; expect_rc 0 "front end back"; expect_out "Synced: 20 "; delivered 20

# ---- the backend stopped behind a running front end ------------------------------
emit_many 20
backend_kill
sk sync now
expect_rc 1 "sync now with the backend down"
expect_eq "$(queue_ready)" 20 "queue intact with the backend down"
expect_eq "$(sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT max(retry_count) FROM queue")" 0 \
  "a 5xx of the front costs no retry"
backend_restart
sk sync now; expect_rc 0 "backend back"; expect_out "Synced: 20 "; delivered 20

# ---- a stalled stream is reset at its deadline (timeout_ms) -------------------------
. "$(dirname "$0")/../integration/interrupt_lib.sh"
h2_config "$RX_TLS" '{"timeout_ms": 1000}' '{"max_batch_events": 10}'
emit_many 10
rx_fault '{"endpoint": "batch", "delay_ms": 2500}'
t0=$(now_ms)
sk sync now
elapsed=$(($(now_ms) - t0))
expect_rc 1 "sync now with a stalled stream"
expect_err "batch deadline reached after"; expect_err "stream reset"
expect_ge 2400 "$elapsed" "the stalled stream ended at its 1 s deadline, not the answer"
expect_eq "$(queue_ready)" 10 "the stalled batch is kept"
# The server stores it when its answer is finally written; the resend is a duplicate.
rows_at_least() { [ "$(rx_rows)" -ge "$1" ]; }
wait_for 10 rows_at_least $((total + 10)) || fail "the stalled batch never landed"
sk sync now; expect_rc 0 "after the stall"; expect_out "Duplicates: 10"; delivered 10

# ---- SIGINT with streams in flight: cancelled at once, nothing lost ---------------
h2_config "$RX_TLS" '{}' '{"max_batch_events": 10}'
emit_many 30
rx_fault '{"endpoint": "batch", "delay_ms": 2500, "count": 3}'
bg sync now
bg_waiting
interrupt INT
expect_rc 130 "sync now after SIGINT"
expect_err "sync interrupted by SIGINT"
expect_eq "$(queue_ready)" 30 "events queued after the interrupt"
sleep 2.5 # the stalled answer lands server-side
rx_clear
sk sync now; expect_rc 0 "after the interrupt"; expect_out "Remaining: 0"
delivered 30
