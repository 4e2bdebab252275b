#!/usr/bin/python3
"""Pairs Google Benchmark JSON outputs of tapegrad and LibTorch, takes per-workload medians
over rounds and prints a table (and optionally writes --json FILE).

Used by scripts/compare_libtorch.sh. Input files are named <round>.<program>.<framework>.json
with framework "tapegrad" or "libtorch" (one file per program per round). A benchmark's
workload name is its Google Benchmark name without the "/real_time" suffix; both programs
must use the same names. The value compared is taken from a counter named after its unit
(see METRICS); a benchmark with none falls back to its real time.

Stdlib only (system python3).
"""
import argparse
import glob
import json
import os
import statistics
import sys

# counter name -> (unit shown, factor applied to the JSON value, higher_is_better).
# Inverted-rate counters (kIsIterationInvariantRate | kInvert) are stored in seconds.
METRICS = {
    "ns_per_op": ("ns/op", 1e9, False),
    "us_per_step": ("us/step", 1e6, False),
    "ms_per_step": ("ms/step", 1e3, False),
    "s_per_epoch": ("s/epoch", 1.0, False),
    "GFLOPS": ("GFLOP/s", 1e-9, True),  # plain rate counter: flop per second
    "peak_MiB": ("MiB", 1.0, False),
    "accuracy_pct": ("%", 1.0, True),
}

# Targets from the issues: minimum speedup (tapegrad vs LibTorch) per workload.
TARGETS = {
    "overhead_1elem/fwd_nograd": 5.0,
    "overhead_1elem/fwd_recorded": 5.0,
    "overhead_1elem/fwd_bwd": 10.0,
}

TIME_SCALE = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def workload_name(name):
    for suffix in ("/real_time", "/manual_time"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def samples_of(path):
    """Yields (workload, unit, higher_is_better, value) for each measured run in a file."""
    with open(path) as f:
        doc = json.load(f)
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", help="directory holding *.tapegrad.json and *.libtorch.json")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    ap.add_argument("--ranges", action="store_true", help="show min-max over rounds")
    args = ap.parse_args()

    data = {}  # (workload, unit) -> {"higher": bool, "tapegrad": [...], "libtorch": [...]}
    order = []
    rounds = {"tapegrad": set(), "libtorch": set()}  # files are <round>.<program>.<fw>.json
    for framework in ("tapegrad", "libtorch"):
        for path in sorted(glob.glob(os.path.join(args.dir, f"*.{framework}.json"))):
            rounds[framework].add(os.path.basename(path).split(".")[0])
            for name, unit, higher, value in samples_of(path):
                key = (name, unit)
                if key not in data:
                    data[key] = {"higher": higher, "tapegrad": [], "libtorch": []}
                    order.append(key)
                data[key][framework].append(value)
    if not data:
        sys.exit(f"bench_table: no benchmark results in {args.dir}")

    rows = []
    for key in order:
        d = data[key]
        med = {fw: statistics.median(d[fw]) if d[fw] else None for fw in ("tapegrad", "libtorch")}
        speedup = None
        if med["tapegrad"] and med["libtorch"]:
            speedup = (med["tapegrad"] / med["libtorch"] if d["higher"]
                       else med["libtorch"] / med["tapegrad"])
        rows.append({"workload": key[0], "unit": key[1], "tapegrad": med["tapegrad"],
                     "libtorch": med["libtorch"], "speedup": speedup,
                     "_n": (len(d["tapegrad"]), len(d["libtorch"])),
                     "_range": {fw: (min(d[fw]), max(d[fw])) if d[fw] else None
                                for fw in ("tapegrad", "libtorch")}})

    header = ["workload", "unit", "tapegrad", "LibTorch", "speedup", "target"]
    if args.ranges:
        header += ["tapegrad min-max", "LibTorch min-max"]
    table = [header]
    for r in rows:
        target = TARGETS.get(r["workload"])
        verdict = ""
        if target is not None and r["speedup"] is not None:
            verdict = f">={target:g}x " + ("ok" if r["speedup"] >= target else "MISSED")
        line = [r["workload"], r["unit"], fmt(r["tapegrad"]), fmt(r["libtorch"]),
                "-" if r["speedup"] is None else f"{r['speedup']:.1f}x", verdict]
        if args.ranges:
            for fw in ("tapegrad", "libtorch"):
                rg = r["_range"][fw]
                line.append("-" if rg is None else f"{fmt(rg[0])}-{fmt(rg[1])}")
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    numeric = {2, 3, 4}
    for i, row in enumerate(table):
        cells = [c.rjust(w) if j in numeric else c.ljust(w)
                 for j, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(f"\nmedians over {len(rounds['tapegrad'])} tapegrad and {len(rounds['libtorch'])} LibTorch "
          "rounds; speedup > 1 means tapegrad is faster")

    if args.json:
        out = [{k: r[k] for k in ("workload", "unit", "tapegrad", "libtorch", "speedup")}
               for r in rows]
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
