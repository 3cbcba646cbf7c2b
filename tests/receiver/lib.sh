# Shared helpers for tests/receiver/test_*.sh (sourced, not run).
# Each test: t_begin NAME; start_receiver [flags...]; checks...; t_end.
# A failed check prints "FAIL <test>: <what>" and makes t_end exit 1.

set -uo pipefail

SK_SOURCE_DIR=${SK_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
T_FAILS=0
T_NAME=$(basename "${0%.sh}")
T_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sk-receiver-test.XXXXXX")
RX_DIRS=()

# Stops every receiver this test started and removes the scratch folder.
t_cleanup() {
  local d
  for d in "${RX_DIRS[@]}"; do
    bash "$SK_SOURCE_DIR/scripts/receiver-down.sh" "$d" >/dev/null 2>&1 || true
    if grep -q "Sanitizer\|runtime error:" "$d/receiver.log" 2>/dev/null; then
      echo "FAIL $T_NAME: sanitizer report in $d/receiver.log:" >&2
      grep -A20 "Sanitizer\|runtime error:" "$d/receiver.log" | head -40 >&2
      T_FAILS=$((T_FAILS + 1))
    fi
  done
  RX_DIRS=()
  if [ "$T_FAILS" -eq 0 ]; then rm -rf "$T_DIR"; fi
}
trap 't_cleanup' EXIT

fail() {
  echo "FAIL $T_NAME: $*" >&2
  T_FAILS=$((T_FAILS + 1))
}

ok() {
  echo "ok   $T_NAME: $*"
}

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
  if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: expected '$2', got '$3'"; fi
}

# Ends the test: exit status reflects the failures (after cleanup).
t_end() {
  t_cleanup
  trap - EXIT
  if [ "$T_FAILS" -ne 0 ]; then
    echo "$T_NAME: $T_FAILS check(s) failed (scratch kept in $T_DIR)" >&2
    exit 1
  fi
  rm -rf "$T_DIR"
  echo "$T_NAME: all checks passed"
  exit 0
}

receiver_bin() {
  if [ -n "${SK_PREFIX:-}" ] && [ -x "$SK_PREFIX/bin/spec-kitty-receiver" ]; then
    echo "$SK_PREFIX/bin/spec-kitty-receiver"
  else
    command -v spec-kitty-receiver
  fi
}

# start_receiver NAME [flags...]: receiver + nghttpx in $T_DIR/NAME; sources the env.
start_receiver() {
  local d=$T_DIR/$1
  shift
  if ! bash "$SK_SOURCE_DIR/scripts/receiver-up.sh" "$d" "$@" >"$T_DIR/up.out" 2>&1; then
    echo "FAIL $T_NAME: receiver-up.sh failed:" >&2
    cat "$T_DIR/up.out" >&2
    exit 1
  fi
  RX_DIRS+=("$d")
  # shellcheck disable=SC1091
  . "$d/receiver.env"
}

# use_transport h1|h2c|tls: sets BASE and CURL_T for the following requests.
use_transport() {
  TRANSPORT=$1
  case $1 in
    h1) BASE=$RECEIVER_URL CURL_T=(--http1.1) WANT_VERSION=1.1 ;;
    h2c) BASE=$RECEIVER_H2C_URL CURL_T=(--http2-prior-knowledge) WANT_VERSION=2 ;;
    tls) BASE=$RECEIVER_TLS_URL CURL_T=(--http2 --cacert "$RECEIVER_CA") WANT_VERSION=2 ;;
  esac
}

# req METHOD PATH [curl args...]: sets CODE, BODY (file), HDRS (file), CURL_RC.
# Checks that the answer came over the HTTP version of the transport.
req() {
  local method=$1 path=$2 out
  shift 2
  BODY=$T_DIR/body HDRS=$T_DIR/headers
  : >"$BODY"
  out=$(curl -s -X "$method" "${CURL_T[@]}" --max-time 30 -o "$BODY" -D "$HDRS" \
    -w '%{http_code} %{http_version}' "$@" "$BASE$path")
  CURL_RC=$?
  CODE=${out%% *}
  if [ "$CODE" != "000" ] && [ "${out##* }" != "$WANT_VERSION" ]; then
    fail "$method $path over $TRANSPORT answered with HTTP/${out##* }"
  fi
}

# jq on the last body; prints the result or "jq-error".
jb() {
  jq -r "$@" "$BODY" 2>/dev/null || echo "jq-error"
}

# header NAME: value of a header in the last response (case-insensitive).
header() {
  tr -d '\r' <"$HDRS" | awk -v h="$(echo "$1" | tr 'A-Z' 'a-z')" \
    'BEGIN{FS=": "} tolower($1)==h {print substr($0, length($1)+3)}' | tail -n1
}

# Random 16-char Crockford prefix; ids are PREFIX + 10 digits.
id_prefix() {
  local a=0123456789ABCDEFGHJKMNPQRSTVWXYZ p="0" i
  for i in $(seq 1 15); do p+=${a:$((RANDOM % 32)):1}; done
  echo "$p"
}

# make_batch N [PREFIX]: a body {"events": [...]} of N valid WPStatusChanged events.
make_batch() {
  local n=$1 prefix=${2:-$(id_prefix)}
  jq -cn --argjson n "$n" --arg p "$prefix" '{events: [range($n) | {
      event_id: ($p + ("0000000000" + tostring)[-10:]),
      event_type: "WPStatusChanged", aggregate_id: "WP01", aggregate_type: "WorkPackage",
      payload: {wp_id: "WP01", previous_status: "planned", new_status: "doing",
                feature_slug: "001-demo"},
      node_id: "0123456789ab", lamport_clock: (. + 1), causation_id: null,
      timestamp: "2026-11-26T10:00:00Z", team_slug: "local"}]}'
}

# post_batch FILE [curl args...]: POSTs FILE gzip-compressed to the batch endpoint.
post_batch() {
  local file=$1
  shift
  gzip -c "$file" >"$file.gz"
  req POST /api/v1/events/batch/ -H 'Content-Type: application/json' \
    -H 'Content-Encoding: gzip' --data-binary "@$file.gz" "$@"
}

# rstat KEY: a field of GET /api/v1/receiver/stats (direct HTTP/1.1).
rstat() {
  curl -s "$RECEIVER_URL/api/v1/receiver/stats" | jq -r "$1"
}

# admin METHOD PATH [JSON]: calls an admin endpoint directly; fails the test on non-200.
admin() {
  local code
  code=$(curl -s -o "$T_DIR/admin.out" -w '%{http_code}' -X "$1" \
    -H 'Content-Type: application/json' ${3:+--data-binary "$3"} "$RECEIVER_URL$2")
  [ "$code" = 200 ] || fail "admin $1 $2 answered $code: $(cat "$T_DIR/admin.out")"
}
