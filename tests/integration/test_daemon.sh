#!/usr/bin/env bash
# The background service with the scripted transport: one service per state
# root, flush soon after emit, live status, sync now through the service,
# recovery after failures, shutdown within the deadline, stale and foreign sockets.
. "$(dirname "$0")/lib.sh"
: "${SK_TEST_PLUGIN_DIR:?}"
SCRIPTED="$SK_TEST_PLUGIN_DIR/scripted.so"
REC="$TEST_TMP/record.txt"
echo "\"$SK_BIN\" sync daemon stop --timeout 10" >"$TEST_TMP/daemon.cleanup"

daemon_pid() { cat "$SPEC_KITTY_HOME/daemon.pid" 2>/dev/null || true; }
# wait_for SECONDS CONDITION...: polls every 20 ms.
wait_for() {
  local limit=$1; shift
  local end=$(($(date +%s%N) + limit * 1000000000))
  until "$@"; do
    [ "$(date +%s%N)" -lt $end ] || return 1
    sleep 0.02
  done
}
# A process is gone once it exited; a zombie nobody reaped yet counts as gone.
gone() { [ ! -e "/proc/$1" ] || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
recorded() { [ -f "$REC" ] && [ "$(wc -l <"$REC")" -ge "$1" ]; }
queue_is() { [ "$(queue_ready)" -eq "$1" ]; }

config "{\"transport\": {\"plugin\": \"$SCRIPTED\", \"options\": {\"record\": \"$REC\"}},
  \"schedule\": {\"min_batch_interval_ms\": 0, \"backoff_min_ms\": 100, \"backoff_max_ms\": 400}}"
sk sync daemon --help; expect_rc 0; expect_out "daemon start"
sk sync daemon start; expect_rc 0; expect_out "sync service started (pid"
PID="$(daemon_pid)"
sk sync daemon start; expect_rc 0; expect_out "already running (pid $PID)"
expect_eq "$(daemon_pid)" "$PID" "pid after a second start"
[ "$(stat -c %a "$SPEC_KITTY_HOME/sync.sock")" = 600 ] || fail "socket mode"; pass

# Several starts at once: one service, and the others neither lose its pid nor report a wrong one.
sk sync daemon stop; expect_rc 0
for i in 1 2 3 4; do "$SK_BIN" sync daemon start >"$TEST_TMP/start.$i" 2>&1 & done
wait
PID="$(daemon_pid)"
[ -n "$PID" ] && kill -0 "$PID" || fail "no pid file after concurrent starts"; pass
expect_eq "$(cat "$TEST_TMP"/start.* | grep -c "sync service started")" 1 "services started at once"
expect_eq "$(cat "$TEST_TMP"/start.* | grep -c "already running (pid $PID)")" 3 "starts that found it running"
sk sync daemon run; expect_rc 1; expect_err "already runs for $SPEC_KITTY_HOME (pid $PID)"

sk sync status; expect_rc 0; expect_out "Background   Running (pid $PID"
sk sync status --json; expect_eq "$(jq -r .background.running <<<"$OUT")" true
expect_eq "$(jq -r .background.pid <<<"$OUT")" "$PID"

# An emit reaches the transport within a second, and leaves the queue for every reader.
sk sync emit -t FeatureCompleted -a f1 -p '{"feature_slug":"f1","total_wps":2}'; expect_rc 0
wait_for 1 recorded 1 || fail "emitted event not delivered within 1 s"; pass
wait_for 1 queue_is 0 || fail "delivered event still queued: $(queue_ready)"; pass
sk sync status --json
expect_eq "$(jq -r .connection <<<"$OUT")" Connected
[ "$(jq -r .last_sync <<<"$OUT")" != null ] || fail "last_sync after delivery"; pass

# sync now through the running service: same output and exit code.
emit_many 30
sk sync now; expect_rc 0; expect_out "Remaining: 0"
expect_eq "$(queue_ready)" 0

# The service never sent an event twice.
expect_eq "$(cut -d' ' -f2 "$REC" | sort | uniq -d | wc -l)" 0 "events sent twice"

sk sync daemon stop; expect_rc 0; expect_out "sync service stopped (pid $PID"
sk sync status; expect_out "Background   Stopped"
[ ! -e "$SPEC_KITTY_HOME/sync.sock" ] || fail "socket left after a clean stop"; pass
grep -q "service started" "$SPEC_KITTY_HOME/sync-daemon.log" || fail "log"; pass

# Failures: the service backs off and delivers without user action.
config "{\"transport\": {\"plugin\": \"$SCRIPTED\", \"options\": {\"record\": \"$REC\",
   \"steps\": [{\"rc\": \"failed\", \"detail\": \"server down\"}, {\"rc\": \"failed\", \"detail\": \"server down\"}]}},
  \"schedule\": {\"min_batch_interval_ms\": 0, \"backoff_min_ms\": 100, \"backoff_max_ms\": 400}}"
emit_many 5
sk sync daemon start; expect_rc 0
wait_for 5 queue_is 0 || fail "not delivered after failures: $(queue_ready) left"; pass
grep -q "stopped: server down" "$SPEC_KITTY_HOME/sync-daemon.log" || fail "failure not logged"; pass
sk sync status --json; expect_eq "$(jq -r .failures.consecutive <<<"$OUT")" 0
sk sync daemon stop; expect_rc 0

# SIGTERM while the transport hangs: exits within the deadline + 1 s, nothing lost.
config "{\"transport\": {\"plugin\": \"$SCRIPTED\", \"options\": {\"hang_ms\": 60000}},
  \"schedule\": {\"min_batch_interval_ms\": 0, \"shutdown_deadline_ms\": 500}}"
emit_many 7
sk sync daemon start; expect_rc 0
PID="$(daemon_pid)"
sleep 0.3
T0=$(date +%s%N)
kill -TERM "$PID"
wait_for 3 gone "$PID" || fail "service still running 3 s after SIGTERM"
ELAPSED_MS=$((($(date +%s%N) - T0) / 1000000))
[ $ELAPSED_MS -le $((1500 + SK_TEST_SLACK_MS)) ] || fail "SIGTERM took $ELAPSED_MS ms (deadline 500 ms + 1 s)"; pass
expect_eq "$(queue_ready)" 7 "events after a cancelled batch"
grep -q "cancelling the batch in flight" "$SPEC_KITTY_HOME/sync-daemon.log" || fail "cancel not logged"; pass

# A service killed with -9 leaves a stale socket: reported as stopped, and a new start takes over.
config "{\"transport\": {\"plugin\": \"$SCRIPTED\", \"options\": {\"record\": \"$REC\"}},
  \"schedule\": {\"min_batch_interval_ms\": 0}}"
sk sync daemon start; expect_rc 0
kill -9 "$(daemon_pid)"; sleep 0.1
[ -S "$SPEC_KITTY_HOME/sync.sock" ] || fail "expected a stale socket"; pass
sk sync status; expect_rc 0; expect_out "Background   Stopped"
sk sync daemon start; expect_rc 0; expect_out "sync service started"
wait_for 3 queue_is 0 || fail "new service did not deliver: $(queue_ready) left"; pass
sk sync daemon stop; expect_rc 0

# A socket that is not ours is never trusted.
rm -f "$SPEC_KITTY_HOME/sync.sock"; touch "$SPEC_KITTY_HOME/sync.sock"
sk sync status; expect_rc 0; expect_out "not a socket: not trusted"
rm -f "$SPEC_KITTY_HOME/sync.sock"
sk sync daemon stop; expect_rc 0; expect_out "not running"
