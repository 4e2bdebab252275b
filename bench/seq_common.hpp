// What bench_seq.cpp and its LibTorch twin (bench/libtorch/seq.cpp) share: the models'
// sizes (issue 16's benchmark shapes), the fixed token batch of the language model, and the
// registration of the benchmarks under the same names, units and batches on both sides.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace bench {

/// The LSTM benchmark: input 32, hidden 128, 35 steps, batch 16, a head over 64 classes.
struct LstmSizes {
  int64_t input, hidden, steps, batch, classes;
};
inline constexpr LstmSizes kLstm{32, 128, 35, 16, 64};

/// The Transformer benchmark: 2 pre-LN layers, d_model 128, 4 heads, MLP 4 x d_model with
/// GELU, tokens [16, 64] over a vocabulary of 96.
struct TransformerSizes {
  int64_t layers, d_model, heads, mlp, batch, len, vocab;
};
inline constexpr TransformerSizes kTransformer{2, 128, 4, 4, 16, 64, 96};

/// The language model's fixed batch: ids [batch, len] (row-major), (b * 7 + t * 3) % vocab,
/// and the next-token targets, (id + 1) % vocab.
inline std::pair<std::vector<int64_t>, std::vector<int64_t>> token_batch(int64_t batch, int64_t len,
                                                                         int64_t vocab) {
  std::vector<int64_t> ids, next;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < len; ++t) {
      ids.push_back((b * 7 + t * 3) % vocab);
      next.push_back((b * 7 + t * 3 + 1) % vocab);
    }
  return {std::move(ids), std::move(next)};
}

using StepFn = void (*)(benchmark::State&, int64_t batch);
using MemoryFn = void (*)(benchmark::State&, const char* name, int64_t batch);

/// seq/lstm_layer, seq/lstm_cell, seq/transformer (ms_per_step) and their peak-memory twins
/// memory/seq_<name> (20 steps, each alone in its process).
inline void register_seq_benchmarks(StepFn lstm_layer, StepFn lstm_cell, StepFn transformer,
                                    MemoryFn mem_layer, MemoryFn mem_cell,
                                    MemoryFn mem_transformer) {
  struct Row {
    const char *step_name, *memory_name;
    StepFn step;
    MemoryFn memory;
    int64_t batch;
  };
  const Row rows[] = {
      {"seq/lstm_layer", "memory/seq_lstm_layer", lstm_layer, mem_layer, kLstm.batch},
      {"seq/lstm_cell", "memory/seq_lstm_cell", lstm_cell, mem_cell, kLstm.batch},
      {"seq/transformer", "memory/seq_transformer", transformer, mem_transformer,
       kTransformer.batch}};
  for (const Row& r : rows) {
    benchmark::RegisterBenchmark(r.step_name, r.step, r.batch)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(r.memory_name, r.memory, r.memory_name, r.batch)
        ->Iterations(20)
        ->UseRealTime();
  }
}

}  // namespace bench
