#!/usr/bin/env bash
# The main job on a fresh Debian machine (as root): install what is needed,
# build, start the reference receiver on loopback with a demo user, log in,
# emit sample events, sync them over http-batch, show status; then start the
# background service and watch one more event arrive without `sync now`; last,
# the service streams events over h2-stream (HTTP/2 through the receiver's
# nghttpx front) and the demo prints how long each took from emit to stored.
# Everything lives in a temporary directory (two state roots); nothing of ~/.spec-kitty is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh

BUILD=build/demo
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "build (cmake, Release) and install into $BUILD/_install"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSK_BUILD_TESTS=OFF -DSK_BUILD_BENCH=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
cmake --install "$BUILD" --prefix "$BUILD/_install" >/dev/null
export SK_PREFIX="$PWD/$BUILD/_install"
export PATH="$SK_PREFIX/bin:$PATH"
spec-kitty --version

DEMO="$(mktemp -d "${TMPDIR:-/tmp}/spec-kitty-demo-XXXXXX")"
export SPEC_KITTY_HOME="$DEMO/home"
H2_HOME="$DEMO/home-h2"
cleanup() {
  spec-kitty sync daemon stop >/dev/null 2>&1 || true
  SPEC_KITTY_HOME="$H2_HOME" spec-kitty sync daemon stop >/dev/null 2>&1 || true
  bash scripts/receiver-down.sh "$DEMO/receiver" >/dev/null 2>&1 || true
}
trap cleanup EXIT

step "start the reference receiver on loopback with a demo user"
echo "demo-password" | spec-kitty-receiver --users "$DEMO/users.json" --add-user demo --team demo-team
bash scripts/receiver-up.sh "$DEMO/receiver" --users "$DEMO/users.json" --quiet | grep -E 'RECEIVER_(URL|TLS_URL)='
. "$DEMO/receiver/receiver.env"
stats() { curl -fsS "$RECEIVER_URL/api/v1/receiver/stats" | jq -c '{stored: .events_stored, duplicates: .duplicates, rejected: .rejected, batches: .batches}' 2>/dev/null || curl -fsS "$RECEIVER_URL/api/v1/receiver/stats"; }

step "configure the engine (state root $SPEC_KITTY_HOME) and log in"
mkdir -p "$SPEC_KITTY_HOME"
printf '{"server_url": "%s", "transport": {"plugin": "http-batch"}, "schedule": {"min_batch_interval_ms": 0}}\n' \
  "$RECEIVER_URL" >"$SPEC_KITTY_HOME/sync.json"
echo "demo-password" | spec-kitty auth login --username demo --password-stdin
spec-kitty sync plugins

step "emit sample events (a feature with three work packages)"
spec-kitty sync emit --type FeatureCreated --aggregate-id 042-offline-sync \
  --payload '{"feature_slug":"042-offline-sync","feature_number":"042","target_branch":"main","wp_count":3}'
for wp in WP01 WP02 WP03; do
  spec-kitty sync emit --type WPCreated --aggregate-id $wp \
    --payload "{\"wp_id\":\"$wp\",\"title\":\"Work package $wp\",\"feature_slug\":\"042-offline-sync\"}"
done
spec-kitty sync emit --type WPAssigned --aggregate-id WP01 \
  --payload '{"wp_id":"WP01","agent_id":"claude","phase":"implementation"}'
spec-kitty sync emit --type WPStatusChanged --aggregate-id WP01 \
  --payload '{"wp_id":"WP01","previous_status":"planned","new_status":"doing","feature_slug":"042-offline-sync"}'
# Today's spec-kitty speaks the current vocabulary (schema_version 3.0.0): lanes, actors, missions.
spec-kitty sync emit --schema 3 --project-slug demo --type WPStatusChanged --aggregate-id WP02 \
  --payload '{"mission_slug":"042-offline-sync","wp_id":"WP02","from_lane":"planned","to_lane":"in_progress","actor":"claude","execution_mode":"worktree"}'
spec-kitty sync status

step "sync now over http-batch"
spec-kitty sync now
spec-kitty sync status --check
echo "receiver: $(stats)"

step "the background service delivers an event without \`sync now\`"
spec-kitty sync daemon start
spec-kitty sync emit --type WPStatusChanged --aggregate-id WP01 \
  --payload '{"wp_id":"WP01","previous_status":"doing","new_status":"for_review","feature_slug":"042-offline-sync"}'
for _ in $(seq 50); do
  [ "$(spec-kitty sync status --json | jq .queue.size)" = 0 ] && break
  sleep 0.1
done
spec-kitty sync status
echo "receiver: $(stats)"
spec-kitty sync daemon stop
step "the service streams events over h2-stream (HTTP/2 via nghttpx, TLS)"
# A second state root, so the http-batch setup above stays as it was.
export SPEC_KITTY_HOME="$H2_HOME"
mkdir -p "$SPEC_KITTY_HOME"
jq -n --arg url "$RECEIVER_TLS_URL" --arg ca "$RECEIVER_CA" \
  '{server_url: $url, transport: {plugin: "h2-stream", options: {ca_file: $ca}}}' \
  >"$SPEC_KITTY_HOME/sync.json"
echo "demo-password" | spec-kitty auth login --username demo --password-stdin
spec-kitty sync daemon start
H2_EVENTS=20
ids=() emitted_ms=()
for n in $(seq "$H2_EVENTS"); do
  emitted_ms+=("$(($(date +%s%N) / 1000000))")
  ids+=("$(spec-kitty sync emit --type WPStatusChanged --aggregate-id WP03 \
    --payload "{\"wp_id\":\"WP03\",\"previous_status\":\"planned\",\"new_status\":\"doing\",\"note\":\"h2 event $n\"}")")
  sleep 0.05
done
id_list=$(printf "'%s'," "${ids[@]}")
stored_count() { sqlite3 "$RECEIVER_DB" "SELECT count(*) FROM events WHERE event_id IN (${id_list%,})"; }
for _ in $(seq 100); do
  [ "$(stored_count)" = "$H2_EVENTS" ] && break
  sleep 0.1
done
if [ "$(stored_count)" != "$H2_EVENTS" ]; then
  echo "demo.sh: only $(stored_count) of $H2_EVENTS h2-stream events reached the receiver within 10 s" >&2
  spec-kitty sync status >&2 || true
  exit 1
fi
# emit→stored of each event: from just before its `sync emit` to the receiver's
# received_at (its wall clock, written in the transaction that stores the row).
lat=()
for i in "${!ids[@]}"; do
  at=$(sqlite3 "$RECEIVER_DB" "SELECT received_at FROM events WHERE event_id = '${ids[$i]}'")
  lat+=("$((at - emitted_ms[i]))")
done
mapfile -t lat < <(printf '%s\n' "${lat[@]}" | sort -n)
echo "$H2_EVENTS events emitted 50 ms apart, emit→stored: p50 ${lat[$(((H2_EVENTS + 1) / 2 - 1))]} ms, max ${lat[$((H2_EVENTS - 1))]} ms"
spec-kitty sync status
echo "receiver: $(stats)"
spec-kitty sync daemon stop
step "done: every event reached the receiver"
