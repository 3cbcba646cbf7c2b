#!/usr/bin/env bash
# The NATS JetStream example as a third party builds it: out of tree, against the
# installed SDK only (pkg-config), into $SK_BUILD_DIR/nats-example for the other
# nats.* tests. It exports only its entry point and passes the SDK's checker (send,
# submit, probe) with a real nats-server up and down; the host finds it by name; events
# go to their team's subject; a bad option or a readable secret is refused; a token
# authenticates the plugin and the consumer, a wrong one is refused unprinted, a token file
# neither can use is configuration to both; a user denied publish gets rejections.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/nats_lib.sh"
rm -rf "$NJ_BUILD"
cmake -S "$SK_SOURCE_DIR/examples/nats-jetstream" -B "$NJ_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_PREFIX_PATH="$SK_PREFIX" >"$TEST_TMP/cmake.log" 2>&1 || fail "configure: $(tail -5 "$TEST_TMP/cmake.log")"
cmake --build "$NJ_BUILD" -j2 >>"$TEST_TMP/cmake.log" 2>&1 || fail "build: $(tail -5 "$TEST_TMP/cmake.log")"
# Nothing of the source tree: the compiler saw the installed header only.
grep -rq "$SK_SOURCE_DIR/include" "$NJ_BUILD/CMakeFiles" && fail "the build used the source tree's headers"; pass
[ -x "$NJ_CONSUMER" ] || fail "no consumer built"; pass
expect_eq "$(nm -D --defined-only "$NJ_SO" | awk '$2 == "T" {print $3}')" spec_kitty_transport_v1 "exported symbols"

nats_start n1 -1 || fail "nats-server did not start"
port=$NATS_PORT
URL="nats://127.0.0.1:$port"
sk_run "$SK_PREFIX/bin/spec-kitty-transport-check" "$NJ_SO" "{\"servers\": [\"$URL\"], \"create_stream\": true}"
expect_rc 0 "conformance check: $OUT"
grep -q "^conformant" <<<"$OUT" || fail "checker verdict: $OUT"; pass
grep -q "capabilities 0xf" <<<"$OUT" || fail "capabilities: $OUT"; pass
# Asynchronous and probing: the checker submitted a batch and probed too.
grep -q "^ok   the completion comes by the batch deadline" <<<"$OUT" || fail "submit not checked: $OUT"; pass
grep -q "probe returned 0 .*stream SPEC_KITTY_EVENTS holds" <<<"$OUT" || fail "probe: $OUT"; pass
nj_consume "$TEST_TMP/c.db" "$URL" SPEC_KITTY_EVENTS
expect_out "received 6 messages: 6 events stored, 0 duplicates dropped"
# The checker's events are routed by their team_slug ("local").
expect_eq "$(sqlite3 "$TEST_TMP/c.db" "SELECT DISTINCT subject FROM events")" spec-kitty.events.local "subject"

# With the server gone, every call still keeps the contract (nothing delivered, all prompt).
nats_stop n1
sk_run "$SK_PREFIX/bin/spec-kitty-transport-check" "$NJ_SO" "{\"servers\": [\"$URL\"]}"
expect_rc 0 "conformance check with the server down: $OUT"
grep -q "probe returned 3 " <<<"$OUT" || fail "probe with the server down: $OUT"; pass
nats_start n1 "$port" || fail "port $port was taken while the server was down"

# Found by name in plugin_path, the host lists it (the host does not show option tables yet).
config "{\"plugin_path\": [\"$NJ_BUILD\"], \"transport\": {\"plugin\": \"nats-jetstream\",
  \"options\": {\"servers\": [\"$URL\"]}}}"
sk sync plugins --json; expect_rc 0
jq -e '.. | objects | select(.name? == "nats-jetstream")' <<<"$OUT" >/dev/null ||
  fail "sync plugins does not list the transport: $OUT"; pass
# Each event goes to spec-kitty.events.<its team_slug>, made one subject token.
emit_many 3
sqlite3 "$SPEC_KITTY_HOME/queue.db" "UPDATE queue SET data = json_set(data, '$.team_slug', 'ac.me')
  WHERE id = (SELECT min(id) FROM queue); UPDATE queue SET data = json_set(data, '$.team_slug',
  'q\"t') WHERE id = (SELECT max(id) FROM queue)"
sk sync now; expect_rc 0 "sync now through the plugin found by name"; expect_out "Synced: 3 "
nj_consume "$TEST_TMP/c.db" "$URL" SPEC_KITTY_EVENTS
expect_eq "$(sqlite3 "$TEST_TMP/c.db" "SELECT subject FROM events ORDER BY stream_seq DESC LIMIT 3" | sort | paste -sd' ')" \
  'spec-kitty.events.ac_me spec-kitty.events.local spec-kitty.events.q"t' "subjects by team"
# A bad option is one clear line naming it, exit 2; a secret file must be owner-only.
nj_config '{"servers": [1]}'
sk sync now; expect_rc 2 "servers with a number"; expect_err "options.servers[0] is not a string"
echo secret >"$TEST_TMP/token"; chmod 644 "$TEST_TMP/token"
nj_config "{\"token_file\": \"$TEST_TMP/token\"}"
sk sync now; expect_rc 2 "token file readable by others"; expect_err "must be owner-only"
grep -q secret <<<"$OUT$ERR" && fail "the token was printed"; pass

# Token authentication from an owner-only file; a wrong token is refused, never printed.
TOKEN="tok-$RANDOM$RANDOM"
nats_start auth -1 --auth "$TOKEN" || fail "nats-server with --auth did not start"
AUTH_URL="nats://127.0.0.1:$NATS_PORT"
printf '%s\n' "$TOKEN" >"$TEST_TMP/good-token"
echo "wrong-$TOKEN" >"$TEST_TMP/bad-token"
chmod 600 "$TEST_TMP/good-token" "$TEST_TMP/bad-token"
emit_many 2
nj_config "{\"servers\": [\"$AUTH_URL\"], \"create_stream\": true, \"token_file\": \"$TEST_TMP/bad-token\"}"
sk sync now; expect_rc 1 "a wrong token"; expect_err "cannot connect to NATS: Authorization Violation"
grep -q "$TOKEN" <<<"$OUT$ERR" && fail "the token was printed"; pass
nj_config "{\"servers\": [\"$AUTH_URL\"], \"create_stream\": true, \"token_file\": \"$TEST_TMP/good-token\"}"
sk sync now; expect_rc 0 "the right token"; expect_out "Synced: 2 "
# The consumer reads with the same file; with the wrong token the server refuses it.
nj_consume "$TEST_TMP/tok.db" "$AUTH_URL" SPEC_KITTY_EVENTS test "spec-kitty.events.*" \
  --token-file "$TEST_TMP/good-token"
expect_out "received 2 messages: 2 events stored, 0 duplicates dropped"
sk_run "$NJ_CONSUMER" --db "$TEST_TMP/tok.db" --servers "$AUTH_URL" --stream SPEC_KITTY_EVENTS \
  --token-file "$TEST_TMP/bad-token" --idle-exit 500
expect_rc 1 "consumer with a wrong token"; expect_err "Authorization Violation"
grep -q "$TOKEN" <<<"$OUT$ERR" && fail "the consumer printed the token"; pass

# A token file that is missing, a FIFO, a folder, empty or readable by others is
# configuration: the plugin and the consumer each refuse it before connecting (exit 2,
# one line naming the option, the file and the fault, the token unprinted; the consumer
# makes no database). timeout: a FIFO once held both for ever.
# token_refused CASE FILE LINE: LINE follows the option's name (the file, then the fault).
token_refused() {
  nj_config "{\"servers\": [\"$AUTH_URL\"], \"token_file\": \"$2\"}"
  sk_run timeout -k 5 20 "$SK_BIN" sync now; expect_rc 2 "sync now, $1"
  expect_err "nats-jetstream: options.token_file $3"
  expect_eq "$(wc -l <<<"$ERR")" 1 "lines on stderr, $1: $ERR"
  grep -q "$TOKEN" <<<"$OUT$ERR" && fail "sync now printed the token, $1"; pass
  sk_run timeout -k 5 20 "$NJ_CONSUMER" --db "$TEST_TMP/refused.db" --servers "$AUTH_URL" \
    --stream SPEC_KITTY_EVENTS --token-file "$2" --idle-exit 500
  expect_rc 2 "consumer, $1"
  expect_eq "$ERR" "sk-nats-consumer: --token-file $3" "consumer's line, $1"
  grep -q "$TOKEN" <<<"$OUT$ERR" && fail "the consumer printed the token, $1"; pass
  [ -e "$TEST_TMP/refused.db" ] && fail "the consumer made its database, $1"; pass
}
(
  umask 077
  mkfifo "$TEST_TMP/fifo-token"
  mkdir "$TEST_TMP/dir-token"
  printf '\n' >"$TEST_TMP/empty-token"
)
cp "$TEST_TMP/good-token" "$TEST_TMP/open-token"
chmod 644 "$TEST_TMP/open-token"
token_refused "a missing token file" "$TEST_TMP/no-token" "$TEST_TMP/no-token: No such file or directory"
token_refused "a FIFO" "$TEST_TMP/fifo-token" "$TEST_TMP/fifo-token is not a file"
token_refused "a folder" "$TEST_TMP/dir-token" "$TEST_TMP/dir-token is not a file"
token_refused "an empty token file" "$TEST_TMP/empty-token" "$TEST_TMP/empty-token is empty"
token_refused "a token file others can read" "$TEST_TMP/open-token" \
  "$TEST_TMP/open-token must be owner-only (chmod 600)"
# The consumer's other flags are checked before anything opens too: a --tls-ca that is a
# FIFO is refused (libnats would wait on it for ever), and --idle-exit takes milliseconds
# only ("abc" once meant 0: run for ever).
sk_run timeout -k 5 20 "$NJ_CONSUMER" --db "$TEST_TMP/refused.db" --servers "$AUTH_URL" \
  --stream SPEC_KITTY_EVENTS --tls-ca "$TEST_TMP/fifo-token" --idle-exit 500
expect_rc 2 "consumer, a FIFO as --tls-ca"
expect_eq "$ERR" "sk-nats-consumer: --tls-ca $TEST_TMP/fifo-token is not a file" "consumer's line, a FIFO as --tls-ca"
[ -e "$TEST_TMP/refused.db" ] && fail "the consumer made its database, a FIFO as --tls-ca"; pass
for bad in abc 5x -1 "" " 5" +5 -0 99999999999999999999; do
  sk_run timeout -k 5 20 "$NJ_CONSUMER" --db "$TEST_TMP/refused.db" --servers "$AUTH_URL" \
    --stream SPEC_KITTY_EVENTS --idle-exit "$bad"
  expect_rc 2 "consumer, --idle-exit \"$bad\""
  expect_err "sk-nats-consumer: --idle-exit \"$bad\": not milliseconds"
  [ -e "$TEST_TMP/refused.db" ] && fail "the consumer made its database, --idle-exit \"$bad\""; pass
done

# A token file the consumer's user cannot read: as root (who reads any file), root's file
# read by the consumer as nobody; otherwise one without read permission. The consumer
# would otherwise make its database, in a folder that user may write.
mkdir "$TEST_TMP/nobody"
if [ "$(id -u)" = 0 ]; then
  as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups) locked="$TEST_TMP/good-token"
  chmod 711 "$TEST_TMP"
  chown 65534:65534 "$TEST_TMP/nobody"
else
  as_user=() locked="$TEST_TMP/locked-token"
  cp "$TEST_TMP/good-token" "$locked"
  chmod 000 "$locked"
fi
sk_run timeout -k 5 20 "${as_user[@]}" "$NJ_CONSUMER" --db "$TEST_TMP/nobody/refused.db" \
  --servers "$AUTH_URL" --stream SPEC_KITTY_EVENTS --token-file "$locked" --idle-exit 500
expect_rc 2 "consumer with a token file it cannot read"
expect_eq "$ERR" "sk-nats-consumer: --token-file $locked: Permission denied" \
  "consumer's line for a token file it cannot read"
[ -e "$TEST_TMP/nobody/refused.db" ] && fail "the consumer made its database for a token file it cannot read"; pass

# A user the server does not let publish on the subject: each event is rejected with the
# server's reason (a retry counted, parked after the host's limit), the reason logged once.
printf 'authorization { users = [ {user: alice, password: pw,\n  permissions: {publish: {deny: ["spec-kitty.events.>"]}}} ] }\n' >"$TEST_TMP/perm.conf"
nats_start perm -1 -c "$TEST_TMP/perm.conf" || fail "nats-server with permissions did not start"
rm -f "$SPEC_KITTY_HOME"/queue.db*
emit_many 3
nj_config "{\"servers\": [\"nats://alice:pw@127.0.0.1:$NATS_PORT\"], \"create_stream\": true, \"publish_timeout_ms\": 1000}"
sk sync now; expect_rc 1 "publish not permitted"
expect_out "Rejected: 3  Parked: 0  Remaining: 3"
expect_out 'Permissions Violation for Publish to "spec-kitty.events.local"'
expect_eq "$(sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT sum(retry_count) FROM queue")" 3 "retries counted"
expect_eq "$(grep -c "Permissions Violation" <<<"$ERR")" 1 "warnings logged"
