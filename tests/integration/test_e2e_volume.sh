#!/usr/bin/env bash
# End to end, installed spec-kitty → http-batch → the real receiver (issue 5, 1–4):
# 10 000 events delivered, the same events again counted duplicate, an event the
# server rejects retried then parked with its reason, and one poison event among
# 1 000 isolated by bisection. After each: the receiver's stats and database and the
# local queue agree — nothing lost, nothing counted twice.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/e2e_lib.sh"

rx_start rx
e2e_config "$RX_URL" '{}' '{"max_retries": 1}'
login

# ---- 1. 10 000 events --------------------------------------------------------
emit_many 10000
expect_eq "$(queue_ready)" 10000 "queued"
# Keep the full envelopes as queued, to send them again in part 2.
sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT data FROM queue ORDER BY id" >"$TEST_TMP/sent.ndjson"
sk sync status; expect_out "Last sync    Never"
t0=$(now_ms)
sk sync now --json
expect_rc 0 "sync now of 10 000"
echo "10 000 events delivered in $(($(now_ms) - t0)) ms" >&2
expect_eq "$(jq -r .synced <<<"$OUT")" 10000 "synced"
expect_eq "$(jq -r .duplicates <<<"$OUT")" 0 "duplicates"
expect_eq "$(jq -r .remaining <<<"$OUT")" 0 "remaining"
expect_eq "$(queue_total)" 0 "queue after the drain"
expect_eq "$(rx_stats .events_stored)" 10000 "receiver events_stored"
expect_eq "$(rx_stats .success)" 10000 "receiver success"
expect_eq "$(rx_stats .duplicates)" 0 "receiver duplicates"
expect_eq "$(rx_stats .rejected)" 0 "receiver rejected"
# Batches of at most 1000: exactly ten requests, all 200.
expect_eq "$(rx_stats .batch_requests)" 10 "batch requests"
expect_eq "$(rx_stats '.http_status | del(.["200"], .["401"]) | length')" 0 \
  "statuses other than 200 (and 401 to the unauthenticated readiness probes)"
# The stored events are exactly the ones queued.
sqlite3 "$RX_DB" "SELECT event_id FROM events ORDER BY event_id" >"$TEST_TMP/stored.ids"
jq -r .event_id "$TEST_TMP/sent.ndjson" | sort >"$TEST_TMP/sent.ids"
cmp -s "$TEST_TMP/stored.ids" "$TEST_TMP/sent.ids" || fail "the receiver stored other events than were queued"; pass
sk sync status
expect_rc 0 "status"; expect_out "Connection   Connected"; expect_out "0 events waiting, 0 parked"
grep -q '^Last sync    20[0-9][0-9]-' <<<"$OUT" || fail "no last sync time: $OUT"; pass
expect_eq "$(status_json .connection)" Connected
last=$(date -d "$(status_json .last_sync)" +%s)
expect_ge "$last" $(($(date +%s) - 120)) "last sync is recent"

# ---- 2. duplicates: the same envelopes again, mixed with new ones -------------
head -n 2500 "$TEST_TMP/sent.ndjson" >"$TEST_TMP/again.ndjson"
sk sync emit --file "$TEST_TMP/again.ndjson"; expect_rc 0 "re-queue 2 500 envelopes"
emit_many 300
expect_eq "$(queue_ready)" 2800 "queued again"
sk sync now
expect_rc 0 "sync now with duplicates"
expect_out "Synced: 300  Duplicates: 2500  Pending: 0  Rejected: 0  Parked: 0  Remaining: 0"
expect_eq "$(queue_total)" 0 "duplicates left the queue"
expect_eq "$(rx_stats .duplicates)" 2500 "receiver duplicates"
expect_eq "$(rx_stats .success)" 10300 "receiver success"
expect_eq "$(rx_stats .events_stored)" 10300 "stored once each"
expect_eq "$(sqlite3 "$RX_DB" "SELECT count(*) - count(DISTINCT event_id) FROM events")" 0 "stored twice"

# ---- 3. an event the server rejects: retried, then parked; the rest delivered --
# `sync emit` validates like the server, so the invalid event comes the way the classic
# CLI queues (CONTRACT.md §2): the four-column insert, straight into queue.db.
BAD_ID=01E2E0000000000000000BAD01
bad=$(head -n 1 "$TEST_TMP/sent.ndjson" | jq -c --arg id "$BAD_ID" '.event_id = $id | del(.payload.wp_id)')
[[ $bad != *"'"* ]] || fail "the envelope would need SQL quoting"
sqlite3 "$SPEC_KITTY_HOME/queue.db" "INSERT INTO queue (event_id, event_type, data, timestamp)
  VALUES ('$BAD_ID', 'WPStatusChanged', '$bad', strftime('%s', 'now'))" ||
  fail "classic insert into queue.db"
emit_many 200
rej0=$(rx_stats .rejected)
sk sync now --report "$TEST_TMP/report.json"
expect_rc 1 "a rejected event remains"
expect_out "Synced: 200  Duplicates: 0  Pending: 0  Rejected: 1  Parked: 0  Remaining: 1"
expect_out "rejected $BAD_ID: payload.wp_id: missing"
expect_eq "$(jq -r '.[0].event_id' "$TEST_TMP/report.json")" "$BAD_ID" "report"
expect_eq "$(queue_ready)" 1 "the rejected event is kept"
expect_eq "$(sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT retry_count FROM queue WHERE event_id='$BAD_ID'")" 1 "retry_count"
# Retried on the next pass; past max_retries (1) it is parked, not lost.
sk sync now
expect_out "Parked: 1"
expect_out "parked $BAD_ID: payload.wp_id: missing"
expect_eq "$(queue_ready)" 0 "nothing ready"; expect_eq "$(queue_parked)" 1 "parked"
expect_eq "$(($(rx_stats .rejected) - rej0))" 2 "the server saw it twice"
sk sync parked
expect_rc 0 "sync parked"; expect_out "1 parked event"; expect_out "$BAD_ID"
expect_out "payload.wp_id: missing"
sk sync parked --json
expect_eq "$(jq -r '.[0].event_id' <<<"$OUT")" "$BAD_ID"
jq -r '.[0].reason' <<<"$OUT" | grep -qF "payload.wp_id: missing" ||
  fail "parked --json reason: $OUT"; pass
expect_eq "$(rx_rows "WHERE event_id='$BAD_ID'")" 0 "the rejected event is not stored"
expect_eq "$(rx_stats .events_stored)" 10500 "stored after part 3"
sk sync status; expect_out "0 events waiting, 1 parked"

# ---- 4. one poison event among 1 000, isolated by bisection --------------------
rm -f "$TEST_TMP/report.json"
emit_many 1000
mapfile -t IDS < <(sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT event_id FROM queue WHERE coalesce(state,0)=0 ORDER BY timestamp, id")
expect_eq "${#IDS[@]}" 1000 "ready before the poison pass"
POISON=${IDS[637]}
rx_admin poison "{\"event_id\": \"$POISON\"}"
req0=$(rx_stats .batch_requests)
bad0=$(rx_stats '.http_status["400"] // 0')
t0=$(now_ms)
sk sync now
expect_rc 1 "the poison event remains"
echo "poison isolated in $(($(now_ms) - t0)) ms" >&2
expect_out "Synced: 999  Duplicates: 0  Pending: 0  Rejected: 1"
expect_out "rejected $POISON"
expect_eq "$(queue_ready)" 1 "only the poison event is left"
expect_eq "$(sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT event_id FROM queue WHERE coalesce(state,0)=0")" "$POISON"
expect_eq "$(rx_rows "WHERE event_id='$POISON'")" 0 "poison not stored"
expect_eq "$(rx_stats .events_stored)" 11499 "the 999 others stored"
# Bisection: one 400 per halving level (1000 → 1: about ten), not one per event.
bad=$(($(rx_stats '.http_status["400"] // 0') - bad0))
reqs=$(($(rx_stats .batch_requests) - req0))
expect_ge "$bad" 9 "400 answers while bisecting"; expect_ge 12 "$bad" "400 answers while bisecting"
expect_ge 25 "$reqs" "batch requests while bisecting"
# Once the server stops refusing it, the event goes through: nothing was lost.
rx_clear
sk sync now; expect_rc 0 "after the poison mark is cleared"; expect_out "Synced: 1 "
expect_eq "$(queue_ready)" 0
expect_eq "$(rx_stats .events_stored)" 11500 "all stored"
expect_eq "$(rx_stats .duplicates)" 2500 "no duplicate beyond part 2"
expect_eq "$(sqlite3 "$RX_DB" "SELECT count(*) - count(DISTINCT event_id) FROM events")" 0 "stored twice"
