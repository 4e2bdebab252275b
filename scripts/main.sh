#!/usr/bin/env bash
# Sets up everything (Debian packages), builds, and runs the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
./build/apps/xor_demo
