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
  CRASH_DEFAULT_TRIALS=4
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
  echo "FAIL [$TEST_NAME] trial $CRASH_TRIAL of $CRASH_TRIALS, seed $CRASH_SEED" \
    "(replay: SK_CRASH_SEED=$CRASH_SEED SK_CRASH_ONLY=$CRASH_TRIAL SK_TEST_KEEP=1): $*" >&2
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

# kill_at DEADLINE_US:PID...: kills -9 each PID at its deadline (a now_us value) unless
# it ended before, and reaps them all; leaves their exit codes in CRASH_RC (indexed like
# the arguments) and counts the kills that hit a running process.
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
    if [ "${CRASH_RC[i]}" -eq 137 ]; then
      CRASH_KILLS_HIT=$((CRASH_KILLS_HIT + 1))
      CRASH_SCALE=$((CRASH_SCALE < 800 ? CRASH_SCALE * 11 / 10 : CRASH_SCALE))
    else
      CRASH_KILLS_LATE=$((CRASH_KILLS_LATE + 1))
      CRASH_SCALE=$((CRASH_SCALE > 20 ? CRASH_SCALE * 9 / 10 : CRASH_SCALE))
    fi
    i=$((i + 1))
  done
  exec 2>&3 3>&-
}

# sqlq DB SQL: one query, failing the trial (not just the pipeline) on an SQLite error.
sqlq() { sqlite3 -bail "$1" "$2" || fail "sqlite3 $1: $2"; }

# expect_intact DB: PRAGMA integrity_check says ok.
expect_intact() { expect_eq "$(sqlq "$1" 'PRAGMA integrity_check')" ok "integrity_check of $1"; }

# expect_ids_in DB TABLE IDS_FILE: every id listed in IDS_FILE is a row of TABLE.event_id.
expect_ids_in() {
  local want have
  want=$(sort -u "$3" | wc -l)
  have=$(sqlq "$1" "CREATE TEMP TABLE want(id TEXT PRIMARY KEY);
    $(sort -u "$3" | sed "s/.*/INSERT INTO want VALUES('&');/")
    SELECT count(*) FROM want JOIN $2 ON $2.event_id = want.id;")
  expect_eq "$have" "$want" "ids of $(basename "$3") found in $(basename "$1") $2"
}

# crash_summary [EXTRA]: one line with the trials, kills and wall time (for README figures).
crash_summary() {
  echo "$TEST_NAME: $CRASH_TRIALS trials passed, seed $CRASH_SEED, kills: $CRASH_KILLS_HIT" \
    "mid-run + $CRASH_KILLS_LATE after exit, ${1:+$1, }$(($(elapsed_ms "$CRASH_T0") / 1000)) s"
}
