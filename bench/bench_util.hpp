// Helpers shared by tapegrad's benchmark programs and their LibTorch twins (header only,
// no dependency on either framework): Google Benchmark counters in the units
// scripts/bench_table.py knows, the process's peak resident memory, and the generator that
// gives both sides of (e) the same initial weights and the same batch order.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

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

/// splitmix64: the (e) workload's initial weights and batch order come from this generator
/// on both sides, so the two frameworks train the same model on the same batches and their
/// test accuracies differ only by floating-point rounding (with each framework's own
/// generator, accuracy moves by ~0.3 points from seed to seed and hides any real
/// difference).
class SharedRng {
 public:
  explicit SharedRng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) {
    return lo + (hi - lo) * static_cast<double>(next() >> 11) * 0x1.0p-53;
  }
  /// Fisher-Yates (the modulo bias is below 1e-14 for these sizes).
  void shuffle(std::vector<int64_t>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[next() % i]);
  }

 private:
  uint64_t state_;
};

/// Weight [out, in] then bias [out] of a linear layer, uniform in +-1/sqrt(in): the
/// distribution of nn.Linear's (and tapegrad's) default initialization.
inline std::pair<std::vector<float>, std::vector<float>> linear_init(SharedRng& g, int64_t out,
                                                                     int64_t in) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  std::vector<float> w(static_cast<size_t>(out * in)), b(static_cast<size_t>(out));
  for (float& x : w) x = static_cast<float>(g.uniform(-bound, bound));
  for (float& x : b) x = static_cast<float>(g.uniform(-bound, bound));
  return {std::move(w), std::move(b)};
}

/// Initial values of a network's parameters, given their shapes in the order both frameworks
/// list them: a weight of rank >= 2 ([out, ...]) and the rank-1 bias right after it are
/// uniform in +-1/sqrt(fan_in), fan_in = numel / out (nn.Linear's and nn.Conv2d's default
/// distribution); any other parameter (BatchNorm's weight and bias) comes back empty: keep
/// its default.
inline std::vector<std::vector<float>> layer_init(SharedRng& g,
                                                  const std::vector<std::vector<int64_t>>& shapes) {
  std::vector<std::vector<float>> out(shapes.size());
  double bound = 0;
  for (size_t i = 0; i < shapes.size(); ++i) {
    int64_t numel = 1;
    for (int64_t d : shapes[i]) numel *= d;
    const bool weight = shapes[i].size() >= 2;
    const bool bias = shapes[i].size() == 1 && i > 0 && shapes[i - 1].size() >= 2;
    if (weight) bound = 1.0 / std::sqrt(static_cast<double>(numel / shapes[i][0]));
    if (!weight && !bias) continue;
    out[i].resize(static_cast<size_t>(numel));
    for (float& x : out[i]) x = static_cast<float>(g.uniform(-bound, bound));
  }
  return out;
}

/// A random classification batch: `batch` rows of `features` values uniform in [0, 1) and
/// labels uniform over `classes` (both frameworks' fixed step batches).
inline std::pair<std::vector<float>, std::vector<int64_t>> random_batch(SharedRng& g, int64_t batch,
                                                                        int64_t features,
                                                                        int64_t classes) {
  std::vector<float> x(static_cast<size_t>(batch * features));
  for (float& v : x) v = static_cast<float>(g.uniform(0, 1));
  std::vector<int64_t> y(static_cast<size_t>(batch));
  for (int64_t& v : y) v = static_cast<int64_t>(g.next() % static_cast<uint64_t>(classes));
  return {std::move(x), std::move(y)};
}

/// Training steps of a `Net` (constructed from SharedRng(11), then `net.step(x, y)`) on one
/// fixed batch `make_batch(g, batch)` = {x, y}: counter ms_per_step.
template <class Net, class MakeBatch>
void step_benchmark(benchmark::State& state, int64_t batch, MakeBatch make_batch) {
  SharedRng g(11);
  Net net(g);
  const auto [x, y] = make_batch(g, batch);
  for (auto _ : state) net.step(x, y);
  state.counters["ms_per_step"] = seconds_per();
}

/// Peak resident memory (peak_MiB, above_start_MiB) of step_benchmark's steps, alone in its
/// process (`name` identifies it, see start_benchmark).
template <class Net, class MakeBatch>
void memory_benchmark(benchmark::State& state, const std::string& name, int64_t batch,
                      MakeBatch make_batch) {
  if (!start_benchmark(state, name, true)) return;
  const double start = proc_status_mib("VmHWM");
  {
    SharedRng g(11);
    Net net(g);
    const auto [x, y] = make_batch(g, batch);
    for (auto _ : state) net.step(x, y);
  }
  const double peak = proc_status_mib("VmHWM");
  state.counters["peak_MiB"] = peak;
  state.counters["above_start_MiB"] = peak - start;
}

// The median of `v` (the mean of the middle two for an even count); 0 when empty.
inline double median(std::vector<double> v);

/// The counters of a Fashion-MNIST training benchmark (bench_fashion, bench_cnn and their
/// twins): s_per_epoch (median epoch), s_per_epoch_mean, s_first_epoch, accuracy_pct (the
/// mean over `trained` models of `acc_sum`), and VmHWM: loaded_MiB (`loaded`, once the data
/// sets are in), peak_MiB and above_start_MiB (over `start`, the value before loading).
inline void training_counters(benchmark::State& state, const std::vector<double>& epoch_seconds,
                              double acc_sum, double trained, double start, double loaded) {
  const double peak = proc_status_mib("VmHWM");
  double total = 0;
  for (double e : epoch_seconds) total += e;
  state.counters["s_per_epoch"] = median(epoch_seconds);
  state.counters["s_per_epoch_mean"] = total / static_cast<double>(epoch_seconds.size());
  state.counters["s_first_epoch"] = epoch_seconds.empty() ? 0 : epoch_seconds.front();
  state.counters["accuracy_pct"] = acc_sum / trained;
  state.counters["loaded_MiB"] = loaded;
  state.counters["peak_MiB"] = peak;
  state.counters["above_start_MiB"] = peak - start;
}

// The median of `v` (the mean of the middle two for an even count); 0 when empty.
inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : (v[h - 1] + v[h]) / 2;
}

}  // namespace bench
