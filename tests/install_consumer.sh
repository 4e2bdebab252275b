#!/usr/bin/env bash
# Installs the built library into a temporary prefix and builds + runs an outside CMake
# project against it with find_package(tapegrad).
set -euo pipefail
build_dir=$1
source_dir=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build_dir" --prefix "$tmp/prefix" >/dev/null
cmake -S "$source_dir/tests/consumer" -B "$tmp/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/build" >/dev/null
"$tmp/build/consumer"
if [ -x "$tmp/build/consumer_dist" ]; then "$tmp/build/consumer_dist"; fi
test -f "$tmp/prefix/include/tapegrad/tapegrad.hpp"
test -f "$tmp/prefix/lib/cmake/tapegrad/tapegradConfig.cmake"
