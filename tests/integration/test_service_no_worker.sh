#!/usr/bin/env bash
# A service that cannot start its worker thread (its address space capped, so
# the new thread's stack cannot be mapped): a `sync now` through it gets the
# error instead of waiting for ever, and a background pass that cannot start
# waits before trying again instead of spinning.
. "$(dirname "$0")/lib.sh"
: "${SK_TEST_PLUGIN_DIR:?}"
echo "\"$SK_BIN\" sync daemon stop --timeout 10" >"$TEST_TMP/daemon.cleanup"

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

config "{\"transport\": {\"plugin\": \"$SK_TEST_PLUGIN_DIR/scripted.so\"},
  \"schedule\": {\"min_batch_interval_ms\": 0}}"
# The size of a service that has not run a pass yet, then one capped just above it.
sk sync daemon start; expect_rc 0
VM_KB="$(awk '/^VmSize/ { print $2 }' "/proc/$(cat "$SPEC_KITTY_HOME/daemon.pid")/status")"
sk sync daemon stop; expect_rc 0
(ulimit -v $((VM_KB + 2048)) && exec "$SK_BIN" sync daemon start) >/dev/null || fail "capped start"
pass
PID="$(cat "$SPEC_KITTY_HOME/daemon.pid")"

set +e
timeout 20 "$SK_BIN" sync now >"$TEST_TMP/out" 2>"$TEST_TMP/err"
RC=$?
set -e
[ "$RC" -ne 124 ] || fail "sync now waited for a worker that never started"; pass
[ "$RC" -ne 0 ] || fail "sync now succeeded without a worker"; pass
grep -qF "cannot start a worker thread" "$TEST_TMP/err" || fail "stderr: $(cat "$TEST_TMP/err")"; pass

emit_many 3 # pokes the service: its background pass cannot start either
T0="$(cpu_ticks "$PID")"
sleep 1
T1="$(cpu_ticks "$PID")"
[ $((T1 - T0)) -lt 30 ] || fail "the service spins: $((T1 - T0)) ticks of CPU in 1 s"; pass
kill -0 "$PID" || fail "the service died"; pass

sk sync daemon stop; expect_rc 0
expect_eq "$(queue_ready)" 3 "events kept"
