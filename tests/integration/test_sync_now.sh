#!/usr/bin/env bash
# `sync now` through the scripted transport: summary, exit codes, parked/retry,
# --report, --json, plugins listing, and two drainers at once.
. "$(dirname "$0")/lib.sh"
: "${SK_TEST_PLUGIN_DIR:?}"
SCRIPTED="$SK_TEST_PLUGIN_DIR/scripted.so"
REC="$TEST_TMP/record.txt"

emit_many 2500
IDS=($(sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT event_id FROM queue ORDER BY timestamp, id"))
config "{\"transport\": {\"plugin\": \"$SCRIPTED\", \"options\": {\"record\": \"$REC\",
  \"outcomes\": {\"${IDS[5]}\": \"duplicate\", \"${IDS[6]}\": \"rejected\", \"${IDS[7]}\": \"permanent\",
                 \"${IDS[8]}\": \"pending\"}}},
  \"schedule\": {\"max_retries\": 1}}"
sk sync now --report "$TEST_TMP/report.json"
expect_rc 1 "sync now with a rejected event left"
expect_out "Synced: 2496  Duplicates: 1  Pending: 1  Rejected: 1  Parked: 1  Remaining: 2"
expect_out "rejected ${IDS[6]}: scripted rejected"
expect_out "parked ${IDS[7]}: scripted permanent"
expect_eq "$(jq length "$TEST_TMP/report.json")" 2 "report entries"
expect_eq "$(jq -r '.[] | select(.outcome=="parked") | .event_id' "$TEST_TMP/report.json")" "${IDS[7]}"
expect_eq "$(wc -l <"$REC")" 2500 "events handed to the transport"
expect_eq "$(queue_ready)" 2; expect_eq "$(queue_parked)" 1

# Second pass: the rejected one passes max_retries (1) and is parked; pending stays.
sk sync now --json; expect_rc 0 "only pending left"
expect_eq "$(jq -r .parked <<<"$OUT")" 1
expect_eq "$(jq -r .pending <<<"$OUT")" 1
expect_eq "$(jq -r .remaining <<<"$OUT")" 1
sk sync parked; expect_rc 0; expect_out "2 parked events"; expect_out "${IDS[7]}"
sk sync parked --json; expect_eq "$(jq length <<<"$OUT")" 2
expect_eq "$(jq -r ".[] | select(.event_id==\"${IDS[6]}\") | .retry_count" <<<"$OUT")" 2

# retry by id and --all.
sk sync retry "${IDS[6]}"; expect_rc 0; expect_out "1 event back in the queue"
sk sync retry 01AAAAAAAAAAAAAAAAAAAAAAAA; expect_rc 1; expect_err "were not parked"
sk sync retry --all; expect_rc 0; expect_out "1 event back in the queue"
expect_eq "$(queue_parked)" 0
sk sync retry; expect_rc 2

# A failing transport: exit 1, the reason shown, nothing lost.
config "{\"transport\": {\"plugin\": \"$SCRIPTED\", \"options\": {\"steps\": [{\"rc\": \"failed\", \"detail\": \"connection refused\"}]}}}"
sk sync now; expect_rc 1; expect_err "sync stopped: connection refused"
expect_eq "$(queue_ready)" 3

# Plugin errors are exit 2 with the file named.
config '{"transport": {"plugin": "nosuch"}}'
sk sync now; expect_rc 2; expect_err 'transport plugin "nosuch" not found'
config "{\"transport\": {\"plugin\": \"$SK_TEST_PLUGIN_DIR/abi_wrong_major.so\"}}"
sk sync now; expect_rc 2; expect_err "ABI major mismatch"
expect_eq "$(queue_ready)" 3

# plugins: the installed transports and the fixtures, broken ones with reasons.
config "{\"plugin_path\": [\"$SK_TEST_PLUGIN_DIR\"]}"
sk sync plugins --json; expect_rc 0
expect_eq "$(jq -r '.[] | select(.name=="scripted") | .abi' <<<"$OUT")" 1.3
expect_eq "$(jq -r '.[] | select(.name=="abi_old_minor") | .abi' <<<"$OUT")" 1.0
jq -e '[.[] | select(.error != null)] | length >= 5' <<<"$OUT" >/dev/null || fail "broken plugins not listed"; pass
sk sync plugins; expect_rc 0; expect_out "BROKEN"

# Two `sync now` at once never send the same event twice.
rm -f "$REC"
emit_many 3000
config "{\"transport\": {\"plugin\": \"$SCRIPTED\", \"options\": {\"record\": \"$REC\"}}, \"schedule\": {\"max_batch_events\": 50}}"
"$SK_BIN" sync now >"$TEST_TMP/a.out" 2>&1 & A=$!
"$SK_BIN" sync now >"$TEST_TMP/b.out" 2>&1 & B=$!
wait $A || true; wait $B || true
expect_eq "$(queue_ready)" 0 "queue drained by two drainers"
expect_eq "$(cut -d' ' -f2 "$REC" | sort | uniq -d | wc -l)" 0 "events sent twice"
expect_eq "$(wc -l <"$REC")" 3003

# A `sync now` killed mid-batch loses nothing, and its drain lock dies with it: the next one
# delivers everything at once.
rm -f "$REC"
emit_many 20
config "{\"transport\": {\"plugin\": \"$SCRIPTED\", \"options\": {\"hang_ms\": 60000}}}"
"$SK_BIN" sync now >/dev/null 2>&1 & K=$!
sleep 0.3
kill -9 $K; wait $K 2>/dev/null || true
expect_eq "$(queue_ready)" 20 "events after the kill"
config "{\"transport\": {\"plugin\": \"$SCRIPTED\", \"options\": {\"record\": \"$REC\"}}}"
sk sync now; expect_rc 0; expect_out "Synced: 20"
expect_eq "$(queue_ready)" 0

# A state root too long for a unix socket address: no service can listen there, so
# `sync now` delivers by itself.
export SPEC_KITTY_HOME="$TEST_TMP/$(printf 'long%.0s' {1..30})/home"
rm -f "$REC"
emit_many 5
config "{\"transport\": {\"plugin\": \"$SCRIPTED\", \"options\": {\"record\": \"$REC\"}}}"
sk sync now; expect_rc 0 "sync now under a long state root"; expect_out "Synced: 5"
expect_eq "$(queue_ready)" 0

# --report into something that is not a regular file: a device or a FIFO is written into and
# stays what it was (the report was renamed over it: as root, `--report /dev/null` replaced
# the system's /dev/null by a file); a symbolic link stays a link to the file it names; a
# folder is one line. Here against a server that is down: the report is "[]".
export SPEC_KITTY_HOME="$TEST_TMP/home-report"
R="$TEST_TMP/report-targets"; mkdir -p "$R/dir"
sk sync emit -t FeatureCompleted -a f1 -p '{"feature_slug":"f1","total_wps":1}'; expect_rc 0
now_down() { SPEC_KITTY_SAAS_URL=http://127.0.0.1:1 sk sync now --report "$1"; }
if mknod "$R/null" c 1 3 2>/dev/null && mknod "$R/full" c 1 7 2>/dev/null; then
  now_down "$R/null"; expect_rc 1 "report into a null device"
  grep -q "cannot write the report" <<<"$ERR" && fail "report into a null device: $ERR"; pass
  now_down "$R/full"; expect_rc 1; expect_err "cannot write the report: $R/full: No space left on device"
  for d in null full; do [ -c "$R/$d" ] || fail "--report replaced the device $d: $(ls -l "$R/$d")"; pass; done
fi
mkfifo "$R/fifo"
timeout -k 5 30 cat "$R/fifo" >"$R/fifo.out" & READER=$!
now_down "$R/fifo"; expect_rc 1 "report into a FIFO"
wait "$READER"
[ -p "$R/fifo" ] || fail "--report replaced the FIFO"; pass
expect_eq "$(jq -c . "$R/fifo.out")" "[]" "report read from the FIFO"
echo old >"$R/target"; ln -s target "$R/link"
now_down "$R/link"; expect_rc 1 "report through a symbolic link"
[ -L "$R/link" ] || fail "--report replaced the symbolic link"; pass
expect_eq "$(jq -c . "$R/target")" "[]" "report in the file the link names"
expect_eq "$(stat -c %a "$R/target")" 600 "report mode"
# /dev/stdout while stdout is appended to a file: the report goes through stdout, in order
# after what stdout already holds, and the file is neither replaced nor emptied (it was
# renamed over: the log's earlier lines were lost and its mode became 600).
echo "earlier line" >"$R/log"; chmod 644 "$R/log"
rc=0; SPEC_KITTY_SAAS_URL=http://127.0.0.1:1 "$SK_BIN" sync now --report /dev/stdout >>"$R/log" 2>/dev/null || rc=$?
expect_eq "$rc" 1 "report into /dev/stdout appended to a file"
expect_eq "$(head -1 "$R/log")" "earlier line" "the log's earlier line"
expect_eq "$(sed -n 2p "$R/log")" "Synced: 0  Duplicates: 0  Pending: 0  Rejected: 0  Parked: 0  Remaining: 1" "the summary after it"
expect_eq "$(sed -n '3,$p' "$R/log")" "[]" "the report last, on a line of its own"
expect_eq "$(stat -c %a "$R/log")" 644 "the log's mode"
# A name that cannot be a report is refused before the pass (its report could not be had
# again): a folder, no name at all, a folder that is not there, a link to nothing (it was
# replaced by a file). The old build ran the pass and failed after it.
now_down "$R/dir"; expect_rc 2 "--report FOLDER"; expect_err "sync now: --report \"$R/dir\": is a directory"
expect_eq "$OUT" "" "the pass run despite --report FOLDER"
now_down ""; expect_rc 2 "--report ''"; expect_err 'sync now: --report "": wants a file name'
now_down "$R/none/r.json"; expect_rc 2 "--report in a missing folder"
expect_err "sync now: --report \"$R/none/r.json\": no folder to write it in"
expect_eq "$OUT" "" "the pass run despite a missing report folder"
ln -s nowhere.json "$R/dangling"
now_down "$R/dangling"; expect_rc 2 "--report through a link to nothing"
expect_err "sync now: --report \"$R/dangling\": a link to a file that does not exist"
[ -L "$R/dangling" ] || fail "--report replaced a link to nothing"; pass
expect_eq "$(ls -A "$R" | tr '\n' ' ')" "dangling dir fifo fifo.out full link log null target " "files beside the reports"
