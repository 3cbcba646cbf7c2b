#!/usr/bin/env bash
# CLI benchmarks (not a test), each rate also as a fraction of SQLite's own
# floor measured first in the same run (bench/floor): one `sync emit` process
# (200 runs alternating with SQLite's one-insert process, beside the process
# start), `sync emit --file` of 100 000 lines (rate, peak RSS), `sync status`
# with 100 000 queued (50 runs alternating with SQLite's count process), `sync
# now` draining 100 000 events to file-drop (5 runs alternating with the
# read+delete floor) and to the reference
# receiver over http-batch (gzip 1 and 6: rate, client CPU per event, peak
# RSS), against a receiver with Nagle's algorithm on, and beside a model of
# spec-kitty's era-A Python client (bench/python, where python3-requests is
# installed).
#   bench/cli/run.sh [BUILD_DIR]      (default: build/bench, built RelWithDebInfo)
#   FLOOR=path/to/bench_floor         (default: BUILD_DIR/bench/bench_floor)
# Prints one line per figure; bench/README.md records them with the machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
bench_prepare "${1:-}"
FLOOR="${FLOOR:-$BUILD/bench/bench_floor}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sk-bench-XXXXXX")"
trap 'bash scripts/receiver-down.sh "$WORK/rcv" >/dev/null 2>&1 || true; "$SK" sync daemon stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
export SPEC_KITTY_HOME="$WORK/home"
N=100000

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# Wall microseconds of one run of "$@" (bash's own clock: no extra process).
wall_us() {
  local t0=$EPOCHREALTIME
  "$@" >/dev/null
  local t1=$EPOCHREALTIME
  echo $(( ${t1/./} - ${t0/./} ))
}
pct() { echo "$(( $1 * 100 / $2 ))%"; }
# alternate N A B: N pairs of runs of the commands (functions) A and B, A first in even
# pairs and B first in odd ones (so neither side always follows the other); the wall
# microseconds of each go to $WORK/A and $WORK/B, one line per pair. On a shared machine
# whose speed drifts between minutes, a figure and its floor taken in alternation
# compare; two blocks measured one after the other need not.
alternate() {
  : >"$WORK/$2"
  : >"$WORK/$3"
  local first second
  for ((i = 0; i < $1; i++)); do
    if ((i % 2)); then first=$3 second=$2; else first=$2 second=$3; fi
    wall_us "$first" >>"$WORK/$first"
    wall_us "$second" >>"$WORK/$second"
  done
}
# pair_ratio A B: the median over the pairs of B's figure / A's.
pair_ratio() { paste "$WORK/$1" "$WORK/$2" | awk '{ printf "%.3f\n", $2 / $1 }' | median; }
# timed FILE CMD...: runs CMD, writes "wall_s cpu_s peak_kb" to FILE.
timed() { local out="$1"; shift; /usr/bin/time -f "%e %U %S %M" -o "$out.t" "$@" >/dev/null; awk '{ printf "%s %.3f %s\n", $1, $2 + $3, $4 }' "$out.t" >"$out"; }

gen_events() { # gen_events N FILE
  awk -v n="$1" 'BEGIN { for (i = 1; i <= n; i++)
    printf "{\"event_type\":\"WPStatusChanged\",\"aggregate_id\":\"WP%02d\",\"payload\":{\"wp_id\":\"WP%02d\",\"previous_status\":\"planned\",\"new_status\":\"doing\",\"feature_slug\":\"bench-feature\"}}\n", i % 100, i % 100 }' >"$2"
}
gen_events $N "$WORK/events.ndjson"

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(df -T "$WORK" | awk 'NR==2 {print $2}') on $(df "$WORK" | awk 'NR==2 {print $1}'), load $(cut -d' ' -f1-3 /proc/loadavg)"

# 0. The floor: SQLite alone, same machine, same run.
TMPDIR="$WORK" "$FLOOR" $N | tee "$WORK/floor"
FLOOR_INS=$(sed -n 's/^floor: insert=\([0-9]*\) .*/\1/p' "$WORK/floor")
FLOOR_DEL=$(sed -n 's/^floor: .*read_delete=\([0-9]*\)/\1/p' "$WORK/floor")

# 1. One `sync emit` process, wall time (durability full), median of 200, beside
#    the process floor: `spec-kitty --version` (start, link, exit; no state), and
#    the machine's own: /bin/true (any process at all costs that here).
for ((i = 0; i < 200; i++)); do wall_us /bin/true; done | median >"$WORK/true"
echo "any process: /bin/true, median wall $(echo "scale=2; $(cat "$WORK/true") / 1000" | bc) ms of 200 runs"
for ((i = 0; i < 200; i++)); do wall_us "$SK" --version; done | median >"$WORK/start"
START_US=$(cat "$WORK/start")
ms() { echo "scale=2; $1 / 1000" | bc; }
times_start() { echo "$(echo "scale=1; $1 / $START_US" | bc)x the process start"; }
echo "process start: spec-kitty --version, median wall $(ms "$START_US") ms of 200 runs"
# SQLite's floor of one emit: a process that opens the file, inserts one envelope
# durably and closes (bench_floor --one), alternating with one emit, 200 pairs.
floor_one() { "$FLOOR" --one "$WORK/one.db"; }
emit_one() { "$SK" sync emit -t WPStatusChanged -a WP01 -p '{"wp_id":"WP01","previous_status":"planned","new_status":"doing"}'; }
emit_one >/dev/null
alternate 200 floor_one emit_one
ONE_US=$(median <"$WORK/floor_one")
EMIT_US=$(median <"$WORK/emit_one")
echo "floor: one durable insert in its own process, median wall $(ms "$ONE_US") ms of 200 runs"
echo "emit: one process, median wall $(ms "$EMIT_US") ms of 200 runs alternating with the floor's = $(times_start "$EMIT_US"), median of the paired ratios $(pair_ratio floor_one emit_one)x the one-insert floor's wall (target <= 3 ms)"

# 2. Batched emit through the CLI: rate and peak RSS.
rm -rf "$SPEC_KITTY_HOME"
timed "$WORK/r" "$SK" sync emit --file "$WORK/events.ndjson"
read -r wall cpu kb <"$WORK/r"
rate=$(echo "$N / $wall" | bc)
echo "emit --file: $N events in $wall s = $rate events/s ($(pct "$rate" "$FLOOR_INS") of the insert floor), CPU $(echo "scale=1; $cpu * 1000000 / $N" | bc) us/event, peak RSS $((kb / 1024)) MB (targets: >= 60 %, <= 32 MB at 1 000 000 lines)"
cp "$SPEC_KITTY_HOME/queue.db" "$WORK/full.db"

# 3. `sync status` with 100 000 queued, beside SQLite's floor of it: a process that
#    opens the same file as the engine does and counts its rows (bench_floor --count),
#    50 alternating pairs.
floor_count() { "$FLOOR" --count "$SPEC_KITTY_HOME/queue.db"; }
status() { "$SK" sync status; }
alternate 50 floor_count status
COUNT_US=$(median <"$WORK/floor_count")
STATUS_US=$(median <"$WORK/status")
echo "floor: one count of $N rows in its own process, median wall $(ms "$COUNT_US") ms of 50 runs"
echo "status: median wall $(ms "$STATUS_US") ms of 50 runs with $N queued alternating with the floor's = $(times_start "$STATUS_US"), median of the paired ratios $(pair_ratio floor_count status)x the count floor's wall (target <= 5 ms)"

restore() { rm -f "$SPEC_KITTY_HOME/queue.db"*; cp "$WORK/full.db" "$SPEC_KITTY_HOME/queue.db"; }

# 4. sync now to file-drop from the same full queue, 5 runs, each after a run of the
#    floor (its read+delete rate): median rate, and the median of the paired fractions.
printf '{"transport": {"plugin": "file-drop", "options": {"outbox": "%s"}}}\n' "$WORK/outbox" >"$SPEC_KITTY_HOME/sync.json"
: >"$WORK/fd-pairs"
for i in 1 2 3 4 5; do
  floor_del=$(TMPDIR="$WORK" "$FLOOR" $N | sed -n 's/^floor: .*read_delete=\([0-9]*\)/\1/p')
  restore; rm -rf "$WORK/outbox"
  timed "$WORK/r$i" "$SK" sync now
  read -r wall cpu kb <"$WORK/r$i"
  [ -n "$floor_del" ] || { echo "bench_floor printed no read+delete rate" >&2; exit 1; }
  echo "$wall $cpu $kb $(awk -v n=$N -v w="$wall" -v f="$floor_del" 'BEGIN { printf "%.2f", n / w / f }')" >>"$WORK/fd-pairs"
done
read -r wall cpu kb _ < <(sort -g "$WORK/fd-pairs" | sed -n 3p)
rate=$(echo "$N / $wall" | bc)
echo "sync now -> file-drop: $N events in $wall s = $rate events/s (median of 5), CPU $(echo "scale=1; $cpu * 1000000 / $N" | bc) us/event, peak RSS $((kb / 1024)) MB; each run after a run of the read+delete floor: median fraction $(cut -d' ' -f4 "$WORK/fd-pairs" | median) of the floor's rate (range $(cut -d' ' -f4 "$WORK/fd-pairs" | sort -g | sed -n '1p;$p' | paste -sd' ' | sed 's/ / to /')) (target >= 0.90)"

# A receiver of its own (an empty store) for the next timed drain, at $WORK/rcv; sets
# RECEIVER_URL. A receiver that already holds the events answers "duplicate" to each,
# which costs it less than storing them: drains compared with each other must not differ
# in that.
fresh_receiver() {
  bash scripts/receiver-down.sh "$WORK/rcv" >/dev/null 2>&1 || true
  rm -rf "$WORK/rcv"
  SK_PREFIX="$PREFIX" bash scripts/receiver-up.sh "$WORK/rcv" --no-auth --quiet >/dev/null
  . "$WORK/rcv/receiver.env"
}

# 5. sync now to the receiver over http-batch (loopback, no auth, rate limit off).
if [ -x "$PREFIX/bin/spec-kitty-receiver" ]; then
  for level in 1 6; do
    restore
    fresh_receiver
    printf '{"server_url": "%s", "transport": {"plugin": "http-batch", "options": {"gzip_level": %d}}}\n' "$RECEIVER_URL" $level >"$SPEC_KITTY_HOME/sync.json"
    SPEC_KITTY_ACCESS_TOKEN=bench timed "$WORK/r" "$SK" sync now
    read -r wall cpu kb <"$WORK/r"
    rate=$(echo "$N / $wall" | bc)
    echo "sync now -> receiver (http-batch, gzip $level): $N events in $wall s = $rate events/s ($(pct "$rate" "$FLOOR_DEL") of the read+delete floor), client CPU $(echo "scale=1; $cpu * 1000000 / $N" | bc) us/event, peak RSS $((kb / 1024)) MB (target <= 5 us/event)"
  done
fi

# 6. The same drain against a server with Nagle's algorithm on (receiver --nagle:
#    every response in two writes), 20 000 events, against the plain receiver above.
#    One untimed drain to each first (a receiver's first batches create its store),
#    then three alternating pairs, fresh events each time, the order swapped each round:
#    the medians.
if [ -x "$PREFIX/bin/spec-kitty-receiver" ]; then
  SK_PREFIX="$PREFIX" bash scripts/receiver-up.sh "$WORK/rcv-nagle" --no-auth --quiet --nagle >/dev/null
  NAGLE_URL=$(. "$WORK/rcv-nagle/receiver.env" && echo "$RECEIVER_URL")
  head -20000 "$WORK/events.ndjson" >"$WORK/20k.ndjson"
  for round in 0 1 2 3; do
    urls=("$RECEIVER_URL" "$NAGLE_URL")
    ((round % 2)) && urls=("$NAGLE_URL" "$RECEIVER_URL") # neither always drains first
    for url in "${urls[@]}"; do
      rm -f "$SPEC_KITTY_HOME/queue.db"*
      "$SK" sync emit --file "$WORK/20k.ndjson" >/dev/null
      printf '{"server_url": "%s", "transport": {"plugin": "http-batch"}}\n' "$url" >"$SPEC_KITTY_HOME/sync.json"
      SPEC_KITTY_ACCESS_TOKEN=bench timed "$WORK/r" "$SK" sync now
      read -r wall cpu kb <"$WORK/r"
      [ "$round" = 0 ] || echo "$wall" >>"$WORK/nagle-$([ "$url" = "$NAGLE_URL" ] && echo on || echo off)"
    done
  done
  bash scripts/receiver-down.sh "$WORK/rcv-nagle" >/dev/null
  echo "sync now of 20000 events, median of 3 alternating: $(median <"$WORK/nagle-off") s to the receiver, $(median <"$WORK/nagle-on") s to the receiver with --nagle (target: not slower)"
fi

# 7. Issue 16: `sync now` (http-batch, gzip 1, as in 5) against a model of spec-kitty's
#    era-A Python client (bench/python/era_a_sync.py: one requests.post per 1000-event
#    batch, gzip 9), on the receiver of 5, each run from the same restored 100 000-event
#    queue, alternating C and Python three times each: median walls of the whole
#    processes, their ratio Python/C, and the median of the three ratios of a pair (C run
#    i, Python run i; steadier on a loaded machine) (target >= 4). Each run drains to a
#    fresh receiver, which stores every event. PYTHON (default python3) names the
#    interpreter; it is resolved
#    to the real executable first, so a pyenv shim's start-up is not timed. Skipped
#    without it or without its requests module (Debian: python3-requests, scripts/deps.sh).
if [ -x "$PREFIX/bin/spec-kitty-receiver" ]; then
  left() { "$PY" -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT COUNT(*) FROM queue").fetchone()[0])' "$SPEC_KITTY_HOME/queue.db"; }
  PY=$(command -v "${PYTHON:-python3}" 2>/dev/null || true)
  [ -z "$PY" ] || PY=$("$PY" -c 'import sys; print(sys.executable)' 2>/dev/null || true)
  if [ -z "$PY" ]; then
    echo "sync now vs era-A Python: skipped (no ${PYTHON:-python3})"
  elif ! pyver=$("$PY" -c 'import platform, requests; print(platform.python_version(), "requests", requests.__version__)' 2>/dev/null); then
    echo "sync now vs era-A Python: skipped ($PY has no requests module: install python3-requests, scripts/deps.sh)"
  else
    load0=$(cut -d' ' -f1 /proc/loadavg)
    bad=""
    for i in 1 2 3; do
      restore
      fresh_receiver
      printf '{"server_url": "%s", "transport": {"plugin": "http-batch", "options": {"gzip_level": 1}}}\n' "$RECEIVER_URL" >"$SPEC_KITTY_HOME/sync.json"
      SPEC_KITTY_ACCESS_TOKEN=bench timed "$WORK/ec$i" "$SK" sync now || true
      [ "$(left)" = 0 ] || bad="$bad C run $i left $(left) events;"
      restore
      fresh_receiver
      timed "$WORK/ep$i" "$PY" bench/python/era_a_sync.py "$SPEC_KITTY_HOME/queue.db" "$RECEIVER_URL" bench || true
      [ "$(left)" = 0 ] || bad="$bad Python run $i left $(left) events;"
    done
    # The figures are each file's last line (/usr/bin/time writes a line before them when
    # the command fails; the count of rows left above tells that case).
    c_wall=$(tail -qn1 "$WORK"/ec[123] | cut -d' ' -f1 | median)
    c_cpu=$(tail -qn1 "$WORK"/ec[123] | cut -d' ' -f2 | median)
    p_wall=$(tail -qn1 "$WORK"/ep[123] | cut -d' ' -f1 | median)
    p_cpu=$(tail -qn1 "$WORK"/ep[123] | cut -d' ' -f2 | median)
    pairs=$(for i in 1 2 3; do echo "scale=2; $(tail -n1 "$WORK/ep$i" | cut -d' ' -f1) / $(tail -n1 "$WORK/ec$i" | cut -d' ' -f1)" | bc; done | median)
    echo "sync now vs era-A Python -> receiver, $N events, 3 runs each alternating (load $load0 -> $(cut -d' ' -f1 /proc/loadavg)): C (http-batch, gzip 1) median wall $c_wall s = $(echo "$N / $c_wall" | bc) events/s, CPU $(echo "scale=1; $c_cpu * 1000000 / $N" | bc) us/event; Python model (Python $pyver) median wall $p_wall s = $(echo "$N / $p_wall" | bc) events/s, CPU $(echo "scale=1; $p_cpu * 1000000 / $N" | bc) us/event; Python/C $(echo "scale=2; $p_wall / $c_wall" | bc)x, median of the 3 paired ratios ${pairs}x (target >= 4x)"
    [ -z "$bad" ] || echo "sync now vs era-A Python: NOT ALL DELIVERED, the figures above do not count:$bad"
  fi
fi
