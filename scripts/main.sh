#!/usr/bin/env bash
# Sets up everything (Debian packages), builds the `tapegrad` program (Release), and runs the
# main job: the seed experiment (`tapegrad symmetry`, docs/seed.md) and a training run on
# Fashion-MNIST with the defaults (the MLP), then the default CNN (--model cnn), then the
# character-level language models of wamerican's words (an LSTM and a Transformer, `tapegrad
# charlm`). Outputs: runs/symmetry/ (symmetry.json and pictures), runs/train-defaults/ and
# runs/train-cnn/ (checkpoint.npz, metrics.jsonl and pictures), runs/charlm-lstm/ and
# runs/charlm-transformer/ (checkpoint.npz, metrics.jsonl, summary.json). tests/main_job.sh runs
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
echo
./build/apps/tapegrad charlm --model lstm --out runs/charlm-lstm --json runs/charlm-lstm/summary.json
echo
./build/apps/tapegrad charlm --model transformer --out runs/charlm-transformer \
  --json runs/charlm-transformer/summary.json
