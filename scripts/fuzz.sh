#!/usr/bin/env bash
# Builds the libFuzzer harnesses (clang, ASan+UBSan) in build/fuzz and runs
# each for SECONDS (default 20) on a copy of its seed corpus fuzz/corpus/NAME:
# the seeds replay first, so a known crash kept there fails at once.
#   scripts/fuzz.sh [SECONDS]
#   SK_FUZZ_ONLY="config bundle" scripts/fuzz.sh 60    some harnesses only
# Crashes, leaks and timeouts fail the run; their inputs are kept in
# build/fuzz/runs/NAME/ (crash-*, leak-*, timeout-*). Ends with the line
# "fuzz: N passed, M failed"; exit status 1 when M > 0.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-20}
BUILD=build/fuzz

echo "== configure $BUILD (clang, libFuzzer, ASan+UBSan)"
CC=clang cmake -S . -B "$BUILD" -DSK_FUZZ=ON -DSK_SANITIZE=ON -DSK_WERROR=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSK_BUILD_TESTS=OFF -DSK_BUILD_BENCH=OFF \
  -DSK_BUILD_RECEIVER=OFF >/dev/null
echo "== build $BUILD"
cmake --build "$BUILD" --target fuzzers -j"$(nproc)" >/dev/null

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
harnesses=${SK_FUZZ_ONLY:-$(cd fuzz/corpus && ls)}
passed=0 failed=0
for name in $harnesses; do
  run="$BUILD/runs/$name"
  rm -rf "$run"
  mkdir -p "$run/corpus"
  cp fuzz/corpus/"$name"/* "$run/corpus/" # new inputs go to the copy, never the repo
  echo "== fuzz $name (${SECONDS_EACH} s)"
  if "$BUILD/fuzz/fuzz_$name" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
    -dict=fuzz/json.dict -print_final_stats=1 -artifact_prefix="$run/" "$run/corpus" \
    >"$run/log" 2>&1; then
    passed=$((passed + 1))
    grep -E '^stat::number_of_executed_units' "$run/log" | sed "s/^/  $name /"
  else
    failed=$((failed + 1))
    echo "  $name FAILED: input(s) in $run/, log $run/log; last lines:"
    grep -vE '^#[0-9]+' "$run/log" | tail -n 25 | sed 's/^/    /'
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
