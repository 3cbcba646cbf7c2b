# Shared by the benchmark scripts: configures BUILD once (RelWithDebInfo, the default
# build/bench; a folder already configured keeps its build type), brings its build and
# its install in BUILD/_install up to date (an old install measured old code), and sets
# PREFIX and SK (the installed spec-kitty).
bench_prepare() {
  BUILD="${1:-build/bench}"
  [ -f "$BUILD/CMakeCache.txt" ] || cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" >/dev/null
  cmake --install "$BUILD" --prefix "$BUILD/_install" >/dev/null
  PREFIX="$(cd "$BUILD/_install" && pwd)"
  SK="$PREFIX/bin/spec-kitty"
}
