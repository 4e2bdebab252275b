// The main() of a LibTorch benchmark program that registers its benchmarks itself: the
// intra-op pool gets TG_TORCH_THREADS threads (default 1; the comparison script sets each
// job's best value) before anything runs, and the context names the threads it ran with.
#pragma once

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <string>

#include "../bench_util.hpp"
#include "../cblas_ref.hpp"

namespace bench {

template <class Register>
int torch_main(int argc, char** argv, Register register_benchmarks) {
  at::set_num_threads(static_cast<int>(env_int("TG_TORCH_THREADS", 1)));
  register_benchmarks();
  benchmark::AddCustomContext("torch_version", TORCH_VERSION);
  benchmark::AddCustomContext("torch_intra_op_threads", std::to_string(at::get_num_threads()));
  benchmark::AddCustomContext("openblas_threads", std::to_string(openblas_threads()));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace bench
