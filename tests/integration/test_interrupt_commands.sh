#!/usr/bin/env bash
# Ctrl+C in every command that can wait: `sync now` to file-drop (the bundle in
# progress abandoned, no temp folder left), `sync import` of a big outbox (stops
# between bundles, none half-imported), `sync status --check` (its probe against a
# server that does not answer), `sync emit --file -` reading a pipe, the password
# prompt of `auth login` (echo back on); and output into a closed pipe ends quietly.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/interrupt_lib.sh"
OUTBOX="$TEST_TMP/outbox"
DROP_HOME="$SPEC_KITTY_HOME"
bundles() { ls "$OUTBOX" | grep -c '\.skb$' || true; }
have_bundles() { [ "$(bundles)" -ge 1 ]; }
# bundle_events DIR: events in the bundles of DIR, by their manifests.
bundle_events() { cat "$1"/*.skb/manifest.json 2>/dev/null | jq -s 'map(.event_count) | add // 0'; }

# 1. file-drop: SIGINT in the middle of the drain.
config "{\"transport\": {\"plugin\": \"file-drop\", \"options\": {\"outbox\": \"$OUTBOX\"}},
  \"schedule\": {\"max_batch_events\": 20}}"
emit_many 3000
bg sync now
wait_for 20 have_bundles || fail "no bundle written"
paused_interrupt INT
expect_rc 130 "file-drop sync now after SIGINT"
expect_out "(interrupted)"
expect_err "sync interrupted by SIGINT"
LEFT="$(queue_ready)"
[ "$LEFT" -gt 0 ] || fail "the drain finished before the signal (make the test bigger)"; pass
ls -a "$OUTBOX" | grep -q '^\.tmp-' && fail "a temp folder was left in the outbox"; pass
expect_eq "$(bundle_events "$OUTBOX")" $((3000 - LEFT)) "events in bundles + events queued"
expect_out "Remaining: $LEFT  (interrupted)"
sk sync now; expect_rc 0; expect_out "Remaining: 0"
expect_eq "$(bundle_events "$OUTBOX")" 3000 "events in bundles after the second drain"
ALL_BUNDLES="$(bundles)"

# 2. import of that outbox on a "connected machine": SIGTERM between bundles.
export SPEC_KITTY_HOME="$TEST_TMP/connected"
has_imported() { [ -n "$(ls "$OUTBOX/imported" 2>/dev/null)" ]; }
bg sync import "$OUTBOX"
wait_for 20 has_imported || fail "no bundle imported"
paused_interrupt TERM
expect_rc 143 "import after SIGTERM"
expect_out "(interrupted"
MOVED="$(ls "$OUTBOX/imported" | wc -l)"
[ "$MOVED" -lt "$ALL_BUNDLES" ] || fail "the import finished before the signal (make the test bigger)"; pass
expect_eq "$(queue_ready)" "$(bundle_events "$OUTBOX/imported")" "events queued = events of the bundles moved aside"
expect_eq "$(bundles)" $((ALL_BUNDLES - MOVED)) "bundles left in the outbox"
sk sync import "$OUTBOX"; expect_rc 0
expect_eq "$(queue_ready)" 3000 "events queued after the second import"

# 3. status --check: the probe waits on a server that does not answer.
rx_start rx
e2e_config "$RX_URL"
login
rx_fault '{"endpoint": "health", "delay_ms": 30000}'
bg sync status --check
bg_waiting
interrupt INT
expect_rc 130 "status --check after SIGINT"
expect_out "Interrupted — probe cancelled by SIGINT"
expect_out "Queue"
rx_clear

# 4. emit --file - reading a pipe whose writer is still there: nothing queued.
before="$(queue_total)"
mkfifo "$TEST_TMP/fifo"
exec 7<>"$TEST_TMP/fifo"
printf '{"event_type":"ErrorLogged","aggregate_id":"x","payload":{"error_type":"runtime","error_message":"m"}}\n' >&7
BG_STDIN="$TEST_TMP/fifo" bg sync emit --file -
wait_for 10 bg_catches || fail "emit never took SIGINT"
sleep 0.2
interrupt INT
exec 7>&-
expect_rc 130 "emit --file - after SIGINT"
expect_eq "$(queue_total)" "$before" "events queued by an interrupted emit"

# 5. The password prompt: SIGINT puts the terminal's echo back (a real pty via script(1)).
script -qec "sh -c '\"$SK_BIN\" auth login --username alice </dev/tty & echo \$! >\"$TEST_TMP/login.pid\"; wait \$!; echo rc=\$?; stty -a </dev/tty'" /dev/null \
  </dev/null >"$TEST_TMP/pty.out" 2>&1 & SCRIPT=$!
prompted() { grep -q "Password:" "$TEST_TMP/pty.out"; }
wait_for 10 prompted || fail "no password prompt: $(cat "$TEST_TMP/pty.out")"
sleep 0.2
t0=$(intr_now_ms)
kill -INT "$(cat "$TEST_TMP/login.pid")"
rc_shown() { grep -q "rc=" "$TEST_TMP/pty.out"; }
wait_for 5 rc_shown || true
ELAPSED=$(($(intr_now_ms) - t0))
wait "$SCRIPT" || true
grep -q "rc=130" "$TEST_TMP/pty.out" || fail "auth login after SIGINT: $(cat "$TEST_TMP/pty.out")"; pass
grep -qw -- "-echo" "$TEST_TMP/pty.out" && fail "echo left off after an interrupted prompt"; pass
grep -qw "echo" "$TEST_TMP/pty.out" || fail "no terminal settings shown: $(cat "$TEST_TMP/pty.out")"; pass
[ "$ELAPSED" -le "$INTR_BOUND_MS" ] || fail "auth login took $ELAPSED ms to end after SIGINT"; pass
echo "auth login prompt: SIGINT -> exit in $ELAPSED ms"

# 6. Output into a closed pipe ends quietly (parked events: max_retries 0 parks a refusal).
e2e_config "$RX_URL" '{}' '{"max_retries": 0}'
rx_fault '{"endpoint": "batch", "status": 400, "details": true, "count": 20}'
sk sync now; expect_rc 0 "sync now with every event parked"
expect_ge "$(queue_parked)" 3000 "parked events"
set +e
"$SK_BIN" sync parked 2>"$TEST_TMP/pipe.err" | head -1 >/dev/null
rc=${PIPESTATUS[0]}
set -e
expect_eq "$rc" 0 "sync parked | head -1"
expect_eq "$(cat "$TEST_TMP/pipe.err")" "" "stderr of sync parked | head -1"
