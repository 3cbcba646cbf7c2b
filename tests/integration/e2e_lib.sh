# shellcheck shell=bash disable=SC2034  # RX_* are for the sourcing test
# Helpers shared by the end-to-end tests (tests/integration/test_e2e_*.sh): the real
# receiver behind receiver-up.sh, with user alice of team acme, and spec-kitty talking
# to it through the http-batch plugin. Source after lib.sh.
: "${SK_SOURCE_DIR:?run through ctest (SK_SOURCE_DIR is the source tree)}"
RX_PW='e2e-password-alice'
RX_BIN="$SK_PREFIX/bin/spec-kitty-receiver"

# rx_start NAME [receiver flags...]: starts a receiver (with --faults --quiet) in
# $TEST_TMP/NAME, registers its cleanup and sets RX_URL, RX_H2C, RX_TLS, RX_CA,
# RX_DB, RX_DIR, RX_PID, RX_LOG. The users file is kept across restarts of the same
# NAME. RX_VERBOSE=1 keeps the per-request log lines (for timing checks).
rx_start() {
  RX_DIR="$TEST_TMP/$1"
  shift
  mkdir -p "$RX_DIR"
  if [ ! -s "$RX_DIR/users.json" ]; then
    printf '%s\n' "$RX_PW" | "$RX_BIN" --users "$RX_DIR/users.json" --add-user alice \
      --team acme >/dev/null || fail "cannot add the receiver user"
  fi
  echo "bash '$SK_SOURCE_DIR/scripts/receiver-down.sh' '$RX_DIR'" >"$TEST_TMP/$(basename "$RX_DIR").cleanup"
  local quiet=(--quiet)
  [ "${RX_VERBOSE:-0}" != 1 ] || quiet=()
  bash "$SK_SOURCE_DIR/scripts/receiver-up.sh" "$RX_DIR" --users "$RX_DIR/users.json" --faults \
    "${quiet[@]}" "$@" >/dev/null || fail "receiver-up.sh $* failed"
  rx_use "$RX_DIR"
}

# rx_use DIR: makes the receiver started in DIR the current one (the RX_* variables).
rx_use() {
  RX_DIR=$1
  # shellcheck disable=SC1091
  . "$RX_DIR/receiver.env"
  RX_URL=$RECEIVER_URL RX_H2C=$RECEIVER_H2C_URL RX_TLS=$RECEIVER_TLS_URL
  RX_CA=$RECEIVER_CA RX_DB=$RECEIVER_DB RX_PID=$RECEIVER_PID RX_LOG=$RECEIVER_LOG
}

# rx_stop: stops the current receiver (and its nghttpx); its database stays.
rx_stop() { bash "$SK_SOURCE_DIR/scripts/receiver-down.sh" "$RX_DIR" >/dev/null 2>&1; }

# rx_stats [JQ]: the receiver's stats, or one jq expression of them.
rx_stats() { curl -sf "$RX_URL/api/v1/receiver/stats" | jq -r "${1:-.}"; }

# rx_admin PATH JSON: POSTs JSON to an admin endpoint; fails the test on an error.
rx_admin() {
  curl -sf -H 'Content-Type: application/json' -d "$2" "$RX_URL/api/v1/receiver/$1" >/dev/null ||
    fail "receiver admin $1 refused $2"
}
rx_fault() { rx_admin faults "$1"; }
rx_clear() { curl -sf -X DELETE "$RX_URL/api/v1/receiver/faults" >/dev/null || fail "DELETE faults"; }

# rx_rows [WHERE]: events stored in the receiver's database.
rx_rows() { sqlite3 "$RX_DB" "SELECT count(*) FROM events ${1:-}"; }

# e2e_config URL [OPTIONS_JSON] [SCHEDULE_JSON]: sync.json for http-batch at URL.
e2e_config() {
  local opts=${2:-} sched=${3:-}
  [ -n "$opts" ] || opts='{}'
  [ -n "$sched" ] || sched='{}'
  config "{\"server_url\": \"$1\", \"transport\": {\"plugin\": \"http-batch\",
    \"options\": $opts}, \"schedule\": $sched}"
  jq -e . "$SPEC_KITTY_HOME/sync.json" >/dev/null || fail "bad sync.json written"
}

login() {
  sk auth login --username alice --password-stdin <<<"$RX_PW"
  expect_rc 0 "auth login"
}

# queue_total: every row of the local queue, whatever its state.
queue_total() { sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT count(*) FROM queue"; }

# now_ms: monotonic enough wall clock in milliseconds.
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# status_json KEY: one jq expression of `sync status --json`.
status_json() {
  sk sync status --json
  jq -r "$1" <<<"$OUT"
}
