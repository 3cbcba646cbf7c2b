#!/usr/bin/env bash
# `sync now` through the running service, against a server that does not answer:
# Ctrl+C on the client cancels the pass this client asked for (the service goes on
# with its own schedule) and the client exits 130 within a second, saying so; a
# client killed with -9 cancels its pass too; nothing is lost or stored twice.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/interrupt_lib.sh"
echo "\"$SK_BIN\" sync daemon stop --timeout 10" >"$TEST_TMP/a-daemon.cleanup"

rx_start rx
# One background batch of 10, then the next background batch only after 10 minutes:
# every later batch in this test is a `sync now` pass.
# One connection: the faults below script each request in arrival order.
e2e_config "$RX_URL" '{"connections": 1}' '{"max_batch_events": 10, "min_batch_interval_ms": 600000, "shutdown_deadline_ms": 500}'
login
stored() { [ "$(rx_rows)" -eq "$1" ]; }
LOG="$SPEC_KITTY_HOME/sync-daemon.log"
cancels_logged() { [ "$(grep -c 'cancelled by its client' "$LOG" || true)" -ge "$1" ]; }

queued() { [ "$(queue_ready)" -eq "$1" ]; }

# The service's first background batch is answered after 3 s; every later batch hangs.
emit_many 40
rx_fault '{"faults": [{"endpoint": "batch", "delay_ms": 3000}, {"endpoint": "batch", "delay_ms": 30000, "count": 10}]}'
sk sync daemon start; expect_rc 0
wait_for 10 stored 10 || fail "the service's first background batch was not stored"
PID="$(cat "$SPEC_KITTY_HOME/daemon.pid")"

# 1. Ctrl+C on a `sync now` still waiting for the background batch to end: it is
#    dropped before it starts.
bg sync now
bg_waiting
interrupt INT
expect_rc 130 "client waiting behind a background batch, after SIGINT"
expect_err "sync interrupted by SIGINT"
wait_for 2 cancels_logged 1 || fail "the service did not drop the client's request"; pass
wait_for 10 queued 30 || fail "the background batch was not settled: $(queue_ready) queued"; pass

# 2. Ctrl+C on the client of a hanging `sync now`.
bg sync now
wait_for 10 stored 20 || fail "the sync-now batch did not reach the server"
sleep 0.3 # its answer is now awaited
interrupt INT
expect_rc 130 "client of the service after SIGINT"
expect_out "(interrupted)"
expect_err "sync interrupted by SIGINT: the service cancelled this pass"
wait_for 2 cancels_logged 2 || fail "the service did not cancel the client's pass"; pass
[ -e "/proc/$PID" ] || fail "the service stopped"; pass
expect_eq "$(queue_ready)" 30 "events queued after the interrupt"

# 3. A client that disappears without a word (kill -9): its pass is cancelled at once.
bg sync now
bg_waiting
sleep 0.7 # the pass resends the same batch: the receiver stores nothing new, its answer hangs
kill -9 "$BG"; wait "$BG" 2>/dev/null || true
t0=$(intr_now_ms)
wait_for 3 cancels_logged 3 || fail "the service kept a dead client's pass running"; pass
echo "kill -9 client -> pass cancelled in $(($(intr_now_ms) - t0)) ms"
expect_eq "$(queue_ready)" 30 "events queued after the client was killed"

# The service goes on: once the server answers again, a `sync now` through it drains
# everything (its transport was reloaded after the cancels), nothing stored twice.
rx_clear
sk sync now; expect_rc 0 "sync now through the service after the cancels"
expect_out "Synced: 20  Duplicates: 10  Pending: 0  Rejected: 0  Parked: 0  Remaining: 0"
expect_eq "$(rx_rows)" 40 "events the server stored"
expect_eq "$(sqlite3 "$RX_DB" 'SELECT count(*) - count(DISTINCT event_id) FROM events')" 0 "events stored twice"
[ "$(cat "$SPEC_KITTY_HOME/daemon.pid")" = "$PID" ] || fail "the service was restarted"; pass
sk sync daemon stop; expect_rc 0
