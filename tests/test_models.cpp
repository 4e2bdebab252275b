#include <catch2/catch.hpp>

#include <cmath>
#include <set>
#include <type_traits>

#include "graph/gradcheck.hpp"
#include "models/diagnostics.hpp"
#include "models/init.hpp"
#include "models/layers.hpp"
#include "models/sequential.hpp"
#include "models/warning.hpp"
#include "models_test_util.hpp"
#include "ops/activation.hpp"
#include "ops/arith.hpp"
#include "ops/loss.hpp"
#include "ops/reduce.hpp"

namespace {

// DESIGN.md's user-defined module: registration is all it writes.
struct TwoLayer : tg::Module {
  tg::Linear fc1, fc2;
  TwoLayer(int in, int hidden, tg::Rng& rng) : fc1(in, hidden, rng), fc2(hidden, 1, rng) {
    register_module("fc1", fc1);
    register_module("fc2", fc2);
  }
  tg::Var forward(const tg::Var& x) { return tg::sigmoid(fc2(tg::tanh(fc1(x)))); }
};

// The same with activation modules, which diagnostics can observe.
struct TwoLayerModules : tg::Module {
  tg::Linear fc1, fc2;
  tg::ReLU act;
  TwoLayerModules(tg::Rng& rng) : fc1(2, 3, rng), fc2(3, 1, rng) {
    register_module("fc1", fc1);
    register_module("act", act);
    register_module("fc2", fc2);
  }
  tg::Var forward(const tg::Var& x) { return fc2(act(fc1(x))); }
};

std::vector<std::string> names_of(const tg::Module& m) {
  std::vector<std::string> out;
  for (const auto& [n, p] : m.named_parameters()) out.push_back(n);
  return out;
}

// Captures warnings for its lifetime.
struct WarningCapture {
  std::vector<std::string> messages;
  tg::WarningHandler previous;
  WarningCapture() {
    previous = tg::set_warning_handler([this](const std::string& m) { messages.push_back(m); });
  }
  ~WarningCapture() { tg::set_warning_handler(previous); }
};

}  // namespace

TEST_CASE("a user module gets named parameters, children and modes from registration") {
  tg::Rng rng(1);
  TwoLayer net(2, 4, rng);
  CHECK((names_of(net) ==
         std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}));
  CHECK(net.parameters().size() == 4);
  CHECK(net.num_parameters() == 2 * 4 + 4 + 4 + 1);
  CHECK(net.children().size() == 2);
  CHECK(net.children()[0] == &net.fc1);
  CHECK(net.parameter("fc2.bias").node() == net.fc2.bias.node());
  CHECK_FALSE(net.parameter("fc3.bias").defined());
  CHECK(net.fc1.weight.shape() == tg::Shape{4, 2});
  CHECK(net.fc1.weight.requires_grad());

  CHECK(net.is_training());
  net.eval();
  CHECK_FALSE(net.is_training());
  CHECK_FALSE(net.fc2.is_training());
  net.train();
  CHECK(net.fc1.is_training());

  const auto mods = net.named_modules();
  REQUIRE(mods.size() == 3);
  CHECK(mods[1].first == "fc1");
  CHECK(net.str().find("(fc1): Linear(in_features=2, out_features=4, bias=true)") !=
        std::string::npos);
}

// Modules hold pointers to their members: copying or moving one must not compile.
static_assert(!std::is_copy_constructible_v<tg::Linear> && !std::is_move_constructible_v<tg::MLP>);
static_assert(!std::is_copy_assignable_v<tg::Module> && !std::is_move_assignable_v<tg::Module>);

TEST_CASE("registration rejects bad and duplicate names - shared parameters are listed once") {
  tg::Module m;
  m.register_parameter("w", tg::zeros({2}));
  CHECK_THROWS_AS(m.register_parameter("w", tg::zeros({2})), tg::Error);
  CHECK_THROWS_AS(m.register_parameter("a.b", tg::zeros({2})), tg::Error);
  CHECK_THROWS_AS(m.register_parameter("", tg::zeros({2})), tg::Error);
  tg::Module child;
  CHECK_THROWS_AS(m.register_module("w", child), tg::Error);
  tg::Var shared = child.register_parameter("s", tg::zeros({3}));
  m.register_module("child", child);
  m.register_parameter("alias", shared);
  CHECK((names_of(m) == std::vector<std::string>{"w", "alias"}));
}

TEST_CASE("MLP is a Sequential of Linear and activation modules with PyTorch-style names") {
  tg::Rng rng(7);
  tg::MLP mlp({2, 8, 1}, tg::Activation::tanh, tg::Activation::sigmoid, rng);
  CHECK((names_of(mlp) == std::vector<std::string>{"layers.0.weight", "layers.0.bias",
                                                   "layers.2.weight", "layers.2.bias"}));
  REQUIRE(mlp.layers.size() == 4);
  CHECK(mlp.layers[1].type_name() == "Tanh");
  CHECK(mlp.layers[3].type_name() == "Sigmoid");
  CHECK(mlp.num_linear() == 2);
  CHECK(mlp.linear(1).in_features() == 8);

  tg::MLP no_bias({3, 4, 4, 2}, tg::Activation::relu, tg::Activation::identity, rng, false);
  CHECK((names_of(no_bias) ==
         std::vector<std::string>{"layers.0.weight", "layers.2.weight", "layers.4.weight"}));
  CHECK(no_bias.layers.size() == 5);
  CHECK(tg::activation_from_name("relu") == tg::Activation::relu);
  CHECK_THROWS_AS(tg::activation_from_name("swish"), tg::Error);
  CHECK_THROWS_AS(tg::MLP({3}, tg::Activation::relu, tg::Activation::relu, rng), tg::ShapeError);
}

TEST_CASE("the activation registry: one row per activation, found by name or enum value") {
  const auto& table = tg::activations();
  std::set<std::string> seen;  // names and aliases: all distinct
  for (const auto& a : table) {
    INFO(a.name);
    CHECK(seen.insert(std::string(a.name)).second);
    for (auto alias : a.aliases) CHECK(seen.insert(std::string(alias)).second);
    CHECK(&tg::find_activation(a.name) == &a);
    for (auto alias : a.aliases) CHECK(&tg::find_activation(alias) == &a);
    auto layer = tg::make_activation(a.name);
    REQUIRE(layer);
    CHECK(layer->parameters().empty());
    CHECK(a.make().get() != a.make().get());  // a new layer each time
  }
  CHECK((tg::activation_names() == std::vector<std::string>{"relu", "leaky_relu", "sigmoid", "tanh",
                                                            "identity", "gelu", "silu"}));
  // Every enum value has its row, and the name functions are inverses.
  for (auto v : {tg::Activation::identity, tg::Activation::sigmoid, tg::Activation::tanh,
                 tg::Activation::relu}) {
    const auto& a = tg::find_activation(v);
    CHECK(a.value == v);
    CHECK(tg::activation_name(v) == a.name);
    CHECK(tg::activation_from_name(a.name) == v);
    CHECK(tg::make_activation(v)->type_name() == tg::make_activation(a.name)->type_name());
  }
  CHECK(tg::make_activation(tg::Activation::tanh)->type_name() == "Tanh");
  CHECK(tg::make_activation("relu")->type_name() == "ReLU");
  CHECK(tg::make_activation("sigmoid")->type_name() == "Sigmoid");
  CHECK(tg::make_activation("identity")->type_name() == "Identity");
  CHECK(tg::make_activation("leaky_relu")->str() == "LeakyReLU(negative_slope=0.01)");
  CHECK(tg::activation_from_name("none") == tg::Activation::identity);
  CHECK(tg::activation_from_name("linear") == tg::Activation::identity);
  CHECK(tg::find_activation("none").name == "identity");

  // An unknown name: an Error naming it and every known name.
  for (auto bad : {"swish", "", "Tanh"}) {
    INFO(bad);
    CHECK_THROWS_AS(tg::make_activation(bad), tg::Error);
    CHECK_THROWS_WITH(tg::make_activation(bad),
                      "unknown activation '" + std::string(bad) +
                          "' (known: relu, leaky_relu, sigmoid, tanh, identity, gelu, silu)");
  }
  // A name without an enum value works by name only.
  CHECK_THROWS_WITH(tg::activation_from_name("leaky_relu"),
                    Catch::Contains("'leaky_relu' has no tg::Activation value"));
}

TEST_CASE("LeakyReLU computes leaky_relu with its slope") {
  const tg::Var x = tg::constant(tg::tensor({-2.0, -0.5, 0.0, 1.5}, {4}, tg::f64));
  tg::LeakyReLU def, steep(0.2);
  CHECK(def.negative_slope() == 0.01);
  CHECK(tg::equal(def(x).value(), tg::leaky_relu(x).value()));
  CHECK(tg::equal(steep(x).value(), tg::tensor({-0.4, -0.1, 0.0, 1.5}, {4}, tg::f64)));
  CHECK(steep.str() == "LeakyReLU(negative_slope=0.2)");
}

TEST_CASE("MLP takes activations by name, the same model as by enum value") {
  tg::Rng r1(5), r2(5), r3(5);
  tg::MLP by_enum({3, 6, 2}, tg::Activation::tanh, tg::Activation::identity, r1);
  tg::MLP by_name({3, 6, 2}, "tanh", "identity", r2);
  CHECK(by_name.str() == by_enum.str());
  CHECK(tgtest::same_values(by_name, tgtest::snapshot(by_enum)));
  tg::MLP leaky({3, 6, 6, 2}, "leaky_relu", "none", r3);
  CHECK((names_of(leaky) == std::vector<std::string>{"layers.0.weight", "layers.0.bias",
                                                     "layers.2.weight", "layers.2.bias",
                                                     "layers.4.weight", "layers.4.bias"}));
  CHECK(leaky.layers[1].type_name() == "LeakyReLU");
  CHECK(leaky.layers.size() == 5);  // no Identity after the last Linear
  CHECK_THROWS_WITH(tg::MLP({3, 2}, "relu", "softplus", r3),
                    Catch::Contains("unknown activation 'softplus'"));
}

TEST_CASE("Sequential forward chains its layers and matches the ops") {
  tg::Rng rng(3);
  tg::Sequential seq(std::make_unique<tg::Linear>(3, 2, rng), std::make_unique<tg::ReLU>());
  auto& lin = dynamic_cast<tg::Linear&>(seq[0]);
  const tg::Var x = tg::constant(tg::randn({5, 3}, rng));
  const tg::Var y = seq(x);
  // x W^T + b by hand.
  const auto X = x.value().to_vector(), W = lin.weight.value().to_vector(),
             B = lin.bias.value().to_vector(), Y = y.value().to_vector();
  for (int n = 0; n < 5; ++n)
    for (int o = 0; o < 2; ++o) {
      double s = B[o];
      for (int i = 0; i < 3; ++i) s += X[n * 3 + i] * W[o * 3 + i];
      CHECK(Y[n * 2 + o] == Approx(std::max(s, 0.0)).margin(1e-6));
    }
}

TEST_CASE("Linear is initialised like PyTorch and bit-identically for one seed") {
  tg::Rng a(42), b(42), c(43);
  tg::Linear la(16, 4, a), lb(16, 4, b), lc(16, 4, c);
  CHECK(tg::equal(la.weight.value(), lb.weight.value()));
  CHECK(tg::equal(la.bias.value(), lb.bias.value()));
  CHECK_FALSE(tg::equal(la.weight.value(), lc.weight.value()));
  // Bound 1/sqrt(in) for weight and bias.
  for (const auto& t : {la.weight.value(), la.bias.value()})
    for (double v : t.to_vector()) CHECK(std::abs(v) <= 0.25);
  // Values come from the generator in order: weight first, then bias.
  tg::Rng r(42);
  const auto w = la.weight.value().to_vector();
  for (double v : w) CHECK(v == Approx(r.uniform(-0.25, 0.25)).epsilon(1e-6));
  const auto bias = la.bias.value().to_vector();
  for (double v : bias) CHECK(v == Approx(r.uniform(-0.25, 0.25)).epsilon(1e-6));
  tg::Rng d(5);
  CHECK_THROWS_AS(tg::Linear(0, 3, d), tg::ShapeError);
}

TEST_CASE("initializers fill in place with the right distributions") {
  tg::Rng rng(11);
  tg::Var w = tg::param(tg::zeros({200, 300}, tg::f64));
  const tg::Tensor alias = w.value();

  tg::init::uniform(w, rng, -2.0, 3.0);
  auto v = alias.to_vector();  // in place: the alias sees the values
  CHECK(*std::min_element(v.begin(), v.end()) >= -2.0);
  CHECK(*std::max_element(v.begin(), v.end()) < 3.0);

  auto moments = [](const std::vector<double>& x) {
    double m = 0, s = 0;
    for (double e : x) m += e;
    m /= x.size();
    for (double e : x) s += (e - m) * (e - m);
    return std::pair{m, std::sqrt(s / x.size())};
  };
  tg::init::normal(w, rng, 1.0, 2.0);
  auto [m, s] = moments(w.value().to_vector());
  CHECK(m == Approx(1.0).margin(0.02));
  CHECK(s == Approx(2.0).epsilon(0.01));

  tg::init::xavier_normal(w, rng);
  std::tie(m, s) = moments(w.value().to_vector());
  CHECK(s == Approx(std::sqrt(2.0 / 500.0)).epsilon(0.01));

  tg::init::xavier_uniform(w, rng, 2.0);
  v = w.value().to_vector();
  CHECK(*std::max_element(v.begin(), v.end()) <= 2.0 * std::sqrt(6.0 / 500.0));
  CHECK(*std::max_element(v.begin(), v.end()) > 0.99 * 2.0 * std::sqrt(6.0 / 500.0));

  tg::init::kaiming_normal(w, rng, 0.0, tg::init::FanMode::fan_in, tg::init::Nonlinearity::relu);
  std::tie(m, s) = moments(w.value().to_vector());
  CHECK(s == Approx(std::sqrt(2.0 / 300.0)).epsilon(0.01));

  tg::init::kaiming_uniform(w, rng, 0.0, tg::init::FanMode::fan_out, tg::init::Nonlinearity::relu);
  v = w.value().to_vector();
  CHECK(*std::max_element(v.begin(), v.end()) <= std::sqrt(6.0 / 200.0));

  CHECK(tg::init::calculate_gain(tg::init::Nonlinearity::tanh) == Approx(5.0 / 3.0));
  CHECK(tg::init::fan_in(tg::zeros({4, 3, 5})) == 15);
  CHECK(tg::init::fan_out(tg::zeros({4, 3, 5})) == 20);
  CHECK_THROWS_AS(tg::init::xavier_uniform(tg::param(tg::zeros({4})), rng), tg::ShapeError);

  // Same seed, same values, bit for bit (f32 too).
  tg::Rng r1(5), r2(5);
  tg::Var a = tg::param(tg::zeros({7, 3})), b = tg::param(tg::zeros({7, 3}));
  tg::init::kaiming_uniform(a, r1, std::sqrt(5.0));
  tg::init::kaiming_uniform(b, r2, std::sqrt(5.0));
  CHECK(tg::equal(a.value(), b.value()));
}

TEST_CASE("a constant initializer on a weight matrix warns - on a bias it does not") {
  WarningCapture cap;
  tg::Rng rng(1);
  tg::Linear hidden(2, 3, rng), out(3, 1, rng);
  tg::init::constant(hidden.weight, 0.5);
  REQUIRE(cap.messages.size() == 1);
  CHECK(cap.messages[0].find("symmetry") != std::string::npos);
  CHECK(cap.messages[0].find("3 units") != std::string::npos);
  tg::init::zeros(hidden.bias);
  tg::init::constant(out.weight, 0.5);  // one unit: nothing to be symmetric with
  CHECK(cap.messages.size() == 1);
  for (double v : hidden.weight.value().to_vector()) CHECK(v == 0.5);
}

TEST_CASE("to(dtype) converts every parameter in place and keeps the handles") {
  tg::Rng rng(2);
  tg::MLP mlp({3, 5, 2}, tg::Activation::relu, tg::Activation::identity, rng);
  const auto before = mlp.parameters();
  const auto values = tgtest::snapshot(mlp);
  tg::sum(mlp(tg::constant(tg::ones({4, 3})))).backward();
  mlp.to(tg::f64);
  for (const auto& p : mlp.parameters()) CHECK_FALSE(p.grad().defined());
  const auto after = mlp.parameters();
  for (size_t i = 0; i < after.size(); ++i) {
    CHECK(after[i].node() == before[i].node());
    CHECK(before[i].dtype() == tg::f64);
    CHECK(tg::equal(after[i].value(), values[i].to(tg::f64)));
  }
  const tg::Var y = mlp(tg::constant(tg::ones({4, 3}, tg::f64)));
  CHECK(y.dtype() == tg::f64);
}

TEST_CASE("every MLP parameter receives a gradient - zero_grad drops them") {
  tg::Rng rng(3);
  tg::MLP mlp({2, 8, 1}, tg::Activation::tanh, tg::Activation::sigmoid, rng);
  const tg::Var loss = tg::mse_loss(mlp(tgtest::xor_inputs()), tgtest::xor_targets());
  loss.backward();
  for (const auto& [name, p] : mlp.named_parameters()) {
    INFO(name);
    REQUIRE(p.grad().defined());
    CHECK(p.grad().shape() == p.shape());
    double norm = 0;
    for (double g : p.grad().value().to_vector()) norm += g * g;
    CHECK(norm > 0.0);
  }
  mlp.zero_grad();
  for (const auto& p : mlp.parameters()) CHECK_FALSE(p.grad().defined());
}

TEST_CASE("gradcheck of a whole small MLP in f64 passes, for the input and every parameter") {
  tg::Rng rng(4);
  tg::MLP mlp({3, 4, 2}, tg::Activation::tanh, tg::Activation::sigmoid, rng);
  mlp.to(tg::f64);
  const tg::Tensor x = tg::randn({5, 3}, rng, tg::f64);
  const tg::Tensor target = tg::rand({5, 2}, rng, 0.0, 1.0, tg::f64);
  auto loss_of = [&](const tg::Var& in) { return tg::mse_loss(mlp(in), tg::constant(target)); };

  const auto report =
      tg::gradcheck([&](const std::vector<tg::Var>& v) { return loss_of(v[0]); }, {x});
  INFO(report.message);
  CHECK(report.passed);

  // Parameters: backprop against central differences on every element.
  mlp.zero_grad();
  loss_of(tg::constant(x)).backward();
  const double eps = 1e-6;
  for (const auto& [name, p] : mlp.named_parameters()) {
    tg::Tensor value = p.value();
    double* w = value.data<double>();
    const auto grad = p.grad().value().to_vector();
    for (int64_t k = 0; k < value.numel(); ++k) {
      const double keep = w[k];
      w[k] = keep + eps;
      const double up = loss_of(tg::constant(x)).item();
      w[k] = keep - eps;
      const double down = loss_of(tg::constant(x)).item();
      w[k] = keep;
      INFO(name << "[" << k << "]");
      CHECK(grad[static_cast<size_t>(k)] ==
            Approx((up - down) / (2 * eps)).margin(1e-8).epsilon(1e-6));
    }
  }
}

TEST_CASE("Dropout: scaled random mask in training, identity in eval, seeded") {
  tg::Rng r1(9), r2(9);
  tg::Dropout d1(0.25, r1), d2(0.25, r2);
  const tg::Var x = tg::param(tg::ones({100, 100}));
  const tg::Var y1 = d1(x), y2 = d2(x);
  CHECK(tg::equal(y1.value(), y2.value()));
  int64_t zeros = 0;
  for (double v : y1.value().to_vector()) {
    if (v == 0.0)
      ++zeros;
    else
      CHECK(v == Approx(1.0 / 0.75));
  }
  CHECK(zeros == Approx(2500).margin(200));
  tg::sum(y1).backward();
  for (double g : x.grad().value().to_vector()) CHECK((g == 0.0 || g == Approx(1.0 / 0.75)));

  d1.eval();
  CHECK(tg::equal(d1(x).value(), x.value()));
  tg::Rng r3(1);
  CHECK_THROWS_AS(tg::Dropout(1.5, r3), tg::Error);
}

TEST_CASE("diagnostics find identical units, identical gradients, dead ReLUs, saturation") {
  tg::Rng rng(5);
  tg::MLP mlp({2, 4, 3, 1}, tg::Activation::relu, tg::Activation::sigmoid, rng);
  const tg::Var x = tgtest::xor_inputs();

  auto r = tg::diagnose(mlp);
  REQUIRE(r.linear.size() == 3);
  CHECK(r.linear[0].name == "layers.0");
  CHECK(r.linear[0].identical_weights.empty());
  CHECK_FALSE(r.linear[0].has_grad);
  CHECK(r.linear[0].weight_norm > 0.0);

  {
    WarningCapture quiet;
    // Units 1 and 3 of the first layer made equal; ReLU layer 2 made dead; output saturated.
    tg::Tensor w = mlp.linear(0).weight.value(), b = mlp.linear(0).bias.value();
    float* W = w.data<float>();
    float* B = b.data<float>();
    W[6] = W[2];
    W[7] = W[3];
    B[3] = B[1];
    tg::init::constant(mlp.linear(1).weight, 0.0);
    tg::init::constant(mlp.linear(1).bias, -1.0);
    tg::init::constant(mlp.linear(2).bias, 50.0);
  }
  tg::mse_loss(mlp(x), tgtest::xor_targets()).backward();
  r = tg::diagnose(mlp, x);
  CHECK((r.layer("layers.0").identical_weights == std::vector<std::vector<int64_t>>{{1, 3}}));
  CHECK(r.layer("layers.2").all_units_identical());
  CHECK(r.layer("layers.0").has_grad);
  REQUIRE(r.activations.size() == 3);
  CHECK(r.activations[0].name == "layers.1");
  CHECK(r.activations[1].kind == "ReLU");
  CHECK((r.activations[1].dead == std::vector<int64_t>{0, 1, 2}));
  CHECK(r.activations[2].kind == "Sigmoid");
  CHECK((r.activations[2].saturated == std::vector<int64_t>{0}));
  CHECK(r.activations[2].batch == 4);
  const std::string text = r.str();
  CHECK(text.find("units {1, 3} have identical incoming weights") != std::string::npos);
  CHECK(text.find("dead units {0, 1, 2}") != std::string::npos);
  CHECK(text.find("saturated units {0}") != std::string::npos);
  CHECK_THROWS_AS(r.layer("nope"), tg::Error);
  // Running the diagnostics leaves the model's mode alone and records nothing.
  CHECK(mlp.is_training());
}

TEST_CASE("diagnostics run on a user module through its own forward") {
  tg::Rng rng(8);
  TwoLayerModules net(rng);
  {
    WarningCapture quiet;
    tg::init::constant(net.fc1.weight, -1.0);
    tg::init::constant(net.fc1.bias, -0.5);
  }
  const auto r = tg::diagnose(
      net, [&](const tg::Var& x) { return net.forward(x); }, tgtest::xor_inputs());
  REQUIRE(r.linear.size() == 2);
  CHECK(r.layer("fc1").all_units_identical());
  REQUIRE(r.activations.size() == 1);
  CHECK(r.activations[0].name == "act");
  CHECK((r.activations[0].dead == std::vector<int64_t>{0, 1, 2}));
}
