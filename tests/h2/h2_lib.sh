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
