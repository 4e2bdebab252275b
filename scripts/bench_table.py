#!/usr/bin/python3
"""Pairs Google Benchmark JSON outputs of tapegrad and LibTorch, takes per-workload medians
over rounds and prints a table (and optionally writes --json FILE).

Used by scripts/compare_libtorch.sh. Input files are named <round>.<job>.<framework>.json
with framework "tapegrad", "libtorch" (glibc malloc as shipped) or "libtorch_tuned" (its
malloc thresholds raised, --libtorch-malloc tuned/both); one file per job per round. When
tuned files are present the table gets a "LibTorch tuned" column and its speedup; targets
are judged against LibTorch as shipped whenever that ran. A benchmark's
workload name is its Google Benchmark name without the "/real_time" and "/iterations:N"
suffixes; both programs must use the same names. The value compared is taken from a
counter named after its unit (see METRICS); a benchmark with none falls back to its real
time. A benchmark with several such counters gives one row per counter.

Besides the tapegrad-vs-LibTorch rows, "ratio" rows (see RATIOS) divide one workload by
another measured in the same process and round (e.g. mlp_d/step GFLOP/s over direct
cblas_sgemm GFLOP/s): the median over rounds is shown for each framework.

Stdlib only (system python3).
"""
import argparse
import glob
import json
import os
import re
import statistics
import sys

# counter name -> (unit shown, factor applied to the JSON value, higher_is_better).
# Inverted-rate counters (kIsIterationInvariantRate | kInvert) are stored in seconds.
METRICS = {
    "ns_per_op": ("ns/op", 1e9, False),
    "us_per_step": ("us/step", 1e6, False),
    "ms_per_step": ("ms/step", 1e3, False),
    "s_per_epoch": ("s/epoch", 1.0, False),  # median epoch of the process
    "s_per_epoch_mean": ("s/epoch mean", 1.0, False),
    "s_first_epoch": ("s first epoch", 1.0, False),
    "GFLOPS": ("GFLOP/s", 1e-9, True),  # plain rate counter: flop per second
    "peak_MiB": ("MiB peak", 1.0, False),
    "above_start_MiB": ("MiB added", 1.0, False),
    "loaded_MiB": ("MiB data loaded", 1.0, False),
    "accuracy_pct": ("% test acc", 1.0, True),
    # peak of tg::debug::live_tensor_bytes() (bench_func's checkpointing rows, tapegrad only)
    "live_peak_MiB": ("MiB live peak", 1.0, False),
    # gemm/interleaved/<n>: speed against direct cblas_sgemm, measured in alternation
    "matmul_vs_cblas": ("matmul x cblas", 1.0, True),
    "matmul_out_vs_cblas": ("matmul_out x cblas", 1.0, True),
}

# Targets from the issues. Key: workload, or "workload|unit" when one workload has several
# units. Value: ("speedup", x) = tapegrad vs LibTorch speedup at least x; ("tapegrad", x) =
# tapegrad's own value (a ratio row) at least x; ("paired", x) = the mean over rounds of
# tapegrad - LibTorch, each round one seed seen by both sides, is not below -x standard
# errors: "not significantly below". Used for accuracy, where both sides train the same
# model from the same weights and differ by float rounding only, so one round compares two
# draws of the same noise and its sign is a coin toss.
TARGETS = {
    "overhead_1elem/fwd_nograd": ("speedup", 5.0),
    "overhead_1elem/fwd_recorded": ("speedup", 5.0),
    "overhead_1elem/fwd_bwd": ("speedup", 10.0),
    "mlp_a/step": ("speedup", 10.0),
    "mlp_b/step": ("speedup", 2.0),
    "mlp_c/step": ("speedup", 1.5),
    "fashion_mnist/train|s/epoch": ("speedup", 1.3),
    "fashion_mnist/train|% test acc": ("paired", 2.0),
    "fashion_mnist/train|MiB peak": ("speedup", 1.0),
    "memory/mlp_c|MiB peak": ("speedup", 1.0),
    "memory/mlp_d|MiB peak": ("speedup", 1.0),
    "mlp_d/step / cblas_9gemm": ("tapegrad", 0.90),
    # Tensor-type workloads: not slower than LibTorch.
    "index/embedding": ("speedup", 1.0),
    "index/gather": ("speedup", 1.0),
    "index/scatter_add": ("speedup", 1.0),
    "index/cross_entropy": ("speedup", 1.0),
    "index/where": ("speedup", 1.0),
    "index/topk": ("speedup", 1.0),
    # Convolutional networks (the default CNN of train --model cnn).
    "cnn/step/32": ("speedup", 1.5),
    "cnn/step/128": ("speedup", 1.2),
    "cnn_fashion/train|s/epoch": ("speedup", 1.2),
    "cnn_fashion/train|% test acc": ("paired", 2.0),
    "cnn_fashion/train|MiB peak": ("speedup", 1.0),
    "memory/cnn_128|MiB peak": ("speedup", 1.0),
    "conv/conv2d_fwd_bwd / gemm_same_shapes": ("tapegrad", 0.80),
    # Sequence models (issue 16).
    "seq/lstm_layer": ("speedup", 1.2),
    "seq/lstm_cell": ("speedup", 2.0),
    "seq/transformer": ("speedup", 1.3),
    # Functional transforms (issue 18), against torch.autograd.functional in Python: faster.
    "func/hessian_seed": ("speedup", 1.0),
    "func/jacobian_mlp100": ("speedup", 1.0),
    # Linear algebra (issue 18): within 1.2x of LibTorch's torch::linalg.
    "linalg/cholesky/f64": ("speedup", 1 / 1.2),
    "linalg/cholesky/f32": ("speedup", 1 / 1.2),
    "linalg/solve/f64": ("speedup", 1 / 1.2),
    "linalg/solve/f32": ("speedup", 1 / 1.2),
}

GEMM_SIZES = [32, 64, 128, 256, 512, 1024, 2048]
# Ratio rows: (row name, unit, numerator (workload, unit), denominator (workload, unit),
# invert). Value = num / den, or den / num when invert (times: "fraction of the limit").
RATIOS = [
    ("mlp_d/step / cblas_9gemm", "x cblas GFLOP/s", ("mlp_d/step", "GFLOP/s"),
     ("mlp_d/cblas_9gemm", "GFLOP/s"), False),
    ("mlp_d/step / cblas_step_gemms", "x cblas time", ("mlp_d/step", "ms/step"),
     ("mlp_d/cblas_step_gemms", "ms/step"), True),
    # conv2d's rate as a fraction of direct sgemm's on the products it runs (its roofline).
    ("conv/conv2d_fwd_bwd / gemm_same_shapes", "x cblas time", ("conv/conv2d_fwd_bwd", "ms/step"),
     ("conv/gemm_same_shapes", "ms/step"), True),
    ("conv/conv2d_fwd_bwd / gemm_batched_shapes", "x cblas time",
     ("conv/conv2d_fwd_bwd", "ms/step"), ("conv/gemm_batched_shapes", "ms/step"), True),
] + [
    (f"gemm/{n} {path} / cblas", "x cblas GFLOP/s", (f"gemm/{path}/{n}", "GFLOP/s"),
     (f"gemm/cblas/{n}", "GFLOP/s"), False)
    for n in GEMM_SIZES for path in ("matmul", "matmul_out")
]
for _n in GEMM_SIZES:
    TARGETS[f"gemm/{_n} matmul / cblas"] = ("tapegrad", 0.97)
    TARGETS[f"gemm/{_n} matmul_out / cblas"] = ("tapegrad", 0.97)
    TARGETS[f"gemm/interleaved/{_n}|matmul x cblas"] = ("tapegrad", 0.97)
    TARGETS[f"gemm/interleaved/{_n}|matmul_out x cblas"] = ("tapegrad", 0.97)

TIME_SCALE = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
FRAMEWORKS = ("tapegrad", "libtorch", "libtorch_tuned")


def workload_name(name):
    name = re.sub(r"/(real_time|manual_time)$", "", name)
    return re.sub(r"/iterations:\d+", "", name)


def samples_of(doc):
    """Yields (workload, unit, higher_is_better, value) for each measured run in a file."""
    for b in doc.get("benchmarks", []):
        if b.get("run_type", "iteration") != "iteration" or b.get("error_occurred"):
            continue
        name = workload_name(b.get("run_name", b["name"]))
        found = False
        for counter, (unit, factor, higher) in METRICS.items():
            if counter in b:
                found = True
                yield name, unit, higher, b[counter] * factor
        if not found:
            unit = b.get("time_unit", "ns")
            yield name, unit, False, b["real_time"]


def fmt(v):
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


GROUPS = ["overhead", "mlp_", "fashion", "cnn/", "cnn_fashion", "conv/", "seq/", "charlm/",
          "func/", "memory/", "index/", "gemm/"]


def sort_key(key):
    """Table order: overhead, steps, Fashion-MNIST, memory, gemm by size (matmul first)."""
    name = key[0]
    group = next((i for i, g in enumerate(GROUPS) if name.startswith(g)), len(GROUPS))
    size = int(m.group(1)) if (m := re.search(r"/(\d+)$", name)) else 0
    return (group, size, "cblas" in name)


def target_of(workload, unit):
    return TARGETS.get(f"{workload}|{unit}", TARGETS.get(workload))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", help="directory holding *.tapegrad.json and *.libtorch.json")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    ap.add_argument("--ranges", action="store_true", help="show min-max over rounds")
    args = ap.parse_args()

    # (workload, unit) -> {"higher": bool, "tapegrad": {round: value}, "libtorch": {...}}
    data = {}
    order = []
    rounds = {fw: set() for fw in FRAMEWORKS}
    loads = []  # 1-minute load averages at the start of each program
    for framework in FRAMEWORKS:
        for path in sorted(glob.glob(os.path.join(args.dir, f"*.{framework}.json"))):
            rnd = os.path.basename(path).split(".")[0]
            rounds[framework].add(rnd)
            with open(path) as f:
                doc = json.load(f)
            load = doc.get("context", {}).get("load_avg")
            if load:
                loads.append(load[0])
            for name, unit, higher, value in samples_of(doc):
                key = (name, unit)
                if key not in data:
                    data[key] = {"higher": higher, **{fw: {} for fw in FRAMEWORKS}}
                    order.append(key)
                data[key][framework][rnd] = value
    if not data:
        sys.exit(f"bench_table: no benchmark results in {args.dir}")

    def row(workload, unit, higher, per_round):
        per_fw = {fw: list(v.values()) if isinstance(v, dict) else v
                  for fw, v in per_round.items()}
        med = {fw: statistics.median(per_fw[fw]) if per_fw[fw] else None for fw in FRAMEWORKS}
        def speedup_over(other):
            if not (med["tapegrad"] and med[other]):
                return None
            return med["tapegrad"] / med[other] if higher else med[other] / med["tapegrad"]
        return {"workload": workload, "unit": unit, "tapegrad": med["tapegrad"],
                "libtorch": med["libtorch"], "speedup": speedup_over("libtorch"),
                "libtorch_tuned": med["libtorch_tuned"],
                "speedup_tuned": speedup_over("libtorch_tuned"),
                "_n": tuple(len(per_fw[fw]) for fw in FRAMEWORKS),
                "_paired": paired_difference(per_round),
                "_range": {fw: (min(per_fw[fw]), max(per_fw[fw])) if per_fw[fw] else None
                           for fw in FRAMEWORKS}}

    order.sort(key=sort_key)  # stable: units keep their order within a workload
    def paired_difference(per_fw):
        """(mean, standard error, n) of tapegrad - LibTorch over rounds both sides ran."""
        if not isinstance(per_fw["tapegrad"], dict):
            return None
        a, b = per_fw["tapegrad"], per_fw["libtorch"]
        diffs = [a[r] - b[r] for r in sorted(a) if r in b]
        if len(diffs) < 2:
            return None
        return (statistics.mean(diffs), statistics.stdev(diffs) / len(diffs) ** 0.5, len(diffs))

    def by_round(k):
        return {fw: dict(data[k][fw]) for fw in FRAMEWORKS}

    rows = [row(k[0], k[1], data[k]["higher"], by_round(k)) for k in order]
    for name, unit, num, den, invert in RATIOS:
        if num not in data or den not in data:
            continue
        per_fw = {}
        for fw in FRAMEWORKS:
            a, b = data[num][fw], data[den][fw]
            per_fw[fw] = [(b[r] / a[r] if invert else a[r] / b[r]) for r in sorted(a) if r in b and a[r] and b[r]]
        rows.append(row(name, unit, True, per_fw))

    tuned = any(r["libtorch_tuned"] is not None for r in rows)
    shipped = any(r["libtorch"] is not None for r in rows)
    header = ["workload", "unit", "tapegrad", "LibTorch", "speedup", "n", "target"]
    if tuned:
        header[5:5] = ["LibTorch tuned", "speedup tuned"]
    if args.ranges:
        header += ["tapegrad min-max", "LibTorch min-max"]
    table = [header]
    for r in rows:
        target = target_of(r["workload"], r["unit"])
        verdict = ""
        if target is not None:
            kind, x = target
            # Judged against LibTorch as shipped; against the tuned malloc only when the
            # run had no shipped LibTorch.
            v = ((r["speedup"] if shipped else r["speedup_tuned"]) if kind == "speedup"
                 else r["tapegrad"])
            if kind == "paired":
                p = r["_paired"]
                if p is not None:
                    mean, se, n = p
                    verdict = (f"mean diff {mean:+.3g} (SE {se:.2g}, {n} seeds) >= -{x:g} SE "
                               + ("ok" if mean >= -x * se else "MISSED"))
            elif v is not None:
                what = f">={x:g}x" if kind == "speedup" else f"tapegrad >={x:g}"
                verdict = f"{what} " + ("ok" if v >= x else "MISSED")
        line = [r["workload"], r["unit"], fmt(r["tapegrad"]), fmt(r["libtorch"]),
                "-" if r["speedup"] is None else f"{r['speedup']:.2f}x",
                f"{r['_n'][0]}/{r['_n'][1]}", verdict]
        if tuned:
            line[5:5] = [fmt(r["libtorch_tuned"]),
                         "-" if r["speedup_tuned"] is None else f"{r['speedup_tuned']:.2f}x"]
        if args.ranges:
            for fw in FRAMEWORKS[:2]:
                rg = r["_range"][fw]
                line.append("-" if rg is None else f"{fmt(rg[0])}-{fmt(rg[1])}")
        table.append(line)
    widths = [max(len(row_[i]) for row_ in table) for i in range(len(header))]
    numeric = {2, 3, 4, 5, 6, 7} if tuned else {2, 3, 4, 5}
    for i, line in enumerate(table):
        cells = [c.rjust(w) if j in numeric else c.ljust(w)
                 for j, (c, w) in enumerate(zip(line, widths))]
        print("  ".join(cells).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(f"\nmedians over {len(rounds['tapegrad'])} tapegrad and {len(rounds['libtorch'])} LibTorch "
          "rounds (n = samples per side); speedup > 1 means tapegrad is faster (or smaller, or "
          "more accurate); ratio rows (x cblas) compare a workload with direct cblas_sgemm in "
          "the same process and round")
    if loads:
        print(f"1-minute load average at program starts: min {min(loads):.2f}, "
              f"median {statistics.median(loads):.2f}, max {max(loads):.2f}")

    if args.json:
        keys = ("workload", "unit", "tapegrad", "libtorch", "speedup") + (
            ("libtorch_tuned", "speedup_tuned") if tuned else ())
        out = [{k: r[k] for k in keys} for r in rows]
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
