// (e) Fashion-MNIST training, run once per process (not a micro-benchmark): 784-256-128-10
// ReLU, Adam lr 1e-3, batch 128, shuffled every epoch, 5 epochs over the 60000 training
// images, then accuracy on the 10000 test images. Initial weights and batch order come from
// bench::SharedRng (bench_util.hpp) seeded with 100 * TG_BENCH_SEED + run (default
// TG_BENCH_SEED 1; the comparison script passes the round number), exactly as in the
// LibTorch twin: both train the same model on the same batches, so their accuracies differ
// by rounding only. TG_FASHION_RUNS (default 1) models are trained one after the other
// (one per process by default: LibTorch slows down on the later models of a process, 0.65
// -> 1.12 s/epoch mean over 4, which would flatter the comparison).
// Counters of the one benchmark `fashion_mnist/train`:
//   s_per_epoch   median wall time of the epochs (batching + steps; loading the files and
//                 the test evaluation are not timed): a slow spell of this shared machine
//                 lasting a few seconds changes one or two epochs, not the median;
//                 s_per_epoch_mean the mean, s_first_epoch the first (warm-up) epoch
//   accuracy_pct  mean test accuracy after the last epoch, in percent
//   peak_MiB      peak resident memory of the process (VmHWM); above_start_MiB the part
//                 added by the run (data sets included); loaded_MiB VmHWM once the data
//                 sets are loaded (what training adds is peak_MiB - loaded_MiB)
// Twin: bench/libtorch/fashion.cpp.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <numeric>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "tapegrad/tapegrad.hpp"
#include "tg_eval.hpp"

namespace {

constexpr int kEpochs = 5;
constexpr int64_t kBatch = 128;

void bm_fashion(benchmark::State& state) {
  const double start = bench::proc_status_mib("VmHWM");
  const auto seed = static_cast<uint64_t>(bench::env_int("TG_BENCH_SEED", 1));
  const auto train = tg::data::load_mnist_like(tg::data::kFashionMnistDir, true);
  const auto test = tg::data::load_mnist_like(tg::data::kFashionMnistDir, false);
  const double loaded = bench::proc_status_mib("VmHWM");
  const int runs = static_cast<int>(bench::env_int("TG_FASHION_RUNS", 1));
  double acc = 0;
  std::vector<double> epoch_seconds;
  for (auto _ : state) {
    for (int run = 0; run < runs; ++run) {
      bench::SharedRng g(seed * 100 + static_cast<uint64_t>(run));
      tg::Rng unused(0);
      tg::MLP net({784, 256, 128, 10}, tg::Activation::relu, tg::Activation::identity, unused);
      const std::vector<tg::Var> params = net.parameters();  // W1 b1 W2 b2 W3 b3
      for (size_t l = 0; l < 3; ++l) {
        const tg::Shape& ws = params[2 * l].shape();
        const auto [w, bias] = bench::linear_init(g, ws[0], ws[1]);
        std::copy(w.begin(), w.end(), params[2 * l].value().data<float>());
        std::copy(bias.begin(), bias.end(), params[2 * l + 1].value().data<float>());
      }
      tg::Adam opt(params, {.lr = 1e-3});
      std::vector<int64_t> order(static_cast<size_t>(train.size()));
      std::iota(order.begin(), order.end(), 0);
      for (int epoch = 0; epoch < kEpochs; ++epoch) {
        const auto t0 = std::chrono::steady_clock::now();
        g.shuffle(order);
        tg::data::DataLoader loader(train, kBatch);
        loader.set_order(order);
        tg::data::Batch b;
        while (loader.next(b)) {
          opt.zero_grad();
          tg::Var loss = tg::cross_entropy(net(tg::constant(b.features)), b.labels);
          loss.backward();
          opt.step();
        }
        epoch_seconds.push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      acc += bench::accuracy(net, test);
    }
  }
  bench::training_counters(state, epoch_seconds, acc,
                           runs * static_cast<double>(state.iterations()), start, loaded);
}

const bool registered = [] {
  benchmark::RegisterBenchmark("fashion_mnist/train", bm_fashion)
      ->Iterations(1)
      ->UseRealTime()
      ->Unit(benchmark::kSecond);
  return true;
}();

}  // namespace
