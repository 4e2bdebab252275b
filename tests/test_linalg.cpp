// tg::linalg against torch.linalg (values and gradients, f64 and f32, batched and empty
// shapes), and its errors. Gradient checks of every op are rows of test_gradcheck_ops.cpp.

#include <catch2/catch.hpp>
#include <cmath>
#include <iomanip>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

#include "torch_oracle.hpp"

namespace {

using tg::Shape;
using tg::Tensor;
using tg::Var;
namespace la = tg::linalg;

Var eye(int64_t n, tg::Dtype d) {
  std::vector<double> v(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i * n + i)] = 1.0;
  return tg::constant(tg::tensor(v, Shape{n, n}, tg::f64).to(d));
}

int64_t last(const Var& x) { return x.shape()[x.dim() - 1]; }

Var mT(const Var& x) { return tg::transpose(x, -2, -1); }
// The same well-conditioned inputs as the Python side builds.
Var spd(const Var& x) {
  return tg::matmul(x, mT(x)) + eye(last(x), x.dtype()) * static_cast<double>(last(x));
}
Var dominant(const Var& x) { return x + eye(last(x), x.dtype()) * 3.0; }
Var sym(const Var& x) { return x + mT(x); }
// pattern() matrices have rank 2 (sin(a + b) = sin a cos b + cos a sin b): adding 2 on the
// diagonal makes them full-rank with well-separated singular values.
Var fr(const Var& x) {
  const int64_t m = x.shape()[x.dim() - 2], n = last(x);
  std::vector<double> v(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < std::min(m, n); ++i) v[static_cast<size_t>(i * n + i)] = 2.0;
  return x + tg::constant(tg::tensor(v, Shape{m, n}, tg::f64).to(x.dtype()));
}

}  // namespace

// The expression throws an exception of type `type` whose message matches `matcher`.
#define CHECK_ERROR(expr, type, matcher) \
  do {                                   \
    CHECK_THROWS_AS(expr, type);         \
    CHECK_THROWS_WITH(expr, matcher);    \
  } while (false)

TEST_CASE("linalg ops match torch.linalg", "[linalg][oracle]") {
  TGTEST_REQUIRE_TORCH();
  for (const auto& [single, dt, tdt, tol] : tgtest::oracle_dtypes(2e-4)) {
    const std::string script =
        std::string(tgtest::kPythonPrelude) + "D = " + dt + "\n" + tgtest::kPythonRun + R"PY(
L = torch.linalg
def eye(n): return torch.eye(n, dtype=D)
def spd(x): return x @ x.mT + eye(x.shape[-1]) * x.shape[-1]
def dom(x): return x + eye(x.shape[-1]) * 3.0
def sym(x): return x + x.mT
def fr(x): return x + 2 * torch.eye(x.shape[-2], x.shape[-1], dtype=D)
a = P((4, 4), 0.0); ab = P((2, 3, 3), 1.0); b32 = P((3, 2), 2.0); bb = P((2, 3, 2), 3.0)
e = P((0, 3, 3), 4.0); eb = P((0, 3, 2), 5.0); one = P((1, 1), 6.0); v3 = P((3,), 7.0)
t = P((5, 3), 8.0); w = P((2, 3, 5), 10.0)
run("cholesky", L.cholesky(spd(a)), a)
run("cholesky_upper_batched", L.cholesky(spd(ab), upper=True), ab)
run("cholesky_empty", L.cholesky(spd(e)), e)
run("cholesky_1x1", L.cholesky(spd(one)), one)
run("solve_tri", L.solve_triangular(dom(ab), b32, upper=False), ab, b32)
run("solve_tri_right_unit", L.solve_triangular(dom(ab[0]), bb.mT, upper=True, left=False, unitriangular=True), ab, bb)
run("solve", L.solve(dom(ab[1]), bb), ab, bb)
run("solve_vec", L.solve(dom(ab), v3), ab, v3)
run("solve_right", L.solve(dom(ab), bb.mT, left=False), ab, bb)
run("solve_empty", L.solve(dom(e), eb), e, eb)
run("inv", L.inv(dom(ab)), ab)
run("det", L.det(dom(ab) * torch.tensor([1.0, -1.0], dtype=D).reshape(2, 1, 1)), ab)
run("det_empty", L.det(dom(e)), e)
s, l = L.slogdet(-dom(ab))
emit("slogdet_sign", s)
run("slogdet", l, ab)
run("eigvals", L.eigh(sym(ab))[0], ab)
q = L.eigh(sym(ab))[1]
run("eigvecs_sq", (q * q), ab)
run("eigh_U", L.eigh(sym(ab) + torch.triu(ab, 1), UPLO="U")[0], ab)
run("svd_S", L.svd(fr(t), full_matrices=False)[1], t)
U = L.svd(fr(t), full_matrices=False)[0]
run("svd_U_sq", U * U, t)
Vh = L.svd(fr(t), full_matrices=False)[2]
run("svd_Vh_sq", Vh * Vh, t)
Uw, Sw, Vhw = L.svd(fr(w), full_matrices=False)
run("svd_wide", Uw * Uw + Sw.unsqueeze(-1) + (Vhw * Vhw)[..., :1], w)
Uf, Sf, Vhf = L.svd(fr(t))
emit("svd_full_shapes", torch.tensor(list(Uf.shape) + list(Vhf.shape), dtype=D))
emit("svd_full_UU", Uf @ Uf.mT)
Uf2, Sf2, Vhf2 = L.svd(fr(w))
run("svd_full_grad", Uf2[..., :3] ** 2 + Sf2.unsqueeze(-2), w)
run("svdvals", L.svdvals(fr(w)), w)
run("qr_Q", L.qr(fr(t))[0], t)
run("qr_R", L.qr(fr(t))[1], t)
Qw, Rw = L.qr(fr(w))
run("qr_wide", torch.cat([Qw, Rw], -1), w)
Qc, Rc = L.qr(fr(ab), mode="complete")  # fr: the pattern alone is rank 2 (R singular)
run("qr_complete", Qc + Rc, ab)
run("lstsq", L.lstsq(fr(t), P((5, 2), 11.0)).solution, t)
run("lstsq_wide", L.lstsq(fr(w), P((2, 3, 2), 12.0)).solution, w)
run("pinv", L.pinv(fr(t)), t)
run("pinv_wide", L.pinv(fr(w)), w)
run("pinv_hermitian", L.pinv(sym(ab), hermitian=True), ab)
run("pinv_rank_deficient", L.pinv(t, atol=1e-3), t)
# lstsq: pattern() matrices have rank 2, so QR's R is singular for t and w; gelsy (the
# default) gives the minimum-norm solution; a vector B; B with a batch dim to broadcast.
b5 = P((5, 2), 11.0); bw = P((2, 3, 2), 12.0); v5 = P((5,), 13.0); vw = P((2, 3), 14.0)
b132 = P((1, 3, 2), 15.0); e4 = P((0, 4, 2), 16.0); eb4 = P((0, 4, 1), 17.0)
run("lstsq_rank_deficient_tall", L.lstsq(t, b5).solution, t, b5)
run("lstsq_rank_deficient_wide", L.lstsq(w, bw).solution, w, bw)
run("lstsq_rank_deficient_gelsd", L.lstsq(t, b5, driver="gelsd").solution, t, b5)
# (torch 1.13's lstsq backward fails for a vector B: its gradients through B[..., None])
assert torch.allclose(L.lstsq(fr(t), v5).solution, L.lstsq(fr(t), v5[:, None]).solution[:, 0])
run("lstsq_vector", L.lstsq(fr(t), v5[..., None]).solution[..., 0], t, v5)
run("lstsq_vector_batched", L.lstsq(fr(w), vw[..., None]).solution[..., 0], w, vw)
run("lstsq_broadcast_B", L.lstsq(fr(w), b132).solution, w, b132)
run("lstsq_empty_batch", L.lstsq(fr(e4), eb4).solution, e4, eb4)
run("lstsq_gels_full_rank", L.lstsq(fr(t), b5, driver="gels").solution, t, b5)
# a third column 1e-4 as large: dropped at rcond 1e-3 (gelsd: the singular values' test)
scale = torch.tensor([1.0, 1.0, 1e-4], dtype=D)
emit("lstsq_rcond", L.lstsq(fr(t) * scale, b5, rcond=1e-3, driver="gelsd").solution)
)PY";
    const auto torch = tgtest::run_python(script);
    auto P = [&](const Shape& s, double k) { return tg::param(tgtest::pattern(s, k).to(tdt)); };
    auto run = [&](const std::string& name, const Var& y, const std::vector<Var>& xs) {
      tgtest::check_run(torch, name, y, xs, tol);
    };
    Var a = P({4, 4}, 0.0), ab = P({2, 3, 3}, 1.0), b32 = P({3, 2}, 2.0), bb = P({2, 3, 2}, 3.0);
    Var e = P({0, 3, 3}, 4.0), eb = P({0, 3, 2}, 5.0), one = P({1, 1}, 6.0), v3 = P({3}, 7.0);
    Var t = P({5, 3}, 8.0), w = P({2, 3, 5}, 10.0);
    const auto at = [](const Var& x, int64_t i) { return tg::squeeze(tg::narrow(x, 0, i, 1), 0); };
    run("cholesky", la::cholesky(spd(a)), {a});
    run("cholesky_upper_batched", la::cholesky(spd(ab), true), {ab});
    run("cholesky_empty", la::cholesky(spd(e)), {e});
    run("cholesky_1x1", la::cholesky(spd(one)), {one});
    run("solve_tri", la::solve_triangular(dominant(ab), b32, false), {ab, b32});
    run("solve_tri_right_unit",
        la::solve_triangular(dominant(at(ab, 0)), mT(bb), true, false, true), {ab, bb});
    run("solve", la::solve(dominant(at(ab, 1)), bb), {ab, bb});
    run("solve_vec", la::solve(dominant(ab), v3), {ab, v3});
    run("solve_right", la::solve(dominant(ab), mT(bb), false), {ab, bb});
    run("solve_empty", la::solve(dominant(e), eb), {e, eb});
    run("inv", la::inv(dominant(ab)), {ab});
    const Var signs = tg::constant(tg::tensor({1.0, -1.0}, Shape{2, 1, 1}, tg::f64).to(tdt));
    run("det", la::det(dominant(ab) * signs), {ab});
    run("det_empty", la::det(dominant(e)), {e});
    const auto sl = la::slogdet(-dominant(ab));
    tgtest::check_close(sl.sign.value().to_vector(), torch.at("slogdet_sign"), 0);
    run("slogdet", sl.logabsdet, {ab});
    run("eigvals", la::eigh(sym(ab)).eigenvalues, {ab});
    const Var q = la::eigh(sym(ab)).eigenvectors;
    run("eigvecs_sq", q * q, {ab});
    run("eigh_U", la::eigh(sym(ab) + tg::triu(ab, 1), "U").eigenvalues, {ab});
    run("svd_S", la::svd(fr(t), false).S, {t});
    const Var u = la::svd(fr(t), false).U;
    run("svd_U_sq", u * u, {t});
    const Var vh = la::svd(fr(t), false).Vh;
    run("svd_Vh_sq", vh * vh, {t});
    const auto sw = la::svd(fr(w), false);
    run("svd_wide", sw.U * sw.U + tg::unsqueeze(sw.S, -1) + tg::slice(sw.Vh * sw.Vh, -1, 0, 1),
        {w});
    const auto sf = la::svd(fr(t));
    CHECK(sf.U.shape() == Shape{5, 5});
    CHECK(sf.Vh.shape() == Shape{3, 3});
    tgtest::check_close(tg::matmul(sf.U, mT(sf.U)).value().to_vector(), torch.at("svd_full_UU"),
                        tol);
    const auto sf2 = la::svd(fr(w));  // full: the extra rows of Vh get no gradient
    run("svd_full_grad",
        tg::slice(sf2.U, -1, 0, 3) * tg::slice(sf2.U, -1, 0, 3) + tg::unsqueeze(sf2.S, -2), {w});
    run("svdvals", la::svdvals(fr(w)), {w});
    run("qr_Q", la::qr(fr(t)).Q, {t});
    run("qr_R", la::qr(fr(t)).R, {t});
    const auto qw = la::qr(fr(w));
    run("qr_wide", tg::concat({qw.Q, qw.R}, 2), {w});
    const auto qc = la::qr(fr(ab), "complete");
    run("qr_complete", qc.Q + qc.R, {ab});
    run("lstsq", la::lstsq(fr(t), P({5, 2}, 11.0)).solution, {t});
    run("lstsq_wide", la::lstsq(fr(w), P({2, 3, 2}, 12.0)).solution, {w});
    run("pinv", la::pinv(fr(t)), {t});
    run("pinv_wide", la::pinv(fr(w)), {w});
    run("pinv_hermitian", la::pinv(sym(ab), {}, {}, true), {ab});
    run("pinv_rank_deficient", la::pinv(t, 1e-3), {t});  // pattern() matrices have rank 2
    Var b5 = P({5, 2}, 11.0), bw = P({2, 3, 2}, 12.0), v5 = P({5}, 13.0), vw = P({2, 3}, 14.0);
    Var b132 = P({1, 3, 2}, 15.0), e4 = P({0, 4, 2}, 16.0), eb4 = P({0, 4, 1}, 17.0);
    run("lstsq_rank_deficient_tall", la::lstsq(t, b5).solution, {t, b5});
    run("lstsq_rank_deficient_wide", la::lstsq(w, bw).solution, {w, bw});
    run("lstsq_rank_deficient_gelsd", la::lstsq(t, b5, {}, "gelsd").solution, {t, b5});
    run("lstsq_vector", la::lstsq(fr(t), v5).solution, {t, v5});
    run("lstsq_vector_batched", la::lstsq(fr(w), vw).solution, {w, vw});
    run("lstsq_broadcast_B", la::lstsq(fr(w), b132).solution, {w, b132});
    run("lstsq_empty_batch", la::lstsq(fr(e4), eb4).solution, {e4, eb4});
    run("lstsq_gels_full_rank", la::lstsq(fr(t), b5, {}, "gels").solution, {t, b5});
    const Var scale = tg::constant(tg::tensor({1.0, 1.0, 1e-4}, Shape{3}, tg::f64).to(tdt));
    tgtest::check_close(la::lstsq(fr(t) * scale, b5, 1e-3).solution.value().to_vector(),
                        torch.at("lstsq_rcond"), tol);
  }
}

TEST_CASE("linalg: second derivatives match torch.linalg", "[linalg][oracle]") {
  TGTEST_REQUIRE_TORCH();
  // The gradient of sum(cholesky(spd(x)) * w) with create_graph, differentiated again
  // through sum(g * g).
  const std::string script = std::string(tgtest::kPythonPrelude) + R"PY(
D = torch.float64
x = pattern((3, 3), 0.0).requires_grad_()
w = pattern((3, 3), 9.0)
A = lambda: x @ x.mT + 3 * torch.eye(3, dtype=D)
for name, f in [("chol", lambda: torch.linalg.cholesky(A())), ("logdet", lambda: torch.linalg.slogdet(A())[1].reshape(1, 1)),
                ("eig", lambda: torch.linalg.eigh(A())[0].reshape(1, 3))]:
    y = f()
    g, = torch.autograd.grad((y * w[:y.shape[0], :y.shape[1]]).sum(), x, create_graph=True)
    gg, = torch.autograd.grad((g * g).sum(), x)
    emit(name, gg)
)PY";
  const auto torch = tgtest::run_python(script);
  const Var x = tg::param(tgtest::pattern({3, 3}, 0.0));
  const Var w = tg::constant(tgtest::pattern({3, 3}, 9.0));
  const std::vector<std::pair<std::string, Var>> ys{
      {"chol", la::cholesky(spd(x))},
      {"logdet", tg::reshape(la::slogdet(spd(x)).logabsdet, {1, 1})},
      {"eig", tg::reshape(la::eigh(spd(x)).eigenvalues, {1, 3})}};
  for (const auto& [name, y] : ys) {
    INFO(name);
    const Var wy = tg::slice(tg::slice(w, 0, 0, y.shape()[0]), 1, 0, y.shape()[1]);
    const Var g = tg::grad({tg::sum(y * wy)}, {x}, {}, {.create_graph = true})[0];
    const Var gg = tg::grad({tg::sum(g * g)}, {x})[0];
    tgtest::check_close(gg.value().to_vector(), torch.at(name), 1e-9);
  }
}

TEST_CASE("linalg errors name the op, the dtype, the shapes and LAPACK's info", "[linalg]") {
  using Catch::Contains;
  const Var nonpd = tg::constant(tg::tensor({1.0, 2.0, 2.0, 1.0}, Shape{2, 2}, tg::f64));
  CHECK_ERROR(
      la::cholesky(nonpd), tg::LinalgError,
      Contains("cholesky: ") && Contains("not positive-definite") && Contains("potrf info = 2"));
  const Var batch =
      tg::constant(tg::tensor({1.0, 0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 1.0}, Shape{2, 2, 2}, tg::f64));
  CHECK_ERROR(la::cholesky(batch), tg::LinalgError, Contains("batch entry 1"));
  const Var singular = tg::constant(tg::tensor({1.0, 2.0, 2.0, 4.0}, Shape{2, 2}, tg::f64));
  CHECK_ERROR(la::solve(singular, tg::constant(tg::ones({2, 1}, tg::f64))), tg::LinalgError,
              Contains("solve: ") && Contains("singular") && Contains("getrf info = 2"));
  CHECK_ERROR(la::inv(singular), tg::LinalgError, Contains("inv: "));
  CHECK(la::det(singular).item() == 0.0);
  {  // det's gradient at a singular matrix: the transposed adjugate, as PyTorch
    const Var s = tg::param(singular.value().clone());
    la::det(s).backward();
    tgtest::check_close(s.grad().value().to_vector(), {4, -2, -2, 1}, 1e-12);
    const Var s3 = tg::param(tg::tensor({1.0, 2, 3, 2, 4, 6, 0, 1, 5}, Shape{3, 3}, tg::f64));
    la::det(s3).backward();  // adj(A)^T: the cofactors (rank 2, so not zero)
    tgtest::check_close(s3.grad().value().to_vector(), {14, -10, 2, -7, 5, -1, 0, 0, 0}, 1e-12);
  }
  const auto sl = la::slogdet(singular);
  CHECK(sl.sign.item() == 0.0);
  CHECK(std::isinf(sl.logabsdet.item()));
  // Shapes and dtypes.
  const Var r23 = tg::constant(tg::ones({2, 3}, tg::f64));
  CHECK_ERROR(la::cholesky(r23), tg::ShapeError,
              Contains("cholesky: ") && Contains("square") && Contains("[2, 3]"));
  CHECK_ERROR(la::det(tg::constant(tg::ones({3}, tg::f64))), tg::ShapeError, Contains("det: "));
  const Var i3 = tg::constant(tg::ones({3, 3}, tg::f64));
  CHECK_ERROR(la::solve(i3, r23), tg::ShapeError, Contains("solve: "));
  CHECK_ERROR(la::solve(tg::constant(tg::ones({2, 3, 3}, tg::f64)),
                        tg::constant(tg::ones({4, 3, 1}, tg::f64))),
              tg::ShapeError, Contains("solve"));
  CHECK_ERROR(la::solve_triangular(i3, r23, true), tg::ShapeError, Contains("solve_triangular: "));
  CHECK_ERROR(la::eigh(tg::constant(tg::ones({3, 3}, tg::i64))), tg::DtypeError,
              Contains("eigh: ") && Contains("i64"));
  CHECK_ERROR(la::solve(i3, tg::constant(tg::ones({3, 1}, tg::f32))), tg::DtypeError,
              Contains("solve"));
  CHECK_ERROR(la::eigh(i3, "X"), tg::Error, Contains("UPLO"));
  CHECK_ERROR(la::qr(i3, "full"), tg::Error, Contains("qr: "));
  CHECK_ERROR(la::lstsq(i3, r23, {}, "gelsx"), tg::Error, Contains("lstsq: ") && Contains("gelsx"));
  // No gradient where PyTorch has none: qr mode "r".
  const Var x = tg::param(tgtest::pattern({3, 2}, 1.0));
  CHECK_ERROR(tg::sum(la::qr(x, "r").R).backward(), tg::Error,
              Contains("qr: ") && Contains("mode \"r\"") && Contains("reduced"));
  CHECK_ERROR(tg::sum(la::qr(x, "complete").R).backward(), tg::Error,
              Contains("qr: ") && Contains("m > n") && Contains("3 x 2"));
  // NaN in, NaN out, without an error.
  const Var nan = tg::constant(tg::full({3, 3}, std::nan(""), tg::f64));
  CHECK(std::isnan(la::cholesky(nan).value().to_vector()[0]));
  CHECK(std::isnan(la::eigh(nan).eigenvalues.value().to_vector()[0]));
  CHECK(std::isnan(la::det(nan).item()));
}

TEST_CASE("linalg: the triangle an op does not read is never read, as PyTorch's", "[linalg]") {
  // A NaN (or garbage) in the unread triangle changed eigh's, cholesky's and
  // pinv(hermitian)'s result to NaN; torch.linalg ignores it (eigh of [[4, nan], [2, 3]] is
  // [1.4384, 5.5616]). UPLO is read in either case, as PyTorch.
  const double nan = std::nan("");
  const Var spd = tg::constant(tg::tensor({4.0, 2.0, 2.0, 3.0}, Shape{2, 2}, tg::f64));
  const Var nan_up = tg::constant(tg::tensor({4.0, nan, 2.0, 3.0}, Shape{2, 2}, tg::f64));
  const Var nan_lo = tg::constant(tg::tensor({4.0, 2.0, nan, 3.0}, Shape{2, 2}, tg::f64));
  auto same = [](const Var& got, const Var& want) {
    CHECK(got.value().to_vector() == want.value().to_vector());
  };
  for (const char* lower : {"L", "l"}) {
    INFO(lower);
    same(la::eigh(nan_up, lower).eigenvalues, la::eigh(spd).eigenvalues);
    same(la::eigh(nan_up, lower).eigenvectors, la::eigh(spd).eigenvectors);
    same(la::eigvalsh(nan_up, lower), la::eigvalsh(spd));
  }
  for (const char* upper : {"U", "u"}) {
    INFO(upper);
    same(la::eigh(nan_lo, upper).eigenvalues, la::eigh(spd, "U").eigenvalues);
  }
  same(la::cholesky(nan_up), la::cholesky(spd));
  same(la::cholesky(nan_lo, true), la::cholesky(spd, true));
  same(la::pinv(nan_up, {}, {}, true), la::pinv(spd, {}, {}, true));
  tgtest::check_close(la::eigvalsh(nan_up).value().to_vector(),
                      {1.4384471871911697, 5.5615528128088303}, 1e-14);
  // A NaN in the triangle read still gives NaN.
  CHECK(std::isnan(la::eigvalsh(nan_lo).value().to_vector()[0]));
  CHECK(std::isnan(la::cholesky(nan_lo).value().to_vector()[0]));
  CHECK_THROWS_AS(la::eigh(spd, "X"), tg::Error);
  CHECK_THROWS_AS(la::eigh(spd, "LU"), tg::Error);
}

TEST_CASE("linalg: repeated eigenvalues give a finite eigenvalue gradient", "[linalg]") {
  // The identity's eigenvalues are all 1: the eigenvalues alone still have the gradient
  // Q diag(gL) Q^T (here the identity), as PyTorch.
  const Var x =
      tg::param(tg::tensor({1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0}, Shape{3, 3}, tg::f64));
  tg::sum(la::eigvalsh(x)).backward();
  tgtest::check_close(x.grad().value().to_vector(), {1, 0, 0, 0, 1, 0, 0, 0, 1}, 1e-12);
}

TEST_CASE("linalg: 0 x 0 matrices and empty batches give empty results", "[linalg]") {
  for (const Shape& s : {Shape{0, 0}, Shape{2, 0, 0}, Shape{0, 2, 2}}) {
    INFO(s.str());
    const Var a = tg::param(tg::zeros(s, tg::f64));
    CHECK(la::cholesky(a).shape() == s);
    CHECK(la::inv(a).shape() == s);
    CHECK(la::eigh(a).eigenvectors.shape() == s);
    CHECK(la::svd(a, false).U.shape() == s);
    CHECK(la::qr(a).R.shape() == s);
    CHECK(la::pinv(a).shape() == s);
    const Var d = la::det(a);
    CHECK(d.numel() == (s.rank() == 2 ? 1 : s[0] == 2 ? 2 : 0));
    for (double v : d.value().to_vector()) CHECK(v == 1.0);  // the det of a 0 x 0 matrix is 1
    tg::sum(la::cholesky(a)).backward();
    CHECK(a.grad().shape() == s);
  }
}

TEST_CASE("linalg: a JVP rule leaves the recorded graph of its input alone", "[linalg]") {
  // The rules run a small reverse sweep over the op's backward formula (Note [linalg JVP
  // rules]); it must not free the graph the input came from, nor run its hooks when nothing
  // differentiates the tangent.
  for (bool recording : {false, true}) {
    INFO("grad mode " << recording);
    Var x =
        tg::param(tg::tensor({2.0, 0.5, 0.1, 0.3, 3.0, 0.2, 0.1, 0.4, 4.0}, Shape{3, 3}, tg::f64));
    int hook_calls = 0;
    x.register_hook([&](const Var&) {
      ++hook_calls;
      return Var();
    });
    const Var t = tg::constant(tg::tensor({1, 0, 0, 0, 1, 0, 0, 0, 1}, Shape{3, 3}, tg::f64));
    tg::fwd::DualLevel level;
    const Var a = tg::fwd::make_dual(x * 2.0, t);  // recorded: x -> mul -> make_dual
    {
      tg::GradModeGuard mode(recording);
      const Var d = la::det(a);
      // d det = det(A) tr(A^{-1} t) = det(A) tr(A^{-1}) for t = I
      tg::NoGradGuard off;
      const Var want = d * tg::sum(tg::linalg::inv(a) * t);
      const Var dt = tg::fwd::unpack_dual(d).tangent;
      REQUIRE(dt.defined());
      CHECK(dt.item() == Approx(want.item()).epsilon(1e-12));
    }
    if (!recording) CHECK(hook_calls == 0);
    tg::sum(a).backward();
    tgtest::check_close(x.grad().value().to_vector(), std::vector<double>(9, 2.0), 0.0);
  }
}

TEST_CASE("linalg: det is the product of the LU pivots, exact on ill-scaled matrices",
          "[linalg][oracle]") {
  // As torch.linalg.det (Note [det backward]): sign * exp(logabsdet) would be off by
  // |log det| eps (2.4e-14 for 1e300 in f64, 3.6e-6 for 1e-36 in f32). Each value against
  // the exact determinant of the stored matrix (rationals in Python, rounded once) and
  // torch's; gradients of sum(det * w) against torch's, relative to their largest entry.
  TGTEST_REQUIRE_TORCH();
  for (const auto& [single, dt, tdt, tol] : tgtest::oracle_dtypes()) {
    const double big = single ? 1e3 : 1e30, small = single ? 1e-3 : 1e-5,
                 scale = single ? 1e8 : 1e60;
    const int64_t nb = single ? 12 : 10, ns = single ? 12 : 50;
    const double rtol_exact = single ? 1e-6 : 1e-15, rtol = single ? 2e-5 : 1e-12;
    const std::string script =
        std::string(tgtest::kPythonPrelude) + "D = " + dt + "\n" + tgtest::kPythonRun +
        "big, small, scale, nb, ns = " + std::to_string(big) + ", " + std::to_string(small) + ", " +
        std::to_string(scale) + ", " + std::to_string(nb) + ", " + std::to_string(ns) +
        R"PY(
from fractions import Fraction
def exact_det(A):
    M = [[Fraction(float(v)) for v in row] for row in A.tolist()]
    n, d = len(M), Fraction(1)
    for i in range(n):
        p = next((r for r in range(i, n) if M[r][i] != 0), None)
        if p is None: return 0.0
        if p != i: M[i], M[p], d = M[p], M[i], -d
        d *= M[i][i]
        for r in range(i + 1, n):
            f = M[r][i] / M[i][i]
            M[r] = [a - f * b for a, b in zip(M[r], M[i])]
    return float(d)
def case(name, A):
    emit(name + "_exact", torch.tensor([exact_det(m) for m in A.detach().reshape(-1, A.shape[-1], A.shape[-1])], dtype=torch.float64))
    run(name, torch.linalg.det(A), A)
case("big", (torch.eye(nb, dtype=torch.float64) * big).to(D).requires_grad_())
case("small", (torch.eye(ns, dtype=torch.float64) * small).to(D).requires_grad_())
m = P((3, 4, 4), 1.0)
signs = torch.tensor([1.0, -1.0, 1.0], dtype=D).reshape(3, 1, 1)
case("scaled", ((m + 3 * torch.eye(4, dtype=D)) * signs * scale).detach().requires_grad_())
)PY";
    const auto torch = tgtest::run_python(script);
    auto eye_times = [&](int64_t n, double v) {
      std::vector<double> e(static_cast<size_t>(n * n));
      for (int64_t i = 0; i < n; ++i) e[static_cast<size_t>(i * n + i)] = v;
      return tg::tensor(e, Shape{n, n}, tg::f64).to(tdt);
    };
    const Var m =
        tg::constant(tgtest::pattern({3, 4, 4}, 1.0).to(tdt)) + tg::constant(eye_times(4, 3.0));
    const Var signs = tg::constant(tg::tensor({1.0, -1.0, 1.0}, Shape{3, 1, 1}, tg::f64).to(tdt));
    auto check = [&](const std::string& name, const Tensor& a) {
      INFO(name << " " << dt);
      const Var A = tg::param(a);
      const Var d = la::det(A);
      const std::vector<double> got = d.value().to_vector(), exact = torch.at(name + "_exact"),
                                want = torch.at(name);
      REQUIRE(got.size() == exact.size());
      for (size_t i = 0; i < got.size(); ++i) {
        INFO(std::setprecision(17) << "matrix " << i << ": " << got[i] << " against exact "
                                   << exact[i] << ", torch " << want[i]);
        CHECK(std::abs(got[i] - exact[i]) <= rtol_exact * std::abs(exact[i]));
        CHECK(std::abs(got[i] - want[i]) <= rtol_exact * std::abs(want[i]));
      }
      const Var w = tg::constant(tgtest::pattern(d.shape(), 9.0).to(tdt));
      const std::vector<double> g = tg::grad({tg::sum(d * w)}, {A})[0].value().to_vector(),
                                tw = torch.at(name + "_g0");
      REQUIRE(g.size() == tw.size());
      double top = 0;
      for (double v : tw) top = std::max(top, std::abs(v));
      for (size_t i = 0; i < g.size(); ++i) {
        INFO("gradient element " << i << ": " << g[i] << " against " << tw[i]);
        CHECK(std::abs(g[i] - tw[i]) <= rtol * top);
      }
    };
    check("big", eye_times(nb, big));
    check("small", eye_times(ns, small));
    check("scaled", (m * signs * scale).value());
  }
}

TEST_CASE("linalg: det's first and second derivatives at singular matrices match torch",
          "[linalg][oracle]") {
  // PyTorch takes the transposed adjugate from the SVD where det is 0 and det(A) A^{-T}
  // elsewhere, matrix by matrix (Note [det backward]): a batch of one singular matrix alone,
  // and a batch mixing rank n - 1, rank n - 2 and invertible matrices, the identity among
  // them (its repeated singular values would make the SVD route's second derivative
  // infinite).
  TGTEST_REQUIRE_TORCH();
  const std::vector<double> a = {1, 2, 3, 2, 4, 6, 1, 0, 1, 1, 2, 3, 2, 4, 6, 3, 6, 9,
                                 4, 1, 0, 1, 3, 1, 0, 1, 2, 1, 0, 0, 0, 1, 0, 0, 0, 1};
  std::string values;
  for (double v : a) values += std::to_string(v) + ", ";
  const std::string script = std::string(tgtest::kPythonPrelude) + "a = [" + values + "]\n" +
                             R"PY(
for name, A in [("one", torch.tensor(a[:9], dtype=torch.float64).reshape(1, 3, 3)),
                ("mixed", torch.tensor(a, dtype=torch.float64).reshape(4, 3, 3))]:
    A.requires_grad_()
    d = torch.linalg.det(A)
    emit(name + "_det", d)
    g, = torch.autograd.grad((d * pattern(tuple(d.shape), 9.0)).sum(), A, create_graph=True)
    emit(name + "_g", g)
    gg, = torch.autograd.grad((g * pattern(tuple(A.shape), 5.0)).sum(), A)
    emit(name + "_gg", gg)
)PY";
  const auto torch = tgtest::run_python(script);
  for (const int64_t b : {1, 4}) {
    const std::string name = b == 1 ? "one" : "mixed";
    INFO(name);
    const Var A = tg::param(
        tg::tensor(std::vector<double>(a.begin(), a.begin() + b * 9), Shape{b, 3, 3}, tg::f64));
    const Var d = la::det(A);
    tgtest::check_close(d.value().to_vector(), torch.at(name + "_det"), 1e-12);
    const Var g = tg::grad({tg::sum(d * tg::constant(tgtest::pattern({b}, 9.0)))}, {A}, {},
                           {.create_graph = true})[0];
    tgtest::check_close(g.value().to_vector(), torch.at(name + "_g"), 1e-10);
    const Var gg = tg::grad({tg::sum(g * tg::constant(tgtest::pattern({b, 3, 3}, 5.0)))}, {A})[0];
    tgtest::check_close(gg.value().to_vector(), torch.at(name + "_gg"), 1e-10);
  }
}

TEST_CASE("linalg: det's derivatives at a numerically singular matrix are the cofactors'",
          "[linalg]") {
  // Rows r1, r2, r1: singular, yet LU leaves a pivot of about 1e-16 rather than 0 for
  // k = 8, and exactly 0 for k = 1 (and for 0.1 ... 0.9). Either way det's gradient is the
  // cofactor matrix and its second derivative that of the cofactors, built here from 2 x 2
  // minors (exact polynomials): the adjugate route (Note [det backward]), where A^{-T} times
  // det would be rounding noise times 1e16.
  auto entry = [](const Var& A, int64_t i, int64_t j) {
    return tg::slice(tg::slice(A, 0, i, i + 1), 1, j, j + 1);
  };
  auto cofactors = [&](const Var& A) {
    std::vector<Var> rows;
    for (int64_t i = 0; i < 3; ++i) {
      std::vector<Var> row;
      for (int64_t j = 0; j < 3; ++j) {
        const int64_t r0 = i == 0 ? 1 : 0, r1 = i == 2 ? 1 : 2, c0 = j == 0 ? 1 : 0,
                      c1 = j == 2 ? 1 : 2;
        const Var minor = entry(A, r0, c0) * entry(A, r1, c1) - entry(A, r0, c1) * entry(A, r1, c0);
        row.push_back((i + j) % 2 == 0 ? minor : -minor);
      }
      rows.push_back(tg::concat(row, 1));
    }
    return tg::concat(rows, 0);
  };
  const Var W = tg::constant(tgtest::pattern({3, 3}, 5.0));
  for (const double k : {8.0, 1.0}) {
    INFO("k = " << k);
    const std::vector<double> r1 = {0.1 * k, 0.3, -0.7}, r2 = {0.9, -0.2 * k, 0.4};
    const Var A = tg::param(tg::tensor(
        {r1[0], r1[1], r1[2], r2[0], r2[1], r2[2], r1[0], r1[1], r1[2]}, Shape{3, 3}, tg::f64));
    const Var d = la::det(A);
    CHECK(std::abs(d.item()) < 1e-14);
    const Var g = tg::grad({d}, {A}, {}, {.create_graph = true})[0];
    const Var want = cofactors(A);
    tgtest::check_close(g.value().to_vector(), want.value().to_vector(), 1e-13);
    tgtest::check_close(tg::grad({tg::sum(g * W)}, {A})[0].value().to_vector(),
                        tg::grad({tg::sum(want * W)}, {A})[0].value().to_vector(), 1e-12);
  }
}
