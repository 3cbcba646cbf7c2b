#!/usr/bin/env bash
# The transport and the consumer built with AddressSanitizer + UBSan (the installed host
# loads the sanitizer runtime through LD_PRELOAD), through the paths that free what
# threads still hold: the checker (send, submit, probe, cancel), the service with the
# server killed and restarted under it, then stopped while the server hangs (cancel and
# destroy with messages still in flight), and over TLS (options refused, a certificate
# refused, delivery). Any report of the sanitizers fails the test.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/nats_lib.sh"
echo "\"$SK_BIN\" sync daemon stop --timeout 10" >"$TEST_TMP/a-daemon.cleanup"
ASAN="$TEST_TMP/asan"
FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer"
cmake -S "$SK_SOURCE_DIR/examples/nats-jetstream" -B "$ASAN" -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_FLAGS="$FLAGS" -DCMAKE_MODULE_LINKER_FLAGS="$FLAGS" -DCMAKE_EXE_LINKER_FLAGS="$FLAGS" \
  -DCMAKE_PREFIX_PATH="$SK_PREFIX" >"$TEST_TMP/cmake.log" 2>&1 || fail "configure: $(tail -5 "$TEST_TMP/cmake.log")"
cmake --build "$ASAN" -j2 >>"$TEST_TMP/cmake.log" 2>&1 || fail "build: $(tail -5 "$TEST_TMP/cmake.log")"
mkdir -p "$TEST_TMP/reports"
export ASAN_OPTIONS="detect_leaks=1:log_path=$TEST_TMP/reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$TEST_TMP/reports/ubsan"
PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
# Every spec-kitty run of this test (and the service it starts) carries the runtime.
printf '#!/bin/sh\nLD_PRELOAD="%s" exec "%s" "$@"\n' "$PRELOAD" "$SK_BIN" >"$TEST_TMP/sk-asan"
chmod 700 "$TEST_TMP/sk-asan"
SK_BIN="$TEST_TMP/sk-asan"
no_reports() {
  ! compgen -G "$TEST_TMP/reports/*" >/dev/null || fail "sanitizer report: $(head -c 3000 "$TEST_TMP"/reports/*)"
  pass
}

nats_start n1 -1 || fail "nats-server did not start"
port=$NATS_PORT
URL="nats://127.0.0.1:$port"
sk_run env LD_PRELOAD="$PRELOAD" "$SK_PREFIX/bin/spec-kitty-transport-check" "$ASAN/nats-jetstream.so" \
  "{\"servers\": [\"$URL\"], \"create_stream\": true}"
expect_rc 0 "conformance check: $OUT"
no_reports

# The service delivers 2000 events at 1000 per second (a streaming transport is paced by
# the token bucket, not batch spacing); the server is killed under it and
# comes back; the service reconnects and delivers the rest.
config "{\"transport\": {\"plugin\": \"$ASAN/nats-jetstream.so\", \"options\": {\"servers\": [\"$URL\"]}},
  \"schedule\": {\"interval_s\": 1, \"max_batch_events\": 100, \"max_events_per_s\": 1000,
  \"backoff_min_ms\": 100, \"backoff_max_ms\": 300, \"shutdown_deadline_ms\": 300}}"
emit_many 2000
sk sync daemon start; expect_rc 0
under() { [ "$(queue_ready)" -lt "$1" ]; }
wait_for 30 under 1500 || fail "delivery did not start: $(queue_ready) queued"; pass
nats_stop n1 KILL
sleep 0.5
nats_start n1 "$port" || fail "port $port was taken while the server was down"
wait_for 30 queue_is 0 || fail "not delivered after the restart: $(queue_ready) queued"; pass

# Stopped while the server hangs (SIGSTOP): batches in flight are cancelled, the
# plugin is destroyed with messages still owned by libnats, and nothing leaks.
emit_many 2000
wait_for 30 under 1900 || fail "delivery did not resume: $(queue_ready) queued"; pass
kill -STOP "$(cat "$TEST_TMP/n1/pid")"
sleep 0.3
sk sync daemon stop; expect_rc 0 "stop while the server hangs"
kill -CONT "$(cat "$TEST_TMP/n1/pid")"
expect_eq "$(queue_parked)" 0 "parked events"

# What was acknowledged is settled; the rest goes now, and the consumer sees each once.
sk sync now; expect_rc 0; expect_out "Remaining: 0"
sk_run env LD_PRELOAD="$PRELOAD" "$ASAN/sk-nats-consumer" --db "$TEST_TMP/c.db" --servers "$URL" \
  --stream SPEC_KITTY_EVENTS --durable asan --idle-exit 1500
expect_rc 0 "consumer"
expect_out "4006 events stored"
no_reports

# TLS: an instance refused on its options before libnats was used, one refused by the
# server's certificate, then one that delivers; nothing leaks on any of these paths.
test_certs "$TEST_TMP/ca" "nats test CA"
test_certs "$TEST_TMP/other" "other CA"
nats_start_tls tls "$TEST_TMP/ca"
TLS_URL="nats://127.0.0.1:$NATS_PORT"
emit_many 50
for rc_ca in "2 $TEST_TMP/absent.pem" "1 $TEST_TMP/other/ca.pem" "0 $TEST_TMP/ca/ca.pem"; do
  config "{\"transport\": {\"plugin\": \"$ASAN/nats-jetstream.so\", \"options\":
    {\"servers\": [\"$TLS_URL\"], \"create_stream\": true, \"tls_ca\": \"${rc_ca#* }\"}}}"
  sk sync now; expect_rc "${rc_ca%% *}" "sync now with tls_ca ${rc_ca#* }"
done
expect_out "Synced: 50 "
no_reports
