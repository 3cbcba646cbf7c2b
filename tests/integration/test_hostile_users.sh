#!/usr/bin/env bash
# Another user runs `sync daemon stop` on a state root it cannot reach: it says
# what happened (permission denied) and fails, instead of "sync service not
# running" with exit 0 while the service runs on. Needs root (as CI runs it),
# to start the service as one user and ask as another.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || fail "needs root: it runs the client as another user (nobody)"
echo "\"$SK_BIN\" sync daemon stop --timeout 10" >"$TEST_TMP/daemon.cleanup"
chmod 711 "$TEST_TMP" # others may pass through to the state root, not into it (0700)

sk sync daemon start; expect_rc 0 "start as root"
PID="$(cat "$SPEC_KITTY_HOME/daemon.pid")"
expect_eq "$(stat -c %a "$SPEC_KITTY_HOME")" 700 "state root mode"

# as_nobody ARGS...: spec-kitty as uid/gid 65534 on the same state root.
as_nobody() {
  set +e
  setpriv --reuid=65534 --regid=65534 --clear-groups env SPEC_KITTY_HOME="$SPEC_KITTY_HOME" \
    "$SK_BIN" "$@" >"$TEST_TMP/out" 2>"$TEST_TMP/err"
  RC=$?
  set -e
  OUT="$(cat "$TEST_TMP/out")" ERR="$(cat "$TEST_TMP/err")"
}

as_nobody sync daemon stop
expect_rc 1 "stop by another user"
expect_err "daemon.lock: Permission denied"
grep -q "not running" <<<"$OUT$ERR" && fail "another user was told the service is not running"; pass
kill -0 "$PID" || fail "the service stopped"; pass

sk sync daemon stop; expect_rc 0 "stop by its owner"; expect_out "sync service stopped (pid $PID"
