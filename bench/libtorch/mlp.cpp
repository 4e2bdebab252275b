// LibTorch twin of bench/bench_mlp.cpp: the same training steps, benchmark names and
// counters. A step: gradients reset to undefined (tapegrad's zero_grad semantics, and
// LibTorch's faster choice), forward, loss, backward, optimizer step.
//   mlp_a/step  2-3-1 sigmoid (sigmoid output), batch 7, MSE, SGD
//   mlp_b/step  784-128-10 ReLU, batch 32, softmax cross-entropy, SGD
//   mlp_c/step  784-512-512-10 ReLU, batch 128, cross-entropy, Adam
//   mlp_d/step  1024-4096-4096-1024 ReLU, batch 256, MSE, SGD; GFLOP/s = 6*B*in*out/layer
//   mlp_d/cblas_9gemm, mlp_d/cblas_step_gemms  direct cblas_sgemm on (d)'s shapes, in this
//               process (LibTorch's own distance from the BLAS limit)
//   memory/mlp_c, memory/mlp_d  peak resident memory, each alone in its process
// Threads: intra-op pool TG_TORCH_THREADS (default 1), OpenBLAS its own default
// (OPENBLAS_NUM_THREADS; 2 on a 2-core machine) -- LibTorch's best setting here.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "../bench_util.hpp"
#include "../cblas_ref.hpp"

namespace {

enum class Act { sigmoid, relu };
enum class Loss { mse, cross_entropy };
enum class Opt { sgd, adam };

struct Workload {
  std::vector<int64_t> sizes;
  Act hidden;
  bool sigmoid_output;
  int64_t batch;
  Loss loss;
  Opt opt;
};

const Workload kA{{2, 3, 1}, Act::sigmoid, true, 7, Loss::mse, Opt::sgd};
const Workload kB{{784, 128, 10}, Act::relu, false, 32, Loss::cross_entropy, Opt::sgd};
const Workload kC{{784, 512, 512, 10}, Act::relu, false, 128, Loss::cross_entropy, Opt::adam};
const Workload kD{{1024, 4096, 4096, 1024}, Act::relu, false, 256, Loss::mse, Opt::sgd};

double step_flops(const Workload& w) {
  double f = 0;
  for (size_t i = 0; i + 1 < w.sizes.size(); ++i)
    f += 6.0 * static_cast<double>(w.batch * w.sizes[i] * w.sizes[i + 1]);
  return f;
}

struct Trainer {
  torch::nn::Sequential net;
  std::unique_ptr<torch::optim::Optimizer> opt;
  std::vector<torch::Tensor> params;
  torch::Tensor x, y;
  Loss loss;

  explicit Trainer(const Workload& w) : loss(w.loss) {
    torch::manual_seed(42);
    for (size_t i = 0; i + 1 < w.sizes.size(); ++i) {
      net->push_back(torch::nn::Linear(w.sizes[i], w.sizes[i + 1]));
      const bool last = i + 2 == w.sizes.size();
      if (!last || w.sigmoid_output) {
        if (w.hidden == Act::relu && !last)
          net->push_back(torch::nn::ReLU());
        else
          net->push_back(torch::nn::Sigmoid());
      }
    }
    params = net->parameters();
    if (w.opt == Opt::sgd)
      opt = std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(1e-3));
    else
      opt = std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(1e-3));
    x = torch::rand({w.batch, w.sizes.front()});
    if (loss == Loss::mse)
      y = torch::rand({w.batch, w.sizes.back()});
    else
      y = torch::arange(w.batch, torch::kLong).remainder(w.sizes.back());
  }

  void step() {
    for (auto& p : params) p.mutable_grad().reset();
    torch::Tensor out = net->forward(x);
    torch::Tensor l =
        loss == Loss::mse ? torch::mse_loss(out, y) : torch::cross_entropy_loss(out, y);
    l.backward();
    opt->step();
  }

  const float* first_weight() const { return params.front().data_ptr<float>(); }
};

void bm_step(benchmark::State& state, const Workload* w, bool gflops) {
  if (!bench::start_benchmark(state, "step")) return;
  Trainer t(*w);
  t.step();
  for (auto _ : state) {
    t.step();
    benchmark::DoNotOptimize(t.first_weight());
  }
  const char* unit = w == &kD ? "ms_per_step" : "us_per_step";
  state.counters[unit] = bench::seconds_per();
  if (gflops) state.counters["GFLOPS"] = bench::flop_rate(step_flops(*w));
}

void bm_memory(benchmark::State& state, const Workload* w) {
  if (!bench::start_benchmark(state, w == &kC ? "memory/mlp_c" : "memory/mlp_d", true)) return;
  const double start = bench::proc_status_mib("VmHWM");
  {
    Trainer t(*w);
    for (auto _ : state) {
      t.step();
      benchmark::DoNotOptimize(t.first_weight());
    }
  }
  const double peak = bench::proc_status_mib("VmHWM");
  state.counters["peak_MiB"] = peak;
  state.counters["above_start_MiB"] = peak - start;
}

struct Gemm {
  bool ta, tb;
  int64_t m, n, k;
};

std::vector<Gemm> step_gemms(const Workload& w, bool all) {
  std::vector<Gemm> g;
  for (size_t i = 0; i + 1 < w.sizes.size(); ++i) {
    const int64_t in = w.sizes[i], out = w.sizes[i + 1], b = w.batch;
    g.push_back({false, true, b, out, in});
    g.push_back({true, false, out, in, b});
    if (all || i > 0) g.push_back({false, false, b, in, out});
  }
  return g;
}

void bm_cblas_gemms(benchmark::State& state, const Workload* w, bool all) {
  if (!bench::start_benchmark(state, "cblas")) return;
  const std::vector<Gemm> gemms = step_gemms(*w, all);
  std::vector<torch::Tensor> a, b, c;
  double flops = 0;
  for (const Gemm& g : gemms) {
    a.push_back(torch::rand({g.m * g.k}) * 2 - 1);
    b.push_back(torch::rand({g.k * g.n}) * 2 - 1);
    c.push_back(torch::zeros({g.m * g.n}));
    flops += 2.0 * static_cast<double>(g.m * g.n * g.k);
  }
  for (auto _ : state) {
    for (size_t i = 0; i < gemms.size(); ++i) {
      const Gemm& g = gemms[i];
      bench::cblas_gemm(g.ta, g.tb, g.m, g.n, g.k, a[i].data_ptr<float>(), b[i].data_ptr<float>(),
                        0.0f, c[i].data_ptr<float>());
    }
    benchmark::ClobberMemory();
  }
  state.counters["ms_per_step"] = bench::seconds_per();
  state.counters["GFLOPS"] = bench::flop_rate(flops);
}

void register_benchmarks() {
  auto reg = [](const char* name, auto fn, auto... args) {
    return benchmark::RegisterBenchmark(name, fn, args...)->UseRealTime();
  };
  reg("mlp_a/step", bm_step, &kA, false)->Unit(benchmark::kMicrosecond);
  reg("mlp_b/step", bm_step, &kB, false)->Unit(benchmark::kMicrosecond);
  reg("mlp_c/step", bm_step, &kC, false)->Unit(benchmark::kMicrosecond);
  reg("mlp_d/step", bm_step, &kD, true)->Unit(benchmark::kMillisecond);
  reg("mlp_d/cblas_9gemm", bm_cblas_gemms, &kD, true)->Unit(benchmark::kMillisecond);
  reg("mlp_d/cblas_step_gemms", bm_cblas_gemms, &kD, false)->Unit(benchmark::kMillisecond);
  reg("memory/mlp_c", bm_memory, &kC)->Iterations(20)->Unit(benchmark::kMillisecond);
  reg("memory/mlp_d", bm_memory, &kD)->Iterations(3)->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(static_cast<int>(bench::env_int("TG_TORCH_THREADS", 1)));
  register_benchmarks();
  benchmark::AddCustomContext("torch_version", TORCH_VERSION);
  benchmark::AddCustomContext("torch_intra_op_threads", std::to_string(at::get_num_threads()));
  benchmark::AddCustomContext("openblas_threads", std::to_string(bench::openblas_threads()));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
