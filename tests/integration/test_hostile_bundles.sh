#!/usr/bin/env bash
# `sync import` on bundles crafted by whoever can write to an outbox: a NUL byte
# in a line (the manifest's sha256 and counts matching) is refused, not a crash;
# a manifest linked to another file is refused unread; an imported/ folder that
# is a symbolic link does not carry processed bundles to where it points.
. "$(dirname "$0")/lib.sh"
OUTBOX="$TEST_TMP/outbox"

config "{\"transport\": {\"plugin\": \"file-drop\", \"options\": {\"outbox\": \"$OUTBOX\"}}}"
emit_many 3
sk sync now; expect_rc 0 "sync now into the outbox"
GOOD="$(ls -d "$OUTBOX"/*.skb)"
[ "$(echo "$GOOD" | wc -l)" = 1 ] || fail "expected one bundle, got: $GOOD"; pass
export SPEC_KITTY_HOME="$TEST_TMP/connected"

# copy_bundle NAME: a fresh copy of the good bundle in $OUTBOX/NAME.skb.
copy_bundle() { cp -r "$GOOD" "$OUTBOX/$1.skb"; echo "$OUTBOX/$1.skb"; }

# 1. A NUL byte before the second newline, with a manifest that matches it.
B="$(copy_bundle nul)"
zcat "$GOOD/events.ndjson.gz" | sed '2s/}$/}\x00x/' | gzip -n >"$B/events.ndjson.gz"
SIZE="$(zcat "$B/events.ndjson.gz" | wc -c)"
jq --arg sha "$(sha256sum "$B/events.ndjson.gz" | cut -d' ' -f1)" \
  --argjson bytes "$(stat -c %s "$B/events.ndjson.gz")" --argjson size "$SIZE" \
  '.data_sha256 = $sha | .data_bytes = $bytes | .uncompressed_bytes = $size' \
  "$GOOD/manifest.json" >"$B/manifest.json"
[ "$(zcat "$B/events.ndjson.gz" | tr -cd '\000' | wc -c)" = 1 ] || fail "crafting the NUL failed"; pass
sk sync import "$B"; expect_rc 1 "import of the NUL bundle"
expect_err "events.ndjson.gz: line 2 holds a NUL byte"
[ -d "$B" ] || fail "the refused bundle was moved"; pass
rm -rf "$B"

# 2. manifest.json linked to a file of the importer's: refused, nothing of it echoed.
B="$(copy_bundle link)"
printf 'root:x:0:0:secret-line\n' >"$TEST_TMP/private"
rm "$B/manifest.json"; ln -s "$TEST_TMP/private" "$B/manifest.json"
sk sync import "$B"; expect_rc 1 "import of a linked manifest"
expect_err "manifest.json: a symbolic link: refused"
grep -q "secret-line\|root" <<<"$ERR" && fail "the link target leaked into the error: $ERR"; pass
rm -rf "$B"

# 3. imported/ is a symbolic link: the events are queued, the bundle stays put.
mkdir "$TEST_TMP/elsewhere"
ln -s "$TEST_TMP/elsewhere" "$OUTBOX/imported"
sk sync import "$OUTBOX"; expect_rc 0 "import with a linked imported/"
expect_out "queued 3 events from 1 bundles"
expect_err "imported: a symbolic link: refused"
[ -d "$GOOD" ] || fail "the bundle left the outbox"; pass
[ -z "$(ls "$TEST_TMP/elsewhere")" ] || fail "a bundle was moved through the link"; pass
expect_eq "$(queue_ready)" 3 "queued events"
