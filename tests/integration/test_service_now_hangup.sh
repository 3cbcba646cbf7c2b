#!/usr/bin/env bash
# A `sync now` client that hangs up while the service drains for it: the drain
# goes on to the end, and the service closes that client's connection once the
# drain is over (its worker thread and loop thread both watched the client; the
# worker's note that it went away was lost, and the socket leaked). Run under
# ThreadSanitizer too (scripts/test.sh), where any race between them fails.
. "$(dirname "$0")/lib.sh"
: "${SK_TEST_PLUGIN_DIR:?}"
echo "\"$SK_BIN\" sync daemon stop --timeout 10" >"$TEST_TMP/daemon.cleanup"

wait_for() { # wait_for SECONDS CONDITION...: polls every 20 ms.
  local end=$(($(date +%s%N) + $1 * 1000000000)); shift
  until "$@"; do [ "$(date +%s%N)" -lt $end ] || return 1; sleep 0.02; done
}
drained() { [ "$(queue_ready)" = 0 ]; }
sockets_of() { find "/proc/$1/fd" -lname 'socket:*' | wc -l; }
sockets_are() { [ "$(sockets_of "$PID")" = "$1" ]; }

# Ten batches of ten, 150 ms each: the first `now` progress comes well before the end.
config "{\"transport\": {\"plugin\": \"$SK_TEST_PLUGIN_DIR/scripted.so\", \"options\": {\"hang_ms\": 150}},
  \"schedule\": {\"min_batch_interval_ms\": 0, \"max_batch_events\": 10}}"
sk sync daemon start; expect_rc 0
PID="$(cat "$SPEC_KITTY_HOME/daemon.pid")"
BEFORE="$(sockets_of "$PID")"

emit_many 100
"$SK_BIN" sync now >"$TEST_TMP/now.out" 2>&1 & NOW=$!
sleep 0.5 # a few batches in: the worker is sending progress to this client
kill -9 "$NOW"; wait "$NOW" 2>/dev/null || true
[ "$(queue_ready)" -gt 0 ] || fail "the drain ended before the hang-up (make it longer)"; pass

wait_for 30 drained || fail "the drain did not finish after the client hung up: $(queue_ready) left"; pass
kill -0 "$PID" || fail "the service died"; pass
wait_for 5 sockets_are "$BEFORE" || fail "the service holds $(sockets_of "$PID") sockets after the drain, $BEFORE before"; pass
sk sync now; expect_rc 0 "a later sync now"; expect_out "Remaining: 0"
sk sync daemon stop; expect_rc 0
