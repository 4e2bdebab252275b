#!/usr/bin/env bash
# Configures and builds tapegrad (Release) into ./build. Used by main.sh and test.sh.
# Extra arguments go to CMake's configure step (e.g. -DTAPEGRAD_NATIVE=OFF).
# TAPEGRAD_TARGETS="a b" builds only those targets (main.sh builds the CLI alone).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
# ccache keys compilations on their command lines: with paths relative to the tree, a second
# copy of the tree (test.sh runs the main job from one) reuses this tree's objects.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$(pwd)}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
targets=()
for t in ${TAPEGRAD_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build build -j "$jobs" "${targets[@]}"
