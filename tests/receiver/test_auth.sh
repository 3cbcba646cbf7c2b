#!/usr/bin/env bash
# Token, refresh (rotation, single use), expiry and 401s (CONTRACT.md §4),
# over HTTP/1.1, h2c and TLS. Tokens are stored hashed and never logged.
. "$(dirname "$0")/lib.sh"

bin=$(receiver_bin)
users=$T_DIR/users.json
echo 'correct horse' | "$bin" --users "$users" --add-user alice --team acme >/dev/null ||
  fail "--add-user alice"
start_receiver auth --users "$users" --faults
make_batch 2 >"$T_DIR/b.json"

login() { # user password
  req POST /api/v1/token/ -H 'Content-Type: application/json' \
    -d "{\"username\":\"$1\",\"password\":\"$2\"}"
}

for t in h1 h2c tls; do
  use_transport "$t"
  login alice 'correct horse'
  expect_eq "$t: login answers 200" 200 "$CODE"
  access=$(jb .access) refresh=$(jb .refresh)
  expect_eq "$t: login gives lifetimes and team" "900 604800 acme" \
    "$(jb '"\(.expires_in) \(.refresh_expires_in) \(.team_slug)"')"
  [ ${#access} -ge 32 ] && [ "$access" != "$refresh" ] && ok "$t: opaque distinct tokens" ||
    fail "$t: tokens look wrong"

  login alice wrong
  expect_eq "$t: wrong password answers 401" 401 "$CODE"
  login mallory 'correct horse'
  expect_eq "$t: unknown user answers 401" 401 "$CODE"
  req POST /api/v1/token/ -H 'Content-Type: application/json' -d '{"username":"alice"}'
  expect_eq "$t: missing password answers 400" 400 "$CODE"

  post_batch "$T_DIR/b.json"
  expect_eq "$t: batch without a token answers 401" 401 "$CODE"
  post_batch "$T_DIR/b.json" -H "Authorization: Bearer ${access%?}x"
  expect_eq "$t: batch with an unknown token answers 401" 401 "$CODE"
  post_batch "$T_DIR/b.json" -H "Authorization: Bearer $access"
  expect_eq "$t: batch with the access token answers 200" 200 "$CODE"
  req GET /api/v1/sync/health/
  expect_eq "$t: health without a token answers 401" 401 "$CODE"
  req GET /api/v1/sync/health/ -H "Authorization: Bearer $access"
  expect_eq "$t: health with the token answers 200" "200 ok" "$CODE $(jb .status)"

  # Refresh rotates: a new pair; the used refresh token is refused afterwards.
  req POST /api/v1/token/refresh/ -H 'Content-Type: application/json' -d "{\"refresh\":\"$refresh\"}"
  expect_eq "$t: refresh answers 200" 200 "$CODE"
  access2=$(jb .access) refresh2=$(jb .refresh)
  [ "$refresh2" != "$refresh" ] && [ "$access2" != "$access" ] && ok "$t: refresh rotates both tokens" ||
    fail "$t: refresh did not rotate"
  req POST /api/v1/token/refresh/ -H 'Content-Type: application/json' -d "{\"refresh\":\"$refresh\"}"
  expect_eq "$t: a used refresh token answers 401" 401 "$CODE"
  post_batch "$T_DIR/b.json" -H "Authorization: Bearer $access2"
  expect_eq "$t: the new access token works" 200 "$CODE"
  req POST /api/v1/token/refresh/ -H 'Content-Type: application/json' -d '{"refresh":"nope"}'
  expect_eq "$t: an unknown refresh token answers 401" 401 "$CODE"

  # Expired access token: 401; refresh still works; then refresh expires too.
  admin POST /api/v1/receiver/tokens/expire '{"kind":"access"}'
  post_batch "$T_DIR/b.json" -H "Authorization: Bearer $access2"
  expect_eq "$t: an expired access token answers 401" 401 "$CODE"
  req POST /api/v1/token/refresh/ -H 'Content-Type: application/json' -d "{\"refresh\":\"$refresh2\"}"
  expect_eq "$t: refresh after access expiry answers 200" 200 "$CODE"
  refresh3=$(jb .refresh)
  admin POST /api/v1/receiver/tokens/expire '{"kind":"refresh"}'
  req POST /api/v1/token/refresh/ -H 'Content-Type: application/json' -d "{\"refresh\":\"$refresh3\"}"
  expect_eq "$t: an expired refresh token answers 401" 401 "$CODE"
done

# Real expiry by the clock: --access-ttl 2 (the fresh token must still work
# after a login and a post on a loaded machine).
start_receiver ttl --users "$users" --access-ttl 2 --refresh-ttl 3600
use_transport h1
login alice 'correct horse'
access=$(jb .access)
expect_eq "ttl: lifetime announced" 2 "$(jb .access_lifetime)"
post_batch "$T_DIR/b.json" -H "Authorization: Bearer $access"
expect_eq "ttl: fresh token works" 200 "$CODE"
sleep 2.2
post_batch "$T_DIR/b.json" -H "Authorization: Bearer $access"
expect_eq "ttl: token older than --access-ttl answers 401" 401 "$CODE"

# Secrets: the users file is 0600 without the password; tokens are neither in
# the database nor in the log.
expect_eq "users file mode" 600 "$(stat -c %a "$users")"
grep -q 'correct horse' "$users" && fail "users file holds the password" || ok "users file has no password"
expect_eq "users file: PBKDF2 entry" "pbkdf2-sha256 acme" \
  "$(jq -r '.users.alice | "\(.algorithm) \(.team_slug)"' "$users")"
for d in "${RX_DIRS[@]}"; do
  if grep -a -q -e "$access" -e "$refresh" "$d"/receiver.db* "$d/receiver.log" 2>/dev/null; then
    fail "a token appears in plain text under $d"
  fi
done
ok "tokens are not stored or logged in plain text"

# Sessions survive a restart (token hashes live in the database).
use_transport h1
login alice 'correct horse'
refresh=$(jb .refresh)
bash "$SK_SOURCE_DIR/scripts/receiver-down.sh" "$T_DIR/ttl" >/dev/null
start_receiver ttl2 --users "$users" --db "$T_DIR/ttl/receiver.db"
use_transport h1
req POST /api/v1/token/refresh/ -H 'Content-Type: application/json' -d "{\"refresh\":\"$refresh\"}"
expect_eq "restart: the refresh token still works" 200 "$CODE"

t_end
