# shellcheck shell=bash disable=SC2034  # NK_* are for the sourcing test
# NATS decentralized authentication for the nats.* tests, made with openssl alone (Debian
# ships no nsc): NKeys (Ed25519 keys in NATS's base32 form), JWTs signed with them, an
# operator-mode nats-server config and a user's .creds file. Source after lib.sh.
#
# An NKey is base32(prefix | 32 key bytes | CRC-16/XMODEM little-endian), unpadded; the
# prefix byte names the role (operator 'O', account 'A', user 'U'), and a seed's two
# prefix bytes carry 'S' and the role. A JWT is header.claims.signature, base64url, the
# signature Ed25519 over "header.claims" by the issuer's key (alg "ed25519-nkey").
NK_DIR="$TEST_TMP/nkeys"

# nk_crc16 FILE: CRC-16/XMODEM (polynomial 0x1021, start 0) of FILE, as 4 hex digits,
# low byte first.
nk_crc16() {
  local crc=0 byte
  for byte in $(od -An -v -tu1 "$1"); do
    crc=$((crc ^ (byte << 8)))
    for _ in 1 2 3 4 5 6 7 8; do
      crc=$(((crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1) & 0xffff))
    done
  done
  printf '%02x%02x' $((crc & 0xff)) $((crc >> 8))
}

# nk_bytes HEX: the bytes HEX spells.
nk_bytes() {
  local hex=$1 esc=""
  while [ -n "$hex" ]; do
    esc+="\\x${hex:0:2}"
    hex=${hex:2}
  done
  printf '%b' "$esc"
}

# nk_encode PREFIX_HEX RAW_FILE: the NKey text of RAW_FILE's 32 bytes.
nk_encode() {
  local buf="$NK_DIR/.encode" crc
  { nk_bytes "$1"; cat "$2"; } >"$buf"
  crc=$(nk_crc16 "$buf")
  nk_bytes "$crc" >>"$buf"
  base32 -w0 "$buf" | tr -d '='
  rm -f "$buf"
}

# nk_new NAME ROLE: a new key pair, ROLE O, A or U: $NK_DIR/NAME.pem (for openssl),
# NAME.pub (public NKey) and NAME.seed (seed NKey), owner-only.
nk_new() {
  local prefix
  case $2 in
  O) prefix=$((14 << 3)) ;;
  A) prefix=0 ;;
  U) prefix=$((20 << 3)) ;;
  *) fail "nk_new: role $2" ;;
  esac
  mkdir -p "$NK_DIR"
  (
    umask 077
    openssl genpkey -algorithm ed25519 -out "$NK_DIR/$1.pem" 2>/dev/null
    # The raw 32 bytes are the last ones of the DER forms.
    openssl pkey -in "$NK_DIR/$1.pem" -outform DER | tail -c 32 >"$NK_DIR/$1.raw"
    openssl pkey -in "$NK_DIR/$1.pem" -pubout -outform DER | tail -c 32 >"$NK_DIR/$1.rawpub"
    nk_encode "$(printf '%02x' "$prefix")" "$NK_DIR/$1.rawpub" >"$NK_DIR/$1.pub"
    nk_encode "$(printf '%02x%02x' $(((18 << 3) | (prefix >> 5))) $(((prefix & 31) << 3)))" \
      "$NK_DIR/$1.raw" >"$NK_DIR/$1.seed"
  ) || fail "openssl could not make the NKey $1"
  [ "$(head -c 1 "$NK_DIR/$1.pub")" = "$2" ] || fail "NKey $1 does not start with $2"
}

nk_pub() { cat "$NK_DIR/$1.pub"; }
nk_b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

# nk_jwt ISSUER SUBJECT NATS_CLAIMS [MORE_CLAIMS]: a JWT about key SUBJECT signed by
# key ISSUER, with the "nats" claims NATS_CLAIMS (a JSON object) and MORE_CLAIMS
# (e.g. "exp": 123) at the top level.
nk_jwt() {
  local head body now signed="$NK_DIR/.signed"
  now=$(date +%s)
  head=$(printf '{"typ":"JWT","alg":"ed25519-nkey"}' | nk_b64url)
  body=$(printf '{"jti":"%s-%s-%s","iat":%s,"iss":"%s","sub":"%s","name":"%s",%s"nats":%s}' \
    "$2" "$now" "$RANDOM" "$now" "$(nk_pub "$1")" "$(nk_pub "$2")" "$2" "${4:+$4,}" "$3" | nk_b64url)
  printf '%s.%s' "$head" "$body" >"$signed"
  printf '%s.%s.%s\n' "$head" "$body" \
    "$(openssl pkeyutl -sign -inkey "$NK_DIR/$1.pem" -rawin -in "$signed" | nk_b64url)"
  rm -f "$signed"
}

# Limits of an account: none, with JetStream when $1 is "js".
nk_account_claims() {
  local js=""
  [ "${1:-}" = js ] && js=',"mem_storage":-1,"disk_storage":-1,"streams":-1,"consumer":-1'
  printf '{"type":"account","version":2,"limits":{"subs":-1,"data":-1,"payload":-1,"imports":-1,"exports":-1,"wildcards":true,"conn":-1,"leaf":-1%s}}' "$js"
}
NK_USER_CLAIMS='{"type":"user","version":2,"pub":{},"sub":{},"subs":-1,"data":-1,"payload":-1}'

# nk_operator_conf FILE OPERATOR SYSTEM_ACCOUNT ACCOUNT...: an operator-mode nats-server
# config trusting OPERATOR, with the accounts (signed by it) in a memory resolver; each
# ACCOUNT has JetStream.
nk_operator_conf() {
  local file=$1 op=$2 sys=$3 acc
  shift 3
  {
    printf 'operator: "%s"\n' "$(nk_jwt "$op" "$op" '{"type":"operator","version":2}')"
    printf 'system_account: %s\nresolver: MEMORY\nresolver_preload: {\n' "$(nk_pub "$sys")"
    printf '  %s: "%s"\n' "$(nk_pub "$sys")" "$(nk_jwt "$op" "$sys" "$(nk_account_claims)")"
    for acc in "$@"; do
      printf '  %s: "%s"\n' "$(nk_pub "$acc")" "$(nk_jwt "$op" "$acc" "$(nk_account_claims js)")"
    done
    printf '}\n'
  } >"$file"
}

# nk_creds FILE JWT SEED_KEY: a .creds file (owner-only): the user JWT and the seed of
# key SEED_KEY, each between the marker lines libnats looks for.
nk_creds() {
  (
    umask 077
    {
      printf -- '-----BEGIN NATS USER JWT-----\n%s\n------END NATS USER JWT------\n\n' "$2"
      printf -- '-----BEGIN USER NKEY SEED-----\n%s\n------END USER NKEY SEED------\n' \
        "$(cat "$NK_DIR/$3.seed")"
    } >"$1"
  )
}
