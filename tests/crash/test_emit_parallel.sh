#!/usr/bin/env bash
# Crash suite: parallel `sync emit` processes (single events and --file) killed -9 at
# random moments. After every round: every id an emit printed is queued, each --file
# is queued whole or not at all, no other row exists, every Lamport value is distinct,
# PRAGMA integrity_check is ok, and a process that was not killed succeeded.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/crash_lib.sh"

ROUNDS=3
MAX_LINES=1500

# start_emitter TAG KIND K: starts one `sync emit` (KIND single, or file with its
# events written before) in the background, to be killed at a random moment of its
# run (KILL_AT); its expectation joins TAGS.
start_emitter() {
  local tag=$1 kind=$2 k=$3 ms
  if [ "$kind" = file ]; then
    "$SK_BIN" sync emit --file "$TRIAL_DIR/$tag.ndjson" >"$TRIAL_DIR/$tag.out" 2>"$TRIAL_DIR/$tag.err" &
  else
    "$SK_BIN" sync emit -t HistoryAdded -a WP01 \
      -p "{\"wp_id\":\"WP01\",\"entry_type\":\"note\",\"entry_content\":\"$tag#1\"}" \
      >"$TRIAL_DIR/$tag.out" 2>"$TRIAL_DIR/$tag.err" &
  fi
  kill_moment ms $((SINGLE_MS + FILE_MS * (k - 1) / MAX_LINES))
  KILL_AT+=("$((${EPOCHREALTIME/./} + ms * 1000)):$!")
  TAGS+=("$tag $kind $k")
}

# round R: 3 to 6 emitters at once, each killed at a random moment.
round() {
  local r=$1 n p i kinds=() sizes=()
  KILL_AT=() TAGS=()
  rand n 3 6
  for ((p = 1; p <= n; p++)); do
    rand "kinds[p]" 0 1
    rand "sizes[p]" 1 $MAX_LINES
    [ "${kinds[p]}" = 0 ] || write_events "$TRIAL_DIR/r${r}p$p.ndjson" "r${r}p$p" "${sizes[p]}"
  done
  for ((p = 1; p <= n; p++)); do
    if [ "${kinds[p]}" = 1 ]; then start_emitter "r${r}p$p" file "${sizes[p]}"; else start_emitter "r${r}p$p" single 1; fi
  done
  kill_at "${KILL_AT[@]}"
  for i in "${!TAGS[@]}"; do echo "${TAGS[i]} ${CRASH_RC[i]}" >>"$TRIAL_DIR/ledger"; done
}

# check_queue: the queue against the ledger of every emitter so far in this trial.
check_queue() {
  local db="$SPEC_KITTY_HOME/queue.db"
  declare -A rows=() first=()
  local tag n id kind k rc out total=0 want_total=0 counts=""
  # A process killed while creating the queue may leave no file, or one without the table.
  if [ -f "$db" ]; then
    expect_intact "$db"
    [ "$(sqlq "$db" "SELECT count(*) FROM sqlite_master WHERE name = 'queue'")" = 0 ] ||
      counts=$(sqlq "$db" "SELECT substr(c, 1, instr(c, '#') - 1), count(*), min(event_id) FROM
        (SELECT $KEY AS c, event_id FROM queue) GROUP BY 1")
  fi
  while IFS='|' read -r tag n id; do
    [ -n "$tag" ] || continue
    rows[$tag]=$n first[$tag]=$id
    total=$((total + n))
  done <<<"$counts"
  while read -r tag kind k rc; do
    n=${rows[$tag]:-0}
    unset "rows[$tag]"
    out=$(cat "$TRIAL_DIR/$tag.out")
    [ "$rc" = 0 ] || [ "$rc" = 137 ] || fail "$tag ($kind) exit $rc without a kill: $(cat "$TRIAL_DIR/$tag.err")"
    [ "$n" = 0 ] || [ "$n" = "$k" ] || fail "$tag: $n of the $k events of one --file are queued (half applied)"
    if [ "$rc" = 0 ]; then
      [ "$n" = "$k" ] || fail "$tag ($kind) exited 0 but $n of $k events are queued"
    fi
    if [ "$kind" = file ] && [ -n "$out" ]; then
      expect_eq "$out" "queued $k event$([ "$k" = 1 ] || echo s)" "$tag output"
      [ "$n" = "$k" ] || fail "$tag printed '$out' but $n events are queued"
    elif [ "$kind" = single ] && { [ -n "$out" ] || [ "$rc" = 0 ]; }; then
      [[ $out =~ ^[0-9A-HJKMNP-TV-Z]{26}$ ]] || fail "$tag printed '$out', not an event id"
      [ "$n" = 1 ] && [ "${first[$tag]}" = "$out" ] || fail "$tag printed $out, but it is not queued"
    fi
    want_total=$((want_total + n))
  done <"$TRIAL_DIR/ledger"
  [ ${#rows[@]} = 0 ] || fail "rows of no emitter in the queue: ${!rows[*]}"
  expect_eq "$total" "$want_total" "rows"
  CHECKED_ROWS=$total
  [ -n "$counts" ] || { expect_eq "$total" 0 "rows in a queue without its table"; return 0; }
  expect_eq "$(sqlq "$db" "SELECT count(*) FROM queue")" "$total" "rows by count(*)"
  expect_eq "$(sqlq "$db" "SELECT count(*) - count(DISTINCT json_extract(data, '$.lamport_clock'))
    FROM queue")" 0 "Lamport values handed out twice"
  expect_eq "$(sqlq "$db" "SELECT count(*) FROM queue WHERE json_type(data, '$.lamport_clock')
    != 'integer' OR json_extract(data, '$.lamport_clock') < 1")" 0 "rows without a Lamport value"
  # The clock is ahead of every queued value, so the next emit cannot repeat one.
  expect_ge "$(jq -r .value "$SPEC_KITTY_HOME/clock.json")" \
    "$(sqlq "$db" "SELECT max(json_extract(data, '$.lamport_clock')) FROM queue")" "clock.json value"
}

trial() {
  export SPEC_KITTY_HOME="$TRIAL_DIR/home"
  local r
  for ((r = 1; r <= ROUNDS; r++)); do
    round "$r"
    check_queue
  done
  QUEUED=$((QUEUED + CHECKED_ROWS))
}

# Calibration: the solo time of a single emit (into a new state root) and of a file of
# MAX_LINES, which set the range of kill moments.
TRIAL_DIR="$TEST_TMP/calibrate" && mkdir -p "$TRIAL_DIR"
export SPEC_KITTY_HOME="$TRIAL_DIR/home"
SINGLE_MS=0 FILE_MS=0
t0=${EPOCHREALTIME/./}
sk sync emit -t HistoryAdded -a WP01 -p '{"wp_id":"WP01","entry_type":"note","entry_content":"c#1"}'
expect_rc 0 "calibration emit"
SINGLE_MS=$(elapsed_ms "$t0")
write_events "$TRIAL_DIR/c.ndjson" c2 $MAX_LINES
t0=${EPOCHREALTIME/./}
sk sync emit --file "$TRIAL_DIR/c.ndjson"
expect_rc 0 "calibration emit --file"
FILE_MS=$(elapsed_ms "$t0")
echo "calibration: emit $SINGLE_MS ms, emit --file of $MAX_LINES lines $FILE_MS ms"
rm -rf "$TRIAL_DIR"
QUEUED=0
crash_trials trial
crash_summary "$QUEUED events queued and checked"
