#!/usr/bin/env bash
# Out-of-tree builds against the installed prefix, as embedders and plugin authors do
# them: find_package(SpecKittySync), pkg-config spec-kitty-sync, and
# find_package(SpecKittyTransport); each result runs against the real queue or checker.
. "$(dirname "$0")/lib.sh"
SRC="$(dirname "$0")/outoftree"
# Against an ASan+UBSan library the program must carry the same runtime (it comes first).
SAN=()
# (ldd's whole output first: grep -q ending early would fail the pipe under pipefail)
case "$(ldd "$SK_PREFIX/lib/libspec-kitty-sync.so.0")" in *libasan*) SAN=(-fsanitize=address,undefined) ;; esac
build() { # build NAME SOURCE_DIR [cmake args]
  local name=$1 src=$2; shift 2
  cmake -S "$src" -B "$TEST_TMP/$name" -DCMAKE_PREFIX_PATH="$SK_PREFIX" "$@" >"$TEST_TMP/$name.log" 2>&1 ||
    fail "$name configure: $(tail -5 "$TEST_TMP/$name.log")"
  cmake --build "$TEST_TMP/$name" >>"$TEST_TMP/$name.log" 2>&1 || fail "$name build: $(tail -5 "$TEST_TMP/$name.log")"
  pass
}
queued_by() { # queued_by PROGRAM: runs it on the state root, checks the CLI sees the event
  "$1" "$SPEC_KITTY_HOME" >"$TEST_TMP/embed.out" 2>&1 || fail "$1: $(cat "$TEST_TMP/embed.out")"; pass
  grep -q "queue size $2" "$TEST_TMP/embed.out" || fail "$1 printed: $(cat "$TEST_TMP/embed.out")"; pass
}

# find_package(SpecKittySync): linked against the installed shared library.
build embed-cmake "$SRC/embed" ${SAN:+-DCMAKE_C_FLAGS="${SAN[*]}"}
readelf -d "$TEST_TMP/embed-cmake/embed" | grep -q "NEEDED.*libspec-kitty-sync.so.0" || fail "embed does not link libspec-kitty-sync.so.0"; pass
# A version the package does not satisfy is refused.
mkdir -p "$TEST_TMP/embed-v9-src" && cp "$SRC/embed/embed.c" "$TEST_TMP/embed-v9-src/"
sed 's/SpecKittySync 0.1 REQUIRED/SpecKittySync 9.0 REQUIRED/' "$SRC/embed/CMakeLists.txt" >"$TEST_TMP/embed-v9-src/CMakeLists.txt"
set +e; cmake -S "$TEST_TMP/embed-v9-src" -B "$TEST_TMP/embed-v9" -DCMAKE_PREFIX_PATH="$SK_PREFIX" >"$TEST_TMP/v9.log" 2>&1; RC=$?; set -e
expect_rc 1 "find_package(SpecKittySync 9.0)"
grep -q "SpecKittySyncConfig.cmake, version: 0.1.0" "$TEST_TMP/v9.log" || fail "version refusal: $(cat "$TEST_TMP/v9.log")"; pass
queued_by "$TEST_TMP/embed-cmake/embed" 1

# pkg-config spec-kitty-sync, with a plain compiler command.
export PKG_CONFIG_PATH="$SK_PREFIX/lib/pkgconfig"
expect_eq "$(pkg-config --modversion spec-kitty-sync)" "$("$SK_BIN" --version | awk '{print $2}')" "pkg-config version"
# shellcheck disable=SC2046
cc "${SAN[@]}" -o "$TEST_TMP/embed-pc" "$SRC/embed/embed.c" $(pkg-config --cflags --libs spec-kitty-sync) ||
  fail "cc with pkg-config spec-kitty-sync"; pass
LD_LIBRARY_PATH="$SK_PREFIX/lib" queued_by "$TEST_TMP/embed-pc" 2
sk sync status --json; expect_rc 0
expect_eq "$(jq .queue.size <<<"$OUT")" 2 "queue size the CLI sees"

# find_package(SpecKittyTransport): the SDK template as a plugin, conformant.
build transport-cmake "$SRC/transport" -DPLUGIN_SOURCE="$SK_PREFIX/share/spec-kitty/sdk/template/print_transport.c"
PLUGIN="$TEST_TMP/transport-cmake/print.so"
expect_eq "$(nm -D --defined-only "$PLUGIN" | awk '$2 == "T" {print $3}')" spec_kitty_transport_v1 "exported symbols"
set +e; "$SK_PREFIX/bin/spec-kitty-transport-check" "$PLUGIN" "{\"path\": \"$TEST_TMP/check.ndjson\"}" >"$TEST_TMP/check.out"; RC=$?; set -e
expect_rc 0 "conformance check: $(cat "$TEST_TMP/check.out")"
grep -q "^conformant" "$TEST_TMP/check.out" || fail "checker verdict: $(cat "$TEST_TMP/check.out")"; pass
