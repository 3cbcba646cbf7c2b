#!/usr/bin/env bash
# h2-stream, the heavy case: 10 000 events through `sync now` over TLS to nghttpx and
# the receiver, every one stored once, in batches of 1000 (one stream each).
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/h2_lib.sh"

rx_start rx
h2_config "$RX_TLS"
login
emit_many 10000
sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT event_id FROM queue ORDER BY event_id" >"$TEST_TMP/sent.ids"
t0=$(now_ms)
sk sync now --json
expect_rc 0 "sync now of 10 000 over h2"
echo "10 000 events over h2-stream in $(($(now_ms) - t0)) ms" >&2
expect_eq "$(jq -r .synced <<<"$OUT")" 10000 "synced"
stored_once 10000
expect_eq "$(rx_stats .batch_requests)" 10 "ten batches of 1000"
sqlite3 "$RX_DB" "SELECT event_id FROM events ORDER BY event_id" >"$TEST_TMP/stored.ids"
cmp -s "$TEST_TMP/stored.ids" "$TEST_TMP/sent.ids" || fail "the receiver stored other events than were queued"
pass
