#!/usr/bin/env bash
# http-batch through a real HTTP proxy (tinyproxy): HTTPS through CONNECT with
# https_proxy, the plain loopback receiver with http_proxy, no_proxy honoured, and a
# proxy that refuses CONNECT reported in one clear line.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/e2e_lib.sh"
command -v tinyproxy >/dev/null || fail "tinyproxy not installed (scripts/deps.sh)"

# px_start NAME CONNECT_PORT: a tinyproxy on a free loopback port that tunnels CONNECT
# to CONNECT_PORT only (it answers 403 to any other); sets PX_URL and PX_LOG.
px_start() {
  local dir="$TEST_TMP/$1" port
  mkdir -p "$dir"
  PX_LOG="$dir/tinyproxy.log"
  for _ in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    printf '%s\n' "Port $port" "Listen 127.0.0.1" "Timeout 60" "LogFile \"$PX_LOG\"" \
      "LogLevel Info" "MaxClients 20" "Allow 127.0.0.1" "ConnectPort $2" >"$dir/tinyproxy.conf"
    tinyproxy -d -c "$dir/tinyproxy.conf" >"$dir/out" 2>&1 &
    echo "kill $!" >"$TEST_TMP/$1.cleanup"
    for _ in $(seq 50); do
      if curl -s -o /dev/null -x "http://127.0.0.1:$port" "http://127.0.0.1:$port/" 2>/dev/null; then
        PX_URL="http://127.0.0.1:$port"
        return
      fi
      kill -0 "$!" 2>/dev/null || break # lost the port race: another one
      sleep 0.1
    done
  done
  fail "tinyproxy did not start: $(cat "$dir/out")"
}
# requests_seen PATTERN: proxy log lines of requests that match PATTERN.
requests_seen() { grep -c "Request (file descriptor [0-9]*): $1" "$PX_LOG" || true; }

rx_start rx
TLS_PORT=${RX_TLS##*:}
px_start px "$TLS_PORT"
unset http_proxy https_proxy HTTPS_PROXY no_proxy NO_PROXY all_proxy ALL_PROXY

# HTTPS through the proxy's CONNECT tunnel (TLS verified end to end).
e2e_config "$RX_TLS" "{\"ca_file\": \"$RX_CA\"}"
export https_proxy="$PX_URL"
login
# The session endpoints of a loopback server are never proxied (host/auth.c): no
# proxy can reach the client's own loopback.
expect_eq "$(requests_seen CONNECT)" 0 "CONNECTs of a loopback login"
emit_many 30
sk sync now; expect_rc 0 "sync now through https_proxy"; expect_out "Synced: 30"
expect_eq "$(rx_rows)" 30 "events stored behind the proxy"
expect_ge "$(requests_seen "CONNECT 127.0.0.1:$TLS_PORT")" 1 "CONNECT tunnels of the sync"
sk sync status --check; expect_rc 0 "status --check through the proxy"; expect_out "Connected"

# no_proxy: a proxy that is not there is bypassed for the hosts it names.
export https_proxy="http://127.0.0.1:9"
emit_many 5
sk sync now; expect_rc 1 "sync now through a proxy that is down"
expect_err "127.0.0.1 port 9" # the proxy it could not reach
export no_proxy="127.0.0.1"
sk sync now; expect_rc 0 "sync now with no_proxy naming the server"; expect_out "Synced: 5"
unset no_proxy

# A proxy that refuses CONNECT (to this port): one line that says so, events kept.
px_start px-refusing 443
export https_proxy="$PX_URL"
emit_many 7
sk sync now; expect_rc 1 "sync now through a proxy refusing CONNECT"
expect_eq "$(queue_ready)" 7 "events kept"
expect_eq "$(grep -c "proxy" <<<"$ERR$OUT")" 1 "lines naming the proxy: $ERR$OUT"
grep -qF "proxy refused CONNECT to $RX_TLS/api/v1/events/batch/ (HTTP 403)" <<<"$ERR$OUT" ||
  fail "refusal message: $ERR$OUT"; pass
expect_ge "$(requests_seen "CONNECT 127.0.0.1:$TLS_PORT")" 1 "refused CONNECT reached the proxy"
unset https_proxy

# The plain loopback receiver through http_proxy (the request line carries the full URL).
px_start px-plain "$TLS_PORT"
export http_proxy="$PX_URL"
e2e_config "$RX_URL"
login
sk sync now; expect_rc 0 "sync now through http_proxy"; expect_out "Synced: 7"
expect_ge "$(requests_seen "POST $RX_URL/api/v1/events/batch/")" 1 "batch POSTed through http_proxy"
expect_eq "$(rx_rows)" 42 "every event stored"
