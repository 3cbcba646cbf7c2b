#!/usr/bin/env bash
# h2-stream against the real receiver behind nghttpx: over TLS (ALPN h2, the test CA)
# and over h2c to loopback, `sync now` delivers every event once; the probe of
# `sync status --check` goes through the same connection.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/h2_lib.sh"

rx_start rx
h2_config "$RX_TLS"
login
emit_many 2500
sk sync now --json
expect_rc 0 "sync now over TLS"
expect_eq "$(jq -r .synced <<<"$OUT")" 2500 "synced over TLS"
stored_once 2500
sk sync status --check
expect_rc 0 "status --check over TLS"; expect_out "Connected"

h2_config "$RX_H2C"
login # the session belongs to one server_url
emit_many 700
sk sync now --json
expect_rc 0 "sync now over h2c"
expect_eq "$(jq -r .synced <<<"$OUT")" 700 "synced over h2c"
stored_once 3200
# Levels (streams in flight, connections open) are no counters: only the counts are summed.
sk sync metrics; expect_rc 0
grep -q '^spec_kitty_sync_transport_requests_total{transport="h2-stream"} [1-9]' <<<"$OUT" ||
  fail "h2 requests counter: $(grep transport_ <<<"$OUT")"; pass
! grep -E 'streams_in_flight|connections_open' <<<"$OUT" || fail "a level exported as a counter"; pass

sk sync plugins --json
expect_rc 0 "sync plugins"
expect_eq "$(jq -c '.[] | select(.name == "h2-stream") | .capabilities' <<<"$OUT")" \
  '["sync","async","probe","streaming"]' "h2-stream capabilities"

# A TLS server that does not select h2 by ALPN, in both ways servers do it (a
# no_application_protocol alert, or a handshake without ALPN): one clear line.
for alpn in "-alpn http/1.1" ""; do
  port=$(free_tcp_port)
  # shellcheck disable=SC2086  # $alpn is two words or none
  openssl s_server -quiet -accept "127.0.0.1:$port" -cert "$RX_DIR/server.pem" \
    -key "$RX_DIR/server.key" $alpn >/dev/null 2>&1 &
  spid=$!
  echo "kill $spid" >"$TEST_TMP/s_server.cleanup"
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
  h2_config "https://127.0.0.1:$port"
  emit_many 1
  sk sync now
  expect_rc 1 "sync now to a server without h2 (${alpn:-no ALPN})"
  expect_err "sync stopped: server does not speak HTTP/2; use http-batch"
  kill "$spid"
  wait "$spid" 2>/dev/null || true
done
