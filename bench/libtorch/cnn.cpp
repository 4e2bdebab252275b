// LibTorch twin of bench/bench_cnn.cpp: the default CNN of `tapegrad train --model cnn`
// (nn::Unflatten, Conv2d, BatchNorm2d, ReLU, MaxPool2d, Flatten, Linear as torch.nn),
// cross_entropy, Adam lr 1e-3; the same benchmarks, names and counters (cnn/step/32,
// cnn/step/128, memory/cnn_128, cnn_fashion/train), the same initial weights, fixed batch
// and batch order (bench::SharedRng). A step resets the gradients to undefined, as
// fashion.cpp. Threads: TG_TORCH_THREADS intra-op (the comparison script gives this job 2,
// with OpenBLAS on 1: oneDNN's convolutions follow the intra-op count).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "../bench_util.hpp"
#include "fashion_data.hpp"
#include "torch_main.hpp"

namespace {

constexpr int64_t kClasses = 10;
namespace nn = torch::nn;

struct Cnn {
  nn::Sequential net{nn::Unflatten(nn::UnflattenOptions(1, {1, 28, 28})),
                     nn::Conv2d(nn::Conv2dOptions(1, 32, 3).padding(1)),
                     nn::BatchNorm2d(32),
                     nn::ReLU(),
                     nn::MaxPool2d(2),
                     nn::Conv2d(nn::Conv2dOptions(32, 64, 3).padding(1)),
                     nn::BatchNorm2d(64),
                     nn::ReLU(),
                     nn::MaxPool2d(2),
                     nn::Flatten(),
                     nn::Linear(64 * 7 * 7, 128),
                     nn::ReLU(),
                     nn::Linear(128, kClasses)};
  std::vector<torch::Tensor> params;
  std::unique_ptr<torch::optim::Adam> opt;

  explicit Cnn(bench::SharedRng& g) : params(net->parameters()) {
    std::vector<std::vector<int64_t>> shapes;
    for (const torch::Tensor& p : params) shapes.emplace_back(p.sizes().vec());
    const auto init = bench::layer_init(g, shapes);
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < params.size(); ++i)
      if (!init[i].empty())
        params[i].copy_(torch::from_blob(const_cast<float*>(init[i].data()), params[i].sizes(),
                                         torch::kFloat32));
    opt = std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(1e-3));
  }

  void step(const torch::Tensor& x, const torch::Tensor& y) {
    for (auto& p : params) p.mutable_grad().reset();
    torch::Tensor loss = torch::cross_entropy_loss(net->forward(x), y);
    loss.backward();
    opt->step();
  }
};

std::pair<torch::Tensor, torch::Tensor> make_batch(bench::SharedRng& g, int64_t batch) {
  auto [x, y] = bench::random_batch(g, batch, 784, kClasses);
  return {torch::from_blob(x.data(), {batch, 784}, torch::kFloat32).clone(),
          torch::from_blob(y.data(), {batch}, torch::kLong).clone()};
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
  const Data train = load(true), test = load(false);
  const double loaded = bench::proc_status_mib("VmHWM");
  const int64_t n = train.x.size(0);
  double acc = 0;
  std::vector<double> epoch_seconds;
  for (auto _ : state) {
    bench::SharedRng g(seed * 100);
    Cnn cnn(g);
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    for (int epoch = 0; epoch < epochs; ++epoch) {
      const auto t0 = std::chrono::steady_clock::now();
      g.shuffle(order);
      const torch::Tensor perm = torch::from_blob(order.data(), {n}, torch::kLong);
      for (int64_t s = 0; s < n; s += 128) {
        const torch::Tensor idx = perm.slice(0, s, std::min(n, s + 128));
        cnn.step(train.x.index_select(0, idx), train.y.index_select(0, idx));
      }
      epoch_seconds.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    cnn.net->eval();
    acc += accuracy(cnn.net, test);
  }
  bench::training_counters(state, epoch_seconds, acc, static_cast<double>(state.iterations()),
                           start, loaded);
}

}  // namespace

int main(int argc, char** argv) {
  return bench::torch_main(argc, argv, [] {
    for (int64_t batch : {32, 128})
      benchmark::RegisterBenchmark(("cnn/step/" + std::to_string(batch)).c_str(), bm_step, batch)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    benchmark::RegisterBenchmark("memory/cnn_128", bm_memory)->Iterations(20)->UseRealTime();
    benchmark::RegisterBenchmark("cnn_fashion/train", bm_fashion)
        ->Iterations(1)
        ->UseRealTime()
        ->Unit(benchmark::kSecond);
  });
}
