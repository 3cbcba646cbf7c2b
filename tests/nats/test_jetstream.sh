#!/usr/bin/env bash
# One nats-server -js on loopback: 10 000 events through `sync now` and 10 000 through
# the service end in the stream once each; a resend inside the duplicate window is
# dropped by the server, outside it by the consumer; with the server down the events
# stay queued (transient) and arrive once it is back, the service reconnecting by itself.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/nats_lib.sh"
echo "\"$SK_BIN\" sync daemon stop --timeout 10" >"$TEST_TMP/a-daemon.cleanup"
nats_start n1 -1 || fail "nats-server did not start"
port=$NATS_PORT
URL="nats://127.0.0.1:$port"
OPTS="{\"servers\": [\"$URL\"], \"create_stream\": true}"
SCHED='{"interval_s": 1, "min_batch_interval_ms": 0, "backoff_min_ms": 100, "backoff_max_ms": 500}'
nj_config "$OPTS" "$SCHED"

# 1. 10 000 events through `sync now`: each stored once, the same ids.
emit_many 10000
queued_ids "$TEST_TMP/ids1"
sqlite3 "$SPEC_KITTY_HOME/queue.db" ".mode insert queue" "SELECT * FROM queue LIMIT 500" >"$TEST_TMP/resend.sql"
sk sync now; expect_rc 0; expect_out "Synced: 10000  Duplicates: 0"; expect_out "Remaining: 0"
nj_consume "$TEST_TMP/c.db" "$URL" SPEC_KITTY_EVENTS
expect_out "received 10000 messages: 10000 events stored, 0 duplicates dropped"
diff <(stored_ids "$TEST_TMP/c.db") "$TEST_TMP/ids1" >/dev/null || fail "stored ids differ from the queued ones"; pass

# 2. Resent inside the duplicate window (120 s): JetStream drops them, the host hears Duplicate.
sqlite3 "$SPEC_KITTY_HOME/queue.db" <"$TEST_TMP/resend.sql"
expect_eq "$(queue_ready)" 500 "re-queued events"
sk sync now; expect_rc 0; expect_out "Synced: 0  Duplicates: 500"
nj_consume "$TEST_TMP/c.db" "$URL" SPEC_KITTY_EVENTS
expect_out "received 0 messages"

# 3. 10 000 events through the service.
sk sync daemon start; expect_rc 0
emit_many 10000
wait_for 60 queue_is 0 || fail "the service left $(queue_ready) events queued"; pass
nj_consume "$TEST_TMP/c.db" "$URL" SPEC_KITTY_EVENTS
expect_out "received 10000 messages: 10000 events stored, 0 duplicates dropped"
expect_eq "$(sqlite3 "$TEST_TMP/c.db" "SELECT count(*) FROM events")" 20000 "events stored in all"

# 4. Server down: the service keeps the events (transient), and delivers them once the
#    server is back on the same port with the same store, reconnecting by itself.
nats_stop n1
emit_many 300
sleep 1.5
expect_eq "$(queue_ready)" 300 "events queued while the server is down"
expect_eq "$(queue_parked)" 0 "parked while the server is down"
nats_start n1 "$port" || fail "port $port was taken while the server was down"
wait_for 30 queue_is 0 || fail "not delivered after the server came back: $(queue_ready) queued"; pass
sk sync daemon stop; expect_rc 0
nj_consume "$TEST_TMP/c.db" "$URL" SPEC_KITTY_EVENTS
expect_out "received 300 messages: 300 events stored, 0 duplicates dropped"

# 5. `sync now` with the server down: exit 1, one line naming why, nothing lost.
nats_stop n1
emit_many 200
sk sync now; expect_rc 1 "sync now with the server down"; expect_err "cannot connect to NATS"
expect_eq "$(queue_ready)" 200 "events kept"
nats_start n1 "$port" || fail "port $port was taken while the server was down"
sk sync now; expect_rc 0; expect_out "Synced: 200  Duplicates: 0"

# 6. A stream with a 1 s duplicate window: a resend after it is stored again, and the
#    consumer (dedup by event_id) drops it. (Inside a window: step 2.)
nj_config "{\"servers\": [\"$URL\"], \"create_stream\": true, \"stream\": \"SHORT\",
  \"subject\": \"spec-kitty.short.{team_slug}\", \"duplicate_window_s\": 1}"
emit_many 200
sqlite3 "$SPEC_KITTY_HOME/queue.db" ".mode insert queue" "SELECT * FROM queue" >"$TEST_TMP/resend2.sql"
sk sync now; expect_rc 0; expect_out "Synced: 200  Duplicates: 0"
sleep 3 # JetStream forgets ids between one and two windows later
sqlite3 "$SPEC_KITTY_HOME/queue.db" <"$TEST_TMP/resend2.sql"
sk sync now; expect_rc 0; expect_out "Synced: 200  Duplicates: 0" # outside: stored again
nj_consume "$TEST_TMP/short.db" "$URL" SHORT short spec-kitty.short.*
expect_out "received 400 messages: 200 events stored, 200 duplicates dropped"

# 7. Refusals: a message larger than the stream allows is parked at once (it never
#    fits); a stream full with discard-new rejects (retried, a retry counted), and the
#    stored part is delivered.
small=$(js_api "$port" '$JS.API.STREAM.CREATE.SMALL' \
  '{"name":"SMALL","subjects":["spec-kitty.small.*"],"max_msg_size":300,"storage":"memory"}')
jq -e '.config.max_msg_size == 300' <<<"$small" >/dev/null || fail "stream SMALL not created: $small"; pass
full=$(js_api "$port" '$JS.API.STREAM.CREATE.FULL' \
  '{"name":"FULL","subjects":["spec-kitty.full.*"],"max_msgs":2,"discard":"new","storage":"memory"}')
jq -e '.config.max_msgs == 2' <<<"$full" >/dev/null || fail "stream FULL not created: $full"; pass
rm -f "$SPEC_KITTY_HOME"/queue.db*
emit_many 3
nj_config "{\"servers\": [\"$URL\"], \"stream\": \"SMALL\", \"subject\": \"spec-kitty.small.{team_slug}\"}"
sk sync now; expect_rc 0; expect_out "Parked: 3"
sk sync parked; expect_out "JetStream error 10054: message size exceeds maximum allowed"
sk sync retry --all; expect_rc 0
nj_config "{\"servers\": [\"$URL\"], \"stream\": \"FULL\", \"subject\": \"spec-kitty.full.{team_slug}\"}"
sk sync now; expect_out "Synced: 2  Duplicates: 0  Pending: 0  Rejected: 1  Parked: 0  Remaining: 1"
expect_eq "$(sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT retry_count FROM queue")" 1 "retries of the refused event"
