#!/usr/bin/env bash
# `sync emit --file` on input without end: a line is capped at 1 MiB (the
# largest envelope the server takes) and refused by number, fast and in bounded
# memory (`--file /dev/zero` grew past a gigabyte); a bad line still means
# nothing is queued, and so does more events than the queue can ever hold.
. "$(dirname "$0")/lib.sh"
LINE='{"event_type":"WPStatusChanged","aggregate_id":"WP01","payload":{"wp_id":"WP01","previous_status":"planned","new_status":"doing"}}'

# /dev/zero: one endless line. Outside ASan (which reserves terabytes of address
# space) the address space is capped too, so a regression fails instead of
# eating the machine's memory.
LIMIT=""
case "$(ldd "$SK_BIN")" in *libasan*) ;; *) LIMIT="ulimit -v 1048576;" ;; esac
set +e
timeout 20 bash -c "$LIMIT exec /usr/bin/time -f 'peak_kb=%M' \"\$0\" sync emit --file /dev/zero" \
  "$SK_BIN" >"$TEST_TMP/out" 2>"$TEST_TMP/err"
RC=$?
set -e
ERR="$(cat "$TEST_TMP/err")"
expect_rc 2 "emit --file /dev/zero"
expect_err "/dev/zero:1: line longer than 1 MiB"
expect_err "nothing queued"
PEAK_KB="$(sed -n 's/^peak_kb=//p' <<<"$ERR")"
[ -n "$PEAK_KB" ] && [ "$PEAK_KB" -lt 65536 ] || fail "peak memory ${PEAK_KB:-?} KB, expected under 64 MiB"; pass

# All or nothing: a good line, an over-long one, a good one: nothing is queued.
{ echo "$LINE"; head -c $((2 * 1024 * 1024)) /dev/zero | tr '\0' a; echo; echo "$LINE"; } >"$TEST_TMP/events.ndjson"
sk sync emit --file "$TEST_TMP/events.ndjson"; expect_rc 2 "a file with a 2 MiB line"
expect_err "events.ndjson:2: line longer than 1 MiB"
expect_eq "$(queue_ready)" 0 "events queued from a refused file"

# A NUL byte in a line is refused by number, not read as the end of the line.
{ echo "$LINE"; printf '%s\0junk\n' "$LINE"; } >"$TEST_TMP/nul.ndjson"
sk sync emit --file "$TEST_TMP/nul.ndjson"; expect_rc 2 "a line with a NUL byte"
expect_err "nul.ndjson:2: holds a NUL byte"
expect_eq "$(queue_ready)" 0 "events queued from a NUL file"

# Endless valid lines stop at queue.max_events rather than piling up in memory.
config '{"queue": {"max_events": 5}}'
set +e
yes "$LINE" | timeout 20 "$SK_BIN" sync emit --file - >"$TEST_TMP/out" 2>"$TEST_TMP/err"
RC=${PIPESTATUS[1]}
set -e
ERR="$(cat "$TEST_TMP/err")"
expect_rc 1 "endless valid lines"
expect_err "more than queue.max_events (5) events; nothing queued"
expect_eq "$(queue_ready)" 0 "events queued from endless input"

# A line of exactly 1 MiB is an event like any other.
PAD=$((1024 * 1024 - ${#LINE} - 9))
{ printf '{"event_type":"WPStatusChanged","aggregate_id":"WP01","payload":{"wp_id":"WP01","previous_status":"planned","new_status":"doing"},"pad":"'
  head -c "$PAD" /dev/zero | tr '\0' p; printf '"}\n'; } >"$TEST_TMP/big.ndjson"
expect_eq "$(head -1 "$TEST_TMP/big.ndjson" | tr -d '\n' | wc -c)" $((1024 * 1024)) "crafted line size"
sk sync emit --file "$TEST_TMP/big.ndjson"; expect_rc 0 "a line of exactly 1 MiB"
expect_out "queued 1 event"
