// Training steps of multilayer perceptrons, float32. A step is zero_grad + forward + loss +
// backward + optimizer step, on one fixed batch (data loading is not part of it):
//   mlp_a/step  2-3-1 sigmoid (sigmoid output), batch 7, MSE, SGD     (the seed network)
//   mlp_b/step  784-128-10 ReLU, batch 32, softmax cross-entropy, SGD
//   mlp_c/step  784-512-512-10 ReLU, batch 128, cross-entropy, Adam
//   mlp_d/step  1024-4096-4096-1024 ReLU, batch 256, MSE, SGD; also GFLOP/s, counting
//               6*B*in*out flop per layer (forward, dX and dW gemms)
//   mlp_d/cblas_9gemm       direct cblas_sgemm on (d)'s 9 gemm shapes (3 per layer, the
//                           same flop count): the BLAS limit for mlp_d's GFLOP/s
//   mlp_d/cblas_step_gemms  the 8 gemms a step really runs (no dX for the input layer)
//   mlp_c/forward, mlp_c/jvp  (c)'s network alone, under NoGradGuard: a forward pass, and
//               the forward-mode JVP along a tangent of the input (fwd::DualLevel; the
//               value and J t in one pass, func::jvp's work; tapegrad only)
//   mlp_c/tangent_gemms  the products a tangent of (c)'s input adds, alone: t W^T per layer
//               on a tangent of the layer input's shape (no bias, no activation); forward +
//               tangent_gemms is forward mode's floor on (c) (tapegrad only)
//   memory/mlp_c, memory/mlp_d  peak resident memory (VmHWM) over a few steps; each must
//                           run alone in its process (--benchmark_filter='^memory/mlp_c$')
// Identical names and counters in bench/libtorch/mlp.cpp. Every layer has a bias (as
// nn.Linear); hidden layers use the activation named, the last layer none, except (a)
// whose output is a sigmoid too.
#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "cblas_ref.hpp"
#include "tapegrad/tapegrad.hpp"

namespace {

enum class Loss { mse, cross_entropy };
enum class Opt { sgd, adam };

struct Workload {
  std::vector<int64_t> sizes;
  tg::Activation hidden, output;
  int64_t batch;
  Loss loss;
  Opt opt;
};

const Workload kA{{2, 3, 1}, tg::Activation::sigmoid, tg::Activation::sigmoid, 7, Loss::mse,
                  Opt::sgd};
const Workload kB{{784, 128, 10},           tg::Activation::relu,
                  tg::Activation::identity, 32,
                  Loss::cross_entropy,      Opt::sgd};
const Workload kC{{784, 512, 512, 10},      tg::Activation::relu,
                  tg::Activation::identity, 128,
                  Loss::cross_entropy,      Opt::adam};
const Workload kD{{1024, 4096, 4096, 1024},
                  tg::Activation::relu,
                  tg::Activation::identity,
                  256,
                  Loss::mse,
                  Opt::sgd};

/// 6 * B * in * out per layer: forward, dX and dW gemms.
double step_flops(const Workload& w) {
  double f = 0;
  for (size_t i = 0; i + 1 < w.sizes.size(); ++i)
    f += 6.0 * static_cast<double>(w.batch * w.sizes[i] * w.sizes[i + 1]);
  return f;
}

/// A model, its optimizer and one batch, ready to step.
struct Trainer {
  tg::Rng rng{42};
  tg::MLP net;
  std::unique_ptr<tg::Optimizer> opt;
  tg::Var x, y;                 // y: regression targets (MSE)
  std::vector<int64_t> labels;  // classification targets
  Loss loss;

  explicit Trainer(const Workload& w)
      : net(w.sizes, w.hidden, w.output, rng, true, tg::f32), loss(w.loss) {
    if (w.opt == Opt::sgd)
      opt = std::make_unique<tg::SGD>(net.parameters(), tg::SGDOptions{.lr = 1e-3});
    else
      opt = std::make_unique<tg::Adam>(net.parameters(), tg::AdamOptions{.lr = 1e-3});
    x = tg::constant(tg::rand({w.batch, w.sizes.front()}, rng));
    if (loss == Loss::mse) {
      y = tg::constant(tg::rand({w.batch, w.sizes.back()}, rng));
    } else {
      for (int64_t i = 0; i < w.batch; ++i) labels.push_back(i % w.sizes.back());
    }
  }

  void step() {
    opt->zero_grad();
    tg::Var out = net(x);
    tg::Var l = loss == Loss::mse ? tg::mse_loss(out, y) : tg::cross_entropy(out, labels);
    l.backward();
    opt->step();
  }

  const float* first_weight() const { return net.linear(0).weight.value().data<float>(); }
};

void bm_step(benchmark::State& state, const Workload* w, bool gflops) {
  if (!bench::start_benchmark(state, "step")) return;
  Trainer t(*w);
  t.step();  // warm-up: optimizer state, allocator
  for (auto _ : state) {
    t.step();
    benchmark::DoNotOptimize(t.first_weight());
  }
  const char* unit = w == &kD ? "ms_per_step" : "us_per_step";
  state.counters[unit] = bench::seconds_per();
  if (gflops) state.counters["GFLOPS"] = bench::flop_rate(step_flops(*w));
}

/// (c)'s forward pass alone, or with the tangent of its input (forward mode).
void bm_forward(benchmark::State& state, const Workload* w, bool jvp) {
  if (!bench::start_benchmark(state, jvp ? "jvp" : "forward")) return;
  Trainer t(*w);
  tg::NoGradGuard no_grad;
  const tg::Var tx = tg::constant(tg::rand(t.x.shape(), t.rng));
  for (auto _ : state) {
    if (jvp) {
      tg::fwd::DualLevel level;
      const tg::Var ty = tg::fwd::unpack_dual(t.net(tg::fwd::make_dual(t.x, tx))).tangent;
      benchmark::DoNotOptimize(ty.value().data<float>());
    } else {
      const tg::Var y = t.net(t.x);
      benchmark::DoNotOptimize(y.value().data<float>());
    }
  }
  state.counters["us_per_pass"] = bench::seconds_per();
}

/// Peak resident memory of a few steps, in a process of its own.
/// The gemms a tangent of (c)'s input adds to a forward pass, alone (see the header).
void bm_tangent_gemms(benchmark::State& state, const Workload* w) {
  if (!bench::start_benchmark(state, "tangent_gemms")) return;
  Trainer t(*w);
  tg::NoGradGuard no_grad;
  std::vector<tg::Var> tangents;
  for (size_t i = 0; i + 1 < w->sizes.size(); ++i)
    tangents.push_back(tg::constant(tg::rand({w->batch, w->sizes[i]}, t.rng)));
  for (auto _ : state) {
    for (size_t i = 0; i < tangents.size(); ++i) {
      const tg::Var p = tg::matmul(tangents[i], t.net.linear(i).weight, false, true);
      benchmark::DoNotOptimize(p.value().data<float>());
    }
  }
  state.counters["us_per_pass"] = bench::seconds_per();
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

/// The gemms of one (d) step: per layer y = x W^T, dW = dy^T x, dX = dy W (dX skipped for
/// the first layer when `all` is false, as a training step does).
std::vector<Gemm> step_gemms(const Workload& w, bool all) {
  std::vector<Gemm> g;
  for (size_t i = 0; i + 1 < w.sizes.size(); ++i) {
    const int64_t in = w.sizes[i], out = w.sizes[i + 1], b = w.batch;
    g.push_back({false, true, b, out, in});                     // forward [b,in] x [out,in]^T
    g.push_back({true, false, out, in, b});                     // dW = dy^T x: [b,out]^T x [b,in]
    if (all || i > 0) g.push_back({false, false, b, in, out});  // dX = dy W
  }
  return g;
}

void bm_cblas_gemms(benchmark::State& state, const Workload* w, bool all) {
  if (!bench::start_benchmark(state, "cblas")) return;
  const std::vector<Gemm> gemms = step_gemms(*w, all);
  std::vector<tg::Tensor> a, b, c;
  tg::Rng rng(7);
  double flops = 0;
  for (const Gemm& g : gemms) {
    a.push_back(tg::rand({g.m * g.k}, rng, -1, 1));
    b.push_back(tg::rand({g.k * g.n}, rng, -1, 1));
    c.push_back(tg::zeros({g.m * g.n}));
    flops += 2.0 * static_cast<double>(g.m * g.n * g.k);
  }
  for (auto _ : state) {
    for (size_t i = 0; i < gemms.size(); ++i) {
      const Gemm& g = gemms[i];
      bench::cblas_gemm(g.ta, g.tb, g.m, g.n, g.k, a[i].data<float>(), b[i].data<float>(), 0.0f,
                        c[i].data<float>());
    }
    benchmark::ClobberMemory();
  }
  state.counters["ms_per_step"] = bench::seconds_per();
  state.counters["GFLOPS"] = bench::flop_rate(flops);
}

const bool registered = [] {
  auto reg = [](const char* name, auto fn, auto... args) {
    return benchmark::RegisterBenchmark(name, fn, args...)->UseRealTime();
  };
  reg("mlp_a/step", bm_step, &kA, false)->Unit(benchmark::kMicrosecond);
  reg("mlp_b/step", bm_step, &kB, false)->Unit(benchmark::kMicrosecond);
  reg("mlp_c/step", bm_step, &kC, false)->Unit(benchmark::kMicrosecond);
  reg("mlp_d/step", bm_step, &kD, true)->Unit(benchmark::kMillisecond);
  reg("mlp_c/forward", bm_forward, &kC, false)->Unit(benchmark::kMicrosecond);
  reg("mlp_c/jvp", bm_forward, &kC, true)->Unit(benchmark::kMicrosecond);
  reg("mlp_c/tangent_gemms", bm_tangent_gemms, &kC)->Unit(benchmark::kMicrosecond);
  reg("mlp_d/cblas_9gemm", bm_cblas_gemms, &kD, true)->Unit(benchmark::kMillisecond);
  reg("mlp_d/cblas_step_gemms", bm_cblas_gemms, &kD, false)->Unit(benchmark::kMillisecond);
  reg("memory/mlp_c", bm_memory, &kC)->Iterations(20)->Unit(benchmark::kMillisecond);
  reg("memory/mlp_d", bm_memory, &kD)->Iterations(3)->Unit(benchmark::kMillisecond);
  benchmark::AddCustomContext("openblas_threads", std::to_string(bench::openblas_threads()));
  return true;
}();

}  // namespace
