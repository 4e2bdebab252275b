// LibTorch twin of bench/bench_gemm.cpp: square float32 products, n = 32..2048, GFLOP/s.
//   gemm/matmul/<n>  at::mm under NoGradGuard (allocates its result, as tg::matmul does)
//   gemm/matmul_out/<n>  at::mm_out into a preallocated tensor
//   gemm/cblas/<n>   direct cblas_sgemm on the same buffers, in this process
//   gemm/interleaved/<n>  at::mm, at::mm_out and cblas_sgemm in alternation (as on the
//                    tapegrad side): matmul_vs_cblas, matmul_out_vs_cblas
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "../bench_util.hpp"
#include "../cblas_ref.hpp"

namespace {

struct Operands {
  torch::Tensor a, b, c;
  explicit Operands(int64_t n) {
    torch::manual_seed(n);
    a = torch::rand({n, n}) * 2 - 1;
    b = torch::rand({n, n}) * 2 - 1;
    c = torch::zeros({n, n});
  }
};

void bm_matmul(benchmark::State& state, int64_t n) {
  Operands o(n);
  torch::NoGradGuard no_grad;
  for (auto _ : state) {
    torch::Tensor c = torch::mm(o.a, o.b);
    benchmark::DoNotOptimize(c.data_ptr<float>());
  }
  state.counters["GFLOPS"] = bench::flop_rate(2.0 * static_cast<double>(n * n * n));
}

void bm_matmul_out(benchmark::State& state, int64_t n) {
  Operands o(n);
  torch::NoGradGuard no_grad;
  for (auto _ : state) {
    torch::mm_out(o.c, o.a, o.b);
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPS"] = bench::flop_rate(2.0 * static_cast<double>(n * n * n));
}

void bm_cblas(benchmark::State& state, int64_t n) {
  Operands o(n);
  const float* a = o.a.data_ptr<float>();
  const float* b = o.b.data_ptr<float>();
  float* c = o.c.data_ptr<float>();
  for (auto _ : state) {
    bench::cblas_gemm(false, false, n, n, n, a, b, 0.0f, c);
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPS"] = bench::flop_rate(2.0 * static_cast<double>(n * n * n));
}

int64_t batch_calls(int64_t n) { return std::max<int64_t>(1, (int64_t{1} << 24) / (n * n * n)); }

void bm_interleaved(benchmark::State& state, int64_t n) {
  Operands o(n);
  torch::NoGradGuard no_grad;
  const float* a = o.a.data_ptr<float>();
  const float* b = o.b.data_ptr<float>();
  float* c = o.c.data_ptr<float>();
  const int64_t k = batch_calls(n);
  double t_matmul = 0, t_out = 0, t_cblas = 0;
  auto timed = [](auto&& f, int64_t calls) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < calls; ++i) f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  auto matmul = [&] {
    torch::Tensor r = torch::mm(o.a, o.b);
    benchmark::DoNotOptimize(r.data_ptr<float>());
  };
  auto out = [&] {
    torch::mm_out(o.c, o.a, o.b);
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

void register_benchmarks() {
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
}

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(static_cast<int>(bench::env_int("TG_TORCH_THREADS", 1)));
  register_benchmarks();
  benchmark::AddCustomContext("torch_version", TORCH_VERSION);
  benchmark::AddCustomContext("torch_intra_op_threads", std::to_string(at::get_num_threads()));
  benchmark::AddCustomContext("openblas_threads", std::to_string(bench::openblas_threads()));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
