#!/usr/bin/env bash
# Builds tapegrad's benchmarks and their LibTorch twins (bench/libtorch), runs them
# alternately for several rounds and prints a table of per-workload medians:
#   workload, unit, tapegrad, LibTorch, speedup (> 1: tapegrad is faster)
#
# Usage: scripts/compare_libtorch.sh [--rounds N] [--json FILE] [--filter REGEX]
#          [--min-time SECONDS] [--jobs N] [--no-build] [--ranges] [--keep DIR]
#
# Installs libtorch-dev when missing (apt-get, needs root; a no-op when installed). Build
# dirs: build-bench (tapegrad, Release, tests/apps off) and build-libtorch-bench.
# To add a workload family: write bench/bench_<name>.cpp and bench/libtorch/<name>.cpp
# with the same benchmark names and unit counter (scripts/bench_table.py, METRICS), list
# <name> in both CMakeLists.txt and in BENCHES below.
set -euo pipefail

BENCHES=(overhead)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds=3
json_out=""
filter=""
min_time="0.5"
jobs="$(nproc)"
build=1
ranges=""
keep=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --json) json_out="$2"; shift 2 ;;
    --filter) filter="$2"; shift 2 ;;
    --min-time) min_time="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --ranges) ranges="--ranges"; shift ;;
    --keep) keep="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare_libtorch: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$rounds" =~ ^[1-9][0-9]*$ ]]; then
  echo "compare_libtorch: --rounds needs a positive integer" >&2; exit 2
fi

tg_build="$root/build-bench"
lt_build="$root/build-libtorch-bench"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

if [ "$build" -eq 1 ]; then
  # The project's own packages (compiler, xtensor, OpenBLAS, Google Benchmark, ...).
  "$root/scripts/setup.sh"
  if ! installed libtorch-dev; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "compare_libtorch: libtorch-dev is missing; run as root to install it" >&2
      exit 1
    fi
    echo "compare_libtorch: installing libtorch-dev"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends libtorch-dev >/dev/null
  fi
  torch_cfg="$(dpkg -L libtorch-dev 2>/dev/null | grep '/TorchConfig.cmake$' | head -n1 || true)"
  torch_dir="$(dirname "${torch_cfg:-/usr/lib/x86_64-linux-gnu/cmake/Torch/TorchConfig.cmake}")"

  echo "compare_libtorch: building tapegrad benchmarks ($tg_build)"
  cmake -S "$root" -B "$tg_build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DTAPEGRAD_BUILD_TESTS=OFF -DTAPEGRAD_BUILD_APPS=OFF -DTAPEGRAD_BUILD_BENCH=ON >/dev/null
  cmake --build "$tg_build" -j "$jobs" --target "${BENCHES[@]/#/bench_}"

  echo "compare_libtorch: building LibTorch benchmarks ($lt_build)"
  cmake -S "$root/bench/libtorch" -B "$lt_build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DTorch_DIR="$torch_dir" >/dev/null
  cmake --build "$lt_build" -j "$jobs" --target "${BENCHES[@]/#/libtorch_}"
fi

if [ -n "$keep" ]; then
  out="$keep"; mkdir -p "$out"; rm -f "$out"/*.json
else
  out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT
fi

run() {  # run <round> <framework> <program> <binary>
  local args=(--benchmark_out="$out/round$1.$3.$2.json" --benchmark_out_format=json
              --benchmark_min_time="$min_time")
  [ -n "$filter" ] && args+=(--benchmark_filter="$filter")
  printf '  round %d  %-8s  %s\n' "$1" "$2" "$(basename "$4")"
  "$4" "${args[@]}" >"$out/round$1.$3.$2.log" 2>&1 || {
    echo "compare_libtorch: $4 failed:" >&2; tail -n 20 "$out/round$1.$3.$2.log" >&2; exit 1; }
}

echo "compare_libtorch: $rounds rounds, alternating (min time ${min_time}s per benchmark)"
for ((r = 1; r <= rounds; r++)); do
  for name in "${BENCHES[@]}"; do
    tg_bin="$tg_build/bench/bench_$name"
    lt_bin="$lt_build/libtorch_$name"
    # Swap the order every round so neither side always runs on a warmer (or busier) machine.
    if ((r % 2 == 1)); then
      run "$r" tapegrad "$name" "$tg_bin"; run "$r" libtorch "$name" "$lt_bin"
    else
      run "$r" libtorch "$name" "$lt_bin"; run "$r" tapegrad "$name" "$tg_bin"
    fi
  done
done
echo
/usr/bin/python3 "$root/scripts/bench_table.py" "$out" $ranges ${json_out:+--json "$json_out"}
