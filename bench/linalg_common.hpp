// The inputs of bench/bench_linalg.cpp and its LibTorch twin bench/libtorch/linalg.cpp, built
// the same way on both sides (bench::SharedRng, seed 7), in double; each side converts them.
#pragma once

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "bench_util.hpp"

namespace bench {

constexpr int64_t kLinalgN = 512;

struct LinalgData {
  std::vector<double> spd;      // X X^T / n + I: cholesky's input
  std::vector<double> general;  // X + sqrt(n) I: solve's A (well conditioned)
  std::vector<double> rhs;      // solve's B, n x n
  std::vector<double> dy;       // the output gradient, n x n
};

inline LinalgData linalg_data(int64_t n = kLinalgN) {
  SharedRng g(7);
  const auto nn = static_cast<size_t>(n * n);
  std::vector<double> x(nn);
  for (double& v : x) v = g.uniform(-1, 1);
  LinalgData d;
  d.spd.assign(nn, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t k = 0; k < n; ++k)
        s += x[static_cast<size_t>(i * n + k)] * x[static_cast<size_t>(j * n + k)];
      d.spd[static_cast<size_t>(i * n + j)] = s / static_cast<double>(n) + (i == j ? 1.0 : 0.0);
    }
  d.general = x;
  for (int64_t i = 0; i < n; ++i)
    d.general[static_cast<size_t>(i * n + i)] += std::sqrt(static_cast<double>(n));
  d.rhs.resize(nn);
  for (double& v : d.rhs) v = g.uniform(-1, 1);
  d.dy.resize(nn);
  for (double& v : d.dy) v = g.uniform(-1, 1);
  return d;
}

// Registers linalg/cholesky/<dtype> and linalg/solve/<dtype> for f64 then f32 (both sides,
// the same names and order).
template <class Bench, class Dtype>
void register_linalg(Bench cholesky, Bench solve, Dtype f64, Dtype f32) {
  for (const auto& [name, d] : {std::pair{"f64", f64}, std::pair{"f32", f32}}) {
    benchmark::RegisterBenchmark((std::string("linalg/cholesky/") + name).c_str(), cholesky, d)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark((std::string("linalg/solve/") + name).c_str(), solve, d)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
}

}  // namespace bench
