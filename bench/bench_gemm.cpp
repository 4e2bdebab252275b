// The matmul path against BLAS: square float32 products C = A B, n = 32..2048, GFLOP/s
// (2 n^3 flop per product).
//   gemm/matmul/<n>  tg::matmul on two constants under NoGradGuard (the path a training
//                    step takes: shape checks, output allocation, the gemm)
//   gemm/matmul_out/<n>  tg::matmul_out into a preallocated tensor (no allocation, nothing
//                    recorded: what an inference loop with its own buffers runs)
//   gemm/cblas/<n>   direct cblas_sgemm on the same buffers into a preallocated C
//   gemm/interleaved/<n>  the two measured in alternation within one benchmark (batches of
//                    calls, the order swapped every batch), so both see the same machine
//                    moment: counters matmul_vs_cblas and matmul_out_vs_cblas (speed
//                    ratios, 1 = as fast as direct cblas_sgemm)
// The LibTorch twin (bench/libtorch/gemm.cpp) times at::mm under NoGradGuard and the same
// direct cblas_sgemm; scripts/bench_table.py shows matmul / cblas per size for each.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "bench_util.hpp"
#include "cblas_ref.hpp"
#include "tapegrad/tapegrad.hpp"

namespace {

struct Operands {
  tg::Var a, b;
  tg::Tensor c;
  explicit Operands(int64_t n) {
    tg::Rng rng(n);
    a = tg::constant(tg::rand({n, n}, rng, -1, 1));
    b = tg::constant(tg::rand({n, n}, rng, -1, 1));
    c = tg::zeros({n, n});
  }
};

void bm_matmul(benchmark::State& state, int64_t n) {
  Operands o(n);
  tg::NoGradGuard no_grad;
  for (auto _ : state) {
    tg::Var c = tg::matmul(o.a, o.b);
    benchmark::DoNotOptimize(c.value().data<float>());
  }
  state.counters["GFLOPS"] = bench::flop_rate(2.0 * static_cast<double>(n * n * n));
}

void bm_matmul_out(benchmark::State& state, int64_t n) {
  Operands o(n);
  for (auto _ : state) {
    tg::matmul_out(o.c, o.a.value(), o.b.value());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPS"] = bench::flop_rate(2.0 * static_cast<double>(n * n * n));
}

void bm_cblas(benchmark::State& state, int64_t n) {
  Operands o(n);
  const float* a = o.a.value().data<float>();
  const float* b = o.b.value().data<float>();
  float* c = o.c.data<float>();
  for (auto _ : state) {
    bench::cblas_gemm(false, false, n, n, n, a, b, 0.0f, c);
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPS"] = bench::flop_rate(2.0 * static_cast<double>(n * n * n));
}

// Calls per timed batch: about 2^24 flop-units, so a batch lasts ~0.2 ms or more and the
// clock reads are noise-free.
int64_t batch_calls(int64_t n) { return std::max<int64_t>(1, (int64_t{1} << 24) / (n * n * n)); }

void bm_interleaved(benchmark::State& state, int64_t n) {
  Operands o(n);
  tg::NoGradGuard no_grad;
  const float* a = o.a.value().data<float>();
  const float* b = o.b.value().data<float>();
  float* c = o.c.data<float>();
  const int64_t k = batch_calls(n);
  double t_matmul = 0, t_out = 0, t_cblas = 0;
  auto timed = [](auto&& f, int64_t calls) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < calls; ++i) f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  auto matmul = [&] {
    tg::Var r = tg::matmul(o.a, o.b);
    benchmark::DoNotOptimize(r.value().data<float>());
  };
  auto out = [&] {
    tg::matmul_out(o.c, o.a.value(), o.b.value());
    benchmark::ClobberMemory();
  };
  auto cblas = [&] {
    bench::cblas_gemm(false, false, n, n, n, a, b, 0.0f, c);
    benchmark::ClobberMemory();
  };
  bool flip = false;
  for (auto _ : state) {
    if (flip) {
      t_cblas += timed(cblas, k);
      t_out += timed(out, k);
      t_matmul += timed(matmul, k);
    } else {
      t_matmul += timed(matmul, k);
      t_out += timed(out, k);
      t_cblas += timed(cblas, k);
    }
    flip = !flip;
  }
  state.counters["matmul_vs_cblas"] = t_cblas / t_matmul;
  state.counters["matmul_out_vs_cblas"] = t_cblas / t_out;
}

const bool registered = [] {
  // Each size: the matmul paths, then cblas right after them, so all see the same machine.
  for (int64_t n = 32; n <= 2048; n *= 2) {
    const std::string s = std::to_string(n);
    benchmark::RegisterBenchmark(("gemm/matmul/" + s).c_str(), bm_matmul, n)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("gemm/matmul_out/" + s).c_str(), bm_matmul_out, n)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("gemm/cblas/" + s).c_str(), bm_cblas, n)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  }
  for (int64_t n = 32; n <= 2048; n *= 2)
    benchmark::RegisterBenchmark(("gemm/interleaved/" + std::to_string(n)).c_str(), bm_interleaved,
                                 n)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  benchmark::AddCustomContext("openblas_threads", std::to_string(bench::openblas_threads()));
  return true;
}();

}  // namespace
