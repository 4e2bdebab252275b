#include "apps/run.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <numeric>

#include "apps/world.hpp"
#include "models/checkpoint.hpp"
#include "models/cnn_layers.hpp"
#include "models/layers.hpp"
#include "ops/activation.hpp"
#include "optim/adagrad.hpp"
#include "optim/adam.hpp"
#include "optim/adamw.hpp"
#include "optim/rmsprop.hpp"
#include "optim/sgd.hpp"

namespace tg::app {

namespace {
// NOTE: FROZEN. Checkpoints written before activations were stored by name (up to main
// 5623eec) hold config.activation, an index into this list. Never change it: reordering,
// inserting or removing a name changes what those files mean. New activations go in the
// registry (models/activations.cpp), never here.
const std::vector<std::string> kLegacyActivationCodes{"relu", "sigmoid", "tanh"};
// NOTE: APPEND ONLY. Checkpoints written before optimizers and schedules were stored by name
// hold config.optimizer / config.schedule, an index into these lists (and new ones still
// carry it for older programs): an existing name must keep its place.
const std::vector<std::string> kOptimizers{"sgd", "adam", "adamw", "rmsprop", "adagrad"};
const std::vector<std::string> kSchedules{"none", "step", "exponential", "cosine"};

int64_t code_of(const std::vector<std::string>& names, const std::string& name, const char* what) {
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return static_cast<int64_t>(i);
  std::string all;
  for (const auto& n : names) all += (all.empty() ? "" : ", ") + n;
  throw Error(std::string("unknown ") + what + " '" + name + "' (choose from " + all + ")");
}

std::string name_of(const std::vector<std::string>& names, int64_t code, const char* what,
                    const std::string& source) {
  if (code < 0 || code >= static_cast<int64_t>(names.size()))
    throw IoError(source + ": config." + what + " = " + std::to_string(code) + " is not valid");
  return names[static_cast<size_t>(code)];
}
// The activation's name: config.activation_name, or in a checkpoint from before it the
// legacy code config.activation.
std::string read_activation(const NpzArchive& a) {
  const std::string& src = a.source();
  if (a.contains("config.activation_name")) {
    const std::string name = a.string("config.activation_name");
    try {
      return std::string(find_activation(name).name);
    } catch (const Error& e) {
      throw IoError(src + ": config.activation_name: " + e.what());
    }
  }
  if (a.contains("config.activation"))
    return name_of(kLegacyActivationCodes, a.integer("config.activation"), "activation", src);
  throw IoError(src + ": no activation (neither config.activation_name nor config.activation)");
}
// A run's optimizer or schedule: config.<what>_name, or in a checkpoint from before it the
// index config.<what> into `names`.
std::string read_choice(const NpzArchive& a, const std::string& what,
                        const std::vector<std::string>& names) {
  const std::string key = "config." + what;
  if (a.contains(key + "_name")) {
    const std::string name = a.string(key + "_name");
    if (std::find(names.begin(), names.end(), name) == names.end())
      throw IoError(a.source() + ": " + key + "_name: unknown " + what + " '" + name + "'");
    return name;
  }
  return name_of(names, a.integer(key), what.c_str(), a.source());
}

// Stores a choice by name, and by its index for programs from before names.
void put_choice(NpzArchive& a, const std::string& what, const std::vector<std::string>& names,
                const std::string& name) {
  a.put_int("config." + what, code_of(names, name, what.c_str()));
  a.put_string("config." + what + "_name", name);
}
}  // namespace

const std::vector<std::string>& model_names() {
  static const std::vector<std::string> names{"mlp", "cnn"};
  return names;
}

namespace {
// The default CNN (see run.hpp) for 28x28 grey images given as 784 features.
std::unique_ptr<Model> build_cnn(const RunConfig& c, Rng& init_rng) {
  if (c.inputs != 28 * 28)
    throw Error("--model cnn takes 28x28 grey images (784 features), the data has " +
                std::to_string(c.inputs) + " features");
  auto m = std::make_unique<Model>();
  m->dropout_rng = Rng(c.seed ^ 0x5eedd0d0ULL);
  const ActivationInfo& relu = find_activation("relu");
  Sequential& n = m->net;
  n.emplace_back<Unflatten>(1, std::vector<int64_t>{1, 28, 28});
  n.emplace_back<Conv2d>(1, 32, 3, init_rng, 1, 1);
  n.emplace_back<BatchNorm2d>(32);
  n.push_back(relu.make());
  n.emplace_back<MaxPool2d>(2);
  n.emplace_back<Conv2d>(32, 64, 3, init_rng, 1, 1);
  n.emplace_back<BatchNorm2d>(64);
  n.push_back(relu.make());
  n.emplace_back<MaxPool2d>(2);
  n.emplace_back<Flatten>();
  n.emplace_back<Linear>(64 * 7 * 7, 128, init_rng);
  n.push_back(relu.make());
  n.emplace_back<Linear>(128, c.classes, init_rng);
  return m;
}
}  // namespace

std::unique_ptr<Model> build_model(const RunConfig& c, Rng& init_rng) {
  if (c.inputs <= 0 || c.classes <= 1)
    throw Error("model: need at least 1 input and 2 classes, got " + std::to_string(c.inputs) +
                " inputs and " + std::to_string(c.classes) + " classes");
  if (c.model == "cnn") return build_cnn(c, init_rng);
  if (c.model != "mlp") throw Error("unknown model '" + c.model + "' (choose from mlp, cnn)");
  if (!(c.dropout >= 0 && c.dropout < 1))
    throw Error("--dropout must be in [0, 1), got " + std::to_string(c.dropout));
  const ActivationInfo& act = find_activation(c.activation);
  auto m = std::make_unique<Model>();
  m->dropout_rng = Rng(c.seed ^ 0x5eedd0d0ULL);
  int64_t in = c.inputs;
  for (int64_t h : c.hidden) {
    if (h <= 0) throw Error("hidden layer sizes must be positive, got " + std::to_string(h));
    m->net.emplace_back<Linear>(in, h, init_rng);
    m->net.push_back(act.make());
    if (c.dropout > 0) m->net.emplace_back<Dropout>(c.dropout, m->dropout_rng);
    in = h;
  }
  m->net.emplace_back<Linear>(in, c.classes, init_rng);
  return m;
}

std::unique_ptr<Optimizer> make_optimizer(const RunConfig& c, const std::vector<Var>& params) {
  if (!(c.lr > 0)) throw Error("--lr must be positive, got " + std::to_string(c.lr));
  const bool wd = c.weight_decay >= 0;
  switch (code_of(kOptimizers, c.optimizer, "optimizer")) {
    case 0:
      return std::make_unique<SGD>(params, SGDOptions{.lr = c.lr,
                                                      .momentum = c.momentum,
                                                      .weight_decay = wd ? c.weight_decay : 0.0,
                                                      .nesterov = c.nesterov});
    case 1: {
      AdamOptions o{.lr = c.lr};
      if (wd) o.weight_decay = c.weight_decay;
      return std::make_unique<Adam>(params, o);
    }
    case 2: {
      AdamWOptions o{.lr = c.lr};
      if (wd) o.weight_decay = c.weight_decay;
      return std::make_unique<AdamW>(params, o);
    }
    case 3: {
      RMSpropOptions o{.lr = c.lr, .momentum = c.momentum};
      if (wd) o.weight_decay = c.weight_decay;
      return std::make_unique<RMSprop>(params, o);
    }
    default: {
      AdagradOptions o{.lr = c.lr};
      if (wd) o.weight_decay = c.weight_decay;
      return std::make_unique<Adagrad>(params, o);
    }
  }
}

void save_checkpoint(const std::string& path, const RunConfig& c, Model& model,
                     const std::function<void(NpzArchive&, const std::string&)>& optimizer_state,
                     int64_t epoch, const Rng& shuffle_rng, const History& h) {
  NpzArchive a;
  write_parameters(model.net, a, "model.");
  // The architecture by name; an MLP's checkpoint stays as before (no key means "mlp").
  if (c.model != "mlp") a.put_string("config.model", c.model);
  optimizer_state(a, "optim.");
  a.put_int("epoch", epoch);
  write_rng(shuffle_rng, a, "rng.");
  write_rng(model.dropout_rng, a, "dropout_rng.");
  a.put_i64("config.hidden", c.hidden);
  // By name (the registry's canonical one, so an alias is stored as what it means).
  const std::string activation(find_activation(c.activation).name);
  a.put_string("config.activation_name", activation);
  // Also the frozen code when the name has one, so 0.2 programs still read the file.
  const auto legacy =
      std::find(kLegacyActivationCodes.begin(), kLegacyActivationCodes.end(), activation);
  if (legacy != kLegacyActivationCodes.end())
    a.put_int("config.activation", legacy - kLegacyActivationCodes.begin());
  a.put_scalar("config.dropout", c.dropout);
  put_choice(a, "optimizer", kOptimizers, c.optimizer);
  a.put_scalar("config.lr", c.lr);
  a.put_scalar("config.momentum", c.momentum);
  a.put_scalar("config.weight_decay", c.weight_decay);
  a.put_int("config.nesterov", c.nesterov ? 1 : 0);
  put_choice(a, "schedule", kSchedules, c.schedule);
  a.put_int("config.step_size", c.step_size);
  a.put_scalar("config.gamma", c.gamma);
  a.put_int("config.warmup", c.warmup);
  a.put_int("config.epochs", c.epochs);
  a.put_int("config.batch", c.batch);
  a.put_u64("config.seed", {c.seed});
  a.put_int("config.inputs", c.inputs);
  a.put_int("config.classes", c.classes);
  auto put = [&](const std::string& name, const std::vector<double>& v) {
    a.put(name, tensor(v, {static_cast<int64_t>(v.size())}, f64));
  };
  put("history.train_loss", h.train_loss);
  put("history.train_accuracy", h.train_accuracy);
  put("history.test_accuracy", h.test_accuracy);
  put("history.seconds", h.seconds);
  put("history.lr", h.lr);
  a.save(path);
}

RunConfig read_config(const NpzArchive& a) {
  RunConfig c;
  const std::string& src = a.source();
  if (a.contains("config.model")) {
    c.model = a.string("config.model");
    const auto& names = model_names();
    if (std::find(names.begin(), names.end(), c.model) == names.end())
      throw IoError(src + ": config.model: unknown model '" + c.model + "'");
  }
  c.hidden = a.i64s("config.hidden");
  c.activation = read_activation(a);
  c.dropout = a.scalar("config.dropout");
  c.optimizer = read_choice(a, "optimizer", kOptimizers);
  c.lr = a.scalar("config.lr");
  c.momentum = a.scalar("config.momentum");
  c.weight_decay = a.scalar("config.weight_decay");
  c.nesterov = a.integer("config.nesterov") != 0;
  c.schedule = read_choice(a, "schedule", kSchedules);
  c.step_size = a.integer("config.step_size");
  c.gamma = a.scalar("config.gamma");
  c.warmup = a.integer("config.warmup");
  c.epochs = a.integer("config.epochs");
  c.batch = a.integer("config.batch");
  const auto seed = a.u64s("config.seed");
  if (seed.size() != 1) throw IoError(src + ": config.seed must hold one value");
  c.seed = seed[0];
  c.inputs = a.integer("config.inputs");
  c.classes = a.integer("config.classes");
  return c;
}

int64_t read_epoch(const NpzArchive& a) {
  const int64_t epoch = a.integer("epoch");
  if (epoch < 0)
    throw IoError(a.source() + ": epoch = " + std::to_string(epoch) + " is not valid (negative)");
  return epoch;
}

std::vector<double> read_epoch_series(const NpzArchive& a, const std::string& name,
                                      int64_t epochs) {
  std::vector<double> v = a.tensor(name).to_vector();
  if (static_cast<int64_t>(v.size()) != epochs)
    throw IoError(a.source() + ": " + name + " has " + std::to_string(v.size()) +
                  " values, but the checkpoint has done " + std::to_string(epochs) + " epochs");
  return v;
}

History read_history(const NpzArchive& a) {
  const int64_t epochs = read_epoch(a);
  History h;
  h.train_loss = read_epoch_series(a, "history.train_loss", epochs);
  h.train_accuracy = read_epoch_series(a, "history.train_accuracy", epochs);
  h.test_accuracy = read_epoch_series(a, "history.test_accuracy", epochs);
  h.seconds = read_epoch_series(a, "history.seconds", epochs);
  h.lr = read_epoch_series(a, "history.lr", epochs);
  return h;
}

std::set<std::string> given_options(const CLI::App& cmd) {
  std::set<std::string> given;
  for (const CLI::Option* opt : cmd.get_options())
    if (opt->count() > 0) given.insert(opt->get_name());
  return given;
}

std::string exact_number(double x) {
  char buf[32];
  for (int digits = 15; digits <= 17; ++digits) {  // the shortest that reads back as x
    std::snprintf(buf, sizeof buf, "%.*g", digits, x);
    if (std::strtod(buf, nullptr) == x) break;
  }
  return buf;
}

void check_resume_options(const std::string& checkpoint, const std::set<std::string>& given,
                          const std::vector<std::array<std::string, 3>>& values) {
  for (const auto& [option, value, stored] : values)
    if (given.count(option) && value != stored)
      throw Error(checkpoint + ": " + option + " " + value + " differs from the checkpoint's " +
                  stored + "; --resume continues the checkpoint's run (of its options only " +
                  "--epochs may change)");
}

void from_checkpoint(const std::string& checkpoint, const std::function<void()>& build) {
  if (checkpoint.empty()) return build();
  try {
    build();
  } catch (const std::bad_alloc&) {
    throw IoError(checkpoint +
                  ": the model its configuration describes does not fit in memory (a corrupt "
                  "size?)");
  } catch (const IoError&) {
    throw;
  } catch (const Error& e) {
    throw IoError(checkpoint + ": its configuration: " + e.what());
  }
}

data::Dataset DataSource::train() const {
  if (!csv.empty()) return data::csv_classification(data::read_csv(csv), label).head(limit);
  return data::load_mnist_like(dir, true, limit);
}

data::Dataset DataSource::test() const {
  if (!csv.empty())
    return data::csv_classification(data::read_csv(test_csv.empty() ? csv : test_csv), label)
        .head(test_limit);
  return data::load_mnist_like(dir, false, test_limit);
}

std::vector<double> Evaluation::per_class_accuracy() const {
  std::vector<double> acc;
  for (const auto& row : confusion) {
    int64_t total = 0;
    for (int64_t v : row) total += v;
    acc.push_back(total ? static_cast<double>(row[acc.size()]) / static_cast<double>(total) : 0.0);
  }
  return acc;
}

Evaluation evaluate(Model& model, const data::Dataset& d, int64_t batch) {
  NoGradGuard no_grad;
  const bool was_training = model.net.is_training();
  model.net.eval();
  Evaluation e;
  const int64_t classes = model.net.parameters().back().shape()[0];
  e.confusion.assign(static_cast<size_t>(classes),
                     std::vector<int64_t>(static_cast<size_t>(classes), 0));
  // Several ranks (mpirun) split the rows, each evaluates its share, and the counts are
  // summed: the figures of one process in 1/p of the time. Every rank calls it alike.
  const int ranks = world::size();
  data::DataLoader loader(d, batch);
  if (ranks > 1) {
    const auto [first, last] = world::rows_of(d.size());
    std::vector<int64_t> rows(static_cast<size_t>(last - first));
    std::iota(rows.begin(), rows.end(), first);
    loader.set_order(rows);
  }
  data::Batch b;
  int64_t correct = 0;
  while (loader.next(b)) {
    const Tensor logits = model.net(constant(b.features)).value();
    const float* p = logits.data<float>();
    for (int64_t i = 0; i < b.size(); ++i) {
      int64_t best = 0;
      for (int64_t k = 1; k < classes; ++k)
        if (p[i * classes + k] > p[i * classes + best]) best = k;
      const int64_t truth = b.labels[static_cast<size_t>(i)];
      if (truth >= classes)
        throw Error("evaluate: label " + std::to_string(truth) + " but the model has " +
                    std::to_string(classes) + " classes");
      ++e.confusion[static_cast<size_t>(truth)][static_cast<size_t>(best)];
      correct += best == truth;
    }
  }
  if (ranks > 1) {
    std::vector<double> counts{static_cast<double>(correct)};
    for (const auto& row : e.confusion) counts.insert(counts.end(), row.begin(), row.end());
    world::sum(counts);
    correct = static_cast<int64_t>(counts[0]);
    size_t k = 1;
    for (auto& row : e.confusion)
      for (auto& x : row) x = static_cast<int64_t>(counts[k++]);
  }
  model.net.train(was_training);
  e.accuracy = d.size() ? static_cast<double>(correct) / static_cast<double>(d.size()) : 0.0;
  return e;
}

std::vector<std::string> class_names(const data::Dataset& d, int64_t n) {
  if (static_cast<int64_t>(d.class_names.size()) == n) return d.class_names;
  std::vector<std::string> names;
  for (int64_t i = 0; i < n; ++i) names.push_back(std::to_string(i));
  return names;
}

std::string confusion_text(const Evaluation& e, const std::vector<std::string>& names) {
  std::string out = "Confusion matrix (rows: true class, columns: predicted)\n";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%14s", "");
  out += buf;
  for (size_t k = 0; k < e.confusion.size(); ++k) {
    std::snprintf(buf, sizeof buf, "%6zu", k);
    out += buf;
  }
  out += "   accuracy\n";
  const auto acc = e.per_class_accuracy();
  for (size_t i = 0; i < e.confusion.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%2zu %-11.11s", i, names[i].c_str());
    out += buf;
    for (int64_t v : e.confusion[i]) {
      std::snprintf(buf, sizeof buf, "%6lld", static_cast<long long>(v));
      out += buf;
    }
    std::snprintf(buf, sizeof buf, "   %7.2f%%\n", 100.0 * acc[i]);
    out += buf;
  }
  return out;
}

}  // namespace tg::app
