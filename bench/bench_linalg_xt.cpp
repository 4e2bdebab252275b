// tg::linalg's forwards against the same decompositions through xtensor-blas's xt::linalg,
// f64, no gradient (docs/linalg.md says why the ops call LAPACK directly; these rows are
// the measurement behind it). The xt_linalg rows cost what an op built on xt::linalg would:
// the tensor into an xarray, the xt::linalg call (which copies it again into a column-major
// xtensor), the result back into a tensor; a batch is one such call per matrix.
//   linalg_xt/cholesky/512/{tapegrad,xt_linalg}    one SPD 512 x 512 matrix
//   linalg_xt/solve/512/{tapegrad,xt_linalg}       A X = B, A and B 512 x 512
//   linalg_xt/cholesky/256x8x8/{tapegrad,xt_linalg} a batch of 256 SPD 8 x 8 matrices
//   linalg_xt/solve/256x8x8/{tapegrad,xt_linalg}    a batch of 256 systems, B 8 x 8
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>
#include <xtensor-blas/xlinalg.hpp>
#include <xtensor/xview.hpp>

#include "bench_util.hpp"
#include "graph/xtensor_interop.hpp"
#include "linalg_common.hpp"
#include "tapegrad/tapegrad.hpp"

namespace {

// `batch` copies of the n x n matrix `m`, as one [batch, n, n] tensor (a plain matrix when
// batch is 0).
tg::Tensor stacked(const std::vector<double>& m, int64_t n, int64_t batch) {
  if (batch == 0) return tg::Tensor(m, tg::Shape{n, n});
  std::vector<double> v;
  v.reserve(m.size() * static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) v.insert(v.end(), m.begin(), m.end());
  return tg::Tensor(v, tg::Shape{batch, n, n});
}

struct Inputs {
  tg::Tensor spd, general, rhs;
};

Inputs inputs(int64_t n, int64_t batch) {
  const bench::LinalgData d = bench::linalg_data(n);
  return {stacked(d.spd, n, batch), stacked(d.general, n, batch), stacked(d.rhs, n, batch)};
}

// xt::linalg on each matrix of a [batch, n, n] tensor (or on the one matrix of [n, n]).
template <class F>
tg::Tensor xt_each(const tg::Tensor& a, const tg::Tensor* b, F f) {
  const xt::xarray<double> xa = tg::to_xarray<double>(a);
  xt::xarray<double> xb;
  if (b) xb = tg::to_xarray<double>(*b);
  if (a.dim() == 2) return tg::from_xarray(xt::xarray<double>(b ? f(xa, xb) : f(xa, xa)));
  xt::xarray<double> out(xa.shape());
  for (size_t i = 0; i < xa.shape()[0]; ++i) {
    const xt::xarray<double> ai = xt::view(xa, i, xt::all(), xt::all());
    if (b) {
      const xt::xarray<double> bi = xt::view(xb, i, xt::all(), xt::all());
      xt::view(out, i, xt::all(), xt::all()) = f(ai, bi);
    } else {
      xt::view(out, i, xt::all(), xt::all()) = f(ai, ai);
    }
  }
  return tg::from_xarray(out);
}

void bm_cholesky(benchmark::State& state, int64_t n, int64_t batch, bool xt_side) {
  const Inputs in = inputs(n, batch);
  tg::NoGradGuard no_grad;
  const tg::Var a = tg::constant(in.spd);
  for (auto _ : state) {
    tg::Tensor l = xt_side
                       ? xt_each(in.spd, nullptr,
                                 [](const auto& m, const auto&) { return xt::linalg::cholesky(m); })
                       : tg::linalg::cholesky(a).value();
    benchmark::DoNotOptimize(l.raw_data());
  }
}

void bm_solve(benchmark::State& state, int64_t n, int64_t batch, bool xt_side) {
  const Inputs in = inputs(n, batch);
  tg::NoGradGuard no_grad;
  const tg::Var a = tg::constant(in.general);
  const tg::Var b = tg::constant(in.rhs);
  for (auto _ : state) {
    tg::Tensor x =
        xt_side ? xt_each(in.general, &in.rhs,
                          [](const auto& m, const auto& r) { return xt::linalg::solve(m, r); })
                : tg::linalg::solve(a, b).value();
    benchmark::DoNotOptimize(x.raw_data());
  }
}

const bool registered = [] {
  struct Size {
    const char* name;
    int64_t n, batch;
  };
  for (const Size s : {Size{"512", bench::kLinalgN, 0}, Size{"256x8x8", 8, 256}})
    for (const bool xt_side : {false, true}) {
      const std::string side = xt_side ? "xt_linalg" : "tapegrad";
      benchmark::RegisterBenchmark(
          ("linalg_xt/cholesky/" + std::string(s.name) + "/" + side).c_str(),
          [s, xt_side](benchmark::State& st) { bm_cholesky(st, s.n, s.batch, xt_side); })
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(
          ("linalg_xt/solve/" + std::string(s.name) + "/" + side).c_str(),
          [s, xt_side](benchmark::State& st) { bm_solve(st, s.n, s.batch, xt_side); })
          ->Unit(benchmark::kMicrosecond);
    }
  return true;
}();

}  // namespace
