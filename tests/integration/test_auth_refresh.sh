#!/usr/bin/env bash
# Token refresh against the real reference receiver: rotation (the old refresh
# token is refused afterwards), a refused refresh ending the session, concurrent
# refreshes spending each refresh token once, and an expired refresh token.
. "$(dirname "$0")/lib.sh"

PW='refresh-test-password'
CREDS="$SPEC_KITTY_HOME/credentials.json"

# receiver NAME FLAGS...: starts a receiver with user alice (team acme); sets $URL.
receiver() {
  local dir="$TEST_TMP/$1"
  shift
  mkdir -p "$dir"
  printf '%s\n' "$PW" | "$SK_PREFIX/bin/spec-kitty-receiver" --users "$dir/users.json" \
    --add-user alice --team acme >/dev/null || fail "cannot add the receiver user"
  echo "bash '$SK_SOURCE_DIR/scripts/receiver-down.sh' '$dir'" >"$TEST_TMP/$(basename "$dir").cleanup"
  bash "$SK_SOURCE_DIR/scripts/receiver-up.sh" "$dir" --users "$dir/users.json" --quiet "$@" \
    >/dev/null || fail "receiver-up.sh failed"
  URL="$(. "$dir/receiver.env" && echo "$RECEIVER_URL")"
  config "{\"server_url\": \"$URL\"}"
}

login() {
  sk auth login --username alice --password-stdin <<<"$PW"
  expect_rc 0 "login"
}

# POSTs a refresh token straight to the server; prints the HTTP status.
server_refresh() {
  jq -cn --arg r "$1" '{refresh: $r}' |
    curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
      --data-binary @- "$URL/api/v1/token/refresh/"
}

receiver main --faults
MAIN_URL="$URL"
login
OLD_ACCESS="$(jq -r .access_token "$CREDS")"
OLD_REFRESH="$(jq -r .refresh_token "$CREDS")"

# Rotation: new tokens stored (owner-only), and the server refuses the old refresh token.
sk auth refresh
expect_rc 0 "refresh"; expect_out "Session renewed"
NEW_ACCESS="$(jq -r .access_token "$CREDS")"
NEW_REFRESH="$(jq -r .refresh_token "$CREDS")"
[ "$NEW_ACCESS" != "$OLD_ACCESS" ] || fail "access token not renewed"; pass
[ "$NEW_REFRESH" != "$OLD_REFRESH" ] || fail "refresh token not rotated"; pass
expect_eq "$(stat -c %a "$CREDS")" 600 "credentials mode after refresh"
expect_eq "$(server_refresh "$OLD_REFRESH")" 401 "old refresh token at the server"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $NEW_ACCESS" \
  "$URL/api/v1/sync/health/")
expect_eq "$code" 200 "health with the renewed access token"
for secret in "$OLD_ACCESS" "$OLD_REFRESH" "$NEW_ACCESS" "$NEW_REFRESH"; do
  if grep -qF -- "$secret" <<<"$OUT$ERR"; then fail "refresh printed a token"; fi
  pass
done

# Concurrent refreshes (think: two drainers) share auth.lock: each refresh token is
# spent once, so every process succeeds and the session stays alive.
pids=()
for i in 1 2 3 4 5 6; do
  "$SK_BIN" auth refresh >"$TEST_TMP/par$i.out" 2>&1 &
  pids+=($!)
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || fail "concurrent refresh $((i + 1)) failed: $(cat "$TEST_TMP/par$((i + 1)).out")"
  pass
done
sk auth status --json; expect_rc 0; expect_eq "$(jq -r .state <<<"$OUT")" Authenticated
CUR_REFRESH="$(jq -r .refresh_token "$CREDS")"
expect_eq "$(server_refresh "$CUR_REFRESH")" 200 "the stored refresh token is still the live one"
# That direct use spent it: the next refresh is refused by the server, ending the session.
sk auth refresh
expect_rc 1 "refresh with a spent token"
expect_err "session expired — run \`spec-kitty auth login\`"
expect_eq "$(jq -r .session_expired "$CREDS")" true
expect_eq "$(jq -r .username "$CREDS")" alice "username kept"
expect_eq "$(jq -r .server_url "$CREDS")" "$URL" "server kept"
expect_eq "$(jq -r '.access_token // "none"' "$CREDS")" none "access token dropped"
expect_eq "$(jq -r '.refresh_token // "none"' "$CREDS")" none "refresh token dropped"
sk auth status; expect_rc 1; expect_out "Session expired"; expect_out "alice"
sk auth status --json; expect_eq "$(jq -r .state <<<"$OUT")" "Session expired"

# The server expiring refresh tokens (fault endpoint) is noticed on the next refresh.
login
curl -s -o /dev/null -H 'Content-Type: application/json' -d '{"kind":"refresh"}' \
  "$URL/api/v1/receiver/tokens/expire"
sk auth refresh; expect_rc 1; expect_err "session expired"
sk auth status; expect_rc 1; expect_out "Session expired"

# A session whose refresh token lives 1 s: after it lapses the state says so, and a
# refresh reports the expiry without needing the server.
receiver short --refresh-ttl 1 --access-ttl 1
before=$(date +%s)
login
after=$(date +%s)
# The server's 1 s lifetime is what was stored (not the 7-day default): the login's
# clock plus 1 s, in whole seconds, however long the login took on a loaded machine.
ref_at=$(jq -r .refresh_expires_at "$CREDS")
expect_ge "$ref_at" $((before + 1)) "refresh expiry"; expect_ge $((after + 1)) "$ref_at" "refresh expiry"
sleep 2
sk auth status; expect_rc 1 "status after refresh-ttl"; expect_out "Session expired"
sk auth refresh; expect_rc 1; expect_err "session expired — run \`spec-kitty auth login\`"
# Logging in again starts a new session (at the main receiver: a session of 1 s
# could lapse between this login and the status below on a loaded machine).
URL="$MAIN_URL"
config "{\"server_url\": \"$URL\"}"
login
sk auth status --json; expect_eq "$(jq -r .state <<<"$OUT")" Authenticated
sk auth logout; expect_rc 0; expect_out "Logged out"
