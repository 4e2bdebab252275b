// conv2d forward + backward against OpenBLAS sgemm on the same products (issue:
// Convolutional networks). Batch 128, 32 -> 64 channels, 14 x 14, 3 x 3 kernel, padding 1,
// f32, with bias:
//   conv/conv2d_fwd_bwd       y = conv2d(x, w, b); y.backward(dy): x, w and b gradients
//   conv/gemm_same_shapes     direct cblas_sgemm on the products conv2d makes, per image:
//                             [64, 288] x [288, 196] (forward), [288, 64] x [64, 196]
//                             (input gradient, W^T dy), [64, 196] x [196, 288] (weight
//                             gradient, dy cols^T, accumulated), 128 times each
//   conv/gemm_batched_shapes  the same flops as three whole-batch products ([64, 288] x
//                             [288, 25088], ...): the rate one large sgemm reaches
// The ratio asked for is gemm_same_shapes / conv2d_fwd_bwd (us_per_step; 1 = as fast as the
// gemms alone, the im2col / col2im and bias work cost nothing).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "bench_util.hpp"
#include "cblas_ref.hpp"
#include "tapegrad/tapegrad.hpp"

namespace {

constexpr int64_t kN = 128, kC = 32, kO = 64, kH = 14, kW = 14, kK = 3;
constexpr int64_t kL = kH * kW, kCols = kC * kK * kK;

tg::Tensor uniform(const tg::Shape& s, bench::SharedRng& g) {
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (float& x : v) x = static_cast<float>(g.uniform(-1, 1));
  return tg::Tensor(v, s);
}

void finish(benchmark::State& state) { state.counters["us_per_step"] = bench::seconds_per(); }

void bm_conv2d(benchmark::State& state) {
  bench::SharedRng g(7);
  tg::Var x = tg::param(uniform({kN, kC, kH, kW}, g));
  tg::Var w = tg::param(uniform({kO, kC, kK, kK}, g));
  tg::Var b = tg::param(uniform({kO}, g));
  const tg::Var dy = tg::constant(uniform({kN, kO, kH, kW}, g));
  for (auto _ : state) {
    x.zero_grad();
    w.zero_grad();
    b.zero_grad();
    tg::conv2d(x, w, b, 1, 1).backward(dy);
    benchmark::DoNotOptimize(w.grad().value().raw_data());
  }
  finish(state);
}

void bm_gemm_same(benchmark::State& state) {
  bench::SharedRng g(7);
  const tg::Tensor w = uniform({kO, kCols}, g), col = uniform({kCols, kL}, g),
                   dy = uniform({kN, kO, kL}, g);
  tg::Tensor y = tg::Tensor::empty({kN, kO, kL}), dcol = tg::Tensor::empty({kCols, kL}),
             dw = tg::Tensor::empty({kO, kCols});
  const float *pw = w.data<float>(), *pc = col.data<float>(), *pdy = dy.data<float>();
  float *py = y.data<float>(), *pdc = dcol.data<float>(), *pdw = dw.data<float>();
  for (auto _ : state) {
    for (int64_t n = 0; n < kN; ++n)
      bench::cblas_gemm(false, false, kO, kL, kCols, pw, pc, 0.0f, py + n * kO * kL);
    for (int64_t n = 0; n < kN; ++n)
      bench::cblas_gemm(true, false, kCols, kL, kO, pw, pdy + n * kO * kL, 0.0f, pdc);
    for (int64_t n = 0; n < kN; ++n)
      bench::cblas_gemm(false, true, kO, kCols, kL, pdy + n * kO * kL, pc, n ? 1.0f : 0.0f, pdw);
    benchmark::DoNotOptimize(pdw);
  }
  finish(state);
}

void bm_gemm_batched(benchmark::State& state) {
  bench::SharedRng g(7);
  const tg::Tensor w = uniform({kO, kCols}, g), col = uniform({kCols, kN * kL}, g),
                   dy = uniform({kO, kN * kL}, g);
  tg::Tensor y = tg::Tensor::empty({kO, kN * kL}), dcol = tg::Tensor::empty({kCols, kN * kL}),
             dw = tg::Tensor::empty({kO, kCols});
  for (auto _ : state) {
    bench::cblas_gemm(false, false, kO, kN * kL, kCols, w.data<float>(), col.data<float>(), 0.0f,
                      y.data<float>());
    bench::cblas_gemm(true, false, kCols, kN * kL, kO, w.data<float>(), dy.data<float>(), 0.0f,
                      dcol.data<float>());
    bench::cblas_gemm(false, true, kO, kCols, kN * kL, dy.data<float>(), col.data<float>(), 0.0f,
                      dw.data<float>());
    benchmark::DoNotOptimize(dw.data<float>());
  }
  finish(state);
}

}  // namespace

BENCHMARK(bm_conv2d)->Name("conv/conv2d_fwd_bwd")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_gemm_same)
    ->Name("conv/gemm_same_shapes")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(bm_gemm_batched)
    ->Name("conv/gemm_batched_shapes")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

namespace {
const bool registered = [] {
  benchmark::AddCustomContext("openblas_threads", std::to_string(bench::openblas_threads()));
  return true;
}();
}  // namespace
