#!/usr/bin/env bash
# Runs a program under `mpirun -np N` for CTest (tests/CMakeLists.txt): dist_launch.sh N
# program args... Exits 77, which CTest reports as skipped, when mpirun is not installed.
# mpirun refuses root unless told; --oversubscribe lets 3 ranks share 2 cores; each rank
# takes one worker thread so the ranks do not fight over the cores. The outer timeout
# bounds a hang whatever happens (the ranks' own waits give up after TG_DIST_TIMEOUT).
set -u
np=$1
shift
if ! command -v mpirun >/dev/null 2>&1; then
  echo "SKIPPED: mpirun not found (install openmpi-bin libopenmpi-dev)"
  exit 77
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export TG_DIST_TIMEOUT=${TG_DIST_TIMEOUT:-60}
export TG_NUM_THREADS=${TG_NUM_THREADS:-1}
exec timeout -k 10 "${TG_LAUNCH_TIMEOUT:-600}" mpirun --oversubscribe --bind-to none -np "$np" "$@"
