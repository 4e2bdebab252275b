// LibTorch twin of bench/bench_fashion.cpp: Fashion-MNIST, 784-256-128-10 ReLU, Adam lr
// 1e-3, batch 128, shuffled every epoch, 5 epochs, then test accuracy; TG_FASHION_RUNS
// models (default 1). Initial weights (nn::Linear's distribution) and batch order from
// bench::SharedRng seeded with 100 * TG_BENCH_SEED + run, as on the tapegrad side, so both
// train the same model on the same batches. Same benchmark name and counters (s_per_epoch,
// accuracy_pct, peak_MiB, above_start_MiB, loaded_MiB). Batches: index_select of shuffled rows, as
// tapegrad's DataLoader copies them.
#include <benchmark/benchmark.h>
#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "../bench_util.hpp"
#include "fashion_data.hpp"

namespace {

constexpr int kEpochs = 5;
constexpr int64_t kBatch = 128;
void bm_fashion(benchmark::State& state) {
  const double start = bench::proc_status_mib("VmHWM");
  const auto seed = static_cast<uint64_t>(bench::env_int("TG_BENCH_SEED", 1));
  const Data train = load(true), test = load(false);
  const double loaded = bench::proc_status_mib("VmHWM");
  const int runs = static_cast<int>(bench::env_int("TG_FASHION_RUNS", 1));
  const int64_t n = train.x.size(0);
  double acc = 0;
  std::vector<double> epoch_seconds;
  for (auto _ : state) {
    for (int run = 0; run < runs; ++run) {
      bench::SharedRng g(seed * 100 + static_cast<uint64_t>(run));
      torch::nn::Sequential net(torch::nn::Linear(784, 256), torch::nn::ReLU(),
                                torch::nn::Linear(256, 128), torch::nn::ReLU(),
                                torch::nn::Linear(128, 10));
      std::vector<torch::Tensor> params = net->parameters();  // W1 b1 W2 b2 W3 b3
      {
        torch::NoGradGuard no_grad;
        for (size_t l = 0; l < 3; ++l) {
          torch::Tensor& w = params[2 * l];
          auto [wv, bv] = bench::linear_init(g, w.size(0), w.size(1));
          w.copy_(torch::from_blob(wv.data(), w.sizes(), torch::kFloat32));
          params[2 * l + 1].copy_(
              torch::from_blob(bv.data(), params[2 * l + 1].sizes(), torch::kFloat32));
        }
      }
      torch::optim::Adam opt(params, torch::optim::AdamOptions(1e-3));
      std::vector<int64_t> order(static_cast<size_t>(n));
      std::iota(order.begin(), order.end(), 0);
      for (int epoch = 0; epoch < kEpochs; ++epoch) {
        const auto t0 = std::chrono::steady_clock::now();
        g.shuffle(order);
        const torch::Tensor perm = torch::from_blob(order.data(), {n}, torch::kLong);
        for (int64_t s = 0; s < n; s += kBatch) {
          const torch::Tensor idx = perm.slice(0, s, std::min(n, s + kBatch));
          const torch::Tensor xb = train.x.index_select(0, idx);
          const torch::Tensor yb = train.y.index_select(0, idx);
          for (auto& p : params) p.mutable_grad().reset();
          torch::Tensor loss = torch::cross_entropy_loss(net->forward(xb), yb);
          loss.backward();
          opt.step();
        }
        epoch_seconds.push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      acc += accuracy(net, test);
    }
  }
  bench::training_counters(state, epoch_seconds, acc,
                           runs * static_cast<double>(state.iterations()), start, loaded);
}

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(static_cast<int>(bench::env_int("TG_TORCH_THREADS", 1)));
  benchmark::RegisterBenchmark("fashion_mnist/train", bm_fashion)
      ->Iterations(1)
      ->UseRealTime()
      ->Unit(benchmark::kSecond);
  benchmark::AddCustomContext("torch_version", TORCH_VERSION);
  benchmark::AddCustomContext("torch_intra_op_threads", std::to_string(at::get_num_threads()));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
