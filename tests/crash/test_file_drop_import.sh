#!/usr/bin/env bash
# Crash suite: `sync now` to a file-drop outbox killed -9 at random moments (one to three
# times, batches of 50 to 500), run again to completion; then `sync import` of that
# outbox into a second state root, killed too (up to twice), run again to completion.
# After every kill: every visible bundle is whole (its manifest's count and sha256), and
# each event is queued or in a bundle. At the end: the second queue holds every event
# exactly once, every bundle was moved to imported/, and no temporary folder is left.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/crash_lib.sh"

# bundles_whole OUTBOX: each bundle folder (in the outbox and in imported/) matches its
# manifest (sha256 and event_count), read here independently of the host's reader;
# prints their event ids. A few processes for all bundles, not a few per bundle: on a
# busy machine process starts dominate.
bundles_whole() {
  local b list=() manifests sums
  for b in "$1"/*.skb "$1"/imported/*.skb; do
    [ -d "$b" ] || continue
    [ -f "$b/manifest.json" ] && [ -f "$b/events.ndjson.gz" ] || fail "$b: a bundle without its files"
    list+=("$b")
  done
  [ ${#list[@]} -gt 0 ] || return 0
  manifests=$(jq -r '[(input_filename | sub("/manifest.json$"; "")), .data_sha256, .event_count] |
    join(" ")' "${list[@]/%//manifest.json}" | sort)
  sums=$(sha256sum "${list[@]/%//events.ndjson.gz}" | awk '{ sub("/events.ndjson.gz$", "", $2); print $2, $1 }' | sort)
  [ "$(cut -d' ' -f1,2 <<<"$manifests")" = "$sums" ] ||
    fail "bundles whose data does not match the manifest's sha256: $(comm -3 <(cut -d' ' -f1,2 <<<"$manifests") <(echo "$sums"))"
  for b in "${list[@]}"; do
    zcat "$b/events.ndjson.gz"
    echo "{\"end_of\": \"$b\"}"
  done | jq -r 'if .end_of then "END \(.end_of)" else .event_id end' |
    awk -v manifests="$manifests" '
      BEGIN { n = split(manifests, m, "\n"); for (i = 1; i <= n; i++) { split(m[i], f, " "); want[f[1]] = f[3] } }
      /^END / { if (lines != want[$2]) { print "FAIL " $2 ": " lines " lines, the manifest says " want[$2]; exit 1 }
                lines = 0; next }
      { lines++; print }' >"$TRIAL_DIR/bundled" || fail "$(grep '^FAIL ' "$TRIAL_DIR/bundled")"
  cat "$TRIAL_DIR/bundled"
}

# no_temp OUTBOX: nothing in the outbox but bundles and imported/ (with bundles): no
# temporary folder of a killed writer is left once a run completed.
no_temp() {
  local extra
  extra=$(cd "$1" && { ls -A; [ ! -d imported ] || ls -A imported | sed 's|^|imported/|'; } |
    grep -v -e '\.skb$' -e '^imported$' | tr '\n' ' ' || true)
  [ -z "$extra" ] || fail "left in the outbox $1: $extra"
  pass
}

# nothing_lost DB: each emitted event is in DB's queue or in a bundle.
nothing_lost() {
  { [ ! -f "$1" ] || sqlq "$1" "SELECT event_id FROM queue"; bundles_whole "$OUTBOX"; } |
    sort -u >"$TRIAL_DIR/have"
  expect_eq "$(comm -23 "$TRIAL_DIR/ids" "$TRIAL_DIR/have" | wc -l)" 0 "events neither queued nor in a bundle"
  expect_eq "$(comm -13 "$TRIAL_DIR/ids" "$TRIAL_DIR/have" | wc -l)" 0 "events that were never emitted"
}

# run_killed MS COMMAND...: runs spec-kitty COMMAND in the background, killed -9 at a
# random moment of a run that took MS alone; fails on an exit other than 0 or the kill.
run_killed() {
  local ms
  kill_moment ms "$1"
  shift
  "$SK_BIN" "$@" >/dev/null 2>&1 &
  kill_at "$((${EPOCHREALTIME/./} + ms * 1000)):$!"
  [ "${CRASH_RC[0]}" = 137 ] || [ "${CRASH_RC[0]}" = 0 ] || fail "$* exited ${CRASH_RC[0]}"
}

# drop N BATCH KILLS: the offline machine (state root a) queues N events and drains
# them to the outbox in batches of BATCH, killed KILLS times first.
drop() {
  export SPEC_KITTY_HOME="$TRIAL_DIR/a"
  OUTBOX="$TRIAL_DIR/outbox"
  config "{\"transport\": {\"plugin\": \"file-drop\", \"options\": {\"outbox\": \"$OUTBOX\"}},
    \"schedule\": {\"max_batch_events\": $2}}"
  emit_many "$1"
  sqlq "$SPEC_KITTY_HOME/queue.db" "SELECT event_id FROM queue" | sort >"$TRIAL_DIR/ids"
  local k
  for ((k = 1; k <= $3; k++)); do
    run_killed "$DROP_MS" sync now
    expect_intact "$SPEC_KITTY_HOME/queue.db"
    nothing_lost "$SPEC_KITTY_HOME/queue.db"
  done
  local t0=${EPOCHREALTIME/./}
  sk sync now
  LAST_MS=$(elapsed_ms "$t0")
  expect_rc 0 "sync now to the outbox after the kills"
  expect_out "Remaining: 0"
  expect_eq "$(sqlq "$SPEC_KITTY_HOME/queue.db" "SELECT count(*) FROM queue")" 0 "offline queue after completion"
  no_temp "$OUTBOX"
  nothing_lost "$SPEC_KITTY_HOME/queue.db"
}

# take_in KILLS: the connected machine (state root b) imports the outbox, killed KILLS
# times first; every event queued once, every bundle moved aside.
take_in() {
  export SPEC_KITTY_HOME="$TRIAL_DIR/b"
  local k bundles t0
  bundles=$(find "$OUTBOX" -name '*.skb' | wc -l)
  for ((k = 1; k <= $1; k++)); do
    run_killed "$IMPORT_MS" sync import "$OUTBOX"
    [ ! -f "$SPEC_KITTY_HOME/queue.db" ] || expect_intact "$SPEC_KITTY_HOME/queue.db"
    bundles_whole "$OUTBOX" >/dev/null
    expect_eq "$(find "$OUTBOX" -name '*.skb' | wc -l)" "$bundles" "bundles in and beside the outbox"
  done
  t0=${EPOCHREALTIME/./}
  sk sync import "$OUTBOX"
  LAST_MS=$(elapsed_ms "$t0")
  expect_rc 0 "sync import after the kills"
  expect_eq "$(find "$OUTBOX" -maxdepth 1 -name '*.skb' | wc -l)" 0 "bundles not moved to imported/"
  expect_eq "$(find "$OUTBOX/imported" -name '*.skb' | wc -l)" "$bundles" "bundles in imported/"
  no_temp "$OUTBOX"
  sqlq "$SPEC_KITTY_HOME/queue.db" "SELECT event_id FROM queue" | sort >"$TRIAL_DIR/imported"
  cmp -s "$TRIAL_DIR/ids" "$TRIAL_DIR/imported" ||
    fail "imported events differ from emitted: $(comm -23 "$TRIAL_DIR/ids" "$TRIAL_DIR/imported" | wc -l) missing, $(comm -13 "$TRIAL_DIR/ids" "$TRIAL_DIR/imported" | wc -l) foreign"
  pass
  expect_eq "$(sqlq "$SPEC_KITTY_HOME/queue.db" "SELECT count(*) FROM queue")" "$(wc -l <"$TRIAL_DIR/ids")" \
    "imported queue rows (each event once)"
  EVENTS=$((EVENTS + $(wc -l <"$TRIAL_DIR/ids"))) BUNDLES=$((BUNDLES + bundles))
}

trial() {
  local n batch kills imports
  rand n 1000 3000
  rand batch 50 500
  rand kills 1 3
  rand imports 0 2
  drop "$n" "$batch" "$kills"
  take_in "$imports"
}

# Calibration: 2 000 events in batches of 100, dropped and imported without a kill
# (checked like a trial), set the ranges of kill moments.
EVENTS=0 BUNDLES=0
TRIAL_DIR="$TEST_TMP/calibrate" && mkdir -p "$TRIAL_DIR"
DROP_MS=0 IMPORT_MS=0
drop 2000 100 0
DROP_MS=$LAST_MS
take_in 0
IMPORT_MS=$LAST_MS
echo "calibration: 2 000 events dropped in $DROP_MS ms, imported in $IMPORT_MS ms"
rm -rf "$TRIAL_DIR"
crash_trials trial
crash_summary "$EVENTS events in $BUNDLES bundles dropped, imported and checked"
