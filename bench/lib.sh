# Shared by the benchmark scripts: builds and installs once into BUILD (RelWithDebInfo,
# the default build/bench) and sets PREFIX and SK (the installed spec-kitty).
bench_prepare() {
  BUILD="${1:-build/bench}"
  if [ ! -x "$BUILD/_install/bin/spec-kitty" ]; then
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$BUILD" -j"$(nproc)" >/dev/null
    cmake --install "$BUILD" --prefix "$BUILD/_install" >/dev/null
  fi
  PREFIX="$(cd "$BUILD/_install" && pwd)"
  SK="$PREFIX/bin/spec-kitty"
}
