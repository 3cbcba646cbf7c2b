#!/usr/bin/env bash
# Installs the Debian packages that building, testing and the demo need.
# Idempotent: does nothing (no network) when everything is already installed.
set -euo pipefail

SK_PACKAGES=(
  build-essential cmake pkg-config git
  libjansson-dev libsqlite3-dev libcurl4-openssl-dev libnghttp2-dev libssl-dev zlib1g-dev
  libdeflate-dev libcjson-dev libmd-dev
  libcmocka-dev libmicrohttpd-dev
  clang libclang-rt-14-dev
  nghttp2-proxy nghttp2-client openssl curl sqlite3 jq procps psmisc bc time
  scdoc man-db bash-completion dpkg-dev file lintian util-linux tmux tinyproxy
  prometheus prometheus-node-exporter
  libnats-dev nats-server
  python3-requests
)

missing=()
for p in "${SK_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "deps.sh: missing packages: ${missing[*]} (run as root, or install them)" >&2
  exit 1
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
