// LibTorch twin of bench/bench_conv.cpp: conv2d forward + backward (batch 128, 32 -> 64
// channels, 14 x 14, 3 x 3, padding 1, f32, with bias; oneDNN's convolution here) and the
// same direct cblas_sgemm rows (conv_gemms.hpp) in this process. Same names and counters.
// Threads: intra-op pool TG_TORCH_THREADS (the comparison script gives this job 2, with
// OpenBLAS on 1: LibTorch's best setting for convolutions here, bench/README.md).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "../bench_util.hpp"
#include "../conv_gemms.hpp"
#include "torch_main.hpp"

namespace {

using namespace bench::conv;

torch::Tensor uniform(std::vector<int64_t> shape, bench::SharedRng& g) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> v = bench::conv::uniform(n, g);
  return torch::from_blob(v.data(), shape, torch::kFloat32).clone();
}

void bm_conv2d(benchmark::State& state) {
  bench::SharedRng g(7);
  torch::Tensor x = uniform({kN, kC, kH, kW}, g).requires_grad_();
  torch::Tensor w = uniform({kO, kC, kK, kK}, g).requires_grad_();
  torch::Tensor b = uniform({kO}, g).requires_grad_();
  const torch::Tensor dy = uniform({kN, kO, kH, kW}, g);
  for (auto _ : state) {
    for (torch::Tensor* t : {&x, &w, &b}) t->mutable_grad().reset();
    torch::conv2d(x, w, b, 1, 1).backward(dy);
    benchmark::DoNotOptimize(w.grad().data_ptr());
  }
  state.counters["ms_per_step"] = bench::seconds_per();
  state.counters["GFLOPS"] = bench::flop_rate(kFlops);
}

}  // namespace

int main(int argc, char** argv) {
  return bench::torch_main(argc, argv, [] {
    benchmark::RegisterBenchmark("conv/conv2d_fwd_bwd", bm_conv2d)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    register_gemms();
  });
}
