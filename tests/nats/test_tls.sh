#!/usr/bin/env bash
# The example transport over TLS, against nats-server with a certificate of a CA made
# here: with tls_ca set to that CA the events arrive in the stream; a CA that did not
# sign the server's certificate, a certificate for another host, and a server without
# TLS each fail with one line saying so (exit 1, every event kept queued, none stored);
# a tls:// URL never falls back to plain text (plugin or consumer); a tls_ca that is
# missing, not a file or not PEM is one config line naming the option and the path
# (exit 2).
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/nats_lib.sh"

# refused CASE WHY...: sync now fails on connecting (exit 1, one line with each WHY)
# and every one of the $queued events stays queued, none parked.
refused() {
  local case=$1 why
  shift
  sk sync now; expect_rc 1 "sync now, $case"
  for why in "$@"; do expect_err "$why"; done
  expect_eq "$(grep -c "cannot connect to NATS" <<<"$ERR")" 1 "lines saying why, $case"
  expect_eq "$(queue_ready)" "$queued" "events queued, $case"
  expect_eq "$(queue_parked)" 0 "events parked, $case"
  sk sync status --json; expect_rc 0
  expect_eq "$(jq .queue.size <<<"$OUT")" "$queued" "sync status queue size, $case"
}

CA="$TEST_TMP/ca"
test_certs "$CA" "nats test CA"
test_certs "$TEST_TMP/other" "other CA"
test_certs "$TEST_TMP/elsewhere" "elsewhere CA" "DNS:elsewhere.example"
expect_eq "$(stat -c %a "$CA/server.key") $(stat -c %a "$CA/ca.key")" "600 600" "key modes"

nats_start_tls tls "$CA"
URL="nats://127.0.0.1:$NATS_PORT"
OPTS="\"servers\": [\"$URL\"], \"create_stream\": true"

# 1. tls_ca is the CA that signed the server's certificate: delivered, stored once each
#    (read back over TLS too).
emit_many 500
queued_ids "$TEST_TMP/ids1"
nj_config "{$OPTS, \"tls_ca\": \"$CA/ca.pem\"}"
sk sync now; expect_rc 0 "sync now over TLS"; expect_out "Synced: 500  Duplicates: 0"
expect_out "Remaining: 0"
nj_consume "$TEST_TMP/c.db" "$URL" SPEC_KITTY_EVENTS test "spec-kitty.events.*" --tls-ca "$CA/ca.pem"
expect_out "received 500 messages: 500 events stored, 0 duplicates dropped"
diff <(stored_ids "$TEST_TMP/c.db") "$TEST_TMP/ids1" >/dev/null || fail "stored ids differ from the queued ones"
pass

# 2. A CA that did not sign it: certificate verification fails, nothing is sent.
emit_many 40
queued=40
nj_config "{$OPTS, \"tls_ca\": \"$TEST_TMP/other/ca.pem\"}"
refused "another CA" "SSL handshake error" "unable to get local issuer certificate" \
  "TLS: the server's certificate must be signed by a CA in options.tls_ca $TEST_TMP/other/ca.pem"
# No tls_ca at all: the server requires TLS, and the system's CAs do not know ours.
nj_config "{$OPTS}"
refused "no tls_ca" "unable to get local issuer certificate" "a CA in the system's trust store"

# 3. A certificate from the trusted CA, but for another host.
nats_start_tls elsewhere "$TEST_TMP/elsewhere"
nj_config "{\"servers\": [\"nats://127.0.0.1:$NATS_PORT\"], \"tls_ca\": \"$TEST_TMP/elsewhere/ca.pem\"}"
refused "a certificate for another host" "IP address mismatch" "name the host of its URL"

# 4. A server without TLS: tls_ca requires TLS, and so does a tls:// URL (libnats alone
#    would send over plain text to it).
nats_start plain -1 || fail "nats-server plain did not start"
PLAIN="127.0.0.1:$NATS_PORT"
nj_config "{\"servers\": [\"nats://$PLAIN\"], \"create_stream\": true, \"tls_ca\": \"$CA/ca.pem\"}"
refused "tls_ca, the server without TLS" "the server does not offer TLS, which options.tls_ca requires"
nj_config "{\"servers\": [\"tls://$PLAIN\"], \"create_stream\": true}"
refused "a tls:// URL, the server without TLS" \
  "the server does not offer TLS, which a tls:// URL in options.servers requires"
# The consumer too: tls:// is never read as nats://.
sk_run "$NJ_CONSUMER" --db "$TEST_TMP/plain.db" --servers "tls://$PLAIN" --stream SPEC_KITTY_EVENTS \
  --idle-exit 200
expect_rc 1 "consumer, a tls:// URL, the server without TLS"; expect_err "Secure Connection not available"
# The server answers in plain text: the refusals were about TLS.
# shellcheck disable=SC2016  # $JS is a subject, not a variable
jq -e '.type == "io.nats.jetstream.api.v1.account_info_response"' \
  <<<"$(js_api "${PLAIN#*:}" '$JS.API.INFO' '')" >/dev/null || fail "the plain server does not answer"
pass

# 5. tls_ca that cannot serve: one config line naming the option and the path, exit 2.
bad_ca() { # bad_ca PATH WHAT
  nj_config "{$OPTS, \"tls_ca\": \"$1\"}"
  sk sync now; expect_rc 2 "tls_ca $1"; expect_err "nats-jetstream: options.tls_ca $1$2"
  expect_eq "$(wc -l <<<"$ERR")" 1 "lines on stderr for tls_ca $1: $ERR"
  expect_eq "$(queue_ready)" "$queued" "events queued after tls_ca $1"
}
bad_ca "$TEST_TMP/absent.pem" ": No such file or directory"
bad_ca "$TEST_TMP/other" " is not a file"
mkfifo "$TEST_TMP/fifo.pem" # opening it would wait for a writer: refused unopened
bad_ca "$TEST_TMP/fifo.pem" " is not a file"
echo "not a certificate" >"$TEST_TMP/garbage.pem"
bad_ca "$TEST_TMP/garbage.pem" " holds no PEM CA certificate"
if [ "$(id -u)" != 0 ]; then # root reads any file
  cp "$CA/ca.pem" "$TEST_TMP/closed.pem"; chmod 000 "$TEST_TMP/closed.pem"
  bad_ca "$TEST_TMP/closed.pem" ": Permission denied"
fi

# 6. The right CA again: the kept events go, each stored once, none before.
nj_config "{$OPTS, \"tls_ca\": \"$CA/ca.pem\"}"
sk sync now; expect_rc 0 "sync now with the CA back"; expect_out "Synced: 40  Duplicates: 0"
nj_consume "$TEST_TMP/c.db" "$URL" SPEC_KITTY_EVENTS test "spec-kitty.events.*" --tls-ca "$CA/ca.pem"
expect_out "received 40 messages: 40 events stored, 0 duplicates dropped"
