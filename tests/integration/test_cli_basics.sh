#!/usr/bin/env bash
# The CLI's surface: help, version, exit codes, emit, status, config errors.
. "$(dirname "$0")/lib.sh"

sk --version;                 expect_rc 0; expect_out "spec-kitty "
sk --version --bogus;         expect_rc 2; expect_err 'spec-kitty: --version: unexpected argument "--bogus"'
sk --help;                    expect_rc 0; expect_out "sync emit"
sk;                           expect_rc 2
sk frobnicate;                expect_rc 2; expect_err 'unknown command "frobnicate"'
sk sync frobnicate;           expect_rc 2; expect_err 'unknown command "sync frobnicate"'
for c in emit now status config plugins parked retry; do
  sk sync $c --help;          expect_rc 0 "sync $c --help"; expect_out "Usage: spec-kitty sync $c"
done

# A usage error is one line naming the argument at fault, exit 2, before anything is opened:
# no getopt line under the command's bare name ("emit: option ..."), no stray argument taken
# silently (`sync now extra` ran a pass, `sync config extra` printed the config).
usage_error() { # EXPECTED-MESSAGE ARGS...
  local want=$1; shift
  sk "$@"; expect_rc 2 "$*"; expect_err "spec-kitty: $want"
  expect_eq "$(wc -l <<<"$ERR")" 1 "lines of the error of '$*'"
}
usage_error 'sync now: unexpected argument "extra"'             sync now extra
usage_error 'sync config: unexpected argument "extra"'          sync config extra
usage_error 'sync config: unexpected argument "extra"'          sync config --keys extra
usage_error 'sync status: unknown or ambiguous option "--bogus"' sync status --bogus
usage_error 'sync status: option "--json" takes no value'       sync status --json=1
usage_error 'sync emit: option "--type" needs a value'          sync emit --type
usage_error 'sync emit: option "-t" needs a value'              sync emit -t
usage_error 'sync emit: unknown option "-x"'                    sync emit -x
usage_error 'sync status: unknown option "-x"'                  sync status --json -xh
usage_error 'sync emit: unknown or ambiguous option "--c"'      sync emit --c 01ARZ3NDEKTSV4RRFFQ69G5FAV
usage_error 'sync now: option "--report" needs a value'         sync now --report
usage_error 'sync doctor: option "--repair" takes no value'     sync doctor --repair=yes
usage_error 'sync parked: unknown or ambiguous option "--all"'  sync parked --all
usage_error 'sync plugins: unexpected argument "x"'             sync plugins --json x
usage_error 'sync import: unknown or ambiguous option "--move"' sync import --move x.skb
usage_error 'sync retry: give --all or one or more event ids, not both' sync retry 01ARZ3NDEKTSV4RRFFQ69G5FAV --all
# Numbers: a decimal within the range, nothing strtod would also take (nan, inf, hex, an
# exponent, a sign, blanks, junk) and no overflow; nan and inf used to pass as timeouts.
for v in nan inf 0x10 99999999999999999999 1e3 -1 +5 " 5" 5x "" 0 0.0001 86401; do
  usage_error "sync daemon stop: --timeout wants seconds from 0.001 to 86400, got \"$v\"" sync daemon stop --timeout "$v"
done
usage_error 'sync daemon stop: option "--timeout" needs a value' sync daemon stop --timeout
usage_error 'sync daemon start: option "--verbose" takes no value' sync daemon start --verbose=yes
[ -e "$SPEC_KITTY_HOME" ] && fail "a usage error created the state root"; pass
sk sync daemon stop --timeout 0.5; expect_rc 0 "stop --timeout 0.5"; expect_out "sync service not running"
# After `--` an operand may start with '-': it is a path or an id, not an option.
sk sync import -- -no-such.skb; expect_rc 1 "import -- PATH"; expect_err "-no-such.skb: not a bundle or outbox folder"
sk sync retry -- -not-an-id; expect_rc 1 "retry -- ID"; expect_err "1 of the given events were not parked"
# An error about a long value keeps its end, which says what is wrong: the message used to be
# cut inside the path ("spec-kitty: /tmp/.../dddd" and no reason).
sk sync import "$TEST_TMP/$(head -c 3000 /dev/zero | tr '\0' d)"; expect_rc 1 "import of a long path"
expect_err "ddd…ddd"; expect_err "dd: not a bundle or outbox folder"
expect_eq "$(wc -l <<<"$ERR")" 1 "lines of the error about a long path"
# The same through a pass's stop reason and the service probe, which copied the message into
# 512 bytes and cut the reason off again.
LONG_PLUGIN="$TEST_TMP/$(head -c 700 /dev/zero | tr '\0' p).so"
mkdir -p "$SPEC_KITTY_HOME"
printf '{"server_url": "http://127.0.0.1:1", "transport": {"plugin": "%s"}}\n' "$LONG_PLUGIN" >"$SPEC_KITTY_HOME/sync.json"
sk sync emit -t FeatureCompleted -a f1 -p '{"feature_slug":"f1","total_wps":1}'; expect_rc 0
sk sync now; expect_err "pp.so: plugin file not found"
sk sync status --check; expect_out "pp.so: plugin file not found"
rm -rf "$SPEC_KITTY_HOME"

# emit: prints a ULID, the row is in the spec-kitty table, the state root is owner-only.
sk sync emit --type WPStatusChanged --aggregate-id WP01 \
  --payload '{"wp_id":"WP01","previous_status":"planned","new_status":"doing"}'
expect_rc 0 "emit"
[[ "$OUT" =~ ^[0-9A-HJKMNP-TV-Z]{26}$ ]] || fail "emit printed '$OUT', not a ULID"; pass
ID="$OUT"
expect_eq "$(sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT event_type FROM queue WHERE event_id='$ID'")" WPStatusChanged
DATA="$(sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT data FROM queue WHERE event_id='$ID'")"
expect_eq "$(jq -r .lamport_clock <<<"$DATA")" 1 "first lamport value"
expect_eq "$(jq -r .team_slug <<<"$DATA")" local
expect_eq "$(jq -r .aggregate_type <<<"$DATA")" WorkPackage
expect_eq "$(stat -c %a "$SPEC_KITTY_HOME")" 700 "state root mode"
expect_eq "$(stat -c %a "$SPEC_KITTY_HOME/queue.db")" 600 "queue mode"

# An invalid event names the field and queues nothing.
sk sync emit --type WPStatusChanged --aggregate-id WP01 --payload '{"wp_id":"WP01"}'
expect_rc 2; expect_err "payload.previous_status: missing"
sk sync emit --type WPCreated --aggregate-id WP02 --payload 'not json'
expect_rc 2; expect_err "payload: not valid JSON"
sk sync emit --type WPCreated;  expect_rc 2; expect_err "give --type and --aggregate-id"
expect_eq "$(queue_ready)" 1 "queue after refused events"

# NDJSON: all or nothing, bad lines reported by number.
printf '%s\n' '{"event_type":"FeatureCreated","aggregate_id":"001-f1","payload":{"feature_slug":"001-f1","feature_number":"001","target_branch":"main","wp_count":2}}' \
  '{"event_type":"FeatureCompleted","aggregate_id":"f1"}' '' '{broken' >"$TEST_TMP/mixed.ndjson"
sk sync emit --file "$TEST_TMP/mixed.ndjson"
expect_rc 2; expect_err "mixed.ndjson:2: payload.feature_slug: missing"; expect_err "mixed.ndjson:4:"
expect_err "2 of 3 lines are invalid; nothing queued"
expect_eq "$(queue_ready)" 1 "nothing queued from a bad file"
emit_many 250
expect_eq "$(queue_ready)" 251
expect_out "queued 250 events"
sk sync emit --file "$TEST_TMP/missing.ndjson"; expect_rc 2; expect_err "missing.ndjson"
sk sync emit --file "$TEST_TMP"; expect_rc 2 "emit --file of a directory"; expect_err "is a directory"

# Lamport values are distinct and contiguous across everything emitted.
expect_eq "$(sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT count(DISTINCT json_extract(data,'$.lamport_clock')) FROM queue")" 251
expect_eq "$(jq -r .value "$SPEC_KITTY_HOME/clock.json")" 251

# status: table and stable JSON keys.
sk sync status; expect_rc 0
expect_out "251 events waiting, 0 parked"; expect_out "Last sync    Never"; expect_out "Background   Stopped"
expect_out "Connection   Offline"
sk sync status --json; expect_rc 0
expect_eq "$(jq -r '.queue.size' <<<"$OUT")" 251
expect_eq "$(jq -r '.queue.parked' <<<"$OUT")" 0
expect_eq "$(jq -r '.connection' <<<"$OUT")" Offline
expect_eq "$(jq -r '.last_sync' <<<"$OUT")" null
expect_eq "$(jq -r '.background.running' <<<"$OUT")" false
expect_eq "$(jq -r '.transport.plugin' <<<"$OUT")" http-batch
jq -e '.auth.state and (.server_url != null)' <<<"$OUT" >/dev/null || fail "status --json keys"; pass

# now without a server: one line saying where to set it, a config error, nothing sent.
sk sync now; expect_rc 2 "sync now without server_url"
expect_err "transport http-batch could not start: http-batch: server_url is not set: put \"server_url\" in sync.json or set SPEC_KITTY_SAAS_URL"
expect_eq "$(wc -l <<<"$ERR")" 1 "lines of the error"
expect_eq "$(queue_ready)" 251 "events kept"

# config: sources, environment override, and each kind of error.
config '{"server_url": "https://sk.example", "schedule": {"interval_s": 60}, "colour": 1}'
SPEC_KITTY_SAAS_URL=http://127.0.0.1:1 sk sync config --json; expect_rc 0
expect_eq "$(jq -r '.keys["server_url"].source' <<<"$OUT")" environment
expect_eq "$(jq -r '.keys["server_url"].value' <<<"$OUT")" http://127.0.0.1:1
expect_eq "$(jq -r '.keys["schedule.interval_s"].value' <<<"$OUT")" 60
expect_eq "$(jq -r '.keys["schedule.interval_s"].source' <<<"$OUT")" file
expect_eq "$(jq -r '.keys["schedule.max_retries"].source' <<<"$OUT")" default
expect_err 'unknown key "colour"'
# --keys --json is JSON too (--json was ignored: the text table came out).
sk sync config --json --keys; expect_rc 0 "config --json --keys"
jq -e 'length >= 20 and all(.[]; (.name | type) == "string" and .type and .help)' <<<"$OUT" >/dev/null ||
  fail "config --json --keys: $OUT"; pass
expect_eq "$(jq -r '.[0].name' <<<"$OUT")" server_url "first key of config --json --keys"
config $'{\n  "server_url": "x",\n  oops\n}'
sk sync status; expect_rc 2; expect_err "sync.json:3:"
config '{"queue": {"max_events": "lots"}}'
sk sync emit -t FeatureCompleted -a f1 -p '{"feature_slug":"f1","total_wps":1}'
expect_rc 2; expect_err "queue.max_events: expected integer"
expect_eq "$(queue_ready)" 251 "a config error queues nothing"

# A state file that is a FIFO, /dev/zero or huge: the command fails at once (exit 2)
# naming the file, instead of waiting on the FIFO forever or reading /dev/zero until
# memory runs out; nothing is queued. (timeout: the old build hung here.)
hostile() { # FILE KIND
  rm -rf "$1"
  case $2 in
  fifo) mkfifo "$1" ;;
  zero) ln -s /dev/zero "$1" ;;
  huge) head -c 2000000 /dev/zero | tr '\0' ' ' >"$1" ;;
  esac
}
sk_bounded() { sk_run timeout 20 "$SK_BIN" "$@"; }
for kind in fifo zero huge; do
  hostile "$SPEC_KITTY_HOME/sync.json" $kind
  sk_bounded sync status; expect_rc 2 "status with a $kind sync.json"
  expect_err "sync.json: $([ $kind = huge ] && echo "too large" || echo "not a regular file: refused")"
done
rm -f "$SPEC_KITTY_HOME/sync.json"
mv "$SPEC_KITTY_HOME/clock.json" "$TEST_TMP/clock.json"
hostile "$SPEC_KITTY_HOME/clock.json" fifo
sk_bounded sync emit -t FeatureCompleted -a f1 -p '{"feature_slug":"f1","total_wps":1}'
expect_rc 2 "emit with a FIFO clock.json"; expect_err "clock.json: not a regular file: refused"
rm -f "$SPEC_KITTY_HOME/clock.json"
mv "$TEST_TMP/clock.json" "$SPEC_KITTY_HOME/clock.json"
expect_eq "$(queue_ready)" 251 "a hostile state file queues nothing"
hostile "$SPEC_KITTY_HOME/metrics.db" fifo
sk_bounded sync status; expect_rc 0 "status beside a FIFO metrics.db"
sk_bounded sync metrics; expect_rc 2 "metrics from a FIFO"; expect_err "metrics.db: not a regular file: refused"
rm -f "$SPEC_KITTY_HOME/metrics.db"
hostile "$SPEC_KITTY_HOME/daemon.lock" fifo
sk_bounded sync daemon stop; expect_rc 1 "daemon stop beside a FIFO daemon.lock"
expect_err "daemon.lock: not a regular file: refused"
rm -f "$SPEC_KITTY_HOME/daemon.lock"

# Capacity: the event beyond max_events is refused with a clear message.
config '{"queue": {"max_events": 252}}'
sk sync emit -t FeatureCompleted -a f1 -p '{"feature_slug":"f1","total_wps":1}'; expect_rc 0
sk sync emit -t FeatureCompleted -a f1 -p '{"feature_slug":"f1","total_wps":1}'
expect_rc 1; expect_err "queue full"
expect_eq "$(queue_ready)" 252

# In a fresh state root: --aggregate-type and --causation-id land in the envelope; --file - reads stdin.
export SPEC_KITTY_HOME="$TEST_TMP/home2"
CAUSE=01ARZ3NDEKTSV4RRFFQ69G5FAV
sk sync emit --type FeatureCreated --aggregate-id 009-f9 --aggregate-type WorkPackage --causation-id "$CAUSE" \
  --payload '{"feature_slug":"009-f9","feature_number":"009","target_branch":"main","wp_count":1}'
expect_rc 0 "emit with --aggregate-type and --causation-id"
DATA="$(sqlite3 "$SPEC_KITTY_HOME/queue.db" "SELECT data FROM queue WHERE event_id='$OUT'")"
expect_eq "$(jq -r .causation_id <<<"$DATA")" "$CAUSE"
expect_eq "$(jq -r .aggregate_type <<<"$DATA")" WorkPackage "--aggregate-type overrides the default (Feature)"
set +e
printf '%s\n' '{"event_type":"FeatureCompleted","aggregate_id":"f9","payload":{"feature_slug":"f9","total_wps":1}}' |
  "$SK_BIN" sync emit --file - >"$TEST_TMP/out" 2>"$TEST_TMP/err"; RC=$?
set -e
expect_rc 0 "emit --file -"
grep -q "queued 1 event" "$TEST_TMP/out" || fail "emit --file - output: $(cat "$TEST_TMP/out")"; pass


# Output that cannot be written is a failure, never a success: a full disk (/dev/full) or a
# closed stdout is one line and exit 1 (an emitted event is queued all the same); a reader
# that went away (`| head`) still ends quietly with 0, also after one big write (--json).
# A closed stdin or stdout is never taken over by a file of ours (a closed stdin used to
# read a pipe of the library: "Resource temporarily unavailable").
out_to() { # TARGET ARGS...: spec-kitty ARGS with stdout redirected to TARGET (or closed: -)
  local to=$1; shift
  if [ "$to" = - ]; then sk_run bash -c '"$@" >&-' _ "$SK_BIN" "$@"; else sk_run bash -c 'to=$1; shift; "$@" >"$to"' _ "$to" "$SK_BIN" "$@"; fi
}
for args in "--help" "sync status" "sync status --json" "sync config --keys" "sync config --json" "sync parked --json" "auth status --json" "sync emit --help"; do
  out_to /dev/full $args; expect_rc 1 "$args >/dev/full"
  expect_err "cannot write to standard output: No space left on device"
  expect_eq "$(wc -l <<<"$ERR")" 1 "lines of the error of $args >/dev/full"
done
out_to - sync status; expect_rc 1 "sync status >&-"; expect_err "cannot write to standard output: Bad file descriptor"
BEFORE="$(queue_ready)"
out_to /dev/full sync emit -t FeatureCompleted -a f9 -p '{"feature_slug":"f9","total_wps":1}'
expect_rc 1 "emit >/dev/full"; expect_err "No space left on device"
expect_eq "$(queue_ready)" $((BEFORE + 1)) "the event emitted into /dev/full is queued"
sk_run bash -c '"$0" sync emit --file - <&-' "$SK_BIN"; expect_rc 1 "emit --file - with stdin closed"
expect_err "cannot read <stdin>: Bad file descriptor"
expect_eq "$(queue_ready)" $((BEFORE + 1)) "nothing queued from a closed stdin"
sqlite3 "$SPEC_KITTY_HOME/queue.db" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
  INSERT INTO queue(event_id, event_type, data, timestamp, state, last_error)
  SELECT printf('01ARZ3NDEKTSV4RRFFQ6%06d', i), 'WPStatusChanged', '{}', i, 1, 'refused by the server' FROM n"
for args in "sync parked" "sync parked --json"; do
  set +e
  "$SK_BIN" $args 2>"$TEST_TMP/pipe.err" | head -c 10 >/dev/null
  RC=${PIPESTATUS[0]}
  set -e
  expect_rc 0 "$args | head -c 10"; expect_eq "$(cat "$TEST_TMP/pipe.err")" "" "stderr of $args | head -c 10"
done

# --json stays whole JSON with bytes that are not UTF-8 in a path (the state root) or in a
# row another program wrote to queue.db: such bytes become U+FFFD. Jansson refuses them, and
# `config --json`, `doctor --json` printed nothing with exit 0, status lost config_file and
# `parked` left the row out of its list (and its count) while status counted it.
export SPEC_KITTY_HOME="$TEST_TMP/"$'h\xff'
sk sync emit -t FeatureCompleted -a f1 -p '{"feature_slug":"f1","total_wps":1}'; expect_rc 0 "emit under a non-UTF-8 state root"
for args in "sync status --json" "sync config --json" "sync doctor --json" "auth status --json"; do
  sk $args
  FILE="$(jq -r '.config_file // .file // .credentials_file' <<<"$OUT")" || fail "$args: not JSON: $OUT"
  [[ "$FILE" == "$TEST_TMP/h"$'\xef\xbf\xbd'/* ]] || fail "$args: file '$FILE'"; pass
done
sqlite3 "$SPEC_KITTY_HOME/queue.db" "INSERT INTO queue(event_id, event_type, data, timestamp, state, last_error)
  VALUES ('01ARZ3NDEKTSV4RRFFQ69G5FB1', CAST(X'57507878FF' AS TEXT), '{}', 1, 1, 'bad ' || CAST(X'C3' AS TEXT)),
         ('01ARZ3NDEKTSV4RRFFQ69G5FB2', 'WPCreated', '{}', 2, 1, CAST(X'EDA080' AS TEXT) || 'é ok')"
sk sync parked --json; expect_rc 0 "parked --json with non-UTF-8 rows"
expect_eq "$(jq -c '[.[] | [.event_type, .reason]]' <<<"$OUT")" '[["WPxx�","bad �"],["WPCreated","���é ok"]]' "parked rows"
sk sync parked; expect_rc 0; expect_out "2 parked events"

# Text from outside (a server's reason, a line of an events file) is shown with each control
# character as '?': it can neither drive the terminal (an escape sequence, a C1 CSI) nor break
# a row or an error in two; --json keeps it exact. The old build printed it as it came.
sqlite3 "$SPEC_KITTY_HOME/queue.db" "INSERT INTO queue(event_id, event_type, data, timestamp, state, last_error)
  VALUES ('01ARZ3NDEKTSV4RRFFQ69G5FC1', 'WPCreated', '{}', 3, 1,
          'refused' || char(27) || ']0;owned' || char(7) || char(10) || 'Synced: 9' || char(155) || '[2J')"
sk sync parked; expect_rc 0
expect_out "01ARZ3NDEKTSV4RRFFQ69G5FC1  WPCreated          retries 0   refused?]0;owned??Synced: 9??[2J"
expect_eq "$(grep -c . <<<"$OUT")" 4 "lines of sync parked (3 rows and the count)"
sk sync parked --json
expect_eq "$(jq -c '.[] | select(.event_id == "01ARZ3NDEKTSV4RRFFQ69G5FC1") | .reason' <<<"$OUT")" \
  '"refused\u001b]0;owned\u0007\nSynced: 9'$'\xc2\x9b''[2J"' "the reason in --json"
printf '{"event_type": \033[2J}\n' >"$TEST_TMP/escape.ndjson"
sk sync emit --file "$TEST_TMP/escape.ndjson"; expect_rc 2 "a line with an escape sequence"
grep -q $'\033' <<<"$ERR" && fail "an escape sequence reached stderr: $ERR"; pass
