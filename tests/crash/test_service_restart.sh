#!/usr/bin/env bash
# Crash suite: the background service killed -9 at random moments while it delivers to
# the real receiver (one to three kills a trial, 300 to 2 000 events emitted in parts
# after each start, batches of 50 to 1 000). After every kill the pid file and socket
# are stale and nothing is lost (each event queued or stored); `sync daemon start` over
# them starts a new service. At the end the receiver holds every event exactly once, the
# queue is empty and the service stops cleanly.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/../integration/e2e_lib.sh"
. "$(dirname "$0")/crash_lib.sh"
echo "\"$SK_BIN\" sync daemon stop --timeout 10" >"$TEST_TMP/a-daemon.cleanup"

rx_start rx
e2e_config "$RX_URL"
login
QUEUE="$SPEC_KITTY_HOME/queue.db"
gone() { [ ! -e "/proc/$1" ] || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# start_service: `sync daemon start` starts a new service (never "already running").
start_service() {
  sk sync daemon start
  expect_rc 0 "sync daemon start"
  expect_out "sync service started"
  PID=$(cat "$SPEC_KITTY_HOME/daemon.pid")
}

# emit_part N: N more events; their keys (the service may deliver them before their
# ids could be read from the queue) are added to $TRIAL_DIR/keys. Nothing slow after
# the emit: the kill moments count from its end.
emit_part() {
  [ "$1" -gt 0 ] || return 0
  PARTS=$((PARTS + 1))
  write_events "$TRIAL_DIR/part.ndjson" "t${CRASH_TRIAL}p$PARTS" "$1"
  seq -f "t${CRASH_TRIAL}p$PARTS#%g" "$1" >>"$TRIAL_DIR/keys"
  "$SK_BIN" sync emit --file "$TRIAL_DIR/part.ndjson" >/dev/null || fail "emit of $1 events"
}

# kill_service MS: kills -9 the service MS after now, waits until it is gone and checks
# what it left: the stale pid file and socket, an intact queue, no event lost.
kill_service() {
  sleep_ms "$1"
  kill -9 "$PID" || fail "the service (pid $PID) died before its kill"
  local i
  for ((i = 0; i < 500; i++)); do gone "$PID" && break; sleep 0.01; done
  gone "$PID" || fail "the service (pid $PID) still runs 5 s after kill -9"
  kill_counts $(($(sqlq "$QUEUE" "SELECT count(*) FROM queue") > 0)) # delivery was under way
  expect_eq "$(cat "$SPEC_KITTY_HOME/daemon.pid")" "$PID" "stale pid file"
  [ -S "$SPEC_KITTY_HOME/sync.sock" ] || fail "no stale socket after kill -9"
  expect_intact "$QUEUE"
  expect_eq "$(missing "$TRIAL_DIR/keys" "$KEY" "$QUEUE:queue" "$RX_DB:events")" 0 \
    "events neither queued nor stored after a kill at $1 ms"
}

# drained SECONDS: waits until the queue is empty.
drained() {
  local end=$((${EPOCHREALTIME/./} + $1 * 1000000))
  until [ "$(sqlq "$QUEUE" "SELECT count(*) FROM queue")" = 0 ]; do
    [ "${EPOCHREALTIME/./}" -lt $end ] || return 1
    sleep 0.05
  done
}

# finish: a last start delivers the rest; every event stored once, queue empty, clean stop.
finish() {
  drained 60 || fail "the service left $(sqlq "$QUEUE" "SELECT count(*) FROM queue") events queued for 60 s"
  pass
  expect_delivered "$TRIAL_DIR/keys" "$KEY"
  sk sync daemon stop
  expect_rc 0 "sync daemon stop"
  expect_out "sync service stopped (pid $PID"
  [ ! -e "$SPEC_KITTY_HOME/sync.sock" ] && [ ! -e "$SPEC_KITTY_HOME/daemon.pid" ] ||
    fail "socket or pid file left after a clean stop"
  pass
}

configure() {
  e2e_config "$RX_URL" '{}' "{\"max_batch_events\": $1, \"min_batch_interval_ms\": 0,
    \"backoff_min_ms\": 50, \"backoff_max_ms\": 200}"
}

trial() {
  local n batch kills k part ms
  rand n 300 2000
  rand batch 50 1000
  rand kills 1 3
  configure "$batch"
  : >"$TRIAL_DIR/keys"
  for ((k = 1; k <= kills; k++)); do
    start_service
    rand part 0 $((n / kills))
    emit_part "$part"
    kill_moment ms $((DELIVER_MS * part / 1000 + 1))
    kill_service "$ms"
  done
  start_service
  emit_part $((n - $(wc -l <"$TRIAL_DIR/keys")))
  finish
}

# Calibration: the service delivers 1 000 events without a kill (checked like a trial):
# the range of kill moments scales with it.
STORED=0 PARTS=0
TRIAL_DIR="$TEST_TMP/calibrate" && mkdir -p "$TRIAL_DIR" && : >"$TRIAL_DIR/keys"
configure 200
start_service
emit_part 1000
t0=${EPOCHREALTIME/./}
drained 60 || fail "calibration: not delivered in 60 s"
DELIVER_MS=$(elapsed_ms "$t0")
finish
echo "calibration: the service delivers 1 000 events in $DELIVER_MS ms"
crash_trials trial
crash_summary "$STORED events delivered, $(rx_stats .duplicates) re-sent and counted duplicate by the receiver"
