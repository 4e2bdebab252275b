// LibTorch twin of bench/bench_seq.cpp: the same benchmarks, names, counters and batches
// (bench/seq_common.hpp). seq/lstm_layer: torch::nn::LSTM; seq/lstm_cell: a loop over
// torch::nn::LSTMCell; seq/transformer: the pre-LN decoder-only LM with its attention
// written by hand from ops (LibTorch 1.13's C++ TransformerEncoderLayer has no norm_first
// and there is no scaled_dot_product_attention): in_proj Linear(d, 3d) split into heads,
// q scaled, q k^T + the additive causal mask, softmax, times v, out_proj; the same math as
// tapegrad's MultiheadAttention. Gradients are reset to undefined before each step (as
// fashion.cpp); each side keeps its own initial weights. Threads: TG_TORCH_THREADS intra-op
// (the comparison script sets this job's best value).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../bench_util.hpp"
#include "../seq_common.hpp"
#include "torch_main.hpp"

namespace {

namespace nn = torch::nn;
using bench::kLstm;
using bench::kTransformer;

void reset_grads(std::vector<torch::Tensor>& params) {
  for (auto& p : params) p.mutable_grad().reset();
}

template <bool Cell>
struct LstmNet {
  std::conditional_t<Cell, nn::LSTMCell, nn::LSTM> rnn{kLstm.input, kLstm.hidden};
  nn::Linear head{kLstm.hidden, kLstm.classes};
  std::vector<torch::Tensor> params;
  std::unique_ptr<torch::optim::Adam> opt;

  explicit LstmNet(bench::SharedRng&) {
    params = rnn->parameters();
    for (const auto& p : head->parameters()) params.push_back(p);
    opt = std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(1e-3));
  }

  torch::Tensor hidden_states(const torch::Tensor& x) {
    if constexpr (!Cell) {
      return std::get<0>(rnn->forward(x));
    } else {
      std::vector<torch::Tensor> hs;
      std::optional<std::tuple<torch::Tensor, torch::Tensor>> state;
      for (int64_t t = 0; t < x.size(0); ++t) {
        state = state ? rnn->forward(x[t], *state) : rnn->forward(x[t]);
        hs.push_back(std::get<0>(*state));
      }
      return torch::stack(hs, 0);
    }
  }

  void step(const torch::Tensor& x, const torch::Tensor& y) {
    reset_grads(params);
    const torch::Tensor h = hidden_states(x);
    torch::cross_entropy_loss(head(h.reshape({-1, kLstm.hidden})), y).backward();
    opt->step();
  }
};

std::pair<torch::Tensor, torch::Tensor> lstm_batch(bench::SharedRng& g, int64_t batch) {
  auto [x, y] = bench::random_batch(g, kLstm.steps * batch, kLstm.input, kLstm.classes);
  return {torch::from_blob(x.data(), {kLstm.steps, batch, kLstm.input}, torch::kFloat32).clone(),
          torch::from_blob(y.data(), {kLstm.steps * batch}, torch::kLong).clone()};
}

constexpr int64_t kD = kTransformer.d_model, kHeads = kTransformer.heads;

// A pre-LN encoder layer: x + attn(ln1(x)), then + fc2(gelu(fc1(ln2(x)))).
struct BlockImpl : nn::Module {
  nn::LayerNorm ln1{nn::LayerNormOptions({kD})}, ln2{nn::LayerNormOptions({kD})};
  nn::Linear in_proj{kD, 3 * kD}, out_proj{kD, kD};
  nn::Linear fc1{kD, kTransformer.mlp*kD}, fc2{kTransformer.mlp * kD, kD};

  BlockImpl() {
    register_module("ln1", ln1);
    register_module("in_proj", in_proj);
    register_module("out_proj", out_proj);
    register_module("ln2", ln2);
    register_module("fc1", fc1);
    register_module("fc2", fc2);
  }

  torch::Tensor forward(torch::Tensor x, const torch::Tensor& mask) {
    const int64_t b = x.size(0), t = x.size(1), e = kD / kHeads;
    // [B, T, 3, H, E] -> [3, B, H, T, E]
    const torch::Tensor qkv = in_proj(ln1(x)).view({b, t, 3, kHeads, e}).permute({2, 0, 3, 1, 4});
    const torch::Tensor q = qkv[0] * (1.0 / std::sqrt(static_cast<double>(e)));
    const torch::Tensor att = torch::softmax(torch::matmul(q, qkv[1].transpose(-2, -1)) + mask, -1);
    x = x + out_proj(torch::matmul(att, qkv[2]).transpose(1, 2).reshape({b, t, kD}));
    return x + fc2(torch::gelu(fc1(ln2(x))));
  }
};
TORCH_MODULE(Block);

struct TransformerLM {
  nn::Embedding tok{kTransformer.vocab, kD}, pos{kTransformer.len, kD};
  std::vector<Block> blocks;
  nn::LayerNorm ln_f{nn::LayerNormOptions({kD})};
  nn::Linear head{kD, kTransformer.vocab};
  std::vector<torch::Tensor> params;
  std::unique_ptr<torch::optim::AdamW> opt;
  torch::Tensor positions = torch::arange(kTransformer.len, torch::kLong);
  torch::Tensor mask =
      torch::full({kTransformer.len, kTransformer.len}, -std::numeric_limits<float>::infinity())
          .triu(1);

  explicit TransformerLM(bench::SharedRng&) {
    for (int64_t i = 0; i < kTransformer.layers; ++i) blocks.emplace_back();
    auto add = [&](const nn::Module& m) {
      for (const auto& p : m.parameters()) params.push_back(p);
    };
    add(*tok);
    add(*pos);
    for (const Block& b : blocks) add(*b);
    add(*ln_f);
    add(*head);
    opt = std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(1e-3));
  }

  void step(const torch::Tensor& ids, const torch::Tensor& targets) {
    reset_grads(params);
    torch::Tensor h = tok(ids) + pos(positions);
    for (Block& b : blocks) h = b->forward(h, mask);
    const torch::Tensor logits = head(ln_f(h));
    torch::cross_entropy_loss(logits.reshape({-1, kTransformer.vocab}), targets).backward();
    opt->step();
  }
};

std::pair<torch::Tensor, torch::Tensor> lm_batch(bench::SharedRng&, int64_t batch) {
  auto [ids, next] = bench::token_batch(batch, kTransformer.len, kTransformer.vocab);
  return {torch::from_blob(ids.data(), {batch, kTransformer.len}, torch::kLong).clone(),
          torch::from_blob(next.data(), {batch * kTransformer.len}, torch::kLong).clone()};
}

}  // namespace

int main(int argc, char** argv) {
  return bench::torch_main(argc, argv, [] {
    bench::register_seq_benchmarks<LstmNet<false>, LstmNet<true>, TransformerLM, lstm_batch,
                                   lm_batch>();
  });
}
