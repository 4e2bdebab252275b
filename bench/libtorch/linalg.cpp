// LibTorch twin of bench/bench_linalg.cpp: torch::linalg_cholesky and torch::linalg_solve on
// the same 512 x 512 inputs (bench/linalg_common.hpp), forward + backward, f64 and f32, same
// names, ms/step. Threads: TG_TORCH_THREADS intra-op (LAPACK runs on OpenBLAS's pool).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <vector>

#include "../bench_util.hpp"
#include "../linalg_common.hpp"
#include "torch_main.hpp"

namespace {

torch::Tensor matrix(const std::vector<double>& v, torch::Dtype d, bool grad = false) {
  return torch::tensor(v, torch::kFloat64)
      .reshape({bench::kLinalgN, bench::kLinalgN})
      .to(d)
      .set_requires_grad(grad);
}

void bm_cholesky(benchmark::State& state, torch::Dtype d) {
  const bench::LinalgData data = bench::linalg_data();
  torch::Tensor a = matrix(data.spd, d, true);
  const torch::Tensor dy = matrix(data.dy, d);
  for (auto _ : state) {
    a.mutable_grad() = torch::Tensor();
    torch::linalg_cholesky(a).backward(dy);
    benchmark::DoNotOptimize(a.grad().data_ptr());
  }
  state.counters["ms_per_step"] = bench::seconds_per();
}

void bm_solve(benchmark::State& state, torch::Dtype d) {
  const bench::LinalgData data = bench::linalg_data();
  torch::Tensor a = matrix(data.general, d, true);
  torch::Tensor b = matrix(data.rhs, d, true);
  const torch::Tensor dy = matrix(data.dy, d);
  for (auto _ : state) {
    a.mutable_grad() = torch::Tensor();
    b.mutable_grad() = torch::Tensor();
    torch::linalg_solve(a, b).backward(dy);
    benchmark::DoNotOptimize(a.grad().data_ptr());
  }
  state.counters["ms_per_step"] = bench::seconds_per();
}

}  // namespace

int main(int argc, char** argv) {
  return bench::torch_main(argc, argv, [] {
    bench::register_linalg(bm_cholesky, bm_solve, torch::kFloat64, torch::kFloat32);
  });
}
