#!/usr/bin/env bash
# Fault injection (--faults) over HTTP/1.1, h2c and TLS: every injected status,
# Retry-After in seconds and as an HTTP-date, 400 with and without details,
# count, delay, a connection dropped mid-response, poison events, reset.
. "$(dirname "$0")/lib.sh"

start_receiver faults --faults
make_batch 4 >"$T_DIR/b.json"

for t in h1 h2c tls; do
  use_transport "$t"

  for status in 500 503 413 401 403; do
    admin POST /api/v1/receiver/faults "{\"status\":$status}"
    post_batch "$T_DIR/b.json"
    expect_eq "$t: injected $status" "$status true" "$CODE $(jb '.error | length > 0')"
  done

  admin POST /api/v1/receiver/faults '{"status":503,"retry_after":7}'
  post_batch "$T_DIR/b.json"
  expect_eq "$t: 503 with Retry-After seconds" "503 7" "$CODE $(header Retry-After)"

  admin POST /api/v1/receiver/faults '{"status":429,"retry_after":3}'
  post_batch "$T_DIR/b.json"
  expect_eq "$t: 429 with Retry-After seconds" "429 3" "$CODE $(header Retry-After)"

  admin POST /api/v1/receiver/faults '{"status":429,"retry_after":60,"retry_after_format":"date"}'
  post_batch "$T_DIR/b.json"
  when=$(date -u -d "$(header Retry-After)" +%s 2>/dev/null || echo 0)
  delta=$((when - $(date -u +%s)))
  [ "$CODE" = 429 ] && [ "$delta" -ge 55 ] && [ "$delta" -le 61 ] &&
    ok "$t: 429 with Retry-After as an HTTP-date" ||
    fail "$t: 429 HTTP-date: code $CODE, Retry-After '$(header Retry-After)'"
  header Retry-After | grep -Eq '^[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9:]{8} GMT$' &&
    ok "$t: IMF-fixdate format" || fail "$t: Retry-After not an IMF-fixdate: $(header Retry-After)"

  admin POST /api/v1/receiver/faults '{"status":400}'
  post_batch "$T_DIR/b.json"
  expect_eq "$t: 400 without details" "400 false" "$CODE $(jb 'has("details")')"

  admin POST /api/v1/receiver/faults '{"status":400,"details":"list"}'
  post_batch "$T_DIR/b.json"
  expect_eq "$t: 400 with a details list of every event" "400 4" "$CODE $(jb '.details | length')"
  expect_eq "$t: details name event_id and error" "$(jq -r '.events[0].event_id' "$T_DIR/b.json") true" \
    "$(jb '"\(.details[0].event_id) \(.details[0].error | length > 0)"')"

  admin POST /api/v1/receiver/faults '{"status":400,"details":"string"}'
  post_batch "$T_DIR/b.json"
  expect_eq "$t: 400 with details as a JSON string" "400 4" \
    "$CODE $(jb '.details | fromjson | length')"

  admin POST /api/v1/receiver/faults '{"status":412,"upgrade_guidance":"install 9.9"}'
  post_batch "$T_DIR/b.json"
  expect_eq "$t: 412 with upgrade guidance" "412 install 9.9" "$CODE $(jb .upgrade_guidance)"

  # count: the next N requests, then back to normal.
  admin POST /api/v1/receiver/faults '{"status":500,"count":2}'
  post_batch "$T_DIR/b.json"
  c1=$CODE
  post_batch "$T_DIR/b.json"
  c2=$CODE
  post_batch "$T_DIR/b.json"
  expect_eq "$t: count 2 then normal" "500 500 200" "$c1 $c2 $CODE"

  # A sequence: rules apply in order.
  admin POST /api/v1/receiver/faults '{"faults":[{"status":503},{"status":429,"retry_after":1}]}'
  post_batch "$T_DIR/b.json"
  c1=$CODE
  post_batch "$T_DIR/b.json"
  expect_eq "$t: a queued sequence" "503 429" "$c1 $CODE"

  # Delay: the answer comes after delay_ms.
  admin POST /api/v1/receiver/faults '{"delay_ms":600}'
  start=$(date +%s%N)
  post_batch "$T_DIR/b.json"
  ms=$((($(date +%s%N) - start) / 1000000))
  [ "$CODE" = 200 ] && [ "$ms" -ge 550 ] && ok "$t: delayed answer (${ms} ms)" ||
    fail "$t: delay: code $CODE after $ms ms"

  # Drop: the batch is stored, the connection dies half-way through the answer.
  fresh=$T_DIR/drop-$t.json
  make_batch 3 >"$fresh"
  before=$(rstat .events_stored)
  admin POST /api/v1/receiver/faults '{"drop":true}'
  post_batch "$fresh"
  [ "$CURL_RC" -ne 0 ] && ok "$t: dropped connection seen by curl (exit $CURL_RC)" ||
    fail "$t: drop: curl exit 0, code $CODE, body $(cat "$BODY")"
  expect_eq "$t: the dropped batch was stored" $((before + 3)) "$(rstat .events_stored)"
  post_batch "$fresh"
  expect_eq "$t: resending after a drop gives duplicates" duplicate \
    "$(jb '[.results[].status] | unique | join(",")')"

  # Poison: any batch holding the id answers 400 without details.
  poison=$T_DIR/poison-$t.json
  make_batch 4 >"$poison"
  admin POST /api/v1/receiver/poison "{\"event_id\":\"$(jq -r '.events[2].event_id' "$poison")\"}"
  post_batch "$poison"
  expect_eq "$t: a poisoned batch answers 400 without details" "400 false" \
    "$CODE $(jb 'has("details")')"
  jq -c '{events: .events[0:2]}' "$poison" >"$poison.half"
  post_batch "$poison.half"
  expect_eq "$t: the half without the poison passes" 200 "$CODE"

  # Faults on other endpoints.
  admin POST /api/v1/receiver/faults '{"endpoint":"health","status":503}'
  req GET /api/v1/sync/health/
  expect_eq "$t: fault on the health endpoint" 503 "$CODE"
  req GET /api/v1/sync/health/
  expect_eq "$t: health back to normal" 200 "$CODE"
done

# Listing and clearing.
admin POST /api/v1/receiver/faults '{"status":500,"count":5}'
admin GET /api/v1/receiver/faults
expect_eq "GET lists queued rules and poison" "500 5 3" \
  "$(jq -r '"\(.faults[0].status) \(.faults[0].remaining) \(.poison | length)"' "$T_DIR/admin.out")"
admin DELETE /api/v1/receiver/faults
admin GET /api/v1/receiver/faults
expect_eq "DELETE clears rules and poison" "0 0" \
  "$(jq -r '"\(.faults | length) \(.poison | length)"' "$T_DIR/admin.out")"
use_transport h1
post_batch "$T_DIR/b.json"
expect_eq "normal service after DELETE" 200 "$CODE"

code=$(curl -s -o "$T_DIR/bad.out" -w '%{http_code}' "$RECEIVER_URL/api/v1/receiver/faults" \
  -d '{"status":42}')
expect_eq "an invalid rule answers 400" 400 "$code"
# 19 rules consumed per transport (poison is not a rule).
expect_eq "stats count injected faults" 57 "$(rstat .faults_injected)"

# A long delay does not hold up shutdown: SIGTERM wakes the waiting answer.
admin POST /api/v1/receiver/faults '{"delay_ms":60000}'
curl -s -o /dev/null -H 'Content-Type: application/json' --data-binary "@$T_DIR/b.json" \
  "$RECEIVER_URL/api/v1/events/batch/" &
curl_pid=$!
sleep 0.3
start=$(date +%s%N)
bash "$SK_SOURCE_DIR/scripts/receiver-down.sh" "$T_DIR/faults"
ms=$((($(date +%s%N) - start) / 1000000))
wait "$curl_pid" 2>/dev/null
[ "$ms" -lt 5000 ] && ok "shutdown during a 60 s delay took ${ms} ms" ||
  fail "shutdown during a delay took ${ms} ms"
grep -q "spec-kitty-receiver stopped" "$RECEIVER_LOG" && ok "clean stop during a delay" ||
  fail "no clean stop line"

t_end
