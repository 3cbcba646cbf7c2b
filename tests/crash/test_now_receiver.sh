#!/usr/bin/env bash
# Crash suite: `sync now` to the real receiver killed -9 at random moments of the drain
# of 2 000 to 5 000 events (batches of 50 to 1 000), one to three times, then run again
# to completion. After every kill: queue.db is intact and each event is in the queue or
# at the receiver. At the end: the receiver holds every event exactly once and the
# queue is empty.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/../integration/e2e_lib.sh"
. "$(dirname "$0")/crash_lib.sh"

rx_start rx
e2e_config "$RX_URL"
login
QUEUE="$SPEC_KITTY_HOME/queue.db"

# fill N BATCH: N new events queued (their ids in $TRIAL_DIR/ids), batches of BATCH.
fill() {
  e2e_config "$RX_URL" '{}' "{\"max_batch_events\": $2}"
  emit_many "$1"
  sqlq "$QUEUE" "SELECT event_id FROM queue" >"$TRIAL_DIR/ids"
  expect_eq "$(wc -l <"$TRIAL_DIR/ids")" "$1" "events queued"
}

# finish: `sync now` to completion, then every event stored once, none queued.
finish() {
  sk sync now
  expect_rc 0 "sync now after the kills"
  expect_out "Remaining: 0"
  expect_eq "$(queue_total)" 0 "queue after completion"
  expect_delivered "$TRIAL_DIR/ids" event_id
}

trial() {
  local n batch kills k ms
  rand n 2000 5000
  rand batch 50 1000
  fill "$n" "$batch"
  rand kills 1 3
  for ((k = 1; k <= kills; k++)); do
    "$SK_BIN" sync now >/dev/null 2>&1 &
    kill_moment ms "$DRAIN_MS"
    kill_at "$((${EPOCHREALTIME/./} + ms * 1000)):$!"
    [ "${CRASH_RC[0]}" = 137 ] || [ "${CRASH_RC[0]}" = 0 ] || fail "sync now exited ${CRASH_RC[0]} (kill $k)"
    expect_intact "$QUEUE"
    expect_eq "$(missing "$TRIAL_DIR/ids" event_id "$QUEUE:queue" "$RX_DB:events")" 0 \
      "events neither queued nor stored after kill $k at $ms ms"
  done
  finish
}

# Calibration: one drain of 3 500 events in batches of 500 without a kill, checked like
# a trial, sets the range of kill moments.
STORED=0
TRIAL_DIR="$TEST_TMP/calibrate" && mkdir -p "$TRIAL_DIR"
fill 3500 500
t0=${EPOCHREALTIME/./}
"$SK_BIN" sync now >/dev/null 2>&1 || fail "calibration sync now"
DRAIN_MS=$(elapsed_ms "$t0")
finish
echo "calibration: sync now of 3 500 events takes $DRAIN_MS ms"
crash_trials trial
crash_summary "$STORED events delivered, $(rx_stats .duplicates) re-sent and counted duplicate by the receiver"
