#!/usr/bin/env bash
# Sets up everything (Debian packages), builds the `tapegrad` program (Release), and runs the
# main job: the seed experiment (`tapegrad symmetry`, docs/seed.md) and a training run on
# Fashion-MNIST with the defaults (the MLP), then the default CNN (--model cnn). Outputs:
# runs/symmetry/ (symmetry.json and pictures), runs/train-defaults/ and runs/train-cnn/
# (checkpoint.npz, metrics.jsonl and pictures). tests/main_job.sh runs
# this script from a fresh copy of the tree and checks those outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
TAPEGRAD_TARGETS=tapegrad_cli bash scripts/build.sh
./build/apps/tapegrad symmetry --json runs/symmetry/symmetry.json --out runs/symmetry
echo
./build/apps/tapegrad train --out runs/train-defaults
echo
./build/apps/tapegrad train --model cnn --out runs/train-cnn
