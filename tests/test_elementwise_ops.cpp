// Elementwise functions and activations (ops/math.hpp, ops/activation.hpp): edge points
// against hand-computed numbers (maximum ties, clamp and hardtanh bounds, gelu in both modes,
// round half to even, NaN in and out), typed errors, the xsimd kernels against std:: in
// units in the last place, and PyTorch as an oracle for values, gradients and second
// derivatives in f64 and f32 (skipped when torch is not installed).

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <tapegrad/tapegrad.hpp>

#include "torch_oracle.hpp"

using tg::Shape;
using tg::Tensor;
using tg::Var;
using tgtest::pattern;

namespace {
const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();
Var f64(const std::vector<double>& v, const Shape& s) {
  return tg::constant(tg::tensor(v, s, tg::f64));
}
Var p64(const std::vector<double>& v) {
  return tg::param(tg::tensor(v, {static_cast<int64_t>(v.size())}, tg::f64));
}
std::vector<double> vals(const Var& v) { return v.value().to_vector(); }
// NaN-aware equality of whole vectors (signed zeros compare equal).
bool same(const std::vector<double>& got, const std::vector<double>& want) {
  if (got.size() != want.size()) return false;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(got[i] == want[i] || (std::isnan(got[i]) && std::isnan(want[i])))) return false;
  return true;
}
// |got - want| <= tol * max(1, |want|) elementwise (Catch's Approx adds a relative 1e-5).
// The gradient of sum(y) with respect to x, through one backward.
std::vector<double> grad_sum(const Var& y, const Var& x) {
  return vals(tg::grad({tg::sum(y)}, {x})[0]);
}

// Distance in units in the last place between two finite values of one type.
template <class T>
int64_t ulps(T a, T b) {
  using I = std::conditional_t<sizeof(T) == 8, int64_t, int32_t>;
  auto ordered = [](T v) {
    I i;
    std::memcpy(&i, &v, sizeof i);
    return i < 0 ? std::numeric_limits<I>::min() - i : i;
  };
  const int64_t d = static_cast<int64_t>(ordered(a)) - static_cast<int64_t>(ordered(b));
  return d < 0 ? -d : d;
}

using Unary = std::function<Var(const Var&)>;
const std::vector<std::pair<std::string, Unary>>& unary_ops() {
  static const std::vector<std::pair<std::string, Unary>> ops{
      {"sin", [](const Var& x) { return tg::sin(x); }},
      {"cos", [](const Var& x) { return tg::cos(x); }},
      {"erf", [](const Var& x) { return tg::erf(x); }},
      {"rsqrt", [](const Var& x) { return tg::rsqrt(x); }},
      {"reciprocal", [](const Var& x) { return tg::reciprocal(x); }},
      {"square", [](const Var& x) { return tg::square(x); }},
      {"log1p", [](const Var& x) { return tg::log1p(x); }},
      {"expm1", [](const Var& x) { return tg::expm1(x); }},
      {"sign", [](const Var& x) { return tg::sign(x); }},
      {"floor", [](const Var& x) { return tg::floor(x); }},
      {"ceil", [](const Var& x) { return tg::ceil(x); }},
      {"round", [](const Var& x) { return tg::round(x); }},
      {"gelu", [](const Var& x) { return tg::gelu(x); }},
      {"gelu_tanh", [](const Var& x) { return tg::gelu(x, "tanh"); }},
      {"silu", [](const Var& x) { return tg::silu(x); }},
      {"mish", [](const Var& x) { return tg::mish(x); }},
      {"elu", [](const Var& x) { return tg::elu(x, 0.7); }},
      {"softsign", [](const Var& x) { return tg::softsign(x); }},
      {"hardtanh", [](const Var& x) { return tg::hardtanh(x, -0.5, 0.8); }},
  };
  return ops;
}
}  // namespace

TEST_CASE("maximum and minimum: broadcasting, ties share the gradient, NaN propagates",
          "[ops][elementwise]") {
  const Var a = p64({1, 2, 3, kNaN, 4});
  const Var b = p64({1, 5, kNaN, 0, 4});
  const Var y = tg::maximum(a, b);
  CHECK(same(vals(y), {1, 5, kNaN, kNaN, 4}));
  const auto g = tg::grad({tg::sum(y)}, {a, b});
  // ties: half each; NaN on either side: the whole gradient to both (as torch.maximum).
  CHECK(same(vals(g[0]), {0.5, 0, 1, 1, 0.5}));
  CHECK(same(vals(g[1]), {0.5, 1, 1, 1, 0.5}));
  const Var m = tg::minimum(a, b);
  CHECK(same(vals(m), {1, 2, kNaN, kNaN, 4}));
  const auto gm = tg::grad({tg::sum(m)}, {a, b});
  CHECK(same(vals(gm[0]), {0.5, 1, 1, 1, 0.5}));
  CHECK(same(vals(gm[1]), {0.5, 0, 1, 1, 0.5}));
  // Broadcasting [2,1] with [3]: the gradient sums back to each shape.
  const Var col = tg::param(tg::tensor({0, 2}, {2, 1}, tg::f64));
  const Var row = tg::param(tg::tensor({-1, 0, 3}, {3}, tg::f64));
  const Var z = tg::maximum(col, row);
  CHECK(z.shape() == Shape{2, 3});
  CHECK(vals(z) == std::vector<double>{0, 0, 3, 2, 2, 3});
  const auto gz = tg::grad({tg::sum(z)}, {col, row});
  CHECK(vals(gz[0]) == std::vector<double>{1.5, 2});
  CHECK(vals(gz[1]) == std::vector<double>{0, 0.5, 2});
  // Any dtype, the same on both sides; integers and bools record nothing.
  const Var ia = tg::constant(Tensor(std::vector<int64_t>{1, 7}, {2}));
  const Var ib = tg::constant(Tensor(std::vector<int64_t>{3, 2}, {2}));
  CHECK(tg::maximum(ia, ib).dtype() == tg::i64);
  CHECK(vals(tg::maximum(ia, ib)) == std::vector<double>{3, 7});
  CHECK(vals(tg::minimum(ia, ib)) == std::vector<double>{1, 2});
  CHECK(vals(tg::maximum(tg::constant(tg::tensor({1, 0}, {2}, tg::boolean)),
                         tg::constant(tg::tensor({0, 0}, {2}, tg::boolean)))) ==
        std::vector<double>{1, 0});
  CHECK_THROWS_AS(tg::maximum(a, ia), tg::DtypeError);
  CHECK_THROWS_WITH(tg::maximum(a, ia), Catch::StartsWith("maximum: ") && Catch::Contains("i64"));
  CHECK_THROWS_AS(tg::minimum(a, p64({1, 2})), tg::ShapeError);
  CHECK_THROWS_WITH(tg::minimum(a, p64({1, 2})), Catch::StartsWith("minimum: "));
}

TEST_CASE("clamp with tensor bounds: PyTorch's values and gradients at the bounds",
          "[ops][elementwise]") {
  const Var x = p64({-2, -1, 0, 1, 2, kNaN});
  const Var lo = p64({-1, -1, -1, -1, -1, -1});
  const Var hi = p64({1, 1, 1, 1, 1, 1});
  const Var y = tg::clamp(x, lo, hi);
  CHECK(same(vals(y), {-1, -1, 0, 1, 1, kNaN}));
  auto g = tg::grad({tg::sum(y)}, {x, lo, hi});
  // x gets dy where lo <= x <= hi (the bounds included); a bound where it is selected.
  CHECK(vals(g[0]) == std::vector<double>{0, 1, 1, 1, 0, 0});
  CHECK(vals(g[1]) == std::vector<double>{1, 0, 0, 0, 0, 0});
  CHECK(vals(g[2]) == std::vector<double>{0, 0, 0, 0, 1, 0});
  // min > max: the result is max, and only max gets the gradient.
  const Var x2 = p64({-3, 0, 3});
  const Var lo2 = p64({1, 1, 1}), hi2 = p64({-1, -1, -1});
  const Var y2 = tg::clamp(x2, lo2, hi2);
  CHECK(vals(y2) == std::vector<double>{-1, -1, -1});
  g = tg::grad({tg::sum(y2)}, {x2, lo2, hi2});
  CHECK(vals(g[0]) == std::vector<double>{0, 0, 0});
  CHECK(vals(g[1]) == std::vector<double>{0, 0, 0});
  CHECK(vals(g[2]) == std::vector<double>{1, 1, 1});
  // One bound only; a NaN bound gives NaN.
  const Var x3 = p64({-2, 0, 2});
  const Var b3 = p64({0, 0, kNaN});
  CHECK(same(vals(tg::clamp(x3, b3, Var())), {0, 0, kNaN}));
  CHECK(same(vals(tg::clamp(x3, Var(), b3)), {-2, 0, kNaN}));
  g = tg::grad({tg::sum(tg::clamp(x3, b3, Var()))}, {x3, b3});
  CHECK(vals(g[0]) == std::vector<double>{0, 1, 0});
  CHECK(vals(g[1]) == std::vector<double>{1, 0, 0});
  g = tg::grad({tg::sum(tg::clamp(x3, Var(), b3))}, {x3, b3});
  CHECK(vals(g[0]) == std::vector<double>{1, 1, 0});
  CHECK(vals(g[1]) == std::vector<double>{0, 0, 0});
  // Broadcasting: the result has the shape of all three.
  const Var xb = tg::param(tg::tensor({-2, 0.5, 2}, {3}, tg::f64));
  const Var lob = tg::param(tg::tensor({-1, 1}, {2, 1}, tg::f64));
  const Var yb = tg::clamp(xb, lob, Var());
  CHECK(yb.shape() == Shape{2, 3});
  CHECK(vals(yb) == std::vector<double>{-1, 0.5, 2, 1, 1, 2});
  g = tg::grad({tg::sum(yb)}, {xb, lob});
  CHECK(vals(g[0]) == std::vector<double>{0, 1, 2});
  CHECK(vals(g[1]) == std::vector<double>{1, 2});
  // Errors name clamp; integers clamp too.
  CHECK_THROWS_AS(tg::clamp(x3, Var(), Var()), tg::Error);
  CHECK_THROWS_WITH(tg::clamp(x3, Var(), Var()), Catch::StartsWith("clamp: "));
  const Var i = tg::constant(Tensor(std::vector<int64_t>{-5, 2, 9}, {3}));
  const Var ilo = tg::constant(Tensor(std::vector<int64_t>{0}, {1}));
  CHECK(vals(tg::clamp(i, ilo, Var())) == std::vector<double>{0, 2, 9});
  CHECK_THROWS_WITH(tg::clamp(x3, ilo, Var()),
                    Catch::StartsWith("clamp: ") && Catch::Contains("i64"));
  CHECK_THROWS_AS(tg::clamp(x3, p64({1, 2}), Var()), tg::ShapeError);
}

TEST_CASE("hardtanh and elu at their kinks, as PyTorch", "[ops][elementwise]") {
  const Var x = p64({-2, -1, -0.5, 0, 1, 3, kNaN});
  const Var y = tg::hardtanh(x);
  CHECK(same(vals(y), {-1, -1, -0.5, 0, 1, 1, kNaN}));
  // dy strictly inside (-1, 1), 0 at the ends; a NaN passes dy on.
  CHECK(same(grad_sum(y, x), {0, 0, 1, 1, 0, 0, 1}));
  const Var h = tg::hardtanh(x, -0.5, 2.0);
  CHECK(same(vals(h), {-0.5, -0.5, -0.5, 0, 1, 2, kNaN}));
  CHECK(same(grad_sum(h, x), {0, 0, 0, 1, 1, 0, 1}));
  CHECK_THROWS_WITH(tg::hardtanh(x, 1.0, -1.0), Catch::StartsWith("hardtanh: "));
  // elu: alpha (exp(x) - 1) for x <= 0; the gradient at 0 is alpha, at NaN dy.
  const Var e = tg::elu(x, 0.5);
  CHECK(vals(e)[0] == Approx(0.5 * std::expm1(-2.0)));
  CHECK(vals(e)[3] == 0.0);
  CHECK(vals(e)[5] == 3.0);
  CHECK(std::isnan(vals(e)[6]));
  const auto ge = grad_sum(e, x);
  CHECK(ge[0] == Approx(0.5 * std::exp(-2.0)));
  CHECK(ge[3] == 0.5);
  CHECK(ge[5] == 1.0);
  CHECK(ge[6] == 1.0);
  // A large x: the x <= 0 branch's exp is never evaluated there, so no Inf or NaN in the
  // second derivative.
  const Var big = p64({800, -1});
  const Var gb = tg::grad({tg::sum(tg::elu(big))}, {big}, {}, {.create_graph = true})[0];
  const auto gg = vals(tg::grad({tg::sum(gb)}, {big})[0]);
  CHECK(gg[0] == 0.0);
  CHECK(gg[1] == Approx(std::exp(-1.0)));
}

TEST_CASE("gelu in both modes, silu, mish, softsign: values and gradients", "[ops][elementwise]") {
  const Var x = p64({-3, -1, 0, 1, 2.5});
  // (F.gelu's values in float64, torch 1.13)
  const std::vector<double> exact{-0.00404969409489031, -0.15865525393145702, 0, 0.841344746068543,
                                  2.4844758366855597};
  tgtest::check_close(vals(tg::gelu(x)), exact, 1e-15);
  tgtest::check_close(vals(tg::gelu(x, "none")), exact, 1e-15);
  const std::vector<double> tanh_mode{-0.0036373920817729943, -0.15880800939172324, 0,
                                      0.8411919906082768, 2.484915733910001};
  tgtest::check_close(vals(tg::gelu(x, "tanh")), tanh_mode, 1e-15);
  // Both modes have slope 1/2 at 0.
  CHECK(grad_sum(tg::gelu(x), x)[2] == Approx(0.5));
  CHECK(grad_sum(tg::gelu(x, "tanh"), x)[2] == Approx(0.5));
  CHECK_THROWS_AS(tg::gelu(x, "fast"), tg::Error);
  CHECK_THROWS_WITH(tg::gelu(x, "fast"), Catch::StartsWith("gelu: ") && Catch::Contains("'fast'"));
  // silu(x) = x sigmoid(x), mish(x) = x tanh(softplus(x)), softsign(x) = x / (1 + |x|).
  const std::vector<double> xs{-3, -1, 0, 1, 2.5};
  const auto si = vals(tg::silu(x)), mi = vals(tg::mish(x)), ss = vals(tg::softsign(x));
  for (size_t i = 0; i < xs.size(); ++i) {
    const double v = xs[i];
    CHECK(si[i] == Approx(v / (1 + std::exp(-v))).epsilon(1e-14));
    CHECK(mi[i] == Approx(v * std::tanh(std::log1p(std::exp(v)))).epsilon(1e-14));
    CHECK(ss[i] == Approx(v / (1 + std::abs(v))).epsilon(1e-15));
  }
  // softsign's slope at 0 is 1; mish's large inputs stay finite.
  CHECK(grad_sum(tg::softsign(x), x)[2] == 1.0);
  const auto mb = vals(tg::mish(p64({1000, -1000})));
  CHECK(mb[0] == 1000.0);
  CHECK(std::abs(mb[1]) < 1e-300);
}

TEST_CASE("round halves to even, sign, floor, ceil, round have a zero gradient",
          "[ops][elementwise]") {
  const std::vector<double> halves{0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999999999999994, 3.7};
  const std::vector<double> even{0, 2, 2, -0.0, -2, -2, 0, 4};
  for (const tg::Dtype dt : {tg::f64, tg::f32}) {
    INFO(tg::dtype_name(dt));
    const Var h = tg::param(tg::tensor(halves, {8}, dt));
    const Var r = tg::round(h);
    CHECK(vals(r) == even);  // (0.49999999999999994 is 0.5f in f32: to even, 0 too)
    CHECK(grad_sum(r, h) == std::vector<double>(8, 0.0));
  }
  const Var x = p64({-1.5, -0.0, 0.0, 0.25, 2, kNaN, kInf});
  CHECK(same(vals(tg::sign(x)), {-1, 0, 0, 1, 1, kNaN, 1}));  // NaN stays NaN (numpy)
  CHECK(same(vals(tg::floor(x)), {-2, -0.0, 0, 0, 2, kNaN, kInf}));
  CHECK(same(vals(tg::ceil(x)), {-1, -0.0, 0, 1, 2, kNaN, kInf}));
  // The zero gradient reaches the input (tg::grad finds it), and a NaN gradient stays NaN.
  for (auto f : {tg::sign, tg::floor, tg::ceil, tg::round}) {
    CHECK(grad_sum(f(x), x) == std::vector<double>(7, 0.0));
    const Var y = f(x);
    const auto g = tg::grad({y}, {x}, {tg::constant(tg::full(y.shape(), kNaN, tg::f64))})[0];
    CHECK(std::isnan(vals(g)[0]));
  }
  // Integers: floor, ceil and round are the identity and sign is -1, 0 or 1; bools only sign.
  const Var i = tg::constant(Tensor(std::vector<int64_t>{-7, 0, 4}, {3}));
  CHECK(tg::floor(i).dtype() == tg::i64);
  CHECK(vals(tg::floor(i)) == std::vector<double>{-7, 0, 4});
  CHECK(vals(tg::ceil(i)) == std::vector<double>{-7, 0, 4});
  CHECK(vals(tg::round(i)) == std::vector<double>{-7, 0, 4});
  CHECK(vals(tg::sign(i)) == std::vector<double>{-1, 0, 1});
  const Var bl = tg::constant(tg::tensor({1, 0}, {2}, tg::boolean));
  CHECK(tg::sign(bl).dtype() == tg::boolean);
  CHECK(vals(tg::sign(bl)) == std::vector<double>{1, 0});
  CHECK_THROWS_AS(tg::floor(bl), tg::DtypeError);
  CHECK_THROWS_WITH(tg::round(bl), Catch::StartsWith("round: ") && Catch::Contains("bool"));
}

TEST_CASE("elementwise ops: NaN in gives NaN out, and special values as PyTorch",
          "[ops][elementwise]") {
  for (const auto& [name, f] : unary_ops()) {
    for (const tg::Dtype dt : {tg::f64, tg::f32}) {
      INFO(name << " " << tg::dtype_name(dt));
      const Var x = tg::param(tg::tensor({kNaN, 0.5, kNaN}, {3}, dt));
      const Var y = f(x);
      CHECK(y.dtype() == dt);
      CHECK(std::isnan(vals(y)[0]));
      CHECK(std::isnan(vals(y)[2]));
      CHECK_FALSE(std::isnan(vals(y)[1]));
    }
  }
  // Special values where the functions have limits (values as torch 1.13 gives them).
  const Var s = f64({0.0, -0.0, kInf, -kInf}, {4});
  CHECK(same(vals(tg::rsqrt(s)), {kInf, -kInf, 0, kNaN}));
  CHECK(same(vals(tg::reciprocal(s)), {kInf, -kInf, 0, -0.0}));
  CHECK(same(vals(tg::erf(s)), {0, -0.0, 1, -1}));
  CHECK(same(vals(tg::expm1(s)), {0, -0.0, kInf, -1}));
  CHECK(same(vals(tg::log1p(s)), {0, -0.0, kInf, kNaN}));
  CHECK(same(vals(tg::sin(s)), {0, -0.0, kNaN, kNaN}));
  CHECK(same(vals(tg::log1p(f64({-1, -2}, {2}))), {-kInf, kNaN}));
  CHECK(same(vals(tg::gelu(s)), {0, -0.0, kInf, kNaN}));
  CHECK(same(vals(tg::hardtanh(s)), {0, -0.0, 1, -1}));
  // Floating-only ops name themselves and the dtype.
  const Var i = tg::constant(Tensor(std::vector<int64_t>{1, 2}, {2}));
  CHECK_THROWS_WITH(tg::log1p(i), Catch::StartsWith("log1p: ") && Catch::Contains("i64"));
  CHECK_THROWS_WITH(tg::gelu(i), Catch::StartsWith("gelu: ") && Catch::Contains("i64"));
  CHECK_THROWS_WITH(tg::hardtanh(i), Catch::StartsWith("hardtanh: ") && Catch::Contains("i64"));
}

TEST_CASE("the xsimd kernels agree with std:: to a few units in the last place",
          "[ops][elementwise]") {
  // sin, cos, erf, log1p and expm1 run through xsimd (ops/simd_map.hpp); the C library's
  // are within about 1 ulp of the true value, so a few ulps bound the difference.
  struct Fn {
    const char* name;
    std::function<Var(const Var&)> op;
    double (*ref64)(double);
    float (*ref32)(float);
    double lo, hi;
    int64_t max_ulps;
  };
  const std::vector<Fn> fns{
      {"sin", [](const Var& x) { return tg::sin(x); }, std::sin, std::sin, -100, 100, 2},
      {"cos", [](const Var& x) { return tg::cos(x); }, std::cos, std::cos, -100, 100, 2},
      {"erf", [](const Var& x) { return tg::erf(x); }, std::erf, std::erf, -6, 6, 2},
      {"log1p", [](const Var& x) { return tg::log1p(x); }, std::log1p, std::log1p, -0.999, 1e6, 2},
      {"expm1", [](const Var& x) { return tg::expm1(x); }, std::expm1, std::expm1, -50, 80, 2},
  };
  const int n = 20001;
  for (const Fn& f : fns) {
    std::vector<double> xs(n);
    for (int i = 0; i < n; ++i) {
      // a grid over [lo, hi] denser near 0 (tiny arguments are where log1p, expm1 matter)
      const double u = -1.0 + 2.0 * i / (n - 1);
      const double t = u * u * u;
      xs[i] = t >= 0 ? t * f.hi : -t * f.lo;
    }
    int64_t worst64 = 0, worst32 = 0;
    const auto y64 = vals(f.op(f64(xs, {n})));
    const auto y32 = vals(f.op(tg::constant(tg::tensor(xs, {n}, tg::f32))));
    for (int i = 0; i < n; ++i) {
      worst64 = std::max(worst64, ulps(y64[i], f.ref64(xs[i])));
      const float x32 = static_cast<float>(xs[i]);
      worst32 = std::max(worst32, ulps(static_cast<float>(y32[i]), f.ref32(x32)));
    }
    INFO(f.name << ": worst f64 " << worst64 << " ulps, f32 " << worst32 << " ulps");
    CHECK(worst64 <= f.max_ulps);
    CHECK(worst32 <= f.max_ulps);
  }
}

TEST_CASE("elementwise ops and activations match PyTorch", "[ops][elementwise][oracle]") {
  TGTEST_REQUIRE_TORCH();
  // Each op at f64 and f32; gradients through sum(y * w) with a fixed weight pattern w, and
  // for the unary ops the second derivative through sum(grad * w2).
  for (const auto& [single, dt, tdt, tol] : tgtest::oracle_dtypes()) {
    std::string script = std::string(tgtest::kPythonPrelude) + "D = " + dt + R"PY(
F = torch.nn.functional
)PY" + tgtest::kPythonRun +
                         R"PY(
def Ppos(shape, k):
    return (pattern(shape, k, 1.0, D).abs() + 0.5).detach().requires_grad_()
def Phalf(shape, k):
    return (pattern(shape, k, 2.0, D) * 2).round().div(2).detach().requires_grad_()
def run2(name, f, x):
    w = pattern(tuple(x.shape), 9.0, 1.0, D)
    w2 = pattern(tuple(x.shape), 11.0, 1.0, D)
    g, = torch.autograd.grad((f(x) * w).sum(), x, create_graph=True)
    gg = torch.autograd.grad((g * w2).sum(), x, allow_unused=True)[0] if g.requires_grad else None
    emit(name, torch.zeros_like(x) if gg is None else gg)
a = P((3, 4), 0.0, 2.0); b = P((4,), 1.0, 2.0); c = P((3, 1), 2.0, 2.0); r = P((1, 4), 3.0, 2.0)
e = P((0, 4), 5.0); one = P((1, 1), 6.0); pa = Ppos((3, 4), 7.0); big = P((2, 5), 8.0, 100.0)
q = Phalf((3, 4), 0.0); qb = Phalf((4,), 1.0)
a2 = P((3, 4), 0.0, 2.0)
run("maximum", torch.maximum(a, b), a, b)
run("maximum_ties", torch.maximum(q, qb), q, qb)
run("maximum_same", torch.maximum(a, a2), a, a2)
run("minimum", torch.minimum(c, r), c, r)
run("minimum_ties", torch.minimum(qb, q), qb, q)
run("maximum_empty", torch.maximum(e, b), e, b)
run("minimum_size1", torch.minimum(one, c), one, c)
run("clamp", torch.clamp(a, c * 0.5, b * 0.5 + 0.5), a, c, b)
run("clamp_cross", torch.clamp(a, c, b), a, c, b)
run("clamp_min", torch.clamp(a, min=b), a, b)
run("clamp_max", torch.clamp(a, max=c), a, c)
run("clamp_ties", torch.clamp(q, min=qb), q, qb)
run("clamp_empty", torch.clamp(e, b, None), e, b)
run("clamp_size1", torch.clamp(c, None, one), c, one)
unary = {
    "sin": torch.sin, "cos": torch.cos, "erf": torch.erf, "square": torch.square,
    "expm1": torch.expm1, "reciprocal": torch.reciprocal,
    "sign": torch.sign, "floor": torch.floor, "ceil": torch.ceil, "round": torch.round,
    "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "silu": F.silu,
    "mish": F.mish, "elu": lambda x: F.elu(x, 0.7), "softsign": F.softsign,
    "hardtanh": lambda x: F.hardtanh(x, -0.5, 0.8),
}
positive = {"rsqrt": torch.rsqrt, "log1p": torch.log1p}
for name, f in unary.items():
    run(name, f(a), a)
    run(name + "_empty", f(e), e)
    run(name + "_size1", f(one), one)
    run2(name + "_gg", f, a)
for name, f in positive.items():
    run(name, f(pa), pa)
    run2(name + "_gg", f, pa)
run("sin_big", torch.sin(big), big)
run("cos_big", torch.cos(big), big)
run("round_halves", torch.round(q * 1.5), q)
run("log1p_small", torch.log1p(a * 1e-9), a)
run("expm1_small", torch.expm1(a * 1e-9), a)
)PY";
    const auto torch = tgtest::run_python(script);
    auto P = [&](const Shape& s, double k, double scale = 1.0) {
      return tg::param(pattern(s, k, scale).to(tdt));
    };
    auto Ppos = [&](const Shape& s, double k) {
      std::vector<double> v = pattern(s, k).to(tdt).to_vector();
      for (double& x : v) x = std::abs(x) + 0.5;
      return tg::param(tg::tensor(v, s, tdt));
    };
    auto Phalf = [&](const Shape& s, double k) {
      std::vector<double> v = pattern(s, k, 2.0).to(tdt).to_vector();
      for (double& x : v) x = std::nearbyint(x * 2) / 2;
      return tg::param(tg::tensor(v, s, tdt));
    };
    auto run = [&](const std::string& name, const Var& y, const std::vector<Var>& xs) {
      tgtest::check_run(torch, name, y, xs, tol);
    };
    auto run2 = [&](const std::string& name, const Unary& f, const Var& x) {
      INFO(name << (single ? " f32" : " f64"));
      REQUIRE(torch.count(name) == 1);
      const Var w = tg::constant(pattern(x.shape(), 9.0).to(tdt));
      const Var w2 = tg::constant(pattern(x.shape(), 11.0).to(tdt));
      const Var g = tg::grad({tg::sum(f(x) * w)}, {x}, {}, {.create_graph = true})[0];
      Var gg;
      if (g.requires_grad()) gg = tg::grad({tg::sum(g * w2)}, {x}, {}, {.allow_unused = true})[0];
      tgtest::check_close(gg.defined() ? vals(gg) : std::vector<double>(torch.at(name).size()),
                          torch.at(name), tol);
    };
    Var a = P({3, 4}, 0.0, 2.0), b = P({4}, 1.0, 2.0), c = P({3, 1}, 2.0, 2.0),
        r = P({1, 4}, 3.0, 2.0);
    Var e = P({0, 4}, 5.0), one = P({1, 1}, 6.0), pa = Ppos({3, 4}, 7.0),
        big = P({2, 5}, 8.0, 100.0);
    Var q = Phalf({3, 4}, 0.0), qb = Phalf({4}, 1.0);
    Var a2 = P({3, 4}, 0.0, 2.0);
    run("maximum", tg::maximum(a, b), {a, b});
    run("maximum_ties", tg::maximum(q, qb), {q, qb});
    run("maximum_same", tg::maximum(a, a2), {a, a2});
    run("minimum", tg::minimum(c, r), {c, r});
    run("minimum_ties", tg::minimum(qb, q), {qb, q});
    run("maximum_empty", tg::maximum(e, b), {e, b});
    run("minimum_size1", tg::minimum(one, c), {one, c});
    run("clamp", tg::clamp(a, c * 0.5, b * 0.5 + 0.5), {a, c, b});
    run("clamp_cross", tg::clamp(a, c, b), {a, c, b});
    run("clamp_min", tg::clamp(a, b, Var()), {a, b});
    run("clamp_max", tg::clamp(a, Var(), c), {a, c});
    run("clamp_ties", tg::clamp(q, qb, Var()), {q, qb});
    run("clamp_empty", tg::clamp(e, b, Var()), {e, b});
    run("clamp_size1", tg::clamp(c, Var(), one), {c, one});
    for (const auto& [name, f] : unary_ops()) {
      const bool positive = name == "rsqrt" || name == "log1p";
      if (positive) {
        run(name, f(pa), {pa});
        run2(name + "_gg", f, pa);
        continue;
      }
      run(name, f(a), {a});
      run(name + "_empty", f(e), {e});
      run(name + "_size1", f(one), {one});
      run2(name + "_gg", f, a);
    }
    run("sin_big", tg::sin(big), {big});
    run("cos_big", tg::cos(big), {big});
    run("round_halves", tg::round(q * 1.5), {q});
    run("log1p_small", tg::log1p(a * 1e-9), {a});
    run("expm1_small", tg::expm1(a * 1e-9), {a});
  }
}
