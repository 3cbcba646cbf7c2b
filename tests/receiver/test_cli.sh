#!/usr/bin/env bash
# The command line: --help, one-line usage errors with exit 2, --add-user,
# port 0, start-up failures; receiver-up.sh / receiver-down.sh themselves.
. "$(dirname "$0")/lib.sh"

bin=$(receiver_bin)
[ -x "$bin" ] || { fail "no spec-kitty-receiver binary"; t_end; }

out=$("$bin" --help)
expect_eq "--help exits 0" 0 $?
for flag in --listen --db --users --add-user --no-auth --access-ttl --refresh-ttl \
  --max-events-per-batch --max-body-bytes --rate-limit-ms --faults; do
  grep -q -- "$flag" <<<"$out" || fail "--help does not mention $flag"
done
ok "--help documents every flag"

usage_case() { # description args...
  local what=$1 err
  shift
  err=$("$bin" "$@" 2>&1 >/dev/null </dev/null)
  local rc=$?
  expect_eq "$what: exit 2" 2 "$rc"
  expect_eq "$what: one line on stderr" 1 "$(printf '%s\n' "$err" | wc -l)"
  grep -q '^spec-kitty-receiver: ' <<<"$err" || fail "$what: message not prefixed: $err"
}
usage_case "unknown flag" --no-auth --bogus
usage_case "bad --listen" --no-auth --listen nowhere
usage_case "bad port" --no-auth --listen 127.0.0.1:70000
usage_case "bad number" --no-auth --max-events-per-batch lots
usage_case "zero batch size" --no-auth --max-events-per-batch 0
usage_case "missing value" --no-auth --db
usage_case "neither --users nor --no-auth"
usage_case "--add-user without --users" --add-user bob
usage_case "stray argument" --no-auth extra
# Numbers are plain digits (strtoll also took a sign and blanks: "--listen 127.0.0.1:-0" was
# port 0), and the message names the option and its range. --help last: the old build printed
# it and exited 0 instead.
for v in +5 " 5" -0 0x5 1e3 99999999999999999999 ""; do
  usage_case "--max-events-per-batch '$v'" --no-auth --max-events-per-batch "$v" --help
done
usage_case "port -0" --no-auth --listen 127.0.0.1:-0 --help
err=$("$bin" --no-auth --rate-limit-ms +1 --help 2>&1 >/dev/null)
expect_eq "the number's message names the option" \
  "spec-kitty-receiver: --rate-limit-ms wants a whole number from 0 to 86400000, got '+1' (see --help)" "$err"
# A user name or team that is empty or not UTF-8 (it used to be stored as "", or fail with
# "cannot build the user entry").
usage_case "empty --add-user" --users "$T_DIR/u.json" --add-user ""
usage_case "--add-user not UTF-8" --users "$T_DIR/u.json" --add-user $'b\xffb'
usage_case "empty --team" --users "$T_DIR/u.json" --add-user bob --team ""
"$bin" --help >/dev/full 2>/dev/null
expect_eq "--help into /dev/full exits 1" 1 $?

# --add-user: password from stdin, file 0600, replaces an existing user's password.
users=$T_DIR/users.json
printf 'first\n' | "$bin" --users "$users" --add-user bob --team blue >/dev/null
expect_eq "--add-user exits 0" 0 $?
printf 'second\n' | "$bin" --users "$users" --add-user carol >/dev/null
printf 'changed\n' | "$bin" --users "$users" --add-user bob --team blue >/dev/null
expect_eq "users file mode 0600" 600 "$(stat -c %a "$users")"
expect_eq "both users, teams kept" "blue local" "$(jq -r '[.users.bob.team_slug, .users.carol.team_slug] | join(" ")' "$users")"
: | "$bin" --users "$users" --add-user dave 2>/dev/null
expect_eq "--add-user with no password exits 1" 1 $?
# The whole password line counts: it was cut at a NUL byte or after 1023 bytes without a word
# (a password no login could then match); one that is not UTF-8 could never be sent either.
add_refused() { # WHAT EXPECTED-MESSAGE (password on stdin)
  local err
  err=$("$bin" --users "$users" --add-user erin 2>&1 >/dev/null)
  expect_eq "$1: exit 1 and why" "1 spec-kitty-receiver: $2" "$? $err"
}
printf 'first\0more\n' | add_refused "password with a NUL byte" "the password holds a NUL byte"
head -c 1024 /dev/zero | tr '\0' p | add_refused "password of 1024 bytes" \
  "the password is longer than 1023 bytes (more than spec-kitty auth login sends)"
printf 'pass\xffword\n' | add_refused "password not UTF-8" "the password is not valid UTF-8"
# A line without end is read no further than a password can be long: /dev/zero is refused
# at once (it was read until memory ran out), under 64 MB of address space (not under
# AddressSanitizer, whose shadow memory alone needs more).
LIMIT="ulimit -v 65536;"
case "$(ldd "$bin")" in *libasan*) LIMIT="" ;; esac
err=$( (eval "$LIMIT"; timeout 20 "$bin" --users "$users" --add-user erin </dev/zero) 2>&1 >/dev/null)
expect_eq "endless stdin: exit 1 and why" "1 spec-kitty-receiver: the password holds a NUL byte" "$? $err"
head -c 100000 /dev/zero | tr '\0' p | add_refused "a long line without its end" \
  "the password is longer than 1023 bytes (more than spec-kitty auth login sends)"
expect_eq "no refused user stored" "bob carol" "$(jq -r '.users | keys | join(" ")' "$users")"
head -c 1023 /dev/zero | tr '\0' p | "$bin" --users "$users" --add-user erin >/dev/null
expect_eq "a password of 1023 bytes is taken" 0 $?
printf 'pw\n' | "$bin" --users "$users" --add-user frank >/dev/full 2>/dev/null
expect_eq "--add-user with its line into /dev/full exits 1" 1 $?

# Runtime failures: one line, exit 1.
err=$("$bin" --users "$T_DIR/missing.json" --listen 127.0.0.1:0 --db "$T_DIR/x.db" 2>&1 >/dev/null)
expect_eq "missing users file: exit 1" "1 1" "$? $(printf '%s\n' "$err" | wc -l)"
err=$("$bin" --no-auth --listen 127.0.0.1:0 --db "$T_DIR/no/such/dir/x.db" 2>&1 >/dev/null)
expect_eq "unopenable database: exit 1" 1 $?

# receiver-up.sh: env file, port 0, logins with the users file, both processes up.
start_receiver up --users "$users"
for v in RECEIVER_URL RECEIVER_H2C_URL RECEIVER_TLS_URL RECEIVER_CA RECEIVER_PID NGHTTPX_PID \
  RECEIVER_DB RECEIVER_LOG; do
  grep -q "^$v=." "$T_DIR/up/receiver.env" || fail "receiver.env lacks $v"
done
ok "receiver.env has every variable"
grep -Eq '^spec-kitty-receiver listening on http://127\.0\.0\.1:[1-9][0-9]*$' "$RECEIVER_LOG" &&
  ok "port 0: the chosen URL is printed" || fail "no URL line in $RECEIVER_LOG"
expect_eq "RECEIVER_URL matches the printed URL" "$RECEIVER_URL" \
  "$(grep -o 'http://[^ ]*' "$RECEIVER_LOG" | head -n1)"
use_transport tls
req POST /api/v1/token/ -H 'Content-Type: application/json' -d '{"username":"bob","password":"changed"}'
expect_eq "login over TLS with the updated password" 200 "$CODE"
req POST /api/v1/token/ -H 'Content-Type: application/json' -d '{"username":"bob","password":"first"}'
expect_eq "the old password is refused" 401 "$CODE"

# A second receiver on the same fixed port fails cleanly.
port=${RECEIVER_URL##*:}
err=$("$bin" --no-auth --listen "127.0.0.1:$port" --db "$T_DIR/y.db" 2>&1 >/dev/null)
expect_eq "port in use: exit 1" 1 $?

# receiver-down.sh stops exactly those two processes.
bash "$SK_SOURCE_DIR/scripts/receiver-down.sh" "$T_DIR/up"
kill -0 "$RECEIVER_PID" 2>/dev/null && fail "receiver still running" || ok "receiver stopped"
kill -0 "$NGHTTPX_PID" 2>/dev/null && fail "nghttpx still running" || ok "nghttpx stopped"
grep -q "spec-kitty-receiver stopped" "$RECEIVER_LOG" && ok "clean shutdown on SIGTERM" ||
  fail "no clean shutdown line in $RECEIVER_LOG"

t_end
