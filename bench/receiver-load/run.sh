#!/usr/bin/env bash
# run.sh BUILD_DIR [receiver-load args...]
# Starts a fresh spec-kitty-receiver (--no-auth --quiet, a temporary database),
# runs BUILD_DIR/bin/receiver-load against it, prints the client's line plus the
# receiver's own CPU time (user+sys, all threads), and stops the receiver.
set -euo pipefail
build=$(cd "${1:?usage: run.sh BUILD_DIR [receiver-load args...]}" && pwd)
shift
dir=$(mktemp -d "${TMPDIR:-/tmp}/receiver-load.XXXXXX")
"$build/bin/spec-kitty-receiver" --no-auth --quiet --listen 127.0.0.1:0 --db "$dir/r.db" \
  >"$dir/log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
url=""
for _ in $(seq 1 100); do
  url=$(grep -o 'http://[^ ]*' "$dir/log" 2>/dev/null || true)
  [ -n "$url" ] && break
  sleep 0.05
done
[ -n "$url" ] || { echo "run.sh: receiver did not start: $(cat "$dir/log")" >&2; exit 1; }
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
ticks=$(getconf CLK_TCK)
before=$(cpu)
"$build/bin/receiver-load" --url "$url" "$@"
after=$(cpu)
echo "receiver_cpu_ms=$(((after - before) * 1000 / ticks))"
