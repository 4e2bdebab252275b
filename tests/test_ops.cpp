// Forward values against hand-computed numbers, shape/dtype errors, extreme inputs, and
// PyTorch as an oracle for composite expressions (skipped when torch is not installed).

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <tuple>

#include <tapegrad/tapegrad.hpp>

#include "torch_oracle.hpp"

using tg::Shape;
using tg::Tensor;
using tg::Var;

using tgtest::check_close;
using tgtest::pattern;
using tgtest::run_python;
using tgtest::torch_available;

namespace {
Var c64(const std::vector<double>& v, const Shape& s) {
  return tg::constant(tg::tensor(v, s, tg::f64));
}
std::vector<double> vals(const Var& v) { return v.value().to_vector(); }

}  // namespace

TEST_CASE("forward values of arithmetic and math ops", "[ops]") {
  Var a = c64({1, 2, 3, 4}, {2, 2});
  Var b = c64({10, 20}, {2});
  check_close(vals(a + b), {11, 22, 13, 24});
  check_close(vals(a - b), {-9, -18, -7, -16});
  check_close(vals(a * b), {10, 40, 30, 80});
  check_close(vals(a / b), {0.1, 0.1, 0.3, 0.2});
  check_close(vals(-a), {-1, -2, -3, -4});
  check_close(vals(tg::pow(a, 2.0)), {1, 4, 9, 16});
  check_close(vals(tg::pow(a, c64({2, 0.5}, {2}))), {1, std::sqrt(2.0), 9, 2});
  check_close(vals(2.0 - a), {1, 0, -1, -2});
  check_close(vals(12.0 / a), {12, 6, 4, 3});
  check_close(vals(tg::exp(c64({0, 1}, {2}))), {1, std::exp(1.0)}, 1e-12);
  check_close(vals(tg::log(c64({1, std::exp(2.0)}, {2}))), {0, 2}, 1e-12);
  check_close(vals(tg::sqrt(c64({4, 9}, {2}))), {2, 3});
  check_close(vals(tg::abs(c64({-1.5, 0, 2}, {3}))), {1.5, 0, 2});
  check_close(vals(tg::clamp(c64({-2, 0.5, 3}, {3}), -1, 1)), {-1, 0.5, 1});
  check_close(vals(tg::softplus(c64({0, 100, -100}, {3}))), {std::log(2.0), 100, 0}, 1e-12);
}

TEST_CASE("forward values of activations and softmax", "[ops]") {
  Var x = c64({-1, 0, 2}, {3});
  check_close(vals(tg::sigmoid(x)), {1 / (1 + std::exp(1.0)), 0.5, 1 / (1 + std::exp(-2.0))},
              1e-12);
  check_close(vals(tg::tanh(x)), {std::tanh(-1.0), 0, std::tanh(2.0)}, 1e-12);
  check_close(vals(tg::relu(x)), {0, 0, 2});
  check_close(vals(tg::leaky_relu(x, 0.1)), {-0.1, 0, 2});
  const double s = std::exp(-1.0) + 1 + std::exp(2.0);
  check_close(vals(tg::softmax(x)), {std::exp(-1.0) / s, 1 / s, std::exp(2.0) / s}, 1e-12);
  check_close(vals(tg::log_softmax(x)), {-1 - std::log(s), -std::log(s), 2 - std::log(s)}, 1e-12);
  Var m = c64({1, 2, 3, 4}, {2, 2});
  auto sm0 = vals(tg::softmax(m, 0));
  CHECK(sm0[0] + sm0[2] == Approx(1.0));
  CHECK(sm0[0] == Approx(1 / (1 + std::exp(2.0))));
}

TEST_CASE("forward values of matmul, linear and shape ops", "[ops]") {
  Var a = c64({1, 2, 3, 4, 5, 6}, {2, 3});
  Var b = c64({1, 0, 0, 1, 1, 1}, {3, 2});
  check_close(vals(tg::matmul(a, b)), {4, 5, 10, 11});
  check_close(vals(tg::matmul(a, a, false, true)), {14, 32, 32, 77});
  check_close(vals(tg::matmul(a, a, true, false)), {17, 22, 27, 22, 29, 36, 27, 36, 45});
  Var w = c64({1, 1, 1, 0, 1, 0}, {2, 3});
  check_close(vals(tg::linear(a, w, c64({0.5, -1}, {2}))), {6.5, 1, 15.5, 4});
  check_close(vals(tg::transpose(a)), {1, 4, 2, 5, 3, 6});
  CHECK(tg::reshape(a, {3, -1}).shape() == Shape{3, 2});
  check_close(vals(tg::slice(a, 1, 1, 3)), {2, 3, 5, 6});
  check_close(vals(tg::slice(a, 1, 0, 3, 2)), {1, 3, 4, 6});
  check_close(vals(tg::index_select(a, 0, {1, 1, 0})), {4, 5, 6, 4, 5, 6, 1, 2, 3});
  check_close(vals(tg::concat({a, a}, 0)), {1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6});
  check_close(vals(tg::concat({a, b.value().reshape({2, 3}).to(tg::f64).defined() ? a : a}, 1)),
              {1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6});
  // larger products take the BLAS path; compare with the loop path on the same numbers
  tg::Rng rng(9);
  Var big_a = tg::constant(tg::randn({40, 50}, rng, tg::f64));
  Var big_b = tg::constant(tg::randn({50, 30}, rng, tg::f64));
  const auto blas = vals(tg::matmul(big_a, big_b));
  const auto av = vals(big_a), bv = vals(big_b);
  double worst = 0;
  for (int i = 0; i < 40; ++i)
    for (int j = 0; j < 30; ++j) {
      double s = 0;
      for (int k = 0; k < 50; ++k) s += av[i * 50 + k] * bv[k * 30 + j];
      worst = std::max(worst, std::abs(s - blas[static_cast<size_t>(i * 30 + j)]));
    }
  CHECK(worst < 1e-12);
}

TEST_CASE("forward values of reductions", "[ops]") {
  Var a = c64({1, 5, 3, 4, 2, 6}, {2, 3});
  CHECK(tg::sum(a).item() == 21);
  check_close(vals(tg::sum(a, {0})), {5, 7, 9});
  check_close(vals(tg::sum(a, {1}, true)), {9, 12});
  CHECK(tg::sum(a, {1}, true).shape() == Shape{2, 1});
  CHECK(tg::mean(a).item() == Approx(3.5));
  check_close(vals(tg::mean(a, {1})), {3, 4});
  CHECK(tg::max(a).item() == 6);
  check_close(vals(tg::max(a, 1)), {5, 6});
  check_close(vals(tg::max(a, 0, true)), {4, 5, 6});
  check_close(vals(tg::sum_to(a, {3})), {5, 7, 9});
  check_close(vals(tg::sum_to(a, {})), {21});
  check_close(vals(tg::expand(c64({1, 2}, {2, 1}), {2, 3})), {1, 1, 1, 2, 2, 2});
  // float sums accumulate in double: 2^24 + 1 ones do not stall at 16777216
  Var ones = tg::constant(tg::ones({(1 << 24) + 8}));
  CHECK(tg::sum(ones).item() == static_cast<double>((1 << 24) + 8));
}

TEST_CASE("forward values of losses", "[ops]") {
  Var x = c64({1, 2, 3, 4}, {2, 2});
  Var t = c64({1, 0, 3, 2}, {2, 2});
  CHECK(tg::mse_loss(x, t).item() == Approx(2.0));
  CHECK(tg::mse_loss(x, t, tg::Reduction::sum).item() == Approx(8.0));
  check_close(vals(tg::mse_loss(x, t, tg::Reduction::none)), {0, 4, 0, 4});
  // cross entropy of [[1,2],[3,4]] with labels {1, 0}
  const double l0 = -(2 - std::log(std::exp(1.0) + std::exp(2.0)));
  const double l1 = -(3 - std::log(std::exp(3.0) + std::exp(4.0)));
  CHECK(tg::cross_entropy(x, {1, 0}).item() == Approx((l0 + l1) / 2));
  check_close(vals(tg::cross_entropy(x, {1, 0}, tg::Reduction::none)), {l0, l1}, 1e-12);
  CHECK(tg::nll_loss(tg::log_softmax(x), {1, 0}).item() == Approx((l0 + l1) / 2));
  Var z = c64({0, 2}, {2});
  Var y = c64({1, 0}, {2});
  const double b0 = std::log(2.0), b1 = 2 + std::log1p(std::exp(-2.0));
  CHECK(tg::binary_cross_entropy_with_logits(z, y).item() == Approx((b0 + b1) / 2));
}

TEST_CASE("extreme inputs stay finite where mathematics says so", "[ops][numerics]") {
  for (tg::Dtype dt : {tg::f32, tg::f64}) {
    Var logits = tg::param(tg::tensor({1e4, -1e4, 0, -1e4, 1e4, 1e4}, {2, 3}, dt));
    Var loss = tg::cross_entropy(logits, {1, 0});
    CHECK(std::isfinite(loss.item()));
    // rows: lse - x_t = 1e4 - (-1e4) and (1e4 + log 2) - (-1e4)
    CHECK(loss.item() == Approx(2e4 + std::log(2.0) / 2).epsilon(1e-6));
    loss.backward();
    CHECK_FALSE(tg::has_nonfinite(logits.grad().value()));
    Var sm = tg::softmax(logits);
    CHECK_FALSE(tg::has_nonfinite(sm.value()));
    CHECK_FALSE(tg::has_nonfinite(tg::log_softmax(logits).value()));
    Var s = tg::sigmoid(tg::constant(tg::tensor({-1e4, 1e4, 0}, {3}, dt)));
    CHECK(s.value().to_vector() == std::vector<double>{0, 1, 0.5});
    Var bce = tg::binary_cross_entropy_with_logits(tg::param(tg::tensor({1e4, -1e4}, {2}, dt)),
                                                   tg::constant(tg::tensor({0, 1}, {2}, dt)));
    CHECK(bce.item() == Approx(1e4));
    CHECK(tg::softplus(tg::constant(tg::tensor({1e4}, {1}, dt))).item() == Approx(1e4));
    CHECK(tg::log(tg::constant(tg::tensor({1e-30}, {1}, dt))).item() < -60);
  }
}

TEST_CASE("f32 ops compute in f32", "[ops]") {
  tg::Rng rng(0);
  Var a = tg::param(tg::randn({3, 4}, rng));
  Var w = tg::param(tg::randn({2, 4}, rng));
  Var y = tg::sum(tg::sigmoid(tg::linear(a, w)));
  CHECK(y.dtype() == tg::f32);
  y.backward();
  CHECK(w.grad().dtype() == tg::f32);
}

TEST_CASE("mismatched shapes name the op and both shapes", "[ops][errors]") {
  Var a = tg::param(tg::ones({2, 3})), b = tg::param(tg::ones({4}));
// (a macro, not a function: Catch2 matchers combined with && hold references to their parts)
#define BOTH(op) Catch::Contains(op) && Catch::Contains("[2, 3]") && Catch::Contains("[4]")
  CHECK_THROWS_AS(a + b, tg::ShapeError);
  CHECK_THROWS_WITH(a + b, BOTH("add"));
  CHECK_THROWS_WITH(a - b, BOTH("sub"));
  CHECK_THROWS_WITH(a * b, BOTH("mul"));
  CHECK_THROWS_WITH(a / b, BOTH("div"));
  CHECK_THROWS_WITH(tg::pow(a, b), BOTH("pow"));
  Var m = tg::param(tg::ones({4, 5}));
  CHECK_THROWS_AS(tg::matmul(a, m), tg::ShapeError);
  CHECK_THROWS_WITH(tg::matmul(a, m), Catch::Contains("matmul") && Catch::Contains("[2, 3]") &&
                                          Catch::Contains("[4, 5]"));
  CHECK_THROWS_WITH(tg::matmul(a, b), Catch::Contains("matmul") && Catch::Contains("[2, 3]") &&
                                          Catch::Contains("[4]") && Catch::Contains("inner"));
  CHECK_THROWS_WITH(tg::matmul(tg::param(tg::ones({})), b),
                    Catch::Contains("matmul") && Catch::Contains("rank"));
  CHECK_THROWS_WITH(tg::linear(a, m), Catch::Contains("linear") && Catch::Contains("[2, 3]") &&
                                          Catch::Contains("[4, 5]"));
  CHECK_THROWS_WITH(tg::mse_loss(a, b), Catch::Contains("mse_loss") && Catch::Contains("[2, 3]") &&
                                            Catch::Contains("[4]"));
  CHECK_THROWS_WITH(tg::mse_loss(tg::constant(tg::ones({3, 1})), tg::constant(tg::ones({3}))),
                    Catch::Contains("[3, 1]") && Catch::Contains("[3]"));
  CHECK_THROWS_WITH(tg::cross_entropy(a, {0, 1, 2}),
                    Catch::Contains("cross_entropy") && Catch::Contains("[2, 3]"));
  CHECK_THROWS_AS(tg::cross_entropy(a, {0, 3}), tg::IndexError);
  CHECK_THROWS_WITH(tg::cross_entropy(a, {0, 3}), Catch::Contains("target 3"));
  CHECK_THROWS_WITH(tg::binary_cross_entropy_with_logits(a, b),
                    BOTH("binary_cross_entropy_with_logits"));
  CHECK_THROWS_AS(tg::concat({a, b}), tg::ShapeError);
  CHECK_THROWS_AS(tg::reshape(a, {4, 2}), tg::ShapeError);
  CHECK_THROWS_AS(tg::sum(a, {2}), tg::IndexError);
  CHECK_THROWS_AS(tg::sum(a, {1, -1}), tg::IndexError);
  CHECK_THROWS_AS(tg::softmax(a, 5), tg::IndexError);
  CHECK_THROWS_AS(tg::index_select(a, 1, {3}), tg::IndexError);
  CHECK_THROWS_AS(tg::slice(a, 0, 0, 1, 0), tg::IndexError);
  CHECK_THROWS_AS(tg::sum_to(a, {4}), tg::ShapeError);
  CHECK_THROWS_AS(tg::expand(a, {3, 3}), tg::ShapeError);
  CHECK_THROWS_AS(tg::max(tg::constant(tg::zeros({0}))), tg::ShapeError);
#undef BOTH
}

TEST_CASE("mixed dtypes are an error naming the op", "[ops][errors]") {
  Var a = tg::param(tg::ones({2})), b = tg::param(tg::ones({2}, tg::f64));
  CHECK_THROWS_AS(a + b, tg::DtypeError);
  CHECK_THROWS_WITH(a * b,
                    Catch::Contains("mul") && Catch::Contains("f32") && Catch::Contains("f64"));
  CHECK_THROWS_AS(
      tg::matmul(tg::constant(tg::ones({2, 2})), tg::constant(tg::ones({2, 2}, tg::f64))),
      tg::DtypeError);
}

TEST_CASE("empty tensors flow through elementwise ops and reductions", "[ops]") {
  Var e = tg::param(tg::zeros({0, 3}));
  CHECK((e + e).shape() == Shape{0, 3});
  CHECK(tg::sum(e).item() == 0);
  CHECK(tg::sum(e, {0}).shape() == Shape{3});
  CHECK(tg::matmul(e, tg::constant(tg::ones({3, 2}))).shape() == Shape{0, 2});
  Var s = tg::sum(e * 2.0);
  s.backward();
  CHECK(e.grad().shape() == Shape{0, 3});
}

TEST_CASE("a product over an empty inner extent is zeros on every matmul path", "[ops][matmul]") {
  // BLAS rejects k = 0 (a leading dimension of 0) without writing: the result's zeros must
  // come from us, also into a reused buffer that still holds an earlier product.
  for (int64_t m : {2, 5000})
    for (tg::Dtype dt : {tg::f32, tg::f64}) {
      INFO("m = " << m << ", " << tg::dtype_name(dt));
      const Var a = tg::constant(tg::zeros({m, 0}, dt));
      const Var b = tg::constant(tg::zeros({0, 3}, dt));
      const Tensor zeros = tg::zeros({m, 3}, dt);
      {
        tg::NoGradGuard no_grad;
        {
          Var earlier =
              tg::matmul(tg::constant(tg::ones({m, 1}, dt)), tg::constant(tg::ones({1, 3}, dt)));
          REQUIRE(earlier.value().at({0, 0}) == 1.0);
        }  // its node and buffer are kept for the next product of that size
        CHECK(tg::equal(tg::matmul(a, b).value(), zeros));
      }
      CHECK(tg::equal(tg::matmul(a, b).value(), zeros));
      Var p = tg::param(tg::zeros({m, 0}, dt));
      CHECK(tg::equal(tg::matmul(p, b).value(), zeros));
      Tensor out = tg::full({m, 3}, std::nan(""), dt);
      tg::matmul_out(out, a.value(), b.value());
      CHECK(tg::equal(out, zeros));
    }
}

// ---- PyTorch oracle ---------------------------------------------------------------------

namespace {}  // namespace

TEST_CASE("composite expressions match PyTorch", "[ops][oracle]") {
  TGTEST_REQUIRE_TORCH();
  const std::string script = R"PY(
import math, torch
torch.set_default_dtype(torch.float64)
def pattern(shape, k, scale=1.0):
    n = math.prod(shape)
    return torch.tensor([math.sin(0.37 * i + k) * scale for i in range(n)]).reshape(shape)
def emit(name, t):
    print(name, " ".join(repr(float(v)) for v in t.detach().reshape(-1)))
# 1: MLP with cross-entropy
x = pattern((5, 4), 0.0); W1 = pattern((6, 4), 1.0, 0.5).requires_grad_(); b1 = pattern((6,), 2.0, 0.1).requires_grad_()
W2 = pattern((3, 6), 3.0, 0.5).requires_grad_(); b2 = pattern((3,), 4.0, 0.1).requires_grad_()
loss = torch.nn.functional.cross_entropy(torch.tanh(x @ W1.T + b1) @ W2.T + b2, torch.tensor([0, 2, 1, 1, 0]))
loss.backward()
emit("mlp_loss", loss.reshape(1)); emit("mlp_W1", W1.grad); emit("mlp_b1", b1.grad); emit("mlp_W2", W2.grad); emit("mlp_b2", b2.grad)
# 2: broadcasting, softmax, log_softmax, pow, sqrt, division
a = pattern((3, 4), 5.0).requires_grad_(); b = pattern((4,), 6.0).requires_grad_(); c = (pattern((3, 1), 7.0).abs() + 0.5).requires_grad_()
y = (torch.softmax(a * b + c, dim=0) * torch.log_softmax(a, dim=-1)).sum() + (torch.sqrt(c) / (b * b + 1.0)).pow(1.5).mean()
y.backward()
emit("bc_y", y.reshape(1)); emit("bc_a", a.grad); emit("bc_b", b.grad); emit("bc_c", c.grad)
# 3: sigmoid/relu/bce/mse/max/abs with a batched matmul
p = pattern((2, 3, 4), 8.0).requires_grad_(); q = pattern((2, 4, 2), 9.0).requires_grad_(); t = pattern((2, 3, 2), 10.0).abs()
z = torch.matmul(p, q)
y = torch.nn.functional.binary_cross_entropy_with_logits(z, t) + torch.nn.functional.mse_loss(torch.relu(z), torch.sigmoid(z)) + z.amax(dim=1).abs().sum()
y.backward()
emit("bm_y", y.reshape(1)); emit("bm_p", p.grad); emit("bm_q", q.grad)
)PY";
  const auto torch = run_python(script);
  auto cmp = [&](const std::string& name, const Var& v) {
    INFO(name);
    REQUIRE(torch.count(name) == 1);
    check_close(vals(v), torch.at(name), 1e-10);
  };
  {
    Var x = tg::constant(pattern({5, 4}, 0.0));
    Var W1 = tg::param(pattern({6, 4}, 1.0, 0.5)), b1 = tg::param(pattern({6}, 2.0, 0.1));
    Var W2 = tg::param(pattern({3, 6}, 3.0, 0.5)), b2 = tg::param(pattern({3}, 4.0, 0.1));
    Var loss =
        tg::cross_entropy(tg::linear(tg::tanh(tg::linear(x, W1, b1)), W2, b2), {0, 2, 1, 1, 0});
    loss.backward();
    cmp("mlp_loss", loss);
    cmp("mlp_W1", W1.grad());
    cmp("mlp_b1", b1.grad());
    cmp("mlp_W2", W2.grad());
    cmp("mlp_b2", b2.grad());
  }
  {
    Var a = tg::param(pattern({3, 4}, 5.0)), b = tg::param(pattern({4}, 6.0));
    Var c = tg::param(
        tg::tensor(vals(tg::abs(tg::constant(pattern({3, 1}, 7.0))) + 0.5), {3, 1}, tg::f64));
    Var y = tg::sum(tg::softmax(a * b + c, 0) * tg::log_softmax(a, -1)) +
            tg::mean(tg::pow(tg::sqrt(c) / (b * b + 1.0), 1.5));
    y.backward();
    cmp("bc_y", y);
    cmp("bc_a", a.grad());
    cmp("bc_b", b.grad());
    cmp("bc_c", c.grad());
  }
  {
    Var p = tg::param(pattern({2, 3, 4}, 8.0)), q = tg::param(pattern({2, 4, 2}, 9.0));
    Var t = tg::abs(tg::constant(pattern({2, 3, 2}, 10.0)));
    Var z = tg::matmul(p, q);
    Var y = tg::binary_cross_entropy_with_logits(z, t) + tg::mse_loss(tg::relu(z), tg::sigmoid(z)) +
            tg::sum(tg::abs(tg::max(z, 1)));
    y.backward();
    cmp("bm_y", y);
    cmp("bm_p", p.grad());
    cmp("bm_q", q.grad());
  }
}

TEST_CASE("matmul_out writes the same bits as matmul into the caller's tensor", "[ops][matmul]") {
  tg::Rng rng(17);
  for (tg::Dtype dt : {tg::f32, tg::f64}) {
    for (auto [m, k, n] : {std::tuple{2, 3, 4}, {33, 17, 9}, {64, 64, 64}, {5, 0, 3}}) {
      for (bool ta : {false, true})
        for (bool tb : {false, true}) {
          INFO(tg::dtype_name(dt) << " " << m << "x" << k << "x" << n << " ta " << ta << " tb "
                                  << tb);
          const Tensor a = tg::rand(ta ? Shape{k, m} : Shape{m, k}, rng, -1, 1).to(dt);
          const Tensor b = tg::rand(tb ? Shape{n, k} : Shape{k, n}, rng, -1, 1).to(dt);
          const Tensor want = tg::matmul(tg::constant(a), tg::constant(b), ta, tb).value();
          Tensor out = tg::full({m, n}, 7.0, dt);  // stale values must not leak in
          const void* where = out.raw_data();
          tg::matmul_out(out, a, b, ta, tb);
          CHECK(out.raw_data() == where);  // written in place
          CHECK(tg::max_abs_diff(out, want) == 0.0);
        }
    }
  }
  // Batched operands, as matmul's equal-rank form.
  const Tensor a = tg::rand({3, 4, 5}, rng, -1, 1), b = tg::rand({3, 5, 2}, rng, -1, 1);
  Tensor out = tg::zeros({3, 4, 2});
  tg::matmul_out(out, a, b);
  CHECK(tg::max_abs_diff(out, tg::matmul(tg::constant(a), tg::constant(b)).value()) == 0.0);
}

TEST_CASE("matmul_out rejects a wrong, undefined or overlapping output", "[ops][matmul][errors]") {
  const Tensor a = tg::ones({4, 3}), b = tg::ones({3, 2});
  Tensor wrong_shape = tg::zeros({2, 4});
  CHECK_THROWS_WITH(tg::matmul_out(wrong_shape, a, b),
                    "matmul_out: out must be a f32 [4, 2] tensor, got f32 [2, 4]");
  Tensor wrong_dtype = tg::zeros({4, 2}, tg::f64);
  CHECK_THROWS_WITH(tg::matmul_out(wrong_dtype, a, b),
                    "matmul_out: out must be a f32 [4, 2] tensor, got f64 [4, 2]");
  Tensor undefined;
  CHECK_THROWS_WITH(tg::matmul_out(undefined, a, b),
                    "matmul_out: out must be a f32 [4, 2] tensor, got an undefined tensor");
  Tensor inner = tg::zeros({4, 2});
  CHECK_THROWS_WITH(tg::matmul_out(inner, a, tg::ones({4, 2})),
                    "matmul_out: shapes [4, 3] and [4, 2] do not match: inner extents 3 and 4");
  Tensor square = tg::ones({3, 3});
  CHECK_THROWS_WITH(tg::matmul_out(square, square, tg::ones({3, 3})),
                    "matmul_out: out shares memory with an operand (BLAS cannot write in place)");
  CHECK(square.at({1, 1}) == 1.0);  // untouched
}

TEST_CASE("a product of empty operands whose result would overflow int64 is refused",
          "[ops][matmul][errors]") {
  // op(a) and op(b) each hold no element, but [1, 2^62 + 1, 4] has more than int64 counts.
  const int64_t huge = (int64_t{1} << 62) + 1;
  const Var a = tg::constant(Tensor::empty({1, huge, 0})), b = tg::constant(tg::zeros({1, 0, 4}));
  CHECK_THROWS_WITH(tg::matmul(a, b, false, false), Catch::Contains("more elements than int64"));
  const Var a2 = tg::constant(Tensor::empty({huge, 0})), b2 = tg::constant(tg::zeros({0, 4}));
  CHECK_THROWS_WITH(tg::matmul(a2, b2), Catch::Contains("more elements than int64"));
  // and an honest empty product still works
  const Var e = tg::matmul(tg::constant(tg::zeros({2, 0})), tg::constant(tg::zeros({0, 3})));
  CHECK(e.shape() == Shape{2, 3});
  CHECK(e.value().at({1, 2}) == 0.0);
}

TEST_CASE("NaN through relu and pow's gradients at 0 as PyTorch defines them", "[ops][numerics]") {
  // Regressions from a one-to-one comparison with PyTorch: relu turned NaN into 0 (value and
  // gradient), and pow(a, b)'s gradients were 0 * inf = NaN where they are 0 by definition.
  const double nan = std::nan("");
  auto same = [](const std::vector<double>& got, const std::vector<double>& want) {
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      INFO("element " << i << ": got " << got[i] << ", want " << want[i]);
      if (std::isnan(want[i]))
        CHECK(std::isnan(got[i]));
      else if (std::isinf(want[i]))
        CHECK(got[i] == want[i]);
      else
        CHECK(got[i] == Approx(want[i]).epsilon(1e-12).margin(1e-300));
    }
  };
  struct Result {
    std::vector<double> y, ga, gb;
  };
  auto relu_case = [](const std::vector<double>& x0, bool leaky) {
    Var x = tg::param(tg::tensor(x0, {static_cast<int64_t>(x0.size())}, tg::f64));
    Var y = leaky ? tg::leaky_relu(x, 0.1) : tg::relu(x);
    tg::sum(y).backward();
    return Result{vals(y), vals(x.grad()), {}};
  };
  auto pow_case = [](const std::vector<double>& a0, const std::vector<double>& b0) {
    const int64_t n = static_cast<int64_t>(a0.size());
    Var a = tg::param(tg::tensor(a0, {n}, tg::f64)), b = tg::param(tg::tensor(b0, {n}, tg::f64));
    Var y = tg::pow(a, b);
    tg::sum(y).backward();
    return Result{vals(y), vals(a.grad()), vals(b.grad())};
  };
  const std::vector<double> rx{nan, -1, 0, 1};
  const std::vector<double> pa{0, 2, 0, 0, 3}, pb{2, 2, 0, -1, 0};
  const Result r = relu_case(rx, false), l = relu_case(rx, true), p = pow_case(pa, pb);
  same(r.y, {nan, 0, 0, 1});
  same(r.ga, {1, 0, 0, 1});
  same(l.y, {nan, -0.1, 0, 1});
  same(l.ga, {0.1, 0.1, 0.1, 1});
  // a = [0, 2, 0, 0, 3], b = [2, 2, 0, -1, 0]: 0^-1 = inf is not masked, as in PyTorch.
  same(p.y, {0, 4, 1, INFINITY, 1});
  same(p.ga, {0, 4, 0, -INFINITY, 0});
  same(p.gb, {0, 4 * std::log(2.0), 0, -INFINITY, std::log(3.0)});
  // The masks hold for second derivatives too: the a-gradient is defined as 0 where b = 0,
  // so its derivative in b there is 0 (not 1/a), as in PyTorch.
  auto mixed = [](double a0, double b0) {
    Var a = tg::param(tg::tensor({a0}, {1}, tg::f64)),
        b = tg::param(tg::tensor({b0}, {1}, tg::f64));
    const auto g = tg::grad({tg::sum(tg::pow(a, b))}, {a, b}, {}, {.create_graph = true});
    return tg::grad({tg::sum(g[0])}, {b}, {}, {.allow_unused = true})[0].item();
  };
  CHECK(mixed(2.0, 0.0) == 0.0);
  CHECK(mixed(2.0, 3.0) == Approx(3.0 * 4.0 * std::log(2.0) + 4.0));  // d/db (b a^(b-1))

  if (!torch_available()) {
    WARN("SKIPPED: /usr/bin/python3 cannot import torch; the PyTorch oracle part did not run");
    return;
  }
  const auto torch = run_python(R"PY(
import torch
def emit(name, t):
    print(name, " ".join(repr(float(v)) for v in t.detach().reshape(-1)))
for name, f in (("relu", torch.relu), ("leaky", lambda x: torch.nn.functional.leaky_relu(x, 0.1))):
    x = torch.tensor([float("nan"), -1.0, 0.0, 1.0], dtype=torch.float64, requires_grad=True)
    y = f(x); y.sum().backward()
    emit(name + "_y", y); emit(name + "_g", x.grad)
a = torch.tensor([0.0, 2.0, 0.0, 0.0, 3.0], dtype=torch.float64, requires_grad=True)
b = torch.tensor([2.0, 2.0, 0.0, -1.0, 0.0], dtype=torch.float64, requires_grad=True)
y = torch.pow(a, b); y.sum().backward()
emit("pow_y", y); emit("pow_ga", a.grad); emit("pow_gb", b.grad)
a = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
b = torch.tensor([0.0], dtype=torch.float64, requires_grad=True)
ga, = torch.autograd.grad(torch.pow(a, b).sum(), a, create_graph=True)
emit("pow_dga_db", torch.autograd.grad(ga.sum(), b)[0])
)PY");
  for (const char* name : {"relu_y", "relu_g", "leaky_y", "leaky_g", "pow_y", "pow_ga", "pow_gb"})
    REQUIRE(torch.count(name) == 1);
  same(r.y, torch.at("relu_y"));
  same(r.ga, torch.at("relu_g"));
  same(l.y, torch.at("leaky_y"));
  same(l.ga, torch.at("leaky_g"));
  same(p.y, torch.at("pow_y"));
  same(p.ga, torch.at("pow_ga"));
  same(p.gb, torch.at("pow_gb"));
  REQUIRE(torch.count("pow_dga_db") == 1);
  CHECK(mixed(2.0, 0.0) == torch.at("pow_dga_db")[0]);
}
