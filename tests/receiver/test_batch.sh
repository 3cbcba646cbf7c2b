#!/usr/bin/env bash
# The batch endpoint (CONTRACT.md §3) over HTTP/1.1, h2c and HTTP/2 over TLS:
# success, duplicate, invalid event, batch-level 400s, 412, strict mode details.
. "$(dirname "$0")/lib.sh"

start_receiver main
main_db=$RECEIVER_DB

for t in h1 h2c tls; do
  use_transport "$t"
  make_batch 5 >"$T_DIR/b.json"

  post_batch "$T_DIR/b.json"
  expect_eq "$t: a new batch answers 200" 200 "$CODE"
  expect_eq "$t: five results" 5 "$(jb '.results | length')"
  expect_eq "$t: every event success" success "$(jb '[.results[].status] | unique | join(",")')"
  expect_eq "$t: results in event order" "$(jq -r '.events[2].event_id' "$T_DIR/b.json")" \
    "$(jb '.results[2].event_id')"

  post_batch "$T_DIR/b.json"
  expect_eq "$t: the same batch again is all duplicate" duplicate \
    "$(jb '[.results[].status] | unique | join(",")')"

  # One invalid event among valid ones: rejected with a reason, the rest stored.
  make_batch 3 | jq -c '.events[1].payload |= del(.new_status) | .events[2].event_id = "not-a-ulid"' \
    >"$T_DIR/mixed.json"
  post_batch "$T_DIR/mixed.json"
  expect_eq "$t: mixed batch answers 200" 200 "$CODE"
  expect_eq "$t: statuses of the mixed batch" "success,rejected,rejected" \
    "$(jb '[.results[].status] | join(",")')"
  expect_eq "$t: the reason names the missing field" "payload.new_status: missing" \
    "$(jb '.results[1].error_message')"
  expect_eq "$t: the bad id is echoed" "not-a-ulid" "$(jb '.results[2].event_id')"

  # Identity encoding works too.
  make_batch 2 >"$T_DIR/plain.json"
  req POST /api/v1/events/batch/ -H 'Content-Type: application/json' \
    --data-binary "@$T_DIR/plain.json"
  expect_eq "$t: identity body answers 200" "200 success" "$CODE $(jb '.results[0].status')"

  # Batch-level errors: JSON with an "error".
  make_batch 1001 >"$T_DIR/big.json"
  post_batch "$T_DIR/big.json"
  expect_eq "$t: 1001 events answer 400" 400 "$CODE"
  expect_eq "$t: too many events is explained" "true" "$(jb '.error | test("too many events")')"

  req POST /api/v1/events/batch/ -H 'Content-Type: text/plain' --data-binary "@$T_DIR/plain.json"
  expect_eq "$t: wrong content type answers 400 with error" "400 true" "$CODE $(jb '.error != null')"

  req POST /api/v1/events/batch/ -H 'Content-Type: application/json' -H 'Content-Encoding: br' \
    --data-binary "@$T_DIR/plain.json"
  expect_eq "$t: unknown encoding answers 400" 400 "$CODE"

  post_batch "$T_DIR/plain.json" -H 'X-Spec-Kitty-Sync-Protocol: 1.0'
  expect_eq "$t: protocol 1.0 answers 412" 412 "$CODE"
  expect_eq "$t: 412 carries upgrade guidance" true "$(jb '.upgrade_guidance | length > 0')"
  post_batch "$T_DIR/plain.json" -H 'X-Spec-Kitty-Sync-Protocol: 2.0'
  expect_eq "$t: protocol 2.0 is accepted" 200 "$CODE"

  req GET /api/v1/events/batch/
  expect_eq "$t: GET on the batch endpoint answers 405" 405 "$CODE"
  req GET /api/v1/nothing-here/
  expect_eq "$t: unknown path answers 404" 404 "$CODE"
  req POST /api/v1/receiver/faults -d '{"status":500}'
  expect_eq "$t: admin endpoints are off without --faults" 404 "$CODE"
done

# Stats add up (before the race below), per transport: 5 + 1 + 2 stored; 5 + 2 duplicates; 2 rejected; three 400s.
expect_eq "stats: events stored" 24 "$(rstat .events_stored)"
expect_eq "stats: duplicates" 21 "$(rstat .duplicates)"
expect_eq "stats: rejected" 6 "$(rstat .rejected)"
expect_eq "stats: 200 batches" 15 "$(rstat '.batches')"
expect_eq "stats: per-status counts" 9 "$(rstat '.http_status["400"]')"
expect_eq "stats: 412 counted" 3 "$(rstat '.http_status["412"]')"

# The database holds each event once, exactly as sent.
expect_eq "db: one row per stored event" 24 "$(sqlite3 "$main_db" 'SELECT count(*) FROM events')"
first_id=$(jq -r '.events[0].event_id' "$T_DIR/b.json")
expect_eq "db: the stored data is the event as sent" \
  "$(jq -c '.events[0]' "$T_DIR/b.json")" \
  "$(sqlite3 "$main_db" "SELECT data FROM events WHERE event_id = '$first_id'" | jq -c .)"
grep -q "POST /api/v1/events/batch/ 200 " "$RECEIVER_LOG" && ok "log: one line per request" ||
  fail "log: no request lines in $RECEIVER_LOG"

# Concurrency: the same batch from 8 clients at once is stored once; each
# event is success exactly once and duplicate for everyone else.
use_transport h1
make_batch 50 >"$T_DIR/race.json"
gzip -c "$T_DIR/race.json" >"$T_DIR/race.gz"
for i in $(seq 1 8); do
  curl -s -o "$T_DIR/race.$i" -H 'Content-Type: application/json' -H 'Content-Encoding: gzip' \
    --data-binary "@$T_DIR/race.gz" "$RECEIVER_URL/api/v1/events/batch/" &
done
wait
expect_eq "race: 50 successes over 8 answers" 50 \
  "$(cat "$T_DIR"/race.? | jq -s '[.[].results[] | select(.status == "success")] | length')"
expect_eq "race: 350 duplicates over 8 answers" 350 \
  "$(cat "$T_DIR"/race.? | jq -s '[.[].results[] | select(.status == "duplicate")] | length')"
expect_eq "race: stored once" 50 "$(sqlite3 "$main_db" \
  "SELECT count(*) FROM events WHERE event_id LIKE '$(jq -r '.events[0].event_id[0:16]' "$T_DIR/race.json")%'")"

# --strict: an invalid event fails the batch with details; nothing is stored.
start_receiver strict --strict
use_transport h1
make_batch 3 | jq -c '.events[1].lamport_clock = -1' >"$T_DIR/strict.json"
post_batch "$T_DIR/strict.json"
expect_eq "strict: 400" 400 "$CODE"
expect_eq "strict: details name the bad event" "$(jq -r '.events[1].event_id' "$T_DIR/strict.json")" \
  "$(jb '.details[0].event_id')"
expect_eq "strict: details give the reason" true "$(jb '.details[0].error | test("lamport_clock")')"
expect_eq "strict: only the bad event is listed" 1 "$(jb '.details | length')"
expect_eq "strict: nothing stored" 0 "$(rstat .events_stored)"

t_end
