#!/usr/bin/env bash
# End to end against the real receiver with real sessions (issue 5, 5–7): access
# tokens expiring mid-drain (short lifetime, and revoked by the server) are renewed
# and the drain completes; an expired refresh token puts the session in the
# "session expired" state with every event kept until the next login; a 403 is shown
# to the user with the events kept.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/e2e_lib.sh"

CREDS="$SPEC_KITTY_HOME/credentials.json"
# log_count PATTERN: receiver log lines matching an extended regex, since log_mark.
log_mark() { LOG_MARK=$(wc -l <"$RX_LOG"); }
log_count() { tail -n +$((LOG_MARK + 1)) "$RX_LOG" | grep -cE "$1" || true; }
no_duplicates() {
  expect_eq "$(rx_stats .duplicates)" 0 "receiver duplicates"
  expect_eq "$(sqlite3 "$RX_DB" "SELECT count(*) - count(DISTINCT event_id) FROM events")" 0 "stored twice"
}

# ---- 5a. access tokens living 2 s, a drain of about 5 s -------------------------
RX_VERBOSE=1 rx_start short --access-ttl 2
e2e_config "$RX_URL" '{}' '{"max_batch_events": 20}'
login
first_access=$(jq -r .access_token "$CREDS")
emit_many 500
# 25 batches, each answered after 400 ms, two at a time (http-batch's two connections).
rx_fault '{"delay_ms": 400, "count": 25}'
log_mark
t0=$(now_ms)
sk sync now
elapsed=$(($(now_ms) - t0))
expect_rc 0 "drain across access-token expiries"
expect_out "Synced: 500  Duplicates: 0  Pending: 0  Rejected: 0  Parked: 0  Remaining: 0"
expect_ge "$elapsed" 4500 "drain duration (longer than two access lifetimes)"
refreshes=$(log_count 'POST /api/v1/token/refresh/ 200 ')
echo "5 s drain with 2 s access tokens: $refreshes refreshes, $(log_count 'events/batch/ 401 ') batch 401s, $elapsed ms" >&2
expect_ge "$refreshes" 2 "refreshes during the drain"
expect_eq "$(log_count 'POST /api/v1/events/batch/ 200 ')" 25 "batches accepted"
[ "$(jq -r .access_token "$CREDS")" != "$first_access" ] || fail "access token never renewed"; pass
expect_eq "$(queue_total)" 0 "queue after the drain"
expect_eq "$(rx_stats .events_stored)" 500 "stored"
no_duplicates
sk auth status; expect_rc 0; expect_out "Authenticated"
rx_stop

# ---- 5b. the server revokes the access token mid-drain: 401 → refresh → resend --
RX_VERBOSE=1 rx_start main
e2e_config "$RX_URL" '{}' '{"max_batch_events": 20}'
login
emit_many 400
rx_fault '{"delay_ms": 150, "count": 20}'
log_mark
( sleep 1; curl -s -o /dev/null -H 'Content-Type: application/json' -d '{"kind": "access"}' \
    "$RX_URL/api/v1/receiver/tokens/expire" ) &
expirer=$!
sk sync now
wait $expirer
expect_rc 0 "drain across a revoked access token"
expect_out "Synced: 400  Duplicates: 0"
# Two batches in flight: the one that reached the server after the revocation is
# refused, and so is the other when it too left with the revoked token. The first
# 401 refreshes; the other batch left before that refresh and is resent with the
# new token: one revocation costs one refresh, whatever the number of connections.
refused=$(log_count 'POST /api/v1/events/batch/ 401 ')
echo "one revocation: $refused batch 401s, $(log_count 'POST /api/v1/token/refresh/ ') refreshes" >&2
expect_ge "$refused" 1 "batches refused with 401"; expect_ge 2 "$refused" "batches refused with 401 (two connections)"
expect_eq "$(log_count 'POST /api/v1/token/refresh/ ')" 1 "refreshes for one revocation"
expect_eq "$(queue_total)" 0
expect_eq "$(rx_stats .events_stored)" 400 "stored"
no_duplicates

# ---- 6. the refresh token expired: session expired, events kept, login resumes -
emit_many 120
rx_admin tokens/expire '{"kind": "all"}'
sk sync now
expect_rc 1 "sync now with an expired session"
expect_err "session expired — run \`spec-kitty auth login\`"
expect_eq "$(queue_ready)" 120 "events kept"
expect_eq "$(queue_parked)" 0 "nothing parked"
sk sync status
expect_out "120 events waiting"; expect_out "Session expired"
# Checked at the end (so the rest still runs while it fails): status must also exit 1
# with the same guidance as `sync now`.
STATUS_EXPIRED_RC=$RC STATUS_EXPIRED_TEXT="$OUT$ERR"
sk sync now; expect_rc 1 "sync now again, still expired"; expect_err "session expired"
expect_eq "$(queue_ready)" 120 "events still kept"
expect_eq "$(rx_stats .events_stored)" 400 "nothing stored without a session"
login
sk sync now; expect_rc 0 "sync now after logging in again"
expect_out "Synced: 120  Duplicates: 0"
expect_eq "$(queue_total)" 0
expect_eq "$(rx_stats .events_stored)" 520
sk sync status; expect_rc 0; expect_out "Connection   Connected"
no_duplicates

# The same with the refresh token's own lifetime run out (no server help): the
# client knows it without asking, and a new login resumes.
MAIN=$RX_DIR
rx_start lapse --access-ttl 1 --refresh-ttl 2
e2e_config "$RX_URL"
login
emit_many 25
sleep 2.5
sk sync now
expect_rc 1 "sync now after the refresh token lapsed"
expect_err "session expired — run \`spec-kitty auth login\`"
expect_eq "$(queue_ready)" 25 "events kept"
expect_eq "$(rx_rows)" 0 "nothing stored"
login
sk sync now; expect_rc 0 "after a new login"; expect_out "Synced: 25 "
expect_eq "$(queue_total)" 0
expect_eq "$(rx_rows)" 25
rx_stop
rx_use "$MAIN"
e2e_config "$RX_URL" '{}' '{"max_batch_events": 20}'
login

# ---- 7. 403: exit 1, the server's text shown, events kept ----------------------
emit_many 60
rx_fault '{"status": 403, "error": "team acme may not sync to this server"}'
sk sync now
expect_rc 1 "sync now on a 403"
expect_err "team acme may not sync to this server"
expect_err "403"
# The 403'd batch is kept; the batches beside it on the other connection (at most
# two: the one in flight and one sent while the 403 waited for it) were stored.
kept=$(queue_ready)
expect_ge "$kept" 20 "events kept after a 403"; expect_eq $(((60 - kept) % 20)) 0 "whole batches stored beside the 403"
expect_eq "$(sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT max(retry_count) FROM queue")" 0 "a 403 costs no retry"
sk sync status --json
jq -r .failures.last_error <<<"$OUT" | grep -qF "team acme may not sync to this server" ||
  fail "status does not show the 403: $OUT"; pass
sk auth status; expect_rc 0 "a 403 does not end the session"
sk sync now; expect_rc 0 "after the 403"; expect_out "Synced: $kept "
expect_eq "$(queue_total)" 0
expect_eq "$(rx_stats .events_stored)" 580
no_duplicates

# ---- 6, deferred: `sync status` in the session-expired state -------------------
RC=$STATUS_EXPIRED_RC OUT=$STATUS_EXPIRED_TEXT ERR=""
grep -qiF "session expired — run \`spec-kitty auth login\`" <<<"$STATUS_EXPIRED_TEXT" ||
  fail "sync status does not tell to log in again: $STATUS_EXPIRED_TEXT"; pass
expect_rc 1 "sync status with an expired session"

# ---- 5c. access revoked twice in one long pass: each revocation, one refresh ---
# 20 batches answered after 300 ms each, two at a time: a pass of ~3 s, revoked at
# ~1 s and ~2 s.
emit_many 400
rx_fault '{"delay_ms": 300, "count": 20}'
log_mark
( sleep 1; rx_admin tokens/expire '{"kind": "access"}'; sleep 1
  rx_admin tokens/expire '{"kind": "access"}' ) &
expirer=$!
sk sync now
wait $expirer
# Each revocation refuses the batch in flight on one connection, or on both, and
# costs one refresh; each refused batch is resent once.
refused=$(log_count 'POST /api/v1/events/batch/ 401 ')
refreshes=$(log_count 'POST /api/v1/token/refresh/ ')
echo "two revocations: $refused batch 401s, $refreshes refreshes" >&2
expect_ge "$refused" 2 "batches refused with 401"; expect_ge 4 "$refused" "batches refused with 401 (two connections)"
expect_eq "$refreshes" 2 "refreshes (one per revocation)"
expect_rc 0 "drain across two revoked access tokens (refresh token still valid)"
expect_out "Synced: 400  Duplicates: 0"
expect_eq "$(queue_total)" 0
no_duplicates
