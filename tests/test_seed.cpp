// The seed experiment (docs/seed.md) as a test: a 2-3-1 sigmoid network without
// biases on the 7-row regression data, X scaled by its overall maximum and y by its maximum.

#include <catch2/catch.hpp>

#include "data/dataset.hpp"

#include "models/diagnostics.hpp"
#include "models/init.hpp"
#include "models/sequential.hpp"
#include "models/warning.hpp"
#include "models_test_util.hpp"
#include "ops/loss.hpp"
#include "optim/sgd.hpp"

namespace {

// The seed data (x1, x2, y), read from the repository's own copy.
std::vector<std::vector<double>> seed_rows() {
  const auto t = tg::data::read_csv(std::string(TAPEGRAD_SOURCE_DIR) + "/data/seed_regression.csv");
  std::vector<std::vector<double>> rows;
  for (const auto& r : t.rows)
    rows.push_back({r[t.column("x1")], r[t.column("x2")], r[t.column("y")]});
  return rows;
}

std::pair<tg::Var, tg::Var> seed_data() {
  const auto rows = seed_rows();
  std::vector<double> x, y;
  double xmax = 0, ymax = 0;
  for (const auto& r : rows) {
    xmax = std::max({xmax, r[0], r[1]});
    ymax = std::max(ymax, r[2]);
  }
  for (const auto& r : rows) {
    x.push_back(r[0] / xmax);
    x.push_back(r[1] / xmax);
    y.push_back(r[2] / ymax);
  }
  return {tg::constant(tg::tensor(x, {7, 2})), tg::constant(tg::tensor(y, {7, 1}))};
}

constexpr int kSteps = 1000;
constexpr double kLr = 2.0;

struct Run {
  double first_loss = 0, final_loss = 0;
  bool rows_equal_every_step = true;
  bool grads_equal_every_step = true;
};

bool rows_equal(const tg::Tensor& w) {
  const auto v = w.to_vector();
  const int64_t cols = w.shape()[1];
  for (int64_t r = 1; r < w.shape()[0]; ++r)
    for (int64_t c = 0; c < cols; ++c)
      if (v[static_cast<size_t>(r * cols + c)] != v[static_cast<size_t>(c)]) return false;
  return true;
}

Run train(tg::MLP& net) {
  auto [x, y] = seed_data();
  tg::SGD opt(net.parameters(), {.lr = kLr});
  Run run;
  for (int step = 0; step < kSteps; ++step) {
    opt.zero_grad();
    const tg::Var loss = tg::mse_loss(net(x), y);
    loss.backward();
    if (step == 0) run.first_loss = loss.item();
    run.final_loss = loss.item();
    run.grads_equal_every_step =
        run.grads_equal_every_step && rows_equal(net.linear(0).weight.grad().value());
    opt.step();
    run.rows_equal_every_step =
        run.rows_equal_every_step && rows_equal(net.linear(0).weight.value());
  }
  return run;
}

}  // namespace

TEST_CASE("seed experiment: constant init keeps the hidden units identical - random init wins") {
  std::vector<std::string> warnings;
  auto previous = tg::set_warning_handler([&](const std::string& m) { warnings.push_back(m); });

  tg::Rng rng(2024);
  tg::MLP same({2, 3, 1}, tg::Activation::sigmoid, tg::Activation::sigmoid, rng, false);
  for (auto& p : same.parameters()) tg::init::constant(p, 0.5);
  tg::set_warning_handler(previous);
  // The hidden layer's constant init is flagged; the single output unit is not.
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].find("[3, 2]") != std::string::npos);

  const Run constant_run = train(same);
  CHECK(constant_run.rows_equal_every_step);
  CHECK(constant_run.grads_equal_every_step);
  CHECK(constant_run.final_loss < constant_run.first_loss);  // it does learn, as one unit

  // The diagnostics say so, for weights and gradients.
  const auto report = tg::diagnose(same, seed_data().first);
  const auto& hidden = report.layer("layers.0");
  CHECK(hidden.all_units_identical());
  CHECK((hidden.identical_weights == std::vector<std::vector<int64_t>>{{0, 1, 2}}));
  CHECK((hidden.identical_grads == std::vector<std::vector<int64_t>>{{0, 1, 2}}));
  CHECK(report.str().find("the whole layer acts as one unit") != std::string::npos);

  // The three identical units are one unit: a 2-1-1 network with that unit's weights and
  // the summed output weights computes the same predictions.
  tg::MLP one({2, 1, 1}, tg::Activation::sigmoid, tg::Activation::sigmoid, rng, false);
  {
    tg::Tensor w1 = one.linear(0).weight.value(), w2 = one.linear(1).weight.value();
    const auto h = same.linear(0).weight.value().to_vector();
    const auto o = same.linear(1).weight.value().to_vector();
    w1.data<float>()[0] = static_cast<float>(h[0]);
    w1.data<float>()[1] = static_cast<float>(h[1]);
    w2.data<float>()[0] = static_cast<float>(o[0] + o[1] + o[2]);
  }
  const auto x = seed_data().first;
  CHECK(tg::allclose(one(x).value(), same(x).value(), 1e-5, 1e-6));

  // Random init (PyTorch's default, seeded): the units differ and the loss goes lower.
  tg::Rng rng2(2024);
  tg::MLP random({2, 3, 1}, tg::Activation::sigmoid, tg::Activation::sigmoid, rng2, false);
  const Run random_run = train(random);
  CHECK_FALSE(random_run.rows_equal_every_step);
  const auto r2 = tg::diagnose(random);
  CHECK(r2.layer("layers.0").identical_weights.empty());
  INFO("constant-init loss " << constant_run.final_loss << ", random-init loss "
                             << random_run.final_loss);
  CHECK(random_run.final_loss < constant_run.final_loss);
}

TEST_CASE("seed experiment is deterministic: same seed, bit-identical model and training") {
  auto run_once = [](uint64_t seed) {
    tg::Rng rng(seed);
    auto net = std::make_unique<tg::MLP>(std::vector<int64_t>{2, 3, 1}, tg::Activation::sigmoid,
                                         tg::Activation::sigmoid, rng, false);
    const auto initial = tgtest::snapshot(*net);
    train(*net);
    return std::pair{initial, tgtest::snapshot(*net)};
  };
  const auto a = run_once(77), b = run_once(77), c = run_once(78);
  for (size_t i = 0; i < a.first.size(); ++i) {
    CHECK(tg::equal(a.first[i], b.first[i]));
    CHECK(tg::equal(a.second[i], b.second[i]));
  }
  CHECK_FALSE(tg::equal(a.first[0], c.first[0]));
}
