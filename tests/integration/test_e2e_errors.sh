#!/usr/bin/env bash
# End to end against the real receiver (issue 5, 8–12): 412 halts the pass with the
# server's upgrade guidance, 413 makes the engine halve batches until they fit (and
# parks an event too large alone), 429 Retry-After is waited out before the resend,
# 500/503 are transient (exit 1, queue intact, then success), and a server that is
# down leaves the queue intact until it is back.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/e2e_lib.sh"

RX_VERBOSE=1 rx_start rx
# Small batches: a pass that halts after the first request shows in the counts.
e2e_config "$RX_URL" '{}' '{"max_batch_events": 10}'
login

# stored_delta / requests_delta: receiver counters since the last mark.
mark() { MARK_STORED=$(rx_stats .events_stored); MARK_REQ=$(rx_stats .batch_requests); }
stored_delta() { echo $(($(rx_stats .events_stored) - MARK_STORED)); }
requests_delta() { echo $(($(rx_stats .batch_requests) - MARK_REQ)); }
# halted TOTAL WHAT: every answer is WHAT (the fault stays until rx_clear), and the
# first one stopped the pass: http-batch had a batch on each of its two connections,
# and none went after them. (With a one-time fault the other connection may carry any
# number of batches before the failed answer arrives, so no bound would hold; test_deliver
# checks that the batches beside a failed one are settled.)
halted() {
  HALT_REQ=$(requests_delta) HALT_STORED=$(stored_delta)
  expect_ge "$HALT_REQ" 1 "requests after a $2"
  expect_ge 2 "$HALT_REQ" "requests after a $2 (halted: one per connection at most)"
  expect_eq "$HALT_STORED" 0 "stored after a $2"
  expect_eq "$(queue_ready)" "$1" "queue intact after a $2"
  rx_clear
}

# ---- 8. 412: the pass stops at once with the server's upgrade guidance ---------
emit_many 50
mark
rx_fault '{"status": 412, "upgrade_guidance": "install spec-kitty 9.9 from the e2e channel", "count": 1000}'
sk sync now
expect_rc 1 "sync now on a 412"
expect_err "the server refused this client's protocol"
expect_err "install spec-kitty 9.9 from the e2e channel"
halted 50 412
expect_eq "$(rx_stats '.http_status["412"]')" "$HALT_REQ" "412 answered to each request"
sk sync now; expect_rc 0 "after the 412"; expect_out "Synced: $((50 - HALT_STORED)) "
expect_eq "$(stored_delta)" 50; expect_eq "$(queue_total)" 0

# ---- 11. 500 and 503 are transient: exit 1, queue intact, then success ---------
for code in 500 503; do
  emit_many 30
  mark
  rx_fault "{\"status\": $code, \"count\": 1000}"
  sk sync now
  expect_rc 1 "sync now on $code"
  expect_err "$code"
  halted 30 "$code"
  expect_eq "$(queue_parked)" 0 "nothing parked after $code"
  expect_eq "$(sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT max(retry_count) FROM queue")" 0 "$code costs no retry"
  sk sync status --json
  expect_ge "$(jq -r .failures.consecutive <<<"$OUT")" 1 "consecutive failures after $code"
  sk sync now; expect_rc 0 "after $code"; expect_out "Synced: $((30 - HALT_STORED)) "
  expect_eq "$(stored_delta)" 30 "stored after $code then success"
  expect_eq "$(queue_total)" 0
  expect_eq "$(status_json .failures.consecutive)" 0 "failures reset by a success"
done
# A 503 with Retry-After is waited out within the same pass.
emit_many 10
mark
rx_fault '{"status": 503, "retry_after": 1}'
t0=$(now_ms)
sk sync now
expect_rc 0 "sync now through a 503 with Retry-After"; expect_out "Synced: 10 "
expect_ge $(($(now_ms) - t0)) 1000 "sync now through a 503 with Retry-After 1"
expect_eq "$(requests_delta)" 2 "the 503 and one resend"
expect_eq "$(stored_delta)" 10
expect_eq "$(rx_stats .duplicates)" 0 "no event sent twice"

# ---- 10. 429 Retry-After: the resend waits at least as long as asked -----------
# (seconds, then an HTTP-date — whole seconds, so at least 1 s of the 2 asked)
for fmt in seconds date; do
  emit_many 5
  mark
  : >"$RX_LOG.mark"; cp "$RX_LOG" "$RX_LOG.mark"
  rx_fault "{\"status\": 429, \"retry_after\": 2, \"retry_after_format\": \"$fmt\"}"
  t0=$(now_ms)
  sk sync now
  elapsed=$(($(now_ms) - t0))
  expect_rc 0 "sync now through a 429 ($fmt)"; expect_out "Synced: 5 "
  expect_eq "$(requests_delta)" 2 "the 429 and one resend ($fmt)"
  expect_eq "$(stored_delta)" 5
  # The receiver's own log: time of the 429, time of the batch after it.
  mapfile -t T < <(diff "$RX_LOG.mark" "$RX_LOG" | grep -E '^> .* POST /api/v1/events/batch/ (429|200) ' |
    awk '{print $2}')
  expect_eq "${#T[@]}" 2 "batch log lines ($fmt)"
  gap=$(($(date -d "${T[1]}" +%s%3N) - $(date -d "${T[0]}" +%s%3N)))
  echo "429 ($fmt, Retry-After 2): resend $gap ms after the 429, sync now $elapsed ms" >&2
  if [ $fmt = seconds ]; then min=2000; else min=1000; fi
  expect_ge "$gap" "$min" "wait between the 429 and the resend ($fmt)"
  expect_ge 15000 "$elapsed" "sync now through a 429 ($fmt)"
done
expect_eq "$(queue_total)" 0

# ---- 9. 413: halving until batches fit ---------------------------------------
# A receiver taking bodies of at most 40 000 bytes (raw JSON) and batches of 1000:
# each 1000-event batch (~250 KB) is halved down to pieces that fit. One event
# bigger than the limit on its own is parked with the reason.
RX_MAIN=$RX_DIR
rx_start small --max-body-bytes 40000
e2e_config "$RX_URL" '{}' '{"max_retries": 2}'
login
emit_many 2000
big=$(head -c 60000 /dev/zero | tr '\0' x)
sk sync emit -t WPStatusChanged -a WP77 \
  -p "{\"wp_id\":\"WP77\",\"previous_status\":\"planned\",\"new_status\":\"doing\",\"changed_by\":\"$big\"}"
expect_rc 0 "emit a 60 KB event"; BIG_ID=$OUT
t0=$(now_ms)
sk sync now
echo "2 001 events through a 40 000-byte limit in $(($(now_ms) - t0)) ms" >&2
expect_out "Synced: 2000  Duplicates: 0  Pending: 0  Rejected: 0  Parked: 1  Remaining: 0"
expect_out "parked $BIG_ID"
expect_ge "$(rx_stats '.http_status["413"] // 0')" 3 "413 answers"
expect_eq "$(rx_stats .events_stored)" 2000 "stored behind the 413s"
expect_eq "$(rx_stats .success)" 2000 "accepted"
expect_eq "$(rx_stats .duplicates)" 0 "no duplicate while halving"
expect_eq "$(queue_ready)" 0; expect_eq "$(queue_parked)" 1
sk sync parked; expect_out "$BIG_ID"; expect_out "too large"
# Halving stops as soon as a piece fits: each accepted batch is over a quarter of the
# limit, so the count sits between total/limit and about twice that.
bytes=$(sqlite3 "$RX_DB" "SELECT sum(length(data)) FROM events")
min=$(((bytes + 39999) / 40000))
expect_ge "$(rx_stats .batches)" "$min" "accepted batches (each under the limit)"
expect_ge $((2 * min + 4)) "$(rx_stats .batches)" "accepted batches (halving went no further than needed)"
rx_stop

# ---- 12. the server down, then up again on the same address --------------------
rx_use "$RX_MAIN"
e2e_config "$RX_URL" '{}' '{"max_batch_events": 10}'
login
rx_stop
stored_before=$(rx_rows)
emit_many 40
sk sync now
expect_rc 1 "sync now with the server down"
port=${RX_URL##*:}
expect_err "sync stopped: Failed to connect to 127.0.0.1 port $port"; expect_err "Couldn't connect to server"
expect_eq "$(queue_ready)" 40 "queue intact with the server down"
expect_eq "$(queue_parked)" 1 "only the too-large event of part 9 parked"
sk sync status; expect_out "40 events waiting"
[ "$(status_json .connection)" != Connected ] || fail "status says Connected with the server down"; pass
RX_VERBOSE=1 rx_start rx --listen "127.0.0.1:$port"
expect_eq "$RX_URL" "http://127.0.0.1:$port" "same address after restart"
sk sync now; expect_rc 0 "sync now with the server back"; expect_out "Synced: 40 "
expect_eq "$(queue_ready)" 0
expect_eq "$(rx_rows)" $((stored_before + 40)) "stored after the restart"
expect_eq "$(status_json .connection)" Connected
