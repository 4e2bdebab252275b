// LibTorch twin of bench/bench_index.cpp: the same workloads, names and counter, with the
// same ids, indices and values (bench::SharedRng, seed 7). Forward + backward, f32.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "../bench_util.hpp"

namespace {

torch::Tensor uniform(std::vector<int64_t> s, bench::SharedRng& g, bool grad = false) {
  int64_t n = 1;
  for (int64_t e : s) n *= e;
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = static_cast<float>(g.uniform(-1, 1));
  return torch::tensor(v).reshape(s).set_requires_grad(grad);
}
torch::Tensor ids(std::vector<int64_t> s, int64_t below, bench::SharedRng& g) {
  int64_t n = 1;
  for (int64_t e : s) n *= e;
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t& x : v) x = static_cast<int64_t>(g.next() % static_cast<uint64_t>(below));
  return torch::tensor(v, torch::kLong).reshape(s);
}

void finish(benchmark::State& state) { state.counters["us_per_step"] = bench::seconds_per(); }

void bm_embedding(benchmark::State& state) {
  bench::SharedRng g(7);
  torch::Tensor w = uniform({50000, 256}, g, true);
  const torch::Tensor id = ids({4096}, 50000, g);
  const torch::Tensor dy = uniform({4096, 256}, g);
  for (auto _ : state) {
    w.mutable_grad() = torch::Tensor();
    torch::embedding(w, id).backward(dy);
    benchmark::DoNotOptimize(w.grad().data_ptr());
  }
  finish(state);
}

void bm_gather(benchmark::State& state) {
  bench::SharedRng g(7);
  torch::Tensor x = uniform({4096, 1000}, g, true);
  const torch::Tensor idx = ids({4096, 1000}, 1000, g);
  const torch::Tensor dy = uniform({4096, 1000}, g);
  for (auto _ : state) {
    x.mutable_grad() = torch::Tensor();
    torch::gather(x, 1, idx).backward(dy);
    benchmark::DoNotOptimize(x.grad().data_ptr());
  }
  finish(state);
}

void bm_scatter_add(benchmark::State& state) {
  bench::SharedRng g(7);
  torch::Tensor x = uniform({4096, 1000}, g, true);
  torch::Tensor src = uniform({4096, 1000}, g, true);
  const torch::Tensor idx = ids({4096, 1000}, 1000, g);
  const torch::Tensor dy = uniform({4096, 1000}, g);
  for (auto _ : state) {
    x.mutable_grad() = torch::Tensor();
    src.mutable_grad() = torch::Tensor();
    torch::scatter_add(x, 1, idx, src).backward(dy);
    benchmark::DoNotOptimize(src.grad().data_ptr());
  }
  finish(state);
}

void bm_cross_entropy(benchmark::State& state) {
  bench::SharedRng g(7);
  torch::Tensor x = uniform({4096, 1000}, g, true);
  const torch::Tensor t = ids({4096}, 1000, g);
  for (auto _ : state) {
    x.mutable_grad() = torch::Tensor();
    torch::nn::functional::cross_entropy(x, t).backward();
    benchmark::DoNotOptimize(x.grad().data_ptr());
  }
  finish(state);
}

void bm_where(benchmark::State& state) {
  bench::SharedRng g(7);
  torch::Tensor a = uniform({1000, 1000}, g, true);
  torch::Tensor b = uniform({1000, 1000}, g, true);
  const torch::Tensor cond = uniform({1000, 1000}, g) > 0;
  const torch::Tensor dy = uniform({1000, 1000}, g);
  for (auto _ : state) {
    a.mutable_grad() = torch::Tensor();
    b.mutable_grad() = torch::Tensor();
    torch::where(cond, a, b).backward(dy);
    benchmark::DoNotOptimize(b.grad().data_ptr());
  }
  finish(state);
}

void bm_topk(benchmark::State& state) {
  bench::SharedRng g(7);
  const torch::Tensor x = uniform({256, 50000}, g);
  for (auto _ : state) {
    auto [values, indices] = torch::topk(x, 10);
    benchmark::DoNotOptimize(indices.data_ptr());
  }
  finish(state);
}

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(static_cast<int>(bench::env_int("TG_TORCH_THREADS", 1)));
  benchmark::RegisterBenchmark("index/embedding", bm_embedding)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("index/gather", bm_gather)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("index/scatter_add", bm_scatter_add)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("index/cross_entropy", bm_cross_entropy)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("index/where", bm_where)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("index/topk", bm_topk)->Unit(benchmark::kMicrosecond)->UseRealTime();
  benchmark::AddCustomContext("torch_version", TORCH_VERSION);
  benchmark::AddCustomContext("torch_intra_op_threads", std::to_string(at::get_num_threads()));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
