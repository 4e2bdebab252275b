// Pooling and normalization (ops/pool.hpp, ops/norm.hpp): values, gradients, indices and
// running statistics against PyTorch's torch.nn.functional, and the typed errors.

#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

#include "torch_oracle.hpp"

namespace {

using tg::Pair2;
using tg::Shape;
using tg::Var;
using tgtest::check_close;
using tgtest::pattern;

std::vector<double> vals(const Var& v) { return v.value().to(tg::f64).to_vector(); }

}  // namespace

TEST_CASE("pooling and normalization match PyTorch", "[ops][pool][norm][oracle]") {
  TGTEST_REQUIRE_TORCH();
  // Each op at f64 and f32; gradients through sum(y * w) with a fixed weight pattern w.
  for (const auto& [single, dt, tdt, tol] : tgtest::oracle_dtypes()) {
    std::string script = std::string(tgtest::kPythonPrelude) + "D = " + dt + R"PY(
F = torch.nn.functional
def P(shape, k, scale=1.0):
    return pattern(shape, k, scale, D).requires_grad_()
def run(name, y, *xs):
    w = pattern(tuple(y.shape), 9.0, 1.0, D)
    emit(name, y)
    gs = torch.autograd.grad((y * w).sum(), xs, allow_unused=True)
    for i, g in enumerate(gs):
        emit(name + "_g%d" % i, torch.zeros_like(xs[i]) if g is None else g)
a = P((2, 3, 5, 6), 0.0)
y, i = F.max_pool2d(a, 2, return_indices=True)
run("mp_2", y, a); emit("mp_2_idx", i)
y, i = F.max_pool2d(a, 3, stride=2, padding=1, ceil_mode=True, return_indices=True)
run("mp_3_ceil", y, a); emit("mp_3_ceil_idx", i)
y, i = F.max_pool2d(a, (2, 3), stride=(1, 2), padding=(1, 1), dilation=2, return_indices=True)
run("mp_dil", y, a); emit("mp_dil_idx", i)
u = P((3, 5, 6), 1.0)
run("mp_unbatched", F.max_pool2d(u, 2, stride=1), u)
e = P((0, 3, 4, 4), 2.0)
run("mp_empty", F.max_pool2d(e, 2), e)
o = P((1, 1, 1, 1), 3.0)
run("mp_one", F.max_pool2d(o, 1), o)
n = pattern((1, 2, 4, 4), 4.0, 1.0, D)
n[0, 0, 1, 1] = float("nan"); n[0, 1, 3, 2] = float("nan"); n[0, 1, 3, 3] = float("nan")
n.requires_grad_()
y, i = F.max_pool2d(n, 2, return_indices=True)
run("mp_nan", y, n); emit("mp_nan_idx", i)
t = torch.round(pattern((2, 3, 5, 6), 0.0, 2.0, D)).requires_grad_()
y, i = F.max_pool2d(t, 3, stride=2, padding=1, return_indices=True)
run("mp_ties", y, t); emit("mp_ties_idx", i)
for tag, shp in (("mp_ties2_odd", (2, 3, 5, 7)), ("mp_ties2_even", (2, 3, 6, 8))):
    t2 = torch.round(pattern(shp, 0.0, 2.0, D)).requires_grad_()
    y, i = F.max_pool2d(t2, 2, return_indices=True)
    run(tag, y, t2); emit(tag + "_idx", i)
run("ap_2", F.avg_pool2d(a, 2), a)
run("ap_3_ceil_nopad", F.avg_pool2d(a, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), a)
run("ap_3_ceil_pad", F.avg_pool2d(a, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=True), a)
run("ap_rect", F.avg_pool2d(a, (2, 3), stride=(3, 1), padding=(1, 0)), a)
run("ap_empty", F.avg_pool2d(e, 2), e)
run("ap_div", F.avg_pool2d(a, 3, stride=2, padding=1, ceil_mode=True, divisor_override=5), a)
run("ap_div_neg", F.avg_pool2d(u, (2, 3), stride=1, divisor_override=-2), u)
run("aap_34", F.adaptive_avg_pool2d(a, (3, 4)), a)
run("aap_11", F.adaptive_avg_pool2d(a, 1), a)
run("aap_big", F.adaptive_avg_pool2d(u, (7, 8)), u)
b = P((2, 3, 9), 5.0)
y, i = F.max_pool1d(b, 3, stride=2, padding=1, return_indices=True)
run("mp1", y, b); emit("mp1_idx", i)
run("ap1", F.avg_pool1d(b, 4, stride=3, padding=2, ceil_mode=True, count_include_pad=False), b)
c = P((4, 3), 6.0); w3 = P((3,), 7.0); b3 = P((3,), 8.0)
run("bn_train_2d", F.batch_norm(c, None, None, w3, b3, training=True), c, w3, b3)
x4 = P((2, 3, 4, 5), 10.0)
run("bn_train_4d", F.batch_norm(x4, torch.zeros(3, dtype=D), torch.ones(3, dtype=D), w3, b3, training=True), x4, w3, b3)
rm = pattern((3,), 11.0, 1.0, D); rv = pattern((3,), 12.0, 1.0, D).abs().add(0.5)
run("bn_eval", F.batch_norm(x4, rm, rv, w3, b3, training=False), x4, w3, b3)
x1 = P((5, 3, 1), 13.0)
run("bn_size1", F.batch_norm(x1, None, None, training=True), x1)
x3 = P((2, 3, 4), 14.0); w34 = P((3, 4), 15.0); b34 = P((3, 4), 16.0)
run("ln", F.layer_norm(x3, (3, 4), w34, b34), x3, w34, b34)
run("ln_last", F.layer_norm(x4, (5,)), x4)
x6 = P((2, 6, 2, 2), 17.0); w6 = P((6,), 18.0); b6 = P((6,), 19.0)
run("gn", F.group_norm(x6, 3, w6, b6), x6, w6, b6)
run("gn_one", F.group_norm(x6, 1), x6)
run("in", F.instance_norm(x4, weight=w3, bias=b3), x4, w3, b3)
run("in_eval", F.instance_norm(x4, rm, rv, use_input_stats=False), x4)
rm = torch.zeros(3, dtype=D); rv = torch.ones(3, dtype=D)
rm2 = torch.zeros(3, dtype=D); rv2 = torch.ones(3, dtype=D)
with torch.no_grad():
    for s in range(10):
        F.batch_norm(pattern((4, 3, 2), s, 1.0 + 0.3 * s, D), rm, rv, training=True, momentum=0.1)
        F.instance_norm(pattern((2, 3, 5), s + 0.5, 2.0, D), rm2, rv2, use_input_stats=True, momentum=0.25)
emit("bn_rm", rm); emit("bn_rv", rv); emit("in_rm", rm2); emit("in_rv", rv2)
)PY";
    const auto torch = tgtest::run_python(script);
    auto P = [&](const Shape& s, double k) { return tg::param(pattern(s, k).to(tdt)); };
    auto run = [&](const std::string& name, const Var& y, const std::vector<Var>& xs) {
      INFO(name << (single ? " f32" : " f64"));
      REQUIRE(torch.count(name) == 1);
      check_close(vals(y), torch.at(name), tol);
      const Var w = tg::constant(pattern(y.shape(), 9.0).to(tdt));
      const auto gs = tg::grad({tg::sum(y * w)}, xs, {}, {.allow_unused = true});
      for (size_t i = 0; i < xs.size(); ++i) {
        INFO("gradient " << i);
        const std::string key = name + "_g" + std::to_string(i);
        REQUIRE(torch.count(key) == 1);
        check_close(gs[i].defined() ? vals(gs[i]) : std::vector<double>(torch.at(key).size()),
                    torch.at(key), tol);
      }
    };
    auto same = [&](const std::string& name, const Var& v) {
      INFO(name << (single ? " f32" : " f64"));
      REQUIRE(torch.count(name) == 1);
      CHECK(v.dtype() == tg::i64);
      CHECK(vals(v) == torch.at(name));
    };
    Var a = P({2, 3, 5, 6}, 0.0);
    auto r = tg::max_pool2d_with_indices(a, 2);
    run("mp_2", r.values, {a});
    same("mp_2_idx", r.indices);
    r = tg::max_pool2d_with_indices(a, 3, Pair2(2), 1, 1, true);
    run("mp_3_ceil", r.values, {a});
    same("mp_3_ceil_idx", r.indices);
    r = tg::max_pool2d_with_indices(a, Pair2(2, 3), Pair2(1, 2), Pair2(1, 1), 2);
    run("mp_dil", r.values, {a});
    same("mp_dil_idx", r.indices);
    Var u = P({3, 5, 6}, 1.0);
    run("mp_unbatched", tg::max_pool2d(u, 2, Pair2(1)), {u});
    Var e = P({0, 3, 4, 4}, 2.0);
    run("mp_empty", tg::max_pool2d(e, 2), {e});
    Var o = P({1, 1, 1, 1}, 3.0);
    run("mp_one", tg::max_pool2d(o, 1), {o});
    {
      tg::Tensor t = pattern({1, 2, 4, 4}, 4.0).to(tdt);
      const double nan = std::nan("");
      Var nn = tg::param(t.clone());
      tg::Tensor& tv = nn.value();
      for (int64_t at : {0 * 16 + 1 * 4 + 1, 16 + 3 * 4 + 2, 16 + 3 * 4 + 3}) {
        if (single)
          tv.data<float>()[at] = static_cast<float>(nan);
        else
          tv.data<double>()[at] = nan;
      }
      auto rn = tg::max_pool2d_with_indices(nn, 2);
      run("mp_nan", rn.values, {nn});
      same("mp_nan_idx", rn.indices);
    }
    {
      // Ties: the first maximum of each window takes the index and the gradient.
      std::vector<double> r = pattern({2, 3, 5, 6}, 0.0, 2.0).to_vector();
      for (double& v : r) v = std::nearbyint(v);  // as torch.round: half to even
      Var t = tg::param(tg::tensor(r, {2, 3, 5, 6}, tdt));
      auto rt = tg::max_pool2d_with_indices(t, 3, Pair2(2), 1);
      run("mp_ties", rt.values, {t});
      same("mp_ties_idx", rt.indices);
    }
    // The same for 2x2 windows (their own path), rows covered or not by the windows.
    for (const auto& [tag, shp] : {std::pair{"mp_ties2_odd", Shape{2, 3, 5, 7}},
                                   std::pair{"mp_ties2_even", Shape{2, 3, 6, 8}}}) {
      std::vector<double> r = pattern(shp, 0.0, 2.0).to_vector();
      for (double& v : r) v = std::nearbyint(v);
      Var t = tg::param(tg::tensor(r, shp, tdt));
      auto rt = tg::max_pool2d_with_indices(t, 2);
      run(tag, rt.values, {t});
      same(std::string(tag) + "_idx", rt.indices);
    }
    run("ap_2", tg::avg_pool2d(a, 2), {a});
    run("ap_3_ceil_nopad", tg::avg_pool2d(a, 3, Pair2(2), 1, true, false), {a});
    run("ap_3_ceil_pad", tg::avg_pool2d(a, 3, Pair2(2), 1, true, true), {a});
    run("ap_rect", tg::avg_pool2d(a, Pair2(2, 3), Pair2(3, 1), Pair2(1, 0)), {a});
    run("ap_empty", tg::avg_pool2d(e, 2), {e});
    run("ap_div", tg::avg_pool2d(a, 3, Pair2(2), 1, true, true, 5), {a});
    run("ap_div_neg", tg::avg_pool2d(u, Pair2(2, 3), Pair2(1), 0, false, true, -2), {u});
    run("aap_34", tg::adaptive_avg_pool2d(a, Pair2(3, 4)), {a});
    run("aap_11", tg::adaptive_avg_pool2d(a, 1), {a});
    run("aap_big", tg::adaptive_avg_pool2d(u, Pair2(7, 8)), {u});
    Var b = P({2, 3, 9}, 5.0);
    auto r1 = tg::max_pool1d_with_indices(b, 3, 2, 1);
    run("mp1", r1.values, {b});
    same("mp1_idx", r1.indices);
    run("ap1", tg::avg_pool1d(b, 4, 3, 2, true, false), {b});
    Var c = P({4, 3}, 6.0), w3 = P({3}, 7.0), b3 = P({3}, 8.0);
    run("bn_train_2d", tg::batch_norm(c, {}, {}, w3, b3, true), {c, w3, b3});
    Var x4 = P({2, 3, 4, 5}, 10.0);
    run("bn_train_4d",
        tg::batch_norm(x4, tg::constant(tg::zeros({3}, tdt)), tg::constant(tg::ones({3}, tdt)), w3,
                       b3, true),
        {x4, w3, b3});
    // Running statistics are buffers: PyTorch refuses a gradient for them (tapegrad gives one).
    Var rm = tg::constant(pattern({3}, 11.0).to(tdt));
    Var rv = tg::constant((tg::abs(tg::constant(pattern({3}, 12.0))) + 0.5).value().to(tdt));
    run("bn_eval", tg::batch_norm(x4, rm, rv, w3, b3, false), {x4, w3, b3});
    Var x1 = P({5, 3, 1}, 13.0);
    run("bn_size1", tg::batch_norm(x1, {}, {}, {}, {}, true), {x1});
    Var x3 = P({2, 3, 4}, 14.0), w34 = P({3, 4}, 15.0), b34 = P({3, 4}, 16.0);
    run("ln", tg::layer_norm(x3, {3, 4}, w34, b34), {x3, w34, b34});
    run("ln_last", tg::layer_norm(x4, {5}), {x4});
    Var x6 = P({2, 6, 2, 2}, 17.0), w6 = P({6}, 18.0), b6 = P({6}, 19.0);
    run("gn", tg::group_norm(x6, 3, w6, b6), {x6, w6, b6});
    run("gn_one", tg::group_norm(x6, 1), {x6});
    run("in", tg::instance_norm(x4, {}, {}, w3, b3), {x4, w3, b3});
    run("in_eval", tg::instance_norm(x4, rm, rv, {}, {}, false), {x4});
    // Running statistics after 10 training steps.
    Var bn_rm = tg::constant(tg::zeros({3}, tdt)), bn_rv = tg::constant(tg::ones({3}, tdt));
    Var in_rm = tg::constant(tg::zeros({3}, tdt)), in_rv = tg::constant(tg::ones({3}, tdt));
    for (int s = 0; s < 10; ++s) {
      tg::batch_norm(tg::constant(pattern({4, 3, 2}, s, 1.0 + 0.3 * s).to(tdt)), bn_rm, bn_rv, {},
                     {}, true, 0.1);
      tg::instance_norm(tg::constant(pattern({2, 3, 5}, s + 0.5, 2.0).to(tdt)), in_rm, in_rv, {},
                        {}, true, 0.25);
    }
    for (const auto& [name, v] :
         {std::pair{"bn_rm", bn_rm}, {"bn_rv", bn_rv}, {"in_rm", in_rm}, {"in_rv", in_rv}}) {
      INFO(name << (single ? " f32" : " f64"));
      REQUIRE(torch.count(name) == 1);
      check_close(vals(v), torch.at(name), tol);
    }
  }
}

TEST_CASE("pooling and normalization reject bad arguments with typed errors", "[ops][pool][norm]") {
  const Var x = tg::param(pattern({2, 3, 4, 4}, 0.0));
  const auto throws = [](auto f, const std::string& start) {
    try {
      f();
      FAIL("no error; expected one starting with " << start);
    } catch (const tg::Error& e) {
      const std::string what = e.what();
      INFO(what);
      CHECK(what.rfind(start, 0) == 0);
    }
  };
  using tg::ShapeError;
  CHECK_THROWS_AS(tg::max_pool2d(tg::param(pattern({4, 4}, 0.0)), 2), ShapeError);
  CHECK_THROWS_AS(tg::max_pool2d(x, 5), ShapeError);  // kernel larger than the input
  CHECK_THROWS_AS(tg::max_pool2d(x, 2, Pair2(0)), tg::Error);
  CHECK_THROWS_AS(tg::max_pool2d(x, 2, Pair2(-1, 1)), tg::Error);
  CHECK_THROWS_AS(tg::max_pool2d(x, 2, {}, 2), tg::Error);  // padding > kernel / 2
  CHECK_THROWS_AS(tg::max_pool2d(x, 2, {}, 0, 0), tg::Error);
  CHECK_THROWS_AS(tg::avg_pool2d(x, 3, {}, 2), tg::Error);
  CHECK_THROWS_AS(tg::avg_pool2d(x, 0), tg::Error);
  throws([&] { tg::avg_pool2d(x, 2, {}, 0, false, true, 0); },
         "avg_pool2d: divisor_override must be non-zero, got 0");
  CHECK_THROWS_AS(tg::max_pool2d(tg::constant(pattern({2, 3, 4, 4}, 0.0).to(tg::i64)), 2),
                  tg::DtypeError);
  CHECK_THROWS_AS(tg::max_pool1d(x, 2), ShapeError);
  CHECK_THROWS_AS(tg::avg_pool1d(tg::param(pattern({2, 3, 2}, 0.0)), 3), ShapeError);
  CHECK_THROWS_AS(tg::adaptive_avg_pool2d(tg::param(pattern({2, 3, 0, 4}, 0.0)), 2), ShapeError);
  throws([&] { tg::max_pool2d(x, 5); }, "max_pool2d: ");
  throws([&] { tg::avg_pool2d(x, 3, {}, 2); }, "avg_pool2d: ");
  throws([&] { tg::max_pool1d(tg::param(pattern({2, 3, 4}, 0.0)), 2, 0); }, "max_pool1d: ");
  // The padding bound is half of kernel_size whatever the dilation, as PyTorch ("pad should
  // be at most half of kernel size"): kernel 2 with dilation 3 takes padding 1, not 2.
  CHECK(tg::max_pool2d(x, 2, Pair2(1), 1, 3).shape() == Shape{2, 3, 3, 3});
  throws([&] { tg::max_pool2d(x, 2, Pair2(1), 2, 3); },
         "max_pool2d: padding (2, 2) must be non-negative and at most half of the kernel size "
         "(2, 2)");
  throws(
      [&] {
        tg::max_pool1d(tg::param(pattern({2, 3, 8}, 0.0)), 3, 1, 2, 2);
      },
      "max_pool1d: padding (0, 2) must be non-negative and at most half of the kernel size");

  const Var c3 = tg::param(pattern({3}, 1.0)), c4 = tg::param(pattern({4}, 1.0));
  CHECK_THROWS_AS(tg::batch_norm(tg::param(pattern({3}, 0.0)), {}, {}, {}, {}, true), ShapeError);
  CHECK_THROWS_AS(tg::batch_norm(x, c4, c4, {}, {}, false), ShapeError);
  CHECK_THROWS_AS(tg::batch_norm(x, {}, {}, c4, {}, true), ShapeError);
  CHECK_THROWS_AS(tg::batch_norm(x, {}, {}, {}, c4, true), ShapeError);
  CHECK_THROWS_AS(tg::batch_norm(x, {}, {}, {}, {}, false), tg::Error);  // eval without stats
  CHECK_THROWS_AS(tg::batch_norm(tg::param(pattern({1, 3}, 0.0)), {}, {}, {}, {}, true),
                  tg::Error);  // one value per channel
  CHECK_THROWS_AS(tg::batch_norm(x, c3, tg::constant(tg::ones({3}, tg::i64)), {}, {}, false),
                  tg::DtypeError);
  throws([&] { tg::batch_norm(x, c4, c4, {}, {}, false); }, "batch_norm: ");
  CHECK_THROWS_AS(tg::layer_norm(x, {3}), ShapeError);
  CHECK_THROWS_AS(tg::layer_norm(x, {4, 4}, c4), ShapeError);
  throws([&] { tg::layer_norm(x, {5}); }, "layer_norm: ");
  CHECK_THROWS_AS(tg::group_norm(x, 2), tg::Error);  // 3 channels, 2 groups
  CHECK_THROWS_AS(tg::group_norm(x, 3, c4), ShapeError);
  throws([&] { tg::group_norm(x, 0); }, "group_norm: ");
  CHECK_THROWS_AS(tg::instance_norm(tg::param(pattern({2, 3}, 0.0))), ShapeError);
  CHECK_THROWS_AS(tg::instance_norm(x, c4, c4), ShapeError);
  throws([&] { tg::instance_norm(x, {}, {}, {}, {}, false); }, "instance_norm: ");
}

TEST_CASE("batch_norm updates its running statistics without recording", "[ops][norm]") {
  const Var x = tg::param(pattern({4, 2}, 0.0));
  Var rm = tg::constant(tg::zeros({2}, tg::f64)), rv = tg::constant(tg::ones({2}, tg::f64));
  const Var y = tg::batch_norm(x, rm, rv, {}, {}, true, 0.5);
  CHECK(y.requires_grad());
  CHECK_FALSE(rm.requires_grad());
  // mean of column 0: (x0 + x2 + x4 + x6) / 4, halfway from 0.
  const auto xv = x.value().to_vector();
  CHECK(rm.value().to_vector()[0] == Approx(0.5 * (xv[0] + xv[2] + xv[4] + xv[6]) / 4));
  y.backward(tg::constant(tg::ones({4, 2}, tg::f64)));  // the update did not break the graph
  // Eval uses the running statistics: the same x now gives a different result.
  const Var ye = tg::batch_norm(x, rm, rv, {}, {}, false);
  CHECK(vals(ye) != vals(y));
}

TEST_CASE("batch_norm in training over an empty batch: an empty result, statistics kept",
          "[ops][norm]") {
  // As PyTorch: only exactly one value per channel is refused; a batch of 0 (or empty spatial
  // dims) normalizes to an empty result and leaves the running statistics as they were.
  for (const tg::Shape& s : {tg::Shape{0, 3}, tg::Shape{0, 3, 2, 2}, tg::Shape{2, 3, 0}}) {
    INFO(s.str());
    const Var x = tg::param(pattern(s, 0.0));
    Var rm = tg::constant(tg::zeros({3}, tg::f64)), rv = tg::constant(tg::ones({3}, tg::f64));
    const Var w = tg::param(pattern({3}, 1.0)), b = tg::param(pattern({3}, 2.0));
    const Var y = tg::batch_norm(x, rm, rv, w, b, true);
    CHECK(y.shape() == s);
    CHECK(vals(rm) == std::vector<double>{0, 0, 0});
    CHECK(vals(rv) == std::vector<double>{1, 1, 1});
    tg::sum(y).backward();
    CHECK(x.grad().shape() == s);
    CHECK(vals(w.grad()) == std::vector<double>{0, 0, 0});
  }
  // The module counts the batch, as torch.nn.BatchNorm2d does.
  tg::BatchNorm2d bn(3);
  CHECK(bn(tg::constant(tg::zeros({0, 3, 4, 4}))).shape() == tg::Shape{0, 3, 4, 4});
  CHECK(bn.buffer("num_batches_tracked").to(tg::f64).to_vector() == std::vector<double>{1});
  CHECK(bn.buffer("running_mean").to(tg::f64).to_vector() == std::vector<double>{0, 0, 0});
  CHECK(bn.buffer("running_var").to(tg::f64).to_vector() == std::vector<double>{1, 1, 1});
}

TEST_CASE("normalization statistics are stable under a large offset", "[ops][norm]") {
  // 1e8 + a pattern: a one-pass sum of squares would lose every digit of the variance.
  const tg::Tensor base = pattern({1000, 2}, 0.0);
  const Var shifted = tg::constant((tg::constant(base) + 1e8).value());
  const std::vector<double> want = vals(tg::batch_norm(tg::constant(base), {}, {}, {}, {}, true));
  check_close(vals(tg::batch_norm(shifted, {}, {}, {}, {}, true)), want, 1e-6);
  check_close(
      vals(tg::layer_norm(tg::constant(tg::permute(shifted, {1, 0}).value()), {1000})),
      vals(tg::layer_norm(tg::constant(tg::permute(tg::constant(base), {1, 0}).value()), {1000})),
      1e-6);
}

TEST_CASE("batch_norm with running statistics: the one-pass inference path equals the recorded one",
          "[ops][norm]") {
  // Without a gradient to record, x alpha + beta is one kernel (no temporary); with one, it
  // is the ops mul and add. Both must give the same values, f64 and f32, 2-D and 4-D.
  for (const tg::Dtype d : {tg::f64, tg::f32}) {
    for (const Shape& s : {Shape{5, 3}, Shape{4, 3, 5, 2}, Shape{0, 3, 2, 2}}) {
      const Var x = tg::param(pattern(s, 0.4).to(d));
      const Var rm = tg::constant(pattern({3}, 1.3).to(d));
      const Var rv = tg::constant(tg::tensor({1.5, 0.7, 2.2}, {3}, tg::f64).to(d));
      const Var w = tg::param(pattern({3}, 2.1).to(d)), b = tg::param(pattern({3}, 0.7).to(d));
      const Var recorded = tg::batch_norm(x, rm, rv, w, b, false);
      CHECK(recorded.requires_grad());
      Var inferred;
      {
        tg::NoGradGuard no_grad;
        inferred = tg::batch_norm(x, rm, rv, w, b, false);
      }
      CHECK_FALSE(inferred.requires_grad());
      CHECK(inferred.dtype() == d);
      check_close(vals(inferred), vals(recorded), d == tg::f64 ? 1e-15 : 1e-6);
    }
  }
}
