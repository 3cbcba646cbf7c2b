#!/usr/bin/env bash
# End to end over TLS (issue 5, 13–14): through nghttpx with the test CA given as
# transport.options.ca_file events are delivered; without the CA the server is
# refused (exit 1, a clear message, queue intact). And HTTP/2: libcurl negotiates h2
# by ALPN, shown by an nghttpx access log of our own.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/e2e_lib.sh"

rx_start rx
WITH_CA="{\"ca_file\": \"$RX_CA\"}"
e2e_config "$RX_TLS" "$WITH_CA"
login

# ---- 13. TLS with the private CA ----------------------------------------------
emit_many 1500
sk sync now
expect_rc 0 "sync now over TLS with ca_file"
expect_out "Synced: 1500  Duplicates: 0  Pending: 0  Rejected: 0  Parked: 0  Remaining: 0"
expect_eq "$(queue_total)" 0
expect_eq "$(rx_stats .events_stored)" 1500 "stored through TLS"
expect_eq "$(status_json .connection)" Connected

# Without the CA: the certificate cannot be verified, nothing is sent.
e2e_config "$RX_TLS"
emit_many 40
req0=$(rx_stats .batch_requests)
sk sync now
expect_rc 1 "sync now over TLS without the CA"
expect_err "SSL certificate problem"; expect_err "set transport.options.ca_file in sync.json"
expect_eq "$(queue_ready)" 40 "queue intact after the TLS refusal"
expect_eq "$(queue_parked)" 0
expect_eq "$(($(rx_stats .batch_requests) - req0))" 0 "batches that reached the receiver"
[ "$(status_json .connection)" != Connected ] || fail "Connected after a TLS refusal"; pass
# A CA that did not sign the server's certificate is no better than none.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=other CA" \
  -keyout "$TEST_TMP/other-ca.key" -out "$TEST_TMP/other-ca.pem" 2>/dev/null || fail "openssl"
e2e_config "$RX_TLS" "{\"ca_file\": \"$TEST_TMP/other-ca.pem\"}"
sk sync now; expect_rc 1 "sync now with a CA that did not sign the server"
expect_err "SSL certificate problem"; expect_err "did the CA in transport.options.ca_file sign"
expect_eq "$(queue_ready)" 40
# With the CA again, they go through.
e2e_config "$RX_TLS" "$WITH_CA"
sk sync now; expect_rc 0 "sync now with the CA back"; expect_out "Synced: 40 "
expect_eq "$(rx_stats .events_stored)" 1540

# ---- 14. HTTP/2 over TLS, negotiated by ALPN -----------------------------------
# A second nghttpx in front of the same receiver, logging each request's protocol.
H2_LOG="$TEST_TMP/h2-access.log"
h2_pid=""
for _ in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 40000))
  nghttpx --conf=/dev/null --workers=1 --no-ocsp --frontend="127.0.0.1,$port" \
    --backend="127.0.0.1,${RX_URL##*:};;proto=http/1.1" --errorlog-file="$TEST_TMP/h2-error.log" \
    --accesslog-file="$H2_LOG" --accesslog-format='$alpn $status $method $path' \
    "$RX_DIR/server.key" "$RX_DIR/server.pem" >/dev/null 2>&1 &
  h2_pid=$!
  echo "kill $h2_pid" >"$TEST_TMP/h2.cleanup"
  for _ in $(seq 1 100); do
    curl -s -o /dev/null --cacert "$RX_CA" "https://127.0.0.1:$port/api/v1/receiver/stats" && break 2
    kill -0 "$h2_pid" 2>/dev/null || break
    sleep 0.05
  done
  kill "$h2_pid" 2>/dev/null || true
  wait "$h2_pid" 2>/dev/null || true
  h2_pid=""
done
[ -n "$h2_pid" ] || fail "nghttpx for the h2 check did not start"; pass
H2_URL="https://127.0.0.1:$port"
# The session is for $RX_TLS; log in through this front too.
e2e_config "$H2_URL" "$WITH_CA" '{"max_batch_events": 250}'
login
emit_many 1000
: >"$H2_LOG"
sk sync now
expect_rc 0 "sync now over HTTP/2"
expect_out "Synced: 1000  Duplicates: 0"
expect_eq "$(queue_total)" 0
expect_eq "$(rx_stats .events_stored)" 2540 "stored through h2"
expect_eq "$(grep -c 'POST /api/v1/events/batch/' "$H2_LOG")" 4 "batches through the h2 front"
expect_eq "$(grep 'POST /api/v1/events/batch/' "$H2_LOG" | grep -vc '^h2 200 ')" 0 "batches not sent as h2 (200)"
# The receiver's own TLS URL (receiver-up.sh's nghttpx) is the same h2 front: one more pass there.
e2e_config "$RX_TLS" "$WITH_CA"
login
emit_many 10
sk sync now; expect_rc 0; expect_out "Synced: 10 "
expect_eq "$(rx_stats .events_stored)" 2550
expect_eq "$(rx_stats .duplicates)" 0 "no duplicates"
kill "$h2_pid"; wait "$h2_pid" 2>/dev/null || true; rm -f "$TEST_TMP/h2.cleanup"
