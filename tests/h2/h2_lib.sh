# shellcheck shell=bash
# Helpers of the h2-stream tests (tests/h2/): the e2e helpers with spec-kitty
# talking to the receiver's nghttpx front through the h2-stream plugin. Source
# after lib.sh.
. "$(dirname "${BASH_SOURCE[0]}")/../integration/e2e_lib.sh"

# h2_config URL [OPTIONS_JSON] [SCHEDULE_JSON]: sync.json for h2-stream at URL
# (the test CA trusted for https URLs).
h2_config() {
  local opts=${2:-} sched=${3:-}
  [ -n "$opts" ] || opts='{}'
  [ -n "$sched" ] || sched='{}'
  case $1 in https://*) opts=$(jq -c --arg ca "$RX_CA" '{ca_file: $ca} + .' <<<"$opts") ;; esac
  config "{\"server_url\": \"$1\", \"transport\": {\"plugin\": \"h2-stream\",
    \"options\": $opts}, \"schedule\": $sched}"
  jq -e . "$SPEC_KITTY_HOME/sync.json" >/dev/null || fail "bad sync.json written"
}

# stored_once N: the receiver holds exactly N events, none twice, and the queue is empty.
stored_once() {
  expect_eq "$(rx_rows)" "$1" "events stored"
  expect_eq "$(sqlite3 "$RX_DB" "SELECT count(*) - count(DISTINCT event_id) FROM events")" 0 \
    "events stored twice"
  expect_eq "$(queue_total)" 0 "queue after the drain"
}

# front_kill / front_restart: the nghttpx front end of the current receiver goes
# away, then comes back on the same ports (the receiver behind it keeps running).
front_kill() {
  kill -TERM "$NGHTTPX_PID" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$NGHTTPX_PID" 2>/dev/null || return 0; sleep 0.05; done
  fail "nghttpx $NGHTTPX_PID did not stop"
}
front_restart() {
  bash "$SK_SOURCE_DIR/scripts/receiver-up.sh" --front "$RX_DIR" >/dev/null ||
    fail "receiver-up.sh --front failed"
  rx_use "$RX_DIR"
  # shellcheck disable=SC1091
  . "$RX_DIR/receiver.env"
}

# backend_kill / backend_restart: the receiver behind nghttpx stops, then starts
# again on its address with the same database and users (nghttpx keeps running).
backend_kill() {
  kill -TERM "$RX_PID"
  for _ in $(seq 1 100); do kill -0 "$RX_PID" 2>/dev/null || return 0; sleep 0.05; done
  fail "receiver $RX_PID did not stop"
}
backend_restart() {
  "$RX_BIN" --listen "127.0.0.1:${RX_URL##*:}" --db "$RX_DB" --users "$RX_DIR/users.json" \
    --faults --quiet >>"$RX_LOG" 2>&1 &
  sed -i "s/^RECEIVER_PID=.*/RECEIVER_PID=$!/" "$RX_DIR/receiver.env"
  rx_use "$RX_DIR"
  # nghttpx retries a failed backend after its own backoff: wait until it passes again.
  local code
  for _ in $(seq 1 300); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --http2-prior-knowledge "$RX_H2C/api/v1/sync/health/")
    case $code in 2?? | 401) return 0 ;; esac
    sleep 0.05
  done
  fail "the receiver did not come back behind nghttpx (last answer $code)"
}

# free_tcp_port: a loopback port nobody listens on now.
free_tcp_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
