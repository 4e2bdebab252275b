// tg::linalg on 512 x 512 matrices, forward + backward (the gradient of sum(y * dy)), in f64
// and f32:
//   linalg/cholesky/<dtype>  cholesky of an SPD A; the gradient of A
//   linalg/solve/<dtype>     solve(A, B) with B 512 x 512; the gradients of A and B
// Inputs from bench/linalg_common.hpp; the LibTorch twin (bench/libtorch/linalg.cpp) runs
// torch::linalg_cholesky and torch::linalg_solve on the same values, same names, ms/step.
#include <benchmark/benchmark.h>

#include <string>
#include <utility>
#include <vector>

#include "bench_util.hpp"
#include "linalg_common.hpp"
#include "tapegrad/tapegrad.hpp"

namespace {

tg::Tensor matrix(const std::vector<double>& v, tg::Dtype d) {
  return tg::Tensor(v, tg::Shape{bench::kLinalgN, bench::kLinalgN}).to(d);
}

void bm_cholesky(benchmark::State& state, tg::Dtype d) {
  const bench::LinalgData data = bench::linalg_data();
  tg::Var a = tg::param(matrix(data.spd, d));
  const tg::Var dy = tg::constant(matrix(data.dy, d));
  for (auto _ : state) {
    a.zero_grad();
    tg::linalg::cholesky(a).backward(dy);
    benchmark::DoNotOptimize(a.grad().value().raw_data());
  }
  state.counters["ms_per_step"] = bench::seconds_per();
}

void bm_solve(benchmark::State& state, tg::Dtype d) {
  const bench::LinalgData data = bench::linalg_data();
  tg::Var a = tg::param(matrix(data.general, d));
  tg::Var b = tg::param(matrix(data.rhs, d));
  const tg::Var dy = tg::constant(matrix(data.dy, d));
  for (auto _ : state) {
    a.zero_grad();
    b.zero_grad();
    tg::linalg::solve(a, b).backward(dy);
    benchmark::DoNotOptimize(a.grad().value().raw_data());
  }
  state.counters["ms_per_step"] = bench::seconds_per();
}

// linalg/<op>/<dtype>, registered before main (benchmark_main) runs.
const bool registered = [] {
  bench::register_linalg(bm_cholesky, bm_solve, tg::f64, tg::f32);
  return true;
}();

}  // namespace
