#!/usr/bin/env bash
# Sets up a fresh Debian machine (as root) and runs the whole test suite:
# a -Werror build with every unit and integration test, then the same suite
# under AddressSanitizer + UndefinedBehaviorSanitizer, then every fuzz
# harness for a few seconds (scripts/fuzz.sh).
#   scripts/test.sh            both builds
#   SK_SKIP_ASAN=1 scripts/test.sh   the plain build only (quicker, local use)
#   SK_SKIP_FUZZ=1 scripts/test.sh   without the short fuzz runs (scripts/fuzz.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh

JOBS="$(nproc)"
run_suite() {
  local dir=$1; shift
  echo "== configure $dir ($*)"
  cmake -S . -B "$dir" -DSK_WERROR=ON "$@" >/dev/null
  echo "== build $dir"
  cmake --build "$dir" -j"$JOBS" >/dev/null
  echo "== test $dir"
  ctest --test-dir "$dir" --output-on-failure -j"$JOBS" --timeout 600
}

run_suite build/test -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [ "${SK_SKIP_ASAN:-0}" != 1 ]; then
  # A 64 MB quarantine (ASan's default is 256 MB) still catches use-after-free, and
  # keeps freed memory from counting in the receiver's peak-memory check of 100 MB uploads.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:quarantine_size_mb=64 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_suite build/asan -DCMAKE_BUILD_TYPE=Debug -DSK_SANITIZE=ON -DSK_BUILD_BENCH=OFF
fi
if [ "${SK_SKIP_FUZZ:-0}" != 1 ]; then
  # Each harness briefly (two at a time): replays the seed corpus, known crashes included.
  bash scripts/fuzz.sh "${SK_FUZZ_SECONDS:-15}"
fi
echo "== all suites passed"
