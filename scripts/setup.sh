#!/usr/bin/env bash
# Installs every Debian package tapegrad needs. Idempotent: when all are present it only
# checks (well under a second). Run as root on Debian 12.
set -euo pipefail
packages=(
  g++ cmake ninja-build ccache pkg-config
  # LAPACK comes with OpenBLAS: tg::linalg (ops/linalg.cpp) calls it on the tensors' buffers;
  # xtensor-blas (xt::linalg) is there for code that uses the xtensor interop.
  libxtensor-dev libxtensor-blas-dev xtl-dev libxsimd-dev
  libopenblas-dev libopenblas-pthread-dev liblapack-dev
  catch2 libbenchmark-dev zlib1g-dev libcli11-dev
  # libFuzzer targets (tests/fuzz): clang 14 and its runtime (libFuzzer, ASan, UBSan)
  clang libclang-rt-14-dev
  # oracles for the gradient tests and checkpoint format checks (tests skip without them)
  python3 python3-numpy python3-torch
  # real data for the main job
  dataset-fashion-mnist
  # the word list of the character-level language model (tapegrad charlm)
  wamerican
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages and not root; run as root: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
