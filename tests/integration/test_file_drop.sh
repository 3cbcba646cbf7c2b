#!/usr/bin/env bash
# file-drop end to end: sync now writes verifiable bundles; a kill -9 mid-drain
# leaves only whole bundles and loses no event; import on a "connected machine"
# queues every event once, refuses a damaged bundle and moves imported ones aside.
. "$(dirname "$0")/lib.sh"
OUTBOX="$TEST_TMP/outbox"

config "{\"transport\": {\"plugin\": \"file-drop\", \"options\": {\"outbox\": \"$OUTBOX\"}},
  \"schedule\": {\"max_batch_events\": 100}}"
emit_many 6000
sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT event_id FROM queue" | sort >"$TEST_TMP/emitted"

# Kill -9 while draining, then finish with a second sync now.
"$SK_BIN" sync now >/dev/null 2>&1 & K=$!
for _ in $(seq 100); do [ "$(ls "$OUTBOX" 2>/dev/null | wc -l)" -ge 3 ] && break; sleep 0.01; done
kill -9 $K; wait $K 2>/dev/null || true
LEFT="$(queue_ready)"
[ "$LEFT" -gt 0 ] || fail "the drain finished before the kill (make the test bigger)"; pass
sk sync now; expect_rc 0 "second sync now"; expect_out "Remaining: 0"

# Only whole bundles, each matching its manifest: the second run removed the killed
# writer's temp folder.
ls -a "$OUTBOX" | grep -vE '^(\.|\.\.|.*\.skb)$' && fail "unexpected entries in the outbox"; pass
for b in "$OUTBOX"/*.skb; do
  m="$b/manifest.json"
  [ "$(sha256sum "$b/events.ndjson.gz" | cut -d' ' -f1)" = "$(jq -r .data_sha256 "$m")" ] || fail "$b: sha256"
  [ "$(zcat "$b/events.ndjson.gz" | wc -l)" = "$(jq -r .event_count "$m")" ] || fail "$b: count"
done; pass
ls "$OUTBOX" | grep '\.skb$' >"$TEST_TMP/names"
sort -c "$TEST_TMP/names" || fail "bundle names out of order"; pass
# Every event is in some bundle (a batch cut short by the kill may be written twice: at-least-once).
for b in "$OUTBOX"/*.skb; do zcat "$b/events.ndjson.gz"; done | jq -r .event_id | sort -u >"$TEST_TMP/dropped"
cmp -s "$TEST_TMP/emitted" "$TEST_TMP/dropped" || fail "events missing from the bundles: $(comm -23 "$TEST_TMP/emitted" "$TEST_TMP/dropped" | wc -l)"; pass

# The connected machine: a fresh state root imports the outbox.
export SPEC_KITTY_HOME="$TEST_TMP/connected"
sk sync import --verify-only "$OUTBOX"; expect_rc 0; expect_out "verified"
[ ! -e "$SPEC_KITTY_HOME/queue.db" ] || [ "$(queue_ready)" = 0 ] || fail "verify-only queued events"; pass
# Damage one bundle: it is refused and left in place, the others are imported.
VICTIM="$OUTBOX/$(sed -n 2p "$TEST_TMP/names")"
printf 'x' >>"$VICTIM/events.ndjson.gz"
sk sync import "$OUTBOX"; expect_rc 1; expect_err "$(basename "$VICTIM"): not imported"
[ -d "$VICTIM" ] || fail "damaged bundle was moved"; pass
[ -d "$OUTBOX/imported" ] || fail "imported bundles not moved aside"; pass
VICTIM_IDS="$(zcat "$VICTIM/events.ndjson.gz" 2>/dev/null | jq -r .event_id 2>/dev/null | sort -u | wc -l || true)"
IMPORTED="$(queue_ready)"
expect_ge "$IMPORTED" $((6000 - VICTIM_IDS)) "events imported"
# Repair it (drop the extra byte) and import again: every event exactly once in the queue.
truncate -s -1 "$VICTIM/events.ndjson.gz"
sk sync import "$VICTIM"; expect_rc 0; expect_out "imported"
expect_eq "$(queue_ready)" 6000 "queued events after import"
sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT event_id FROM queue" | sort >"$TEST_TMP/imported"
cmp -s "$TEST_TMP/emitted" "$TEST_TMP/imported" || fail "imported ids differ from emitted ids"; pass
sk sync import "$TEST_TMP/nope"; expect_rc 1; expect_err "not a bundle or outbox folder"
sk sync import; expect_rc 2
