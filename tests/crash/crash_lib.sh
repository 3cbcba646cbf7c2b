# shellcheck shell=bash
# The crash suite's trial loop (source after tests/integration/lib.sh): every
# scenario runs CRASH_TRIALS trials, each with its own random choices (sizes,
# batch limits, kill moments) drawn from bash's $RANDOM seeded per trial, and
# each trial checked in full before the next starts.
#   SK_CRASH_TRIALS=N   trials per scenario (default: a few, fewer under ASan)
#   SK_CRASH_SEED=S     the base seed (default: from /dev/urandom; printed)
#   SK_CRASH_ONLY=K     run trial K only (with the seed of a failed run: its replay)
# A failure names the scenario, trial and seed. The kill moments are replayed as
# delays, not as instants: a replay hits the same phase of the run, not the same
# instruction.

if grep -qs '^SK_SANITIZE:BOOL=ON' "${SK_BUILD_DIR:-/nonexistent}/CMakeCache.txt"; then
  CRASH_DEFAULT_TRIALS=2
else
  CRASH_DEFAULT_TRIALS=3
fi
CRASH_TRIALS=${SK_CRASH_TRIALS:-$CRASH_DEFAULT_TRIALS}
CRASH_SEED=${SK_CRASH_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
CRASH_TRIAL=0
CRASH_T0=${EPOCHREALTIME/./}
# Outcome counters, printed by crash_summary: kills that hit a running process,
# kills that came after it had finished (still a valid trial: the restart path).
CRASH_KILLS_HIT=0 CRASH_KILLS_LATE=0
# The range of kill moments, in percent of a run's calibrated time: each late kill
# narrows it, each hit widens it, so about half the kills land mid-run however loaded
# the machine (or slow the sanitized build) is.
CRASH_SCALE=100

fail() {
  if [ "$CRASH_TRIAL" = 0 ]; then
    echo "FAIL [$TEST_NAME] calibration run (no kill): $*" >&2
  else
    echo "FAIL [$TEST_NAME] trial $CRASH_TRIAL of $CRASH_TRIALS, seed $CRASH_SEED" \
      "(replay: SK_CRASH_SEED=$CRASH_SEED SK_CRASH_ONLY=$CRASH_TRIAL SK_TEST_KEEP=1): $*" >&2
  fi
  exit 1
}

# crash_trials FUNCTION: runs FUNCTION once per trial, with $RANDOM reseeded from the
# base seed and the trial number, in a fresh folder $TRIAL_DIR removed after a pass.
crash_trials() {
  local t
  echo "$TEST_NAME: $CRASH_TRIALS trials, seed $CRASH_SEED"
  for ((t = 1; t <= CRASH_TRIALS; t++)); do
    [ -z "${SK_CRASH_ONLY:-}" ] || [ "$SK_CRASH_ONLY" = "$t" ] || continue
    CRASH_TRIAL=$t
    RANDOM=$((CRASH_SEED * 1000 + t))
    TRIAL_DIR="$TEST_TMP/trial-$t"
    mkdir -p "$TRIAL_DIR"
    "$1"
    echo "trial $t passed ($(($(elapsed_ms "$CRASH_T0") / 1000)) s)"
    [ "${SK_TEST_KEEP:-0}" = 1 ] || rm -rf "$TRIAL_DIR"
  done
}

# rand VAR LO HI: sets VAR to a uniform integer in [LO, HI] (HI - LO < 2^30). Not
# through $(...): bash reseeds $RANDOM in every subshell, which would break replays.
rand() { printf -v "$1" %d $(($2 + ((RANDOM << 15) | RANDOM) % ($3 - $2 + 1))); }

# kill_moment VAR MS: sets VAR to a random moment (ms) in a run that took MS alone.
kill_moment() { rand "$1" 0 $(($2 * CRASH_SCALE / 100)); }

# sleep_ms MS
sleep_ms() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }

# The wall clock in microseconds is ${EPOCHREALTIME/./} (bash 5): no fork, so kill
# moments are not delayed by process creation on a loaded machine.
# elapsed_ms SINCE_US: milliseconds since such a reading.
elapsed_ms() { echo $(((${EPOCHREALTIME/./} - $1) / 1000)); }

# kill_counts HIT: counts one kill, as one that hit work in flight when HIT is 1, and
# widens or narrows the range of kill moments accordingly.
kill_counts() {
  if [ "$1" = 1 ]; then
    CRASH_KILLS_HIT=$((CRASH_KILLS_HIT + 1))
    CRASH_SCALE=$((CRASH_SCALE < 800 ? CRASH_SCALE * 11 / 10 : CRASH_SCALE))
  else
    CRASH_KILLS_LATE=$((CRASH_KILLS_LATE + 1))
    CRASH_SCALE=$((CRASH_SCALE > 20 ? CRASH_SCALE * 9 / 10 : CRASH_SCALE))
  fi
}

# kill_at DEADLINE_US:PID...: kills -9 each PID (a child of this shell) at its deadline
# (a ${EPOCHREALTIME/./} value) unless it ended before, and reaps them all; leaves their
# exit codes in CRASH_RC (indexed like the arguments) and counts the kills.
kill_at() {
  local pair at p left i=0
  exec 3>&2 2>/dev/null # bash's own "Killed" job notices: expected here, not news
  while read -r at p; do
    left=$((at - ${EPOCHREALTIME/./}))
    [ "$left" -le 0 ] || sleep_ms $((left / 1000))
    kill -9 "$p" 2>/dev/null || true
  done < <(for pair in "$@"; do echo "${pair%%:*} ${pair#*:}"; done | sort -n)
  CRASH_RC=()
  for pair in "$@"; do
    set +e
    wait "${pair#*:}"
    CRASH_RC[i]=$?
    set -e
    kill_counts $((CRASH_RC[i] == 137))
    i=$((i + 1))
  done
  exec 2>&3 3>&-
}

# sqlq DB SQL: one query, failing the trial (not just the pipeline) on an SQLite error.
sqlq() { sqlite3 -bail "$1" "$2" || fail "sqlite3 $1: $2"; }

# expect_intact DB: PRAGMA integrity_check says ok.
expect_intact() { expect_eq "$(sqlq "$1" 'PRAGMA integrity_check')" ok "integrity_check of $1"; }

# missing FILE COLUMN DB:TABLE...: how many values of FILE (one a line) are the COLUMN
# (an SQL expression) of a row in none of the tables.
missing() {
  local file=$1 column=$2 i=0 spec where=""
  shift 2
  {
    echo "CREATE TABLE want(v TEXT);"
    echo ".import '$file' want"
    for spec in "$@"; do
      echo "ATTACH '${spec%:*}' AS db$i;"
      where+=" AND v NOT IN (SELECT $column FROM db$i.${spec##*:})"
      i=$((i + 1))
    done
    echo "SELECT count(DISTINCT v) FROM want WHERE 1$where;"
  } | sqlite3 -bail :memory: 2>&1 || fail "sqlite3: cannot look up the values of $file"
}

# write_events FILE TAG K: K HistoryAdded lines whose entry_content is TAG#LINE, the
# key of each event before it has an id (KEY below is that SQL expression).
KEY="json_extract(data, '\$.payload.entry_content')"
write_events() {
  awk -v tag="$2" -v k="$3" 'BEGIN { for (i = 1; i <= k; i++)
    printf "{\"event_type\":\"HistoryAdded\",\"aggregate_id\":\"WP%02d\",\"payload\":{\"wp_id\":\"WP%02d\",\"entry_type\":\"note\",\"entry_content\":\"%s#%d\"}}\n", i % 100, i % 100, tag, i }' >"$1"
}

# expect_delivered FILE COLUMN: the receiver ($RX_DB, e2e_lib.sh) stores a row for each
# value of FILE (COLUMN: event_id, or $KEY), no event twice, and no event but those
# delivered so far (STORED, which this adds FILE's count to).
expect_delivered() {
  expect_eq "$(missing "$1" "$2" "$RX_DB:events")" 0 "events missing at the receiver"
  expect_eq "$(sqlq "$RX_DB" "SELECT count(*) - count(DISTINCT event_id) FROM events")" 0 \
    "events stored twice"
  STORED=$((STORED + $(wc -l <"$1")))
  expect_eq "$(rx_rows)" "$STORED" "events stored in all (only those emitted)"
}

# crash_summary [EXTRA]: one line with the trials, kills and wall time (for README figures).
crash_summary() {
  echo "$TEST_NAME: $CRASH_TRIALS trials passed, seed $CRASH_SEED, kills: $CRASH_KILLS_HIT" \
    "while work was in flight + $CRASH_KILLS_LATE after it was done, ${1:+$1, }$(($(elapsed_ms "$CRASH_T0") / 1000)) s"
}
