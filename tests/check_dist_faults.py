#!/usr/bin/python3
"""Runs tests/dist_fault.cpp's program on 2 ranks in one fault mode and checks that the job
ends on every rank with the expected message and a non-zero exit, within a bounded time.

Usage: check_dist_faults.py LAUNCHER PROGRAM MODE   (LAUNCHER: tests/dist_launch.sh)
Exit 77 (CTest: skipped) when the launcher finds no mpirun.
"""
import os
import subprocess
import sys
import time

launcher, program, mode = sys.argv[1:4]
# What the output must show, per mode. throw: the terminate handler's line; kill: mpirun's
# report of the killed rank; stall: rank 0's timed-out wait; mismatch: each rank's error.
expected = {
    "throw": ["rank 1 of 2: uncaught exception: rank 1 failed on purpose at step 20"],
    "kill": ["rank 1", "signal 9"],
    "stall": ["rank 0 of 2: uncaught exception: all_reduce: timed out on rank 0 of 2 after 3 s"],
    "mismatch": [f"rank {r}: DistributedDataParallel: the ranks' models or options differ"
                 for r in (0, 1)],
}[mode]
bound = 60.0  # seconds: the stall mode waits 3 s, the others end at once
env = dict(os.environ, TG_DIST_TIMEOUT="3" if mode == "stall" else "60",
           TG_LAUNCH_TIMEOUT="120")
t0 = time.monotonic()
try:
    r = subprocess.run([launcher, "2", program, mode], capture_output=True, text=True,
                       timeout=150, env=env)
except subprocess.TimeoutExpired:
    print(f"dist fault {mode}: the job did not end within 150 s")
    sys.exit(1)
elapsed = time.monotonic() - t0
out = r.stdout + r.stderr
print(out)
if r.returncode == 77:
    sys.exit(77)
bad = []
if r.returncode == 0:
    bad.append("exit status 0, expected non-zero")
if elapsed > bound:
    bad.append(f"took {elapsed:.1f} s, more than {bound:.0f} s")
bad += [f"missing in the output: {e!r}" for e in expected if e not in out]
for b in bad:
    print(f"dist fault {mode}: {b}")
print(f"dist fault {mode}: exit {r.returncode} after {elapsed:.1f} s: {'FAIL' if bad else 'ok'}")
sys.exit(1 if bad else 0)
