// The default CNN of `tapegrad train --model cnn` (apps/run.cpp), f32: Unflatten(1, [1, 28,
// 28]) - Conv2d(1, 32, 3, padding 1) - BatchNorm2d - ReLU - MaxPool2d(2) - Conv2d(32, 64, 3,
// padding 1) - BatchNorm2d - ReLU - MaxPool2d(2) - Flatten - Linear(3136, 128) - ReLU -
// Linear(128, 10), cross_entropy, Adam lr 1e-3, training mode (BatchNorm on batch
// statistics). A step: zero_grad, forward, loss, backward, optimizer step.
//   cnn/step/32, cnn/step/128  steps on one fixed random batch (ms_per_step)
//   memory/cnn_128             peak resident memory (VmHWM) over a few steps at batch 128;
//                              alone in its process (--benchmark_filter='^memory/cnn_128/')
//   cnn_fashion/train          Fashion-MNIST, batch 128, TG_CNN_EPOCHS epochs (default 2),
//                              run once: counters as bench_fashion's (s_per_epoch median,
//                              accuracy_pct, peak_MiB, ...)
// Initial weights (conv and linear: U(+-1/sqrt(fan_in)), PyTorch's default distribution;
// BatchNorm 1 and 0), the fixed batch and the epochs' batch order come from
// bench::SharedRng (seeded with TG_BENCH_SEED for the epochs), as in the LibTorch twin
// (bench/libtorch/cnn.cpp): both train the same model on the same batches.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "tapegrad/tapegrad.hpp"
#include "tg_eval.hpp"

namespace {

constexpr int64_t kClasses = 10;

struct Cnn {
  tg::Sequential net;
  std::unique_ptr<tg::Adam> opt;

  explicit Cnn(bench::SharedRng& g) {
    tg::Rng unused(0);
    net.emplace_back<tg::Unflatten>(1, std::vector<int64_t>{1, 28, 28});
    net.emplace_back<tg::Conv2d>(1, 32, 3, unused, 1, 1);
    net.emplace_back<tg::BatchNorm2d>(32);
    net.emplace_back<tg::ReLU>();
    net.emplace_back<tg::MaxPool2d>(2);
    net.emplace_back<tg::Conv2d>(32, 64, 3, unused, 1, 1);
    net.emplace_back<tg::BatchNorm2d>(64);
    net.emplace_back<tg::ReLU>();
    net.emplace_back<tg::MaxPool2d>(2);
    net.emplace_back<tg::Flatten>();
    net.emplace_back<tg::Linear>(64 * 7 * 7, 128, unused);
    net.emplace_back<tg::ReLU>();
    net.emplace_back<tg::Linear>(128, kClasses, unused);
    const std::vector<tg::Var> params = net.parameters();
    std::vector<std::vector<int64_t>> shapes;
    for (const tg::Var& p : params) {
      shapes.emplace_back();
      for (int d = 0; d < p.dim(); ++d) shapes.back().push_back(p.shape()[d]);
    }
    const auto init = bench::layer_init(g, shapes);
    for (size_t i = 0; i < params.size(); ++i)
      std::copy(init[i].begin(), init[i].end(), params[i].value().data<float>());
    opt = std::make_unique<tg::Adam>(params, tg::AdamOptions{.lr = 1e-3});
  }

  void step(const tg::Var& x, const std::vector<int64_t>& y) {
    opt->zero_grad();
    tg::Var loss = tg::cross_entropy(net(x), y);
    loss.backward();
    opt->step();
  }
};

// A fixed batch: features uniform in [0, 1), labels uniform over the classes.
std::pair<tg::Var, std::vector<int64_t>> make_batch(bench::SharedRng& g, int64_t batch) {
  auto [x, y] = bench::random_batch(g, batch, 784, kClasses);
  return {tg::constant(tg::Tensor(x, {batch, 784})), std::move(y)};
}

void bm_step(benchmark::State& state, int64_t batch) {
  bench::step_benchmark<Cnn>(state, batch, make_batch);
}

void bm_memory(benchmark::State& state) {
  bench::memory_benchmark<Cnn>(state, "memory/cnn_128", 128, make_batch);
}

void bm_fashion(benchmark::State& state) {
  const double start = bench::proc_status_mib("VmHWM");
  const auto seed = static_cast<uint64_t>(bench::env_int("TG_BENCH_SEED", 1));
  const int epochs = static_cast<int>(bench::env_int("TG_CNN_EPOCHS", 2));
  const auto train = tg::data::load_mnist_like(tg::data::kFashionMnistDir, true);
  const auto test = tg::data::load_mnist_like(tg::data::kFashionMnistDir, false);
  const double loaded = bench::proc_status_mib("VmHWM");
  double acc = 0;
  std::vector<double> epoch_seconds;
  for (auto _ : state) {
    bench::SharedRng g(seed * 100);
    Cnn cnn(g);
    std::vector<int64_t> order(static_cast<size_t>(train.size()));
    std::iota(order.begin(), order.end(), 0);
    for (int epoch = 0; epoch < epochs; ++epoch) {
      const auto t0 = std::chrono::steady_clock::now();
      g.shuffle(order);
      tg::data::DataLoader loader(train, 128);
      loader.set_order(order);
      tg::data::Batch b;
      while (loader.next(b)) cnn.step(tg::constant(b.features), b.labels);
      epoch_seconds.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    cnn.net.eval();
    acc += bench::accuracy(cnn.net, test);
  }
  bench::training_counters(state, epoch_seconds, acc, static_cast<double>(state.iterations()),
                           start, loaded);
}

const bool registered = [] {
  for (int64_t batch : {32, 128})
    benchmark::RegisterBenchmark(("cnn/step/" + std::to_string(batch)).c_str(), bm_step, batch)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  benchmark::RegisterBenchmark("memory/cnn_128", bm_memory)->Iterations(20)->UseRealTime();
  benchmark::RegisterBenchmark("cnn_fashion/train", bm_fashion)
      ->Iterations(1)
      ->UseRealTime()
      ->Unit(benchmark::kSecond);
  return true;
}();

}  // namespace
