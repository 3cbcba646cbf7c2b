# shellcheck shell=bash
# Helpers of the interrupt tests (test_interrupt*.sh): run the real binary in the
# background, signal it, and measure how long it takes to exit. Source after lib.sh.

# Signal-to-exit bound, generous: machines are noisy (the promise is 1 s). An ASan
# build's leak check at exit alone takes up to a second or two on a busy machine.
if [ -n "${ASAN_OPTIONS:-}" ]; then INTR_BOUND_MS=${INTR_BOUND_MS:-6000}; fi
INTR_BOUND_MS=${INTR_BOUND_MS:-3000}

wait_for() { # wait_for SECONDS CONDITION...: polls every 20 ms.
  local end=$(($(date +%s%N) + $1 * 1000000000)); shift
  until "$@"; do [ "$(date +%s%N)" -lt $end ] || return 1; sleep 0.02; done
}
intr_now_ms() { echo $(($(date +%s%N) / 1000000)); }

# bg ARGS...: starts spec-kitty in the background (stdout/stderr in $TEST_TMP/bg.out/.err,
# stdin from $BG_STDIN or /dev/null); its pid in $BG. A script's background job starts
# with SIGINT ignored: the binary must take SIGINT all the same.
bg() {
  "$SK_BIN" "$@" <"${BG_STDIN:-/dev/null}" >"$TEST_TMP/bg.out" 2>"$TEST_TMP/bg.err" &
  BG=$!
}

# bg_catches: $BG has its SIGINT handler (bit 2 of SigCgt) in place.
bg_catches() { (( 0x$(awk '/^SigCgt/ {print $2}' "/proc/$BG/status" 2>/dev/null || echo 0) & 2 )); }
# bg_connected: $BG holds a socket (a transfer or the service's control socket: the
# command is past its start and into the work a signal cancels).
bg_connected() { ls -l "/proc/$BG/fd" 2>/dev/null | grep -q 'socket:'; }
# bg_waiting: wait until $BG is connected, then a little more for its request to go out.
bg_waiting() { wait_for 20 bg_connected || fail "no connection from the command"; sleep 0.3; }

# interrupt SIG...: sends each signal to $BG (in order), waits for it to exit; sets RC,
# OUT, ERR and ELAPSED (ms from the first signal to the exit), and checks the bound.
interrupt() {
  local t0 sig
  t0=$(intr_now_ms)
  for sig in "$@"; do kill -"$sig" "$BG" 2>/dev/null || true; done
  # A command that ignores the signal is killed past the bound (and the test fails).
  local end=$(($(date +%s%N) / 1000000 + INTR_BOUND_MS + 2000))
  while kill -0 "$BG" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$BG/status" 2>/dev/null; do
    [ "$(intr_now_ms)" -lt $end ] || { kill -9 "$BG"; break; }
    sleep 0.01
  done
  set +e
  wait "$BG"
  RC=$?
  set -e
  ELAPSED=$(($(intr_now_ms) - t0))
  OUT="$(cat "$TEST_TMP/bg.out")"
  ERR="$(cat "$TEST_TMP/bg.err")"
  echo "$TEST_NAME: ${INTR_LABEL:-$*} -> exit $RC in $ELAPSED ms"
  [ "$ELAPSED" -le "$INTR_BOUND_MS" ] || fail "${INTR_LABEL:-$*} took $ELAPSED ms to end the command (bound $INTR_BOUND_MS ms); stderr: $ERR"
  pass
}

# paused_interrupt SIG: the same, with $BG stopped while the signal is sent, so that
# it lands exactly where the process was (a fast command cannot finish first); the
# time counts from SIGCONT.
paused_interrupt() {
  kill -STOP "$BG"
  kill -"$1" "$BG"
  INTR_LABEL="$1 (sent while stopped, counted from SIGCONT)" interrupt CONT
}
