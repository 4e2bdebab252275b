// Helpers shared by tapegrad's benchmark programs and their LibTorch twins (header only,
// no dependency on either framework): Google Benchmark counters in the units
// scripts/bench_table.py knows, and the process's peak resident memory.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace bench {

/// Iteration time divided by `per_iteration`, in seconds (inverted rate): us_per_step,
/// ms_per_step and ns_per_op counters are of this kind (bench_table.py scales them).
inline benchmark::Counter seconds_per(double per_iteration = 1.0) {
  return benchmark::Counter(
      per_iteration, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

/// `flops` per iteration as a rate: flop per second (bench_table.py shows GFLOP/s).
inline benchmark::Counter flop_rate(double flops) {
  return benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

/// A field of /proc/self/status in MiB ("VmHWM": peak resident set, "VmRSS": current).
inline double proc_status_mib(const char* field) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  double kib = -1;
  const size_t len = std::strlen(field);
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, field, len) == 0 && line[len] == ':') {
      kib = std::strtod(line + len + 1, nullptr);
      break;
    }
  }
  std::fclose(f);
  return kib < 0 ? -1 : kib / 1024.0;
}

/// Peak memory of one workload needs a process of its own (VmHWM never goes down). Every
/// benchmark of a program calls this first with something that identifies it (a name); it
/// returns false (and marks the benchmark as failed) when `alone` is set and a benchmark
/// with another identity already ran in this process.
inline bool start_benchmark(benchmark::State& state, const std::string& who, bool alone = false) {
  static std::string first;
  if (first.empty()) first = who;
  if (alone && first != who) {
    state.SkipWithError(
        "a peak-memory benchmark must run alone in its process: --benchmark_filter=<its name>");
    return false;
  }
  return true;
}

/// Environment variable as an integer, `fallback` when unset or empty.
inline long env_int(const char* name, long fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtol(v, nullptr, 10) : fallback;
}

}  // namespace bench
