#!/usr/bin/python3
"""Checks the outputs of the main job (scripts/main.sh) in the tree given as argument.

The seed experiment (runs/symmetry/): identical initial weights keep the hidden units
identical (difference exactly 0) and end at a higher loss than random ones; backprop beats
random search; the three pictures are SVG. The training run (runs/train-defaults/): 5 epochs
in metrics.jsonl with test accuracy in the range the default MLP reaches on Fashion-MNIST,
a checkpoint numpy reads that says epoch 5, and the three pictures. The CNN run
(runs/train-cnn/): the same, with test accuracy >= 0.91 and config.model == "cnn". The
language models (runs/charlm-lstm/, runs/charlm-transformer/): summary.json with the test
loss at or below the target (LSTM 1.95, Transformer 2.00 nats/char) after at most 300 s of
training, below the count bigram's, sampled words, one metrics line per epoch, and a
checkpoint numpy reads that names the model.
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



def check_run(folder, low, high, model):
    """5 epochs of metrics with the final test accuracy in [low, high]; returns it."""
    acc = None
    metrics = folder / "metrics.jsonl"
    if check(metrics.is_file(), f"{metrics} is missing"):
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        check([row["epoch"] for row in rows] == [1, 2, 3, 4, 5], f"{metrics}: epochs {[row['epoch'] for row in rows]}")
        if rows:
            acc = rows[-1]["test_accuracy"]
            check(low <= acc <= high, f"{folder}: test accuracy {acc} outside [{low}, {high}]")
            check(rows[-1]["train_loss"] < rows[0]["train_loss"], f"{folder}: the training loss did not fall")
    ckpt = folder / "checkpoint.npz"
    if check(ckpt.is_file() and zipfile.is_zipfile(ckpt), f"{ckpt}: missing or not a zip"):
        with np.load(ckpt) as z:
            check(int(z["epoch"]) == 5, f"{ckpt}: epoch {int(z['epoch'])}, expected 5")
            check(any(k.startswith("model.") for k in z.files), f"{ckpt}: no model parameters")
            if model is not None:
                # strings are stored as uint8 arrays
                got = bytes(z["config.model"]).decode() if "config.model" in z.files else None
                check(got == model, f"{ckpt}: config.model is {got!r}, expected {model!r}")
    for name in ("loss.svg", "accuracy.svg", "confusion_matrix.svg"):
        svg(folder / name)
    return acc


# The defaults (784-256-128-10 ReLU, Adam 1e-3, 5 epochs, seed 0) reach 0.8745 here.
mlp_acc = check_run(tree / "runs/train-defaults", 0.85, 0.90, None)
# The default CNN (--model cnn: Adam 1e-3 with the cosine schedule, batch 128, 5 epochs, seed 0)
# reaches 0.9245 here (0.9228 before 0.5.0's kernels; 0.9083 without the schedule, hence the
# cosine default).
cnn_acc = check_run(tree / "runs/train-cnn", 0.91, 1.0, "cnn")



def check_charlm(folder, model, target):
    """The summary of `tapegrad charlm --model <model>`; returns its test loss."""
    summary = folder / "summary.json"
    if not check(summary.is_file(), f"{summary} is missing"):
        return float("nan")
    j = json.loads(summary.read_text())
    check(j["model"] == model, f"{summary}: model {j['model']!r}, expected {model!r}")
    check(j["test_loss"] <= target, f"{summary}: test loss {j['test_loss']:.4f} above {target}")
    check(j["test_loss"] < j["bigram_test_loss"] - 0.3,
          f"{summary}: test loss {j['test_loss']:.4f} not well below the count bigram's "
          f"{j['bigram_test_loss']:.4f}")
    check(2.4 < j["bigram_test_loss"] < 2.6, f"{summary}: bigram test loss {j['bigram_test_loss']}")
    check(j["seconds"] <= 300, f"{summary}: {j['seconds']:.0f} s of training, more than 300")
    check(len(j["samples"]) == 10 and all(isinstance(w, str) for w in j["samples"]),
          f"{summary}: 10 sampled words expected, got {j['samples']!r}")
    metrics = folder / "metrics.jsonl"
    if check(metrics.is_file(), f"{metrics} is missing"):
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        check(len(rows) >= 1 and [r["epoch"] for r in rows] == list(range(1, len(rows) + 1)),
              f"{metrics}: epochs {[r['epoch'] for r in rows]}")
        check(rows and abs(rows[-1]["dev_loss"] - j["dev_loss"]) < 1e-9,
              f"{metrics}: the last dev loss is not the summary's")
    ckpt = folder / "checkpoint.npz"
    if check(ckpt.is_file() and zipfile.is_zipfile(ckpt), f"{ckpt}: missing or not a zip"):
        with np.load(ckpt) as z:
            check(bytes(z["charlm.model"]).decode() == model, f"{ckpt}: charlm.model is not {model}")
            check(any(k.startswith("model.") for k in z.files), f"{ckpt}: no model parameters")
    return j["test_loss"]


lstm_loss = check_charlm(tree / "runs/charlm-lstm", "lstm", 1.95)
transformer_loss = check_charlm(tree / "runs/charlm-transformer", "transformer", 2.00)

for e in errors:
    print("main job check: " + e, file=sys.stderr)
if not errors:
    print(f"main job: outputs as expected (test accuracy: MLP {mlp_acc:.4f}, CNN {cnn_acc:.4f}; "
          f"test loss: LSTM {lstm_loss:.4f}, Transformer {transformer_loss:.4f} nats/char)")
sys.exit(1 if errors else 0)
