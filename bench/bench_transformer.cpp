// Training steps of a decoder-only Transformer language model, float32: token Embedding +
// learned position Embedding -> TransformerEncoder of 2 pre-LN layers (d_model 128, 4 heads,
// feed-forward 512 with GELU, dropout 0) under a causal mask -> LayerNorm -> Linear to the
// vocabulary; cross-entropy on the next token; AdamW (lr 1e-3). A step is zero_grad +
// forward + loss + backward + optimizer step on one fixed batch.
//   transformer/step  tokens [16, 64] over a vocabulary of 96 (issue 16's benchmark shape)
//   charlm/step       tokens [128, 16] over 43 symbols with a key padding mask (the last 4
//                     positions of every other word padded): `tapegrad charlm`'s shape
// No LibTorch twin yet.
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "bench_util.hpp"
#include "cblas_ref.hpp"
#include "tapegrad/tapegrad.hpp"

namespace {

struct Shape {
  int64_t batch, len, vocab;
  bool padded;
};

const Shape kTransformer{16, 64, 96, false};
const Shape kCharLM{128, 16, 43, true};

/// The model, its optimizer and one batch, ready to step.
struct Trainer {
  static constexpr int64_t kD = 128, kHeads = 4, kLayers = 2;
  tg::Rng rng{42};
  tg::Embedding tok, pos;
  tg::TransformerEncoder blocks;
  tg::LayerNorm ln_f{{kD}};
  tg::Linear head;
  std::unique_ptr<tg::AdamW> opt;
  tg::Var ids, positions, mask, padding, targets;
  int64_t rows, vocab;

  explicit Trainer(const Shape& s)
      : tok(s.vocab, kD, rng),
        pos(s.len, kD, rng),
        blocks(
            [this] {
              return std::make_unique<tg::TransformerEncoderLayer>(kD, kHeads, rng, 4 * kD, 0.0,
                                                                   "gelu", 1e-5, true, true);
            },
            kLayers),
        head(kD, s.vocab, rng),
        rows(s.batch * s.len),
        vocab(s.vocab) {
    std::vector<tg::Var> params;
    for (tg::Module* m : std::initializer_list<tg::Module*>{&tok, &pos, &blocks, &ln_f, &head})
      for (const tg::Var& p : m->parameters()) params.push_back(p);
    opt = std::make_unique<tg::AdamW>(params, tg::AdamWOptions{.lr = 1e-3});
    std::vector<double> x, y, pad;
    for (int64_t b = 0; b < s.batch; ++b)
      for (int64_t t = 0; t < s.len; ++t) {
        const bool dead = s.padded && b % 2 == 1 && t >= s.len - 4;
        x.push_back(static_cast<double>((b * 7 + t * 3) % s.vocab));
        y.push_back(dead ? -100.0 : static_cast<double>((b * 7 + t * 3 + 1) % s.vocab));
        pad.push_back(dead ? 1.0 : 0.0);
      }
    ids = tg::constant(tg::tensor(x, {s.batch, s.len}, tg::i64));
    targets = tg::constant(tg::tensor(y, {rows}, tg::i64));
    positions = tg::constant(tg::arange(s.len, tg::i64));
    mask = tg::causal_mask(s.len);
    if (s.padded) padding = tg::constant(tg::tensor(pad, {s.batch, s.len}).to(tg::boolean));
  }

  void step() {
    opt->zero_grad();
    const tg::Var h = blocks.forward(tok(ids) + pos(positions), mask, padding, true);
    const tg::Var logits = head(ln_f(h));
    tg::cross_entropy(tg::reshape(logits, {rows, vocab}), targets).backward();
    opt->step();
  }
};

void bm_step(benchmark::State& state, const Shape* s) {
  if (!bench::start_benchmark(state, "step")) return;
  Trainer t(*s);
  t.step();  // warm-up: optimizer state, allocator
  for (auto _ : state) {
    t.step();
    benchmark::DoNotOptimize(t.head.weight.value().data<float>());
  }
  state.counters["ms_per_step"] = bench::seconds_per();
}

const bool registered = [] {
  auto reg = [](const char* name, auto fn, auto... args) {
    return benchmark::RegisterBenchmark(name, fn, args...)->UseRealTime();
  };
  reg("transformer/step", bm_step, &kTransformer)->Unit(benchmark::kMillisecond);
  reg("charlm/step", bm_step, &kCharLM)->Unit(benchmark::kMillisecond);
  benchmark::AddCustomContext("openblas_threads", std::to_string(bench::openblas_threads()));
  return true;
}();

}  // namespace
