#!/usr/bin/env bash
# `sync emit --file` holds at most a chunk of events in memory, whatever the
# input's size (it read all of it into memory: ~3 KB per event), reserves the
# clock values for the whole file at once, and stays all or nothing: 20 000
# lines from a file and through a pipe, then a file with one bad line, then a
# file while single emits run beside it (they never get one of its values).
. "$(dirname "$0")/lib.sh"
N=20000
awk -v n=$N 'BEGIN { for (i = 1; i <= n; i++)
  printf "{\"event_type\":\"WPStatusChanged\",\"aggregate_id\":\"WP%05d\",\"payload\":{\"wp_id\":\"WP01\",\"previous_status\":\"planned\",\"new_status\":\"doing\"}}\n", i }' \
  >"$TEST_TMP/events.ndjson"
mkdir -p "$SPEC_KITTY_HOME"
printf '{"queue": {"max_events": %d}}\n' $((4 * N)) >"$SPEC_KITTY_HOME/sync.json"

# clock_value: the Lamport value the state root has handed out last.
clock_value() { jq -r .value "$SPEC_KITTY_HOME/clock.json"; }
# check_batch FIRST_ROW: the N rows from FIRST_ROW on hold the file's lines in
# order with consecutive clock values.
check_batch() {
  local got
  got=$(sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT count(*),
      sum(json_extract(data, '\$.aggregate_id') = printf('WP%05d', id - $1 + 1)),
      max(json_extract(data, '\$.lamport_clock')) - min(json_extract(data, '\$.lamport_clock')) + 1,
      count(DISTINCT json_extract(data, '\$.lamport_clock'))
    FROM queue WHERE id >= $1 AND id < $1 + $N")
  expect_eq "$got" "$N|$N|$N|$N" "rows, in order, with $N consecutive clock values"
}

# 1. From a file, with its peak memory (ASan's own memory would blur it).
set +e
/usr/bin/time -f 'peak_kb=%M' "$SK_BIN" sync emit --file "$TEST_TMP/events.ndjson" \
  >"$TEST_TMP/out" 2>"$TEST_TMP/err"
RC=$?
set -e
OUT="$(cat "$TEST_TMP/out")" ERR="$(cat "$TEST_TMP/err")"
expect_rc 0 "emit --file of $N lines"
expect_out "queued $N events"
case "$(ldd "$SK_BIN")" in
*libasan*) ;;
*)
  PEAK_KB="$(sed -n 's/^peak_kb=//p' <<<"$ERR")"
  [ -n "$PEAK_KB" ] && [ "$PEAK_KB" -lt 32768 ] ||
    fail "peak memory ${PEAK_KB:-?} KB for $N lines, expected under 32 MiB"
  pass
  ;;
esac
expect_eq "$(clock_value)" $N "clock after the file"
check_batch 1

# 2. Through a pipe (copied aside first, so a slow writer never keeps the locks).
set +e
"$SK_BIN" sync emit --file - <"$TEST_TMP/events.ndjson" | cat >"$TEST_TMP/out" 2>"$TEST_TMP/err"
set -e
expect_eq "$(cat "$TEST_TMP/out")" "queued $N events" "emit --file - from a pipe"
expect_eq "$(clock_value)" $((2 * N)) "clock after the pipe"
check_batch $((N + 1))
left=$(find "$SPEC_KITTY_HOME" -mindepth 1 ! -name 'queue.db*' ! -name 'clock.*' ! -name node-id \
  ! -name sync.json)
expect_eq "$left" "" "files left in the state root"

# 3. One bad line at the end: nothing queued, and no clock value spent.
{ cat "$TEST_TMP/events.ndjson"; echo '{"event_type": 5}'; } >"$TEST_TMP/bad.ndjson"
sk sync emit --file "$TEST_TMP/bad.ndjson"
expect_rc 2 "a file with a bad last line"
expect_err "bad.ndjson:$((N + 1)):"
expect_err "nothing queued"
expect_eq "$(sqlite3 "$SPEC_KITTY_HOME/queue.db" 'SELECT count(*) FROM queue')" $((2 * N)) "rows"
expect_eq "$(clock_value)" $((2 * N)) "clock after the refused file"

# 4. Single emits while a file is being queued: every clock value is handed out
#    once, and the file's values stay consecutive.
"$SK_BIN" sync emit --file "$TEST_TMP/events.ndjson" >"$TEST_TMP/file.out" 2>&1 & FILE_PID=$!
for i in $(seq 20); do
  "$SK_BIN" sync emit -t ErrorLogged -a x -p '{"error_type":"runtime","error_message":"m"}' >/dev/null ||
    fail "single emit $i beside emit --file"
done
wait "$FILE_PID" || fail "emit --file beside single emits: $(cat "$TEST_TMP/file.out")"; pass
expect_eq "$(sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT count(*), count(DISTINCT json_extract(data, '\$.lamport_clock')) FROM queue")" \
  "$((3 * N + 20))|$((3 * N + 20))" "rows and distinct clock values"
expect_eq "$(clock_value)" $((3 * N + 20)) "clock after the file and the single emits"
FILE_FIRST=$(sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT min(id) FROM queue WHERE event_type = 'WPStatusChanged' AND id > $((2 * N))")
check_batch "$FILE_FIRST"
