#!/usr/bin/env bash
# Builds the libFuzzer harnesses (clang, ASan+UBSan) in build/fuzz and runs
# each for SECONDS (default 20) on a copy of its seed corpus fuzz/corpus/NAME:
# the seeds replay first, so a known crash kept there fails at once.
#   scripts/fuzz.sh [SECONDS]
#   SK_FUZZ_ONLY="config bundle"   some harnesses only
#   SK_FUZZ_JOBS=N                 harnesses run at once (default: the core count, at most 2)
# Crashes, leaks and timeouts fail the run; their inputs are kept in
# build/fuzz/runs/NAME/ (crash-*, leak-*, timeout-*). Ends with the line
# "fuzz: N passed, M failed"; exit status 1 when M > 0.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-20}
BUILD=build/fuzz
CORES=$(nproc)
JOBS=${SK_FUZZ_JOBS:-$((CORES < 2 ? CORES : 2))}

echo "== configure $BUILD (clang, libFuzzer, ASan+UBSan)"
CC=clang cmake -S . -B "$BUILD" -DSK_FUZZ=ON -DSK_SANITIZE=ON -DSK_WERROR=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSK_BUILD_TESTS=OFF -DSK_BUILD_BENCH=OFF \
  -DSK_BUILD_RECEIVER=OFF >/dev/null
echo "== build $BUILD"
cmake --build "$BUILD" --target fuzzers -j"$(nproc)" >/dev/null

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# Runs one harness; leaves "ok" or "failed" in its run folder.
fuzz_one() {
  local name=$1 run="$BUILD/runs/$1"
  rm -rf "$run"
  mkdir -p "$run/corpus"
  cp fuzz/corpus/"$name"/* "$run/corpus/" # new inputs go to the copy, never the repo
  if "$BUILD/fuzz/fuzz_$name" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
    -dict=fuzz/json.dict -print_final_stats=1 -artifact_prefix="$run/" "$run/corpus" \
    >"$run/log" 2>&1; then
    echo ok >"$run/result"
  else
    echo failed >"$run/result"
  fi
}

harnesses=${SK_FUZZ_ONLY:-$(cd fuzz/corpus && ls)}
echo "== fuzz $(echo $harnesses | wc -w) harnesses, ${SECONDS_EACH} s each, $JOBS at a time"
for name in $harnesses; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  fuzz_one "$name" &
done
wait

passed=0 failed=0
for name in $harnesses; do
  run="$BUILD/runs/$name"
  if [ "$(cat "$run/result" 2>/dev/null)" = ok ]; then
    passed=$((passed + 1))
    echo "  $name: $(sed -n 's/^stat::number_of_executed_units: *//p' "$run/log") runs, no crash"
  else
    failed=$((failed + 1))
    echo "  $name FAILED: input(s) in $run/, log $run/log; last lines:"
    grep -vE '^#[0-9]+' "$run/log" | tail -n 25 | sed 's/^/    /'
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
