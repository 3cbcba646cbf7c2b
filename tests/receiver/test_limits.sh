#!/usr/bin/env bash
# Limits: --max-body-bytes (413, raw and decompressed), --max-events-per-batch
# (400 with an error), --rate-limit-ms (429 with Retry-After), over h1/h2c/TLS.
. "$(dirname "$0")/lib.sh"

start_receiver limits --max-body-bytes 200000 --max-events-per-batch 10
for t in h1 h2c tls; do
  use_transport "$t"
  make_batch 10 >"$T_DIR/ten.json"
  post_batch "$T_DIR/ten.json"
  expect_eq "$t: 10 events pass" 200 "$CODE"
  make_batch 11 >"$T_DIR/eleven.json"
  post_batch "$T_DIR/eleven.json"
  expect_eq "$t: 11 events answer 400" 400 "$CODE"
  expect_eq "$t: the error says why" true "$(jb '.error | test("too many events: 11 > 10")')"

  make_batch 600 >"$T_DIR/large.json" # ~280 kB, over the limit
  req POST /api/v1/events/batch/ -H 'Content-Type: application/json' --data-binary "@$T_DIR/large.json"
  expect_eq "$t: a body over --max-body-bytes answers 413" "413 true" "$CODE $(jb '.error | test("too large")')"

  # A small gzip that inflates past the limit (a zip bomb) is 413 as well.
  { printf '{"events":[],"pad":"'; head -c 3000000 /dev/zero | tr '\0' ' '; printf '"}'; } |
    gzip -c >"$T_DIR/bomb.gz"
  req POST /api/v1/events/batch/ -H 'Content-Type: application/json' -H 'Content-Encoding: gzip' \
    --data-binary "@$T_DIR/bomb.gz"
  expect_eq "$t: gzip inflating past the limit answers 413" 413 "$CODE"
done
expect_eq "nothing from the refused batches was stored" 30 "$(rstat .events_stored)"

start_receiver rate --rate-limit-ms 3000
for t in h1 h2c; do
  use_transport "$t"
  make_batch 2 >"$T_DIR/r1.json"
  make_batch 2 >"$T_DIR/r2.json"
  post_batch "$T_DIR/r1.json"
  c1=$CODE
  post_batch "$T_DIR/r2.json"
  expect_eq "$t: a second batch within --rate-limit-ms answers 429" "200 429" "$c1 $CODE"
  ra=$(header Retry-After)
  [ -n "$ra" ] && [ "$ra" -ge 1 ] && [ "$ra" -le 3 ] && ok "$t: Retry-After $ra s" ||
    fail "$t: Retry-After '$ra' not in 1..3"
  # Let the window pass before the next transport's first batch.
  [ "$t" = h1 ] && sleep 3
done
expect_eq "429s counted" 2 "$(rstat '.http_status["429"]')"

t_end
