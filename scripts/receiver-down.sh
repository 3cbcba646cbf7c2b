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

stop() { # pid name
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.05
  done
  echo "receiver-down.sh: $2 ($pid) ignored SIGTERM, killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
}
stop "${NGHTTPX_PID:-}" nghttpx
stop "${RECEIVER_PID:-}" spec-kitty-receiver
