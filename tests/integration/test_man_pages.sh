#!/usr/bin/env bash
# The installed man pages, rendered by man(1): every command and option that --help
# states is documented, every key of the config table appears in spec-kitty-sync.json(5),
# and groff reports no warning.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_surface.sh"
MAN="$SK_PREFIX/share/man"
render() { # render PAGE: plain text, one long line per paragraph line
  MANWIDTH=250 man --nh --nj --warnings -l "$MAN/$1" 2>"$TEST_TMP/man.err" | col -b >"$TEST_TMP/page"
  [ ! -s "$TEST_TMP/man.err" ] || fail "$1: groff warnings: $(cat "$TEST_TMP/man.err")"; pass
}
documents() { grep -qF -- "$1" "$TEST_TMP/page" || fail "$2 does not document '$1'"; pass; }

render man1/spec-kitty-sync.1.gz
documents "spec-kitty-sync, spec-kitty" "NAME of spec-kitty-sync(1)"
for c in $(sync_commands); do
  documents "sync $c" spec-kitty-sync.1
  for o in $(options_of "$SK_BIN" sync "$c"); do documents "$o" "spec-kitty-sync.1 (sync $c)"; done
done
for c in $(auth_commands); do
  documents "auth $c" spec-kitty-sync.1
  for o in $(options_of "$SK_BIN" auth "$c"); do documents "$o" "spec-kitty-sync.1 (auth $c)"; done
done
expect_eq "$(readlink "$MAN/man1/spec-kitty.1.gz")" spec-kitty-sync.1.gz "man spec-kitty"

# Every key of the table the parser reads (as `sync config --keys` lists it).
render man5/spec-kitty-sync.json.5.gz
sk sync config --keys; expect_rc 0
keys=$(awk '{print $1}' <<<"$OUT")
[ "$(wc -l <<<"$keys")" -ge 15 ] || fail "too few keys listed: $keys"; pass
for k in $keys; do grep -qE "^ +$k \(" "$TEST_TMP/page" || fail "spec-kitty-sync.json.5 lacks key $k"; pass; done
# ... and nothing else: each key entry of the page is one the table has.
for k in $(sed -n '/^KEYS/,/^[A-Z]/s/^       \([a-z_.]*\) (.*/\1/p' "$TEST_TMP/page"); do
  grep -qx -- "$k" <<<"$keys" || fail "spec-kitty-sync.json.5 documents unknown key $k"; pass
done
documents "(integer, 1 to 86400; default: 300)" "schedule.interval_s in spec-kitty-sync.json.5"

render man1/spec-kitty-receiver.1.gz
for o in $(options_of "$SK_PREFIX/bin/spec-kitty-receiver"); do documents "$o" spec-kitty-receiver.1; done
render man7/spec-kitty-transport.7.gz
documents "spec_kitty_transport_v1" spec-kitty-transport.7
render man1/spec-kitty-transport-check.1.gz
