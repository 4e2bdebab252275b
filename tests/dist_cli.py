"""Helpers of the checks that run the `tapegrad` program under mpirun (check_dist_train.py,
check_dist_charlm.py): a run on 1 or N ranks, a checkpoint's trained state, the largest
difference between two states, ranks started with different options."""
import subprocess
import sys

import numpy as np


def run(tapegrad, launcher, ranks, args, timeout=300, env=None):
    """stdout of `tapegrad args` (1 rank) or `launcher ranks tapegrad args`; exits 77 when
    the launcher does (no mpirun), and with the output when the run fails."""
    cmd = ([tapegrad] if ranks == 1 else [launcher, str(ranks), tapegrad]) + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if r.returncode == 77:
        print(r.stdout)
        sys.exit(77)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        sys.exit(f"{' '.join(cmd)}: exit {r.returncode}")
    return r.stdout


def state(checkpoint):
    """The parameters and optimizer state saved in `checkpoint`."""
    with np.load(checkpoint) as z:
        return {k: z[k] for k in z.files if k.startswith(("model.", "optim.state"))}


def check_state(name, got, want, tol, bad):
    """Whether the states `got` and `want` have the same entries (else a line in `bad`); prints
    the largest difference of their tensors, relative to the tensor's largest value, and adds
    a line to `bad` when it is more than `tol`."""
    if sorted(got) != sorted(want):
        bad.append(f"{name}: checkpoint entries differ")
        return False
    worst = max(float(np.abs(got[k].astype(np.float64) - want[k]).max() /
                      max(float(np.abs(want[k]).max()), 1e-30)) for k in want if want[k].size)
    print(f"{name}: largest difference {worst:.3g} of the tensor's largest value")
    if worst > tol:
        bad.append(f"{name}: parameters differ from 1 process by {worst:.3g} (more than {tol:g})")
    return True


def optim_entries(checkpoint):
    """The checkpoint's optim.* entries other than the state tensors, and every optim.*
    entry's dtype and shape: what a sharded run's checkpoint shares with 1 process's."""
    with np.load(checkpoint) as z:
        return ({k: z[k].tolist() for k in z.files
                 if k.startswith("optim.") and not k.startswith("optim.state")},
                {k: (z[k].dtype.str, z[k].shape) for k in z.files if k.startswith("optim.")})


def check_mismatch(tapegrad, launcher, args, other_args, bad):
    """Rank 0 started with `args`, rank 1 with `other_args`: both must stop with the error."""
    cmd = [launcher, "1", tapegrad] + args + [":", "-np", "1", tapegrad] + other_args
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    err = r.stderr.count("tapegrad: error: tapegrad: the ranks' run configurations or data differ")
    print(r.stderr.strip().splitlines()[0] if r.stderr.strip() else "(no stderr)")
    if r.returncode == 0 or err != 2:
        bad.append(f"ranks with different options: exit {r.returncode}, the error on {err} of 2 "
                   "ranks")
