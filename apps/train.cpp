// `tapegrad train`: a classifier (an MLP of generic Linear / activation / Dropout nodes, or
// with --model cnn the default CNN of apps/run.hpp for 28x28 images) trained on Fashion-MNIST
// or a CSV, with progress, metrics, checkpoints and pictures.

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "apps/cli.hpp"
#include "apps/json.hpp"
#include "apps/plot.hpp"
#include "apps/progress.hpp"
#include "apps/run.hpp"
#include "apps/world.hpp"
#include "data/sampler.hpp"
#include "models/checkpoint.hpp"
#include "ops/arith.hpp"
#include "ops/loss.hpp"
#include "ops/matmul.hpp"
#include "ops/reduce.hpp"
#include "optim/scheduler.hpp"

namespace tg::app {

namespace {

struct TrainOptions {
  RunConfig config;
  DataSource source;
  int threads = 0;
  std::string out;
  std::string metrics;
  std::string resume;
  bool no_progress = false;
  bool no_shard_optimizer = false;
  bool epochs_given = false;
  bool schedule_given = false;
  std::set<std::string> given;  // the options on the command line
};

// --hidden as text: "256,128".
std::string hidden_str(const std::vector<int64_t>& hidden) {
  std::string s;
  for (int64_t h : hidden) s += (s.empty() ? "" : ",") + std::to_string(h);
  return s;
}

std::unique_ptr<LrScheduler> make_scheduler(const RunConfig& c, Optimizer& opt) {
  std::unique_ptr<LrScheduler> s;
  if (c.schedule == "step") {
    s = std::make_unique<StepLR>(opt, c.step_size, c.gamma);
  } else if (c.schedule == "exponential") {
    s = std::make_unique<ExponentialLR>(opt, c.gamma);
  } else if (c.schedule == "cosine") {
    s = std::make_unique<CosineAnnealingLR>(opt, std::max<int64_t>(c.epochs - c.warmup, 1));
  } else if (c.schedule != "none") {
    throw Error("unknown schedule '" + c.schedule +
                "' (choose from none, step, exponential, cosine)");
  }
  if (c.warmup > 0) s = std::make_unique<LinearWarmup>(opt, c.warmup, 1.0 / 3.0, std::move(s));
  return s;
}

// The options that need no data, checked before any work: the command line's, or with
// --resume the checkpoint's (then named in the message). NaN fails every check.
void check_config(const RunConfig& c, const std::string& resume) {
  const std::string from = resume.empty() ? "" : resume + ": ";
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) throw Error(from + what);
  };
  need(c.epochs >= 1 && c.batch >= 1, "--epochs and --batch must be at least 1");
  need(c.lr > 0 && std::isfinite(c.lr), "--lr must be positive, got " + exact_number(c.lr));
  need(c.dropout >= 0 && c.dropout < 1,
       "--dropout must be in [0, 1), got " + exact_number(c.dropout));
  need(c.gamma > 0 && std::isfinite(c.gamma),
       "--gamma must be positive, got " + exact_number(c.gamma));
  need(c.warmup >= 0, "--warmup must be at least 0, got " + std::to_string(c.warmup));
  need(c.schedule != "step" || c.step_size >= 1,
       "--step-size must be at least 1, got " + std::to_string(c.step_size));
}

void write_pictures(const std::string& dir, const History& h, const Evaluation& e,
                    const std::vector<std::string>& names) {
  std::vector<double> ep;
  for (size_t i = 0; i < h.train_loss.size(); ++i) ep.push_back(static_cast<double>(i + 1));
  plot::LineChart loss{"Training loss", "epoch", "cross-entropy (mean over the epoch)", {}, false};
  loss.series.push_back({"train loss", ep, h.train_loss});
  plot::write_svg(dir + "/loss.svg", plot::render_svg(loss));
  plot::LineChart acc{"Accuracy", "epoch", "accuracy", {}, false};
  acc.series.push_back({"train (batches as seen)", ep, h.train_accuracy});
  acc.series.push_back({"test", ep, h.test_accuracy});
  plot::write_svg(dir + "/accuracy.svg", plot::render_svg(acc));
  plot::Heatmap cm;
  cm.title = "Confusion matrix on the test set";
  cm.x_label = "predicted class";
  cm.y_label = "true class";
  cm.row_labels = names;
  cm.col_labels = names;
  for (const auto& row : e.confusion) cm.values.emplace_back(row.begin(), row.end());
  plot::write_svg(dir + "/confusion_matrix.svg", plot::render_svg(cm));
}

// What every rank of a data-parallel run must agree on: the run's configuration, the data
// and where it starts (world::check_same).
std::vector<std::string> run_description(const RunConfig& c, const data::Dataset& train,
                                         const data::Dataset& test, int64_t start, bool shard) {
  std::string hidden;
  for (int64_t h : c.hidden) hidden += std::to_string(h) + " ";
  auto num = [](double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", x);
    return std::string(buf);
  };
  return {"model " + c.model + " hidden " + hidden + "activation " + c.activation + " dropout " +
              num(c.dropout),
          "optimizer " + c.optimizer + " lr " + num(c.lr) + " momentum " + num(c.momentum) +
              " weight_decay " + num(c.weight_decay) + " nesterov " + std::to_string(c.nesterov) +
              " sharded " + std::to_string(shard),
          "schedule " + c.schedule + " step_size " + std::to_string(c.step_size) + " gamma " +
              num(c.gamma) + " warmup " + std::to_string(c.warmup),
          "epochs " + std::to_string(c.epochs) + " batch " + std::to_string(c.batch) + " seed " +
              std::to_string(c.seed) + " start " + std::to_string(start),
          "data: " + std::to_string(train.size()) + " training, " + std::to_string(test.size()) +
              " test examples, " + std::to_string(c.inputs) + " features, " +
              std::to_string(c.classes) + " classes"};
}

// Note [Data-parallel train]
// With p ranks (mpirun -np p tapegrad train), --batch stays the global batch: each epoch
// every rank draws the one-process run's order from the same generator, and of each global
// batch of m examples rank r takes rows [r m / p, (r + 1) m / p). Its loss, the mean over
// its rows, is scaled by (its rows) p / m, so the average the wrapper takes over the ranks
// is the mean over the global batch even when m does not split evenly (the last batch); a
// rank with no rows in the last batch takes a zero loss, and still joins the reduction. So
// p ranks follow the one-process run up to rounding (without dropout, whose masks are drawn
// per rank from the seed, the epoch and the rank, and without BatchNorm, whose statistics
// are each rank's own rows'; rank 0's running statistics are copied to every rank after
// each epoch). The order does not depend on p, so a run resumes with another world size.

// This rank's rows of each global batch of an epoch's `order`, in order, and each global
// batch's size and this rank's count.
struct Shard {
  std::vector<int64_t> rows;
  std::vector<int64_t> global, mine;
};
Shard shard_of(const std::vector<int64_t>& order, int64_t batch) {
  Shard s;
  const auto n = static_cast<int64_t>(order.size());
  for (int64_t start = 0; start < n; start += batch) {
    const int64_t m = std::min(batch, n - start);
    const auto [first, last] = world::rows_of(m);
    const int64_t lo = start + first, hi = start + last;
    s.rows.insert(s.rows.end(), order.begin() + lo, order.begin() + hi);
    s.global.push_back(m);
    s.mine.push_back(hi - lo);
  }
  return s;
}

void run_train(TrainOptions o) {
  const int ranks = world::size();
  const bool root = world::is_root();
  // The default folder (runs/<time>-train) is made once the data has loaded, so a run that
  // fails on its input leaves no empty run folder; the folder it goes in (runs/) is made and
  // checked now.
  const std::string out = o.out.empty() ? default_run_dir("train") : o.out;
  if (root) {  // rank 0 alone writes (Note [Data-parallel train])
    prepare_output_dir(o.out.empty() ? std::filesystem::path(out).parent_path().string() : out);
    if (!o.metrics.empty()) prepare_output_file(o.metrics, /*append=*/true);
  }
  RunConfig c = o.config;
  NpzArchive resumed;
  if (!o.resume.empty()) {
    resumed = NpzArchive::load(o.resume);
    const RunConfig asked = c;
    c = read_config(resumed);
    if (o.epochs_given) c.epochs = asked.epochs;
    const auto flag = [](bool b) { return std::string(b ? "true" : "false"); };
    check_resume_options(
        o.resume, o.given,
        {{"--model", asked.model, c.model},
         {"--hidden", hidden_str(asked.hidden), hidden_str(c.hidden)},
         {"--activation", std::string(find_activation(asked.activation).name), c.activation},
         {"--dropout", exact_number(asked.dropout), exact_number(c.dropout)},
         {"--optimizer", asked.optimizer, c.optimizer},
         {"--lr", exact_number(asked.lr), exact_number(c.lr)},
         {"--momentum", exact_number(asked.momentum), exact_number(c.momentum)},
         {"--nesterov", flag(asked.nesterov), flag(c.nesterov)},
         {"--weight-decay", exact_number(asked.weight_decay), exact_number(c.weight_decay)},
         {"--schedule", asked.schedule, c.schedule},
         {"--step-size", std::to_string(asked.step_size), std::to_string(c.step_size)},
         {"--gamma", exact_number(asked.gamma), exact_number(c.gamma)},
         {"--warmup", std::to_string(asked.warmup), std::to_string(c.warmup)},
         {"--batch", std::to_string(asked.batch), std::to_string(c.batch)},
         {"--seed", std::to_string(asked.seed), std::to_string(c.seed)}});
  }
  // The CNN's default schedule is cosine annealing (torch.optim.lr_scheduler.CosineAnnealingLR
  // over the run): with Adam at a constant 1e-3 its test accuracy swings by ~1% between the
  // last epochs (0.9164 after epoch 4, 0.9083 after epoch 5 with seed 0).
  if (o.resume.empty() && c.model == "cnn" && !o.schedule_given) c.schedule = "cosine";
  check_config(c, o.resume);
  if (c.batch < ranks)
    throw Error("--batch " + std::to_string(c.batch) + " (the global batch) is smaller than the " +
                std::to_string(ranks) + " ranks");
  // Ranks on one machine share its cores: unless told otherwise, each takes its share.
  o.threads = world::threads_per_rank(o.threads);
  if (o.threads > 0) {
    set_blas_threads(o.threads);
    set_num_threads(o.threads);
  }
  const data::Dataset train = o.source.train();
  const data::Dataset test = o.source.test();
  if (train.size() == 0) throw Error("train: no training examples");
  if (test.size() == 0) throw Error("train: no test examples");
  if (test.num_features() != train.num_features())
    throw Error("train: the test set has " + std::to_string(test.num_features()) +
                " features, the training set " + std::to_string(train.num_features()));
  const int64_t classes = std::max(train.num_classes, test.num_classes);
  if (!o.resume.empty() && (c.inputs != train.num_features() || c.classes < classes))
    throw Error(o.resume + ": the checkpoint's model takes " + std::to_string(c.inputs) +
                " features and " + std::to_string(c.classes) + " classes; the data has " +
                std::to_string(train.num_features()) + " and " + std::to_string(classes));
  c.inputs = train.num_features();
  c.classes = std::max(c.classes, classes);

  Rng init_rng(c.seed);
  std::unique_ptr<Model> model;
  from_checkpoint(o.resume, [&] { model = build_model(c, init_rng); });
  Rng shuffle_rng(c.seed + 1);
  const auto params = model->net.parameters();
  int64_t start = 0;
  History h;
  if (!o.resume.empty()) {
    read_parameters(model->net, resumed, "model.");
    // The file's optimizer state is checked now, before any collective; it is loaded into
    // the optimizer that steps once that is built.
    make_optimizer(c, params)->load_state_dict(resumed, "optim.");
    read_rng(shuffle_rng, resumed, "rng.");
    read_rng(model->dropout_rng, resumed, "dropout_rng.");
    start = read_epoch(resumed);
    h = read_history(resumed);
  }
  // The optimizer is sharded over the ranks unless --no-shard-optimizer (docs/distributed.md).
  const bool shard = ranks > 1 && !o.no_shard_optimizer;
  world::check_same("run configurations or data", run_description(c, train, test, start, shard));
  // Rank 0's weights on every rank; the optimizer that steps.
  world::DataParallel data_parallel(
      model->net, [&c](std::vector<Var> p) { return make_optimizer(c, p); }, shard);
  // The schedulers take their base rate from the new optimizer (--lr), before any state.
  auto sched = make_scheduler(c, data_parallel.optimizer());
  if (!o.resume.empty()) data_parallel.load_state_dict(resumed, "optim.");
  const std::string ckpt = out + "/checkpoint.npz";
  if (root) {
    prepare_output_dir(out);
    // A new run's folder holds its own epochs only (a rerun into the same folder starts over).
    if (o.resume.empty()) write_text(out + "/metrics.jsonl", "");
  }
  const auto names = class_names(test, c.classes);
  // Only rank 0 prints.
  auto say = [root](const char* fmt, auto... args) {
    if (root) std::printf(fmt, args...);
  };

  say("tapegrad train: %lld training / %lld test examples, %lld features, %lld classes\n",
      static_cast<long long>(train.size()), static_cast<long long>(test.size()),
      static_cast<long long>(c.inputs), static_cast<long long>(c.classes));
  say("model: %s", model->net.str().c_str());
  say("\n%lld parameters; optimizer %s lr %g, schedule %s, batch %lld, seed %llu, threads: "
      "BLAS %d, tapegrad %d\n",
      static_cast<long long>(model->net.num_parameters()), c.optimizer.c_str(), c.lr,
      c.schedule.c_str(), static_cast<long long>(c.batch), static_cast<unsigned long long>(c.seed),
      blas_threads(), num_threads());
  if (ranks > 1)
    say("data parallel: %d ranks, %lld examples of each batch of %lld per rank, optimizer %s\n",
        ranks, static_cast<long long>(c.batch / ranks), static_cast<long long>(c.batch),
        shard ? "sharded" : "on every rank");
  if (!o.resume.empty())
    say("resuming %s after epoch %lld\n", o.resume.c_str(), static_cast<long long>(start));
  say("output: %s\n", out.c_str());

  Evaluation last;
  for (int64_t epoch = start; epoch < c.epochs; ++epoch) {
    const double lr = sched ? sched->lr_at(epoch) : c.lr;
    data_parallel.set_lr(lr);
    model->net.train();
    // NOTE: one loader per epoch, shuffled once at construction from the run's generator, so
    // a resumed run draws exactly the orders the uninterrupted run would have drawn.
    data::DataLoader loader(train, ranks == 1 ? c.batch : c.batch / ranks, ranks == 1,
                            &shuffle_rng);
    Shard shard;
    if (ranks > 1) {  // Note [Data-parallel train]
      shard = shard_of(data::shuffled_indices(train.size(), &shuffle_rng), c.batch);
      loader.set_order(shard.rows);
      model->dropout_rng.seed_with(c.seed * 1000003 + static_cast<uint64_t>(epoch) * 1009 +
                                   static_cast<uint64_t>(world::rank()));
    }
    const int64_t steps =
        ranks == 1 ? loader.num_batches() : static_cast<int64_t>(shard.global.size());
    Progress progress(!o.no_progress && root, epoch + 1, c.epochs, steps);
    const auto t0 = Clock::now();
    data::Batch b;
    double loss_sum = 0;
    int64_t seen = 0, correct = 0, batch_i = 0;
    for (; batch_i < steps; ++batch_i) {
      const auto k = static_cast<size_t>(batch_i);
      data_parallel.zero_grad();
      if (ranks > 1 && shard.mine[k] == 0) {
        // No rows for this rank in the last batch: a zero loss, so it still joins the sum.
        mul_scalar(sum(params[0]), 0.0).backward();
        data_parallel.step();
        continue;
      }
      if (!loader.next(b)) throw Error("train: the data loader ended early");
      Var logits = model->net(constant(b.features));
      Var loss = cross_entropy(logits, b.labels);
      // This rank's share of the global batch's mean (Note [Data-parallel train]).
      const double share = ranks == 1 ? 1.0
                                      : static_cast<double>(shard.mine[k] * ranks) /
                                            static_cast<double>(shard.global[k]);
      (share == 1.0 ? loss : mul_scalar(loss, share)).backward();
      data_parallel.step();
      const double l = loss.item();
      if (!std::isfinite(l))
        throw Error("train: the loss became " + std::to_string(l) + " at epoch " +
                    std::to_string(epoch + 1) + " batch " + std::to_string(batch_i + 1) +
                    " (learning rate too high?)");
      loss_sum += l * static_cast<double>(b.size());
      const float* p = logits.value().data<float>();
      for (int64_t i = 0; i < b.size(); ++i) {
        int64_t best = 0;
        for (int64_t k = 1; k < c.classes; ++k)
          if (p[i * c.classes + k] > p[i * c.classes + best]) best = k;
        correct += best == b.labels[static_cast<size_t>(i)];
      }
      seen += b.size();
      progress.update(batch_i + 1, loss_sum / static_cast<double>(seen), seen);
    }
    // The epoch's figures over every rank's rows.
    std::vector<double> totals{loss_sum, static_cast<double>(seen), static_cast<double>(correct)};
    world::sum(totals);
    loss_sum = totals[0];
    seen = static_cast<int64_t>(totals[1]);
    correct = static_cast<int64_t>(totals[2]);
    data_parallel.sync_buffers();
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    progress.finish();
    last = evaluate(*model, test);
    h.train_loss.push_back(loss_sum / static_cast<double>(seen));
    h.train_accuracy.push_back(static_cast<double>(correct) / static_cast<double>(seen));
    h.test_accuracy.push_back(last.accuracy);
    h.seconds.push_back(seconds);
    h.lr.push_back(lr);
    say("epoch %lld/%lld  train loss %.4f  train acc %.4f  test acc %.4f  %.1fs  (%.0f ex/s, lr "
        "%g)\n",
        static_cast<long long>(epoch + 1), static_cast<long long>(c.epochs), h.train_loss.back(),
        h.train_accuracy.back(), last.accuracy, seconds, static_cast<double>(seen) / seconds, lr);
    std::fflush(stdout);
    const std::string line =
        Json::object({{"epoch", Json::integer(epoch + 1)},
                      {"train_loss", Json::number(h.train_loss.back())},
                      {"train_accuracy", Json::number(h.train_accuracy.back())},
                      {"test_accuracy", Json::number(last.accuracy)},
                      {"seconds", Json::number(seconds)},
                      {"lr", Json::number(lr)}})
            .str();
    data_parallel.consolidate_state_dict();  // every rank, before rank 0 writes
    if (root) {
      append_line(out + "/metrics.jsonl", line);
      if (!o.metrics.empty()) append_line(o.metrics, line);
      save_checkpoint(
          ckpt, c, *model,
          [&data_parallel](NpzArchive& a, const std::string& prefix) {
            data_parallel.state_dict(a, prefix);
          },
          epoch + 1, shuffle_rng, h);
    }
  }
  if (start >= c.epochs) {
    say("nothing to do: the checkpoint already has %lld of %lld epochs\n",
        static_cast<long long>(start), static_cast<long long>(c.epochs));
    last = evaluate(*model, test);
  }
  if (!root) return;
  std::printf("\ntest accuracy %.4f\n%s", last.accuracy, confusion_text(last, names).c_str());
  write_pictures(out, h, last, names);
  std::printf("checkpoint: %s\npictures: %s/loss.svg, accuracy.svg, confusion_matrix.svg\n",
              ckpt.c_str(), out.c_str());
}

}  // namespace

void add_train(CLI::App& app) {
  auto o = std::make_shared<TrainOptions>();
  CLI::App* cmd = app.add_subcommand(
      "train",
      "Train a classifier (an MLP of Linear / activation / Dropout nodes, or a CNN) on "
      "Fashion-MNIST or a CSV");
  RunConfig& c = o->config;
  cmd->add_option("--model", c.model,
                  "mlp (--hidden, --activation, --dropout) or cnn: Conv2d(1, 32, 3, padding=1) "
                  "BatchNorm2d ReLU MaxPool2d(2), Conv2d(32, 64, 3, padding=1) BatchNorm2d ReLU "
                  "MaxPool2d(2), Linear(3136, 128) ReLU Linear(128, classes), for 28x28 images "
                  "(784 features), with the cosine schedule by default")
      ->capture_default_str()
      ->check(CLI::IsMember(model_names()));
  cmd->add_option("--hidden", c.hidden, "hidden layer sizes, e.g. --hidden 256 128")
      ->capture_default_str()
      ->delimiter(',');
  std::string activations;
  for (const auto& name : activation_names())
    activations += (activations.empty() ? "" : ", ") + name;
  cmd->add_option("--activation", c.activation, "hidden activation: " + activations)
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& name) {
            try {
              find_activation(name);
              return std::string();
            } catch (const Error& e) {
              return std::string(e.what());
            }
          },
          ""));
  cmd->add_option("--dropout", c.dropout, "dropout probability after each hidden activation")
      ->capture_default_str();
  cmd->add_option("--optimizer", c.optimizer, "sgd, adam, adamw, rmsprop or adagrad")
      ->capture_default_str();
  cmd->add_option("--lr", c.lr, "learning rate")->capture_default_str();
  cmd->add_option("--momentum", c.momentum, "momentum (sgd, rmsprop)")->capture_default_str();
  cmd->add_flag("--nesterov", c.nesterov, "Nesterov momentum (sgd)");
  cmd->add_option("--weight-decay", c.weight_decay,
                  "weight decay (default: the optimizer's own, 0 except adamw's 0.01)");
  cmd->add_option("--schedule", c.schedule,
                  "learning-rate schedule: none, step, exponential, cosine (default: none for "
                  "the mlp, cosine for the cnn)")
      ->each([o](const std::string&) { o->schedule_given = true; });
  cmd->add_option("--step-size", c.step_size, "epochs per decay of the step schedule")
      ->capture_default_str();
  cmd->add_option("--gamma", c.gamma, "decay factor of the step / exponential schedules")
      ->capture_default_str();
  cmd->add_option("--warmup", c.warmup, "epochs of linear warmup (from lr/3)")
      ->capture_default_str();
  cmd->add_option("--epochs", c.epochs, "epochs to train (with --resume: the new total)")
      ->capture_default_str()
      ->each([o](const std::string&) { o->epochs_given = true; });
  cmd->add_option("--batch", c.batch, "mini-batch size")->capture_default_str();
  cmd->add_option("--seed", c.seed, "seed of initialization, shuffling and dropout")
      ->capture_default_str();
  cmd->add_option("--threads", o->threads,
                  "threads of OpenBLAS and of tapegrad's own pool (default: OpenBLAS's choice, "
                  "and TG_NUM_THREADS or the machine's cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--data", o->source.dir, "folder with MNIST-style IDX files")
      ->capture_default_str();
  cmd->add_option("--csv", o->source.csv, "train on this CSV instead (header; a label column)");
  cmd->add_option("--test-csv", o->source.test_csv, "test CSV (default: the training CSV)");
  cmd->add_option("--label", o->source.label, "label column of the CSV")->capture_default_str();
  cmd->add_option("--limit", o->source.limit, "use only the first N training examples")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--test-limit", o->source.test_limit, "use only the first N test examples")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--out", o->out,
                  "folder for checkpoint, metrics and pictures (default: runs/<time>-train)");
  cmd->add_option("--metrics", o->metrics, "also append one JSON object per epoch to this file");
  cmd->add_option("--resume", o->resume, "continue the run saved in this checkpoint");
  cmd->add_flag("--no-progress", o->no_progress, "no progress bar / progress lines");
  cmd->add_flag("--no-shard-optimizer", o->no_shard_optimizer,
                "under mpirun: every rank keeps the whole optimizer state and does the whole "
                "update (default: each rank keeps and updates 1/N of it, ZeRO stage 1)");
  cmd->callback([o, cmd] {
    o->given = given_options(*cmd);
    run_train(*o);
  });
}

}  // namespace tg::app
