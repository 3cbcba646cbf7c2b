#!/usr/bin/env bash
# The background service against the real receiver (issue 6): an emit arrives within a
# second; with the receiver stopped the events wait, and once it is back they arrive
# without anyone typing `sync now`; `sync now` and `sync status` go through the service;
# SIGTERM while the server hangs exits within the deadline + 1 s and loses nothing.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/e2e_lib.sh"
echo "\"$SK_BIN\" sync daemon stop --timeout 10" >"$TEST_TMP/a-daemon.cleanup"
wait_for() { # wait_for SECONDS CONDITION...
  local end=$(($(date +%s%N) + $1 * 1000000000)); shift
  until "$@"; do [ "$(date +%s%N)" -lt $end ] || return 1; sleep 0.02; done
}
rows_are() { [ "$(rx_rows)" -eq "$1" ]; }
gone() { [ ! -e "/proc/$1" ] || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

rx_start rx
port=${RX_URL##*:}
e2e_config "$RX_URL" '{}' '{"min_batch_interval_ms": 0, "backoff_min_ms": 100, "backoff_max_ms": 1000, "shutdown_deadline_ms": 500}'
login
sk sync daemon start; expect_rc 0

# 1. An emit reaches the server within a second, without `sync now`.
t0=$(now_ms)
sk sync emit -t FeatureCompleted -a f1 -p '{"feature_slug":"f1","total_wps":1}'; expect_rc 0
wait_for 1 rows_are 1 || fail "the emitted event was not stored within 1 s"; pass
echo "emit-to-stored: $(($(now_ms) - t0)) ms"
sk sync status; expect_rc 0; expect_out "Background   Running"; expect_out "Connection   Connected"

# 2. Receiver stopped: events wait, the service backs off; receiver back: they arrive by themselves.
rx_stop
emit_many 25
sleep 1
expect_eq "$(queue_ready)" 25 "events while the server is down"
expect_ge "$(status_json .failures.consecutive)" 1 "failures counted while the server is down"
[ "$(status_json .connection)" != Connected ] || fail "Connected while the server is down"; pass
rx_start rx --listen "127.0.0.1:$port"
wait_for 5 rows_are 26 || fail "not delivered after the server came back: $(rx_rows) stored, $(queue_ready) queued"; pass
expect_eq "$(queue_ready)" 0
expect_eq "$(status_json .connection)" Connected

# 3. `sync now` while the service runs: the service drains, same output and exit code.
sk sync daemon stop; expect_rc 0
emit_many 300
sk sync daemon start; expect_rc 0
sk sync now; expect_rc 0; expect_out "Remaining: 0"
wait_for 3 rows_are 326 || fail "stored $(rx_rows), expected 326"; pass
expect_eq "$(sqlite3 "$RX_DB" 'SELECT count(*) - count(DISTINCT event_id) FROM events')" 0 "events stored twice"

# 4. SIGTERM while the server hangs: exit within the deadline (500 ms) + 1 s, nothing lost.
rx_fault '{"endpoint": "batch", "delay_ms": 30000, "count": 5}'
PID="$(cat "$SPEC_KITTY_HOME/daemon.pid")"
emit_many 7
sleep 0.5 # the service is now waiting on the hanging server
t0=$(now_ms)
kill -TERM "$PID"
wait_for 3 gone "$PID" || fail "service still running 3 s after SIGTERM"; pass
elapsed=$(($(now_ms) - t0))
[ $elapsed -le $((1500 + SK_TEST_SLACK_MS)) ] || fail "SIGTERM took $elapsed ms (deadline 500 ms + 1 s)"; pass
expect_eq "$(queue_ready)" 7 "events kept after a cancelled batch"
rx_clear
sk sync now; expect_rc 0; expect_out "Remaining: 0"

# 5. The session ends while the service runs: it stops trying (status says why) until the
#    credentials file changes; a new login resumes delivery without touching the service.
sk sync daemon start; expect_rc 0
rx_admin tokens/expire '{"kind": "all"}'
emit_many 5
LOG="$SPEC_KITTY_HOME/sync-daemon.log"
blocked() { [ "$(status_json .auth.state)" = "Session expired" ]; }
wait_for 5 blocked || fail "service did not notice the session ended: $(status_json .auth.state)"; pass
sk sync status; expect_rc 1 "status with an expired session"; expect_out "Session expired — run \`spec-kitty auth login\`"
attempts=$(grep -c "background pass" "$LOG" || true)
sleep 1.5
expect_eq "$(grep -c "background pass" "$LOG" || true)" "$attempts" "attempts while the session is over"
expect_eq "$(queue_ready)" 5 "events kept while the session is over"
stored=$(rx_rows)
login
wait_for 5 rows_are $((stored + 5)) || fail "not delivered after a new login: $(queue_ready) queued"; pass
grep -q "credentials changed: resuming" "$LOG" || fail "the service did not log the resume"; pass
sk sync daemon stop; expect_rc 0
