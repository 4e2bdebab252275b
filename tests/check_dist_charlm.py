#!/usr/bin/python3
"""`tapegrad charlm` data-parallel (apps/charlm.cpp, Note [Data-parallel charlm]): with the
same seed and global batch, 2 and 3 ranks (mpirun, tests/dist_launch.sh) end 2 epochs of a
small LSTM (AdamW) with the parameters and optimizer state of 1 process, and print and write
the same train / dev / test losses; a run of 2 ranks resumed for its second epoch on 1 rank
ends there too; `--model bigram` (a trained table) follows 1 process as well; only rank 0
prints and writes; ranks started with different options stop at the start, each with the
error.
Tolerances: parameters within 1e-5 of the tensor's largest value, losses within 1e-6
relative. The ranks sum the same gradients in another order (f32: one process adds the
batch's rows inside one product, p ranks add p partial products), about 1e-7 relative per
step; Adam divides by the root of the second moment, which carries such differences on
gradients near zero into whole steps of size lr, so 1e-5 stays well above the 3.4e-7 seen (2 and 3 ranks, the bigram, the resumed run).
The data: 300 random words over 10 letters written here (240 train words; the global batch
of 25 leaves a last batch of 15, split 7 / 8 and 5 / 5 / 5).

Usage: check_dist_charlm.py TAPEGRAD LAUNCHER WORKDIR. Exit 77 (CTest: skipped) without
mpirun or numpy.
"""
import json
import os
import random
import shutil
import subprocess
import sys

tapegrad, launcher, work = sys.argv[1:4]
try:
    import numpy as np
except ImportError:
    print("SKIPPED: numpy is not installed")
    sys.exit(77)
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
rng = random.Random(5)
words = set()
while len(words) < 300:
    words.add("".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 8))))
words_file = os.path.join(work, "words.txt")
with open(words_file, "w") as f:
    f.write("\n".join(sorted(words)) + "\n")
common = ["charlm", "--words", words_file, "--embed", "8", "--hidden", "16", "--batch", "25",
          "--seed", "3", "--samples", "3", "--no-progress"]


def run(ranks, out, *extra, model="lstm"):
    cmd = ([tapegrad] if ranks == 1 else [launcher, str(ranks), tapegrad]) + common + \
        ["--model", model, "--out", os.path.join(work, out),
         "--json", os.path.join(work, out + ".json")] + list(extra)
    env = dict(os.environ, TG_NUM_THREADS="1")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    if r.returncode == 77:
        print(r.stdout)
        sys.exit(77)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        sys.exit(f"{' '.join(cmd)}: exit {r.returncode}")
    return r.stdout


def state(out):
    with np.load(os.path.join(work, out, "checkpoint.npz")) as z:
        return {k: z[k] for k in z.files if k.startswith(("model.", "optim.state"))}


def losses(out):
    with open(os.path.join(work, out, "metrics.jsonl")) as f:
        m = [json.loads(line) for line in f]
    with open(os.path.join(work, out + ".json")) as f:
        j = json.load(f)
    return [(e["train_loss"], e["dev_loss"]) for e in m], j["test_loss"], j["samples"]


bad = []


def compare(out, ref):
    got, want = state(out), state(ref)
    if sorted(got) != sorted(want):
        bad.append(f"{out}: checkpoint entries differ from {ref}'s")
        return
    worst = max(float(np.abs(got[k].astype(np.float64) - want[k]).max() /
                      max(float(np.abs(want[k]).max()), 1e-30)) for k in want if want[k].size)
    print(f"{out}: largest difference {worst:.3g} of the tensor's largest value")
    if worst > 1e-5:
        bad.append(f"{out}: parameters differ from {ref} by {worst:.3g} (more than 1e-5)")
    (m, test, _), (m_ref, test_ref, _) = losses(out), losses(ref)
    if len(m) != len(m_ref):
        bad.append(f"{out}: {len(m)} metrics lines, expected {len(m_ref)} (rank 0 alone writes)")
    pairs = [(a, b) for ea, eb in zip(m, m_ref) for a, b in zip(ea, eb)] + [(test, test_ref)]
    for a, b in pairs:
        if abs(a - b) > 1e-6 * abs(b):
            bad.append(f"{out}: loss {a} against {ref}'s {b}")


run(1, "one", "--epochs", "2")
text = run(2, "two", "--epochs", "2")
if text.count("epoch 1/2") != 1 or text.count("samples:") != 1:
    bad.append("2 ranks: the epoch line or the samples are not printed once (rank 0 alone prints)")
compare("two", "one")
run(3, "three", "--epochs", "2")
compare("three", "one")
run(2, "resumed", "--epochs", "1")
run(1, "resumed", "--epochs", "2", "--resume", os.path.join(work, "resumed", "checkpoint.npz"))
compare("resumed", "one")
run(1, "bigram_one", "--epochs", "1", model="bigram")
run(2, "bigram_two", "--epochs", "1", model="bigram")
compare("bigram_two", "bigram_one")
# Ranks that disagree: rank 1 has another batch size.
other = ["12" if a == "25" else a for a in common]
bad_out = ["--epochs", "1", "--out", os.path.join(work, "bad")]
cmd = [launcher, "1", tapegrad] + common + bad_out + [":", "-np", "1", tapegrad] + other + bad_out
r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
err = r.stderr.count("tapegrad: error: tapegrad: the ranks' run configurations or data differ")
print(r.stderr.strip().splitlines()[0] if r.stderr.strip() else "(no stderr)")
if r.returncode == 0 or err != 2:
    bad.append(f"ranks with different options: exit {r.returncode}, the error on {err} of 2 ranks")
for b in bad:
    print("check_dist_charlm:", b)
print("check_dist_charlm:", "FAIL" if bad else "ok")
sys.exit(1 if bad else 0)
