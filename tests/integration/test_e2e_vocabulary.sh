#!/usr/bin/env bash
# End to end: today's spec-kitty vocabulary (CONTRACT.md §1b) next to the classic one.
# The events the current CLI emits are queued and delivered, events either server
# would refuse are refused at emit, ids in every accepted form are normalised before
# the queue's dedup, a queue.db holding both kinds (and a row written by spec-kitty's
# own four-column insert) drains with every event stored once, and both 412 shapes
# stop the pass with the guidance first and the error code kept for scripts.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/e2e_lib.sh"

rx_start rx
e2e_config "$RX_URL"
login
PROJECT=6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f

# ---- the current CLI's events, built by `sync emit --schema 3` ------------------
sk sync emit --schema 3 --project-uuid "${PROJECT^^}" --project-slug acme-app --build-id b-1 \
  --type WPStatusChanged --aggregate-id WP01 \
  --payload '{"mission_slug":"042-offline-sync","wp_id":"WP01","from_lane":"planned","to_lane":"in_progress","actor":"claude","execution_mode":"worktree"}'
expect_rc 0 "a current WPStatusChanged"
STATUS_ID=$OUT
DATA=$(sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT data FROM queue WHERE event_id='$STATUS_ID'")
expect_eq "$(jq -r .schema_version <<<"$DATA")" 3.0.0
expect_eq "$(jq -r .project_uuid <<<"$DATA")" "$PROJECT" "project_uuid normalised"
expect_eq "$(jq -r .correlation_id <<<"$DATA")" "$STATUS_ID" "correlation_id defaults to the event id"
expect_eq "$(jq -r .build_id <<<"$DATA")" b-1

sk sync emit --schema 3 --type WPCreated --aggregate-id WP02 \
  --payload '{"wp_id":"WP02","wp_title":"Queue","mission_slug":"042-offline-sync","actor":{"role":"implementer","tool":"claude-code"}}'
expect_rc 0 "a current WPCreated with wp_title"

# The same events in the classic vocabulary are refused, naming the field.
sk sync emit --type WPCreated --aggregate-id WP02 \
  --payload '{"wp_id":"WP02","wp_title":"Queue","mission_slug":"042-offline-sync","actor":"a"}'
expect_rc 2; expect_err "payload.title: missing"
sk sync emit --schema 3 --type WPStatusChanged --aggregate-id WP01 \
  --payload '{"mission_slug":"m","wp_id":"WP01","from_lane":"planned","to_lane":"doing","actor":"a","execution_mode":"worktree"}'
expect_rc 2; expect_err 'payload.to_lane: unknown value "doing"'
sk sync emit --schema 2 --type X --aggregate-id y; expect_rc 2; expect_err "--schema 2: expected 1 (classic) or 3 (current)"

# What the classic schema refuses is not queued either (the server would refuse it forever).
sk sync emit --type WPStatusChanged --aggregate-id WP1 \
  --payload '{"wp_id":"WP1","previous_status":"planned","new_status":"doing"}'
expect_rc 2; expect_err 'payload.wp_id: "WP1" is not a work package id like WP01'
sk sync emit --type HistoryAdded --aggregate-id WP01 \
  --payload '{"wp_id":"WP01","entry_type":"diary","entry_content":"x"}'
expect_rc 2; expect_err 'payload.entry_type: unknown value "diary"'
sk sync emit --type FeatureCreated --aggregate-id 001-sync \
  --payload '{"feature_slug":"001-sync","feature_number":"1","target_branch":"main","wp_count":1}'
expect_rc 2; expect_err 'payload.feature_number: "1" is not three digits'
expect_eq "$(queue_total)" 2 "only the two valid events are queued"

# ---- full envelopes: ids in every accepted form, normalised before dedup ---------
ts=2026-11-30T10:00:00.000Z
current_line() { # ID CAUSATION LAMPORT
  printf '{"event_id":"%s","event_type":"WPAssigned","aggregate_id":"WP03","aggregate_type":"WorkPackage","payload":{"wp_id":"WP03","agent_id":"claude","phase":"review"},"node_id":"0123456789ab","lamport_clock":%s,"causation_id":"%s","timestamp":"%s","team_slug":"acme","schema_version":"3.0.0","build_id":"","correlation_id":"%s","project_uuid":null}\n' \
    "$1" "$3" "$2" "$ts" "$2"
}
{
  current_line 01kbw6s0000000000000000001 6F1C2D3E4A5B4C6D8E9F0A1B2C3D4E5F 100
  current_line 01KBW6S0000000000000000001 "$PROJECT" 100 # the same event, the id's other case
  current_line 7d9e1c2b-0a3f-4e5d-9c8b-1a2b3c4d5e6f "$PROJECT" 101
} >"$TEST_TMP/full.ndjson"
sk sync emit --file "$TEST_TMP/full.ndjson"; expect_rc 0 "full current envelopes"
expect_eq "$(queue_total)" 4 "one row per event, whatever case its id came in"
expect_eq "$(sqlite3 "$SPEC_KITTY_HOME/queue.db" \
  "SELECT json_extract(data,'$.causation_id') FROM queue WHERE event_id='01KBW6S0000000000000000001'")" \
  "$PROJECT" "causation_id normalised"
expect_eq "$(sqlite3 "$SPEC_KITTY_HOME/queue.db" \
  "SELECT count(*) FROM queue WHERE event_id='7d9e1c2b-0a3f-4e5d-9c8b-1a2b3c4d5e6f'")" 1 "UUID event id"

# A classic short line and a current one (schema_version) in one file.
printf '%s\n' \
  '{"event_type":"FeatureCompleted","aggregate_id":"001-sync","payload":{"feature_slug":"001-sync","total_wps":3}}' \
  '{"schema_version":"3.0.0","event_type":"MissionClosed","aggregate_id":"042-offline-sync","payload":{"mission_slug":"042-offline-sync","mission_number":42,"mission_type":"software-dev"}}' \
  >"$TEST_TMP/short.ndjson"
sk sync emit --file "$TEST_TMP/short.ndjson"; expect_rc 0 "short lines of both kinds"
expect_eq "$(sqlite3 "$SPEC_KITTY_HOME/queue.db" \
  "SELECT count(*) FROM queue WHERE json_extract(data,'$.schema_version') IS NULL")" 1 "one classic"
expect_eq "$(sqlite3 "$SPEC_KITTY_HOME/queue.db" \
  "SELECT json_extract(data,'$.aggregate_type') FROM queue WHERE event_type='MissionClosed'")" Mission

# spec-kitty's own CLI writes rows with its four-column insert, ids as it got them.
LOWER=01kbw6s0000000000000000009
sqlite3 "$SPEC_KITTY_HOME/queue.db" "INSERT INTO queue (event_id, event_type, data, timestamp)
  VALUES ('$LOWER', 'WPAssigned', '$(current_line "$LOWER" "$PROJECT" 102 | tr -d '\n')', strftime('%s','now'))"
expect_eq "$(queue_total)" 7

# ---- the mixed queue drains through the receiver, every event stored once --------
sk sync now --json; expect_rc 0 "sync now of the mixed queue"
expect_eq "$(jq -r .synced <<<"$OUT")" 7
expect_eq "$(queue_total)" 0 "queue empty"
expect_eq "$(rx_rows)" 7 "the receiver holds every event"
expect_eq "$(rx_rows "WHERE event_id = upper('$LOWER')")" 1 "stored by the normal form of its id"
expect_eq "$(rx_rows "WHERE json_extract(data,'$.schema_version') = '3.0.0'")" 6 "current envelopes (all but the FeatureCompleted)"
# A resend of the lower-case row in its normal form is a duplicate, not a second event.
current_line "${LOWER^^}" "$PROJECT" 102 >"$TEST_TMP/again.ndjson"
sk sync emit --file "$TEST_TMP/again.ndjson"; expect_rc 0
sk sync now --json; expect_rc 0; expect_eq "$(jq -r .duplicates <<<"$OUT")" 1 "dedup by normal id"
expect_eq "$(rx_rows)" 7

# ---- 412, current shape: guidance first, then the description; the code for scripts --
emit_many 5
rx_fault '{"status": 412, "upgrade_guidance": "install spec-kitty 3.1 from the e2e channel"}'
sk sync now --json --report "$TEST_TMP/report.json"
expect_rc 1 "sync now on a current 412"
expect_err "the server refused this client's protocol: HTTP 412: install spec-kitty 3.1 from the e2e channel (client sync protocol not supported)"
expect_eq "$(jq -r .stop_code <<<"$OUT")" client-too-old "--json keeps the error code"
expect_eq "$(jq -r '.[-1] | .outcome + " " + .error_code' "$TEST_TMP/report.json")" \
  "stopped client-too-old" "--report keeps the error code"
expect_eq "$(queue_ready)" 5 "queue intact after a 412"

# ---- 412, the older shape: its guidance, then its error; no code -------------------
rx_fault '{"status": 412, "body": "{\"error\": \"protocol 2.0 is gone\", \"upgrade_guidance\": \"pip install -U spec-kitty-cli\"}"}'
sk sync now --json
expect_rc 1 "sync now on an older 412"
expect_err "HTTP 412: pip install -U spec-kitty-cli (protocol 2.0 is gone)"
expect_eq "$(jq -r .stop_code <<<"$OUT")" null "no code in the older shape"
sk sync now; expect_rc 0 "after the 412s"; expect_out "Synced: 5 "
