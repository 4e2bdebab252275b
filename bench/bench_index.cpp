// Tensor-type workloads of real architectures (issue: int64 and bool tensors, indexing,
// masking), each forward + backward unless named otherwise, f32:
//   index/embedding    F.embedding: table 50,000 x 256, 4,096 ids; gradient of the table
//   index/gather       torch.gather along dim 1 of [4096, 1000] with a [4096, 1000] index
//   index/scatter_add  torch.scatter_add along dim 1 into [4096, 1000] from [4096, 1000]
//   index/cross_entropy log_softmax + nll over [4096, 1000] logits, int64 targets (mean)
//   index/where        torch.where over 1M elements (a bool mask, two operands)
//   index/topk         torch.topk(x, 10) along the last dim of [256, 50000], forward only
// Both sides draw the same ids, indices and values from bench::SharedRng (seed 7) and are
// timed per iteration (us/step). Identical in bench/libtorch/index.cpp, same names.
#include <benchmark/benchmark.h>

#include <vector>

#include "bench_util.hpp"
#include "tapegrad/tapegrad.hpp"

namespace {

tg::Tensor uniform(const tg::Shape& s, bench::SharedRng& g) {
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (float& x : v) x = static_cast<float>(g.uniform(-1, 1));
  return tg::Tensor(v, s);
}
tg::Var ids(const tg::Shape& s, int64_t below, bench::SharedRng& g) {
  std::vector<int64_t> v(static_cast<size_t>(s.numel()));
  for (int64_t& x : v) x = static_cast<int64_t>(g.next() % static_cast<uint64_t>(below));
  return tg::constant(tg::Tensor(v, s));
}

void finish(benchmark::State& state) { state.counters["us_per_step"] = bench::seconds_per(); }

void bm_embedding(benchmark::State& state) {
  bench::SharedRng g(7);
  tg::Var w = tg::param(uniform({50000, 256}, g));
  const tg::Var id = ids({4096}, 50000, g);
  const tg::Var dy = tg::constant(uniform({4096, 256}, g));
  for (auto _ : state) {
    w.zero_grad();
    tg::embedding(id, w).backward(dy);
    benchmark::DoNotOptimize(w.grad().value().raw_data());
  }
  finish(state);
}

void bm_gather(benchmark::State& state) {
  bench::SharedRng g(7);
  tg::Var x = tg::param(uniform({4096, 1000}, g));
  const tg::Var idx = ids({4096, 1000}, 1000, g);
  const tg::Var dy = tg::constant(uniform({4096, 1000}, g));
  for (auto _ : state) {
    x.zero_grad();
    tg::gather(x, 1, idx).backward(dy);
    benchmark::DoNotOptimize(x.grad().value().raw_data());
  }
  finish(state);
}

void bm_scatter_add(benchmark::State& state) {
  bench::SharedRng g(7);
  tg::Var x = tg::param(uniform({4096, 1000}, g));
  tg::Var src = tg::param(uniform({4096, 1000}, g));
  const tg::Var idx = ids({4096, 1000}, 1000, g);
  const tg::Var dy = tg::constant(uniform({4096, 1000}, g));
  for (auto _ : state) {
    x.zero_grad();
    src.zero_grad();
    tg::scatter_add(x, 1, idx, src).backward(dy);
    benchmark::DoNotOptimize(src.grad().value().raw_data());
  }
  finish(state);
}

void bm_cross_entropy(benchmark::State& state) {
  bench::SharedRng g(7);
  tg::Var x = tg::param(uniform({4096, 1000}, g));
  const tg::Var t = ids({4096}, 1000, g);
  const int64_t* pt = t.value().data<int64_t>();
  const std::vector<int64_t> target(pt, pt + t.numel());
  for (auto _ : state) {
    x.zero_grad();
    tg::cross_entropy(x, target).backward();
    benchmark::DoNotOptimize(x.grad().value().raw_data());
  }
  finish(state);
}

void bm_where(benchmark::State& state) {
  bench::SharedRng g(7);
  tg::Var a = tg::param(uniform({1000, 1000}, g));
  tg::Var b = tg::param(uniform({1000, 1000}, g));
  const tg::Var cond = tg::gt(tg::constant(uniform({1000, 1000}, g)), 0.0);
  const tg::Var dy = tg::constant(uniform({1000, 1000}, g));
  for (auto _ : state) {
    a.zero_grad();
    b.zero_grad();
    tg::where(cond, a, b).backward(dy);
    benchmark::DoNotOptimize(b.grad().value().raw_data());
  }
  finish(state);
}

void bm_topk(benchmark::State& state) {
  bench::SharedRng g(7);
  const tg::Var x = tg::constant(uniform({256, 50000}, g));
  for (auto _ : state) {
    auto [values, indices] = tg::topk(x, 10);
    benchmark::DoNotOptimize(indices.value().raw_data());
  }
  finish(state);
}

BENCHMARK(bm_embedding)->Name("index/embedding")->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(bm_gather)->Name("index/gather")->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(bm_scatter_add)->Name("index/scatter_add")->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(bm_cross_entropy)
    ->Name("index/cross_entropy")
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(bm_where)->Name("index/where")->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(bm_topk)->Name("index/topk")->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
