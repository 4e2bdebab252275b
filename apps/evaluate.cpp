// `tapegrad eval` and `tapegrad inspect`: what a checkpoint's model does and what is in it.

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "apps/charlm.hpp"
#include "apps/cli.hpp"
#include "apps/json.hpp"
#include "apps/plot.hpp"
#include "apps/run.hpp"
#include "models/checkpoint.hpp"
#include "models/diagnostics.hpp"

namespace tg::app {

namespace {

struct Loaded {
  RunConfig config;
  std::unique_ptr<Model> model;
  NpzArchive archive;
};

Loaded load_model(const std::string& path) {
  Loaded l;
  l.archive = NpzArchive::load(path);
  if (is_charlm_checkpoint(l.archive))
    throw Error(path +
                ": a language model of `tapegrad charlm`, not a classifier (`tapegrad "
                "inspect` reads it)");
  l.config = read_config(l.archive);
  Rng rng(0);
  from_checkpoint(path, [&] { l.model = build_model(l.config, rng); });
  read_parameters(l.model->net, l.archive, "model.");
  return l;
}

struct EvalOptions {
  std::string checkpoint;
  DataSource source;
  std::string json;
  std::string out;
};

void run_eval(const EvalOptions& o) {
  if (!o.json.empty()) prepare_output_file(o.json);
  if (!o.out.empty()) prepare_output_dir(o.out);
  Loaded l = load_model(o.checkpoint);
  const data::Dataset test = o.source.test();
  if (test.size() == 0) throw Error("eval: no test examples");
  if (test.num_features() != l.config.inputs)
    throw Error("eval: the model takes " + std::to_string(l.config.inputs) +
                " features, the test data has " + std::to_string(test.num_features()));
  const Evaluation e = evaluate(*l.model, test);
  const auto names = class_names(test, l.config.classes);
  std::printf("%s: %lld test examples, accuracy %.4f\n\n%s", o.checkpoint.c_str(),
              static_cast<long long>(test.size()), e.accuracy, confusion_text(e, names).c_str());
  if (!o.json.empty()) {
    std::vector<Json> rows;
    for (const auto& r : e.confusion) {
      std::vector<Json> cells;
      for (int64_t v : r) cells.push_back(Json::integer(v));
      rows.push_back(Json::array(cells));
    }
    write_text(o.json, Json::object({{"examples", Json::integer(test.size())},
                                     {"accuracy", Json::number(e.accuracy)},
                                     {"per_class_accuracy", Json::numbers(e.per_class_accuracy())},
                                     {"confusion", Json::array(rows)}})
                               .str() +
                           "\n");
  }
  if (!o.out.empty()) {
    plot::Heatmap cm;
    cm.title = "Confusion matrix (" + o.checkpoint + ")";
    cm.x_label = "predicted class";
    cm.y_label = "true class";
    cm.row_labels = cm.col_labels = names;
    for (const auto& row : e.confusion) cm.values.emplace_back(row.begin(), row.end());
    plot::write_svg(o.out + "/confusion_matrix.svg", plot::render_svg(cm));
  }
}

}  // namespace

void print_parameter_table(const Module& m) {
  // The shape column: 12 wide, or wider for a longer shape (a conv weight's 4 dims), and the
  // name column as wide as the longest name.
  int w = 12, nw = 22;
  for (const auto& [name, p] : m.named_parameters()) {
    w = std::max(w, static_cast<int>(p.shape().str().size()));
    nw = std::max(nw, static_cast<int>(name.size()));
  }
  std::printf("%-*s %-*s %-5s %12s %12s %12s\n", nw, "parameter", w, "shape", "dtype", "L2 norm",
              "mean", "std");
  auto row = [w, nw](const std::string& name, const Tensor& t) {
    const auto v = t.to_vector();
    double sum = 0, sq = 0;
    for (double x : v) {
      sum += x;
      sq += x * x;
    }
    const double n = static_cast<double>(v.size());
    const double mean = n > 0 ? sum / n : 0;
    std::printf("%-*s %-*s %-5s %12.5g %12.5g %12.5g\n", nw, name.c_str(), w,
                t.shape().str().c_str(), std::string(dtype_name(t.dtype())).c_str(), std::sqrt(sq),
                mean, n > 0 ? std::sqrt(std::max(sq / n - mean * mean, 0.0)) : 0.0);
  };
  for (const auto& [name, p] : m.named_parameters()) row(name, p.value());
  std::printf("%lld parameters\n\n", static_cast<long long>(m.num_parameters()));
  const auto buffers = m.named_buffers();
  if (!buffers.empty()) {
    std::printf("%-*s %-*s %-5s %12s %12s %12s\n", nw, "buffer", w, "shape", "dtype", "L2 norm",
                "mean", "std");
    for (const auto& [name, b] : buffers) row(name, b);
    std::printf("\n");
  }
}

namespace {

struct InspectOptions {
  std::string checkpoint;
  DataSource source;
  int64_t batch = 1000;
};

void run_inspect(const InspectOptions& o) {
  {
    const NpzArchive a = NpzArchive::load(o.checkpoint);
    if (is_charlm_checkpoint(a)) return inspect_charlm(a, o.checkpoint);
  }
  Loaded l = load_model(o.checkpoint);
  const RunConfig& c = l.config;
  std::printf("%s\n", o.checkpoint.c_str());
  if (c.model == "mlp") {
    std::printf(
        "trained %lld of %lld epochs; activation %s, optimizer %s lr %g, batch %lld, seed %llu\n",
        static_cast<long long>(read_epoch(l.archive)), static_cast<long long>(c.epochs),
        c.activation.c_str(), c.optimizer.c_str(), c.lr, static_cast<long long>(c.batch),
        static_cast<unsigned long long>(c.seed));
  } else {
    std::printf(
        "trained %lld of %lld epochs; model %s, optimizer %s lr %g, batch %lld, seed %llu\n",
        static_cast<long long>(read_epoch(l.archive)), static_cast<long long>(c.epochs),
        c.model.c_str(), c.optimizer.c_str(), c.lr, static_cast<long long>(c.batch),
        static_cast<unsigned long long>(c.seed));
  }
  const History h = read_history(l.archive);
  if (!h.test_accuracy.empty())
    std::printf("last epoch: train loss %.4f, test accuracy %.4f\n", h.train_loss.back(),
                h.test_accuracy.back());
  std::printf("\nmodel: %s\n\n", l.model->net.str().c_str());
  print_parameter_table(l.model->net);
  if (c.model != "mlp") {
    std::printf("(the unit diagnostics are for MLPs: skipped for model %s)\n", c.model.c_str());
    return;
  }
  DiagnosticsReport report;
  bool with_batch = false;
  try {
    DataSource src = o.source;
    src.test_limit = o.batch;
    const data::Dataset d = src.test();
    if (d.num_features() == c.inputs) {
      report = diagnose(l.model->net, constant(d.features));
      with_batch = true;
      std::printf("Diagnostics (activations over %lld test examples):\n",
                  static_cast<long long>(d.size()));
    }
  } catch (const Error& e) {
    std::printf("(no data for activation diagnostics: %s)\n", e.what());
  }
  if (!with_batch) {
    report = diagnose(l.model->net);
    std::printf("Diagnostics (weights only):\n");
  }
  std::printf("%s", report.str().c_str());
}

}  // namespace

void add_eval(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  CLI::App* cmd =
      app.add_subcommand("eval", "Accuracy and confusion matrix of a checkpoint on the test set");
  cmd->add_option("checkpoint", o->checkpoint, "checkpoint written by `tapegrad train`")
      ->required();
  cmd->add_option("--data", o->source.dir, "folder with MNIST-style IDX files")
      ->capture_default_str();
  cmd->add_option("--csv", o->source.test_csv, "evaluate on this CSV instead");
  cmd->add_option("--label", o->source.label, "label column of the CSV")->capture_default_str();
  cmd->add_option("--limit", o->source.test_limit, "use only the first N test examples")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--json", o->json, "write accuracy and confusion matrix as JSON to this file");
  cmd->add_option("--out", o->out, "write confusion_matrix.svg into this folder");
  cmd->callback([o] {
    if (!o->source.test_csv.empty()) o->source.csv = o->source.test_csv;
    run_eval(*o);
  });
}

void add_inspect(CLI::App& app) {
  auto o = std::make_shared<InspectOptions>();
  CLI::App* cmd = app.add_subcommand("inspect",
                                     "A checkpoint's parameters (shapes, norms) and, for an MLP, "
                                     "diagnostics: identical, dead and saturated units");
  cmd->add_option("checkpoint", o->checkpoint,
                  "checkpoint written by `tapegrad train` or `tapegrad charlm`")
      ->required();
  cmd->add_option("--data", o->source.dir, "folder with MNIST-style IDX files (activations)")
      ->capture_default_str();
  cmd->add_option("--csv", o->source.test_csv, "CSV of examples for the activation diagnostics");
  cmd->add_option("--label", o->source.label, "label column of the CSV")->capture_default_str();
  cmd->add_option("--batch", o->batch, "test examples used for the MLP's activation diagnostics")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->callback([o] {
    if (!o->source.test_csv.empty()) o->source.csv = o->source.test_csv;
    run_inspect(*o);
  });
}

}  // namespace tg::app
