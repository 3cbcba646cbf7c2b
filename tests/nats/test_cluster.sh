#!/usr/bin/env bash
# A three-node JetStream cluster on loopback and a stream of 3 replicas: the stream's
# leader is killed during delivery; every event still ends in the
# stream exactly once (resends after the failover fall inside the duplicate window),
# and the consumer, reading from the two survivors, sees each once.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/nats_lib.sh"
echo "\"$SK_BIN\" sync daemon stop --timeout 10" >"$TEST_TMP/a-daemon.cleanup"
N=6000
declare -A CLIENT MON ROUTE
# cluster_up: three nodes routed to each other; 1 when a chosen port was taken meanwhile.
cluster_up() {
  local n routes
  for n in n1 n2 n3; do MON[$n]=$(nats_free_port); ROUTE[$n]=$(nats_free_port); done
  routes="nats://127.0.0.1:${ROUTE[n1]}, nats://127.0.0.1:${ROUTE[n2]}, nats://127.0.0.1:${ROUTE[n3]}"
  for n in n1 n2 n3; do
    rm -rf "${TEST_TMP:?}/$n"
    mkdir -p "$TEST_TMP/$n"
    printf 'server_name: %s\nhttp: 127.0.0.1:%s\ncluster { name: sk, listen: 127.0.0.1:%s, routes: [%s] }\n' \
      "$n" "${MON[$n]}" "${ROUTE[$n]}" "$routes" >"$TEST_TMP/$n/server.conf"
  done
  for n in n1 n2 n3; do
    if ! nats_start "$n" -1 -c "$TEST_TMP/$n/server.conf"; then
      for n in n1 n2 n3; do [ ! -f "$TEST_TMP/$n/pid" ] || nats_stop "$n" KILL; done
      return 1
    fi
    CLIENT[$n]=$NATS_PORT
  done
}
up=0
for _ in 1 2 3 4 5; do cluster_up && { up=1; break; }; done
[ $up = 1 ] || fail "no free ports for the cluster after 5 tries"; pass
ALL="[\"nats://127.0.0.1:${CLIENT[n1]}\", \"nats://127.0.0.1:${CLIENT[n2]}\", \"nats://127.0.0.1:${CLIENT[n3]}\"]"
# Small batches, at most 1500 events/s (a streaming transport knows no batch spacing, only
# the token bucket): delivery lasts ~4 s, long enough to kill a node during it.
nj_config "{\"servers\": $ALL, \"create_stream\": true, \"replicas\": 3, \"publish_timeout_ms\": 2000}" \
  '{"interval_s": 1, "max_batch_events": 100, "max_events_per_s": 1500, "backoff_min_ms": 100, "backoff_max_ms": 500}'
emit_many $N
queued_ids "$TEST_TMP/ids"
sk sync daemon start; expect_rc 0

# The stream's leader, from a live node's monitoring endpoint.
leader() {
  local n
  for n in n1 n2 n3; do
    curl -sf "http://127.0.0.1:${MON[$n]}/jsz?streams=true" 2>/dev/null |
      jq -er '[.account_details[]?.stream_detail[]? | select(.name == "SPEC_KITTY_EVENTS")][0].cluster.leader' &&
      return 0
  done
  return 1
}
under() { [ "$(queue_ready)" -lt "$1" ]; }
wait_for 60 under $((N * 3 / 4)) || fail "delivery did not start: $(queue_ready) queued; $(tail -n 3 "$SPEC_KITTY_HOME/sync-daemon.log" 2>/dev/null)"; pass
victim=$(leader) || fail "the stream has no leader"; pass
nats_stop "$victim" KILL
left=$(queue_ready)
[ "$left" -gt 0 ] || fail "delivery ended before the kill"; pass
echo "killed $victim (the stream leader) with $left events still queued"
wait_for 90 queue_is 0 || fail "not delivered after the failover: $(queue_ready) queued"; pass
grep -v "synced 100, duplicates 0," "$SPEC_KITTY_HOME/sync-daemon.log" || true
sk sync daemon stop; expect_rc 0
expect_eq "$(queue_parked)" 0 "parked events"

survivors=""
for n in n1 n2 n3; do [ "$n" = "$victim" ] || survivors+="${survivors:+,}nats://127.0.0.1:${CLIENT[$n]}"; done
mon=$(for n in n1 n2 n3; do [ "$n" = "$victim" ] || { echo "${MON[$n]}"; break; }; done)
expect_eq "$(curl -sf "http://127.0.0.1:$mon/jsz?streams=true&config=true" |
  jq '[.account_details[].stream_detail[] | select(.name == "SPEC_KITTY_EVENTS")][0] | .config.num_replicas, .state.messages' | paste -sd' ')" \
  "3 $N" "stream replicas and messages"
# A failover may still settle: the consumer waits longer for the first messages.
NJ_IDLE_MS=4000 nj_consume "$TEST_TMP/c.db" "$survivors" SPEC_KITTY_EVENTS
expect_out "received $N messages: $N events stored, 0 duplicates dropped"
diff <(stored_ids "$TEST_TMP/c.db") "$TEST_TMP/ids" >/dev/null || fail "stored ids differ from the queued ones"; pass
