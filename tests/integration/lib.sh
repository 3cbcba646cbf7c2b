# Shared helpers of the integration tests: each test sources this file, runs the
# installed `spec-kitty` in a fresh state root, and fails loudly on the first
# broken expectation. Set SK_TEST_KEEP=1 to keep the temporary folder.
set -euo pipefail

: "${SK_PREFIX:?run through ctest (SK_PREFIX is the install prefix)}"
SK_BIN="$SK_PREFIX/bin/spec-kitty"
TEST_NAME="$(basename "$0" .sh)"
TEST_TMP="$(mktemp -d "${TMPDIR:-/tmp}/sk-it-XXXXXX")"
export SPEC_KITTY_HOME="$TEST_TMP/home"
export NO_COLOR=1
unset SPEC_KITTY_SAAS_URL SPEC_KITTY_ACCESS_TOKEN SPEC_KITTY_PLUGIN_PATH
CHECKS=0
OUT="" ERR="" RC=0
# Extra milliseconds that timing bounds allow: the ThreadSanitizer suite runs
# everything several times slower (scripts/test.sh sets it there).
SK_TEST_SLACK_MS="${SK_TEST_SLACK_MS:-0}"

cleanup() {
  local rc=$?
  for f in "$TEST_TMP"/*.cleanup; do [ -e "$f" ] && bash "$f" >/dev/null 2>&1 || true; done
  if [ "${SK_TEST_KEEP:-0}" = 1 ]; then echo "kept $TEST_TMP"; else rm -rf "$TEST_TMP"; fi
  if [ $rc -eq 0 ]; then echo "$TEST_NAME: $CHECKS checks passed"; fi
  exit $rc
}
trap cleanup EXIT

fail() { echo "FAIL [$TEST_NAME]: $*" >&2; exit 1; }
pass() { CHECKS=$((CHECKS + 1)); }

# sk_run CMD...: runs CMD (another program, or a wrapper running spec-kitty: timeout,
# setpriv ...), output in $OUT / $ERR, exit code in $RC (never aborts).
sk_run() {
  set +e
  "$@" >"$TEST_TMP/out" 2>"$TEST_TMP/err"
  RC=$?
  set -e
  OUT="$(cat "$TEST_TMP/out")"
  ERR="$(cat "$TEST_TMP/err")"
}

# sk ARGS...: runs spec-kitty (see sk_run).
sk() { sk_run "$SK_BIN" "$@"; }

expect_rc() { [ "$RC" -eq "$1" ] || fail "${2:-command}: exit $RC, expected $1; stderr: $ERR; stdout: $OUT"; pass; }
expect_out() { grep -qF -- "$1" <<<"$OUT" || fail "stdout lacks '$1': $OUT"; pass; }
expect_err() { grep -qF -- "$1" <<<"$ERR" || fail "stderr lacks '$1': $ERR"; pass; }
expect_eq() { [ "$1" = "$2" ] || fail "${3:-value}: got '$1', expected '$2'"; pass; }
expect_ge() { [ "$1" -ge "$2" ] || fail "${3:-value}: got $1, expected >= $2"; pass; }

# Writes the sync config.
config() { mkdir -p "$SPEC_KITTY_HOME"; printf '%s\n' "$1" >"$SPEC_KITTY_HOME/sync.json"; }

# Queue counts straight from the SQLite file (state 0 ready, 1 parked).
queue_ready() { sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT count(*) FROM queue WHERE coalesce(state,0)=0"; }
queue_parked() { sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT count(*) FROM queue WHERE state=1"; }

# emit_many N [TYPE]: queues N valid events in one transaction.
emit_many() {
  local n=$1
  awk -v n="$n" 'BEGIN { for (i = 1; i <= n; i++)
    printf "{\"event_type\":\"WPStatusChanged\",\"aggregate_id\":\"WP%02d\",\"payload\":{\"wp_id\":\"WP%02d\",\"previous_status\":\"planned\",\"new_status\":\"doing\"}}\n", i % 100, i % 100 }' >"$TEST_TMP/events.ndjson"
  sk sync emit --file "$TEST_TMP/events.ndjson"
  expect_rc 0 "emit $n"
}
