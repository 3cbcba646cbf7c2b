#!/usr/bin/env bash
# A drain against a server with Nagle's algorithm on (the receiver's --nagle:
# no TCP_NODELAY towards the client, every response in two writes, as a plain
# Python http.server answers) completes over kept-alive connections: login,
# 3 000 events in three batches, all stored once, the queue empty. (Its speed
# against the same receiver without --nagle is a benchmark: bench/cli.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/e2e_lib.sh"

rx_start rx --nagle
e2e_config "$RX_URL"
login
emit_many 3000
sk sync now --json
expect_rc 0 "sync now against the Nagle server"
expect_eq "$(jq -r .synced <<<"$OUT")" 3000 "synced"
expect_eq "$(jq -r .remaining <<<"$OUT")" 0 "remaining"
expect_eq "$(queue_total)" 0 "queue after the drain"
expect_eq "$(rx_rows)" 3000 "events stored"
expect_eq "$(rx_stats .batch_requests)" 3 "batch requests"
expect_eq "$(rx_stats .duplicates)" 0 "duplicates"
# The relay forwards bytes unchanged: a gzip body larger than one read and a
# JSON answer of the receiver's own survive it.
head -c 300000 /dev/urandom | base64 -w0 | jq -Rc '{events: [{event_id: ., bad: true}]}' | gzip -1 >"$TEST_TMP/big.gz"
code=$(curl -s -o "$TEST_TMP/big.out" -w '%{http_code}' -H 'Content-Type: application/json' \
  -H 'Content-Encoding: gzip' -H "Authorization: Bearer $(jq -r .access_token "$SPEC_KITTY_HOME/credentials.json")" \
  --data-binary @"$TEST_TMP/big.gz" "$RX_URL/api/v1/events/batch/")
expect_eq "$(jq -r '.results[0].status // .error' "$TEST_TMP/big.out" | head -c 8)" "rejected" "answer to a 400 kB event (HTTP $code)"
