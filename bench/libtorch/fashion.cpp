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

namespace {

constexpr int kEpochs = 5;
constexpr int64_t kBatch = 128;
const std::string kDir = "/usr/share/datasets/fashion-mnist/";

/// The bytes of a gzip-compressed IDX file after its header, and its extents.
std::vector<uint8_t> read_idx_gz(const std::string& path, std::vector<int64_t>& dims) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path);
  std::vector<uint8_t> bytes;
  uint8_t buf[1 << 16];
  int got;
  while ((got = gzread(f, buf, sizeof buf)) > 0) bytes.insert(bytes.end(), buf, buf + got);
  gzclose(f);
  if (bytes.size() < 4 || bytes[2] != 0x08) throw std::runtime_error(path + ": not ubyte IDX");
  const int rank = bytes[3];
  dims.clear();
  size_t pos = 4;
  for (int d = 0; d < rank; ++d, pos += 4)
    dims.push_back((int64_t{bytes[pos]} << 24) | (bytes[pos + 1] << 16) | (bytes[pos + 2] << 8) |
                   bytes[pos + 3]);
  return {bytes.begin() + static_cast<std::ptrdiff_t>(pos), bytes.end()};
}

struct Data {
  torch::Tensor x, y;  // [N, 784] f32 in [0, 1]; [N] int64
};

Data load(bool train) {
  const std::string prefix = kDir + (train ? "train" : "t10k");
  std::vector<int64_t> di, dl;
  std::vector<uint8_t> images = read_idx_gz(prefix + "-images-idx3-ubyte.gz", di);
  std::vector<uint8_t> labels = read_idx_gz(prefix + "-labels-idx1-ubyte.gz", dl);
  const int64_t n = di[0];
  Data d;
  d.x = torch::from_blob(images.data(), {n, di[1] * di[2]}, torch::kUInt8)
            .to(torch::kFloat32)
            .div_(255.0);
  d.y = torch::from_blob(labels.data(), {n}, torch::kUInt8).to(torch::kLong);
  return d;
}

double accuracy(torch::nn::Sequential& net, const Data& test) {
  torch::NoGradGuard no_grad;
  int64_t correct = 0;
  const int64_t n = test.x.size(0);
  for (int64_t s = 0; s < n; s += 1000) {
    const int64_t e = std::min(n, s + 1000);
    torch::Tensor pred = net->forward(test.x.slice(0, s, e)).argmax(1);
    correct += pred.eq(test.y.slice(0, s, e)).sum().item<int64_t>();
  }
  return 100.0 * static_cast<double>(correct) / static_cast<double>(n);
}

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
  const double peak = bench::proc_status_mib("VmHWM");
  const double trained = runs * static_cast<double>(state.iterations());
  double total = 0;
  for (double e : epoch_seconds) total += e;
  state.counters["s_per_epoch"] = bench::median(epoch_seconds);
  state.counters["s_per_epoch_mean"] = total / static_cast<double>(epoch_seconds.size());
  state.counters["s_first_epoch"] = epoch_seconds.empty() ? 0 : epoch_seconds.front();
  state.counters["accuracy_pct"] = acc / trained;
  state.counters["loaded_MiB"] = loaded;
  state.counters["peak_MiB"] = peak;
  state.counters["above_start_MiB"] = peak - start;
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
