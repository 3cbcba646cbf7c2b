#!/usr/bin/env bash
# receiver-down.sh DIR
# Stops exactly the receiver and nghttpx that receiver-up.sh DIR started
# (by the PIDs in DIR/receiver.env), waiting for them to exit.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: receiver-down.sh DIR" >&2; exit 2; }
env_file=$1/receiver.env
[ -f "$env_file" ] || { echo "receiver-down.sh: no $env_file" >&2; exit 1; }
# shellcheck disable=SC1090
. "$env_file"

# Both get SIGTERM at once, then we wait for each (KILL after 10 s).
# A PID is only signalled while it still runs the program we started there.
pids=()
for entry in "${NGHTTPX_PID:-}:nghttpx" "${RECEIVER_PID:-}:spec-kitty-receiver"; do
  pid=${entry%%:*}
  [ -n "$pid" ] || continue
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "${entry#*:}"; then
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  fi
done
for pid in "${pids[@]}"; do
  for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "receiver-down.sh: $pid ignored SIGTERM, killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
done
