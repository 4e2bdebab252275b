// conv2d forward + backward against OpenBLAS sgemm on the same products (issue:
// Convolutional networks). Batch 128, 32 -> 64 channels, 14 x 14, 3 x 3 kernel, padding 1,
// f32, with bias:
//   conv/conv2d_fwd_bwd  y = conv2d(x, w, b); y.backward(dy): x, w and b gradients
// and the direct cblas_sgemm rows of conv_gemms.hpp (conv/gemm_same_shapes: the products
// conv2d runs, its roofline). Counters ms_per_step and GFLOPS (the three products' flops).
// Twin: bench/libtorch/conv.cpp.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "bench_util.hpp"
#include "conv_gemms.hpp"
#include "tapegrad/tapegrad.hpp"

namespace {

using namespace bench::conv;

tg::Tensor uniform(const tg::Shape& s, bench::SharedRng& g) {
  return tg::Tensor(bench::conv::uniform(s.numel(), g), s);
}

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
  state.counters["ms_per_step"] = bench::seconds_per();
  state.counters["GFLOPS"] = bench::flop_rate(kFlops);
}

const bool registered = [] {
  benchmark::RegisterBenchmark("conv/conv2d_fwd_bwd", bm_conv2d)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  register_gemms();
  benchmark::AddCustomContext("openblas_threads", std::to_string(bench::openblas_threads()));
  return true;
}();

}  // namespace
