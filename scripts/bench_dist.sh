#!/usr/bin/env bash
# Data parallel against threads on this machine (docs/distributed.md, "Measured here"):
# workloads (c) and (e) of bench/README.md as 1 process x 2 threads and as 2 ranks x 1 thread
# (mpirun -np 2), and the share of all-reduce time backward hid. Needs a Release build with
# MPI (build/bench/bench_dist). Usage: scripts/bench_dist.sh [bucket_mb] (default 25).
# The 2 ranks shard Adam (ZeroRedundancyOptimizer); TG_BENCH_NO_ZERO=1 selects the whole Adam.
set -euo pipefail
cd "$(dirname "$0")/.."
bucket=${1:-25}
bin=build/bench/bench_dist
for w in c e; do
  TG_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 "$bin" "$w" "" "$bucket"
  TG_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 TG_LAUNCH_TIMEOUT=1800 \
    tests/dist_launch.sh 2 "$bin" "$w" "" "$bucket"
done
