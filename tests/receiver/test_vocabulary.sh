#!/usr/bin/env bash
# The receiver validates with the host's rules, so it accepts what the engine sends
# and refuses what the server would: current envelopes (CONTRACT.md §1b) of every
# type, ids stored by their normal form, and 412 in the current shape with the
# older fields kept.
. "$(dirname "$0")/lib.sh"

start_receiver main
use_transport h1
FIX="$SK_SOURCE_DIR/tests/fixtures/events/current.ndjson"

# current_batch PREFIX: one current envelope per golden line, ids PREFIX + 10 digits.
current_batch() {
  jq -cs --arg p "$1" '{events: [to_entries[] | .value + {
      event_id: ($p + ("0000000000" + (.key | tostring))[-10:]), aggregate_id: "x",
      node_id: "0123456789ab", lamport_clock: (.key + 1), causation_id: null,
      timestamp: "2026-11-30T10:00:00Z", team_slug: null, schema_version: "3.0.0",
      build_id: "", correlation_id: ($p + ("0000000000" + (.key | tostring))[-10:]),
      project_uuid: "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f", project_slug: "acme"}]}' "$FIX"
}

P=$(id_prefix)
current_batch "$P" >"$T_DIR/current.json"
N=$(jq '.events | length' "$T_DIR/current.json")
post_batch "$T_DIR/current.json"
expect_eq "every current type is stored" "200 $N success" \
  "$CODE $(jb '.results | length') $(jb '[.results[].status] | unique | join(",")')"

# Refused as the server refuses: the field is named.
current_batch "$(id_prefix)" | jq -c '.events |= .[2:3] | .events[0].payload.to_lane = "doing"' \
  >"$T_DIR/bad.json"
post_batch "$T_DIR/bad.json"
expect_eq "an unknown lane is rejected" rejected "$(jb '.results[0].status')"
expect_eq "the reason names it" true "$(jb '.results[0].error_message | startswith("payload.to_lane: unknown value \"doing\"")')"

# The same event with its id in lower case is a duplicate; the id is echoed as sent.
jq -c --arg id "${P,,}0000000002" '.events |= .[2:3] | .events[0].event_id = $id' \
  "$T_DIR/current.json" >"$T_DIR/lower.json"
post_batch "$T_DIR/lower.json"
expect_eq "a lower-case id of a stored event is a duplicate" "duplicate ${P,,}0000000002" \
  "$(jb '.results[0].status') $(jb '.results[0].event_id')"
expect_eq "stored once, under the normal id" 1 \
  "$(sqlite3 "$RECEIVER_DB" "SELECT count(*) FROM events WHERE lower(event_id) = lower('${P}0000000002')")"

# 412: the current shape, and the older fields for older clients.
for case in "1.0 client-too-old" "3.0 client-too-new" "abc client-protocol-unparseable"; do
  set -- $case
  post_batch "$T_DIR/current.json" -H "X-Spec-Kitty-Sync-Protocol: $1"
  expect_eq "protocol $1: 412 $2" "412 $2" "$CODE $(jb .error_code)"
  expect_eq "protocol $1: guidance in both places" true \
    "$(jb '(.sync_protocol.upgrade_guidance | length > 0) and .sync_protocol.upgrade_guidance == .upgrade_guidance')"
  expect_eq "protocol $1: description and error" true \
    "$(jb '(.error_description | length > 0) and .error_description == .error')"
done

# The header is bytes: a value that is not UTF-8, or one whose first 32 bytes
# end inside a character, is quoted as UTF-8 (U+FFFD, whole characters), so the
# 412 keeps its body instead of going out as "{}".
cut="3.0-$(printf 'a%.0s' {1..27})é"
for case in $'\xff9 client-protocol-unparseable \xef\xbf\xbd9' \
  "$cut client-too-new ${cut:0:31}"; do
  set -- $case
  post_batch "$T_DIR/current.json" -H "X-Spec-Kitty-Sync-Protocol: $1"
  expect_eq "protocol ${1@Q}: 412 $2" "412 $2" "$CODE $(jb .error_code)"
  expect_eq "protocol ${1@Q}: quoted as UTF-8" true \
    "$(jb --arg q "\"$3\"" '.error_description | contains($q)')"
done
t_end
