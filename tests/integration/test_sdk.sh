#!/usr/bin/env bash
# The SDK as a third party uses it: the installed template builds out of tree with
# pkg-config, passes the conformance checker, and delivers through `sync now`.
. "$(dirname "$0")/lib.sh"
CHECK="$SK_PREFIX/bin/spec-kitty-transport-check"
[ -f "$SK_PREFIX/lib/pkgconfig/spec-kitty-transport.pc" ] || fail "pkg-config file not installed"; pass
[ -f "$SK_PREFIX/share/spec-kitty/sdk/template/print_transport.c" ] || fail "template not installed"; pass

cmake -S "$SK_PREFIX/share/spec-kitty/sdk/template" -B "$TEST_TMP/print-build" \
  -DCMAKE_PREFIX_PATH="$SK_PREFIX" >"$TEST_TMP/cmake.log" 2>&1 || fail "template configure: $(tail -3 "$TEST_TMP/cmake.log")"
cmake --build "$TEST_TMP/print-build" >>"$TEST_TMP/cmake.log" 2>&1 || fail "template build: $(tail -3 "$TEST_TMP/cmake.log")"
PLUGIN="$TEST_TMP/print-build/print.so"
[ -f "$PLUGIN" ] || fail "no print.so"; pass
expect_eq "$(nm -D --defined-only "$PLUGIN" | awk '$2 == "T" {print $3}')" spec_kitty_transport_v1 "exported symbols"
# The shipped transports export nothing but their entry point either.
for t in http-batch file-drop; do
  expect_eq "$(nm -D --defined-only "$SK_PREFIX/lib/spec-kitty/transports/$t.so" | awk '$2 == "T" {print $3}')" \
    spec_kitty_transport_v1 "symbols exported by $t.so"
done

set +e; "$CHECK" "$PLUGIN" "{\"path\": \"$TEST_TMP/check.ndjson\"}" >"$TEST_TMP/check.out"; RC=$?; set -e
expect_rc 0 "conformance check of the template"
grep -q "^conformant" "$TEST_TMP/check.out" || fail "checker verdict: $(cat "$TEST_TMP/check.out")"; pass
expect_eq "$(wc -l <"$TEST_TMP/check.ndjson")" 3 "events the checker sent"
set +e; "$CHECK" "$SK_TEST_PLUGIN_DIR/abi_newer_minor.so" >/dev/null 2>"$TEST_TMP/check.err"; RC=$?; set -e
expect_rc 2 "checker on a plugin built for a newer minor"
grep -q "ABI minor too new" "$TEST_TMP/check.err" || fail "checker message: $(cat "$TEST_TMP/check.err")"; pass
set +e; "$CHECK" >/dev/null 2>&1; RC=$?; set -e; expect_rc 2 "checker without arguments"

# The host delivers through it.
emit_many 25
config "{\"transport\": {\"plugin\": \"$PLUGIN\", \"options\": {\"path\": \"$TEST_TMP/out.ndjson\"}}}"
sk sync now; expect_rc 0; expect_out "Synced: 25"
expect_eq "$(jq -r .event_id "$TEST_TMP/out.ndjson" | sort -u | wc -l)" 25 "events printed by the template"
sk sync plugins --json; expect_rc 0
