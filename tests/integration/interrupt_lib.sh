# shellcheck shell=bash
# Helpers of the interrupt tests (test_interrupt*.sh): run the real binary in the
# background, signal it, and measure how long it takes to exit. Source after lib.sh.

# Signal-to-exit bound, generous: machines are noisy (the promise is 1 s).
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
