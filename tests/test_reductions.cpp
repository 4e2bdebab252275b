// Sorting, selection and the reductions of ops/reduce.hpp beyond sum/mean/max: PyTorch's
// edge rules (stable ties, NaN placement, inf in logsumexp, correction >= N, zeros in
// prod, subgradients at 0), typed errors, and PyTorch as an oracle for values, indices
// and gradients in f64 and f32 (skipped when torch is not installed).

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <string>
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
Var leaf(const std::vector<double>& v, const Shape& s) {
  return tg::param(tg::tensor(v, s, tg::f64));
}
Var i64(const std::vector<int64_t>& v, const Shape& s) { return tg::constant(Tensor(v, s)); }
std::vector<double> vals(const Var& v) { return v.value().to_vector(); }

// Element by element within tol; a NaN is only close to a NaN, an infinity to itself.
}  // namespace

TEST_CASE("sort, argsort, topk: stable ties, NaN placement, gradients to the indices",
          "[ops][reduce]") {
  Var x = leaf({2, 1, 2, kNaN, 1, 0}, {6});
  auto [v, i] = tg::sort(x);
  tgtest::check_close(vals(v), {0, 1, 1, 2, 2, kNaN}, 0);
  CHECK(i.dtype() == tg::i64);
  CHECK(vals(i) == std::vector<double>{5, 1, 4, 0, 2, 3});  // equal values keep their order
  auto [vd, id] = tg::sort(x, 0, true);
  tgtest::check_close(vals(vd), {kNaN, 2, 2, 1, 1, 0}, 0);
  CHECK(vals(id) == std::vector<double>{3, 0, 2, 1, 4, 5});
  CHECK(vals(tg::argsort(x, -1, true)) == vals(id));
  tg::sum(v * f64({1, 2, 3, 4, 5, 6}, {6})).backward();
  tgtest::check_close(vals(x.grad()), {4, 2, 5, 6, 3, 1},
                      0);  // dy lands where each value came from
  x.zero_grad();
  auto [v2, i2] = tg::sort(x);
  i2.value().fill_(0);  // the caller's indices are its own: the backward kept a copy
  tg::sum(v2 * f64({1, 2, 3, 4, 5, 6}, {6})).backward();
  tgtest::check_close(vals(x.grad()), {4, 2, 5, 6, 3, 1}, 0);
  x.zero_grad();
  auto [tv, ti] = tg::topk(x, 2);
  tgtest::check_close(vals(tv), {kNaN, 2}, 0);  // NaN is the largest
  CHECK(vals(ti) == std::vector<double>{3, 0});
  auto [sv, si] = tg::topk(x, 3, 0, false);
  CHECK(vals(sv) == std::vector<double>{0, 1, 1});
  CHECK(vals(si) == std::vector<double>{5, 1, 4});
  tg::sum(sv).backward();
  tgtest::check_close(vals(x.grad()), {0, 1, 0, 0, 1, 1}, 0);
  CHECK(tg::topk(x, 0).values.shape() == Shape{0});
  // Rank 0, integers and bools (unrecorded, their own dtype).
  const Var s = tg::param(tg::scalar_tensor(3.0, tg::f64));
  CHECK(tg::sort(s).values.shape() == Shape{});
  CHECK(tg::topk(s, 1, 0).indices.item() == 0);
  auto [iv, ii] = tg::sort(i64({3, -1, 3, 0}, {4}), 0, true);
  CHECK(iv.dtype() == tg::i64);
  CHECK(vals(iv) == std::vector<double>{3, 3, 0, -1});
  CHECK(vals(ii) == std::vector<double>{0, 2, 3, 1});
  const Var bv = tg::sort(tg::constant(tg::tensor({1, 0, 1}, {3}, tg::boolean))).values;
  CHECK(bv.dtype() == tg::boolean);
  CHECK(vals(bv) == std::vector<double>{0, 1, 1});
  // Errors name the op and the values.
  CHECK_THROWS_AS(tg::sort(x, 1), tg::IndexError);
  CHECK_THROWS_AS(tg::argsort(x, -2), tg::IndexError);
  CHECK_THROWS_WITH(tg::topk(x, 7), Catch::StartsWith("topk: ") && Catch::Contains("k = 7") &&
                                        Catch::Contains("size 6"));
  CHECK_THROWS_AS(tg::topk(x, -1), tg::IndexError);
}

TEST_CASE("logsumexp, var, std, norm: stability, infinities, subgradients", "[ops][reduce]") {
  // logsumexp: shifted by the max (no overflow), -inf rows -inf, +inf rows +inf.
  tgtest::check_close(
      vals(tg::logsumexp(f64({1000, 1000, -kInf, -kInf, kInf, 1, kInf, -kInf}, {4, 2}), {1})),
      {1000 + std::log(2.0), -kInf, kInf, kInf}, 1e-12);
  tgtest::check_close(vals(tg::logsumexp(tg::constant(tg::zeros({2, 0}, tg::f64)), {1})),
                      {-kInf, -kInf}, 0);
  CHECK(tg::logsumexp(f64({1, 2, 3, 4}, {2, 2}), {}).shape() == Shape{});  // {}: every dim
  CHECK(tg::logsumexp(f64({1, 2, 3, 4}, {2, 2}), {0}, true).shape() == Shape{1, 2});
  // var and std: two-pass (a large offset loses nothing), correction >= N gives inf/NaN.
  CHECK(tg::var(f64({1e9 + 1, 1e9 + 2, 1e9 + 3}, {3})).item() == 1.0);
  CHECK(tg::var(f64({1, 2}, {2}), 2).item() == kInf);
  CHECK(std::isnan(tg::var(f64({1, 1}, {2}), 3).item()));
  CHECK(tg::var(f64({1, 2, 4, 8}, {2, 2}), {1}, 0).shape() == Shape{2});
  CHECK(vals(tg::var(f64({1, 2, 4, 8}, {2, 2}), {1}, 0)) == std::vector<double>{0.25, 4});
  Var c = leaf({1, 1, 1, 1, 2, 4}, {2, 3});
  tg::sum(tg::std(c, {1})).backward();  // a constant row: gradient 0, not NaN
  const auto gc = vals(c.grad());
  CHECK(gc[0] == 0);
  CHECK(gc[1] == 0);
  CHECK(gc[2] == 0);
  CHECK(std::isfinite(gc[3]));
  // norm: p = 2 at 0 has gradient 0; p = inf ties share the gradient.
  Var z = leaf({0, 0, 0, 3, -4, 0}, {2, 3});
  tg::sum(tg::norm(z, 2, {1})).backward();
  tgtest::check_close(vals(z.grad()), {0, 0, 0, 0.6, -0.8, 0}, 1e-15);
  Var t = leaf({1, -3, 3, 2}, {4});
  const Var ninf = tg::norm(t, kInf);
  CHECK(ninf.item() == 3);
  ninf.backward();
  CHECK(vals(t.grad()) == std::vector<double>{0, -0.5, 0.5, 0});
  CHECK(tg::norm(t, 1).item() == 9);
  CHECK(tg::norm(f64({3, 4}, {2})).item() == 5);
  // Errors: floating only, bad dims, bad p.
  CHECK_THROWS_WITH(tg::var(i64({1, 2}, {2})),
                    Catch::StartsWith("var: ") && Catch::Contains("i64"));
  CHECK_THROWS_WITH(tg::std(i64({1, 2}, {2})), Catch::StartsWith("std: "));
  CHECK_THROWS_WITH(tg::logsumexp(i64({1, 2}, {2}), {0}), Catch::StartsWith("logsumexp: "));
  CHECK_THROWS_WITH(tg::norm(i64({1, 2}, {2})), Catch::StartsWith("norm: "));
  CHECK_THROWS_AS(tg::logsumexp(t, {1}), tg::IndexError);
  CHECK_THROWS_AS(tg::var(c, {0, -2}), tg::IndexError);  // repeated
  CHECK_THROWS_AS(tg::norm(c, 2, {2}), tg::IndexError);
  // Any p, as PyTorch (p = 3, 0.5, -inf, 0 threw); p = NaN is no order.
  CHECK(tg::norm(f64({3, 4}, {2}), 3).item() == Approx(std::cbrt(91.0)).epsilon(1e-15));
  CHECK(tg::norm(f64({1, 4}, {2}), 0.5).item() == Approx(9.0).epsilon(1e-15));
  CHECK(tg::norm(t, -kInf).item() == 1);
  CHECK(tg::norm(f64({0, 2, 0, -1}, {4}), 0).item() == 2);
  CHECK(std::isnan(tg::norm(f64({0, std::nan("")}, {2}), 0).item()));  // NaN in, NaN out
  CHECK_THROWS_WITH(tg::norm(t, std::nan("")), Catch::StartsWith("norm: "));
  CHECK_THROWS_AS(tg::norm(tg::constant(tg::zeros({0}, tg::f64)), kInf), tg::ShapeError);
}

TEST_CASE("prod and cumsum: zeros, integers, double backward", "[ops][reduce]") {
  Var x = leaf({2, 0, 3, 4}, {4});
  const Var p = tg::prod(x);
  CHECK(p.item() == 0);
  const Var g = tg::grad({p}, {x}, {}, {.create_graph = true})[0];
  CHECK(vals(g) == std::vector<double>{0, 24, 0, 0});  // one zero: the product of the others
  // The second derivative at a zero: d/dx_j of g_1 = prod of x without entries 1 and j.
  const Var h = tg::grad({tg::sum(g * f64({0, 1, 0, 0}, {4}))}, {x})[0];
  CHECK(vals(h) == std::vector<double>{12, 0, 8, 6});
  Var y = leaf({0, 5, 0, 2, 3, 4}, {2, 3});
  tg::sum(tg::prod(y, 1)).backward();
  CHECK(vals(y.grad()) == std::vector<double>{0, 0, 0, 12, 8, 6});  // two zeros: all 0
  CHECK(tg::prod(tg::constant(tg::zeros({0}, tg::f64))).item() == 1);
  CHECK(tg::prod(y, 0, true).shape() == Shape{1, 3});
  const Var pi = tg::prod(i64({3, -2, 5}, {3}));
  CHECK(pi.dtype() == tg::i64);
  CHECK(pi.item() == -30);
  const Var ci = tg::cumsum(i64({3, -2, 5, 1}, {2, 2}), 0);
  CHECK(ci.dtype() == tg::i64);
  CHECK(vals(ci) == std::vector<double>{3, -2, 8, -1});
  Var w = leaf({1, 2, 3}, {3});
  tg::sum(tg::cumsum(w, 0) * f64({1, 10, 100}, {3})).backward();
  CHECK(vals(w.grad()) == std::vector<double>{111, 110, 100});
  CHECK(tg::cumsum(tg::param(tg::scalar_tensor(2.0, tg::f64)), -1).shape() == Shape{});
  const Var bools = tg::constant(tg::tensor({1, 0}, {2}, tg::boolean));
  CHECK_THROWS_WITH(tg::cumsum(bools, 0), Catch::StartsWith("cumsum: ") && Catch::Contains("bool"));
  CHECK_THROWS_WITH(tg::prod(bools), Catch::StartsWith("prod: ") && Catch::Contains("bool"));
  CHECK_THROWS_AS(tg::cumsum(w, 1), tg::IndexError);
  CHECK_THROWS_AS(tg::prod(y, -3), tg::IndexError);
}

TEST_CASE("sum of i64 keeps i64 and wraps on overflow, as PyTorch, and mean refuses it",
          "[ops][reduce][dtype]") {
  const Var x = i64({3, -2, 5, 1, 7, 0}, {2, 3});
  const Var s = tg::sum(x);
  CHECK(s.dtype() == tg::i64);
  CHECK_FALSE(s.requires_grad());
  CHECK(s.item() == 14);
  CHECK(vals(tg::sum(x, {1})) == std::vector<double>{6, 8});
  CHECK(vals(tg::sum(x, {0}, true)) == std::vector<double>{4, 5, 5});
  CHECK(tg::sum(x, {0, 1}).item() == 14);
  // Exact beyond 2^53, and wrapping past INT64_MAX.
  const Var big = tg::constant(Tensor(std::vector<int64_t>{INT64_MAX, 1, INT64_MAX, 2}, {2, 2}));
  CHECK(tg::sum(big).value().data<int64_t>()[0] == 1);  // 2 * (2^63 - 1) + 3 wraps to 1
  const Var cols = tg::sum(big, {0});
  CHECK(cols.value().data<int64_t>()[0] == -2);
  CHECK(cols.value().data<int64_t>()[1] == 3);
  const Var rows = tg::sum(big, {1});
  CHECK(rows.value().data<int64_t>()[0] == INT64_MIN);
  CHECK(tg::sum(i64({}, {0})).item() == 0);
  CHECK_THROWS_WITH(tg::mean(x), Catch::StartsWith("mean: ") && Catch::Contains("i64"));
  CHECK_THROWS_WITH(tg::mean(x, {0}), Catch::StartsWith("mean: ") && Catch::Contains("i64"));
  CHECK_THROWS_WITH(tg::sum(tg::constant(tg::zeros({2}, tg::boolean))),
                    Catch::StartsWith("sum: ") && Catch::Contains("bool"));
}

TEST_CASE("sort, topk, logsumexp, var, std, norm, prod, cumsum match PyTorch",
          "[ops][reduce][oracle]") {
  TGTEST_REQUIRE_TORCH();
  // Each op at f64 and f32; gradients through sum(y * w) with a fixed weight pattern w.
  for (const auto& [single, dt, tdt, tol] : tgtest::oracle_dtypes()) {
    std::string script = std::string(tgtest::kPythonPrelude) + "D = " + dt + R"PY(
inf, nan = float("inf"), float("nan")
)PY" + tgtest::kPythonRun +
                         R"PY(
def L(values, shape):
    return torch.tensor(values, dtype=torch.float64).reshape(shape).to(D).requires_grad_()
def runi(name, r, *xs):
    run(name, r.values, *xs)
    emit(name + "_i", r.indices)
a = P((3, 4), 0.0); b = P((2, 3, 4), 1.0); s1 = P((1, 4), 2.0); e = P((0, 4), 5.0)
tv = ((pattern((3, 4), 0.0) * 2).round() / 2).tolist()
t = L(tv, (3, 4))
nv = pattern((3, 4), 0.0).reshape(-1).tolist()
for k in (1, 6, 8): nv[k] = nan
nn = L(nv, (3, 4))
zv = pattern((3, 4), 4.0).reshape(-1).tolist()
for k in (5, 8, 10): zv[k] = 0.0
z = L(zv, (3, 4))
z1 = L([0.5, -2.0, 0.0, 1.5, 3.0, -0.75], (2, 3))
z2 = L([0.5, 0.0, 0.0, 1.5, 3.0, -0.75], (2, 3))
runi("sort", torch.sort(a), a)
runi("sort_d0_desc", torch.sort(b, 0, descending=True), b)
runi("sort_ties", torch.sort(t, dim=1, stable=True), t)
runi("sort_ties_desc", torch.sort(t, dim=0, descending=True, stable=True), t)
runi("sort_nan", torch.sort(nn, dim=1, stable=True), nn)
runi("sort_nan_desc", torch.sort(nn, dim=-2, descending=True, stable=True), nn)
runi("sort_size1", torch.sort(s1, 0), s1)
runi("sort_empty", torch.sort(e, 0), e)
emit("argsort_ties", torch.argsort(t, dim=0, descending=True, stable=True))
emit("argsort_nan", torch.argsort(nn, dim=1, stable=True))
runi("topk", torch.topk(a, 2), a)
runi("topk_small_d1", torch.topk(b, 3, 1, largest=False), b)
runi("topk_nan", torch.topk(nn, 2, 1), nn)
runi("topk_nan_small", torch.topk(nn, 3, 1, largest=False), nn)
runi("topk_size1", torch.topk(s1, 1, 0), s1)
runi("topk_k0", torch.topk(a, 0, 1), a)
run("lse", torch.logsumexp(a, 1), a)
run("lse_02_keep", torch.logsumexp(b, (0, -1), keepdim=True), b)
run("lse_size1", torch.logsumexp(s1, 0), s1)
big = P((3, 4), 0.0, 1000.0)
run("lse_big", torch.logsumexp(big, 1), big)
run("lse_empty", torch.logsumexp(e, 0), e)
emit("lse_inf", torch.logsumexp(torch.tensor([[-inf, -inf, -inf], [inf, 1, 2], [inf, -inf, 0], [nan, 1, 2]], dtype=D), 1))
run("var", torch.var(a, 1), a)
run("var_02_keep", torch.var(b, (0, 2), keepdim=True), b)
run("var_all_c0", torch.var(b, dim=None, correction=0), b)
run("var_size1_c0", torch.var(s1, 0, correction=0), s1)
emit("var_cN", torch.cat([torch.var(s1.detach(), 0), torch.var(a.detach(), 1, correction=5)]))
run("std", torch.std(a, 0), a)
run("std_all", torch.std(b, dim=None), b)
run("std_m1_keep_c0", torch.std(b, -1, correction=0, keepdim=True), b)
cst = L([1, 1, 1, 1, 2, 4], (2, 3))
run("std_const", torch.std(cst, 1), cst)
V = torch.linalg.vector_norm
run("norm2_all", V(b), b)
run("norm2_d1_keep", V(a, 2, 1, keepdim=True), a)
run("norm2_zero_rows", V(z2, 2, 1), z2)
run("norm1_d0", V(a, 1, 0), a)
run("norm1_zeros", V(z, 1, (0, 1)), z)
run("norminf_d1", V(a, inf, 1), a)
run("norminf_ties", V(t, inf, 0), t)
run("norminf_all", V(b, inf), b)
run("norm2_empty", V(e, 2, 0), e)
run("norm3_d1", V(a, 3, 1), a)
run("norm0.5_all", V(b, 0.5), b)
run("norm-1.5_d0_keep", V(a, -1.5, 0, keepdim=True), a)
run("norm-inf_d1", V(a, -inf, 1), a)
run("norm-inf_ties", V(t, -inf, 0), t)
run("norm0_zeros", V(z, 0, 1), z)
run("norm3_zero_rows", V(z2, 3, 1), z2)
run("norm0.5_zeros", V(z, 0.5, 1), z)
run("prod_d1", torch.prod(a, 1), a)
run("prod_m1_keep", torch.prod(b, -1, keepdim=True), b)
sm = P((2, 3), 7.0, 1.5)
run("prod_all", torch.prod(sm), sm)
run("prod_zeros_d1", torch.prod(z, 1), z)
run("prod_zeros_d0_keep", torch.prod(z, 0, keepdim=True), z)
run("prod_one_zero_all", torch.prod(z1), z1)
run("prod_two_zeros_all", torch.prod(z2), z2)
run("prod_empty", torch.prod(e, 0), e)
run("cumsum_d1", torch.cumsum(a, 1), a)
run("cumsum_m2", torch.cumsum(b, -2), b)
run("cumsum_size1", torch.cumsum(s1, 0), s1)
run("cumsum_empty", torch.cumsum(e, 0), e)
xi = torch.tensor([[3, -1, 3, 0], [5, 5, -2, 1]])
r = torch.sort(xi, dim=1, descending=True, stable=True); emit("int_sort", r.values); emit("int_sort_i", r.indices)
r = torch.topk(xi, 2, 0, largest=False); emit("int_topk", r.values); emit("int_topk_i", r.indices)
emit("int_cumsum", torch.cumsum(xi, 1)); emit("int_prod", torch.prod(xi, 0)); emit("int_prod_all", torch.prod(xi).reshape(1))
)PY";
    const auto torch = tgtest::run_python(script);
    auto P = [&](const Shape& s, double k, double scale = 1.0) {
      return tg::param(pattern(s, k, scale).to(tdt));
    };
    auto L = [&](const std::vector<double>& v, const Shape& s) {
      return tg::param(tg::tensor(v, s, tg::f64).to(tdt));
    };
    auto want = [&](const std::string& name) -> const std::vector<double>& {
      INFO(name);
      REQUIRE(torch.count(name) == 1);
      return torch.at(name);
    };
    auto run = [&](const std::string& name, const Var& y, const std::vector<Var>& xs) {
      tgtest::check_run(torch, name, y, xs, tol);
    };
    auto runi = [&](const std::string& name, const tg::ValuesIndices& r,
                    const std::vector<Var>& xs) {
      run(name, r.values, xs);
      INFO(name << " indices");
      CHECK(r.indices.dtype() == tg::i64);
      CHECK(vals(r.indices) == want(name + "_i"));
    };
    auto cmp = [&](const std::string& name, const Var& y) {
      INFO(name << (single ? " f32" : " f64"));
      tgtest::check_close(vals(y), want(name), tol);
    };
    Var a = P({3, 4}, 0.0), b = P({2, 3, 4}, 1.0), s1 = P({1, 4}, 2.0), e = P({0, 4}, 5.0);
    std::vector<double> tv = pattern({3, 4}, 0.0).to_vector();
    for (double& v : tv) v = std::nearbyint(v * 2) / 2;  // as torch.round: half to even
    Var t = L(tv, {3, 4});
    std::vector<double> nv = pattern({3, 4}, 0.0).to_vector();
    for (int k : {1, 6, 8}) nv[k] = kNaN;
    Var nn = L(nv, {3, 4});
    std::vector<double> zv = pattern({3, 4}, 4.0).to_vector();
    for (int k : {5, 8, 10}) zv[k] = 0.0;
    Var z = L(zv, {3, 4});
    Var z1 = L({0.5, -2.0, 0.0, 1.5, 3.0, -0.75}, {2, 3});
    Var z2 = L({0.5, 0.0, 0.0, 1.5, 3.0, -0.75}, {2, 3});
    runi("sort", tg::sort(a), {a});
    runi("sort_d0_desc", tg::sort(b, 0, true), {b});
    runi("sort_ties", tg::sort(t, 1), {t});
    runi("sort_ties_desc", tg::sort(t, 0, true), {t});
    runi("sort_nan", tg::sort(nn, 1), {nn});
    runi("sort_nan_desc", tg::sort(nn, -2, true), {nn});
    runi("sort_size1", tg::sort(s1, 0), {s1});
    runi("sort_empty", tg::sort(e, 0), {e});
    CHECK(vals(tg::argsort(t, 0, true)) == want("argsort_ties"));
    CHECK(vals(tg::argsort(nn, 1)) == want("argsort_nan"));
    runi("topk", tg::topk(a, 2), {a});
    runi("topk_small_d1", tg::topk(b, 3, 1, false), {b});
    runi("topk_nan", tg::topk(nn, 2, 1), {nn});
    runi("topk_nan_small", tg::topk(nn, 3, 1, false), {nn});
    runi("topk_size1", tg::topk(s1, 1, 0), {s1});
    runi("topk_k0", tg::topk(a, 0, 1), {a});
    run("lse", tg::logsumexp(a, {1}), {a});
    run("lse_02_keep", tg::logsumexp(b, {0, -1}, true), {b});
    run("lse_size1", tg::logsumexp(s1, {0}), {s1});
    Var big = P({3, 4}, 0.0, 1000.0);
    run("lse_big", tg::logsumexp(big, {1}), {big});
    run("lse_empty", tg::logsumexp(e, {0}), {e});
    cmp("lse_inf", tg::logsumexp(tg::constant(tg::tensor(
                                     {-kInf, -kInf, -kInf, kInf, 1, 2, kInf, -kInf, 0, kNaN, 1, 2},
                                     {4, 3}, tdt)),
                                 {1}));
    run("var", tg::var(a, {1}), {a});
    run("var_02_keep", tg::var(b, {0, 2}, 1, true), {b});
    run("var_all_c0", tg::var(b, 0), {b});
    run("var_size1_c0", tg::var(s1, {0}, 0), {s1});
    cmp("var_cN", tg::concat({tg::var(s1, {0}), tg::var(a, {1}, 5)}));
    run("std", tg::std(a, {0}), {a});
    run("std_all", tg::std(b), {b});
    run("std_m1_keep_c0", tg::std(b, {-1}, 0, true), {b});
    Var cst = L({1, 1, 1, 1, 2, 4}, {2, 3});
    run("std_const", tg::std(cst, {1}), {cst});
    run("norm2_all", tg::norm(b), {b});
    run("norm2_d1_keep", tg::norm(a, 2, {1}, true), {a});
    run("norm2_zero_rows", tg::norm(z2, 2, {1}), {z2});
    run("norm1_d0", tg::norm(a, 1, {0}), {a});
    run("norm1_zeros", tg::norm(z, 1, {0, 1}), {z});
    run("norminf_d1", tg::norm(a, kInf, {1}), {a});
    run("norminf_ties", tg::norm(t, kInf, {0}), {t});
    run("norminf_all", tg::norm(b, kInf), {b});
    run("norm2_empty", tg::norm(e, 2, {0}), {e});
    run("norm3_d1", tg::norm(a, 3, {1}), {a});
    run("norm0.5_all", tg::norm(b, 0.5), {b});
    run("norm-1.5_d0_keep", tg::norm(a, -1.5, {0}, true), {a});
    run("norm-inf_d1", tg::norm(a, -kInf, {1}), {a});
    run("norm-inf_ties", tg::norm(t, -kInf, {0}), {t});
    run("norm0_zeros", tg::norm(z, 0, {1}), {z});
    run("norm3_zero_rows", tg::norm(z2, 3, {1}), {z2});
    run("norm0.5_zeros", tg::norm(z, 0.5, {1}), {z});
    run("prod_d1", tg::prod(a, 1), {a});
    run("prod_m1_keep", tg::prod(b, -1, true), {b});
    Var sm = P({2, 3}, 7.0, 1.5);
    run("prod_all", tg::prod(sm), {sm});
    run("prod_zeros_d1", tg::prod(z, 1), {z});
    run("prod_zeros_d0_keep", tg::prod(z, 0, true), {z});
    run("prod_one_zero_all", tg::prod(z1), {z1});
    run("prod_two_zeros_all", tg::prod(z2), {z2});
    run("prod_empty", tg::prod(e, 0), {e});
    run("cumsum_d1", tg::cumsum(a, 1), {a});
    run("cumsum_m2", tg::cumsum(b, -2), {b});
    run("cumsum_size1", tg::cumsum(s1, 0), {s1});
    run("cumsum_empty", tg::cumsum(e, 0), {e});
    const Var xi = i64({3, -1, 3, 0, 5, 5, -2, 1}, {2, 4});
    const auto rs = tg::sort(xi, 1, true);
    CHECK(vals(rs.values) == want("int_sort"));
    CHECK(vals(rs.indices) == want("int_sort_i"));
    const auto rt = tg::topk(xi, 2, 0, false);
    CHECK(vals(rt.values) == want("int_topk"));
    CHECK(vals(rt.indices) == want("int_topk_i"));
    CHECK(vals(tg::cumsum(xi, 1)) == want("int_cumsum"));
    CHECK(vals(tg::prod(xi, 0)) == want("int_prod"));
    CHECK(vals(tg::reshape(tg::prod(xi), {1})) == want("int_prod_all"));
  }
}

TEST_CASE("topk of a rank-0 tensor: k = 1 keeps rank 0, k = 0 gives [0]", "[ops][reduce]") {
  const Var x = tg::param(tg::scalar_tensor(2.5, tg::f64));
  CHECK(tg::topk(x, 1).values.shape() == Shape{});
  CHECK(tg::topk(x, 0).values.shape() == Shape{0});
  CHECK(tg::topk(x, 0).indices.shape() == Shape{0});
  CHECK_THROWS_WITH(tg::topk(x, 2), Catch::Contains("topk: k = 2"));
}

TEST_CASE("topk along the last dim equals the first k of sort, ties and NaN included",
          "[ops][reduce]") {
  // topk's one-pass selection for small k against sort's full order, on rows with many
  // ties, NaNs and infinities, both directions, k from 1 to past the selection limit.
  tg::Rng rng(11);
  for (const int64_t n : {1, 7, 16, 17, 100, 300}) {
    std::vector<double> v(static_cast<size_t>(3 * n));
    for (double& x : v) {
      const uint64_t r = rng.below(20);
      x = r == 0 ? std::nan("") : r == 1 ? INFINITY : r == 2 ? -INFINITY : double(rng.below(6));
    }
    for (const tg::Dtype dt : {tg::f32, tg::f64, tg::i64}) {
      tg::Tensor t = tg::tensor(v, {3, n}, tg::f64);
      if (dt == tg::i64) {  // integers: no NaN or inf
        for (int64_t i = 0; i < t.numel(); ++i)
          if (!std::isfinite(t.data<double>()[i])) t.data<double>()[i] = 2;
      }
      const tg::Var x = tg::constant(t.to(dt));
      for (const bool largest : {true, false}) {
        const auto sorted = tg::sort(x, -1, largest);
        for (const int64_t k : {int64_t{1}, int64_t{3}, n / 2, n - 1, int64_t{65}}) {
          if (k < 1 || k > n) continue;
          INFO("n " << n << " k " << k << " largest " << largest << " " << tg::dtype_name(dt));
          const auto top = tg::topk(x, k, -1, largest);
          CHECK(tg::equal(top.indices.value(), tg::narrow(sorted.indices, -1, 0, k).value()));
          const auto a = top.values.value().to_vector();
          const auto b = tg::narrow(sorted.values, -1, 0, k).value().to_vector();
          REQUIRE(a.size() == b.size());
          for (size_t i = 0; i < a.size(); ++i)
            CHECK((a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i]))));
        }
      }
    }
  }
}
