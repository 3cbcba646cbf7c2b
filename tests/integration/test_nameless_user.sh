#!/usr/bin/env bash
# A user with no name (a container's numeric uid: not in /etc/passwd, no USER)
# can emit and see the status: the node id hashes "<hostname>:uid<N>"
# instead of failing every command. Needs root (as CI runs it), to become a uid
# nobody named.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || fail "needs root: it runs the client as a uid without a name"
uid=54321
while getent passwd "$uid" >/dev/null; do uid=$((uid + 1)); done
chmod 711 "$TEST_TMP"
mkdir -p "$SPEC_KITTY_HOME"
chown "$uid:$uid" "$SPEC_KITTY_HOME"

# nameless ARGS...: spec-kitty as that uid, with no name in its environment either.
nameless() {
  sk_run env -u USER -u LOGNAME setpriv --reuid="$uid" --regid="$uid" --clear-groups \
    env SPEC_KITTY_HOME="$SPEC_KITTY_HOME" "$SK_BIN" "$@"
}

nameless sync status; expect_rc 0 "status without a user name"
nameless sync emit -t WPStatusChanged -a WP01 \
  -p '{"wp_id":"WP01","previous_status":"planned","new_status":"doing"}'
expect_rc 0 "emit without a user name"
want=$(printf '%s' "$(uname -n):uid$uid" | sha256sum | cut -c1-12)
expect_eq "$(sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT json_extract(data, '$.node_id') FROM queue")" \
  "$want" "node id of a nameless uid"
expect_eq "$(stat -c %u "$SPEC_KITTY_HOME/queue.db")" "$uid" "the queue belongs to that uid"
