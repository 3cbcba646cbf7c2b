# shellcheck shell=bash disable=SC2034  # NJ_* are for the sourcing test
# Helpers of the nats.* tests (source after tests/integration/lib.sh): the example
# transport as nats.test_build built it out of tree against the install, and real
# nats-server processes on loopback, each in its own folder of $TEST_TMP, killed
# when the test exits.
NJ_BUILD="$SK_BUILD_DIR/nats-example"
NJ_SO="$NJ_BUILD/nats-jetstream.so"
NJ_CONSUMER="$NJ_BUILD/sk-nats-consumer"

# A loopback port nobody listens on now.
nats_free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

# nats_start NAME PORT [nats-server flags...]: starts nats-server -js in $TEST_TMP/NAME
# (store kept across restarts of NAME) and waits until it is ready; PORT -1 lets the
# server pick a free one. Sets NATS_PORT. Returns 1 when a port it was given is
# taken (another process won the race: pick others); any other failure fails the test.
nats_start() {
  local name=$1 port=$2 dir="$TEST_TMP/$1" pid
  shift 2
  mkdir -p "$dir"
  nats-server -js -a 127.0.0.1 -p "$port" -sd "$dir/store" "$@" >"$dir/log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/pid"
  # Only the process we started, and only while it still is nats-server.
  echo "grep -qa nats-server /proc/$pid/cmdline && kill -KILL $pid" >"$TEST_TMP/nats-$name.cleanup"
  for _ in $(seq 1 400); do
    if ! kill -0 "$pid" 2>/dev/null; then
      grep -q "address already in use" "$dir/log" && return 1
      fail "nats-server $name exited: $(tail -n 3 "$dir/log")"
    fi
    if grep -q "Server is ready" "$dir/log"; then
      NATS_PORT=$(grep -m1 -o 'Listening for client connections on [0-9.]*:[0-9]*' "$dir/log" | sed 's/.*://')
      return 0
    fi
    sleep 0.05
  done
  fail "nats-server $name is not ready: $(tail -n 3 "$dir/log")"
}

# nats_start_tls NAME CERT_DIR: nats_start NAME on a free port, requiring TLS with the
# server certificate in CERT_DIR (scripts/test-certs.sh made it).
nats_start_tls() {
  printf 'tls {\n  cert_file: "%s"\n  key_file: "%s"\n  timeout: 2\n}\n' \
    "$2/server.pem" "$2/server.key" >"$TEST_TMP/$1.conf"
  nats_start "$1" -1 -c "$TEST_TMP/$1.conf" || fail "nats-server $1 did not start"
  grep -q "TLS required for client connections" "$TEST_TMP/$1/log" || fail "nats-server $1 without TLS"
}

# test_certs DIR CA_NAME [SERVER_NAMES]: a CA and a server certificate it signed, in DIR.
test_certs() {
  bash "$SK_SOURCE_DIR/scripts/test-certs.sh" "$@" || fail "openssl could not make certificates in $1"
}

# nats_stop NAME [SIGNAL]: stops the server started as NAME (TERM by default) and waits.
nats_stop() {
  local pid
  pid=$(cat "$TEST_TMP/$1/pid")
  kill "-${2:-TERM}" "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# nj_config OPTIONS_JSON [SCHEDULE_JSON]: sync.json for the example transport.
nj_config() {
  config "{\"transport\": {\"plugin\": \"$NJ_SO\", \"options\": $1}, \"schedule\": ${2:-{\}}}"
  jq -e . "$SPEC_KITTY_HOME/sync.json" >/dev/null || fail "bad sync.json written"
}

# nj_consume DB URLS STREAM [DURABLE] [SUBJECT] [CONSUMER FLAGS...]: drains the stream
# into DB with the example consumer (stops after NJ_IDLE_MS, default 1.5 s, without
# messages); its summary is in $OUT.
nj_consume() {
  sk_run "$NJ_CONSUMER" --db "$1" --servers "$2" --stream "$3" --durable "${4:-test}" \
    --subject "${5:-spec-kitty.events.*}" --idle-exit "${NJ_IDLE_MS:-1500}" "${@:6}"
  expect_rc 0 "consumer"
}

# queued_ids FILE: the event ids now in the queue, sorted.
queued_ids() { sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT event_id FROM queue ORDER BY 1" >"$1"; }

# stored_ids DB: the event ids the consumer stored, sorted.
stored_ids() { sqlite3 "$1" "SELECT event_id FROM events ORDER BY 1"; }

wait_for() { # wait_for SECONDS CONDITION...
  local end=$(($(date +%s%N) + $1 * 1000000000))
  shift
  until "$@"; do [ "$(date +%s%N)" -lt $end ] || return 1; sleep 0.05; done
}
queue_is() { [ "$(queue_ready)" -eq "$1" ]; }

# js_api PORT SUBJECT JSON: one JetStream API request over the plain NATS protocol (no
# client tool in Debian); prints the answer's JSON.
js_api() {
  local line
  exec 3<>"/dev/tcp/127.0.0.1/$1"
  printf 'CONNECT {"verbose":false}\r\nSUB _resp 1\r\nPUB %s _resp %d\r\n%s\r\n' "$2" "${#3}" "$3" >&3
  while IFS= read -r -t 5 line <&3; do
    if [[ $line == MSG\ _resp* ]]; then
      IFS= read -r -t 5 line <&3
      echo "${line%$'\r'}"
      break
    fi
  done
  exec 3<&-
}
