#!/usr/bin/python3
"""Fails when a source file includes a header from a layer above its own.

The layers, bottom to top (docs/architecture.md shows the diagram):
  graph/                 Tensor, kernels, Var/Node/record, the engine, gradcheck
  parallel/              the worker pool (uses graph/error.hpp)
  ops/                   differentiable ops
  data/                  datasets and the DataLoader
  models/                modules, initializers, checkpoints
  optim/                 optimizers (their state is saved in models' .npz format)
  dist/                  collectives over MPI, DistributedDataParallel (only where MPI is)
  apps/                  the tapegrad program
Each folder may include from itself and the folders listed for it below, nothing else.
Usage: tests/check_layers.py [REPO_ROOT]
"""
import pathlib
import re
import sys

ALLOWED = {
    "graph": {"graph"},
    "parallel": {"parallel", "graph"},
    "ops": {"ops", "parallel", "graph"},
    "data": {"data", "graph", "parallel"},
    "models": {"models", "ops", "graph"},
    "optim": {"optim", "models", "ops", "graph", "parallel"},
    "dist": {"dist", "optim", "models", "data", "ops", "parallel", "graph"},
    "apps": {"apps", "dist", "optim", "models", "data", "ops", "parallel", "graph"},
    # The public umbrella header and the examples see the library, not the program.
    "include": {"dist", "optim", "models", "data", "ops", "parallel", "graph"},
    "examples": {"optim", "models", "data", "ops", "parallel", "graph"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"/]+)/[^"]+"', re.M)

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent.parent)
bad = []
checked = 0
for layer, allowed in ALLOWED.items():
    for path in sorted((root / layer).rglob("*")):
        if path.suffix not in (".hpp", ".cpp", ".h"):
            continue
        checked += 1
        text = path.read_text(encoding="utf-8")
        for m in INCLUDE.finditer(text):
            target = m.group(1)
            if target in ALLOWED and target not in allowed:
                line = text.count("\n", 0, m.start()) + 1
                bad.append(f"{path.relative_to(root)}:{line}: {layer}/ includes {m.group(0).strip()!r} "
                           f"from {target}/, a layer above it")
for b in bad:
    print(b)
print(f"check_layers: {checked} files, {len(bad)} upward include(s)")
sys.exit(1 if bad or checked == 0 else 0)
