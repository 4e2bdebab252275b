// The graph's own overhead: a chain of 1000 ops on tiny (1-element) and small (64x64)
// tensors, where the arithmetic is negligible and what is measured is the cost of
// creating values, recording nodes and running the engine.
//
// Workload (identical in bench/libtorch/overhead.cpp, same benchmark names):
//   200 blocks of  y = y*w + b;  y = y*w + b;  y = sigmoid(y);   (5 ops per block)
// with `w`, `b` f32 leaves that need gradients (w = 0.9, b = 0.1, so y stays in (0, 1))
// and `y` starting from a constant 0.5. Three modes:
//   fwd_nograd    forward under NoGradGuard (nothing recorded)
//   fwd_recorded  forward with recording, graph dropped at the end of the iteration
//   fwd_bwd       zero_grad of w and b, recorded forward, backward (of y itself for one
//                 element, of sum(y) for 64x64), graph freed by backward
// `ns_per_op` is the whole iteration's time divided by the 1000 chain ops: the final sum,
// zero_grad and the backward sweep are charged to them.
// Forward mode (tapegrad only, no LibTorch counterpart here):
//   jvp           the chain inside a fwd::DualLevel under NoGradGuard, from a dual of the
//                 start value (tangent 1): the value and its tangent d y / d y0 in one pass
//                 (func::jvp's work); compare with fwd_nograd.
#include <benchmark/benchmark.h>

#include <string>

#include "tapegrad/tapegrad.hpp"

namespace {

constexpr int kBlocks = 200;
constexpr int kOpsPerBlock = 5;  // *, +, *, +, sigmoid
constexpr int kOps = kBlocks * kOpsPerBlock;

enum class Mode { fwd_nograd, fwd_recorded, fwd_bwd, jvp };

tg::Var chain(tg::Var y, const tg::Var& w, const tg::Var& b) {
  for (int i = 0; i < kBlocks; ++i) {
    y = y * w + b;
    y = y * w + b;
    y = tg::sigmoid(y);
  }
  return y;
}

/// Iteration time divided by `ops`: seconds per op (the console prints e.g. "85.2ns"; the
/// JSON holds seconds).
benchmark::Counter ns_per_op(double ops) {
  return benchmark::Counter(
      ops, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void bm_overhead(benchmark::State& state, tg::Shape shape, Mode mode) {
  const tg::Var x = tg::constant(tg::full(shape, 0.5));
  tg::Var w = tg::param(tg::full(shape, 0.9));
  tg::Var b = tg::param(tg::full(shape, 0.1));
  const bool one_element = shape.numel() == 1;

  if (mode == Mode::fwd_nograd) {
    tg::NoGradGuard no_grad;
    for (auto _ : state) {
      tg::Var y = chain(x, w, b);
      benchmark::DoNotOptimize(y.value().data<float>());
    }
  } else if (mode == Mode::jvp) {
    tg::NoGradGuard no_grad;
    const tg::Var t = tg::constant(tg::full(shape, 1.0));
    for (auto _ : state) {
      tg::fwd::DualLevel level;
      const tg::Var y = chain(tg::fwd::make_dual(x, t), w, b);
      const tg::Var ty = tg::fwd::unpack_dual(y).tangent;
      benchmark::DoNotOptimize(ty.value().data<float>());
    }
  } else if (mode == Mode::fwd_recorded) {
    for (auto _ : state) {
      tg::Var y = chain(x, w, b);
      benchmark::DoNotOptimize(y.value().data<float>());
    }
  } else {
    for (auto _ : state) {
      w.zero_grad();
      b.zero_grad();
      tg::Var y = chain(x, w, b);
      (one_element ? y : tg::sum(y)).backward();
      benchmark::DoNotOptimize(w.grad().value().data<float>());
    }
    if (!w.grad().defined() || !b.grad().defined()) state.SkipWithError("no gradient reached w/b");
  }
  state.counters["ns_per_op"] = ns_per_op(kOps);
}

const bool registered = [] {
  const std::pair<const char*, tg::Shape> shapes[] = {{"1elem", tg::Shape{1}},
                                                      {"64x64", tg::Shape{64, 64}}};
  const std::pair<const char*, Mode> modes[] = {{"fwd_nograd", Mode::fwd_nograd},
                                                {"fwd_recorded", Mode::fwd_recorded},
                                                {"fwd_bwd", Mode::fwd_bwd},
                                                {"jvp", Mode::jvp}};
  for (const auto& [shape_name, shape] : shapes) {
    for (const auto& [mode_name, mode] : modes) {
      const std::string name = std::string("overhead_") + shape_name + "/" + mode_name;
      benchmark::RegisterBenchmark(name.c_str(), bm_overhead, shape, mode)
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
  return true;
}();

}  // namespace
