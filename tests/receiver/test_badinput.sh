#!/usr/bin/env bash
# Bad input never crashes or leaks the receiver: random bytes, truncated or
# fake gzip, broken and deeply nested JSON, bad UTF-8, a 100 MB streamed body.
# Each answer is an HTTP error with a JSON "error" (or a per-event rejection).
. "$(dirname "$0")/lib.sh"

start_receiver bad
pid=$RECEIVER_PID

send() { # encoding file
  req POST /api/v1/events/batch/ -H 'Content-Type: application/json' \
    -H "Content-Encoding: $1" --data-binary "@$2"
}
# The statuses of the last answer; duplicate counts as success (files are
# sent once per transport).
statuses() {
  jb '[.results[].status | sub("duplicate"; "success")] | join(",")'
}
expect_400() { # what
  expect_eq "$TRANSPORT: $1 answers 400 with a JSON error" "400 true" \
    "$CODE $(jb '.error | type == "string"')"
}

head -c 65536 /dev/urandom >"$T_DIR/random.bin"
make_batch 50 | gzip -c >"$T_DIR/good.gz"
head -c $(($(stat -c %s "$T_DIR/good.gz") / 2)) "$T_DIR/good.gz" >"$T_DIR/truncated.gz"
printf '' >"$T_DIR/empty"
printf '{}' >"$T_DIR/noevents.json"
printf '{"events": 5}' >"$T_DIR/notarray.json"
printf '{"events": []} trailing' >"$T_DIR/trailing.json"
printf '{"events": [{"a": 1,}]}' >"$T_DIR/comma.json"
printf '{"events": [{"event_id": "\xff\xfe"}]}' >"$T_DIR/utf8.json"
{ printf '{"events":['; head -c 200000 /dev/zero | tr '\0' '['; } >"$T_DIR/nested.json"
{ head -c 1000000 /dev/zero | tr '\0' '['; } >"$T_DIR/nested-top.json"
{ printf '{"events":['; head -c 200 /dev/zero | tr '\0' '['; head -c 200 /dev/zero | tr '\0' ']'; printf ']}'; } \
  >"$T_DIR/nested-closed.json"
make_batch 3 | jq -c '.events[0] = 1 | .events[1] = "x"' >"$T_DIR/scalars.json"
make_batch 2 | sed 's/"lamport_clock":1,/"lamport_clock":100000000000000000000000,/' >"$T_DIR/bignum.json"
make_batch 2 | sed 's/"WP01","previous/"WP\\u0000","previous/' >"$T_DIR/nul.json"
make_batch 2 | sed 's/"planned"/"pl\\u00e9nn\\"ed"/' >"$T_DIR/escapes.json"

for t in h1 h2c tls; do
  use_transport "$t"
  send identity "$T_DIR/random.bin"
  expect_400 "random bytes"
  send gzip "$T_DIR/random.bin"
  expect_400 "random bytes labelled gzip"
  send gzip "$T_DIR/truncated.gz"
  expect_400 "truncated gzip"
  expect_eq "$t: the error names gzip" true "$(jb '.error | test("gzip")')"
  send identity "$T_DIR/empty"
  expect_400 "an empty body"
  for f in noevents notarray trailing comma utf8 nested-top nested; do
    send identity "$T_DIR/$f.json"
    expect_400 "$f"
  done
  expect_eq "$t: deep nesting is refused by depth" true "$(jb '.error | test("nesting")')"
  send identity "$T_DIR/nested-closed.json"
  expect_eq "$t: 200-deep closed nesting is one rejected event" "200 rejected" \
    "$CODE $(jb '.results[0].status')"
  send identity "$T_DIR/scalars.json"
  expect_eq "$t: non-object events are rejected one by one" "rejected,rejected,success" \
    "$(statuses)"
  send identity "$T_DIR/bignum.json"
  expect_eq "$t: an out-of-range integer rejects that event only" "rejected,success" \
    "$(statuses)"
  send identity "$T_DIR/nul.json"
  expect_eq "$t: a \\u0000 string rejects that event only" "rejected,success" \
    "$(statuses)"
  send identity "$T_DIR/escapes.json"
  expect_eq "$t: escaped strings are fine" "success,success" "$(statuses)"
done

# 100 MB, streamed (chunked, no Content-Length): counted, not kept; 413.
use_transport h1
code=$(head -c 100000000 /dev/zero | curl -s -o "$T_DIR/big.out" -w '%{http_code}' -X POST \
  -H 'Content-Type: application/json' -T - "$RECEIVER_URL/api/v1/events/batch/")
expect_eq "100 MB chunked upload answers 413" 413 "$code"
# The same with a declared Content-Length.
code=$(head -c 100000000 /dev/zero | curl -s -o "$T_DIR/big.out" -w '%{http_code}' \
  -H 'Content-Type: application/json' --data-binary @- "$RECEIVER_URL/api/v1/events/batch/")
expect_eq "100 MB with Content-Length answers 413" 413 "$code"
use_transport h2c
code=$(head -c 100000000 /dev/zero | curl -s --http2-prior-knowledge -o "$T_DIR/big.out" \
  -w '%{http_code}' -X POST -H 'Content-Type: application/json' -T - \
  "$RECEIVER_H2C_URL/api/v1/events/batch/")
expect_eq "100 MB over h2c answers 413" 413 "$code"

# Still alive, still sane, and it never held the 100 MB.
use_transport h1
req GET /api/v1/sync/health/
expect_eq "the receiver still answers" 200 "$CODE"
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
[ "${hwm:-999999}" -lt 150000 ] && ok "peak memory ${hwm} kB" || fail "peak memory ${hwm} kB >= 150 MB"
expect_eq "only the valid events were stored" 5 "$(rstat .events_stored)"

t_end
