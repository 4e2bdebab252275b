#include <catch2/catch.hpp>

#include <cmath>
#include <functional>

#include "models/checkpoint.hpp"
#include "models/sequential.hpp"
#include "models_test_util.hpp"
#include "ops/activation.hpp"
#include "ops/arith.hpp"
#include "ops/loss.hpp"
#include "ops/matmul.hpp"
#include "ops/reduce.hpp"
#include "optim/optim.hpp"

namespace {

using OptPtr = std::unique_ptr<tg::Optimizer>;
using MakeOpt = std::function<OptPtr(std::vector<tg::Var>)>;

// The optimizers every test below runs over.
std::vector<std::pair<std::string, MakeOpt>> all_optimizers() {
  return {
      {"SGD",
       [](auto p) {
         return std::make_unique<tg::SGD>(p, tg::SGDOptions{.lr = 0.5, .momentum = 0.9});
       }},
      {"SGD-nesterov",
       [](auto p) {
         return std::make_unique<tg::SGD>(
             p, tg::SGDOptions{.lr = 0.3, .momentum = 0.9, .nesterov = true});
       }},
      {"Adam", [](auto p) { return std::make_unique<tg::Adam>(p, tg::AdamOptions{.lr = 0.05}); }},
      {"Adam-amsgrad",
       [](auto p) {
         return std::make_unique<tg::Adam>(p, tg::AdamOptions{.lr = 0.05, .amsgrad = true});
       }},
      {"AdamW",
       [](auto p) { return std::make_unique<tg::AdamW>(p, tg::AdamWOptions{.lr = 0.05}); }},
      {"RMSprop",
       [](auto p) { return std::make_unique<tg::RMSprop>(p, tg::RMSpropOptions{.lr = 0.01}); }},
      {"RMSprop-centered",
       [](auto p) {
         return std::make_unique<tg::RMSprop>(
             p, tg::RMSpropOptions{.lr = 0.005, .momentum = 0.5, .centered = true});
       }},
      {"Adagrad",
       [](auto p) { return std::make_unique<tg::Adagrad>(p, tg::AdagradOptions{.lr = 0.3}); }},
  };
}

// Rates for the quadratic below (curvatures up to 20, so plain SGD needs lr < 0.1).
// NOTE: AdamW runs without decay here: decoupled decay moves the minimum away from target.
std::vector<std::pair<std::string, MakeOpt>> quadratic_optimizers() {
  return {
      {"SGD",
       [](auto p) {
         return std::make_unique<tg::SGD>(p, tg::SGDOptions{.lr = 0.02, .momentum = 0.9});
       }},
      {"SGD-nesterov",
       [](auto p) {
         return std::make_unique<tg::SGD>(
             p, tg::SGDOptions{.lr = 0.02, .momentum = 0.9, .nesterov = true});
       }},
      {"Adam", [](auto p) { return std::make_unique<tg::Adam>(p, tg::AdamOptions{.lr = 0.05}); }},
      {"Adam-amsgrad",
       [](auto p) {
         return std::make_unique<tg::Adam>(p, tg::AdamOptions{.lr = 0.05, .amsgrad = true});
       }},
      {"AdamW",
       [](auto p) {
         return std::make_unique<tg::AdamW>(p, tg::AdamWOptions{.lr = 0.05, .weight_decay = 0});
       }},
      {"RMSprop",
       [](auto p) { return std::make_unique<tg::RMSprop>(p, tg::RMSpropOptions{.lr = 0.01}); }},
      {"RMSprop-centered",
       [](auto p) {
         return std::make_unique<tg::RMSprop>(
             p, tg::RMSpropOptions{.lr = 0.005, .momentum = 0.5, .centered = true});
       }},
      {"Adagrad",
       [](auto p) { return std::make_unique<tg::Adagrad>(p, tg::AdagradOptions{.lr = 0.5}); }},
  };
}

std::vector<double> values(const tg::Var& v) { return v.value().to_vector(); }

// Applies two steps with the given gradients to p (f64); returns p after each.
std::pair<std::vector<double>, std::vector<double>> two_steps(tg::Optimizer& opt, tg::Var p,
                                                              const std::vector<double>& g1,
                                                              const std::vector<double>& g2) {
  p.set_grad(tg::constant(tg::tensor(g1, {3}, tg::f64)));
  opt.step();
  auto after1 = values(p);
  p.set_grad(tg::constant(tg::tensor(g2, {3}, tg::f64)));
  opt.step();
  return {after1, values(p)};
}

const std::vector<double> kP0 = {0.5, -1.5, 2.0};
const std::vector<double> kG1 = {0.1, -0.2, 0.3};
const std::vector<double> kG2 = {-0.4, 0.5, 0.05};

void check_close(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t k = 0; k < got.size(); ++k)
    CHECK(got[k] == Approx(want[k]).epsilon(1e-12).margin(1e-15));
}

// Closed-form expectation: `rule` maps (p, g, t) to the new p, keeping its own state.
template <class Rule>
void expect_two_steps(tg::Optimizer& opt, tg::Var p, Rule rule) {
  auto [s1, s2] = two_steps(opt, p, kG1, kG2);
  std::vector<double> e1(3), e2(3);
  for (size_t k = 0; k < 3; ++k) {
    e1[k] = rule(k, kP0[k], kG1[k], 1);
    e2[k] = rule(k, e1[k], kG2[k], 2);
  }
  check_close(s1, e1);
  check_close(s2, e2);
}

tg::Var fresh_param() { return tg::param(tg::tensor(kP0, {3}, tg::f64)); }

}  // namespace

TEST_CASE("SGD: exact first two steps (plain, momentum with dampening, Nesterov, weight decay)") {
  {
    tg::Var p = fresh_param();
    tg::SGD opt({p}, {.lr = 0.1});
    expect_two_steps(opt, p, [](size_t, double w, double g, int) { return w - 0.1 * g; });
  }
  {
    tg::Var p = fresh_param();
    tg::SGD opt({p}, {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01});
    std::vector<double> buf(3);
    expect_two_steps(opt, p, [&](size_t k, double w, double g, int t) {
      const double d = g + 0.01 * w;
      buf[k] = t == 1 ? d : 0.9 * buf[k] + (1 - 0.1) * d;  // no dampening on the first step
      return w - 0.1 * buf[k];
    });
  }
  {
    tg::Var p = fresh_param();
    tg::SGD opt({p}, {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true});
    std::vector<double> buf(3);
    expect_two_steps(opt, p, [&](size_t k, double w, double g, int t) {
      const double d = g + 0.01 * w;
      buf[k] = t == 1 ? d : 0.9 * buf[k] + d;
      return w - 0.1 * (d + 0.9 * buf[k]);
    });
  }
  tg::Var p = fresh_param();
  CHECK_THROWS_AS(tg::SGD({p}, {.lr = 0.1, .nesterov = true}), tg::Error);
  CHECK_THROWS_WITH(tg::SGD({p}, {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true}),
                    Catch::Contains("SGD: Nesterov") && Catch::Contains("dampening 0.1"));
  {
    // As torch.optim.SGD, Nesterov's condition binds the defaults only: a group without
    // momentum takes plain steps.
    tg::Var q = fresh_param();
    tg::SGD opt({{{q}, {{"momentum", 0.0}}}}, {.lr = 0.1, .momentum = 0.9, .nesterov = true});
    expect_two_steps(opt, q, [](size_t, double w, double g, int) { return w - 0.1 * g; });
  }
  CHECK_THROWS_AS(tg::SGD({p}, {.lr = -1}), tg::Error);
  CHECK_THROWS_AS(tg::SGD({p, p}, {.lr = 0.1}), tg::Error);
}

TEST_CASE("Adam and AMSGrad: exact first two steps against the bias-corrected textbook form") {
  for (bool amsgrad : {false, true}) {
    INFO("amsgrad " << amsgrad);
    tg::Var p = fresh_param();
    const double lr = 0.01, b1 = 0.8, b2 = 0.9, eps = 1e-3, wd = 0.05;
    tg::Adam opt(
        {p},
        {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd, .amsgrad = amsgrad});
    std::vector<double> m(3), v(3), vmax(3);
    expect_two_steps(opt, p, [&](size_t k, double w, double g, int t) {
      const double d = g + wd * w;
      m[k] = b1 * m[k] + (1 - b1) * d;
      v[k] = b2 * v[k] + (1 - b2) * d * d;
      vmax[k] = std::max(vmax[k], v[k]);
      const double mhat = m[k] / (1 - std::pow(b1, t));
      const double vhat = (amsgrad ? vmax[k] : v[k]) / (1 - std::pow(b2, t));
      return w - lr * mhat / (std::sqrt(vhat) + eps);
    });
  }
}

TEST_CASE("AdamW: exact first two steps with decoupled weight decay") {
  tg::Var p = fresh_param();
  const double lr = 0.01, b1 = 0.9, b2 = 0.99, eps = 1e-8, wd = 0.1;
  tg::AdamW opt({p}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd});
  std::vector<double> m(3), v(3);
  expect_two_steps(opt, p, [&](size_t k, double w, double g, int t) {
    w *= 1 - lr * wd;  // decay the weight, not the gradient
    m[k] = b1 * m[k] + (1 - b1) * g;
    v[k] = b2 * v[k] + (1 - b2) * g * g;
    return w -
           lr * (m[k] / (1 - std::pow(b1, t))) / (std::sqrt(v[k] / (1 - std::pow(b2, t))) + eps);
  });
}

TEST_CASE("RMSprop: exact first two steps, plain and centered with momentum") {
  {
    tg::Var p = fresh_param();
    tg::RMSprop opt({p}, {.lr = 0.01, .alpha = 0.9, .eps = 1e-6});
    std::vector<double> sq(3);
    expect_two_steps(opt, p, [&](size_t k, double w, double g, int) {
      sq[k] = 0.9 * sq[k] + 0.1 * g * g;
      return w - 0.01 * g / (std::sqrt(sq[k]) + 1e-6);
    });
  }
  {
    tg::Var p = fresh_param();
    tg::RMSprop opt({p}, {.lr = 0.01,
                          .alpha = 0.9,
                          .eps = 1e-6,
                          .weight_decay = 0.02,
                          .momentum = 0.5,
                          .centered = true});
    std::vector<double> sq(3), ga(3), buf(3);
    expect_two_steps(opt, p, [&](size_t k, double w, double g, int) {
      const double d = g + 0.02 * w;
      sq[k] = 0.9 * sq[k] + 0.1 * d * d;
      ga[k] = 0.9 * ga[k] + 0.1 * d;
      buf[k] = 0.5 * buf[k] + d / (std::sqrt(sq[k] - ga[k] * ga[k]) + 1e-6);
      return w - 0.01 * buf[k];
    });
  }
}

TEST_CASE("Adagrad: exact first two steps with lr decay and an initial accumulator") {
  tg::Var p = fresh_param();
  tg::Adagrad opt({p}, {.lr = 0.1,
                        .lr_decay = 0.5,
                        .weight_decay = 0.01,
                        .initial_accumulator_value = 0.2,
                        .eps = 1e-10});
  std::vector<double> sum(3, 0.2);
  expect_two_steps(opt, p, [&](size_t k, double w, double g, int t) {
    const double d = g + 0.01 * w;
    sum[k] += d * d;
    return w - 0.1 / (1 + (t - 1) * 0.5) * d / (std::sqrt(sum[k]) + 1e-10);
  });
}

TEST_CASE("step skips parameters without a gradient, zero_grad drops gradients") {
  tg::Var a = fresh_param(), b = fresh_param();
  tg::Adam opt({a, b}, {.lr = 0.1});
  a.set_grad(tg::constant(tg::tensor(kG1, {3}, tg::f64)));
  opt.step();
  CHECK(opt.param_steps(0) == 1);
  CHECK(opt.param_steps(1) == 0);
  CHECK(opt.steps() == 1);
  CHECK(values(b) == kP0);
  CHECK(values(a) != kP0);
  tg::NpzArchive state;
  opt.state_dict(state);
  CHECK(state.contains("state.0.exp_avg"));
  CHECK_FALSE(state.contains("state.1.exp_avg"));  // never updated, no state
  opt.zero_grad();
  CHECK_FALSE(a.grad().defined());
  opt.set_lr(0.5);
  CHECK(opt.lr() == 0.5);
}

TEST_CASE("optimizer state follows a parameter converted to another dtype") {
  tg::Var p = tg::param(tg::tensor(kP0, {3}, tg::f32));
  tg::Adam opt({p}, {.lr = 0.1});
  p.set_grad(tg::constant(tg::tensor(kG1, {3}, tg::f32)));
  opt.step();
  p.set_value(p.value().to(tg::f64));  // what Module::to does
  p.set_grad(tg::constant(tg::tensor(kG2, {3}, tg::f64)));
  opt.step();
  CHECK(p.dtype() == tg::f64);
  tg::NpzArchive state;
  opt.state_dict(state);
  CHECK(state.tensor("state.0.exp_avg").dtype() == tg::f64);
  CHECK(opt.param_steps(0) == 2);
}

TEST_CASE("every optimizer converges on a quadratic with a known minimum") {
  const std::vector<double> target = {1.0, -2.0, 3.0}, curvature = {1.0, 10.0, 0.5};
  for (auto& [name, make] : quadratic_optimizers()) {
    INFO(name);
    tg::Var p = tg::param(tg::zeros({3}, tg::f64));
    auto opt = make({p});
    const tg::Var c = tg::constant(tg::tensor(target, {3}, tg::f64));
    const tg::Var a = tg::constant(tg::tensor(curvature, {3}, tg::f64));
    for (int step = 0; step < 3000; ++step) {
      opt->zero_grad();
      const tg::Var d = p - c;
      tg::sum(a * d * d).backward();  // minimum 0 at p = target
      opt->step();
    }
    const auto got = values(p);
    for (size_t k = 0; k < 3; ++k) CHECK(got[k] == Approx(target[k]).margin(1e-3));
  }
}

TEST_CASE("every optimizer trains XOR with MLP({2, 8, 1}, Tanh, Sigmoid) to loss < 0.01") {
  for (auto& [name, make] : all_optimizers()) {
    INFO(name);
    tg::Rng rng(1234);
    tg::MLP mlp({2, 8, 1}, tg::Activation::tanh, tg::Activation::sigmoid, rng);
    auto opt = make(mlp.parameters());
    const tg::Var x = tgtest::xor_inputs(), y = tgtest::xor_targets();
    double loss = 1.0;
    int step = 0;
    for (; step < 5000 && loss >= 0.01; ++step) {
      opt->zero_grad();
      const tg::Var l = tg::mse_loss(mlp(x), y);
      loss = l.item();
      l.backward();
      opt->step();
    }
    INFO("loss " << loss << " after " << step << " steps");
    CHECK(loss < 0.01);
  }
}

TEST_CASE("a resumed run follows the uninterrupted one bit for bit, for every optimizer") {
  const tg::Var x = tgtest::xor_inputs(), y = tgtest::xor_targets();
  for (auto& [name, make] : all_optimizers()) {
    INFO(name);
    auto train = [&](tg::MLP& mlp, tg::Optimizer& opt, tg::LrScheduler& sched, int steps) {
      for (int i = 0; i < steps; ++i) {
        opt.zero_grad();
        tg::mse_loss(mlp(x), y).backward();
        opt.step();
        sched.step();
      }
    };
    tg::Rng rng(5);
    tg::MLP a({2, 8, 1}, tg::Activation::tanh, tg::Activation::sigmoid, rng);
    auto opt_a = make(a.parameters());
    tg::CosineAnnealingLR sched_a(*opt_a, 40);
    train(a, *opt_a, sched_a, 15);
    tg::NpzArchive ckpt;
    tg::write_parameters(a, ckpt, "model.");
    opt_a->state_dict(ckpt, "optim.");
    sched_a.state_dict(ckpt, "sched.");
    train(a, *opt_a, sched_a, 15);

    tg::Rng other(99);
    tg::MLP b({2, 8, 1}, tg::Activation::tanh, tg::Activation::sigmoid, other);
    auto opt_b = make(b.parameters());
    tg::CosineAnnealingLR sched_b(*opt_b, 40);
    const auto loaded = tg::NpzArchive::decode(ckpt.encode());  // through the file format
    tg::read_parameters(b, loaded, "model.", false);
    opt_b->load_state_dict(loaded, "optim.");
    sched_b.load_state_dict(loaded, "sched.");
    CHECK(opt_b->lr() == opt_a->lr() * 0 + sched_b.lr_at(15));
    train(b, *opt_b, sched_b, 15);
    CHECK(tgtest::same_values(b, tgtest::snapshot(a)));
    CHECK(opt_b->steps() == 30);
  }
}

TEST_CASE("loading the wrong optimizer state throws and changes nothing") {
  tg::Var p = fresh_param(), q = fresh_param();
  tg::Adam adam({p}, {.lr = 0.1});
  p.set_grad(tg::constant(tg::tensor(kG1, {3}, tg::f64)));
  adam.step();
  tg::NpzArchive state;
  adam.state_dict(state);

  tg::SGD sgd({p}, {.lr = 0.7, .momentum = 0.9});
  CHECK_THROWS_WITH(sgd.load_state_dict(state), Catch::Contains("not state of the SGD optimizer"));
  CHECK(sgd.lr() == 0.7);
  CHECK(sgd.steps() == 0);

  tg::Adam two({p, q});
  CHECK_THROWS_WITH(two.load_state_dict(state), Catch::Contains("state for 1 parameters"));
  tg::Var f32p = tg::param(tg::zeros({3}));
  tg::Adam narrow({f32p});
  CHECK_THROWS_WITH(narrow.load_state_dict(state), Catch::Contains("is float64"));
  tg::Var wrong = tg::param(tg::zeros({4}, tg::f64));
  tg::Adam shaped({wrong});
  CHECK_THROWS_WITH(shaped.load_state_dict(state), Catch::Contains("has shape [3]"));
  CHECK(shaped.steps() == 0);

  // Step counts that no run gives.
  tg::NpzArchive bad_steps;
  adam.state_dict(bad_steps);
  bad_steps.put_int("steps", -1);
  CHECK_THROWS_WITH(tg::Adam({p}).load_state_dict(bad_steps),
                    Catch::Contains("negative step count -1"));
  bad_steps.put_int("steps", 1);
  bad_steps.put_i64("param_steps", {2});
  CHECK_THROWS_AS(tg::Adam({p}).load_state_dict(bad_steps), tg::IoError);
  CHECK_THROWS_WITH(tg::Adam({p}).load_state_dict(bad_steps),
                    Catch::Contains("parameter 0 has 2 updates in 1 steps"));

  const auto dir = tgtest::temp_dir("optim_state");
  adam.save((dir / "adam.npz").string());
  tg::Adam again({p}, {.lr = 0.3});
  again.load((dir / "adam.npz").string());
  CHECK(again.lr() == 0.1);
  CHECK(again.param_steps(0) == 1);
}

TEST_CASE("schedulers follow PyTorch's closed forms") {
  tg::Var p = fresh_param();
  tg::SGD opt({p}, {.lr = 1.0});
  {
    tg::StepLR s(opt, 3, 0.5);
    std::vector<double> got;
    for (int e = 0; e < 7; ++e, s.step()) got.push_back(opt.lr());
    CHECK((got == std::vector<double>{1, 1, 1, 0.5, 0.5, 0.5, 0.25}));
  }
  opt.set_lr(1.0);
  {
    tg::ExponentialLR s(opt, 0.9);
    s.step();
    s.step();
    CHECK(opt.lr() == Approx(0.81));
  }
  opt.set_lr(1.0);
  {
    tg::CosineAnnealingLR s(opt, 10, 0.1);
    CHECK(opt.lr() == 1.0);
    for (int e = 0; e < 5; ++e) s.step();
    CHECK(opt.lr() == Approx(0.55));
    for (int e = 0; e < 5; ++e) s.step();
    CHECK(opt.lr() == Approx(0.1));
  }
  opt.set_lr(1.0);
  {
    tg::LinearWarmup s(opt, 4, 0.2);
    CHECK(opt.lr() == Approx(0.2));
    s.step();
    CHECK(opt.lr() == Approx(0.4));
    for (int e = 0; e < 5; ++e) s.step();
    CHECK(opt.lr() == 1.0);
  }
  opt.set_lr(1.0);
  {
    tg::LinearWarmup s(opt, 2, 0.5, std::make_unique<tg::StepLR>(opt, 2, 0.1));
    std::vector<double> got;
    for (int e = 0; e < 6; ++e, s.step()) got.push_back(opt.lr());
    const std::vector<double> want = {0.5, 0.75, 1.0, 1.0, 0.1, 0.1};
    for (size_t i = 0; i < want.size(); ++i) CHECK(got[i] == Approx(want[i]));
  }
}

TEST_CASE("clip_grad_norm returns the total norm and scales all gradients together") {
  tg::Var a = tg::param(tg::zeros({2}, tg::f64)), b = tg::param(tg::zeros({1}, tg::f64)),
          none = tg::param(tg::zeros({1}, tg::f64));
  a.set_grad(tg::constant(tg::tensor({3, 0}, {2}, tg::f64)));
  b.set_grad(tg::constant(tg::tensor({4}, {1}, tg::f64)));
  const tg::Tensor shared = a.grad().value();
  const double total = tg::clip_grad_norm({a, b, none}, 1.0);
  CHECK(total == Approx(5.0));
  CHECK(values(a.grad())[0] == Approx(3.0 / (5.0 + 1e-6)));
  CHECK(values(b.grad())[0] == Approx(4.0 / (5.0 + 1e-6)));
  CHECK(shared.to_vector()[0] == 3.0);  // a new gradient: buffers it shared are untouched
  CHECK_FALSE(none.grad().defined());
  // Below the limit nothing changes.
  CHECK(tg::clip_grad_norm({a, b}, 10.0) == Approx(1.0).epsilon(1e-6));
  CHECK(values(b.grad())[0] == Approx(4.0 / (5.0 + 1e-6)));
  // Infinity norm.
  b.set_grad(tg::constant(tg::tensor({-8}, {1}, tg::f64)));
  CHECK(tg::clip_grad_norm({a, b}, 2.0, INFINITY) == 8.0);
  CHECK(values(b.grad())[0] == Approx(-2.0).epsilon(1e-6));
  b.set_grad(tg::constant(tg::tensor({NAN}, {1}, tg::f64)));
  CHECK_THROWS_AS(tg::clip_grad_norm({a, b}, 1.0, 2.0, true), tg::Error);

  // Without the error, a NaN total makes every gradient NaN (torch's clamp(NaN, max=1)).
  a.set_grad(tg::constant(tg::tensor({3, 0}, {2}, tg::f64)));
  CHECK(std::isnan(tg::clip_grad_norm({a, b}, 1.0)));
  CHECK(std::isnan(values(a.grad())[0]));
  CHECK(std::isnan(values(a.grad())[1]));
  // Norms of other orders, as torch.nn.utils.clip_grad_norm_ gives them for grads
  // [1, 0.5, -2] and [3, 4]: -inf is the smallest magnitude, p = -1 (sum |g|^-1)^-1.
  auto grads = [&] {
    a.set_grad(tg::constant(tg::tensor({1, 0.5}, {2}, tg::f64)));
    b.set_grad(tg::constant(tg::tensor({-2, 3, 4}, {3}, tg::f64)));
  };
  b = tg::param(tg::zeros({3}, tg::f64));
  grads();
  CHECK(tg::clip_grad_norm({a, b}, 1.0, -INFINITY) == 0.5);
  CHECK(values(b.grad())[2] == 4.0);
  grads();
  const double harmonic = 1.0 / (1.0 + 2.0 + 0.5 + 1.0 / 3.0 + 0.25);
  CHECK(tg::clip_grad_norm({a, b}, 0.1, -1.0) == Approx(harmonic).epsilon(1e-14));
  CHECK(values(a.grad())[1] == Approx(0.5 * 0.1 / (harmonic + 1e-6)).epsilon(1e-14));
  for (double bad : {0.0, double(NAN)})
    CHECK_THROWS_WITH(tg::clip_grad_norm({a, b}, 1.0, bad),
                      Catch::Contains("clip_grad_norm: norm_type"));

  a.set_grad(tg::constant(tg::tensor({-3, 0.5}, {2}, tg::f64)));
  tg::clip_grad_value({a}, 1.0);
  CHECK((values(a.grad()) == std::vector<double>{-1.0, 0.5}));
}

TEST_CASE("schedulers' load_state_dict errors name the file as the optimizers' do") {
  tg::Var w = tg::param(tg::zeros({2}, tg::f64)), b = tg::param(tg::zeros({1}, tg::f64));
  tg::SGD two(std::vector<tg::ParamGroup>{{{w}, {}}, {{b}, {}}}, {.lr = 0.1});
  tg::StepLR step(two, 2, 0.5);
  const auto dir = tgtest::temp_dir("sched_state");
  const std::string path = (dir / "sched.npz").string();
  auto save = [&](const tg::NpzArchive& a) { a.save(path); };
  tg::NpzArchive state;
  step.state_dict(state);
  save(state);
  tg::SGD one({w, b}, {.lr = 0.7});
  tg::StepLR narrow(one, 2, 0.5);
  CHECK_THROWS_AS(narrow.load_state_dict(tg::NpzArchive::load(path)), tg::IoError);
  CHECK_THROWS_WITH(narrow.load_state_dict(tg::NpzArchive::load(path)),
                    Catch::StartsWith("scheduler state '" + path + "'") &&
                        Catch::Contains("base rates for 2 parameter groups"));
  state.put_int("scheduler.epoch", -3);
  save(state);
  CHECK_THROWS_WITH(
      step.load_state_dict(tg::NpzArchive::load(path)),
      Catch::StartsWith("scheduler state '" + path + "'") && Catch::Contains("epoch -3"));
  // A rate the schedule cannot give at the stored epoch (OneCycleLR past its steps).
  tg::OneCycleLR cycle(one, 1.0, 4);
  tg::NpzArchive late;
  cycle.state_dict(late);
  late.put_int("scheduler.epoch", 9);
  save(late);
  CHECK_THROWS_AS(cycle.load_state_dict(tg::NpzArchive::load(path)), tg::IoError);
  CHECK_THROWS_WITH(
      cycle.load_state_dict(tg::NpzArchive::load(path)),
      Catch::StartsWith("scheduler state '" + path + "'") && Catch::Contains("OneCycleLR"));
  CHECK(cycle.epoch() == 0);
  // ReduceLROnPlateau.
  tg::ReduceLROnPlateau plateau(one);
  tg::NpzArchive ps;
  plateau.state_dict(ps);
  ps.put_int("scheduler.num_bad_epochs", -1);
  save(ps);
  CHECK_THROWS_AS(plateau.load_state_dict(tg::NpzArchive::load(path)), tg::IoError);
  CHECK_THROWS_WITH(plateau.load_state_dict(tg::NpzArchive::load(path)),
                    Catch::StartsWith("ReduceLROnPlateau state '" + path + "'") &&
                        Catch::Contains("num_bad_epochs -1"));
  // Not read from a file: no name.
  CHECK_THROWS_WITH(plateau.load_state_dict(ps), Catch::StartsWith("ReduceLROnPlateau state: "));
}

TEST_CASE("parameter groups: own options, own rates, state_dict per group") {
  tg::Var w = tg::param(tg::tensor({1, 2, 3}, {3}, tg::f64));
  tg::Var b = tg::param(tg::tensor({0.5}, {1}, tg::f64));
  tg::SGD sgd(std::vector<tg::ParamGroup>{{{w}, {}}, {{b}, {{"lr", 0.5}, {"weight_decay", 0.0}}}},
              {.lr = 0.1, .weight_decay = 0.1});
  CHECK(sgd.num_groups() == 2);
  CHECK(sgd.lr() == 0.1);
  CHECK(sgd.lr(1) == 0.5);
  CHECK(sgd.group_of(1) == 1);
  CHECK(sgd.group_params(1).size() == 1);
  CHECK(sgd.group_options(0).weight_decay == 0.1);
  CHECK(sgd.group_options(1).weight_decay == 0.0);
  CHECK(sgd.group_options(1).lr == 0.5);
  w.set_grad(tg::constant(tg::tensor({1, 1, 1}, {3}, tg::f64)));
  b.set_grad(tg::constant(tg::tensor({1}, {1}, tg::f64)));
  sgd.step();
  // w: 1 - 0.1 * (1 + 0.1 * 1);  b: 0.5 - 0.5 * 1 (no decay).
  CHECK(w.value().data<double>()[0] == 1.0 - 0.1 * (1.0 + 0.1 * 1.0));
  CHECK(b.value().data<double>()[0] == 0.0);

  // Bad groups.
  CHECK_THROWS_WITH(tg::SGD(std::vector<tg::ParamGroup>{{{w}, {}}, {{b}, {{"beta1", 0.9}}}}),
                    Catch::Contains("SGD: parameter group 1 has an unknown option 'beta1'"));
  CHECK_THROWS_WITH(tg::Adam(std::vector<tg::ParamGroup>{{{w}, {{"beta2", 1.5}}}}),
                    Catch::Contains("Adam: invalid beta2"));
  CHECK_THROWS_WITH(tg::SGD(std::vector<tg::ParamGroup>{{{w}, {}}, {{w}, {}}}),
                    Catch::Contains("appears more than once"));
  CHECK_THROWS_WITH(tg::SGD(std::vector<tg::ParamGroup>{{{w}, {{"lr", -1.0}}}}),
                    Catch::Contains("invalid learning rate"));
  CHECK_THROWS_AS(tg::SGD(std::vector<tg::ParamGroup>{}), tg::Error);
  CHECK_THROWS_AS(sgd.set_lr(2, 0.1), tg::IndexError);

  // set_lr(lr) sets every group; set_lr(g, lr) one.
  sgd.set_lr(1, 0.25);
  tg::NpzArchive state;
  sgd.state_dict(state);
  CHECK(state.contains("group_lrs"));
  tg::SGD again(std::vector<tg::ParamGroup>{{{w}, {}}, {{b}, {}}}, {.lr = 0.9});
  again.load_state_dict(state);
  CHECK(again.lr(0) == 0.1);
  CHECK(again.lr(1) == 0.25);
  // A file from before groups (no group_lrs) gives every group its lr.
  auto legacy = state;
  legacy.erase("group_lrs");
  legacy.erase("group_sizes");
  again.load_state_dict(legacy);
  CHECK(again.lr(1) == 0.1);
  // Other group structure: an error, nothing changed.
  tg::SGD one({w, b}, {.lr = 0.9});
  CHECK_THROWS_WITH(one.load_state_dict(state), Catch::Contains("rates for 2 parameter groups"));
  CHECK(one.lr() == 0.9);
  tg::SGD split(std::vector<tg::ParamGroup>{{{w, b}, {}}, {{}, {}}}, {.lr = 0.9});
  CHECK_THROWS_WITH(split.load_state_dict(state), Catch::Contains("other sizes"));
  CHECK(split.lr(0) == 0.9);
  sgd.set_lr(0.3);
  CHECK(sgd.lr(0) == 0.3);
  CHECK(sgd.lr(1) == 0.3);
}

TEST_CASE("schedulers scale each group from its own initial rate, state keeps every base") {
  tg::Var w = tg::param(tg::zeros({2}, tg::f64)), b = tg::param(tg::zeros({1}, tg::f64));
  tg::SGD sgd(std::vector<tg::ParamGroup>{{{w}, {}}, {{b}, {{"lr", 0.01}}}}, {.lr = 0.1});
  tg::StepLR step(sgd, 2, 0.5);
  CHECK(step.base_lrs() == std::vector<double>{0.1, 0.01});
  step.step();
  step.step();
  CHECK(sgd.lr(0) == 0.05);
  CHECK(sgd.lr(1) == 0.005);
  CHECK(step.last_lr(1) == 0.005);
  tg::NpzArchive state;
  step.state_dict(state);
  tg::SGD other(std::vector<tg::ParamGroup>{{{w}, {}}, {{b}, {}}}, {.lr = 0.7});
  tg::StepLR resumed(other, 2, 0.5);
  resumed.load_state_dict(state);
  CHECK(other.lr(0) == 0.05);
  CHECK(other.lr(1) == 0.005);
  tg::SGD single({w, b}, {.lr = 0.7});
  tg::StepLR narrow(single, 2, 0.5);
  CHECK_THROWS_WITH(narrow.load_state_dict(state), Catch::Contains("for 2 parameter groups"));
  CHECK(single.lr() == 0.7);

  // OneCycleLR and ReduceLROnPlateau arguments.
  CHECK_THROWS_AS(tg::OneCycleLR(sgd, 1.0, 0), tg::Error);
  CHECK_THROWS_AS(tg::OneCycleLR(sgd, std::vector<double>{1.0}, 10), tg::Error);
  CHECK_THROWS_AS(tg::OneCycleLR(sgd, 1.0, 10, {.pct_start = 1.5}), tg::Error);
  CHECK_THROWS_AS(tg::ReduceLROnPlateau(sgd, {.mode = "up"}), tg::Error);
  CHECK_THROWS_AS(tg::ReduceLROnPlateau(sgd, {.factor = 1.0}), tg::Error);
  CHECK_THROWS_AS(tg::ReduceLROnPlateau(sgd, {.threshold_mode = "x"}), tg::Error);
  CHECK_THROWS_AS(tg::ReduceLROnPlateau(sgd, {.min_lrs = {0.0}}), tg::Error);

  // ReduceLROnPlateau: a NaN metric is never an improvement; state round-trips.
  sgd.set_lr(1.0);
  tg::ReduceLROnPlateau plateau(sgd, {.patience = 1});
  plateau.step(1.0);
  plateau.step(std::nan(""));
  CHECK(sgd.lr() == 1.0);
  plateau.step(std::nan(""));
  CHECK(sgd.lr(0) == Approx(0.1));
  CHECK(sgd.lr(1) == Approx(0.1));
  CHECK(plateau.best() == 1.0);
  tg::NpzArchive ps;
  plateau.state_dict(ps);
  tg::ReduceLROnPlateau back(sgd, {.patience = 1});
  back.load_state_dict(ps);
  CHECK(back.best() == 1.0);
  CHECK(back.epoch() == 3);
}
