#!/usr/bin/env bash
# Sets up everything (Debian packages), builds, and runs the whole test suite with CTest
# (examples included); then the main job (scripts/main.sh) from a fresh copy of the tree with
# its outputs checked (tests/main_job.sh); then the suite under ASan+UBSan+LSan and the
# threading tests under TSan (tests/sanitizers/run.sh), then each libFuzzer target for up to
# 60 s (tests/fuzz/run.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc 2>/dev/null || echo 2)" --timeout 1500
bash tests/main_job.sh
bash tests/sanitizers/run.sh
bash tests/fuzz/run.sh
