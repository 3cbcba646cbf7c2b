#!/usr/bin/env bash
# The installed bash completion, driven as bash drives it (complete -p, COMP_WORDS,
# COMP_CWORD, the registered function): it offers every command and option that
# --help states, and files where a file is asked for.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_surface.sh"
COMPLETION="$SK_PREFIX/share/bash-completion/completions/spec-kitty"
[ -f "$COMPLETION" ] || fail "completion not installed"; pass

# offers WORD...: what completing the last WORD of `spec-kitty WORD...` offers, one a line.
offers() {
  bash --norc --noprofile -c '
    source "$1"; shift
    fn=$(complete -p spec-kitty | sed -n "s/.*-F \([^ ]*\) spec-kitty$/\1/p")
    [ -n "$fn" ] || { echo "no completion function registered" >&2; exit 1; }
    COMP_WORDS=(spec-kitty "$@"); COMP_CWORD=$#
    COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}
    "$fn" spec-kitty "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
    printf "%s\n" "${COMPREPLY[@]}"' _ "$COMPLETION" "$@"
}
offered() { grep -qx -- "$1" <<<"$2" || fail "completion of '$3' lacks $1 (offers: $(tr '\n' ' ' <<<"$2"))"; pass; }

top=$(offers "")
for w in sync auth --version --help; do offered "$w" "$top" "spec-kitty"; done
expect_eq "$(offers sy)" sync "completion of 'sy'"
cmds=$(offers sync "")
for c in $(sync_commands); do offered "$c" "$cmds" "spec-kitty sync"; done
for c in $(sync_commands); do
  opts=$(offers sync "$c" -)
  [ "$c" = daemon ] && opts=$(offers sync daemon start -; offers sync daemon stop -)
  for o in $(options_of "$SK_BIN" sync "$c"); do offered "$o" "$opts" "spec-kitty sync $c -"; done
done
subs=$(offers auth "")
for c in $(auth_commands); do
  offered "$c" "$subs" "spec-kitty auth"
  opts=$(offers auth "$c" -)
  for o in $(options_of "$SK_BIN" auth "$c"); do offered "$o" "$opts" "spec-kitty auth $c -"; done
done
offered start "$(offers sync daemon "")" "spec-kitty sync daemon"
expect_eq "$(offers sync status --j)" --json "completion of 'sync status --j'"

# Values: files after --file and --report, the schemas after --schema, nothing after --type.
mkdir -p "$TEST_TMP/w" && touch "$TEST_TMP/w/events.ndjson"
expect_eq "$(offers sync emit --file "$TEST_TMP/w/ev")" "$TEST_TMP/w/events.ndjson" "completion of --file"
expect_eq "$(offers sync now --report "$TEST_TMP/w/ev")" "$TEST_TMP/w/events.ndjson" "completion of --report"
expect_eq "$(offers sync emit --schema "" | tr '\n' ' ')" "1 3 " "completion of --schema"
expect_eq "$(offers sync emit --type "")" "" "completion of --type"
offered "$TEST_TMP/w" "$(offers sync import "$TEST_TMP/")" "spec-kitty sync import"
