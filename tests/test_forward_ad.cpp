// Forward-mode AD (graph/forward_ad.hpp): the level and dual API, its errors, tangents
// dropped with the level, reverse-over-forward, custom ops' JVP rules, func::jvp, and
// torch.autograd.forward_ad as an oracle. Every op's JVP rule is checked by fwdcheck in
// tests/test_gradcheck_ops.cpp.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include <tapegrad/tapegrad.hpp>

#include "torch_oracle.hpp"

using tg::Shape;
using tg::Tensor;
using tg::Var;
namespace fwd = tg::fwd;

namespace {

std::vector<double> vals(const Var& v) { return v.value().to_vector(); }

// A user's op: y = x^2 elementwise, with its backward and (optionally) a JVP rule.
Var user_square(const Var& x, bool with_jvp, double jvp_factor = 2.0) {
  Tensor y = (x.detach() * x.detach()).value();  // the forward value, unrecorded
  auto backward = [](const tg::BackwardCtx& c, const Var& dy) {
    return tg::Grads{dy * c.input(0) * 2.0};
  };
  if (!with_jvp) return tg::record("user_square", std::move(y), {x}, backward);
  return tg::record("user_square", std::move(y), {x}, backward, [jvp_factor](const tg::JvpCtx& c) {
    return c.tangent(0) * c.input(0) * jvp_factor;
  });
}

template <class E, class F>
std::string message_of(F f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "(no exception)";
}

}  // namespace

TEST_CASE("forward mode: a dual's tangent flows through ops in one pass", "[forward_ad]") {
  const Var x = tg::constant(tg::tensor({0.5, -1.0, 2.0}, {3}, tg::f64));
  const Var t = tg::constant(tg::tensor({1.0, 2.0, -1.0}, {3}, tg::f64));
  fwd::DualLevel level;
  const Var d = fwd::make_dual(x, t);
  CHECK(d.value().shares_storage_with(x.value()));
  const Var y = tg::sin(d) * d;  // y' = (cos(x) x + sin(x)) t
  const auto u = fwd::unpack_dual(y);
  REQUIRE(u.tangent.defined());
  const std::vector<double> xv = vals(x), tv = vals(t), got = vals(u.tangent);
  for (size_t i = 0; i < 3; ++i)
    CHECK(got[i] == Approx((std::cos(xv[i]) * xv[i] + std::sin(xv[i])) * tv[i]).epsilon(1e-14));
  CHECK(vals(u.primal) == vals(y));
  CHECK_FALSE(fwd::unpack_dual(u.primal).tangent.defined());  // the primal has none
  CHECK_FALSE(fwd::unpack_dual(x).tangent.defined());         // nor the original value
  // Nothing is recorded: no input wants a gradient.
  CHECK_FALSE(y.requires_grad());
  CHECK_FALSE(u.tangent.requires_grad());
}

TEST_CASE("forward mode: the level's rules and errors", "[forward_ad]") {
  const Var x = tg::constant(tg::ones({2, 3}, tg::f64));
  SECTION("make_dual needs an open level") {
    CHECK(message_of<tg::Error>([&] { fwd::make_dual(x, x); }).find("make_dual: no") == 0);
    CHECK_FALSE(fwd::level_active());
  }
  SECTION("one level at a time") {
    fwd::DualLevel level;
    CHECK(fwd::level_active());
    CHECK(message_of<tg::Error>([] { fwd::DualLevel inner; }).find("nested") != std::string::npos);
    CHECK(fwd::level_active());  // the failed inner level left the outer one open
    const auto f = [](const Var& v) { return tg::exp(v); };
    CHECK(message_of<tg::Error>([&] { tg::func::jvp(f, x, x); }).find("func::jvp: ") == 0);
  }
  SECTION("the tangent must match the primal") {
    fwd::DualLevel level;
    const std::string shape = message_of<tg::ShapeError>([&] {
      fwd::make_dual(x, tg::constant(tg::ones({3, 2}, tg::f64)));
    });
    CHECK(shape.find("make_dual: ") == 0);
    CHECK(shape.find("[3, 2]") != std::string::npos);
    const std::string dtype = message_of<tg::DtypeError>([&] {
      fwd::make_dual(x, tg::constant(tg::ones({2, 3}, tg::f32)));
    });
    CHECK(dtype.find("make_dual: ") == 0);
    CHECK(dtype.find(tg::dtype_name(tg::f32)) != std::string::npos);
    const Var ints = tg::constant(tg::zeros({2, 3}, tg::i64));
    CHECK(message_of<tg::DtypeError>([&] {
            fwd::make_dual(ints, ints);
          }).find(tg::dtype_name(tg::i64)) != std::string::npos);
  }
  SECTION("closing the level drops every tangent") {
    Var d, y;
    {
      fwd::DualLevel level;
      d = fwd::make_dual(x, tg::constant(tg::full({2, 3}, 3.0, tg::f64)));
      y = tg::exp(d) + 1.0;
      CHECK(fwd::unpack_dual(y).tangent.defined());
    }
    CHECK_FALSE(fwd::level_active());
    CHECK_FALSE(fwd::unpack_dual(d).tangent.defined());
    CHECK_FALSE(fwd::unpack_dual(y).tangent.defined());
    CHECK_FALSE(d.node()->tangent.defined());
    // Ops on them carry nothing now, and a new level starts from nothing.
    fwd::DualLevel again;
    CHECK_FALSE(fwd::unpack_dual(tg::exp(y)).tangent.defined());
  }
  SECTION("values dying inside the level leave it") {
    fwd::DualLevel level;
    Var d = fwd::make_dual(x, x);
    for (int i = 0; i < 1000; ++i) d = tg::tanh(d) * 0.5 + d;  // each step's values die
    CHECK(fwd::unpack_dual(d).tangent.defined());
  }
}

TEST_CASE("forward mode: a custom op gives its JVP rule to record", "[forward_ad]") {
  const Var x = tg::constant(tg::tensor({1.5, -2.0}, {2}, tg::f64));
  const Var t = tg::constant(tg::tensor({1.0, 0.5}, {2}, tg::f64));
  fwd::DualLevel level;
  const Var d = fwd::make_dual(x, t);
  // Without a rule, reaching the op with a tangent is an error, never a silent zero.
  const std::string msg = message_of<tg::Error>([&] { user_square(d, false); });
  CHECK(msg.find("forward-mode AD is not implemented for user_square") == 0);
  // Without a tangent the op runs as before.
  CHECK(vals(user_square(x, false)) == std::vector<double>{2.25, 4.0});
  CHECK(vals(fwd::unpack_dual(user_square(d, true)).tangent) == std::vector<double>{3.0, -2.0});
}

TEST_CASE("forward mode: fwdcheck catches a wrong JVP rule", "[forward_ad]") {
  const std::vector<Tensor> in{tg::tensor({0.3, -0.7, 1.1}, {3}, tg::f64)};
  CHECK(tg::fwdcheck([](const std::vector<Var>& v) { return user_square(v[0], true); }, in));
  const auto bad =
      tg::fwdcheck([](const std::vector<Var>& v) { return user_square(v[0], true, 2.5); }, in);
  CHECK_FALSE(bad.passed);
  CHECK(bad.message.find("fwdcheck FAILED") == 0);
}

TEST_CASE("forward mode: reverse-over-forward differentiates the tangent", "[forward_ad]") {
  // f(x) = x^3 (as x * x * x): the tangent 3 x^2 t; its gradient in x is 6 x t and in t 3 x^2.
  const Var x = tg::param(tg::tensor({0.5, -1.5, 2.0}, {3}, tg::f64));
  const Var t = tg::param(tg::tensor({1.0, 2.0, -0.5}, {3}, tg::f64));
  Var tangent;
  {
    fwd::DualLevel level;
    const Var d = fwd::make_dual(x, t);
    tangent = fwd::unpack_dual(d * d * d).tangent;
  }
  REQUIRE(tangent.requires_grad());
  const auto g = tg::grad({tg::sum(tangent)}, {x, t});
  const std::vector<double> xv = vals(x), tv = vals(t), gx = vals(g[0]), gt = vals(g[1]);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(gx[i] == Approx(6 * xv[i] * tv[i]).epsilon(1e-14));
    CHECK(gt[i] == Approx(3 * xv[i] * xv[i]).epsilon(1e-14));
  }
  // func::jvp with create_graph: the same through the transform.
  const auto p = tg::func::jvp([](const Var& v) { return v * v * v; }, x, t, true);
  CHECK(vals(tg::grad({tg::sum(p.product)}, {x})[0]) == gx);
}

TEST_CASE("forward mode: func::jvp is forward mode, no graph without create_graph",
          "[forward_ad][func]") {
  tg::Rng rng(7);
  const Var w = tg::param(tg::randn({4, 3}, rng, tg::f64));
  const Var x = tg::constant(tg::randn({5, 4}, rng, tg::f64));
  const Var t = tg::constant(tg::randn({5, 4}, rng, tg::f64));
  const auto f = [&w](const Var& v) { return tg::tanh(tg::matmul(v, w)); };
  const auto p = tg::func::jvp(f, x, t);
  CHECK_FALSE(p.output.requires_grad());
  CHECK_FALSE(p.product.requires_grad());
  // J t = (1 - y^2) * (t w)
  const Var y = f(x);
  const std::vector<double> want = vals((1.0 - y * y) * tg::matmul(t, w));
  tgtest::check_close(vals(p.product), want, 1e-13);
  // jacobian by columns (forward mode) equals jacobian by rows.
  const Var jr = tg::func::jacobian(f, x, false, false, tg::func::Strategy::reverse);
  const Var jf = tg::func::jacobian(f, x, false, false, tg::func::Strategy::forward);
  tgtest::check_close(vals(jf), vals(jr), 1e-13);
}

TEST_CASE("forward mode: checkpoint's JVP re-runs its function with the tangents",
          "[forward_ad][checkpoint]") {
  const Var x = tg::param(tg::tensor({0.2, -0.4, 0.9}, {3}, tg::f64));
  const Var t = tg::constant(tg::tensor({1.0, -1.0, 0.5}, {3}, tg::f64));
  const auto fn = [](const Var& v) { return tg::sin(v) * tg::exp(v); };
  Var plain, checkpointed;
  {
    fwd::DualLevel level;
    plain = fwd::unpack_dual(fn(fwd::make_dual(x, t))).tangent;
    checkpointed = fwd::unpack_dual(tg::checkpoint(fn, fwd::make_dual(x, t))).tangent;
  }
  REQUIRE(checkpointed.defined());
  tgtest::check_close(vals(checkpointed), vals(plain), 1e-15);
}

TEST_CASE("forward mode: a fused tangent is a bare tensor, no value of its own", "[forward_ad]") {
  // Note [Tangent storage] / [Fused tangents]: when nothing records, an elementwise op's
  // tangent lives in the level's slot, so each op makes one node; a JVP rule that reads it
  // later (sin has no fused kernel) sees it as a Var.
  const Var x = tg::constant(tg::tensor({0.3, -0.7}, {2}, tg::f64));
  const Var t = tg::constant(tg::tensor({1.0, 2.0}, {2}, tg::f64));
  const Var w = tg::constant(tg::tensor({0.9, 1.1}, {2}, tg::f64));
  tg::NoGradGuard no_grad;
  fwd::DualLevel level;
  std::vector<Var> ys{fwd::make_dual(x, t)};
  const int64_t before = tg::debug::live_nodes();
  for (int i = 0; i < 8; ++i) ys.push_back(tg::sigmoid(ys.back() * w + w));
  CHECK(tg::debug::live_nodes() - before == 8);  // one node per value kept, none per tangent
  // d sin(y) = cos(y) ty, through sin's rule reading the bare tangent of y.
  const Var y = ys.back();
  const Var ty = fwd::unpack_dual(y).tangent;
  REQUIRE(ty.defined());
  const Var ts = fwd::unpack_dual(tg::sin(y)).tangent;
  REQUIRE(ts.defined());
  CHECK(tg::allclose(ts.value(), (tg::cos(y.detach()) * ty).value(), 1e-14, 1e-14));
  // The chain rule by hand: ty_{k+1} = s (1 - s) w ty_k.
  Tensor want = t.value().clone();
  for (size_t k = 1; k < ys.size(); ++k) {
    const Tensor s = ys[k].value();
    want = (tg::constant(s) * (1.0 - tg::constant(s)) * w * tg::constant(want)).value();
  }
  CHECK(tg::allclose(ty.value(), want, 1e-14, 1e-14));
}

TEST_CASE("forward mode: levels reuse their slots, and values may die on another thread",
          "[forward_ad]") {
  const Var x = tg::constant(tg::tensor({0.5}, {1}, tg::f64));
  tg::NoGradGuard no_grad;
  for (int round = 0; round < 3; ++round) {
    std::vector<Var> keep;
    Var handed;
    {
      fwd::DualLevel level;
      Var d = fwd::make_dual(x, tg::constant(tg::full({1}, 1.0 + round, tg::f64)));
      for (int i = 0; i < 2500; ++i) keep.push_back(d = d * 1.0 + 0.0);  // past one chunk
      handed = tg::exp(d);
      std::thread([v = std::move(handed)]() mutable { v = Var(); }).join();  // dies there
      for (size_t i = 0; i < keep.size(); i += 500)
        CHECK(vals(fwd::unpack_dual(keep[i]).tangent) == std::vector<double>{1.0 + round});
    }
    for (const Var& v : keep) REQUIRE_FALSE(fwd::unpack_dual(v).tangent.defined());
  }
}

TEST_CASE("forward mode: kept tangent buffers are reused, never shared, freed at close",
          "[forward_ad]") {
  // Note [Kept tangent buffers]: a fused tangent's buffer that dies with no other holder is
  // kept in its slot for the next fused kernel; a tangent still held (here by unpack_dual's
  // result) is never reused, and the level frees the kept buffers when it closes.
  const Var x = tg::constant(tg::tensor({0.3}, {1}, tg::f64));
  const Var w = tg::constant(tg::tensor({0.9}, {1}, tg::f64));
  tg::NoGradGuard no_grad;
  const int64_t bytes_before = tg::debug::live_tensor_bytes();
  {
    fwd::DualLevel level;
    Var y = fwd::make_dual(x, tg::constant(tg::tensor({1.0}, {1}, tg::f64)));
    double want = 1.0;
    std::vector<std::pair<Var, double>> held;  // tangents kept while buffers are recycled
    for (int i = 0; i < 40; ++i) {
      const Var s = tg::sigmoid(y * w + w);
      const double sv = s.item();
      want *= sv * (1.0 - sv) * 0.9;
      y = s;
      if (i % 7 == 0) held.emplace_back(fwd::unpack_dual(y).tangent, want);
    }
    CHECK(fwd::unpack_dual(y).tangent.item() == Approx(want).epsilon(1e-12));
    for (const auto& [t, v] : held) CHECK(t.item() == Approx(v).epsilon(1e-12));
  }
  CHECK(tg::debug::live_tensor_bytes() == bytes_before);
}

TEST_CASE("forward mode: a kept tangent buffer serves tangents of other shapes and dtypes",
          "[forward_ad]") {
  // Buffers kept from one-element f64 tangents taken by f32 tangents of two elements (the
  // same block) and of other sizes, and add's passed-on tangents copied into them: every
  // tangent against its value computed by hand.
  tg::NoGradGuard no_grad;
  const int64_t bytes_before = tg::debug::live_tensor_bytes();
  {
    fwd::DualLevel level;
    for (int round = 0; round < 3; ++round) {
      const Var a = fwd::make_dual(tg::constant(tg::tensor({0.5}, {1}, tg::f64)),
                                   tg::constant(tg::tensor({2.0}, {1}, tg::f64)));
      const Var c = tg::constant(tg::tensor({1.5}, {1}, tg::f64));
      const Var ya = (a * c + c) * c;  // tangent 2 * 1.5 * 1.5
      CHECK(fwd::unpack_dual(ya).tangent.item() == Approx(4.5).epsilon(1e-15));
      for (const int64_t n : {int64_t{2}, int64_t{3}, int64_t{40}}) {
        const Var b = fwd::make_dual(tg::constant(tg::full({n}, 0.25, tg::f32)),
                                     tg::constant(tg::full({n}, 1.0 + round, tg::f32)));
        const Var w = tg::constant(tg::full({n}, 3.0, tg::f32));
        const Var yb = (b * w + w) * w - w;  // tangent (1 + round) * 9
        const Var tb = fwd::unpack_dual(yb).tangent;
        REQUIRE(tb.shape() == tg::Shape{n});
        REQUIRE(tb.dtype() == tg::f32);
        for (const double v : tb.value().to_vector()) CHECK(v == 9.0 * (1 + round));
      }
    }
  }
  CHECK(tg::debug::live_tensor_bytes() == bytes_before);
}

TEST_CASE("forward mode matches torch.autograd.forward_ad", "[forward_ad][oracle]") {
  TGTEST_REQUIRE_TORCH();
  // Each function at f64 and f32: the output, its tangent (tangents pattern(k + 20, 0.5)),
  // and the gradients of sum(tangent * w) with respect to the primals (reverse-over-forward).
  for (const auto& [single, dt, tdt, tol] : tgtest::oracle_dtypes()) {
    const std::string script = std::string(tgtest::kPythonPrelude) + "D = " + dt + R"PY(
import torch.autograd.forward_ad as fwAD
F = torch.nn.functional
def P(shape, k):
    return pattern(shape, k, 1.0, D).requires_grad_()
def jvp(name, f, *xs):
    with fwAD.dual_level():
        duals = [fwAD.make_dual(x, pattern(tuple(x.shape), k + 20.0, 0.5, D)) for x, k in xs]
        y = f(*duals)
        p, t = fwAD.unpack_dual(y)
    emit(name, p)
    emit(name + "_t", t)
    w = pattern(tuple(t.shape), 9.0, 1.0, D)
    gs = torch.autograd.grad((t * w).sum(), [x for x, _ in xs], allow_unused=True)
    for i, g in enumerate(gs):
        emit(name + "_g%d" % i, torch.zeros_like(xs[i][0]) if g is None else g)
# (log_softmax and logsumexp written out: torch's own JVPs of them write in place, which its
# reverse-over-forward then refuses; the same functions, on small values)
def mlp(x, w, b):
    h = torch.tanh(x @ w + b)
    return h - torch.log(torch.exp(h).sum(1, keepdim=True))
jvp("mlp", mlp, (P((5, 4), 0.0), 0.0), (P((4, 3), 1.0), 1.0), (P((3,), 2.0), 2.0))
jvp("mlp_empty", mlp, (P((0, 4), 0.0), 0.0), (P((4, 3), 1.0), 1.0), (P((3,), 2.0), 2.0))
jvp("broadcast", lambda a, b: F.softplus(a) * torch.sigmoid(b) / (1 + a * a) + torch.exp(-b),
    (P((3, 1), 3.0), 3.0), (P((4,), 4.0), 4.0))
# (layer_norm written out too: torch 2's F.layer_norm gives a different reverse-over-forward
# gradient than the same formula from ops, which agrees with tapegrad and finite differences)
def layer_norm(x):
    m = x.mean(-1, keepdim=True)
    return (x - m) / torch.sqrt(((x - m) ** 2).mean(-1, keepdim=True) + 1e-5)
jvp("norm", lambda x: F.gelu(layer_norm(x)).sum(1), (P((2, 3, 4), 5.0), 5.0))
jvp("reduce", lambda x: torch.log(torch.exp(x).sum(1)) * x.std(1) + x.max(0)[0][:3],
    (P((3, 4), 6.0), 6.0))
jvp("conv", lambda x, w: F.max_pool2d(F.conv2d(x, w, padding=1), 2), (P((1, 2, 5, 5), 7.0), 7.0),
    (P((3, 2, 3, 3), 8.0), 8.0))
)PY";
    const auto torch = tgtest::run_python(script);
    auto check = [&](const std::string& name, const std::function<Var(const std::vector<Var>&)>& f,
                     const std::vector<std::pair<Shape, double>>& in) {
      INFO(name << " " << tg::dtype_name(tdt));
      std::vector<Var> xs, duals;
      Var y, t;
      for (const auto& [s, k] : in) xs.push_back(tg::param(tgtest::pattern(s, k).to(tdt)));
      {
        fwd::DualLevel level;
        for (size_t i = 0; i < xs.size(); ++i)
          duals.push_back(fwd::make_dual(
              xs[i],
              tg::constant(tgtest::pattern(xs[i].shape(), in[i].second + 20.0, 0.5).to(tdt))));
        const auto u = fwd::unpack_dual(f(duals));
        y = u.primal;
        t = u.tangent;
      }
      REQUIRE(t.defined());
      REQUIRE(torch.count(name) == 1);
      tgtest::check_close(vals(y), torch.at(name), tol);
      tgtest::check_close(vals(t), torch.at(name + "_t"), tol);
      const Var w = tg::constant(tgtest::pattern(t.shape(), 9.0).to(tdt));
      const auto gs = tg::grad({tg::sum(t * w)}, xs, {}, {.allow_unused = true});
      for (size_t i = 0; i < xs.size(); ++i) {
        INFO("gradient " << i);
        const std::string key = name + "_g" + std::to_string(i);
        REQUIRE(torch.count(key) == 1);
        tgtest::check_close(
            gs[i].defined() ? vals(gs[i]) : std::vector<double>(torch.at(key).size()),
            torch.at(key), tol);
      }
    };
    const auto mlp = [](const std::vector<Var>& v) {
      return tg::log_softmax(tg::tanh(tg::matmul(v[0], v[1]) + v[2]), 1);
    };
    check("mlp", mlp, {{{5, 4}, 0.0}, {{4, 3}, 1.0}, {{3}, 2.0}});
    check("mlp_empty", mlp, {{{0, 4}, 0.0}, {{4, 3}, 1.0}, {{3}, 2.0}});
    check("broadcast",
          [](const std::vector<Var>& v) {
            return tg::softplus(v[0]) * tg::sigmoid(v[1]) / (v[0] * v[0] + 1.0) + tg::exp(-v[1]);
          },
          {{{3, 1}, 3.0}, {{4}, 4.0}});
    check(
        "norm",
        [](const std::vector<Var>& v) { return tg::sum(tg::gelu(tg::layer_norm(v[0], {4})), {1}); },
        {{{2, 3, 4}, 5.0}});
    check("reduce",
          [](const std::vector<Var>& v) {
            return tg::logsumexp(v[0], {1}) * tg::std(v[0], {1}) +
                   tg::slice(tg::max_dim(v[0], 0).values, 0, 0, 3);
          },
          {{{3, 4}, 6.0}});
    check("conv",
          [](const std::vector<Var>& v) {
            return tg::max_pool2d(tg::conv2d(v[0], v[1], {}, 1, 1), 2);
          },
          {{{1, 2, 5, 5}, 7.0}, {{3, 2, 3, 3}, 8.0}});
  }
}
