// `tapegrad charlm`: character-level language models of words (a bigram table, an MLP over
// the previous characters, an LSTM, a GRU, a causal Transformer) trained on a word list by
// the fixed protocol of data/words.hpp, with losses in nats per character, sampled words,
// checkpoints that resume bit for bit, and a JSON summary.

#include "apps/charlm.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "apps/cli.hpp"
#include "apps/json.hpp"
#include "apps/progress.hpp"
#include "apps/run.hpp"
#include "apps/world.hpp"
#include "data/words.hpp"
#include "models/attention.hpp"
#include "models/checkpoint.hpp"
#include "models/cnn_layers.hpp"
#include "models/layers.hpp"
#include "models/rnn.hpp"
#include "ops/activation.hpp"
#include "ops/arith.hpp"
#include "ops/attention.hpp"
#include "ops/loss.hpp"
#include "ops/matmul.hpp"
#include "ops/reduce.hpp"
#include "ops/shape_ops.hpp"
#include "optim/adamw.hpp"
#include "parallel/parallel.hpp"

namespace tg::app {

namespace {

// The model and its sizes; 0 means the model's default (resolved before training and stored
// resolved in checkpoints).
struct LmConfig {
  std::string model = "lstm";
  int64_t embed = 0;    // embedding size (transformer: d_model)
  int64_t hidden = 0;   // hidden units (mlp, lstm, gru)
  int64_t layers = 0;   // recurrent or Transformer layers
  int64_t heads = 0;    // attention heads (transformer)
  int64_t context = 0;  // previous characters seen (mlp)
  double dropout = 0.0;
  double lr = 0.0;
  double weight_decay = 0.01;
  double clip_grad_norm = 0.0;  // the gradients' largest 2-norm per step; 0: no clipping
  int64_t epochs = 0;
  int64_t batch = 128;
  uint64_t seed = 0;
  int64_t positions = 0;  // longest word + 1 of the list (the Transformer's positions)
};

struct Defaults {
  const char* name;
  int64_t embed, hidden, layers, heads, context, epochs;
  double lr;
};
// NOTE: the defaults are chosen to stay within 5 minutes of training on this project's
// 2-core reference machine (docs/sequence.md has the figures).
constexpr Defaults kDefaults[] = {
    {"bigram", 0, 0, 0, 0, 1, 2, 0.05},        {"mlp", 24, 256, 1, 0, 4, 6, 3e-3},
    {"lstm", 64, 256, 1, 0, 0, 6, 3e-3},       {"gru", 64, 256, 1, 0, 0, 6, 3e-3},
    {"transformer", 128, 0, 2, 4, 0, 6, 1e-3},
};

const Defaults& defaults_of(const std::string& model) {
  for (const auto& d : kDefaults)
    if (model == d.name) return d;
  throw Error("charlm: unknown model '" + model +
              "' (choose from bigram, mlp, lstm, gru, transformer)");
}

void resolve_defaults(LmConfig& c) {
  const Defaults& d = defaults_of(c.model);
  auto pick = [](int64_t& v, int64_t def) {
    if (v == 0) v = def;
  };
  pick(c.embed, d.embed);
  pick(c.hidden, d.hidden);
  pick(c.layers, d.layers);
  pick(c.heads, d.heads);
  pick(c.context, d.context);
  pick(c.epochs, d.epochs);
  if (c.lr == 0) c.lr = d.lr;
  if (c.epochs < 1 || c.batch < 1) throw Error("charlm: --epochs and --batch must be at least 1");
  if (c.embed < 0 || c.hidden < 0 || c.layers < 0 || c.heads < 0 || c.context < 0)
    throw Error("charlm: sizes must be positive");
  if (!(c.lr > 0 && std::isfinite(c.lr)))
    throw Error("charlm: --lr must be positive, got " + std::to_string(c.lr));
  if (!(c.dropout >= 0 && c.dropout < 1))
    throw Error("charlm: --dropout must be in [0, 1), got " + std::to_string(c.dropout));
  if (!(c.clip_grad_norm >= 0 && std::isfinite(c.clip_grad_norm)))
    throw Error("charlm: --clip-grad-norm must be a finite number >= 0 (0: no clipping), got " +
                std::to_string(c.clip_grad_norm));
}

// ---- the models: ids [B, T] (i64) -> logits [B, T, V] ----

// A language model; `own_rng` is a generator the model keeps inside (a recurrent layer's
// dropout), saved in checkpoints so a resumed run draws what the uninterrupted one would.
class CharLM : public Layer {
 public:
  virtual Rng* own_rng() { return nullptr; }
};

// A table of next-character logits per character (the neural form of the count bigram).
class BigramLM : public CharLM {
 public:
  BigramLM(int64_t vocab, Rng& rng) : table(vocab, vocab, rng) { register_module("table", table); }
  Var forward(const Var& ids) override { return table(ids); }
  std::string type_name() const override { return "BigramLM"; }
  Embedding table;
};

// Bengio et al. 2003: the embeddings of the previous `context` tokens (the boundary token
// before the word's start), concatenated, through a tanh hidden layer.
class MlpLM : public CharLM {
 public:
  MlpLM(int64_t vocab, const LmConfig& c, Rng& rng)
      : k_(c.context),
        emb(vocab, c.embed, rng),
        fc1(c.context * c.embed, c.hidden, rng),
        fc2(c.hidden, vocab, rng) {
    register_module("emb", emb);
    register_module("fc1", fc1);
    register_module("fc2", fc2);
  }
  Var forward(const Var& ids) override {
    const int64_t b = ids.shape()[0], t = ids.shape()[1];
    const Var padded = pad(ids, {k_ - 1, 0});
    std::vector<Var> windows;
    for (int64_t j = 0; j < k_; ++j) windows.push_back(narrow(padded, 1, j, t));
    const Var e = emb(stack(windows, 2));  // [B, T, k, E]
    return fc2(tg::tanh(fc1(reshape(e, {b, t, -1}))));
  }
  std::string type_name() const override { return "MlpLM"; }
  std::string extra_repr() const override { return "context=" + std::to_string(k_); }

 private:
  int64_t k_;

 public:
  Embedding emb;
  Linear fc1, fc2;
};

// A decoder-only Transformer (GPT-style): token and learned position embeddings, pre-LN
// encoder layers (GELU, feed-forward 4 x d) under the causal mask, a final LayerNorm and a
// linear head. Padding follows each word, so the causal mask alone keeps it out of every
// prediction that counts.
class TransformerLM : public CharLM {
 public:
  TransformerLM(int64_t vocab, const LmConfig& c, Rng& rng, Rng& layer_rng)
      : tok(vocab, c.embed, rng),
        pos(c.positions, c.embed, rng),
        encoder(
            [&c, &layer_rng] {
              return std::make_unique<TransformerEncoderLayer>(
                  c.embed, c.heads, layer_rng, 4 * c.embed, c.dropout, "gelu", 1e-5,
                  /*batch_first=*/true, /*norm_first=*/true);
            },
            c.layers),
        norm({c.embed}),
        head(c.embed, vocab, rng) {
    register_module("tok", tok);
    register_module("pos", pos);
    register_module("encoder", encoder);
    register_module("norm", norm);
    register_module("head", head);
  }
  Var forward(const Var& ids) override {
    const int64_t t = ids.shape()[1];
    if (t > pos.weight.shape()[0])
      throw ShapeError("TransformerLM: " + std::to_string(t) + " tokens, more than its " +
                       std::to_string(pos.weight.shape()[0]) + " positions");
    const Var x = tok(ids) + pos(constant(arange(t, i64)));
    return head(norm(encoder.forward(x, causal_mask(t, x.dtype()), {}, /*is_causal=*/true)));
  }
  std::string type_name() const override { return "TransformerLM"; }
  Embedding tok, pos;
  TransformerEncoder encoder;
  LayerNorm norm;
  Linear head;
};

// Embedding -> LSTM or GRU (batch_first, --layers, dropout between layers) -> Linear.
class RecurrentLM : public CharLM {
 public:
  RecurrentLM(int64_t vocab, const LmConfig& c, Rng& rng)
      : emb(vocab, c.embed, rng), head(c.hidden, vocab, rng) {
    register_module("emb", emb);
    RecurrentOptions o;
    o.num_layers = c.layers;
    o.batch_first = true;
    o.dropout = c.dropout;
    if (c.model == "lstm") {
      lstm = std::make_unique<LSTM>(c.embed, c.hidden, rng, o);
      register_module("rnn", *lstm);
    } else {
      gru = std::make_unique<GRU>(c.embed, c.hidden, rng, o);
      register_module("rnn", *gru);
    }
    register_module("head", head);
  }
  Var forward(const Var& ids) override {
    const Var x = emb(ids);
    return head(lstm ? std::get<0>(lstm->forward(x)) : std::get<0>(gru->forward(x)));
  }
  Rng* own_rng() override { return lstm ? &lstm->dropout_rng() : &gru->dropout_rng(); }
  std::string type_name() const override { return "RecurrentLM"; }
  Embedding emb;
  std::unique_ptr<LSTM> lstm;
  std::unique_ptr<GRU> gru;
  Linear head;
};

std::unique_ptr<CharLM> build_lm(const LmConfig& c, int64_t vocab, Rng& rng, Rng& layer_rng) {
  if (c.model == "lstm" || c.model == "gru") return std::make_unique<RecurrentLM>(vocab, c, rng);
  if (c.model == "bigram") return std::make_unique<BigramLM>(vocab, rng);
  if (c.model == "mlp") return std::make_unique<MlpLM>(vocab, c, rng);
  if (c.model == "transformer") return std::make_unique<TransformerLM>(vocab, c, rng, layer_rng);
  throw Error("charlm: unknown model '" + c.model + "'");
}

// ---- data, loss, samples ----

std::vector<const data::Word*> pointers(const std::vector<data::Word>& words,
                                        const std::vector<size_t>& order, size_t begin,
                                        size_t end) {
  std::vector<const data::Word*> out;
  for (size_t i = begin; i < end; ++i) out.push_back(&words[order.empty() ? i : order[i]]);
  return out;
}

Var lm_loss(CharLM& model, const data::WordBatch& b, Reduction reduction) {
  const Var logits = model(constant(b.inputs));
  const int64_t v = logits.shape()[2];
  CrossEntropyOptions o;
  o.reduction = reduction;
  return cross_entropy(reshape(logits, {-1, v}), constant(b.targets.reshape({-1})), o);
}

// Mean negative log-likelihood per predicted character (nats), in eval mode, no recording.
// Every rank of a data-parallel run calls it: each takes every p-th batch of 512 words and
// the sums are added over the ranks (Note [Data-parallel charlm]).
double evaluate_loss(CharLM& model, const std::vector<data::Word>& words,
                     const data::CharVocab& vocab) {
  if (words.empty()) return std::nan("");
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  std::vector<double> totals{0, 0};  // loss sum, predictions
  constexpr size_t kBatch = 512;
  const auto step = kBatch * static_cast<size_t>(world::size());
  for (size_t i = kBatch * static_cast<size_t>(world::rank()); i < words.size(); i += step) {
    const auto b =
        data::make_word_batch(pointers(words, {}, i, std::min(words.size(), i + kBatch)), vocab);
    totals[0] += lm_loss(model, b, Reduction::sum).item();
    totals[1] += static_cast<double>(b.predictions);
  }
  model.train(was_training);
  world::sum(totals);
  return totals[0] / totals[1];
}

// The count bigram with add-one smoothing, fitted on `train`: nats per character on `test`.
double bigram_baseline(const std::vector<data::Word>& train, const std::vector<data::Word>& test,
                       const data::CharVocab& vocab) {
  const auto v = static_cast<size_t>(vocab.size());
  std::vector<double> counts(v * v, 1.0), rows(v, static_cast<double>(v));
  auto each_pair = [&](const data::Word& w, auto&& f) {
    int64_t prev = 0;
    for (char32_t ch : w) {
      const int64_t id = vocab.id(ch);
      f(prev, id);
      prev = id;
    }
    f(prev, 0);
  };
  for (const auto& w : train)
    each_pair(w, [&](int64_t a, int64_t b) {
      counts[static_cast<size_t>(a) * v + static_cast<size_t>(b)] += 1;
      rows[static_cast<size_t>(a)] += 1;
    });
  double nll = 0;
  int64_t n = 0;
  for (const auto& w : test)
    each_pair(w, [&](int64_t a, int64_t b) {
      nll -= std::log(counts[static_cast<size_t>(a) * v + static_cast<size_t>(b)] /
                      rows[static_cast<size_t>(a)]);
      ++n;
    });
  return nll / static_cast<double>(n);
}

// `n` new words drawn one character at a time from the model's softmax (eval mode), each at
// most `max_symbols` long.
std::vector<std::string> sample_words(CharLM& model, const data::CharVocab& vocab, int64_t n,
                                      int64_t max_symbols, Rng& rng) {
  std::vector<std::string> out;
  if (n <= 0) return out;
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  std::vector<std::vector<int64_t>> seqs(static_cast<size_t>(n), std::vector<int64_t>{0});
  std::vector<bool> done(static_cast<size_t>(n), false);
  for (int64_t step = 0; step < max_symbols; ++step) {
    Tensor ids = zeros({n, step + 1}, i64);
    for (int64_t r = 0; r < n; ++r)
      std::copy(seqs[static_cast<size_t>(r)].begin(), seqs[static_cast<size_t>(r)].end(),
                ids.data<int64_t>() + r * (step + 1));
    const Var logits = model(constant(ids));
    const int64_t v = logits.shape()[2];
    const Tensor p = softmax(narrow(logits, 1, step, 1), -1).value().to(f64);
    const double* pp = p.data<double>();
    bool all_done = true;
    for (int64_t r = 0; r < n; ++r) {
      auto& seq = seqs[static_cast<size_t>(r)];
      if (done[static_cast<size_t>(r)]) {
        seq.push_back(0);
        continue;
      }
      double u = rng.uniform(), acc = 0;
      int64_t pick = v - 1;
      for (int64_t k = 0; k < v; ++k) {
        acc += pp[r * v + k];
        if (u < acc) {
          pick = k;
          break;
        }
      }
      seq.push_back(pick);
      if (pick == 0) done[static_cast<size_t>(r)] = true;
      all_done = all_done && done[static_cast<size_t>(r)];
    }
    if (all_done) break;
  }
  model.train(was_training);
  for (auto& s : seqs) {
    std::vector<int64_t> ids;
    for (size_t k = 1; k < s.size() && s[k] != 0; ++k) ids.push_back(s[k]);
    out.push_back(vocab.decode(ids));
  }
  return out;
}

// ---- checkpoints ----

struct LmHistory {
  std::vector<double> train_loss, dev_loss, seconds;
};

void put_config(NpzArchive& a, const LmConfig& c) {
  a.put_string("charlm.model", c.model);
  a.put_i64("charlm.sizes", {c.embed, c.hidden, c.layers, c.heads, c.context, c.positions});
  a.put_scalar("charlm.dropout", c.dropout);
  a.put_scalar("charlm.lr", c.lr);
  a.put_scalar("charlm.weight_decay", c.weight_decay);
  a.put_scalar("charlm.clip_grad_norm", c.clip_grad_norm);
  a.put_int("charlm.epochs", c.epochs);
  a.put_int("charlm.batch", c.batch);
  a.put_u64("charlm.seed", {c.seed});
}

LmConfig get_config(const NpzArchive& a) {
  LmConfig c;
  c.model = a.string("charlm.model");
  const auto s = a.i64s("charlm.sizes");
  if (s.size() != 6)
    throw IoError(a.source() + ": charlm.sizes has " + std::to_string(s.size()) +
                  " entries, not 6");
  c.embed = s[0], c.hidden = s[1], c.layers = s[2], c.heads = s[3], c.context = s[4],
  c.positions = s[5];
  c.dropout = a.scalar("charlm.dropout");
  c.lr = a.scalar("charlm.lr");
  c.weight_decay = a.scalar("charlm.weight_decay");
  // Checkpoints written before --clip-grad-norm existed: no clipping.
  if (a.contains("charlm.clip_grad_norm")) c.clip_grad_norm = a.scalar("charlm.clip_grad_norm");
  c.epochs = a.integer("charlm.epochs");
  c.batch = a.integer("charlm.batch");
  const auto seed = a.u64s("charlm.seed");
  if (seed.size() != 1) throw IoError(a.source() + ": charlm.seed must hold one value");
  c.seed = seed[0];
  defaults_of(c.model);
  return c;
}

std::vector<int64_t> symbol_codes(const data::CharVocab& v) {
  return {v.symbols().begin(), v.symbols().end()};
}

// One value per epoch done in each series (an IoError otherwise: nothing loads).
LmHistory get_history(const NpzArchive& a) {
  const int64_t epochs = read_epoch(a);
  return {read_epoch_series(a, "history.train_loss", epochs),
          read_epoch_series(a, "history.dev_loss", epochs),
          read_epoch_series(a, "history.seconds", epochs)};
}

void save_lm_checkpoint(const std::string& path, const LmConfig& c, const data::CharVocab& vocab,
                        CharLM& model, const world::DataParallel& optimizer, int64_t epoch,
                        const Rng& shuffle_rng, const Rng& dropout_rng, const LmHistory& h) {
  NpzArchive a;
  put_config(a, c);
  a.put_i64("charlm.symbols", symbol_codes(vocab));
  write_parameters(model, a, "model.");
  optimizer.state_dict(a, "optim.");  // the whole optimizer's, sharded or not
  a.put_int("epoch", epoch);
  write_rng(shuffle_rng, a, "rng.");
  write_rng(dropout_rng, a, "dropout_rng.");
  if (Rng* own = model.own_rng()) write_rng(*own, a, "model_rng.");
  auto put = [&](const std::string& name, const std::vector<double>& v) {
    a.put(name, tensor(v, {static_cast<int64_t>(v.size())}, f64));
  };
  put("history.train_loss", h.train_loss);
  put("history.dev_loss", h.dev_loss);
  put("history.seconds", h.seconds);
  a.save(path);
}

// ---- the command ----

struct CharlmOptions {
  LmConfig config;
  std::string words = data::kAmericanEnglish;
  std::string out, json, metrics, resume;
  int64_t samples = 10;
  int threads = 0;
  bool no_progress = false;
  bool no_shard_optimizer = false;
  bool epochs_given = false;
  std::set<std::string> given;  // the options on the command line
};

// Note [Data-parallel charlm]
// As `tapegrad train` (Note [Data-parallel train] in apps/train.cpp): with p ranks --batch
// stays the global batch; every rank draws the one-process run's order of the epoch from the
// same generator and of each global batch of m words takes words [r m / p, (r + 1) m / p)
// (world::rows_of). The loss is the mean over predicted characters, so a rank's mean over its
// own N_r predictions is scaled by N_r p / N, N the global batch's predictions (every rank
// has every word, so it counts N itself): the wrapper's average over the ranks is then the
// global batch's mean, also when the words or the batch split unevenly. A rank with no words
// in the last batch takes a zero loss and still joins the reduction. Dropout masks are drawn
// per rank (the generators are reseeded from the seed, the epoch and the rank each epoch), so
// runs with dropout do not follow the one-process run. Dev and test losses are sums over
// every rank's share of the batches; the order does not depend on p, so a run resumes with
// another world size. Rank 0 alone prints, samples and writes. The optimizer is sharded over
// the ranks unless --no-shard-optimizer (world::DataParallel, docs/distributed.md), with
// --clip-grad-norm clipping the global norm over every rank's slices; either way a checkpoint
// holds the whole optimizer's state, which resumes on any world size, sharded or not.

// What every rank of a data-parallel run must agree on (world::check_same).
std::vector<std::string> run_description(const LmConfig& c, const data::WordSplit& split,
                                         const data::CharVocab& vocab, int64_t start, bool shard) {
  auto num = [](double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", x);
    return std::string(buf);
  };
  return {"model " + c.model + " embed " + std::to_string(c.embed) + " hidden " +
              std::to_string(c.hidden) + " layers " + std::to_string(c.layers) + " heads " +
              std::to_string(c.heads) + " context " + std::to_string(c.context) + " dropout " +
              num(c.dropout),
          "lr " + num(c.lr) + " weight_decay " + num(c.weight_decay) + " clip_grad_norm " +
              num(c.clip_grad_norm) + " epochs " + std::to_string(c.epochs) + " batch " +
              std::to_string(c.batch) + " seed " + std::to_string(c.seed) + " start " +
              std::to_string(start) + " sharded " + std::to_string(shard),
          "words: " + std::to_string(split.train.size()) + " train, " +
              std::to_string(split.dev.size()) + " dev, " + std::to_string(split.test.size()) +
              " test, " + std::to_string(vocab.size()) + " tokens, " + std::to_string(c.positions) +
              " positions"};
}

// The number of characters the words order[begin, end) of `words` predict (n + 1 each).
int64_t predictions_of(const std::vector<data::Word>& words, const std::vector<size_t>& order,
                       size_t begin, size_t end) {
  int64_t n = 0;
  for (size_t i = begin; i < end; ++i) n += static_cast<int64_t>(words[order[i]].size()) + 1;
  return n;
}

void run_charlm(CharlmOptions o) {
  const int ranks = world::size();
  const bool root = world::is_root();
  const std::string out = o.out.empty() ? default_run_dir("charlm") : o.out;
  if (root) {  // rank 0 alone writes (Note [Data-parallel charlm])
    prepare_output_dir(o.out.empty() ? std::filesystem::path(out).parent_path().string() : out);
    if (!o.json.empty()) prepare_output_file(o.json);
    if (!o.metrics.empty()) prepare_output_file(o.metrics, /*append=*/true);
  }
  if (o.samples < 0) throw Error("charlm: --samples must be at least 0");
  LmConfig c = o.config;
  NpzArchive resumed;
  if (!o.resume.empty()) {
    resumed = NpzArchive::load(o.resume);
    if (!resumed.contains("charlm.model"))
      throw IoError(o.resume + ": not a checkpoint of `tapegrad charlm`");
    const LmConfig asked = c;
    c = get_config(resumed);
    if (o.epochs_given) c.epochs = asked.epochs;
    const auto n = [](int64_t v) { return std::to_string(v); };
    check_resume_options(
        o.resume, o.given,
        {{"--model", asked.model, c.model},
         {"--embed", n(asked.embed), n(c.embed)},
         {"--hidden", n(asked.hidden), n(c.hidden)},
         {"--layers", n(asked.layers), n(c.layers)},
         {"--heads", n(asked.heads), n(c.heads)},
         {"--context", n(asked.context), n(c.context)},
         {"--dropout", exact_number(asked.dropout), exact_number(c.dropout)},
         {"--lr", exact_number(asked.lr), exact_number(c.lr)},
         {"--weight-decay", exact_number(asked.weight_decay), exact_number(c.weight_decay)},
         {"--clip-grad-norm", exact_number(asked.clip_grad_norm), exact_number(c.clip_grad_norm)},
         {"--batch", n(asked.batch), n(c.batch)},
         {"--seed", std::to_string(asked.seed), std::to_string(c.seed)}});
  }
  from_checkpoint(o.resume, [&] { resolve_defaults(c); });
  if (c.batch < ranks)
    throw Error("charlm: --batch " + std::to_string(c.batch) +
                " (the global batch) is smaller than the " + std::to_string(ranks) + " ranks");
  // Ranks on one machine share its cores: unless told otherwise, each takes its share.
  o.threads = world::threads_per_rank(o.threads);
  if (o.threads > 0) {
    set_blas_threads(o.threads);
    set_num_threads(o.threads);
  }

  const auto t_data = Clock::now();
  const std::vector<data::Word> all = data::read_words(o.words);
  const data::CharVocab vocab(all);
  size_t longest = 0;
  for (const auto& w : all) longest = std::max(longest, w.size());
  const data::WordSplit split = data::split_words(all, c.seed);
  if (split.train.empty() || split.dev.empty() || split.test.empty())
    throw Error("charlm: " + o.words + " has " + std::to_string(all.size()) +
                " words, too few for a train / dev / test split (10 at least)");
  if (!o.resume.empty()) {
    if (resumed.i64s("charlm.symbols") != symbol_codes(vocab) ||
        c.positions != static_cast<int64_t>(longest) + 1)
      throw Error("charlm: " + o.words + " is not the word list " + o.resume +
                  " was trained on (its symbols or longest word differ)");
  }
  c.positions = static_cast<int64_t>(longest) + 1;
  // Only rank 0 prints or writes the count bigram's loss.
  const double baseline = root ? bigram_baseline(split.train, split.test, vocab) : std::nan("");

  // Initialization draws from init_rng; the layers that own dropout (recurrent and
  // Transformer layers) also initialize from dropout_rng, which is saved in checkpoints.
  Rng init_rng(c.seed), shuffle_rng(c.seed + 1), dropout_rng(c.seed + 2);
  std::unique_ptr<CharLM> model;
  from_checkpoint(o.resume, [&] { model = build_lm(c, vocab.size(), init_rng, dropout_rng); });
  AdamWOptions ao;
  ao.lr = c.lr;
  ao.weight_decay = c.weight_decay;
  auto make_optimizer = [ao](std::vector<Var> p) -> std::unique_ptr<Optimizer> {
    return std::make_unique<AdamW>(std::move(p), ao);
  };
  int64_t start = 0;
  LmHistory h;
  if (!o.resume.empty()) {
    read_parameters(*model, resumed, "model.");
    // The file's optimizer state is checked now, before any collective; it is loaded into
    // the optimizer that steps once that is built.
    make_optimizer(model->parameters())->load_state_dict(resumed, "optim.");
    read_rng(shuffle_rng, resumed, "rng.");
    read_rng(dropout_rng, resumed, "dropout_rng.");
    if (Rng* own = model->own_rng()) read_rng(*own, resumed, "model_rng.");
    start = read_epoch(resumed);
    h = get_history(resumed);
  }
  const bool shard = ranks > 1 && !o.no_shard_optimizer;
  world::check_same("run configurations or data", run_description(c, split, vocab, start, shard));
  // Rank 0's weights on every rank; the optimizer that steps.
  world::DataParallel data_parallel(*model, make_optimizer, shard);
  if (!o.resume.empty()) data_parallel.load_state_dict(resumed, "optim.");
  const std::string ckpt = out + "/checkpoint.npz";
  if (root) {
    prepare_output_dir(out);
    if (o.resume.empty()) write_text(out + "/metrics.jsonl", "");
  }
  // Only rank 0 prints.
  auto say = [root](const char* fmt, auto... args) {
    if (root) std::printf(fmt, args...);
  };

  say("tapegrad charlm: %s: %zu words (%zu train / %zu dev / %zu test), %lld tokens (%zu "
      "symbols + the word boundary), read in %.1fs\n",
      o.words.c_str(), all.size(), split.train.size(), split.dev.size(), split.test.size(),
      static_cast<long long>(vocab.size()), vocab.symbols().size(),
      std::chrono::duration<double>(Clock::now() - t_data).count());
  say("count bigram (add-one smoothing) test loss: %.4f nats/char\n", baseline);
  say("model: %s\n%lld parameters; AdamW lr %g weight decay %g, batch %lld words, seed "
      "%llu, threads: BLAS %d, tapegrad %d\n",
      model->str().c_str(), static_cast<long long>(model->num_parameters()), c.lr, c.weight_decay,
      static_cast<long long>(c.batch), static_cast<unsigned long long>(c.seed), blas_threads(),
      num_threads());
  if (c.clip_grad_norm > 0) say("gradients clipped to a global 2-norm of %g\n", c.clip_grad_norm);
  if (ranks > 1)
    say("data parallel: %d ranks, %lld words of each batch of %lld per rank, optimizer %s\n", ranks,
        static_cast<long long>(c.batch / ranks), static_cast<long long>(c.batch),
        shard ? "sharded" : "on every rank");
  if (!o.resume.empty())
    say("resuming %s after epoch %lld\n", o.resume.c_str(), static_cast<long long>(start));
  say("output: %s\n", out.c_str());

  const auto params = model->parameters();
  const size_t n_train = split.train.size();
  const auto batches = static_cast<int64_t>((n_train + static_cast<size_t>(c.batch) - 1) /
                                            static_cast<size_t>(c.batch));
  // Every rank, every batch: clipping a sharded optimizer's gradients and its step are
  // collectives.
  auto clip_and_step = [&] {
    if (c.clip_grad_norm > 0) data_parallel.clip_grad_norm(c.clip_grad_norm);
    data_parallel.step();
  };
  for (int64_t epoch = start; epoch < c.epochs; ++epoch) {
    model->train();
    std::vector<size_t> order(n_train);
    for (size_t i = 0; i < n_train; ++i) order[i] = i;
    for (size_t i = n_train; i > 1; --i) std::swap(order[i - 1], order[shuffle_rng.below(i)]);
    if (ranks > 1) {  // per-rank dropout masks (Note [Data-parallel charlm])
      const uint64_t s = c.seed * 1000003 + static_cast<uint64_t>(epoch) * 1009 +
                         static_cast<uint64_t>(world::rank());
      dropout_rng.seed_with(s);
      if (Rng* own = model->own_rng()) own->seed_with(s + 7919);
    }
    Progress progress(!o.no_progress && root, epoch + 1, c.epochs, batches);
    const auto t0 = Clock::now();
    double loss_sum = 0;
    int64_t predictions = 0, seen = 0;
    for (int64_t bi = 0; bi < batches; ++bi) {
      const size_t begin = static_cast<size_t>(bi * c.batch);
      const size_t end = std::min(n_train, begin + static_cast<size_t>(c.batch));
      const auto [lo, hi] = world::rows_of(static_cast<int64_t>(end - begin));
      data_parallel.zero_grad();
      if (lo == hi) {
        // No words for this rank in the last batch: a zero loss, so it still joins the sum.
        mul_scalar(sum(params[0]), 0.0).backward();
        clip_and_step();
        continue;
      }
      const auto b =
          data::make_word_batch(pointers(split.train, order, begin + static_cast<size_t>(lo),
                                         begin + static_cast<size_t>(hi)),
                                vocab);
      Var loss = lm_loss(*model, b, Reduction::mean);
      // This rank's share of the global batch's mean (Note [Data-parallel charlm]).
      const double share =
          ranks == 1 ? 1.0
                     : static_cast<double>(b.predictions * ranks) /
                           static_cast<double>(predictions_of(split.train, order, begin, end));
      (share == 1.0 ? loss : mul_scalar(loss, share)).backward();
      clip_and_step();
      const double l = loss.item();
      if (!std::isfinite(l))
        throw Error("charlm: the loss became " + std::to_string(l) + " at epoch " +
                    std::to_string(epoch + 1) + " batch " + std::to_string(bi + 1) +
                    " (learning rate too high?)");
      loss_sum += l * static_cast<double>(b.predictions);
      predictions += b.predictions;
      seen += b.inputs.shape()[0];
      progress.update(bi + 1, loss_sum / static_cast<double>(predictions), seen);
    }
    // The epoch's figures over every rank's words.
    std::vector<double> totals{loss_sum, static_cast<double>(predictions)};
    world::sum(totals);
    loss_sum = totals[0];
    predictions = static_cast<int64_t>(totals[1]);
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    progress.finish();
    const double dev = evaluate_loss(*model, split.dev, vocab);
    h.train_loss.push_back(loss_sum / static_cast<double>(predictions));
    h.dev_loss.push_back(dev);
    h.seconds.push_back(seconds);
    say("epoch %lld/%lld  train loss %.4f  dev loss %.4f nats/char  %.1fs\n",
        static_cast<long long>(epoch + 1), static_cast<long long>(c.epochs), h.train_loss.back(),
        dev, seconds);
    std::fflush(stdout);
    const std::string line = Json::object({{"epoch", Json::integer(epoch + 1)},
                                           {"train_loss", Json::number(h.train_loss.back())},
                                           {"dev_loss", Json::number(dev)},
                                           {"seconds", Json::number(seconds)}})
                                 .str();
    data_parallel.consolidate_state_dict();  // every rank, before rank 0 writes
    if (root) {
      append_line(out + "/metrics.jsonl", line);
      if (!o.metrics.empty()) append_line(o.metrics, line);
      save_lm_checkpoint(ckpt, c, vocab, *model, data_parallel, epoch + 1, shuffle_rng, dropout_rng,
                         h);
    }
  }
  if (start >= c.epochs)
    say("nothing to do: the checkpoint already has %lld of %lld epochs\n",
        static_cast<long long>(start), static_cast<long long>(c.epochs));

  const double test = evaluate_loss(*model, split.test, vocab);
  if (!root) return;
  Rng sample_rng(c.seed + 3);
  const auto samples = sample_words(*model, vocab, o.samples, c.positions - 1, sample_rng);
  double total_seconds = 0;
  for (double s : h.seconds) total_seconds += s;
  std::printf("\ntest loss %.4f nats/char (count bigram %.4f); %.1fs of training\n", test, baseline,
              total_seconds);
  if (!samples.empty()) {
    std::printf("samples:");
    for (const auto& s : samples) std::printf(" %s", s.c_str());
    std::printf("\n");
  }
  std::printf("checkpoint: %s\n", ckpt.c_str());
  if (!o.json.empty()) {
    std::vector<Json> js;
    for (const auto& s : samples) js.push_back(Json::string(s));
    write_text(
        o.json,
        Json::object(
            {{"model", Json::string(c.model)},
             {"train_loss",
              Json::number(h.train_loss.empty() ? std::nan("") : h.train_loss.back())},
             {"dev_loss", Json::number(h.dev_loss.empty() ? std::nan("") : h.dev_loss.back())},
             {"test_loss", Json::number(test)},
             {"bigram_test_loss", Json::number(baseline)},
             {"seconds", Json::number(total_seconds)},
             {"samples", Json::array(js)}})
                .str() +
            "\n");
  }
}

}  // namespace

bool is_charlm_checkpoint(const NpzArchive& a) { return a.contains("charlm.model"); }

void inspect_charlm(const NpzArchive& a, const std::string& path) {
  const LmConfig c = get_config(a);
  const auto codes = a.i64s("charlm.symbols");
  std::vector<char32_t> symbols;
  for (int64_t s : codes) symbols.push_back(static_cast<char32_t>(s));
  const auto vocab = data::CharVocab::from_symbols(symbols);
  Rng rng(0), layer_rng(1);
  std::unique_ptr<CharLM> model;
  from_checkpoint(path, [&] { model = build_lm(c, vocab.size(), rng, layer_rng); });
  read_parameters(*model, a, "model.");
  const LmHistory h = get_history(a);
  std::printf("%s\n", path.c_str());
  std::printf("charlm model %s trained %lld of %lld epochs; AdamW lr %g, batch %lld, seed %llu\n",
              c.model.c_str(), static_cast<long long>(read_epoch(a)),
              static_cast<long long>(c.epochs), c.lr, static_cast<long long>(c.batch),
              static_cast<unsigned long long>(c.seed));
  std::printf("vocabulary: %lld tokens (the word boundary and %s)\n",
              static_cast<long long>(vocab.size()),
              data::to_utf8({symbols.begin(), symbols.end()}).c_str());
  if (!h.dev_loss.empty())
    std::printf("last epoch: train loss %.4f, dev loss %.4f nats/char\n", h.train_loss.back(),
                h.dev_loss.back());
  std::printf("\nmodel: %s\n\n", model->str().c_str());
  print_parameter_table(*model);
}

void add_charlm(CLI::App& app) {
  auto o = std::make_shared<CharlmOptions>();
  CLI::App* cmd = app.add_subcommand(
      "charlm",
      "Train a character-level language model of words (bigram, mlp, lstm, gru, transformer) "
      "on a word list; losses in nats per character, sampled words");
  LmConfig& c = o->config;
  cmd->add_option("--model", c.model,
                  "bigram (a table of next-character logits), mlp (the previous --context "
                  "characters), lstm, gru, transformer (causal, pre-LN, GELU)")
      ->capture_default_str()
      ->check(CLI::IsMember({"bigram", "mlp", "lstm", "gru", "transformer"}));
  cmd->add_option("--words", o->words, "word list, one word per line (UTF-8)")
      ->capture_default_str();
  cmd->add_option("--embed", c.embed, "embedding size (transformer: d_model); default per model")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--hidden", c.hidden, "hidden units (mlp, lstm, gru); default per model")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--layers", c.layers, "recurrent / Transformer layers; default per model")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--heads", c.heads, "attention heads (transformer); default 4")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--context", c.context, "characters the mlp sees; default 4")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--dropout", c.dropout,
                  "dropout (between recurrent layers; in Transformer layers)")
      ->capture_default_str();
  cmd->add_option("--lr", c.lr, "AdamW learning rate; default per model")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--weight-decay", c.weight_decay, "AdamW weight decay")->capture_default_str();
  cmd->add_option("--clip-grad-norm", c.clip_grad_norm,
                  "clip the gradients to this global 2-norm each step "
                  "(torch.nn.utils.clip_grad_norm_; 0: no clipping)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--epochs", c.epochs, "epochs (with --resume: the new total); default per model")
      ->check(CLI::PositiveNumber)
      ->each([o](const std::string&) { o->epochs_given = true; });
  cmd->add_option("--batch", c.batch, "words per mini-batch")->capture_default_str();
  cmd->add_option("--seed", c.seed, "seed of the split, initialization, order and samples")
      ->capture_default_str();
  cmd->add_option("--samples", o->samples, "new words to sample at the end")->capture_default_str();
  cmd->add_option("--threads", o->threads, "threads of OpenBLAS and of tapegrad's pool")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--out", o->out,
                  "folder for checkpoint and metrics (default: runs/<time>-charlm)");
  cmd->add_option("--json", o->json, "write the final figures as JSON to this file");
  cmd->add_option("--metrics", o->metrics, "also append one JSON object per epoch to this file");
  cmd->add_option("--resume", o->resume, "continue the run saved in this checkpoint");
  cmd->add_flag("--no-progress", o->no_progress, "no progress bar / progress lines");
  cmd->add_flag("--no-shard-optimizer", o->no_shard_optimizer,
                "under mpirun: every rank keeps the whole optimizer state and does the whole "
                "update (default: each rank keeps and updates 1/N of it, ZeRO stage 1)");
  cmd->callback([o, cmd] {
    o->given = given_options(*cmd);
    run_charlm(*o);
  });
}

}  // namespace tg::app
