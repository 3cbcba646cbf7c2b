#!/usr/bin/env bash
# `sync doctor` on a really damaged queue.db: pages in the middle of the queue
# table overwritten with garbage. `sync now` stops and points to the doctor; the
# doctor counts what is readable and what is lost; --repair refuses while the
# service, a drain or another process holds the queue, then copies every
# readable event into a fresh queue.db and keeps the damaged file untouched; a
# drain to the real receiver then delivers every salvaged event exactly once.
# Then a queue whose first page is garbage (no schema at all).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/e2e_lib.sh"
DB="$SPEC_KITTY_HOME/queue.db"
echo "\"$SK_BIN\" sync daemon stop --timeout 10" >"$TEST_TMP/a-daemon.cleanup"

# garble PAGE...: overwrites whole pages of queue.db with random bytes.
garble() {
  local p
  for p in "$@"; do
    dd if=/dev/urandom of="$DB" bs=4096 seek=$((p - 1)) count=1 conv=notrunc status=none
  done
}
# json_of KEY: one jq expression of `sync doctor --json`.
doctor_json() { sk sync doctor --json; jq -r "$1" <<<"$OUT"; }

# ---- usage and a state root without a queue ------------------------------------
sk sync doctor --help; expect_rc 0; expect_out "--repair"
sk sync doctor --bogus; expect_rc 2
sk sync doctor extra; expect_rc 2; expect_err 'unexpected argument "extra"'
sk sync doctor; expect_rc 0; expect_out "no queue.db"

# ---- a healthy queue ---------------------------------------------------------------
emit_many 3000
sk sync doctor; expect_rc 0; expect_out "queue.db is healthy: 3000 events"
sqlite3 "$DB" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
expect_eq "$(sqlite3 "$DB" "PRAGMA page_size")" 4096

# ---- damage: 3 adjacent leaf pages of the table early on, and one further on ---------
pages=$(sqlite3 "$DB" "SELECT pageno FROM dbstat WHERE name = 'queue' AND pagetype = 'leaf'
  ORDER BY pageno" | sed -n '20p;21p;22p;150p')
# shellcheck disable=SC2086
garble $pages
sk sync status; expect_rc 0 "status of a damaged queue"

rx_start rx
e2e_config "$RX_URL"
login
sk sync now
expect_rc 1 "sync now on a damaged queue"
expect_err "database disk image is malformed (run \`spec-kitty sync doctor\`)"
expect_eq "$(rx_rows)" 0 "nothing sent past the damage"

sk sync doctor
expect_rc 1 "doctor finds the damage"
expect_out "queue.db is damaged"
expect_out "run \`spec-kitty sync doctor --repair\`"
readable=$(doctor_json .rows_readable)
lost=$(doctor_json .rows_lost)
expect_eq "$((readable + lost))" 3000 "readable + lost"
expect_ge "$lost" 1 "rows lost to the garbled pages"
expect_ge 200 "$lost" "rows lost beyond the 4 garbled pages"
expect_eq "$(doctor_json '.lost_event_ids | length')" "$lost" "lost event ids named"
expect_eq "$(doctor_json .status)" damaged
doctor_json '.lost_event_ids[]' >"$TEST_TMP/lost.txt"

# ---- --repair refuses while anyone else holds the queue --------------------------------
sk sync daemon start; expect_rc 0
sk sync doctor --repair; expect_rc 1 "repair while the service runs"
expect_err "the sync service runs (pid"
sk sync daemon stop; expect_rc 0
exec 9>"$SPEC_KITTY_HOME/drain.lock"
flock 9
sk sync doctor --repair; expect_rc 1 "repair during a drain"
expect_err "a drain (\`spec-kitty sync now\`) is running"
exec 9>&-
mkfifo "$TEST_TMP/sql"
sqlite3 "$DB" <"$TEST_TMP/sql" >/dev/null &
holder=$!
exec 8>"$TEST_TMP/sql"
echo "SELECT count(*) FROM sqlite_master;" >&8
sleep 0.3
sk sync doctor --repair; expect_rc 1 "repair while another process has the queue open"
expect_err "queue.db is open in another process"
exec 8>&-
wait $holder
expect_eq "$(ls "$SPEC_KITTY_HOME" | grep -c damaged || true)" 0 "nothing changed by a refused repair"

# ---- the repair --------------------------------------------------------------------------
# An emit still works, and lands in the WAL (the engine does not checkpoint on close).
sk sync emit -t FeatureCompleted -a f1 -p '{"feature_slug":"f1","total_wps":1}'
expect_rc 0 "emit into a damaged queue"
late_id=$OUT
readable=$((readable + 1))
cp "$DB" "$TEST_TMP/before.db"
cp "$DB-wal" "$TEST_TMP/before.db-wal"
sk sync doctor --repair
expect_rc 0 "repair"
expect_out "copied into a fresh queue.db"
kept=$(ls "$SPEC_KITTY_HOME"/queue.db.damaged-* | grep -v -- '-wal$')
cmp "$kept" "$TEST_TMP/before.db" || fail "the damaged file was changed"; pass
cmp "$kept-wal" "$TEST_TMP/before.db-wal" || fail "the damaged WAL was changed"; pass
expect_eq "$(sqlite3 "$DB" "PRAGMA integrity_check")" ok
expect_eq "$(queue_total)" "$readable" "rows in the fresh queue"
expect_eq "$(sqlite3 "$DB" "SELECT count(*) FROM queue WHERE event_id = '$late_id'")" 1 "the event emitted after the damage"
expect_eq "$(stat -c %a "$DB")" 600 "fresh queue owner-only"
sk sync doctor; expect_rc 0; expect_out "queue.db is healthy: $readable events"
sk sync doctor --repair; expect_rc 0 "repair of a healthy queue"; expect_out "healthy"
expect_eq "$(ls "$SPEC_KITTY_HOME" | grep -c 'damaged-[^w]*$')" 1 "a healthy queue is not replaced"

# ---- every salvaged event reaches the receiver, once --------------------------------------
sqlite3 "$DB" "SELECT event_id FROM queue ORDER BY 1" >"$TEST_TMP/salvaged.txt"
sk sync now
expect_rc 0 "drain after the repair"
expect_out "Synced: $readable "
expect_eq "$(queue_total)" 0
sqlite3 "$RX_DB" "SELECT event_id FROM events ORDER BY 1" >"$TEST_TMP/received.txt"
diff "$TEST_TMP/salvaged.txt" "$TEST_TMP/received.txt" >/dev/null || fail "received events differ from the salvaged ones"; pass
expect_eq "$(sqlite3 "$RX_DB" "SELECT count(*) - count(DISTINCT event_id) FROM events")" 0 "stored twice"
expect_eq "$(grep -cxFf "$TEST_TMP/lost.txt" "$TEST_TMP/received.txt" || true)" 0 "a lost id reported but delivered"

# ---- the first page is garbage: no schema, nothing readable ---------------------------------
emit_many 20
sqlite3 "$DB" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
garble 1
sk sync emit -t FeatureCompleted -a f2 -p '{"feature_slug":"f2","total_wps":1}'
expect_rc 1 "emit into a queue without a first page"
expect_err "(run \`spec-kitty sync doctor\`)"
sk sync doctor; expect_rc 1; expect_out "queue.db is damaged"
sk sync doctor --repair; expect_rc 0 "repair of a queue without a first page"
expect_eq "$(queue_total)" 0
expect_eq "$(ls "$SPEC_KITTY_HOME" | grep -c 'damaged-[^w]*$')" 2 "both damaged files kept"
sk sync emit -t FeatureCompleted -a f2 -p '{"feature_slug":"f2","total_wps":1}'
expect_rc 0 "emit after the repair"
expect_eq "$(queue_total)" 1
