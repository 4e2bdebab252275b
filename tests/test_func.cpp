// Functional transforms (tg::func) and gradient checkpointing (tg::checkpoint): analytic
// results, PyTorch's torch.autograd.functional as an oracle, composition under
// create_graph, per-sample gradients against a loop, checkpointed gradients bit for bit and
// the memory checkpointing saves.
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "torch_oracle.hpp"

using tg::Var;
namespace func = tg::func;

namespace {

std::vector<double> vals(const Var& v) { return v.value().to_vector(); }
Var P(const tg::Shape& s, double k) { return tg::constant(tgtest::pattern(s, k)); }

// Two inputs x [3], y [2, 2]; two outputs sin(x) * sum(y) [3] and exp(y @ x[:2]) [2].
std::vector<Var> two_by_two(const std::vector<Var>& in) {
  const Var& x = in[0];
  const Var& y = in[1];
  return {tg::sin(x) * tg::sum(y), tg::exp(tg::matmul(y, tg::slice(x, 0, 0, 2)))};
}
// A scalar of the same inputs.
Var scalar_of_two(const std::vector<Var>& in) {
  const Var& x = in[0];
  const Var& y = in[1];
  return tg::sum(tg::tanh(tg::matmul(y, tg::slice(x, 0, 0, 2))) * tg::slice(x, 0, 1, 3)) +
         tg::sum(x * x) * tg::sum(y);
}

// The squared norm of the gradient of sum(tanh(W x)) (a gradient penalty).
Var gradient_penalty(const Var& W, const Var& x) {
  const Var g = tg::grad({tg::sum(tg::tanh(tg::matmul(W, x)))}, {x}, {}, {.create_graph = true})[0];
  return tg::sum(g * g);
}

// Mean squared error of a linear model w on (X, Y), and w after 5 SGD steps on it from w0
// (recorded, so the result can be differentiated with respect to w0).
Var lin_loss(const Var& w, const Var& X, const Var& Y) {
  return tg::mean(tg::square(tg::matmul(X, w) - Y));
}
Var inner_sgd(const Var& w0, const Var& X, const Var& Y, double lr) {
  Var w = w0;
  for (int k = 0; k < 5; ++k)
    w = w - lr * tg::grad({lin_loss(w, X, Y)}, {w}, {}, {.create_graph = true})[0];
  return w;
}

template <class E>
void throws_starting(const std::function<void()>& f, const std::string& prefix) {
  try {
    f();
    FAIL("no exception");
  } catch (const E& e) {
    INFO(e.what());
    CHECK(std::string(e.what()).rfind(prefix, 0) == 0);
  }
}

}  // namespace

TEST_CASE("func: analytic results of every transform") {
  const Var x = P({3}, 0.0), y = P({2, 2}, 1.0);
  const auto xv = vals(x), yv = vals(y);
  double sy = 0;
  for (double v : yv) sy += v;
  // J of sin(x) * sum(y) with respect to x: diag(cos(x)) * sum(y); with respect to y: sin(x).
  for (auto strategy : {func::Strategy::reverse, func::Strategy::forward}) {
    const auto J = func::jacobian(two_by_two, {x, y}, false, false, strategy);
    REQUIRE(J.size() == 2);
    REQUIRE(J[0].size() == 2);
    CHECK(J[0][0].shape() == tg::Shape{3, 3});
    CHECK(J[0][1].shape() == tg::Shape{3, 2, 2});
    CHECK(J[1][0].shape() == tg::Shape{2, 3});
    CHECK(J[1][1].shape() == tg::Shape{2, 2, 2});
    const auto j00 = vals(J[0][0]), j01 = vals(J[0][1]);
    for (int i = 0; i < 3; ++i)
      for (int k = 0; k < 3; ++k)
        CHECK(j00[i * 3 + k] == Approx(i == k ? std::cos(xv[i]) * sy : 0.0).margin(1e-14));
    for (int i = 0; i < 3; ++i)
      for (int k = 0; k < 4; ++k) CHECK(j01[i * 4 + k] == Approx(std::sin(xv[i])));
    CHECK(!J[0][0].requires_grad());
  }
  // f(x) = sum(x^3): gradient 3x^2, Hessian diag(6x), hvp 6 x v, jvp 3 x^2 . t.
  auto cube = [](const Var& z) { return tg::sum(z * z * z); };
  const Var v = P({3}, 2.0);
  const auto vv = vals(v);
  const auto H = vals(func::hessian(cube, x));
  const auto hv = vals(func::hvp(cube, x, v).product);
  const auto vh = vals(func::vhp(cube, x, v).product);
  const auto g = vals(func::vjp(cube, x).product);
  double jt = 0;
  for (int i = 0; i < 3; ++i) jt += 3 * xv[i] * xv[i] * vv[i];
  CHECK(func::jvp(cube, x, v).product.item() == Approx(jt).epsilon(1e-13));
  for (int i = 0; i < 3; ++i) {
    CHECK(g[i] == Approx(3 * xv[i] * xv[i]).epsilon(1e-13));
    CHECK(hv[i] == Approx(6 * xv[i] * vv[i]).epsilon(1e-13));
    CHECK(vh[i] == Approx(6 * xv[i] * vv[i]).epsilon(1e-13));
    for (int k = 0; k < 3; ++k)
      CHECK(H[i * 3 + k] == Approx(i == k ? 6 * xv[i] : 0.0).margin(1e-13));
  }
  CHECK(func::vjp(cube, x).output.item() ==
        Approx(xv[0] * xv[0] * xv[0] + xv[1] * xv[1] * xv[1] + xv[2] * xv[2] * xv[2]));
  // The identity: J = I (an output that is its own input).
  const auto I = vals(
      func::jacobian([](const Var& z) { return z; }, x, false, false, func::Strategy::forward));
  for (int i = 0; i < 9; ++i) CHECK(I[i] == (i % 4 == 0 ? 1.0 : 0.0));
  // An output the inputs do not reach: zeros (strict: GraphError).
  auto constant_out = [](const std::vector<Var>& in) {
    return std::vector<Var>{tg::sin(in[0]), P({2}, 5.0)};
  };
  const auto Jc = func::jacobian(constant_out, {x});
  CHECK(vals(Jc[1][0]) == std::vector<double>(6, 0.0));
  throws_starting<tg::GraphError>([&] { func::jacobian(constant_out, {x}, false, true); },
                                  "func::jacobian: ");
}

TEST_CASE("func: bad input throws typed errors naming the transform") {
  const Var x = P({3}, 0.0), y = P({2, 2}, 1.0);
  const Var f32_v = tg::constant(tg::zeros({2, 2}, tg::f32));
  auto square = [](const Var& z) { return z * z; };
  // v / tangents of the wrong number or shape; a function that is not scalar.
  const std::vector<std::pair<std::function<void()>, std::string>> shape_errors = {
      {[&] {
         func::vjp(two_by_two, {x, y}, {P({3}, 1.0), P({3}, 1.0)});
       },
       "func::vjp: "},
      {[&] {
         func::vjp(two_by_two, {x, y}, {P({3}, 1.0)});
       },
       "func::vjp: "},
      {[&] {
         func::jvp(two_by_two, {x, y}, {P({3}, 1.0)});
       },
       "func::jvp: "},
      {[&] {
         func::jvp(two_by_two, {x, y}, {P({3}, 1.0), P({4}, 1.0)});
       },
       "func::jvp: "},
      {[&] {
         func::hvp(scalar_of_two, {x, y}, {P({2}, 1.0), y});
       },
       "func::hvp: "},
      {[&] {
         func::vhp(scalar_of_two, {x, y}, {x});
       },
       "func::vhp: "},
      {[&] { func::hessian(square, x); }, "func::hessian: "},
      {[&] { func::vjp(square, x); }, "func::vjp: "},
  };
  for (const auto& [f, prefix] : shape_errors) throws_starting<tg::ShapeError>(f, prefix);
  // A tangent of another dtype, a non-differentiable (integer) output, an integer input.
  const std::vector<std::pair<std::function<void()>, std::string>> dtype_errors = {
      {[&] {
         func::jvp(two_by_two, {x, y}, {P({3}, 1.0), f32_v});
       },
       "func::jvp: "},
      {[&] { func::jacobian([](const Var& z) { return tg::argmax(z); }, x); }, "func::jacobian: "},
      {[&] { func::jacobian(square, tg::constant(tg::zeros({2}, tg::i64))); }, "func::jacobian: "},
  };
  for (const auto& [f, prefix] : dtype_errors) throws_starting<tg::DtypeError>(f, prefix);
}

TEST_CASE("func: strict raises wherever torch.autograd.functional's strict=True does") {
  const Var x = P({2}, 0.0), y = P({2}, 1.0);
  const auto both = {func::Strategy::reverse, func::Strategy::forward};
  // y unused; each output depends on one input only; a separable loss; one linear in x.
  const func::Fn only_x = [](const std::vector<Var>& in) { return std::vector<Var>{in[0] * 2.0}; };
  const func::Fn crossed = [](const std::vector<Var>& in) {
    return std::vector<Var>{tg::sin(in[0]), tg::exp(in[1])};
  };
  const func::ScalarFn separable = [](const std::vector<Var>& in) {
    return tg::sum(in[0] * in[0] * in[0]) + tg::sum(in[1] * in[1] * in[1]);
  };
  const func::ScalarFn linear_in_x = [](const std::vector<Var>& in) {
    return tg::sum(in[0] * 2.0) + tg::sum(in[1] * in[1] * in[1]);
  };
  auto graph_error = [](const std::function<void()>& f, const std::string& prefix) {
    throws_starting<tg::GraphError>(f, prefix);
  };
  // An input no output depends on (jvp checked only the outputs).
  graph_error([&] { func::jvp(only_x, {x, y}, {x, y}, false, true); }, "func::jvp: ");
  graph_error([&] { func::jvp(only_x, {x, y}, {x, y}, true, true); }, "func::jvp: ");
  for (auto s : both) {
    INFO("strategy " << static_cast<int>(s));
    // A block d out_i / d in_j that does not exist: the forward strategy gave zeros.
    graph_error([&] { func::jacobian(only_x, {x, y}, false, true, s); }, "func::jacobian: ");
    graph_error([&] { func::jacobian(crossed, {x, y}, false, true, s); }, "func::jacobian: ");
    graph_error([&] { func::hessian(separable, {x, y}, false, true, s); }, "func::hessian: ");
    // With create_graph, a Jacobian that is constant (f linear): PyTorch's "independent of
    // input i ... when create_graph=True".
    graph_error([&] { func::jacobian(only_x, {x}, true, true, s); }, "func::jacobian: ");
    CHECK_NOTHROW(func::jacobian(crossed, {x, y}, true, false, s));
    CHECK_NOTHROW(func::jacobian(two_by_two, {P({3}, 0.0), P({2, 2}, 1.0)}, true, true, s));
    CHECK_NOTHROW(func::hessian(scalar_of_two, {P({3}, 0.0), P({2, 2}, 1.0)}, false, true, s));
  }
  graph_error([&] { func::vjp(only_x, {x}, {x}, true, true); }, "func::vjp: ");
  graph_error([&] { func::jvp(only_x, {x}, {x}, true, true); }, "func::jvp: ");
  CHECK_NOTHROW(func::vjp(only_x, {x}, {x}, false, true));
  CHECK_NOTHROW(func::jvp(only_x, {x}, {x}, false, true));
  // A loss linear in an input: its gradient is constant, so no Hessian depends on it.
  for (const char* name : {"func::hvp: ", "func::vhp: "}) {
    const bool h = name[6] == 'h';
    auto run = [&](const func::ScalarFn& f, bool create_graph) {
      return h ? func::hvp(f, {x, y}, {x, y}, create_graph, true)
               : func::vhp(f, {x, y}, {x, y}, create_graph, true);
    };
    graph_error([&] { run(linear_in_x, false); }, name);
    CHECK_NOTHROW(run(separable, false));
    CHECK_NOTHROW(run(separable, true));
  }
  // The strict jvp's results are plain values without create_graph, as the others.
  const auto r = func::jvp(crossed, {tg::param(x.value()), y}, {x, y}, false, true);
  CHECK(!r.outputs[0].requires_grad());
  CHECK(!r.product[1].requires_grad());
  CHECK(vals(r.product[1]) == vals(tg::exp(y) * y));
}

TEST_CASE("func: v may be omitted for one input or output of one element (PyTorch's v=None)") {
  // f(z) = z^3 at 2 (a rank-0 and a [1] input): J = 12, H = 12, as torch.autograd.functional.
  auto cube = [](const Var& z) { return tg::sum(z * z * z); };
  for (const Var& z :
       {tg::constant(tg::full({}, 2.0, tg::f64)), tg::constant(tg::full({1}, 2.0, tg::f64))}) {
    INFO(z.shape().str());
    CHECK(func::jvp(cube, z).product.item() == 12.0);
    CHECK(func::jvp([](const Var& y) { return y * y * y; }, z).product.shape() == z.shape());
    CHECK(func::hvp(cube, z).product.item() == 12.0);
    CHECK(func::vhp(cube, z).product.item() == 12.0);
    CHECK(func::hvp(cube, z).product.shape() == z.shape());
    CHECK(func::vjp(cube, z).product.item() == 12.0);
  }
  // More than one element, or several inputs: v is needed (ShapeError naming the transform).
  const Var x = P({2}, 0.0);
  throws_starting<tg::ShapeError>([&] { func::jvp(cube, x); }, "func::jvp: ");
  throws_starting<tg::ShapeError>([&] { func::hvp(cube, x); }, "func::hvp: ");
  throws_starting<tg::ShapeError>(
      [&] {
        func::vhp(scalar_of_two, {P({3}, 0.0), P({2, 2}, 1.0)});
      },
      "func::vhp: ");
}

TEST_CASE("func: create_graph results stay differentiable under a NoGradGuard, as PyTorch's") {
  // f(z) = z^3 at (1, 2): J = diag(3 z^2), H of sum(z^3) = diag(6 z); d sum(J) / dz = 6 z,
  // d sum(H) / dz = 6 (torch.no_grad() around torch.autograd.functional gives the same).
  const Var p = tg::param(tg::tensor({1.0, 2.0}, tg::Shape{2}, tg::f64));
  auto cube = [](const Var& z) { return z * z * z; };
  auto sum_cube = [](const Var& z) { return tg::sum(z * z * z); };
  const Var v = tg::constant(tg::ones({2}, tg::f64));
  for (auto s : {func::Strategy::reverse, func::Strategy::forward}) {
    INFO("strategy " << static_cast<int>(s));
    std::vector<std::pair<std::string, Var>> results;
    {
      tg::NoGradGuard off;
      results = {{"jacobian", func::jacobian(cube, p, true, false, s)},
                 {"hessian", func::hessian(sum_cube, p, true, false, s)},
                 {"hvp", func::hvp(sum_cube, p, v, true).product},
                 {"vhp", func::vhp(sum_cube, p, v, true).product},
                 {"vjp", func::vjp(sum_cube, p, {}, true).product},
                 {"jvp", func::jvp(cube, p, v, true).product}};
    }
    const std::vector<std::vector<double>> want = {{6, 12}, {6, 6},  {6, 6},
                                                   {6, 6},  {6, 12}, {6, 12}};
    for (size_t i = 0; i < results.size(); ++i) {
      INFO(results[i].first);
      REQUIRE(results[i].second.requires_grad());
      CHECK(vals(tg::grad({tg::sum(results[i].second)}, {p})[0]) == want[i]);
    }
  }
}

TEST_CASE("func: every transform matches torch.autograd.functional") {
  TGTEST_REQUIRE_TORCH();
  // f64 to 1e-10 and f32 (to 1e-4: the meta-Hessian is a third derivative through 5 steps).
  for (const auto& [single, dt, tdt, tol] : tgtest::oracle_dtypes(1e-4)) {
    const std::string script = std::string(tgtest::kPythonPrelude) + "D = " + dt + R"PY(
import torch.autograd.functional as AF
_pattern = pattern
def pattern(shape, k, scale=1.0): return _pattern(shape, k, scale, D)
x = pattern((3,), 0.0); y = pattern((2, 2), 1.0)
vx = pattern((3,), 2.0); vy = pattern((2, 2), 3.0)
v0 = pattern((3,), 4.0); v1 = pattern((2,), 5.0)
def f(x, y): return (torch.sin(x) * y.sum(), torch.exp(y @ x[:2]))
def s(x, y): return (torch.tanh(y @ x[:2]) * x[1:]).sum() + (x * x).sum() * y.sum()
J = AF.jacobian(f, (x, y))
for i in range(2):
    for j in range(2): emit("J%d%d" % (i, j), J[i][j])
o, p = AF.vjp(f, (x, y), (v0, v1)); emit("vjp0", p[0]); emit("vjp1", p[1])
o, p = AF.jvp(f, (x, y), (vx, vy)); emit("jvp0", p[0]); emit("jvp1", p[1])
H = AF.hessian(s, (x, y))
for i in range(2):
    for j in range(2): emit("H%d%d" % (i, j), H[i][j])
o, p = AF.hvp(s, (x, y), (vx, vy)); emit("hvp_out", o); emit("hvp0", p[0]); emit("hvp1", p[1])
o, p = AF.vhp(s, (x, y), (vx, vy)); emit("vhp0", p[0]); emit("vhp1", p[1])
W = pattern((3, 3), 6.0)
def gp(x):
    g, = torch.autograd.grad(torch.tanh(W @ x).sum(), x, create_graph=True)
    return (g * g).sum()
emit("gp_hessian", AF.hessian(gp, x))
X = pattern((4, 3), 7.0); Y = pattern((4,), 8.0)
def lin_loss(w): return ((X @ w - Y) ** 2).mean()
def meta(w0):
    w = w0
    for _ in range(5):
        g, = torch.autograd.grad(lin_loss(w), w, create_graph=True)
        w = w - 0.1 * g
    return lin_loss(w)
emit("meta_grad", AF.vjp(meta, x)[1])
emit("meta_hessian", AF.hessian(meta, x))
)PY";
    const auto torch = tgtest::run_python(script);
    auto cmp = [&](const std::string& name, const Var& got) {
      INFO(name);
      REQUIRE(torch.count(name) == 1);
      REQUIRE(got.dtype() == tdt);
      tgtest::check_close(vals(got), torch.at(name), tol);
    };
    auto P = [tdt](const tg::Shape& s, double k) {
      return tg::constant(tgtest::pattern(s, k).to(tdt));
    };
    const Var x = P({3}, 0.0), y = P({2, 2}, 1.0), vx = P({3}, 2.0), vy = P({2, 2}, 3.0);
    for (auto strategy : {func::Strategy::reverse, func::Strategy::forward}) {
      const auto J = func::jacobian(two_by_two, {x, y}, false, false, strategy);
      const auto H = func::hessian(scalar_of_two, {x, y}, false, false, strategy);
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) {
          const std::string ij{static_cast<char>('0' + i), static_cast<char>('0' + j)};
          cmp(std::string("J").append(ij), J[i][j]);
          cmp(std::string("H").append(ij), H[i][j]);
        }
    }
    const auto vj = func::vjp(two_by_two, {x, y}, {P({3}, 4.0), P({2}, 5.0)});
    cmp("vjp0", vj.product[0]);
    cmp("vjp1", vj.product[1]);
    const auto jv = func::jvp(two_by_two, {x, y}, {vx, vy});
    cmp("jvp0", jv.product[0]);
    cmp("jvp1", jv.product[1]);
    const auto hv = func::hvp(scalar_of_two, {x, y}, {vx, vy});
    cmp("hvp_out", hv.outputs[0]);
    cmp("hvp0", hv.product[0]);
    cmp("hvp1", hv.product[1]);
    const auto vh = func::vhp(scalar_of_two, {x, y}, {vx, vy});
    cmp("vhp0", vh.product[0]);
    cmp("vhp1", vh.product[1]);

    // create_graph composes: the Hessian of a gradient penalty (third derivatives of tanh)...
    const Var W = P({3, 3}, 6.0);
    cmp("gp_hessian", func::hessian([&](const Var& z) { return gradient_penalty(W, z); }, x));
    // ... and a meta-gradient through 5 inner SGD steps (second derivatives), and its Hessian
    // (third), where the transform's own create_graph is what makes the outer one possible.
    const Var X = P({4, 3}, 7.0), Y = P({4}, 8.0);
    auto meta = [&](const Var& w0) { return lin_loss(inner_sgd(w0, X, Y, 0.1), X, Y); };
    cmp("meta_grad", func::vjp(meta, x).product);
    cmp("meta_hessian", func::hessian(meta, x));
    cmp("meta_hessian",
        func::jacobian([&](const Var& w0) { return func::vjp(meta, w0, {}, true).product; }, x));
  }
}

TEST_CASE("func: create_graph keeps the results differentiable with respect to the inputs") {
  // d/dx of the Hessian-vector product of sum(x^4) / 12 (Hessian diag(x^2)): H v = x^2 v,
  // whose gradient through sum is 2 x v.
  const Var x = tg::param(tgtest::pattern({4}, 0.5)), v = P({4}, 1.5);
  auto f = [](const Var& z) { return tg::sum(z * z * z * z) / 12.0; };
  const auto hv = func::hvp(f, x, v, /*create_graph=*/true);
  REQUIRE(hv.product.requires_grad());
  const Var d = tg::grad({tg::sum(hv.product)}, {x})[0];
  const auto xv = vals(x), vv = vals(v), dv = vals(d);
  for (int i = 0; i < 4; ++i) CHECK(dv[i] == Approx(2 * xv[i] * vv[i]).epsilon(1e-13));
  // Without create_graph nothing is recorded, and the caller's leaf is untouched.
  CHECK(!func::hvp(f, x, v).product.requires_grad());
  CHECK(!x.grad().defined());
}

TEST_CASE("func::per_sample_grad matches a loop of single-sample backward passes") {
  tg::Rng rng(3);
  tg::MLP net({3, 5, 2}, "tanh", "identity", rng, true, tg::f64);
  const Var X = P({6, 3}, 0.0), Y = P({6, 2}, 1.0);
  auto loss = [&](const std::vector<Var>& s) { return tg::mse_loss(net(s[0]), s[1]); };
  const auto per = func::per_sample_grad(net, loss, {X, Y});
  const auto params = net.parameters();
  REQUIRE(per.size() == params.size());
  for (int64_t b = 0; b < 6; ++b) {
    net.zero_grad();
    tg::mse_loss(net(tg::narrow(X, 0, b, 1)), tg::narrow(Y, 0, b, 1)).backward();
    for (size_t p = 0; p < params.size(); ++p) {
      tg::Shape s = params[p].shape();
      s.insert(0, 6);
      REQUIRE(per[p].shape() == s);
      CHECK(vals(tg::narrow(per[p], 0, b, 1)) == vals(params[p].grad()));
    }
  }
  throws_starting<tg::ShapeError>(
      [&] {
        func::per_sample_grad(net, loss, {X, P({5, 2}, 1.0)});
      },
      "func::per_sample_grad: ");
}

// ---- gradient checkpointing ----

namespace {

// A Sequential of `n` Linear + Tanh (+ Dropout) blocks of width w.
std::unique_ptr<tg::Sequential> deep_mlp(int n, int64_t w, tg::Rng& init, tg::Rng* drop,
                                         tg::Dtype dtype) {
  auto seq = std::make_unique<tg::Sequential>();
  for (int i = 0; i < n; ++i) {
    seq->emplace_back<tg::Linear>(w, w, init, true, dtype);
    seq->emplace_back<tg::Tanh>();
    if (drop) seq->emplace_back<tg::Dropout>(0.2, *drop);
  }
  return seq;
}

std::vector<std::vector<double>> grads_of(const std::vector<Var>& vs) {
  std::vector<std::vector<double>> out;
  for (const Var& v : vs) out.push_back(vals(v.grad()));
  return out;
}

}  // namespace

TEST_CASE("checkpoint: the same gradients bit for bit as without, dropout included") {
  for (tg::Dtype dtype : {tg::f32, tg::f64}) {
    tg::Rng init(1), drop(7);
    auto seq = deep_mlp(6, 5, init, &drop, dtype);
    const auto params = seq->parameters();
    auto step = [&](int segments) {
      drop = tg::Rng(7);
      seq->zero_grad();
      Var x = tg::param(tgtest::pattern({4, 5}, 0.3).to(dtype));
      Var y = segments ? tg::checkpoint_sequential(*seq, segments, x) : (*seq)(x);
      tg::sum(y * y).backward();
      auto g = grads_of(params);
      g.push_back(vals(x.grad()));
      g.push_back(vals(y));
      g.push_back({static_cast<double>(drop.next_u64())});  // the generator ends where it would
      return g;
    };
    const auto plain = step(0);
    for (int segments : {1, 2, 3, 18}) {
      INFO(segments << " segments, " << tg::dtype_name(dtype));
      CHECK(step(segments) == plain);
    }
  }
  tg::Rng init(1);
  auto seq = deep_mlp(2, 3, init, nullptr, tg::f64);
  CHECK_THROWS_AS(tg::checkpoint_sequential(*seq, 0, P({1, 3}, 0.0)), tg::Error);
  CHECK_THROWS_AS(tg::checkpoint_sequential(*seq, 5, P({1, 3}, 0.0)), tg::Error);
}

TEST_CASE("checkpoint: several outputs, double backward, and a read it cannot see") {
  Var W = tg::param(tgtest::pattern({3, 3}, 1.0));
  auto block = [&](const std::vector<Var>& in) {
    const Var h = tg::tanh(tg::matmul(W, in[0]) + in[1]);
    return std::vector<Var>{h * h, tg::sin(h)};
  };
  auto plain = [&](const Var& x, const Var& b) {
    const auto o = block({x, b});
    return tg::sum(o[0]) + tg::sum(o[1] * o[1]);
  };
  auto ckpt = [&](const Var& x, const Var& b) {
    const auto o = tg::checkpoint(block, {x, b}, {.params = {W}, .rngs = {}});
    REQUIRE(o.size() == 2);
    return tg::sum(o[0]) + tg::sum(o[1] * o[1]);
  };
  const Var x = tg::param(tgtest::pattern({3}, 0.0)), b = tg::param(tgtest::pattern({3}, 2.0));
  const auto g1 = tg::grad({plain(x, b)}, {x, b, W});
  const auto g2 = tg::grad({ckpt(x, b)}, {x, b, W});
  for (int i = 0; i < 3; ++i) CHECK(vals(g1[i]) == vals(g2[i]));
  // Second and third derivatives through the checkpoint (its backward is a checkpoint too).
  auto gp = [&](auto f) {
    const auto g = tg::grad({f(x, b)}, {x}, {}, {.create_graph = true});
    return tg::grad({tg::sum(g[0] * g[0])}, {x, W}, {}, {.create_graph = true});
  };
  const auto h1 = gp(plain), h2 = gp(ckpt);
  for (int i = 0; i < 2; ++i) {
    const auto a = vals(h1[i]), c = vals(h2[i]);
    for (size_t k = 0; k < a.size(); ++k) CHECK(c[k] == Approx(a[k]).epsilon(1e-12));
  }
  const auto t1 = vals(tg::grad({tg::sum(h1[0])}, {b})[0]);
  const auto t2 = vals(tg::grad({tg::sum(h2[0])}, {b})[0]);
  for (size_t k = 0; k < t1.size(); ++k) CHECK(t2[k] == Approx(t1[k]).epsilon(1e-12));
  // A weight shared by two checkpoints and the code around them: each consumer's share
  // reaches it, and its hook sees the full gradient once (Note [Nested replay]).
  auto layer = [&](const Var& h) { return tg::tanh(tg::matmul(W, h)); };
  auto tied = [&](bool ckpt) {
    auto step = [&](const Var& h) {
      return ckpt ? tg::checkpoint(layer, h, {.params = {W}, .rngs = {}}) : layer(h);
    };
    const Var h = step(step(x));
    return tg::sum(h * tg::matmul(W, h));
  };
  int calls = 0;
  const size_t id = W.register_hook([&](const Var&) {
    ++calls;
    return Var();
  });
  const auto p1 = tg::grad({tied(false)}, {x, W});
  const auto p2 = tg::grad({tied(true)}, {x, W});
  W.remove_hook(id);
  CHECK(calls == 2);
  for (int i = 0; i < 2; ++i) CHECK(vals(p1[i]) == vals(p2[i]));
  // W read but not listed: its gradient would be lost, so backward says so.
  const Var lost = tg::sum(tg::checkpoint(block, {x, b})[0]);
  CHECK_THROWS_AS(lost.backward(), tg::GraphError);
  // No grad mode: the function itself, nothing recorded.
  tg::NoGradGuard off;
  CHECK(!tg::checkpoint(block, {x, b}, {.params = {W}, .rngs = {}})[0].requires_grad());
}

TEST_CASE("checkpoint: a 64-layer MLP's training step keeps O(sqrt n) activations") {
  // Width 64 and batch 1024 in f32: each activation is 256 KB, the weights 1 MB in all, so
  // activations dominate the peak.
  tg::Rng init(2);
  auto seq = deep_mlp(64, 64, init, nullptr, tg::f32);
  const Var x = tg::constant(tgtest::pattern({1024, 64}, 0.1).to(tg::f32));
  auto peak_of = [&](int segments) {
    seq->zero_grad();
    int64_t peak = 0;
    auto sample = [&] { peak = std::max(peak, tg::debug::live_tensor_bytes()); };
    std::vector<size_t> ids;
    for (size_t i = 0; i < seq->size(); ++i)
      ids.push_back(
          (*seq)[i].register_forward_hook([&](tg::Layer&, const Var&, const Var&) { sample(); }));
    std::vector<size_t> hook_ids;
    for (Var& p : seq->parameters())
      hook_ids.push_back(p.register_hook([&](const Var&) {
        sample();
        return Var();
      }));
    const int64_t base = tg::debug::live_tensor_bytes();
    {
      Var y = segments ? tg::checkpoint_sequential(*seq, segments, x) : (*seq)(x);
      sample();
      tg::mean(y * y).backward();
    }
    sample();
    for (size_t i = 0; i < seq->size(); ++i) (*seq)[i].remove_forward_hook(ids[i]);
    auto params = seq->parameters();
    for (size_t i = 0; i < params.size(); ++i) params[i].remove_hook(hook_ids[i]);
    return peak - base;
  };
  const int64_t plain = peak_of(0), ckpt = peak_of(8);
  INFO("peak above the weights: plain " << plain << " bytes, checkpointed " << ckpt);
  CHECK(plain > 32 * 1000 * 1000);  // 128 activations of 256 KB
  // Plainly all 128 activations are alive at the end of the forward. Checkpointed: the 8
  // segment boundaries, the last segment (run plainly, as PyTorch's; its nodes live until
  // the sweep ends) and one recomputed segment, 16 each: 40 of the 128, plus the gradients.
  CHECK(ckpt * 5 < plain * 2);
}

TEST_CASE("checkpoint: a value of the outer graph read by the function") {
  // W2 = 2 W is computed outside the checkpoint and read inside it; W is listed. The
  // replay's backward goes through the outer graph's W2 node: it must not free it (the
  // outer backward may go through it later), and where the outer backward went through it
  // and freed it first, the error must say what to do.
  Var W = tg::param(tgtest::pattern({3, 3}, 1.0));
  const Var x = tg::param(tgtest::pattern({3}, 0.0));
  auto run = [&](bool ckpt, bool ckpt_first) {
    const Var W2 = W * 2.0;
    auto layer = [W2](const Var& h) { return tg::tanh(tg::matmul(W2, h)); };
    const Var h = ckpt ? tg::checkpoint(layer, x, {.params = {W}, .rngs = {}}) : layer(x);
    // The outer backward reaches the checkpoint node before W2 (ckpt_first) or after it.
    return ckpt_first ? tg::sum(tg::matmul(W2, tg::constant(tg::ones({3}, tg::f64)))) + tg::sum(h)
                      : tg::sum(h * tg::matmul(W2, h));
  };
  for (bool ckpt_first : {true, false}) {
    INFO("ckpt_first " << ckpt_first);
    const auto want = tg::grad({run(false, ckpt_first)}, {x, W});
    auto check = [&](const std::vector<Var>& got) {
      for (int i = 0; i < 2; ++i) CHECK(vals(got[i]) == vals(want[i]));
    };
    check(tg::grad({run(true, ckpt_first)}, {x, W}, {}, {.retain_graph = true}));
    if (ckpt_first)
      check(tg::grad({run(true, ckpt_first)}, {x, W}));
    else
      CHECK_THROWS_WITH(tg::grad({run(true, ckpt_first)}, {x, W}),
                        Catch::Matchers::Contains("pass that value as one of the checkpoint's"));
  }
}

TEST_CASE("checkpoint: an index input, differentiated twice") {
  // Token ids are an input of the checkpointed function; under create_graph the backward's
  // own checkpoint returned a gradient (zeros of i64) for them, which a checkpoint refuses.
  Var W = tg::param(tgtest::pattern({5, 3}, 1.0));
  const Var ids = tg::constant(tg::tensor({0, 2, 4}, {3}, tg::f64).to(tg::i64));
  const Var x = tg::param(tgtest::pattern({3, 3}, 0.5));
  auto fn = [&](const std::vector<Var>& in) {
    return std::vector<Var>{tg::tanh(tg::index_select(W, 0, in[1]) * in[0])};
  };
  auto plain = [&] { return tg::sum(fn({x, ids})[0]); };
  auto ckpt = [&] { return tg::sum(tg::checkpoint(fn, {x, ids}, {.params = {W}, .rngs = {}})[0]); };
  const auto g1 = tg::grad({plain()}, {x}, {}, {.create_graph = true});
  const auto g2 = tg::grad({ckpt()}, {x}, {}, {.create_graph = true});
  CHECK(vals(g2[0]) == vals(g1[0]));
  const auto h1 = tg::grad({tg::sum(g1[0] * g1[0])}, {x, W});
  const auto h2 = tg::grad({tg::sum(g2[0] * g2[0])}, {x, W});
  for (int i = 0; i < 2; ++i) {
    const auto a = vals(h1[i]), c = vals(h2[i]);
    for (size_t k = 0; k < a.size(); ++k) CHECK(c[k] == Approx(a[k]).epsilon(1e-12));
  }
}

TEST_CASE(
    "checkpoint: mixed f32 / f64 inputs and outputs, an index input and output, "
    "differentiated twice") {
  // As torch.utils.checkpoint, which takes any mix of tensors. A function of an f32 and an
  // f64 input, token ids and params of both dtypes, returning outputs of both dtypes and an
  // integer one (no gradient). Under create_graph the checkpoint's backward is a checkpoint
  // whose outputs are the inputs' gradients, of both dtypes too. The values and first
  // derivatives (create_graph or not) equal those without checkpointing bit for bit; the
  // second derivatives sum the same terms in another order (nested sweeps), so to the last
  // bits of their dtype, as for one dtype above.
  Var W32 = tg::param(tgtest::pattern({3, 3}, 1.0).to(tg::f32));
  Var W64 = tg::param(tgtest::pattern({3, 3}, 2.0));
  const Var x32 = tg::param(tgtest::pattern({3}, 0.5).to(tg::f32));
  const Var x64 = tg::param(tgtest::pattern({3}, 1.5));
  const Var ids = tg::constant(tg::tensor({2, 0, 1}, {3}, tg::f64).to(tg::i64));
  auto fn = [&](const std::vector<Var>& in) {
    const Var h32 = tg::tanh(tg::matmul(W32, in[0]));
    const Var h64 = tg::sin(tg::index_select(tg::matmul(W64, in[1]), 0, in[2])) * in[1];
    return std::vector<Var>{h32, h64, tg::argmax(h64), h32 * h32};
  };
  const std::vector<Var> wrt = {x32, x64, W32, W64};
  auto derivatives = [&](bool ckpt) {
    const std::vector<Var> o =
        ckpt ? tg::checkpoint(fn, {x32, x64, ids}, {.params = {W32, W64}, .rngs = {}})
             : fn({x32, x64, ids});
    REQUIRE(o.size() == 4);
    CHECK(o[2].dtype() == tg::i64);
    CHECK_FALSE(o[2].requires_grad());
    std::vector<std::vector<double>> out;
    for (const Var& v : o) out.push_back(vals(v));
    const auto g = tg::grad({tg::sum(o[0] * o[0]) + tg::sum(o[3]), tg::sum(o[1] * o[1])}, wrt, {},
                            {.create_graph = true});
    for (const Var& v : g) out.push_back(vals(v));
    const auto h =
        tg::grad({tg::sum(g[0] * g[0]) + tg::sum(g[2] * g[2]), tg::sum(g[1] * g[1] * g[3])}, wrt);
    for (const Var& v : h) out.push_back(vals(v));
    return out;
  };
  const auto plain = derivatives(false), ckpt = derivatives(true);
  REQUIRE(plain.size() == ckpt.size());
  for (size_t i = 0; i < plain.size(); ++i) {
    INFO("result " << i);
    if (i < 8) {  // the 4 outputs and the 4 first derivatives
      CHECK(ckpt[i] == plain[i]);
      continue;
    }
    const double eps = i % 2 == 0 ? 1e-6 : 1e-14;  // x32, x64, W32, W64
    double top = 0;
    for (double v : plain[i]) top = std::max(top, std::abs(v));
    for (size_t k = 0; k < plain[i].size(); ++k)
      CHECK(std::abs(ckpt[i][k] - plain[i][k]) <= 4 * eps * top);
  }
  // Into .grad, through backward() on both dtypes' outputs.
  auto into_grad = [&](bool ckpt) {
    for (Var v : wrt) v.zero_grad();
    const std::vector<Var> o =
        ckpt ? tg::checkpoint(fn, {x32, x64, ids}, {.params = {W32, W64}, .rngs = {}})
             : fn({x32, x64, ids});
    tg::backward({tg::sum(o[3]), tg::sum(o[1])});
    std::vector<std::vector<double>> out;
    for (const Var& v : wrt) out.push_back(vals(v.grad()));
    return out;
  };
  CHECK(into_grad(true) == into_grad(false));
  // Forward mode: each node's JVP rule re-runs the function for its own outputs.
  auto tangents = [&](bool ckpt) {
    tg::fwd::DualLevel level;
    const Var d32 = tg::fwd::make_dual(x32, tg::constant(tgtest::pattern({3}, 3.0).to(tg::f32)));
    const Var d64 = tg::fwd::make_dual(x64, tg::constant(tgtest::pattern({3}, 4.0)));
    const std::vector<Var> o =
        ckpt ? tg::checkpoint(fn, {d32, d64, ids}, {.params = {W32, W64}, .rngs = {}})
             : fn({d32, d64, ids});
    std::vector<std::vector<double>> out;
    for (size_t i : {0, 1, 3}) out.push_back(vals(tg::fwd::unpack_dual(o[i]).tangent));
    return out;
  };
  CHECK(tangents(true) == tangents(false));
}
