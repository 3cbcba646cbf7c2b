#!/usr/bin/env bash
# The CLI as a person sees it, in a pseudo-terminal: `script` (util-linux) records every
# byte written to the terminal, tmux shows the screen. The progress bar of `sync now`
# on a big queue, colour on a terminal and none with NO_COLOR or a pipe, the no-echo
# password prompt of `auth login`, and `sync status` readable at 80 columns.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/e2e_lib.sh"
export TERM=xterm
# on_tty COMMAND: runs COMMAND (a shell line) on an 80-column pseudo-terminal, prints the bytes.
on_tty() { script -qec "stty cols 80 rows 24; $1" /dev/null; }
ESC=$'\033'

# Progress bar: 5000 events in batches of 500 through file-drop.
export SPEC_KITTY_HOME="$TEST_TMP/progress"
config "{\"transport\": {\"plugin\": \"file-drop\", \"options\": {\"outbox\": \"$TEST_TMP/outbox\"}},
  \"schedule\": {\"max_batch_events\": 500}}"
emit_many 5000
on_tty "'$SK_BIN' sync now" >"$TEST_TMP/now.tty"
frames=$(grep -ao $'\r\\[[# ]*\\] [0-9]*/5000' "$TEST_TMP/now.tty" | grep -o '[0-9]*/' | tr -d /)
expect_ge "$(wc -l <<<"$frames")" 5 "progress frames drawn"
sort -nc <<<"$frames" || fail "progress went backwards: $(tr '\n' ' ' <<<"$frames")"; pass
expect_eq "$(tail -1 <<<"$frames")" 5000 "last frame"
grep -qa $'\r\\[##############################\\] 5000/5000' "$TEST_TMP/now.tty" || fail "no full bar"; pass
# The summary replaces the bar (carriage return, erase line) instead of following it.
grep -qa $'\r'"${ESC}\\[KSynced: 5000" "$TEST_TMP/now.tty" || fail "summary does not clear the bar: $(tail -c 300 "$TEST_TMP/now.tty" | cat -v)"; pass
# Not on a terminal: no bar.
emit_many 1000
sk sync now; expect_rc 0
grep -q $'\r' <<<"$ERR$OUT" && fail "progress drawn into a pipe: $(cat -v <<<"$ERR")"; pass

# Colour: on a terminal, never with NO_COLOR, never into a pipe.
on_tty "env -u NO_COLOR '$SK_BIN' sync status" >"$TEST_TMP/color.tty"
grep -qa "${ESC}\\[1mQueue" "$TEST_TMP/color.tty" || fail "no colour on a terminal: $(cat -v "$TEST_TMP/color.tty")"; pass
on_tty "NO_COLOR=1 '$SK_BIN' sync status" >"$TEST_TMP/nocolor.tty"
grep -qa "$ESC" "$TEST_TMP/nocolor.tty" && fail "colour with NO_COLOR: $(cat -v "$TEST_TMP/nocolor.tty")"; pass
grep -qa "^Queue " "$TEST_TMP/nocolor.tty" || fail "status with NO_COLOR: $(cat -v "$TEST_TMP/nocolor.tty")"; pass
env -u NO_COLOR "$SK_BIN" sync status | cat >"$TEST_TMP/piped"
grep -q "$ESC" "$TEST_TMP/piped" && fail "colour into a pipe"; pass

# tmux on a private socket per screen (a killed server may still be going away when
# the next one starts): an 80x24 screen.
SCREENS=0
screen() { tmux -S "$SOCK" capture-pane -p -t t "$@"; }
# shows TEXT: waits (30 s at most) until the screen shows TEXT.
shows() {
  for _ in $(seq 300); do screen | grep -qF -- "$1" && return 0; sleep 0.1; done
  fail "the screen never showed '$1': $(screen)"
}
on_screen() { # on_screen SHELL_LINE: runs it on a fresh 80x24 screen, then prints its exit code
  SCREENS=$((SCREENS + 1))
  SOCK="$TEST_TMP/tmux.$SCREENS.sock"
  echo "tmux -S '$SOCK' kill-server" >"$TEST_TMP/tmux$SCREENS.cleanup"
  tmux -S "$SOCK" -f /dev/null new-session -d -x 80 -y 24 -s t \
    "$1; echo \"exit=\$?\"; exec sleep 600"
}

# The password prompt: typed after "Password:", never echoed, the terminal restored.
rx_start rx
export SPEC_KITTY_HOME="$TEST_TMP/login"
e2e_config "$RX_URL"
on_screen "'$SK_BIN' auth login --username alice; stty -a | grep -o '[ -]echo ' | head -1 | sed 's/^/tty:/'"
shows "Password:"
tmux -S "$SOCK" send-keys -t t "$RX_PW" Enter
shows "exit="
screen | grep -qF "$RX_PW" && fail "the password was echoed: $(screen)"; pass
screen | grep -q "Logged in to $RX_URL as alice" || fail "login on the terminal: $(screen)"; pass
screen | grep -qx "tty: echo" || fail "echo not restored after the prompt: $(screen)"; pass
screen | grep -qx "exit=0" || fail "login exit: $(screen)"; pass

# `sync status` at 80 columns, with a long error to show: nothing wraps past the edge,
# and the continuation of a long value stays under the value.
export SPEC_KITTY_HOME="$TEST_TMP/status"
config '{"server_url": "https://127.0.0.1:9", "transport": {"plugin": "http-batch"}}'
emit_many 3
SPEC_KITTY_ACCESS_TOKEN=t sk sync now; expect_rc 1 "sync now to a closed port"
on_screen "SPEC_KITTY_ACCESS_TOKEN=t '$SK_BIN' sync status"
shows "exit="
screen >"$TEST_TMP/screen"
grep -q "^Failures     1 in a row; last: " "$TEST_TMP/screen" || fail "status: $(cat "$TEST_TMP/screen")"; pass
expect_eq "$(screen -J | wc -l)" "$(wc -l <"$TEST_TMP/screen")" "screen lines wrapped by the terminal"
awk 'length($0) > 80 { exit 1 }' "$TEST_TMP/screen" || fail "a line past 80 columns"; pass
grep -q "^             [^ ]" "$TEST_TMP/screen" || fail "no continuation under the value: $(cat "$TEST_TMP/screen")"; pass
# Into a pipe the row stays one line (scripts grep it).
SPEC_KITTY_ACCESS_TOKEN=t sk sync status
expect_eq "$(grep -c "^Failures .*Couldn't connect" <<<"$OUT")" 1 "piped Failures row"
