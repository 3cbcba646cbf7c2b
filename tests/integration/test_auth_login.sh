#!/usr/bin/env bash
# `spec-kitty auth login|status|logout` against the real reference receiver:
# a good login, refusals (bad password, plain http off loopback, no server URL,
# unverifiable TLS), owner-only credentials, and never a token or password in output.
. "$(dirname "$0")/lib.sh"

PW='correct horse battery'
ALL_OUTPUT="$TEST_TMP/all-output"
: >"$ALL_OUTPUT"
# Runs sk and keeps everything it printed, to search for leaked secrets at the end.
ska() {
  sk "$@"
  printf '%s\n%s\n' "$OUT" "$ERR" >>"$ALL_OUTPUT"
}

# The receiver with one user, alice of team acme.
RCV="$TEST_TMP/rcv"
mkdir -p "$RCV"
printf '%s\n' "$PW" | "$SK_PREFIX/bin/spec-kitty-receiver" --users "$RCV/users.json" \
  --add-user alice --team acme >/dev/null || fail "cannot add the receiver user"
echo "bash '$SK_SOURCE_DIR/scripts/receiver-down.sh' '$RCV'" >"$TEST_TMP/receiver.cleanup"
bash "$SK_SOURCE_DIR/scripts/receiver-up.sh" "$RCV" --users "$RCV/users.json" --quiet >/dev/null ||
  fail "receiver-up.sh failed"
. "$RCV/receiver.env"
CREDS="$SPEC_KITTY_HOME/credentials.json"

# Help and usage.
for c in login logout status refresh; do
  sk auth $c --help; expect_rc 0 "auth $c --help"; expect_out "Usage: spec-kitty auth $c"
done
sk auth --help;         expect_rc 0; expect_out "auth login"
sk auth;                expect_rc 2
sk auth frobnicate;     expect_rc 2; expect_err 'unknown command "auth frobnicate"'
sk auth login --bogus;  expect_rc 2; expect_err "--bogus"
sk auth status --bogus; expect_rc 2

# No server URL anywhere: a config error naming the key and the variable.
ska auth login --username alice --password-stdin <<<"$PW"
expect_rc 2 "login without server"; expect_err "server_url"; expect_err "SPEC_KITTY_SAAS_URL"

# Plain http to a host that is not loopback is refused before anything is sent.
ska auth login --server http://sync.example.com --username alice --password-stdin <<<"$PW"
expect_rc 2 "plain http off loopback"; expect_err "plain http"
[ ! -e "$CREDS" ] || fail "a refused login wrote credentials"; pass
# ... and before any password is asked for.
ska auth login --server http://sync.example.com </dev/null
expect_rc 2 "plain http, no password given"; expect_err "plain http"

config "{\"server_url\": \"$RECEIVER_URL\"}"
ska auth status; expect_rc 1 "status before login"; expect_out "Not authenticated"

# Wrong password, unknown user: exit 1, a clear message, nothing stored.
ska auth login --username alice --password-stdin <<<"not the password"
expect_rc 1 "bad password"; expect_err "invalid username or password"
ska auth login --username mallory --password-stdin <<<"$PW"
expect_rc 1 "unknown user"; expect_err "invalid username or password"
[ ! -e "$CREDS" ] || fail "a failed login wrote credentials"; pass
# A password line holding a NUL byte is refused, not cut at the NUL (the right password then
# a NUL logged in); a username or password that is not UTF-8 is named, not "out of memory".
ska auth login --username alice --password-stdin < <(printf '%s\0tail\n' "$PW")
expect_rc 2 "password with a NUL byte"; expect_err "auth login: the password holds a NUL byte"
ska auth login --username $'ali\xffce' --password-stdin <<<"$PW"
expect_rc 2 "username not UTF-8"; expect_err "username: not valid UTF-8"
ska auth login --username alice --password-stdin < <(printf 'pass\xffword\n')
expect_rc 2 "password not UTF-8"; expect_err "password: not valid UTF-8"
[ ! -e "$CREDS" ] || fail "a refused password wrote credentials"; pass
# No terminal and no --password-stdin: a usage error, not a hang.
ska auth login --username alice </dev/null; expect_rc 2; expect_err "--password-stdin"

# A good login.
ska auth login --username alice --password-stdin <<<"$PW"
expect_rc 0 "login"; expect_out "Logged in to $RECEIVER_URL as alice (team acme)"
expect_eq "$(stat -c %a "$CREDS")" 600 "credentials mode"
expect_eq "$(jq -r .username "$CREDS")" alice
expect_eq "$(jq -r .team_slug "$CREDS")" acme
ACCESS="$(jq -r .access_token "$CREDS")"
REFRESH="$(jq -r .refresh_token "$CREDS")"
[ ${#ACCESS} -ge 16 ] && [ ${#REFRESH} -ge 16 ] || fail "tokens missing from credentials.json"; pass
# The stored access token is one the server accepts.
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ACCESS" \
  "$RECEIVER_URL/api/v1/sync/health/")
expect_eq "$code" 200 "health with the stored access token"

ska auth status
expect_rc 0 "status"; expect_out "Authenticated"; expect_out "alice"; expect_out "acme"
expect_out "$RECEIVER_URL"; expect_out "Access token:"; expect_out "Refresh token:"
ska auth status --json
expect_rc 0 "status --json"
expect_eq "$(jq -r .state <<<"$OUT")" Authenticated
expect_eq "$(jq -r .username <<<"$OUT")" alice
expect_eq "$(jq -r .team_slug <<<"$OUT")" acme
expect_eq "$(jq -r .server_url <<<"$OUT")" "$RECEIVER_URL"
# Expiry: about 15 minutes and 7 days from now (the receiver's defaults).
now=$(date +%s)
acc=$(date -d "$(jq -r .access_expires_at <<<"$OUT")" +%s)
ref=$(date -d "$(jq -r .refresh_expires_at <<<"$OUT")" +%s)
expect_ge $((acc - now)) 880 "access lifetime"; expect_ge 905 $((acc - now)) "access lifetime"
expect_ge $((ref - now)) $((7 * 86400 - 20)) "refresh lifetime"

# A failed login later does not destroy the session.
ska auth login --username alice --password-stdin <<<"wrong"
expect_rc 1; expect_eq "$(jq -r .refresh_token "$CREDS")" "$REFRESH" "session after a failed login"

# A credentials file others can read is refused, with the chmod that fixes it.
chmod 644 "$CREDS"
ska auth status; expect_rc 2 "status on a 0644 file"
expect_err "readable by others (mode 644): run chmod 600 $CREDS"
chmod 600 "$CREDS"
ska auth status; expect_rc 0 "status after chmod 600"

# SPEC_KITTY_SAAS_URL overrides the config for login too.
config '{"server_url": "https://unused.example.com"}'
SPEC_KITTY_SAAS_URL="$RECEIVER_URL" ska auth login --username alice --password-stdin <<<"$PW"
expect_rc 0 "login via SPEC_KITTY_SAAS_URL"
# The config now points elsewhere: status says the session is for another server.
ska auth status; expect_out "sync.json points to https://unused.example.com"

# HTTPS with verification on: refused without the private CA, accepted with
# transport.options.ca_file.
config "{\"server_url\": \"$RECEIVER_TLS_URL\"}"
ska auth login --username alice --password-stdin <<<"$PW"
expect_rc 1 "TLS without the CA"; expect_err "cannot reach $RECEIVER_TLS_URL"; expect_err "transport.options.ca_file"
config "{\"server_url\": \"$RECEIVER_TLS_URL\", \"transport\": {\"options\": {\"ca_file\": \"$RECEIVER_CA\"}}}"
ska auth login --username alice --password-stdin <<<"$PW"
expect_rc 0 "TLS with transport.options.ca_file"
expect_out "Logged in to $RECEIVER_TLS_URL as alice"

# A static token from the environment wins and is never refreshed.
SPEC_KITTY_ACCESS_TOKEN=ci-static-token-value ska auth status
expect_rc 0; expect_out "Static token"
SPEC_KITTY_ACCESS_TOKEN=ci-static-token-value ska auth refresh
expect_rc 1; expect_err "SPEC_KITTY_ACCESS_TOKEN"

# Logout removes the file and says so; a second logout is not an error.
ska auth logout; expect_rc 0 "logout"; expect_out "Logged out: removed $CREDS"
[ ! -e "$CREDS" ] || fail "logout left credentials.json"; pass
ska auth status; expect_rc 1; expect_out "Not authenticated"
ska auth logout; expect_rc 0; expect_out "Not logged in"

# Nothing printed, by any command above, held a token or the password.
for secret in "$ACCESS" "$REFRESH" "$PW" ci-static-token-value; do
  if grep -qF -- "$secret" "$ALL_OUTPUT"; then fail "a secret was printed"; fi
  pass
done
