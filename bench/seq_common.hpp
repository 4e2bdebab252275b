// What bench_seq.cpp and its LibTorch twin (bench/libtorch/seq.cpp) share: the models'
// sizes (issue 16's benchmark shapes), the fixed token batch of the language model, and the
// registration of the benchmarks under the same names, units and batches on both sides.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "bench_util.hpp"

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

/// step_benchmark / memory_benchmark of `Net` on `MakeBatch`'s batch, as registered below.
template <class Net, auto MakeBatch>
void seq_step(benchmark::State& state, int64_t batch) {
  step_benchmark<Net>(state, batch, MakeBatch);
}
template <class Net, auto MakeBatch>
void seq_memory(benchmark::State& state, const char* name, int64_t batch) {
  memory_benchmark<Net>(state, name, batch, MakeBatch);
}

/// seq/lstm_layer, seq/lstm_cell, seq/transformer (ms_per_step) and their peak-memory twins
/// memory/seq_<name> (20 steps, each alone in its process), for a framework's three models
/// (constructed from a SharedRng, then step(x, y)) and batch makers (SharedRng&, batch).
template <class LstmLayer, class LstmCell, class Transformer, auto LstmBatch, auto LmBatch>
void register_seq_benchmarks() {
  using StepFn = void (*)(benchmark::State&, int64_t);
  using MemoryFn = void (*)(benchmark::State&, const char*, int64_t);
  struct Row {
    const char *step_name, *memory_name;
    StepFn step;
    MemoryFn memory;
    int64_t batch;
  };
  const Row rows[] = {{"seq/lstm_layer", "memory/seq_lstm_layer", seq_step<LstmLayer, LstmBatch>,
                       seq_memory<LstmLayer, LstmBatch>, kLstm.batch},
                      {"seq/lstm_cell", "memory/seq_lstm_cell", seq_step<LstmCell, LstmBatch>,
                       seq_memory<LstmCell, LstmBatch>, kLstm.batch},
                      {"seq/transformer", "memory/seq_transformer", seq_step<Transformer, LmBatch>,
                       seq_memory<Transformer, LmBatch>, kTransformer.batch}};
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
