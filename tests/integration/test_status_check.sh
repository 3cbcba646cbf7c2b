#!/usr/bin/env bash
# `sync status --check` probes the server through the transport; status shows the session.
. "$(dirname "$0")/lib.sh"
RX="$TEST_TMP/rx"
echo "bash $SK_SOURCE_DIR/scripts/receiver-down.sh $RX" >"$TEST_TMP/receiver.cleanup"
echo "pw-check-1" | "$SK_PREFIX/bin/spec-kitty-receiver" --users "$TEST_TMP/users.json" --add-user carol --team t-check >/dev/null
bash "$SK_SOURCE_DIR/scripts/receiver-up.sh" "$RX" --users "$TEST_TMP/users.json" --quiet >/dev/null
. "$RX/receiver.env"

config "{\"server_url\": \"$RECEIVER_URL\"}"
sk sync status --check; expect_rc 1 "check without login"; expect_out "Check        Not authenticated"
echo "pw-check-1" | "$SK_BIN" auth login --username carol --password-stdin >/dev/null
sk sync status --check; expect_rc 0; expect_out "Check        Connected"
expect_out "Auth         Authenticated (carol, team t-check)"
sk sync status --check --json; expect_rc 0
expect_eq "$(jq -r .check.state <<<"$OUT")" Connected
expect_eq "$(jq -r .auth.username <<<"$OUT")" carol
expect_eq "$(jq -r .auth.team_slug <<<"$OUT")" t-check
grep -qF "$(jq -r .access_token "$SPEC_KITTY_HOME/credentials.json")" <<<"$OUT$ERR" && fail "token printed"; pass

# Envelopes carry the session's team from now on.
sk sync emit -t FeatureCompleted -a f1 -p '{"feature_slug":"f1","total_wps":1}'; expect_rc 0
expect_eq "$(sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT json_extract(data,'$.team_slug') FROM queue")" t-check

config '{"server_url": "http://127.0.0.1:9"}'
sk sync status --check; expect_rc 1; expect_out "Check        Unreachable"
config "{\"transport\": {\"plugin\": \"file-drop\"}}"
sk sync status --check; expect_rc 0; expect_out "cannot probe a server"
sk sync status; expect_rc 0
grep -q "^Check" <<<"$OUT" && fail "Check row without --check"; pass
