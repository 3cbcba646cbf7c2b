#!/usr/bin/env bash
# credentials_file against an operator-mode nats-server (JWT authentication; the
# operator, accounts, users and .creds made here with openssl, nkeys_lib.sh): a user of a
# trusted account delivers, and the consumer reads with the same file; no credentials, a
# seed that is not the JWT's, a user of an account the server does not know, and an
# expired JWT are refused in one line (exit 1, every event kept, the seed never printed).
# A .creds file without a seed, without a JWT, or empty, and one readable by others, are
# configuration errors found before connecting (exit 2, one line, nothing of the secret),
# by the transport and by the consumer alike.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/nats_lib.sh"
. "$(dirname "$0")/nkeys_lib.sh"

nk_new op O
nk_new sys A
nk_new team A
nk_new rogue A # an account the server was not told about
nk_new alice U
nk_new mallory U
expect_eq "$(stat -c %a "$NK_DIR/alice.pem") $(stat -c %a "$NK_DIR/alice.seed")" "600 600" "key modes"
nk_operator_conf "$TEST_TMP/op.conf" op sys team
nats_start op -1 -c "$TEST_TMP/op.conf" -D || fail "nats-server in operator mode did not start"
grep -q "Trusted Operators" "$TEST_TMP/op/log" || fail "nats-server is not in operator mode"; pass
URL="nats://127.0.0.1:$NATS_PORT"
ALICE=$(nk_jwt team alice "$NK_USER_CLAIMS")
CREDS="$TEST_TMP/alice.creds"
nk_creds "$CREDS" "$ALICE" alice
expect_eq "$(stat -c %a "$CREDS")" 600 "creds mode"
SEEDS="$(cat "$NK_DIR/alice.seed")|$(cat "$NK_DIR/mallory.seed")"

# with_creds FILE: sync.json with credentials_file FILE ("" for none).
with_creds() { nj_config "{\"servers\": [\"$URL\"], \"create_stream\": true${1:+, \"credentials_file\": \"$1\"}}"; }
# refused CASE WHY [SERVER_WHY]: sync now fails (exit 1, WHY in one line), all $queued
# events stay; the server (debug log) refused the connection for SERVER_WHY.
refused() {
  local seen said
  seen=$(wc -l <"$TEST_TMP/op/log")
  sk sync now; expect_rc 1 "sync now, $1"; expect_err "$2"
  if [ -n "${3:-}" ]; then
    # On a mismatch, what the server said of its clients (debug lines: no secret in them).
    said=$(tail -n +$((seen + 1)) "$TEST_TMP/op/log")
    grep -qF "$3" <<<"$said" ||
      fail "the server's reason is not '$3', $1; it logged: $(grep -F ' - cid:' <<<"$said" | tail -n 4)"
    pass
  fi
  expect_eq "$(grep -c "cannot connect to NATS" <<<"$ERR")" 1 "lines saying why, $1"
  expect_eq "$(queue_ready)" "$queued" "events queued, $1"
  expect_eq "$(queue_parked)" 0 "events parked, $1"
  grep -qE "$SEEDS" <<<"$OUT$ERR" && fail "a seed was printed, $1"; pass
}

# 1. alice of the trusted account: delivered, stored once each, read with the same file.
emit_many 300
queued_ids "$TEST_TMP/ids1"
with_creds "$CREDS"
sk sync now; expect_rc 0 "sync now with alice's .creds"; expect_out "Synced: 300  Duplicates: 0"
nj_consume "$TEST_TMP/c.db" "$URL" SPEC_KITTY_EVENTS test "spec-kitty.events.*" --credentials-file "$CREDS"
expect_out "received 300 messages: 300 events stored, 0 duplicates dropped"
diff <(stored_ids "$TEST_TMP/c.db") "$TEST_TMP/ids1" >/dev/null || fail "stored ids differ from the queued ones"
pass

# 2. Refusals: the client hears Authorization Violation whatever the reason; the
#    server's debug log shows that each was refused for its own reason.
emit_many 25
queued=25
with_creds ""
refused "no credentials" "cannot connect to NATS: Authorization Violation" \
  "Authentication requires a user JWT"
nk_creds "$TEST_TMP/mallory.creds" "$ALICE" mallory # alice's JWT, another key's seed
with_creds "$TEST_TMP/mallory.creds"
refused "a seed that is not the JWT's" "Authorization Violation" "Signature not verified"
nk_creds "$TEST_TMP/rogue.creds" "$(nk_jwt rogue alice "$NK_USER_CLAIMS")" alice
with_creds "$TEST_TMP/rogue.creds"
refused "an account the server does not know" "Authorization Violation" "account missing"
nk_creds "$TEST_TMP/expired.creds" "$(nk_jwt team alice "$NK_USER_CLAIMS" "\"exp\": $(($(date +%s) - 60))")" alice
with_creds "$TEST_TMP/expired.creds"
refused "an expired JWT" "Authorization Violation" "claim is expired"

# 3. Files that are not a .creds: refused as configuration when the options are read,
#    before connecting (exit 2, one line naming the option, the path and what is missing),
#    neither the seed nor the JWT printed, every event kept; the consumer refuses them too.
# misconfigured CASE FILE WHAT: sync now and the consumer refuse FILE, saying WHAT.
misconfigured() {
  sk sync now; expect_rc 2 "sync now, $1"
  expect_err "nats-jetstream: options.credentials_file $2 $3"
  expect_eq "$(wc -l <<<"$ERR")" 1 "lines on stderr, $1: $ERR"
  expect_eq "$(queue_ready)" "$queued" "events queued, $1"
  expect_eq "$(queue_parked)" 0 "events parked, $1"
  grep -qE "$SEEDS" <<<"$OUT$ERR" && fail "a seed was printed, $1"; pass
  grep -qF "$ALICE" <<<"$OUT$ERR" && fail "the JWT was printed, $1"; pass
  sk_run "$NJ_CONSUMER" --db "$TEST_TMP/refused.db" --servers "$URL" --stream SPEC_KITTY_EVENTS \
    --credentials-file "$2" --idle-exit 500
  expect_rc 2 "consumer, $1"
  expect_eq "$ERR" "sk-nats-consumer: --credentials-file $2 $3" "consumer's line, $1"
  grep -qE "$SEEDS" <<<"$OUT$ERR" && fail "the consumer printed a seed, $1"; pass
  grep -qF "$ALICE" <<<"$OUT$ERR" && fail "the consumer printed the JWT, $1"; pass
  [ -e "$TEST_TMP/refused.db" ] && fail "the consumer made its database, $1"; pass
}
(
  umask 077
  sed -n '1,3p' "$CREDS" >"$TEST_TMP/jwt-only.creds"
  sed -n '/BEGIN USER NKEY SEED/,$p' "$CREDS" >"$TEST_TMP/seed-only.creds"
  : >"$TEST_TMP/empty.creds"
)
with_creds "$TEST_TMP/jwt-only.creds"
misconfigured "a .creds file without a seed" "$TEST_TMP/jwt-only.creds" \
  "has no NKey seed (a -----BEGIN USER NKEY SEED----- block after the JWT)"
with_creds "$TEST_TMP/seed-only.creds"
misconfigured "a .creds file without a JWT" "$TEST_TMP/seed-only.creds" \
  "has no user JWT (its first block must be -----BEGIN NATS USER JWT-----)"
with_creds "$TEST_TMP/empty.creds"
misconfigured "an empty .creds file" "$TEST_TMP/empty.creds" "is empty"

# 4. A .creds file others can read: refused before anything is sent, the seed unprinted.
cp "$CREDS" "$TEST_TMP/open.creds"
chmod 644 "$TEST_TMP/open.creds"
with_creds "$TEST_TMP/open.creds"
sk sync now; expect_rc 2 "a .creds file readable by others"
expect_err "nats-jetstream: options.credentials_file $TEST_TMP/open.creds must be owner-only (chmod 600)"
expect_eq "$(wc -l <<<"$ERR")" 1 "lines on stderr: $ERR"
grep -qE "$SEEDS" <<<"$OUT$ERR" && fail "a seed was printed"; pass
expect_eq "$(queue_ready)" "$queued" "events queued after the configuration error"
# The consumer refuses such a file too, before it opens anything.
sk_run "$NJ_CONSUMER" --db "$TEST_TMP/open.db" --servers "$URL" --stream SPEC_KITTY_EVENTS \
  --credentials-file "$TEST_TMP/open.creds" --idle-exit 500
expect_rc 2 "consumer with a .creds file readable by others"
expect_eq "$ERR" "sk-nats-consumer: --credentials-file $TEST_TMP/open.creds must be owner-only (chmod 600)" \
  "consumer's line for a .creds file readable by others"
[ -e "$TEST_TMP/open.db" ] && fail "the consumer made its database for a .creds file others can read"; pass

# 5. alice again: the kept events go, each stored once, none before.
with_creds "$CREDS"
sk sync now; expect_rc 0 "sync now with alice's .creds again"; expect_out "Synced: 25  Duplicates: 0"
nj_consume "$TEST_TMP/c.db" "$URL" SPEC_KITTY_EVENTS test "spec-kitty.events.*" --credentials-file "$CREDS"
expect_out "received 25 messages: 25 events stored, 0 duplicates dropped"
