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
# Bytes after the gzip stream, a second gzip member, a trailer stating too small a size.
{ cat "$T_DIR/good.gz"; printf 'junk'; } >"$T_DIR/junk-after.gz"
{ cat "$T_DIR/good.gz"; printf '{}' | gzip -c; } >"$T_DIR/two-members.gz"
{ head -c $(($(stat -c %s "$T_DIR/good.gz") - 4)) "$T_DIR/good.gz"; printf '\x10\x00\x00\x00'; } \
  >"$T_DIR/short-size.gz"
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
make_batch 2 | sed 's/"001-demo"/"00\\u00e9-d\\"emo"/' >"$T_DIR/escapes.json"

for t in h1 h2c tls; do
  use_transport "$t"
  send identity "$T_DIR/random.bin"
  expect_400 "random bytes"
  send gzip "$T_DIR/random.bin"
  expect_400 "random bytes labelled gzip"
  send gzip "$T_DIR/truncated.gz"
  expect_400 "truncated gzip"
  expect_eq "$t: the error names gzip" true "$(jb '.error | test("gzip")')"
  for f in junk-after two-members short-size; do
    send gzip "$T_DIR/$f.gz"
    expect_400 "gzip: $f"
  done
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

# The receiver's own JSON scanner against RFC 8259 corner cases. One valid
# event template; each case changes its text. Valid cases: 200 and the event
# stored ("success"). Invalid syntax: 400. Valid JSON Jansson refuses (lone
# surrogate): that event "rejected".
use_transport h1
ev=$(make_batch 1 | jq -c '.events[0]')
id_of() { jq -r '.event_id' <<<"$1"; }
fresh_ev() { jq -c --arg id "$(id_prefix)0000000000" '.event_id = $id' <<<"$ev"; }
json_case() { # expectation body-file what
  send identity "$2"
  case $1 in
    ok) expect_eq "json: $3 is accepted" "200 success" "$CODE $(jb '.results[0].status')" ;;
    bad) expect_400 "json: $3" ;;
    rejected) expect_eq "json: $3 rejects the event" "200 rejected" "$CODE $(jb '.results[0].status')" ;;
  esac
}
c=0
while IFS='|' read -r expect what sed_expr; do
  c=$((c + 1))
  printf '{"events":[%s]}' "$(fresh_ev | sed "$sed_expr")" >"$T_DIR/case$c.json"
  json_case "$expect" "$T_DIR/case$c.json" "$what"
done <<'CASES'
ok|whitespace between tokens|s/^{/{ \t\r\n /; s/,"/ ,\n\t"/g; s/":/" : /g; s/}$/ } /
ok|escaped member names|s/"event_id"/"event\\u005fid"/; s/"payload"/"pay\\u006coad"/
ok|surrogate pair and escapes in a payload value|s#"001-demo"#"d\\ud83d\\ude00\\n\\/\\"g"#
ok|exponents and negatives in the payload|s/"feature_slug"/"n":-0.5e+10,"m":1E-2,"z":-0,"feature_slug"/
ok|nested payload values|s/"feature_slug"/"deps":[{"a":[[],{}]},null,true,false],"feature_slug"/
ok|UTF-8 text|s/"001-demo"/"001-dämo ✓"/
ok|an unknown member at the top|s/^{/{"extra":{"x":[1,2]},/
rejected|a lone surrogate escape|s/"doing"/"\\ud800"/
bad|a leading zero|s/"lamport_clock":1/"lamport_clock":01/
bad|a trailing dot|s/"lamport_clock":1/"lamport_clock":1./
bad|a plus sign|s/"lamport_clock":1/"lamport_clock":+1/
bad|NaN|s/"lamport_clock":1/"lamport_clock":NaN/
bad|a raw tab in a string|s/"planned"/"plan\tned"/
bad|a bad escape|s/"planned"/"plan\\qned"/
bad|a short unicode escape|s/"planned"/"plan\\u12"/
bad|single quotes|s/"planned"/'planned'/
bad|a trailing comma in an object|s/}$/,}/
bad|a missing colon|s/"node_id":/"node_id"/
bad|a truncated literal|s/null/nul/
bad|an unclosed string|s/"planned"/"planned/
CASES
printf '{"events":[%s] , "more": [1, {"a": "b"}] }' "$(fresh_ev)" >"$T_DIR/after.json"
json_case ok "$T_DIR/after.json" "members after events"
printf '{"events":[%s],"events":[]}' "$(fresh_ev)" >"$T_DIR/twice.json"
send identity "$T_DIR/twice.json"
expect_eq "json: a repeated events member replaces the first (as Jansson)" "200 0" \
  "$CODE $(jb '.results | length')"

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
expect_eq "only the valid events were stored" 13 "$(rstat .events_stored)"

t_end
