// `tapegrad symmetry`: why do hidden units that see the same input end up different?
// The 2-3-1 sigmoid network of docs/seed.md trained from identical and from random initial
// weights, and against 100,000 draws of random search.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "apps/cli.hpp"
#include "apps/json.hpp"
#include "apps/plot.hpp"
#include "data/dataset.hpp"
#include "models/init.hpp"
#include "models/sequential.hpp"
#include "models/warning.hpp"
#include "ops/loss.hpp"
#include "optim/sgd.hpp"

namespace tg::app {

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string data;  // CSV with x1, x2, y; empty = the built-in rows (data/seed_regression.csv)
  int64_t steps = 5000;
  double lr = 2.0;
  double constant = 0.5;
  int64_t draws = 100000;
  double search_range = 4.0;
  uint64_t seed = 0;
  int64_t log_every = 500;
  std::string json;
  std::string out;
};

// The seed data: X scaled by its overall maximum, y by its maximum (docs/seed.md).
struct SeedData {
  Var x, y;
  double x_max = 0, y_max = 0;
};

SeedData load_data(const std::string& path) {
  // The rows of data/seed_regression.csv, built in so the installed program needs no file.
  std::vector<std::vector<double>> rows{{8, 5, 100}, {7, 5, 90}, {8, 4, 88}, {8, 1, 60},
                                        {4, 3, 50},  {5, 2, 45}, {4, 2, 40}};
  if (!path.empty()) {
    const auto t = data::read_csv(path);
    const size_t c1 = t.column("x1"), c2 = t.column("x2"), cy = t.column("y");
    rows.clear();
    for (const auto& r : t.rows) rows.push_back({r[c1], r[c2], r[cy]});
  }
  SeedData d;
  std::vector<double> xs, ys;
  for (const auto& r : rows) {
    d.x_max = std::max({d.x_max, std::abs(r[0]), std::abs(r[1])});
    d.y_max = std::max(d.y_max, std::abs(r[2]));
  }
  if (d.x_max == 0 || d.y_max == 0) throw Error(path + ": all inputs or all targets are zero");
  for (const auto& r : rows) {
    xs.push_back(r[0] / d.x_max);
    xs.push_back(r[1] / d.x_max);
    ys.push_back(r[2] / d.y_max);
  }
  const auto n = static_cast<int64_t>(rows.size());
  d.x = constant(tensor(xs, {n, 2}, f64));
  d.y = constant(tensor(ys, {n, 1}, f64));
  return d;
}

// The largest |w_j - w_k| over every pair of hidden units' incoming weights.
double max_unit_difference(const Linear& hidden) {
  const Tensor& w = hidden.weight.value();
  const int64_t units = w.shape()[0], in = w.shape()[1];
  const double* p = w.data<double>();
  double worst = 0;
  for (int64_t j = 0; j < units; ++j)
    for (int64_t k = j + 1; k < units; ++k)
      for (int64_t i = 0; i < in; ++i)
        worst = std::max(worst, std::abs(p[j * in + i] - p[k * in + i]));
  return worst;
}

struct Run {
  std::vector<double> steps, loss, max_diff;
  std::vector<std::vector<double>> unit_w1;  // [unit][logged step]: weight from x1
  double final_loss = 0, seconds = 0;
};

Run train(MLP& net, const SeedData& d, const Options& o) {
  SGD opt(net.parameters(), {.lr = o.lr});
  Run run;
  run.unit_w1.resize(static_cast<size_t>(net.linear(0).out_features()));
  auto log = [&](int64_t step, double loss) {
    run.steps.push_back(static_cast<double>(step));
    run.loss.push_back(loss);
    run.max_diff.push_back(max_unit_difference(net.linear(0)));
    const Tensor& w = net.linear(0).weight.value();
    for (size_t u = 0; u < run.unit_w1.size(); ++u)
      run.unit_w1[u].push_back(w.at({static_cast<int64_t>(u), 0}));
  };
  const int64_t curve_every = std::max<int64_t>(1, o.steps / 100);  // points of the pictures
  const auto t0 = Clock::now();
  for (int64_t step = 0; step <= o.steps; ++step) {
    Var loss = mse_loss(net(d.x), d.y);
    const double l = loss.item();
    if (step % curve_every == 0 || step % o.log_every == 0 || step == o.steps) log(step, l);
    run.final_loss = l;
    if (step == o.steps) break;
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  run.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return run;
}

struct Search {
  double best_mse = INFINITY, seconds = 0;
  std::vector<Tensor> best;
};

// The second answer of docs/seed.md: draw every weight uniformly from [-r, r] `draws` times, keep
// the set with the lowest squared error. No gradients.
Search random_search(MLP& net, const SeedData& d, const Options& o, Rng& rng) {
  NoGradGuard no_grad;
  Search s;
  const auto params = net.parameters();
  const auto t0 = Clock::now();
  for (int64_t i = 0; i < o.draws; ++i) {
    for (const Var& p : params) init::uniform(p, rng, -o.search_range, o.search_range);
    const double mse = mse_loss(net(d.x), d.y).item();
    if (mse < s.best_mse) {
      s.best_mse = mse;
      s.best.clear();
      for (const Var& p : params) s.best.push_back(p.value().clone());
    }
  }
  s.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  for (size_t i = 0; i < params.size(); ++i) params[i].value().copy_(s.best[i]);
  return s;
}

double predict(MLP& net, const SeedData& d, double x1, double x2) {
  NoGradGuard no_grad;
  return net(constant(tensor({x1 / d.x_max, x2 / d.x_max}, {1, 2}, f64))).item() * d.y_max;
}

void write_pictures(const std::string& dir, const Run& c, const Run& r, const Search& s,
                    const Options& o) {
  plot::LineChart loss{"Loss of the 2-3-1 sigmoid network (seed data)",
                       "SGD step",
                       "mean squared error (scaled)",
                       {},
                       true};
  char same[64];
  std::snprintf(same, sizeof same, "identical init (all %g)", o.constant);
  loss.series.push_back({same, c.steps, c.loss});
  loss.series.push_back({"random init", r.steps, r.loss});
  loss.series.push_back({"random search (best draw)",
                         {0.0, static_cast<double>(o.steps)},
                         {s.best_mse, s.best_mse},
                         "",
                         true});
  plot::write_svg(dir + "/loss_curves.svg", plot::render_svg(loss));
  for (const auto& [run, name, file] :
       {std::tuple{&c, "identical initial weights", "hidden_units_constant.svg"},
        std::tuple{&r, "random initial weights", "hidden_units_random.svg"}}) {
    plot::LineChart units{
        std::string("Hidden units' weight from x1, ") + name, "SGD step", "weight", {}, false};
    for (size_t u = 0; u < run->unit_w1.size(); ++u)
      // alternate line styles so that lines lying on top of each other stay visible
      units.series.push_back(
          {"hidden unit " + std::to_string(u + 1), run->steps, run->unit_w1[u], "", u % 2 == 1});
    plot::write_svg(dir + "/" + file, plot::render_svg(units));
  }
}

void run_symmetry(const Options& o) {
  if (o.steps < 1 || o.draws < 1 || o.log_every < 1 || !(o.lr > 0) || !(o.search_range > 0))
    throw Error(
        "symmetry: --steps, --draws, --log-every, --lr and --search-range must be positive");
  if (!o.json.empty()) prepare_output_file(o.json);
  if (!o.out.empty()) prepare_output_dir(o.out);
  const SeedData d = load_data(o.data);
  Rng rng(o.seed);

  // 1. identical initial weights (the library warns about exactly this)
  MLP same({2, 3, 1}, Activation::sigmoid, Activation::sigmoid, rng, false, f64);
  std::vector<std::string> warnings;
  auto previous = set_warning_handler([&](const std::string& w) { warnings.push_back(w); });
  for (const Var& p : same.parameters()) init::constant(p, o.constant);
  set_warning_handler(previous);
  const Run c = train(same, d, o);
  // the same thing with a single hidden unit, for comparison
  MLP one({2, 1, 1}, Activation::sigmoid, Activation::sigmoid, rng, false, f64);
  set_warning_handler([](const std::string&) {});
  for (const Var& p : one.parameters()) init::constant(p, o.constant);
  set_warning_handler(previous);
  const Run one_run = train(one, d, o);

  // 2. random initial weights (PyTorch's default for Linear), same training
  MLP diff({2, 3, 1}, Activation::sigmoid, Activation::sigmoid, rng, false, f64);
  const Run r = train(diff, d, o);

  // 3. random search on the same network and data
  MLP searched({2, 3, 1}, Activation::sigmoid, Activation::sigmoid, rng, false, f64);
  const Search s = random_search(searched, d, o, rng);

  const std::vector<std::pair<double, double>> queries{{8, 4}, {7, 1}, {3, 3}};
  std::printf("The seed question: 2-3-1 sigmoid network, no biases, %lld rows (X / %g, y / %g)\n\n",
              static_cast<long long>(d.x.shape()[0]), d.x_max, d.y_max);
  std::printf("%8s | %-27s | %-27s\n", "", "identical initial weights", "random initial weights");
  std::printf("%8s | %12s %14s | %12s %14s\n", "step", "loss", "max unit diff", "loss",
              "max unit diff");
  for (size_t i = 0; i < c.steps.size(); ++i)
    if (static_cast<int64_t>(c.steps[i]) % o.log_every == 0 || i + 1 == c.steps.size())
      std::printf("%8.0f | %12.6g %14.6g | %12.6g %14.6g\n", c.steps[i], c.loss[i], c.max_diff[i],
                  r.loss[i], r.max_diff[i]);
  const double c_diff = *std::max_element(c.max_diff.begin(), c.max_diff.end());
  std::printf(
      "\n1. Identical weights (all %g): the hidden units stay identical, largest difference "
      "between two units' weights at any of %zu checked steps = %g.\n   Final loss %.6g; a network "
      "with ONE hidden unit trained the same way ends at %.6g.\n",
      o.constant, c.steps.size(), c_diff, c.final_loss, one_run.final_loss);
  for (const auto& w : warnings) std::printf("   (tapegrad warned: %s)\n", w.c_str());
  std::printf(
      "2. Random weights: the units differ (difference %.4g at the end), final loss %.6g "
      "(%.1fx lower).\n",
      r.max_diff.back(), r.final_loss, c.final_loss / r.final_loss);
  std::printf(
      "3. Backprop (%lld SGD steps, lr %g): MSE %.6g in %.4f s.  Random search (%lld draws "
      "in [-%g, %g]): MSE %.6g in %.4f s.\n",
      static_cast<long long>(o.steps), o.lr, r.final_loss, r.seconds,
      static_cast<long long>(o.draws), o.search_range, o.search_range, s.best_mse, s.seconds);
  std::printf("4. Predictions (score):\n%10s %12s %14s %14s\n", "(x1, x2)", "backprop",
              "random search", "identical");
  std::vector<Json> preds;
  for (const auto& [x1, x2] : queries) {
    const double pb = predict(diff, d, x1, x2), ps = predict(searched, d, x1, x2),
                 pc = predict(same, d, x1, x2);
    std::printf("%10s %12.2f %14.2f %14.2f\n",
                ("(" + std::to_string(static_cast<int>(x1)) + ", " +
                 std::to_string(static_cast<int>(x2)) + ")")
                    .c_str(),
                pb, ps, pc);
    preds.push_back(Json::object({{"x1", Json::number(x1)},
                                  {"x2", Json::number(x2)},
                                  {"backprop", Json::number(pb)},
                                  {"random_search", Json::number(ps)},
                                  {"constant_init", Json::number(pc)}}));
  }
  if (!o.json.empty()) {
    const Json j = Json::object({
        {"constant_init",
         Json::object({{"final_loss", Json::number(c.final_loss)},
                       {"max_hidden_unit_difference", Json::number(c_diff)},
                       {"one_unit_final_loss", Json::number(one_run.final_loss)}})},
        {"random_init",
         Json::object({{"final_loss", Json::number(r.final_loss)},
                       {"max_hidden_unit_difference", Json::number(r.max_diff.back())}})},
        {"random_search", Json::object({{"draws", Json::integer(o.draws)},
                                        {"final_mse", Json::number(s.best_mse)},
                                        {"seconds", Json::number(s.seconds)}})},
        {"backprop", Json::object({{"steps", Json::integer(o.steps)},
                                   {"final_mse", Json::number(r.final_loss)},
                                   {"seconds", Json::number(r.seconds)}})},
        {"predictions", Json::array(preds)},
    });
    write_text(o.json, j.str() + "\n");
  }
  if (!o.out.empty()) {
    write_pictures(o.out, c, r, s, o);
    std::printf(
        "Pictures: %s/loss_curves.svg, hidden_units_constant.svg, hidden_units_random.svg\n",
        o.out.c_str());
  }
}

}  // namespace

void add_symmetry(CLI::App& app) {
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "symmetry",
      "The seed question: a 2-3-1 sigmoid network trained from identical vs random initial "
      "weights, and backprop vs 100,000 draws of random search (docs/seed.md)");
  cmd->add_option(
         "--data", o->data,
         "CSV with columns x1, x2, y (default: the 7 rows of data/seed_regression.csv, built in)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--steps", o->steps, "SGD steps of each backprop run")->capture_default_str();
  cmd->add_option("--lr", o->lr, "SGD learning rate")->capture_default_str();
  cmd->add_option("--constant", o->constant, "the value every weight starts at in run 1")
      ->capture_default_str();
  cmd->add_option("--draws", o->draws, "random-search draws")->capture_default_str();
  cmd->add_option("--search-range", o->search_range,
                  "random search draws each weight uniformly from [-R, R]")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of the random generator")->capture_default_str();
  cmd->add_option("--log-every", o->log_every, "report every N steps")->capture_default_str();
  cmd->add_option("--json", o->json, "write the results as JSON to this file");
  cmd->add_option("--out", o->out, "write pictures (SVG) into this folder");
  cmd->callback([o] { run_symmetry(*o); });
}

}  // namespace tg::app
