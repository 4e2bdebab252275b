#!/usr/bin/env bash
# Builds tapegrad's benchmarks and their LibTorch twins (bench/libtorch), runs them
# alternately for several rounds and prints a table of per-workload medians:
#   workload, unit, tapegrad, LibTorch, speedup (> 1: tapegrad is faster), rounds, target
# plus ratio rows against direct cblas_sgemm measured in the same process and round.
#
# Usage: scripts/compare_libtorch.sh [--rounds N] [--json FILE] [--only JOBS]
#          [--filter REGEX] [--min-time SECONDS] [--jobs N] [--no-build] [--ranges]
#          [--keep DIR] [--blas-threads N] [--torch-threads N] [--quiet PCT[:SECONDS]]
#          [--libtorch-malloc shipped|tuned|both]
#
# Jobs (one process each, per framework, per round; --only takes a comma list):
#   overhead  1000-op chains (bench_overhead)
#   mlp       training steps (a)-(d), (d)'s GFLOP/s and cblas limit (bench_mlp '^mlp_')
#   gemm      matmul path vs direct cblas_sgemm, n = 32..2048 (bench_gemm)
#   mem_c     peak memory of (c), alone in its process (bench_mlp '^memory/mlp_c/')
#   mem_d     peak memory of (d), alone in its process (bench_mlp '^memory/mlp_d/')
#   fashion   (e) Fashion-MNIST, 5 epochs: s/epoch, test accuracy, peak memory; seeded with
#             the round number (TG_BENCH_SEED)
#   index     embedding, gather, scatter_add, cross_entropy, where: forward + backward
#             (bench_index)
#   conv      conv2d forward + backward (batch 128, 32 -> 64, 14x14, 3x3, pad 1) and direct
#             cblas_sgemm on the products it runs, in the same process (bench_conv)
#   cnn       the default CNN's training step (train --model cnn) at batch 32 and 128
#             (bench_cnn '^cnn/step/')
#   mem_cnn   peak memory of the CNN step at batch 128, alone in its process
#   cnn_fashion  the CNN on Fashion-MNIST, 2 epochs: s/epoch, test accuracy, peak memory;
#             seeded with the round number
#   seq       sequence models' training steps: LSTM layer, LSTMCell loop, Transformer LM
#             (bench_seq '^seq/')
#   mem_lstm_layer, mem_lstm_cell, mem_transformer  peak memory of those steps, each alone
#             in its process (bench_seq '^memory/seq_<name>/')
#   func      tg::func::hessian of the seed network and jacobian of a 100 -> 100 MLP, and
#             per-sample gradients of the (b)-size MLP (bench_func) against
#             torch.autograd.functional and functorch's vmap(grad) in Python
#             (bench/torch_func.py, run by /usr/bin/python3: the API users have there)
#   linalg    cholesky and solve forward + backward on 512 x 512, f64 and f32
#             (bench_linalg; LibTorch with 1 intra-op thread, LAPACK on OpenBLAS's default)
# --filter REGEX replaces the benchmark filter of the overhead, mlp and gemm jobs.
# --quiet PCT[:SECONDS] (default 30:90): before each job, wait (up to SECONDS) until other
# processes use less than PCT% of one core over one second (/proc/stat), so a shared
# machine's builds do not land inside a measurement; 0 turns the wait off. Each job's line
# shows that busy figure and the 1-minute load average.
# Threads: tapegrad's OpenBLAS uses its default (2 on 2 cores) unless --blas-threads is
# given (OPENBLAS_NUM_THREADS). LibTorch runs each job at its best setting on this machine
# (bench/README.md): the MLP-like jobs with 1 intra-op thread and OpenBLAS's default, the
# convolution jobs (conv, cnn, mem_cnn, cnn_fashion) with 2 intra-op threads (oneDNN follows
# that count) and OpenBLAS on 1, the sequence jobs with 1 intra-op thread and OpenBLAS's
# default (see JOBS). --torch-threads N puts every job's intra-op pool
# at N (TG_TORCH_THREADS); --blas-threads N also sets LibTorch's OpenBLAS threads.
# --libtorch-malloc: LibTorch's processes run with glibc malloc as shipped (default), or
# "tuned" (MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=1073741824: large
# buffers stay in the heap instead of fresh mmap'ed pages each time), or "both": LibTorch
# runs twice per round and the table shows both columns. Targets are always judged against
# LibTorch as shipped; the tuned column is information.
# The header line names OPENBLAS_CORETYPE as the run had it (the machine's setting is left
# as it is: "Haswell" here, AVX2 kernels).
#
# Installs libtorch-dev when missing (apt-get, needs root; a no-op when installed). Build
# dirs: build-bench (tapegrad, Release, tests/apps off) and build-libtorch-bench.
# To add a workload family: write bench/bench_<name>.cpp and bench/libtorch/<name>.cpp
# with the same benchmark names and unit counter (scripts/bench_table.py, METRICS), list
# <name> in both CMakeLists.txt and in BENCHES and JOBS below.
set -euo pipefail

BENCHES=(overhead mlp gemm fashion index conv cnn seq linalg)
# tapegrad programs whose twin is a Python script (bench/torch_<name>.py), not a LibTorch one.
PY_BENCHES=(func)
# tag:program:own benchmark filter ("" = all of the program):LibTorch intra-op threads:
# LibTorch's OpenBLAS threads ("" = OpenBLAS's default). LibTorch's best settings here,
# measured per workload (bench/README.md, "LibTorch's threads"): 1 intra-op thread for the
# MLP-like jobs (2 spin against OpenBLAS's pool); for convolutions oneDNN follows the
# intra-op count, so 2 intra-op threads and OpenBLAS on 1; the sequence models (small
# gemms, many ops) as the MLPs: 1 intra-op thread, OpenBLAS's default.
JOBS=(overhead:overhead::1: mlp:mlp:^mlp_:1: gemm:gemm::1: mem_c:mlp:^memory/mlp_c/:1:
      mem_d:mlp:^memory/mlp_d/:1: fashion:fashion::1: index:index::1:
      conv:conv::2:1 cnn:cnn:^cnn/step/:2:1 mem_cnn:cnn:^memory/cnn_128/:2:1
      cnn_fashion:cnn:^cnn_fashion/:2:1 seq:seq:^seq/:1:
      mem_lstm_layer:seq:^memory/seq_lstm_layer/:1: mem_lstm_cell:seq:^memory/seq_lstm_cell/:1:
      mem_transformer:seq:^memory/seq_transformer/:1: "func:func:^(func/|memory/checkpoint_):1:"
      linalg:linalg::1:)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds=3
json_out=""
filter=""
min_time="0.5"
jobs="$(nproc)"
build=1
ranges=""
keep=""
only=""
blas_threads=""
torch_threads=""
quiet="30:90"
libtorch_malloc="shipped"
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
    --only) only="$2"; shift 2 ;;
    --blas-threads) blas_threads="$2"; shift 2 ;;
    --torch-threads) torch_threads="$2"; shift 2 ;;
    --quiet) quiet="$2"; shift 2 ;;
    --libtorch-malloc) libtorch_malloc="$2"; shift 2 ;;
    -h|--help) sed -n '2,63p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare_libtorch: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$libtorch_malloc" in
  shipped) lt_variants=(libtorch) ;;
  tuned) lt_variants=(libtorch_tuned) ;;
  both) lt_variants=(libtorch libtorch_tuned) ;;
  *) echo "compare_libtorch: --libtorch-malloc takes shipped, tuned or both" >&2; exit 2 ;;
esac
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
  cmake --build "$tg_build" -j "$jobs" --target "${BENCHES[@]/#/bench_}" "${PY_BENCHES[@]/#/bench_}"

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

[ -n "$blas_threads" ] && export OPENBLAS_NUM_THREADS="$blas_threads"

selected=()
for job in "${JOBS[@]}"; do
  tag="${job%%:*}"
  if [ -z "$only" ] || [[ ",$only," == *",$tag,"* ]]; then selected+=("$job"); fi
done
if [ ${#selected[@]} -eq 0 ]; then
  echo "compare_libtorch: --only '$only' selects no job" >&2; exit 2
fi

busy_pct() {  # CPU time used by all processes over one second, in % of one core
  local a b
  read -r -a a < <(head -n1 /proc/stat)
  sleep 1
  read -r -a b < <(head -n1 /proc/stat)
  local busy=0 total=0 i
  for i in 1 2 3 4 5 6 7 8; do
    total=$((total + b[i] - a[i]))
    [ "$i" -ne 4 ] && [ "$i" -ne 5 ] && busy=$((busy + b[i] - a[i]))  # not idle, iowait
  done
  echo $(( total > 0 ? busy * 100 * $(nproc) / total : 0 ))
}

wait_quiet() {  # prints the busy figure it settled on
  local pct="${quiet%%:*}" secs="${quiet#*:}" start=$SECONDS b
  [ "$secs" = "$quiet" ] && secs=90
  b=$(busy_pct)
  while [ "$pct" -gt 0 ] && [ "$b" -ge "$pct" ] && [ $((SECONDS - start)) -lt "$secs" ]; do
    b=$(busy_pct)
  done
  echo "$b"
}

run() {  # run <round> <framework> <job tag> <binary> <benchmark filter> [VAR=value ...]
  local args=(--benchmark_out="$out/round$1.$3.$2.json" --benchmark_out_format=json
              --benchmark_min_time="$min_time")
  [ -n "$5" ] && args+=(--benchmark_filter="$5")
  local busy=""
  [ "${quiet%%:*}" != 0 ] && busy="busy $(wait_quiet)% of a core, "
  printf '  round %d  %-14s  %-11s  %-18s (%sload %s)\n' "$1" "$2" "$3" "$(basename "$4")" \
    "$busy" "$(cut -d' ' -f1 /proc/loadavg)"
  env TG_BENCH_SEED="$1" "${@:6}" "$4" "${args[@]}" >"$out/round$1.$3.$2.log" 2>&1 || {
    echo "compare_libtorch: $4 failed:" >&2; tail -n 20 "$out/round$1.$3.$2.log" >&2; exit 1; }
}

run_libtorch() {  # run_libtorch <round> <variant> <job tag> <binary> <filter> <threads> <blas>
  local envs=(TG_TORCH_THREADS="${torch_threads:-$6}")
  local blas="${blas_threads:-$7}"
  [ -n "$blas" ] && envs+=(OPENBLAS_NUM_THREADS="$blas")
  [ "$2" = libtorch_tuned ] &&
    envs+=(MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=1073741824)
  run "$1" "$2" "$3" "$4" "$5" "${envs[@]}"
}

echo "compare_libtorch: $rounds rounds, alternating (min time ${min_time}s per benchmark;" \
  "OpenBLAS threads ${OPENBLAS_NUM_THREADS:-default}, OPENBLAS_CORETYPE" \
  "${OPENBLAS_CORETYPE:-unset}; LibTorch intra-op threads ${torch_threads:-per job}," \
  "malloc $libtorch_malloc)"
echo "compare_libtorch: $(uptime)"
start_s=$SECONDS
for ((r = 1; r <= rounds; r++)); do
  for job in "${selected[@]}"; do
    IFS=: read -r tag name job_filter lt_threads lt_blas <<<"$job"
    case "$tag" in overhead|mlp|gemm) [ -n "$filter" ] && job_filter="$filter" ;; esac
    tg_bin="$tg_build/bench/bench_$name"
    lt_bin="$lt_build/libtorch_$name"
    [[ " ${PY_BENCHES[*]} " == *" $name "* ]] && lt_bin="$root/bench/torch_$name.py"
    # Swap the order every round so neither side always runs on a warmer (or busier) machine.
    if ((r % 2 == 1)); then
      run "$r" tapegrad "$tag" "$tg_bin" "$job_filter"
      for v in "${lt_variants[@]}"; do
        run_libtorch "$r" "$v" "$tag" "$lt_bin" "$job_filter" "$lt_threads" "$lt_blas"
      done
    else
      for v in "${lt_variants[@]}"; do
        run_libtorch "$r" "$v" "$tag" "$lt_bin" "$job_filter" "$lt_threads" "$lt_blas"
      done
      run "$r" tapegrad "$tag" "$tg_bin" "$job_filter"
    fi
  done
done
echo "compare_libtorch: done in $((SECONDS - start_s)) s; $(uptime)"
echo
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; LibTorch malloc: $libtorch_malloc"
/usr/bin/python3 "$root/scripts/bench_table.py" "$out" $ranges ${json_out:+--json "$json_out"}
