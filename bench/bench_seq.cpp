// Sequence models' training steps, float32 (issue 16's benchmarks). A step is zero_grad +
// forward + loss + backward + optimizer step on one fixed batch (bench::step_benchmark).
//   seq/lstm_layer   LSTM(32, 128) over 35 steps of batch 16 (input [35, 16, 32]), a
//                    Linear(128, 64) head at every step, cross-entropy over all 35 x 16
//                    outputs, Adam lr 1e-3
//   seq/lstm_cell    the same model written as a loop over LSTMCell(32, 128) (h and c
//                    carried, the outputs stacked): what a researcher writing a new cell does
//   seq/transformer  decoder-only LM: token Embedding + learned position Embedding ->
//                    TransformerEncoder of 2 pre-LN layers (d_model 128, 4 heads,
//                    feed-forward 512 with GELU, dropout 0) under the causal mask ->
//                    LayerNorm -> Linear to the vocabulary; cross-entropy on the next token;
//                    AdamW (lr 1e-3, weight decay 1e-2); tokens [16, 64] over 96
//   charlm/step      the same Transformer at `tapegrad charlm`'s shape: tokens [128, 16]
//                    over 43 symbols with a key padding mask (the last 4 positions of every
//                    other word padded, their targets ignored); tapegrad only
//   memory/seq_lstm_layer, memory/seq_lstm_cell, memory/seq_transformer  peak resident
//                    memory (VmHWM) over 20 steps, each alone in its process
//                    (--benchmark_filter='^memory/seq_lstm_layer/')
// The LibTorch twin (bench/libtorch/seq.cpp) runs the same models (torch::nn::LSTM,
// torch::nn::LSTMCell, and the Transformer with its attention written by hand from ops:
// LibTorch 1.13's C++ TransformerEncoderLayer has no norm_first) on the same batches
// (bench::random_batch, bench::token_batch); each side keeps its own initial weights.
#include <benchmark/benchmark.h>

#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "bench_util.hpp"
#include "cblas_ref.hpp"
#include "seq_common.hpp"
#include "tapegrad/tapegrad.hpp"

namespace {

using bench::kLstm;

std::vector<tg::Var> parameters_of(std::initializer_list<tg::Module*> modules) {
  std::vector<tg::Var> params;
  for (tg::Module* m : modules)
    for (const tg::Var& p : m->parameters()) params.push_back(p);
  return params;
}

/// The LSTM model: the layer (Cell false) or a loop over the cell (Cell true), then the head.
template <bool Cell>
struct LstmNet {
  tg::Rng rng{42};
  std::conditional_t<Cell, tg::LSTMCell, tg::LSTM> rnn{kLstm.input, kLstm.hidden, rng};
  tg::Linear head{kLstm.hidden, kLstm.classes, rng};
  std::unique_ptr<tg::Adam> opt;

  explicit LstmNet(bench::SharedRng&) {
    opt = std::make_unique<tg::Adam>(parameters_of({&rnn, &head}), tg::AdamOptions{.lr = 1e-3});
  }

  // x [T, B, input] -> the hidden states of every step, [T, B, hidden].
  tg::Var hidden_states(const tg::Var& x) {
    if constexpr (!Cell) {
      return std::get<0>(rnn(x));
    } else {
      const int64_t steps = x.shape()[0], batch = x.shape()[1];
      std::vector<tg::Var> hs;
      std::optional<std::tuple<tg::Var, tg::Var>> state;
      for (int64_t t = 0; t < steps; ++t) {
        state = rnn(tg::reshape(tg::narrow(x, 0, t, 1), {batch, kLstm.input}), state);
        hs.push_back(std::get<0>(*state));
      }
      return tg::stack(hs, 0);
    }
  }

  void step(const tg::Var& x, const std::vector<int64_t>& y) {
    opt->zero_grad();
    const tg::Var h = hidden_states(x);
    const int64_t rows = h.shape()[0] * h.shape()[1];
    tg::cross_entropy(head(tg::reshape(h, {rows, kLstm.hidden})), y).backward();
    opt->step();
  }
};

std::pair<tg::Var, std::vector<int64_t>> lstm_batch(bench::SharedRng& g, int64_t batch) {
  auto [x, y] = bench::random_batch(g, kLstm.steps * batch, kLstm.input, kLstm.classes);
  return {tg::constant(tg::Tensor(x, {kLstm.steps, batch, kLstm.input})), std::move(y)};
}

/// A language-model shape: tokens [batch, len] over `vocab`; `padded`: charlm's key padding.
struct LmShape {
  int64_t len, vocab;
  bool padded;
  // A padded position of charlm's batch: the last 4 of every other word.
  bool dead(int64_t b, int64_t t) const { return padded && b % 2 == 1 && t >= len - 4; }
};
constexpr LmShape kTransformerShape{bench::kTransformer.len, bench::kTransformer.vocab, false};
constexpr LmShape kCharLM{16, 43, true};

template <const LmShape& S>
struct TransformerLM {
  static constexpr int64_t kD = bench::kTransformer.d_model;
  tg::Rng rng{42};
  tg::Embedding tok{S.vocab, kD, rng}, pos{S.len, kD, rng};
  tg::TransformerEncoder blocks{[this] {
                                  return std::make_unique<tg::TransformerEncoderLayer>(
                                      kD, bench::kTransformer.heads, rng,
                                      bench::kTransformer.mlp * kD, 0.0, "gelu", 1e-5, true, true);
                                },
                                bench::kTransformer.layers};
  tg::LayerNorm ln_f{{kD}};
  tg::Linear head{kD, S.vocab, rng};
  std::unique_ptr<tg::AdamW> opt;
  tg::Var positions = tg::constant(tg::arange(S.len, tg::i64));
  tg::Var mask = tg::causal_mask(S.len);
  tg::Var padding;  // charlm: [batch, len], true at padded positions

  explicit TransformerLM(bench::SharedRng&) {
    opt = std::make_unique<tg::AdamW>(parameters_of({&tok, &pos, &blocks, &ln_f, &head}),
                                      tg::AdamWOptions{.lr = 1e-3});
  }

  void step(const tg::Var& ids, const tg::Var& targets) {
    if (S.padded && !padding.defined()) {
      const int64_t batch = ids.shape()[0];
      std::vector<double> pad;
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t t = 0; t < S.len; ++t) pad.push_back(S.dead(b, t) ? 1.0 : 0.0);
      padding = tg::constant(tg::tensor(pad, {batch, S.len}).to(tg::boolean));
    }
    opt->zero_grad();
    const tg::Var h = blocks.forward(tok(ids) + pos(positions), mask, padding, true);
    const tg::Var logits = head(ln_f(h));
    tg::cross_entropy(tg::reshape(logits, {targets.shape()[0], S.vocab}), targets).backward();
    opt->step();
  }
};

template <const LmShape& S>
std::pair<tg::Var, tg::Var> lm_batch(bench::SharedRng&, int64_t batch) {
  const auto [ids, next] = bench::token_batch(batch, S.len, S.vocab);
  std::vector<double> x(ids.begin(), ids.end()), y;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < S.len; ++t)
      y.push_back(S.dead(b, t) ? -100.0 : static_cast<double>(next[size_t(b * S.len + t)]));
  return {tg::constant(tg::tensor(x, {batch, S.len}, tg::i64)),
          tg::constant(tg::tensor(y, {batch * S.len}, tg::i64))};
}

const bool registered = [] {
  bench::register_seq_benchmarks<LstmNet<false>, LstmNet<true>, TransformerLM<kTransformerShape>,
                                 lstm_batch, lm_batch<kTransformerShape>>();
  benchmark::RegisterBenchmark(
      "charlm/step", bench::seq_step<TransformerLM<kCharLM>, lm_batch<kCharLM>>, int64_t{128})
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::AddCustomContext("openblas_threads", std::to_string(bench::openblas_threads()));
  return true;
}();

}  // namespace
