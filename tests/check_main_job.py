#!/usr/bin/python3
"""Checks the outputs of the main job (scripts/main.sh) in the tree given as argument.

The seed experiment (runs/symmetry/): identical initial weights keep the hidden units
identical (difference exactly 0) and end at a higher loss than random ones; backprop beats
random search; the three pictures are SVG. The training run (runs/train-defaults/): 5 epochs
in metrics.jsonl with test accuracy in the range the default MLP reaches on Fashion-MNIST,
a checkpoint numpy reads that says epoch 5, and the three pictures.
"""
import json
import pathlib
import sys
import zipfile

import numpy as np

tree = pathlib.Path(sys.argv[1])
errors = []


def check(ok, what):
    if not ok:
        errors.append(what)
    return ok


def svg(path):
    return check(path.is_file() and b"<svg" in path.read_bytes()[:400], f"{path}: not an SVG picture")


sym = tree / "runs/symmetry"
if check((sym / "symmetry.json").is_file(), f"{sym}/symmetry.json is missing"):
    j = json.loads((sym / "symmetry.json").read_text())
    c, r = j["constant_init"], j["random_init"]
    check(c["max_hidden_unit_difference"] == 0,
          f"identical init: hidden units differ by {c['max_hidden_unit_difference']} (must be 0)")
    check(r["max_hidden_unit_difference"] > 0.1,
          f"random init: hidden units differ by only {r['max_hidden_unit_difference']}")
    check(r["final_loss"] < c["final_loss"] / 5,
          f"random init loss {r['final_loss']} not well below identical init {c['final_loss']}")
    check(j["backprop"]["final_mse"] < j["random_search"]["final_mse"],
          f"backprop MSE {j['backprop']['final_mse']} not below random search "
          f"{j['random_search']['final_mse']}")
    check(len(j["predictions"]) == 3, "symmetry.json: 3 predictions expected")
for name in ("loss_curves.svg", "hidden_units_constant.svg", "hidden_units_random.svg"):
    svg(sym / name)

train = tree / "runs/train-defaults"
metrics = train / "metrics.jsonl"
if check(metrics.is_file(), f"{metrics} is missing"):
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    check([row["epoch"] for row in rows] == [1, 2, 3, 4, 5], f"{metrics}: epochs {[row['epoch'] for row in rows]}")
    if rows:
        acc = rows[-1]["test_accuracy"]
        # The defaults (784-256-128-10 ReLU, Adam 1e-3, 5 epochs, seed 0) reach 0.8745 here.
        check(0.85 <= acc <= 0.90, f"test accuracy {acc} outside [0.85, 0.90]")
        check(rows[-1]["train_loss"] < rows[0]["train_loss"], "the training loss did not fall")
ckpt = train / "checkpoint.npz"
if check(ckpt.is_file() and zipfile.is_zipfile(ckpt), f"{ckpt}: missing or not a zip"):
    with np.load(ckpt) as z:
        check(int(z["epoch"]) == 5, f"{ckpt}: epoch {int(z['epoch'])}, expected 5")
        check(any(k.startswith("model.") for k in z.files), f"{ckpt}: no model parameters")
for name in ("loss.svg", "accuracy.svg", "confusion_matrix.svg"):
    svg(train / name)

for e in errors:
    print("main job check: " + e, file=sys.stderr)
if not errors:
    print(f"main job: outputs as expected (test accuracy {rows[-1]['test_accuracy']:.4f})")
sys.exit(1 if errors else 0)
