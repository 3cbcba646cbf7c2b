#!/usr/bin/env bash
# The Debian packages as a user gets them: scripts/package.sh builds them (cpack -G DEB),
# lintian finds no error, and unpacked into a scratch root they have the layout the
# system expects and run from there.
. "$(dirname "$0")/../integration/lib.sh"
DEBS="$SK_BUILD_DIR/package-debs"
SK_PACKAGE_BUILD="$SK_BUILD_DIR/package-build" bash "$SK_SOURCE_DIR/scripts/package.sh" "$DEBS" \
  >"$TEST_TMP/package.log" 2>&1 || fail "scripts/package.sh: $(tail -5 "$TEST_TMP/package.log")"
V="$(sed -n 's/^project(spec-kitty-sync VERSION \([0-9.]*\).*/\1/p' "$SK_SOURCE_DIR/CMakeLists.txt")-1"
ARCH="$(dpkg --print-architecture)"
for p in spec-kitty-sync spec-kitty-receiver spec-kitty-sync-dev; do
  [ -f "$DEBS/${p}_${V}_$ARCH.deb" ] || fail "no ${p}_${V}_$ARCH.deb in $(ls "$DEBS")"; pass
done
deb() { echo "$DEBS/${1}_${V}_$ARCH.deb"; }

# Dependencies come from dpkg-shlibdeps: the libraries the ELF files link.
dep() { dpkg-deb -f "$(deb "$1")" Depends; }
for lib in libcurl4 libjansson4 libsqlite3-0 libc6; do
  grep -q "$lib (>=" <<<"$(dep spec-kitty-sync)" || fail "spec-kitty-sync Depends lacks $lib: $(dep spec-kitty-sync)"; pass
done
grep -q "libmicrohttpd12 (>=" <<<"$(dep spec-kitty-receiver)" || fail "receiver Depends: $(dep spec-kitty-receiver)"; pass
grep -qF "spec-kitty-sync (= $V)" <<<"$(dep spec-kitty-sync-dev)" || fail "dev Depends: $(dep spec-kitty-sync-dev)"; pass
dpkg-deb --ctrl-tarfile "$(deb spec-kitty-sync)" | tar -xO ./shlibs >"$TEST_TMP/shlibs"
expect_eq "$(cat "$TEST_TMP/shlibs")" "libspec-kitty-sync 0 spec-kitty-sync (>= $V)" "shlibs"

# lintian: no error (overrides in packaging/debian, each with its reason).
set +e; lintian --fail-on error "$DEBS"/*.deb >"$TEST_TMP/lintian.out" 2>&1; RC=$?; set -e
expect_rc 0 "lintian: $(grep '^E:' "$TEST_TMP/lintian.out")"
grep -q '^E:' "$TEST_TMP/lintian.out" && fail "lintian errors: $(grep '^E:' "$TEST_TMP/lintian.out")"; pass

# Unpacked into a scratch root.
ROOT="$TEST_TMP/root"
for p in spec-kitty-sync spec-kitty-receiver spec-kitty-sync-dev; do dpkg -x "$(deb "$p")" "$ROOT"; done
for f in usr/bin/spec-kitty usr/bin/spec-kitty-receiver usr/bin/spec-kitty-transport-check \
  usr/lib/libspec-kitty-sync.so.0 usr/lib/libspec-kitty-sync.so \
  usr/lib/spec-kitty/transports/http-batch.so usr/lib/spec-kitty/transports/file-drop.so \
  usr/lib/systemd/user/spec-kitty-sync.service \
  usr/share/bash-completion/completions/spec-kitty \
  usr/share/man/man1/spec-kitty-sync.1.gz usr/share/man/man1/spec-kitty.1.gz \
  usr/share/man/man5/spec-kitty-sync.json.5.gz usr/share/man/man7/spec-kitty-transport.7.gz \
  usr/share/man/man1/spec-kitty-receiver.1.gz usr/share/man/man1/spec-kitty-transport-check.1.gz \
  usr/include/spec-kitty/sync.h usr/include/spec-kitty/transport.h \
  usr/lib/pkgconfig/spec-kitty-sync.pc usr/lib/pkgconfig/spec-kitty-transport.pc \
  usr/lib/cmake/SpecKittySync/SpecKittySyncConfig.cmake \
  usr/lib/cmake/SpecKittyTransport/SpecKittyTransportConfig.cmake \
  usr/share/spec-kitty/sdk/template/print_transport.c \
  usr/share/doc/spec-kitty-sync/copyright usr/share/doc/spec-kitty-sync/changelog.Debian.gz; do
  [ -e "$ROOT/$f" ] || fail "$f missing from the unpacked packages"; pass
done
# The unit starts the packaged binary, not one in the user's home.
grep -qx "ExecStart=/usr/bin/spec-kitty sync daemon run" "$ROOT/usr/lib/systemd/user/spec-kitty-sync.service" ||
  fail "unit: $(grep Exec "$ROOT/usr/lib/systemd/user/spec-kitty-sync.service")"; pass
# The library was built for /usr: its plugin folder is the packaged one.
grep -qa "/usr/lib/spec-kitty/transports" "$ROOT/usr/lib/libspec-kitty-sync.so.0" || fail "library plugin folder"; pass

SK_BIN="$ROOT/usr/bin/spec-kitty"
sk --version; expect_rc 0 "spec-kitty --version from the scratch root"
expect_out "spec-kitty ${V%-1} (transport ABI"
# It finds the packaged transports beside it.
sk sync plugins --json; expect_rc 0 "sync plugins from the scratch root"
for t in http-batch file-drop; do
  expect_eq "$(jq -r --arg t "$t" '.[] | select(.name == $t) | .file' <<<"$OUT" | xargs -r realpath)" \
    "$(realpath "$ROOT/usr/lib/spec-kitty/transports/$t.so")" "packaged $t found"
done
"$ROOT/usr/bin/spec-kitty-receiver" --help >/dev/null || fail "receiver from the scratch root"; pass
