#!/usr/bin/env bash
# Sets up everything (Debian packages), builds (Release), and runs the main job: the seed
# experiment (`tapegrad symmetry`) and a training run on Fashion-MNIST with the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
./build/apps/tapegrad symmetry --json runs/symmetry/symmetry.json --out runs/symmetry
echo
./build/apps/tapegrad train --out runs/train-defaults --metrics runs/train-defaults.jsonl
