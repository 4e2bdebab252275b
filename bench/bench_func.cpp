// Functional transforms and gradient checkpointing (issue 18):
//   func/hessian_seed       tg::func::hessian of the seed network's loss (2-3-1 sigmoid, no
//                           biases, the 7 rows of data/seed_regression.csv scaled as
//                           docs/seed.md) with respect to its 9 weights, f32
//   func/jacobian_mlp100    tg::func::jacobian of a 100 -> 100 MLP (Linear, tanh, Linear) at
//                           one input, f32, by rows (100 reverse sweeps)
//   func/jacobian_mlp100_forward  the same by columns (forward strategy: forward mode)
//   func/per_sample_grad_mlp/<B>  tg::func::per_sample_grad, vectorized (one batched forward
//                           and backward, then Linear's per-sample rule), of the (b)-size MLP
//                           (784-128-10 ReLU, f32) under per-sample softmax cross-entropy,
//                           batch B = 32 and 128
//   func/per_sample_grad_mlp_loop/<B>  the same by the loop (B passes of batch 1)
//   func/per_sample_grad_cnn/32, func/per_sample_grad_cnn_loop/32  the same for a small CNN
//                           (conv 1 -> 16 3x3 pad 1, ReLU, max pool 2, conv 16 -> 32 3x3 pad 1,
//                           ReLU, max pool 2, flatten, linear 1568 -> 10) on 28x28 images
//   memory/checkpoint_mlp64/<segments>  a training step of a 64-layer MLP (Linear 64 -> 64 +
//                           tanh, batch 1024, f32) plainly (0) and with checkpoint_sequential
//                           over 8 segments: live_peak_MiB, the peak of
//                           tg::debug::live_tensor_bytes() above the weights
// Their twin is bench/torch_func.py (torch.autograd.functional, and functorch's
// vmap(grad(...)) for the per-sample rows, in Python: the API users of these transforms have), run
// by scripts/compare_libtorch.sh as the job `func`; same names, same weights (bench::SharedRng,
// seed 7).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "bench_util.hpp"
#include "tapegrad/tapegrad.hpp"

namespace {

using Vars = std::vector<tg::Var>;

tg::Var uniform(const tg::Shape& s, double bound, bench::SharedRng& g) {
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (float& x : v) x = static_cast<float>(g.uniform(-bound, bound));
  return tg::constant(tg::Tensor(v, s));
}

void finish(benchmark::State& state) { state.counters["us_per_step"] = bench::seconds_per(); }

// The seed data, scaled as docs/seed.md: x by its overall maximum 8, y by its maximum 100.
const std::vector<float> kSeedX = {8, 5, 7, 5, 8, 4, 8, 1, 4, 3, 5, 2, 4, 2};
const std::vector<float> kSeedY = {100, 90, 88, 60, 50, 45, 40};

void bm_hessian_seed(benchmark::State& state) {
  std::vector<float> x = kSeedX, y = kSeedY;
  for (float& v : x) v /= 8;
  for (float& v : y) v /= 100;
  const tg::Var X = tg::constant(tg::Tensor(x, {7, 2})), Y = tg::constant(tg::Tensor(y, {7, 1}));
  bench::SharedRng g(7);
  const Vars w = {uniform({3, 2}, 1.0, g), uniform({1, 3}, 1.0, g)};
  const tg::func::ScalarFn loss = [&](const Vars& p) {
    return tg::mse_loss(tg::sigmoid(tg::linear(tg::sigmoid(tg::linear(X, p[0])), p[1])), Y);
  };
  for (auto _ : state) {
    auto H = tg::func::hessian(loss, w);
    benchmark::DoNotOptimize(H[1][1].value().raw_data());
  }
  finish(state);
}

void bm_jacobian_mlp(benchmark::State& state, tg::func::Strategy strategy) {
  bench::SharedRng g(7);
  const tg::Var W1 = uniform({100, 100}, 0.1, g), b1 = uniform({100}, 0.1, g);
  const tg::Var W2 = uniform({100, 100}, 0.1, g), b2 = uniform({100}, 0.1, g);
  const tg::Var x = uniform({100}, 1.0, g);
  auto mlp = [&](const tg::Var& z) { return tg::linear(tg::tanh(tg::linear(z, W1, b1)), W2, b2); };
  for (auto _ : state) {
    tg::Var J = tg::func::jacobian(mlp, x, false, false, strategy);
    benchmark::DoNotOptimize(J.value().raw_data());
  }
  finish(state);
}

// The CNN of func/per_sample_grad_cnn.
std::unique_ptr<tg::Sequential> small_cnn(tg::Rng& rng) {
  auto net = std::make_unique<tg::Sequential>();
  net->emplace_back<tg::Conv2d>(1, 16, 3, rng, 1, 1);
  net->emplace_back<tg::ReLU>();
  net->emplace_back<tg::MaxPool2d>(2);
  net->emplace_back<tg::Conv2d>(16, 32, 3, rng, 1, 1);
  net->emplace_back<tg::ReLU>();
  net->emplace_back<tg::MaxPool2d>(2);
  net->emplace_back<tg::Flatten>();
  net->emplace_back<tg::Linear>(32 * 7 * 7, 10, rng);
  return net;
}

void bm_per_sample_grad(benchmark::State& state, bool cnn, tg::func::PerSampleStrategy strategy) {
  const int64_t n = state.range(0);
  tg::Rng rng(1);
  std::unique_ptr<tg::Layer> net =
      cnn ? std::unique_ptr<tg::Layer>(small_cnn(rng))
          : std::make_unique<tg::MLP>(std::vector<int64_t>{784, 128, 10}, "relu", "identity", rng);
  bench::SharedRng g(7);
  for (tg::Var& p : net->parameters()) p.value().copy_(uniform(p.shape(), 0.05, g).value());
  const tg::Var X = cnn ? uniform({n, 1, 28, 28}, 1.0, g) : uniform({n, 784}, 1.0, g);
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) labels[static_cast<size_t>(i)] = i % 10;
  const tg::Var Y = tg::constant(tg::Tensor(labels, {n}));
  const tg::func::BatchLoss loss = [&](const Vars& b) {
    return tg::cross_entropy((*net)(b[0]), b[1], {.reduction = tg::Reduction::none});
  };
  for (auto _ : state) {
    auto r = tg::func::per_sample_grad(*net, loss, {X, Y}, {.strategy = strategy});
    benchmark::DoNotOptimize(r.grads[0].value().raw_data());
  }
  finish(state);
}

void bm_checkpoint_memory(benchmark::State& state) {
  const auto segments = state.range(0);
  tg::Rng rng(2);
  tg::Sequential seq;
  for (int i = 0; i < 64; ++i) {
    seq.emplace_back<tg::Linear>(64, 64, rng);
    seq.emplace_back<tg::Tanh>();
  }
  bench::SharedRng g(7);
  const tg::Var x = uniform({1024, 64}, 1.0, g);
  int64_t peak = 0;
  auto sample = [&] { peak = std::max(peak, tg::debug::live_tensor_bytes()); };
  for (size_t i = 0; i < seq.size(); ++i)
    seq[i].register_forward_hook([&](tg::Layer&, const tg::Var&, const tg::Var&) { sample(); });
  for (tg::Var& p : seq.parameters())
    p.register_hook([&](const tg::Var&) {
      sample();
      return tg::Var();
    });
  int64_t worst = 0;
  for (auto _ : state) {
    seq.zero_grad();
    const int64_t base = tg::debug::live_tensor_bytes();
    peak = base;
    {
      tg::Var y = segments ? tg::checkpoint_sequential(seq, segments, x) : seq(x);
      sample();
      tg::mean(y * y).backward();
    }
    worst = std::max(worst, peak - base);
  }
  finish(state);
  state.counters["live_peak_MiB"] = static_cast<double>(worst) / (1024.0 * 1024.0);
}

}  // namespace

BENCHMARK(bm_hessian_seed)->Name("func/hessian_seed")->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(bm_jacobian_mlp, reverse, tg::func::Strategy::reverse)
    ->Name("func/jacobian_mlp100")
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(bm_jacobian_mlp, forward, tg::func::Strategy::forward)
    ->Name("func/jacobian_mlp100_forward")
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(bm_per_sample_grad, mlp, false, tg::func::PerSampleStrategy::vectorized)
    ->Name("func/per_sample_grad_mlp")
    ->Arg(32)
    ->Arg(128)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(bm_per_sample_grad, mlp_loop, false, tg::func::PerSampleStrategy::loop)
    ->Name("func/per_sample_grad_mlp_loop")
    ->Arg(32)
    ->Arg(128)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(bm_per_sample_grad, cnn, true, tg::func::PerSampleStrategy::vectorized)
    ->Name("func/per_sample_grad_cnn")
    ->Arg(32)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(bm_per_sample_grad, cnn_loop, true, tg::func::PerSampleStrategy::loop)
    ->Name("func/per_sample_grad_cnn_loop")
    ->Arg(32)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(bm_checkpoint_memory)
    ->Name("memory/checkpoint_mlp64")
    ->Arg(0)
    ->Arg(8)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
