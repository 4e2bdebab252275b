// LibTorch twin of bench/bench_overhead.cpp: the same 1000-op chains, the same benchmark
// names and the same `ns_per_op` counter, so scripts/compare_libtorch.sh can pair them.
//
//   200 blocks of  y = y*w + b;  y = y*w + b;  y = sigmoid(y);   (5 ops per block)
// w = 0.9, b = 0.1 (f32, requires_grad), y starts from a constant 0.5. Modes:
//   fwd_nograd    forward under torch::NoGradGuard
//   fwd_recorded  forward with autograd recording, graph dropped at the end
//   fwd_bwd       grads reset to undefined (like tapegrad's zero_grad), recorded forward,
//                 backward of y (one element) or y.sum() (64x64)
// LibTorch runs with one intra-op thread, its fastest setting on this 2-core machine.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace {

constexpr int kBlocks = 200;
constexpr int kOpsPerBlock = 5;  // *, +, *, +, sigmoid
constexpr int kOps = kBlocks * kOpsPerBlock;

enum class Mode { fwd_nograd, fwd_recorded, fwd_bwd };

torch::Tensor chain(torch::Tensor y, const torch::Tensor& w, const torch::Tensor& b) {
  for (int i = 0; i < kBlocks; ++i) {
    y = y * w + b;
    y = y * w + b;
    y = torch::sigmoid(y);
  }
  return y;
}

/// Iteration time divided by `ops`: seconds per op (the console prints e.g. "85.2ns"; the
/// JSON holds seconds).
benchmark::Counter ns_per_op(double ops) {
  return benchmark::Counter(
      ops, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void bm_overhead(benchmark::State& state, std::vector<int64_t> shape, Mode mode) {
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  const torch::Tensor x = torch::full(shape, 0.5, f32);
  torch::Tensor w = torch::full(shape, 0.9, f32.requires_grad(true));
  torch::Tensor b = torch::full(shape, 0.1, f32.requires_grad(true));
  const bool one_element = x.numel() == 1;

  if (mode == Mode::fwd_nograd) {
    torch::NoGradGuard no_grad;
    for (auto _ : state) {
      torch::Tensor y = chain(x, w, b);
      benchmark::DoNotOptimize(y.data_ptr<float>());
    }
  } else if (mode == Mode::fwd_recorded) {
    for (auto _ : state) {
      torch::Tensor y = chain(x, w, b);
      benchmark::DoNotOptimize(y.data_ptr<float>());
    }
  } else {
    for (auto _ : state) {
      w.mutable_grad().reset();
      b.mutable_grad().reset();
      torch::Tensor y = chain(x, w, b);
      (one_element ? y : y.sum()).backward();
      benchmark::DoNotOptimize(w.grad().data_ptr<float>());
    }
    if (!w.grad().defined() || !b.grad().defined()) state.SkipWithError("no gradient reached w/b");
  }
  state.counters["ns_per_op"] = ns_per_op(kOps);
}

void register_benchmarks() {
  const std::pair<const char*, std::vector<int64_t>> shapes[] = {{"1elem", {1}},
                                                                 {"64x64", {64, 64}}};
  const std::pair<const char*, Mode> modes[] = {{"fwd_nograd", Mode::fwd_nograd},
                                                {"fwd_recorded", Mode::fwd_recorded},
                                                {"fwd_bwd", Mode::fwd_bwd}};
  for (const auto& [shape_name, shape] : shapes) {
    for (const auto& [mode_name, mode] : modes) {
      const std::string name = std::string("overhead_") + shape_name + "/" + mode_name;
      benchmark::RegisterBenchmark(name.c_str(), bm_overhead, shape, mode)
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(1);
  register_benchmarks();
  benchmark::AddCustomContext("torch_version", TORCH_VERSION);
  benchmark::AddCustomContext("torch_intra_op_threads", std::to_string(at::get_num_threads()));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
