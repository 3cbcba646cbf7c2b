# The command-line surface as the binaries' own --help states it, for the tests that
# check the man pages and the completion against it (sourced after lib.sh).

# sync_commands: the `sync` commands listed by `spec-kitty sync --help`.
sync_commands() { "$SK_BIN" sync --help | awk '$1 == "sync" {print $2}'; }
# auth_commands: the `auth` commands listed by `spec-kitty auth --help`.
auth_commands() { "$SK_BIN" auth --help | awk '$1 == "auth" {print $2}'; }
# options_of ARGS...: every --long and -s option that `ARGS --help` mentions.
options_of() {
  "$@" --help | grep -oE '(^|[][ |,(])(--[a-z][a-z-]*[a-z]|-[a-z])([^a-z-]|$)' |
    grep -oE -- '--[a-z][a-z-]*[a-z]|-[a-z]' | sort -u
}
