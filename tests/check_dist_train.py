#!/usr/bin/python3
"""`tapegrad train` data-parallel (apps/train.cpp, Note [Data-parallel train]): with the same
seed and global batch, 2 ranks and 3 ranks (mpirun, tests/dist_launch.sh; the optimizer
sharded, the default) end with the parameters and optimizer state of 1 process, up to
rounding (largest difference at most 1e-6 of the tensor's largest value, in f32), and so do
2 ranks with --no-shard-optimizer; 2 sharded ranks end within 1e-6 (of the tensor's largest
value) of 2 unsharded ranks. The sharded runs' checkpoints hold the optimizer entries of
1 process's (the same names, dtypes and shapes; the same rate and step counts). Runs resumed
for a second epoch with another world size end there too: 2 ranks then 3, 2 then 1, 1 then
2 (sharded). Only rank 0 writes (one metrics line per epoch), and the figures it prints
(loss, accuracy) are the whole batch's. Ranks started with different options (mpirun's
"prog args : prog other-args"; another batch, or --no-shard-optimizer on one rank) stop at
the start, each with the error. A rank killed with SIGKILL mid-epoch ends the job (non-zero,
within 60 s); the last checkpoint is intact and resumes.
The data: the first 250 Fashion-MNIST images (the last batch of 24 splits unevenly).

Usage: check_dist_train.py TAPEGRAD LAUNCHER WORKDIR. Exit 77 (CTest: skipped) without
mpirun, numpy or the data set.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

tapegrad, launcher, work = sys.argv[1:4]
try:
    import numpy as np
    import dist_cli
except ImportError:
    print("SKIPPED: numpy is not installed")
    sys.exit(77)
if not os.path.isdir("/usr/share/datasets/fashion-mnist"):
    print("SKIPPED: dataset-fashion-mnist is not installed")
    sys.exit(77)
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
common = ["train", "--limit", "250", "--test-limit", "100", "--batch", "24", "--optimizer",
          "sgd", "--lr", "0.05", "--momentum", "0.9", "--seed", "3", "--no-progress"]


def run(ranks, out, *extra):
    return dist_cli.run(tapegrad, launcher, ranks,
                        common + ["--out", os.path.join(work, out)] + list(extra))


def state(out):
    return dist_cli.state(os.path.join(work, out, "checkpoint.npz"))


def metrics(out):
    with open(os.path.join(work, out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


bad = []
run(1, "one", "--epochs", "2")
ref, ref_metrics = state("one"), metrics("one")
text = run(2, "two", "--epochs", "2")
if text.count("epoch 1/2") != 1:
    bad.append("2 ranks: the epoch line is not printed once (rank 0 alone prints)")
if "optimizer sharded" not in text:
    bad.append("2 ranks: the optimizer is not sharded by default")
whole_text = run(2, "two_whole", "--epochs", "2", "--no-shard-optimizer")
if "optimizer on every rank" not in whole_text:
    bad.append("2 ranks --no-shard-optimizer: the optimizer is still sharded")
run(3, "three", "--epochs", "2")


def resume(out, first, second):
    """`first` ranks for 1 epoch, then `second` ranks resume for the second."""
    run(first, out, "--epochs", "1")
    run(second, out, "--epochs", "2", "--resume", os.path.join(work, out, "checkpoint.npz"))


resume("resumed", 2, 3)
resume("resumed_2_1", 2, 1)
resume("resumed_1_2", 1, 2)
# Sharded against unsharded on 2 ranks: the same sums in another order (reduce-scatter then
# all-gather against all-reduce), so f32 rounding apart.
dist_cli.check_state("two sharded against two_whole", state("two"), state("two_whole"), 1e-6,
                     bad)


def optim_entries(out):
    return dist_cli.optim_entries(os.path.join(work, out, "checkpoint.npz"))


ref_optim = optim_entries("one")
for out in ("two", "three", "resumed_1_2"):
    if optim_entries(out) != ref_optim:
        bad.append(f"{out}: the optim.* entries differ from 1 process's in name, dtype, shape "
                   f"or value: {optim_entries(out)} against {ref_optim}")
for out in ("two", "two_whole", "three", "resumed", "resumed_2_1", "resumed_1_2"):
    if not dist_cli.check_state(out, state(out), ref, 1e-6, bad):
        continue
    m = metrics(out)
    if len(m) != 2:
        bad.append(f"{out}: {len(m)} metrics lines, expected 2 (rank 0 alone writes)")
        continue
    for a, b in zip(m, ref_metrics):
        for key in ("train_loss", "train_accuracy", "test_accuracy"):
            if abs(a[key] - b[key]) > 1e-6 * max(1.0, abs(b[key])):
                bad.append(f"{out}: epoch {a['epoch']} {key} {a[key]} against {b[key]}")
# Ranks that disagree: rank 1 has another batch size.
other = ["12" if a == "24" else a for a in common]
bad_out = ["--epochs", "1", "--out", os.path.join(work, "bad")]
dist_cli.check_mismatch(tapegrad, launcher, common + bad_out, other + bad_out, bad)
# Rank 1 without the sharded optimizer.
dist_cli.check_mismatch(tapegrad, launcher, common + bad_out,
                        common + bad_out + ["--no-shard-optimizer"], bad)


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


# kill -9 of rank 1 once the first checkpoint is written (launcher -> timeout -> mpirun -> ranks).
killed = os.path.join(work, "killed")
p = subprocess.Popen([launcher, "2", tapegrad] + ["12000" if a == "250" else a for a in common] +
                     ["--epochs", "50", "--out", killed], stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True)
ckpt = os.path.join(killed, "checkpoint.npz")
t0 = time.monotonic()
while not os.path.exists(ckpt) and time.monotonic() - t0 < 120 and p.poll() is None:
    time.sleep(0.05)
def descendants(pid):
    return [d for c in children(pid) for d in [c] + descendants(c)]


def name(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


ranks = [d for d in descendants(p.pid) if name(d) == "tapegrad"]
if len(ranks) < 2:
    bad.append(f"kill: found {len(ranks)} rank processes, expected 2")
    p.kill()
else:
    t1 = time.monotonic()
    os.kill(max(ranks), signal.SIGKILL)
    try:
        out, _ = p.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        p.kill()
        out = ""
        bad.append("kill: the job did not end within 90 s")
    took = time.monotonic() - t1
    print(f"kill: exit {p.returncode} {took:.1f} s after the kill")
    if p.returncode == 0 or took > 60:
        bad.append(f"kill: exit {p.returncode} after {took:.1f} s (expected non-zero within 60 s)")
    with np.load(ckpt) as z:
        epoch = int(z["epoch"])
    run(1, "killed", "--resume", ckpt, "--epochs", str(epoch + 1))
    with np.load(ckpt) as z:
        if int(z["epoch"]) != epoch + 1:
            bad.append(f"kill: resumed from epoch {epoch}, the checkpoint has {int(z['epoch'])}")
for b in bad:
    print("check_dist_train:", b)
print("check_dist_train:", "FAIL" if bad else "ok")
sys.exit(1 if bad else 0)
