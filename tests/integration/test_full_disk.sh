#!/usr/bin/env bash
# The state root on a small tmpfs (8 MB: a drain's WAL reaches 4 MB before it is checkpointed): emit into a full disk, `sync now` and the
# service when the disk fills mid-pass, a read-only root, an immutable queue.db.
# Each failure is one clear line and a failure exit code, every event that was
# given an id is still queued or delivered (never both lost), and the queue
# passes SQLite's integrity check. Needs root (mount, chattr): CI runs as root.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/e2e_lib.sh"
if [ "$(id -u)" -ne 0 ]; then
  echo "$TEST_NAME: needs root to mount a tmpfs and set chattr +i; run the suite as root" >&2
  exit 1
fi
MNT="$TEST_TMP/mnt"
mkdir -p "$MNT"
mount -t tmpfs -o size=8m,mode=0700 tmpfs "$MNT" ||
  fail "cannot mount an 8 MB tmpfs on $MNT (a container without CAP_SYS_ADMIN?)"
# Cleanups run in name order: the service first, the mount last.
echo "\"$SK_BIN\" sync daemon stop --timeout 10" >"$TEST_TMP/a-daemon.cleanup"
echo "chattr -i '$MNT/home/queue.db'; umount -l '$MNT'" >"$TEST_TMP/z-mount.cleanup"
export SPEC_KITTY_HOME="$MNT/home"
DB="$SPEC_KITTY_HOME/queue.db"
IDS="$TEST_TMP/ids.txt"
: >"$IDS"

# fill KB: leaves about KB kilobytes free on the tmpfs.
fill() {
  rm -f "$MNT/filler"
  local avail
  avail=$(df -k --output=avail "$MNT" | tail -1)
  [ "$avail" -le "$1" ] || dd if=/dev/zero of="$MNT/filler" bs=1k count=$((avail - $1)) status=none 2>/dev/null || true
}
unfill() { rm -f "$MNT/filler"; }
# emit_one: one event; its id (printed by emit) goes to $IDS when it was queued.
emit_one() {
  sk sync emit -t FeatureCompleted -a f1 -p '{"feature_slug":"f1","total_wps":1}'
  [ "$RC" -ne 0 ] || echo "$OUT" >>"$IDS"
}
# one_line_error WHAT: stderr is exactly one "spec-kitty: ..." line.
one_line_error() {
  echo "$1: $ERR"
  [ "$(printf '%s\n' "$ERR" | grep -c .)" -eq 1 ] || fail "$1: not one error line: $ERR"; pass
  grep -q '^spec-kitty: ' <<<"$ERR" || fail "$1: error line: $ERR"; pass
}
queue_ok() {
  expect_eq "$(sqlite3 "$DB" "PRAGMA integrity_check")" ok "integrity check ($1)"
}
# every_id_kept: each id in $IDS is in the queue or stored by the receiver.
every_id_kept() {
  sqlite3 "$DB" "SELECT event_id FROM queue" >"$TEST_TMP/have.txt"
  [ ! -e "${RX_DB:-/nonexistent}" ] || sqlite3 "$RX_DB" "SELECT event_id FROM events" >>"$TEST_TMP/have.txt"
  local missing
  missing=$(grep -cvxFf "$TEST_TMP/have.txt" "$IDS" || true)
  expect_eq "$missing" 0 "events with an id that are gone ($1)"
}

# ---- emit into a full disk ----------------------------------------------------------
emit_many 2000
sqlite3 "$DB" "SELECT event_id FROM queue" >>"$IDS"
fill 64
for _ in $(seq 200); do
  emit_one
  [ "$RC" -eq 0 ] || break
done
expect_rc 1 "emit into a full disk"
one_line_error "emit into a full disk"
grep -qE "No space left on device|database or disk is full" <<<"$ERR" || fail "not a disk-full error: $ERR"; pass
unfill
queue_ok "after a full disk"
every_id_kept "emit into a full disk"
emit_one; expect_rc 0 "emit once there is room again"

# ---- sync now when the disk fills mid-pass ---------------------------------------------
rx_start rx
e2e_config "$RX_URL" '{}' '{"max_batch_events": 50}'
login
fill 24
sk sync now
expect_rc 1 "sync now filling the disk"
grep -q "sync stopped: " <<<"$ERR" || fail "no reason given: $ERR"; pass
one_line_error "sync now filling the disk"
delivered=$(rx_rows)
expect_ge "$delivered" 1 "some batches got through before the disk filled"
expect_ge "$(queue_total)" 1 "the disk filled before the end of the pass"
unfill
queue_ok "after sync now filled the disk"
every_id_kept "sync now filling the disk"
sk sync now; expect_rc 0 "sync now once there is room"
expect_eq "$(queue_total)" 0
expect_eq "$(rx_rows)" "$(sort -u "$IDS" | wc -l)" "every event stored"
expect_eq "$(sqlite3 "$RX_DB" "SELECT count(*) - count(DISTINCT event_id) FROM events")" 0 "stored twice"

# ---- the service when the disk fills mid-pass --------------------------------------------
rx_stop
emit_many 1500
sqlite3 "$DB" "SELECT event_id FROM queue" >>"$IDS"
e2e_config "$RX_URL" '{}' '{"max_batch_events": 50, "min_batch_interval_ms": 0, "backoff_min_ms": 100, "backoff_max_ms": 300}'
sk sync daemon start; expect_rc 0
pid=$(cat "$SPEC_KITTY_HOME/daemon.pid")
fill 24
rx_start rx --listen "${RX_URL#http://}"
for _ in $(seq 100); do # wait until its passes fail on the full disk
  grep -qE "disk is full|No space left" "$SPEC_KITTY_HOME/sync-daemon.log" 2>/dev/null && break
  [ "$(queue_total)" -gt 0 ] || break
  sleep 0.1
done
kill -0 "$pid" || fail "the service died on a full disk"; pass
unfill
for _ in $(seq 100); do [ "$(queue_total)" -eq 0 ] && break; sleep 0.1; done
expect_eq "$(queue_total)" 0 "the service delivered everything once there was room"
kill -0 "$pid" || fail "the service died"; pass
sk sync daemon stop; expect_rc 0
queue_ok "after the service"
expect_eq "$(rx_rows)" "$(sort -u "$IDS" | wc -l)" "every event stored"
expect_eq "$(sqlite3 "$RX_DB" "SELECT count(*) - count(DISTINCT event_id) FROM events")" 0 "stored twice"

# ---- a read-only root -------------------------------------------------------------------
rx_stop
emit_many 30
sqlite3 "$DB" "SELECT event_id FROM queue" >>"$IDS"
before=$(queue_total)
mount -o remount,ro "$MNT" || fail "cannot remount $MNT read-only"
emit_one
expect_rc 1 "emit on a read-only root"
one_line_error "emit on a read-only root"
grep -qiE "read-only|readonly" <<<"$ERR" || fail "the error does not say read-only: $ERR"; pass
sk sync now
expect_rc 1 "sync now on a read-only root"
grep -qiE "read-only|readonly" <<<"$ERR" || fail "the error does not say read-only: $ERR"; pass
mount -o remount,rw "$MNT" || fail "cannot remount $MNT read-write"
expect_eq "$(queue_total)" "$before" "queue after the read-only root"
queue_ok "after a read-only root"

# ---- an immutable queue.db ------------------------------------------------------------
chattr +i "$DB" || fail "chattr +i $DB failed"
emit_one
expect_rc 1 "emit into an immutable queue.db"
one_line_error "emit into an immutable queue.db"
grep -q "queue.db" <<<"$ERR" || fail "the error does not name queue.db: $ERR"; pass
chattr -i "$DB"
expect_eq "$(queue_total)" "$before" "queue after chattr +i"
queue_ok "after chattr +i"
every_id_kept "the end"
