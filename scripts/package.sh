#!/usr/bin/env bash
# Builds the Debian packages: spec-kitty-sync (CLI, library, shipped transports, systemd
# user unit, man pages, completion), spec-kitty-receiver and spec-kitty-sync-dev.
#   scripts/package.sh [OUTDIR]      (default build/package/debs)
# The build is configured for /usr (the plugin folder compiled into the library is
# /usr/lib/spec-kitty/transports) and kept in SK_PACKAGE_BUILD (default build/package).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${SK_PACKAGE_BUILD:-build/package}"
OUT="$(realpath -m "${1:-$BUILD/debs}")"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
  -DSK_BUILD_TESTS=OFF -DSK_BUILD_BENCH=OFF >/dev/null
cmake --build "$BUILD" -j"${SK_PACKAGE_JOBS:-2}" >/dev/null
rm -rf "$OUT" && mkdir -p "$OUT"
(cd "$BUILD" && cpack -G DEB -B "$OUT" >/dev/null)
rm -rf "$OUT/_CPack_Packages"
ls "$OUT"/*.deb
