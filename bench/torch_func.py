#!/usr/bin/python3
"""The twin of bench/bench_func.cpp: torch.autograd.functional.hessian / jacobian and
functorch's vmap(grad(...)) per-sample gradients in Python (the APIs users of functional
transforms have), on the same functions and weights.

Run by scripts/compare_libtorch.sh as the LibTorch side of the job `func`; takes the Google
Benchmark flags it passes (--benchmark_out=FILE, --benchmark_filter=REGEX,
--benchmark_min_time=SECONDS) and writes a Google Benchmark JSON file with the same
benchmark names and the us_per_step counter (scripts/bench_table.py reads it). Intra-op
threads: TG_TORCH_THREADS (default 1), as the LibTorch twins.
"""
import json
import os
import re
import sys
import time

import torch
import torch.autograd.functional as AF

MASK = (1 << 64) - 1


class SharedRng:
    """bench::SharedRng (bench/bench_util.hpp): splitmix64."""

    def __init__(self, seed):
        self.state = seed

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def uniform(self, lo, hi):
        return lo + (hi - lo) * (self.next() >> 11) * 2.0**-53


def uniform(shape, bound, g):
    n = 1
    for d in shape:
        n *= d
    return torch.tensor([g.uniform(-bound, bound) for _ in range(n)], dtype=torch.float32).reshape(shape)


def hessian_seed():
    X = torch.tensor([8, 5, 7, 5, 8, 4, 8, 1, 4, 3, 5, 2, 4, 2], dtype=torch.float32).reshape(7, 2) / 8
    Y = torch.tensor([100, 90, 88, 60, 50, 45, 40], dtype=torch.float32).reshape(7, 1) / 100
    g = SharedRng(7)
    w = (uniform((3, 2), 1.0, g), uniform((1, 3), 1.0, g))
    F = torch.nn.functional

    def loss(w1, w2):
        return F.mse_loss(torch.sigmoid(F.linear(torch.sigmoid(F.linear(X, w1)), w2)), Y)

    return lambda: AF.hessian(loss, w)


def jacobian_mlp(strategy):
    g = SharedRng(7)
    W1, b1 = uniform((100, 100), 0.1, g), uniform((100,), 0.1, g)
    W2, b2 = uniform((100, 100), 0.1, g), uniform((100,), 0.1, g)
    x = uniform((100,), 1.0, g)
    F = torch.nn.functional

    def mlp(z):
        return F.linear(torch.tanh(F.linear(z, W1, b1)), W2, b2)

    return lambda: AF.jacobian(mlp, x, strategy=strategy)


def per_sample_grad(n, vectorized, cnn=False):
    """Per-sample gradients of the (b)-size MLP (784-128-10 ReLU), or of the small CNN of
    bench_func.cpp, under per-sample softmax cross-entropy: functorch's vmap(grad(...))
    (torch.func in torch >= 2), or a loop of batch-1 torch.autograd.grad calls."""
    try:
        from torch.func import functional_call, grad, vmap
    except ImportError:
        from functorch import grad, vmap
        from torch.nn.utils.stateless import functional_call
    F = torch.nn.functional
    nn = torch.nn
    if cnn:
        net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
    else:
        net = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    g = SharedRng(7)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(uniform(tuple(p.shape), 0.05, g))
    X = uniform((n, 1, 28, 28) if cnn else (n, 784), 1.0, g)
    Y = torch.tensor([i % 10 for i in range(n)])
    params = {k: v.detach() for k, v in net.named_parameters()}

    def one(params, x, y):
        return F.cross_entropy(functional_call(net, params, (x.unsqueeze(0),)), y.unsqueeze(0))

    per_sample = vmap(grad(one), in_dims=(None, 0, 0))
    if vectorized:
        return lambda: per_sample(params, X, Y)
    ps = list(net.parameters())

    def loop():
        rows = [torch.autograd.grad(F.cross_entropy(net(X[b:b + 1]), Y[b:b + 1]), ps) for b in range(n)]
        return [torch.stack(r) for r in zip(*rows)]

    return loop


BENCHMARKS = [
    ("func/hessian_seed", hessian_seed),
    ("func/jacobian_mlp100", lambda: jacobian_mlp("reverse-mode")),
    # forward-mode jacobian in torch needs vectorize=True; reverse is its Python default.
    ("func/per_sample_grad_mlp/32", lambda: per_sample_grad(32, True)),
    ("func/per_sample_grad_mlp/128", lambda: per_sample_grad(128, True)),
    ("func/per_sample_grad_mlp_loop/32", lambda: per_sample_grad(32, False)),
    ("func/per_sample_grad_mlp_loop/128", lambda: per_sample_grad(128, False)),
    ("func/per_sample_grad_cnn/32", lambda: per_sample_grad(32, True, cnn=True)),
    ("func/per_sample_grad_cnn_loop/32", lambda: per_sample_grad(32, False, cnn=True)),
]


def main():
    out, pattern, min_time = None, None, 0.5
    for a in sys.argv[1:]:
        if a.startswith("--benchmark_out="):
            out = a.split("=", 1)[1]
        elif a.startswith("--benchmark_filter="):
            pattern = a.split("=", 1)[1]
        elif a.startswith("--benchmark_min_time="):
            min_time = float(a.split("=", 1)[1].rstrip("s"))
    torch.set_num_threads(int(os.environ.get("TG_TORCH_THREADS") or 1))
    results = []
    for name, make in BENCHMARKS:
        if pattern and not re.search(pattern, name):
            continue
        fn = make()
        fn()  # warm up
        iters, start = 0, time.perf_counter()
        while True:
            fn()
            iters += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time and iters >= 3:
                break
        per = elapsed / iters
        print(f"{name:40s} {per * 1e6:10.1f} us  ({iters} iterations)")
        results.append({"name": name + "/real_time", "run_name": name + "/real_time",
                        "run_type": "iteration", "iterations": iters, "real_time": per * 1e6,
                        "cpu_time": per * 1e6, "time_unit": "us", "us_per_step": per})
    doc = {"context": {"load_avg": list(os.getloadavg()), "library": "torch " + torch.__version__},
           "benchmarks": results}
    if out:
        with open(out, "w") as f:
            json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
