// Convolutions (conv1d, conv2d, conv_transpose2d) and unfold / fold: PyTorch as an oracle for
// values and gradients (f64 and f32, skipped when torch is not installed), typed errors, and the
// second derivative of the recorded gradient ops.

#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <thread>
#include <vector>

#include <tapegrad/tapegrad.hpp>

#include "torch_oracle.hpp"

using tg::Shape;
using tg::Var;
using tgtest::check_close;
using tgtest::pattern;

namespace {
std::vector<double> vals(const Var& v) { return v.value().to_vector(); }
Var P(const Shape& s, double k) { return tg::param(pattern(s, k)); }
}  // namespace

TEST_CASE("conv2d computes a hand-checked value", "[conv]") {
  // 1 x 1 x 3 x 3 input 0..8, 2x2 kernel of ones, stride 1: sums of 2x2 windows.
  const Var x = tg::param(tg::tensor({0, 1, 2, 3, 4, 5, 6, 7, 8}, {1, 1, 3, 3}, tg::f64));
  const Var w = tg::param(tg::full({1, 1, 2, 2}, 1.0, tg::f64));
  const Var y = tg::conv2d(x, w, tg::param(tg::tensor({0.5}, {1}, tg::f64)));
  CHECK(y.shape() == Shape{1, 1, 2, 2});
  CHECK(vals(y) == std::vector<double>{8.5, 12.5, 20.5, 24.5});
  tg::sum(y).backward();
  CHECK(vals(x.grad()) == std::vector<double>{1, 2, 1, 2, 4, 2, 1, 2, 1});
  CHECK(vals(w.grad()) == std::vector<double>{8, 12, 20, 24});
}

TEST_CASE("conv ops reject bad input with typed errors", "[conv]") {
  const Var x = P({1, 3, 5, 5}, 0.0), w = P({2, 3, 3, 3}, 1.0);
  using Catch::Contains;
  // channel mismatch
  CHECK_THROWS_AS(tg::conv2d(x, P({2, 2, 3, 3}, 1.0)), tg::ShapeError);
  CHECK_THROWS_WITH(tg::conv2d(x, P({2, 2, 3, 3}, 1.0)),
                    Contains("conv2d: ") && Contains("[1, 3, 5, 5]") && Contains("[2, 2, 3, 3]"));
  // kernel larger than the padded input
  CHECK_THROWS_AS(tg::conv2d(P({1, 1, 2, 2}, 0.0), P({1, 1, 3, 3}, 0.0)), tg::ShapeError);
  CHECK_NOTHROW(tg::conv2d(P({1, 1, 2, 2}, 0.0), P({1, 1, 3, 3}, 0.0), {}, 1, 1));
  CHECK_THROWS_WITH(tg::conv2d(P({1, 1, 2, 2}, 0.0), P({1, 1, 3, 3}, 0.0)),
                    Contains("conv2d: ") && Contains("kernel"));
  // bad arguments
  CHECK_THROWS_AS(tg::conv2d(x, w, {}, 0), tg::Error);
  CHECK_THROWS_WITH(tg::conv2d(x, w, {}, {1, -1}), Contains("conv2d: stride"));
  CHECK_THROWS_WITH(tg::conv2d(x, w, {}, 1, 0, 0), Contains("conv2d: dilation"));
  CHECK_THROWS_WITH(tg::conv2d(x, w, {}, 1, -1), Contains("conv2d: padding"));
  CHECK_THROWS_WITH(tg::conv2d(x, w, {}, 2, "same"), Contains("conv2d: padding='same'"));
  CHECK_THROWS_AS(tg::conv2d(x, w, {}, 1, "full"), tg::Error);
  CHECK_THROWS_WITH(tg::conv2d(x, w, {}, 1, 0, 1, 0), Contains("conv2d: groups"));
  // groups not dividing the channels
  CHECK_THROWS_AS(tg::conv2d(x, P({2, 1, 3, 3}, 1.0), {}, 1, 0, 1, 2), tg::ShapeError);
  CHECK_THROWS_AS(tg::conv2d(P({1, 4, 5, 5}, 0.0), P({3, 2, 3, 3}, 1.0), {}, 1, 0, 1, 2),
                  tg::ShapeError);
  // wrong rank, bias shape, dtype
  CHECK_THROWS_AS(tg::conv2d(P({3, 5}, 0.0), w), tg::ShapeError);
  CHECK_THROWS_AS(tg::conv2d(x, P({2, 3, 3}, 1.0)), tg::ShapeError);
  CHECK_THROWS_WITH(tg::conv2d(x, w, P({3}, 0.0)), Contains("conv2d: bias"));
  CHECK_THROWS_AS(tg::conv2d(tg::constant(x.value().to(tg::i64)), w), tg::DtypeError);
  CHECK_THROWS_WITH(tg::conv2d(x, tg::constant(w.value().to(tg::f32))), Contains("conv2d: "));
  CHECK_THROWS_WITH(tg::conv1d(P({2, 3}, 0.0), P({2, 3, 3}, 0.0)), Contains("conv1d: "));
  CHECK_THROWS_WITH(tg::conv1d(P({1, 3, 2}, 0.0), P({2, 3, 3}, 0.0)), Contains("conv1d: "));
  CHECK_THROWS_WITH(tg::conv1d(P({1, 3, 4}, 0.0), P({2, 3, 3}, 0.0), {}, 1, {1, 2}),
                    Contains("conv1d: padding"));
  CHECK_THROWS_WITH(tg::conv_transpose2d(x, P({2, 3, 3, 3}, 0.0)), Contains("conv_transpose2d: "));
  CHECK_THROWS_WITH(tg::conv_transpose2d(P({1, 2, 3, 3}, 0.0), P({2, 3, 3, 3}, 0.0), {}, 2, 0, 2),
                    Contains("conv_transpose2d: output_padding"));
  CHECK_THROWS_AS(tg::conv_transpose2d(P({1, 2, 1, 1}, 0.0), P({2, 3, 1, 1}, 0.0), {}, 1, 1),
                  tg::ShapeError);
  // unfold / fold
  CHECK_THROWS_WITH(tg::unfold(P({3, 5}, 0.0), 2), Contains("unfold: ") && Contains("[3, 5]"));
  CHECK_THROWS_WITH(tg::unfold(x, 7), Contains("unfold: ") && Contains("kernel"));
  CHECK_THROWS_AS(tg::unfold(x, 7), tg::ShapeError);
  CHECK_THROWS_WITH(tg::unfold(x, 2, 1, 0, 0), Contains("unfold: stride"));
  CHECK_THROWS_WITH(tg::unfold(x, 2, 1, -1), Contains("unfold: padding"));
  CHECK_THROWS_AS(tg::unfold(tg::constant(x.value().to(tg::i64)), 2), tg::DtypeError);
  CHECK_THROWS_WITH(tg::fold(P({1, 7, 4}, 0.0), {3, 3}, 2),
                    Contains("fold: ") && Contains("divisible") && Contains("[1, 7, 4]"));
  CHECK_THROWS_WITH(tg::fold(P({1, 8, 5}, 0.0), {3, 3}, 2),
                    Contains("fold: ") && Contains("4 blocks") && Contains("[1, 8, 5]"));
  CHECK_THROWS_AS(tg::fold(P({8, 4, 1, 1}, 0.0), {3, 3}, 2), tg::ShapeError);
  CHECK_THROWS_WITH(tg::fold(P({1, 8, 4}, 0.0), {0, 3}, 2), Contains("fold: output_size"));
  // Only the batch may be empty, as PyTorch's im2col / col2im: an empty channel or spatial
  // dim is an error (it gave an empty result), also where padding makes room for the kernel.
  for (const tg::Shape& s : {tg::Shape{2, 0, 4, 4}, tg::Shape{1, 2, 0, 4}, tg::Shape{0, 4, 4}})
    CHECK_THROWS_WITH(tg::unfold(P(s, 0.0), 2, 1, 1),
                      Contains("unfold: ") && Contains("non-empty") && Contains(s.str()));
  CHECK_THROWS_AS(tg::unfold(P({1, 2, 0, 4}, 0.0), 2, 1, 1), tg::ShapeError);
  CHECK(tg::unfold(P({0, 2, 4, 4}, 0.0), 2).shape() == tg::Shape{0, 8, 9});
  for (const tg::Shape& s : {tg::Shape{2, 0, 9}, tg::Shape{0, 9}})
    CHECK_THROWS_WITH(tg::fold(P(s, 0.0), {4, 4}, 2),
                      Contains("fold: ") && Contains("non-empty") && Contains(s.str()));
  CHECK(tg::fold(P({0, 8, 9}, 0.0), {4, 4}, 2).shape() == tg::Shape{0, 2, 4, 4});
}

TEST_CASE("unfold is conv2d's column matrix and fold its adjoint", "[conv]") {
  // conv2d(x, w) = w [O, C k] @ unfold(x): the same columns the conv kernels multiply.
  const Var x = P({2, 3, 6, 5}, 0.3), w = P({4, 3, 2, 3}, 1.3);
  const Var cols = tg::unfold(x, {2, 3}, {2, 1}, 1, {1, 2});
  const Var y = tg::conv2d(x, w, {}, {1, 2}, 1, {2, 1});
  const Var viamm = tg::matmul(tg::reshape(w, {4, 18}), cols);
  CHECK(cols.shape() == Shape({2, 18, y.shape()[2] * y.shape()[3]}));
  check_close(vals(tg::reshape(y, {2, 4, -1})), vals(viamm), 1e-12);
  // <unfold(x), c> = <x, fold(c)>
  const Var c = P(cols.shape(), 2.3);
  const double lhs = tg::sum(cols * c).value().item();
  const double rhs = tg::sum(x * tg::fold(c, {6, 5}, {2, 3}, {2, 1}, 1, {1, 2})).value().item();
  CHECK(lhs == Approx(rhs).epsilon(1e-12));
}

TEST_CASE("conv2d's chunk lanes: results do not depend on the thread count", "[conv]") {
  // Batch 40 at 14x14 is three chunks of up to 16 images (Note [Chunk lanes]): two lanes on
  // two threads or more, one lane's chunks in order on one thread; f32 as the CNN runs it.
  // Each setting must give the same bits, and leave OpenBLAS's thread count as it was.
  const int threads = tg::num_threads(), blas = tg::blas_threads();
  const auto run = [](int n) {
    tg::set_num_threads(n);
    const Var x = tg::param(pattern({40, 4, 14, 14}, 0.3).to(tg::f32));
    const Var w = tg::param(pattern({6, 2, 3, 3}, 0.7).to(tg::f32));
    const Var b = tg::param(pattern({6}, 1.1).to(tg::f32));
    const Var y = tg::conv2d(x, w, b, 1, 1, 1, 2);
    tg::sum(y * tg::constant(pattern(y.shape(), 2.0).to(tg::f32))).backward();
    return std::vector<std::vector<double>>{vals(y), vals(x.grad()), vals(w.grad()),
                                            vals(b.grad())};
  };
  const auto one = run(1);
  const int blas_after_one = tg::blas_threads();
  const auto two = run(2);
  const int blas_after_two = tg::blas_threads();
  const auto three = run(3);
  tg::set_num_threads(threads);
  CHECK(one == two);
  CHECK(one == three);
  CHECK(blas_after_one == blas);
  CHECK(blas_after_two == blas);
  CHECK(tg::blas_threads() == blas);
}

TEST_CASE("conv2d's chunk lanes from two user threads at once: same results, BLAS count restored",
          "[conv][threads]") {
  // Two user threads each run conv2d forward and backward over chunk lanes (batch 12 at
  // 14x14: chunks of 6 images, two lanes) at the same time as the other. OpenBLAS's thread
  // count is process-wide: the lanes' guards share it (the first in sets 1, the last out
  // restores it), so each thread's results are those of a run alone and the count is as it
  // was afterwards. Under TSan (tests/sanitizers/run.sh) this also checks the pool and the
  // guard for races.
  const int threads = tg::num_threads(), blas = tg::blas_threads();
  tg::set_num_threads(std::max(threads, 2));
  const auto run = [](double k) {
    const Var x = tg::param(pattern({12, 4, 14, 14}, 0.3 * k).to(tg::f32));
    const Var w = tg::param(pattern({6, 2, 3, 3}, 0.7 * k).to(tg::f32));
    const Var b = tg::param(pattern({6}, 1.1 * k).to(tg::f32));
    const Var y = tg::conv2d(x, w, b, 1, 1, 1, 2);
    tg::sum(y * tg::constant(pattern(y.shape(), 2.0).to(tg::f32))).backward();
    return std::vector<std::vector<double>>{vals(y), vals(x.grad()), vals(w.grad()),
                                            vals(b.grad())};
  };
  const auto alone1 = run(1.0), alone2 = run(2.0);
  std::vector<std::vector<std::vector<double>>> got1, got2;
  {
    std::thread t1([&] {
      for (int i = 0; i < 4; ++i) got1.push_back(run(1.0));
    });
    std::thread t2([&] {
      for (int i = 0; i < 4; ++i) got2.push_back(run(2.0));
    });
    t1.join();
    t2.join();
  }
  const int blas_after = tg::blas_threads();
  tg::set_num_threads(threads);
  REQUIRE(got1.size() == 4);
  REQUIRE(got2.size() == 4);
  for (int i = 0; i < 4; ++i) {
    CHECK(got1[static_cast<size_t>(i)] == alone1);
    CHECK(got2[static_cast<size_t>(i)] == alone2);
  }
  CHECK(blas_after == blas);
}

TEST_CASE("conv ops match PyTorch", "[conv][oracle]") {
  TGTEST_REQUIRE_TORCH();
  // Each op at f64 and f32; gradients through sum(y * w) with a fixed weight pattern w, and
  // (f64) the gradient of sum(dx * v) with respect to the weight: a second derivative.
  for (const auto& [single, dt, tdt, tol] : tgtest::oracle_dtypes()) {
    std::string script = std::string(tgtest::kPythonPrelude) + "D = " + dt + R"PY(
import warnings
warnings.filterwarnings("ignore")  # padding="same" with an even kernel: an expected copy
F = torch.nn.functional
def P(shape, k, scale=1.0):
    return pattern(shape, k, scale, D).requires_grad_()
def run(name, y, *xs):
    w = pattern(tuple(y.shape), 9.0, 1.0, D)
    emit(name, y)
    gs = torch.autograd.grad((y * w).sum(), xs, allow_unused=True, create_graph=True)
    for i, g in enumerate(gs):
        emit(name + "_g%d" % i, torch.zeros_like(xs[i]) if g is None else g)
    # second order: d/d xs of sum(g0 * v)
    v = pattern(tuple(xs[0].shape), 7.0, 1.0, D)
    if gs[0] is not None and gs[0].requires_grad:
        hs = torch.autograd.grad((gs[0] * v).sum(), xs, allow_unused=True)
        for i, h in enumerate(hs):
            emit(name + "_h%d" % i, torch.zeros_like(xs[i]) if h is None else h)
x = P((2, 3, 6, 5), 0.0); w = P((4, 3, 3, 3), 1.0); b = P((4,), 2.0)
run("basic", F.conv2d(x, w, b, 1, 1), x, w, b)
x2 = P((2, 4, 7, 6), 3.0); w2 = P((6, 2, 3, 2), 4.0)
run("strided_groups", F.conv2d(x2, w2, None, 2, (1, 0), (1, 2), 2), x2, w2)
x3 = P((1, 2, 5, 6), 5.0); w3 = P((3, 2, 2, 4), 6.0)
run("same_even", F.conv2d(x3, w3, None, 1, "same", (2, 1)), x3, w3)
x4 = P((1, 3, 5, 5), 7.0); w4 = P((6, 1, 3, 3), 8.0); b4 = P((6,), 9.0)
run("depthwise_valid", F.conv2d(x4, w4, b4, (2, 1), "valid", 1, 3), x4, w4, b4)
x5 = P((0, 3, 4, 4), 1.5); w5 = P((2, 3, 3, 3), 2.5); b5 = P((2,), 3.5)
run("empty_batch", F.conv2d(x5, w5, b5), x5, w5, b5)
x6 = P((1, 1, 1, 5), 4.5); w6 = P((2, 1, 1, 3), 5.5)
run("size1", F.conv2d(x6, w6), x6, w6)
x9 = P((2, 2, 5, 4), 0.25); w9 = P((3, 2, 3, 3), 0.35)
run("stride_rows", F.conv2d(x9, w9, None, (2, 1), 1), x9, w9)
x10 = P((1, 2, 4, 5), 0.45); w10 = P((2, 2, 2, 3), 0.55)
run("dilated_same_width", F.conv2d(x10, w10, None, 1, (0, 2), (1, 2)), x10, w10)
x7 = P((2, 3, 4, 4), 6.5); w7 = P((5, 3, 1, 1), 7.5); b7 = P((5,), 8.5)
run("pointwise", F.conv2d(x7, w7, b7), x7, w7, b7)
x8 = P((3, 5, 5), 9.5); w8 = P((2, 3, 3, 3), 0.5)
run("unbatched", F.conv2d(x8, w8, None, 1, 1), x8, w8)
y1 = P((2, 3, 9), 1.25); v1 = P((4, 3, 3), 2.25); c1 = P((4,), 3.25)
run("conv1d", F.conv1d(y1, v1, c1, 2, 2, 2), y1, v1, c1)
y2 = P((1, 3, 8), 4.25); v2 = P((3, 1, 4), 5.25)
run("conv1d_same", F.conv1d(y2, v2, None, 1, "same", 1, 3), y2, v2)
t1 = P((2, 4, 3, 3), 6.25); u1 = P((4, 3, 3, 3), 7.25); d1 = P((3,), 8.25)
run("tconv", F.conv_transpose2d(t1, u1, d1, 2, 1, 1), t1, u1, d1)
t2 = P((1, 4, 3, 4), 9.25); u2 = P((4, 2, 2, 3), 0.75)
run("tconv_groups", F.conv_transpose2d(t2, u2, None, (1, 2), 0, 0, 2, 2), t2, u2)
t3 = P((1, 2, 4, 3), 1.75); u3 = P((2, 2, 3, 3), 2.75)
run("tconv_outpad_dilation", F.conv_transpose2d(t3, u3, None, 1, 1, 1, 1, 2), t3, u3)
a1 = P((2, 3, 5, 6), 1.1)
run("unfold", F.unfold(a1 * a1, (2, 3), (1, 2), 1, (2, 1)), a1)
a2 = P((2, 4, 4), 1.2)
run("unfold_unbatched", F.unfold(a2, 2, 1, 0, 2), a2)
a3 = P((0, 2, 3, 3), 1.3)
run("unfold_empty_batch", F.unfold(a3, 2), a3)
f1 = P((2, 18, 12), 1.4)
run("fold", F.fold(f1 * f1, (5, 6), (2, 3), (1, 2), 1, (2, 1)), f1)
f2 = P((8, 4), 1.5)
run("fold_unbatched", F.fold(f2, (3, 3), 2), f2)
f3 = P((1, 4, 4), 1.6)
run("fold_stride_gaps", F.fold(f3, (5, 5), 2, 1, 0, 3), f3)
)PY";
    const auto torch = tgtest::run_python(script);
    auto Q = [&](const Shape& s, double k) { return tg::param(pattern(s, k).to(tdt)); };
    auto run = [&](const std::string& name, const Var& y, const std::vector<Var>& xs) {
      INFO(name << (single ? " f32" : " f64"));
      REQUIRE(torch.count(name) == 1);
      CHECK(y.dtype() == tdt);
      check_close(vals(y), torch.at(name), tol);
      const Var w = tg::constant(pattern(y.shape(), 9.0).to(tdt));
      const auto gs =
          tg::grad({tg::sum(y * w)}, xs, {}, {.create_graph = true, .allow_unused = true});
      for (size_t i = 0; i < xs.size(); ++i) {
        INFO("gradient " << i);
        const std::string key = name + "_g" + std::to_string(i);
        REQUIRE(torch.count(key) == 1);
        check_close(gs[i].defined() ? vals(gs[i]) : std::vector<double>(torch.at(key).size()),
                    torch.at(key), tol);
      }
      if (torch.count(name + "_h0") == 0 || !gs[0].defined() || !gs[0].requires_grad()) return;
      const Var v = tg::constant(pattern(xs[0].shape(), 7.0).to(tdt));
      const auto hs = tg::grad({tg::sum(gs[0] * v)}, xs, {}, {.allow_unused = true});
      for (size_t i = 0; i < xs.size(); ++i) {
        INFO("second derivative " << i);
        const std::string key = name + "_h" + std::to_string(i);
        REQUIRE(torch.count(key) == 1);
        check_close(hs[i].defined() ? vals(hs[i]) : std::vector<double>(torch.at(key).size()),
                    torch.at(key), tol);
      }
    };
    Var x = Q({2, 3, 6, 5}, 0.0), w = Q({4, 3, 3, 3}, 1.0), b = Q({4}, 2.0);
    run("basic", tg::conv2d(x, w, b, 1, 1), {x, w, b});
    Var x2 = Q({2, 4, 7, 6}, 3.0), w2 = Q({6, 2, 3, 2}, 4.0);
    run("strided_groups", tg::conv2d(x2, w2, {}, 2, {1, 0}, {1, 2}, 2), {x2, w2});
    Var x3 = Q({1, 2, 5, 6}, 5.0), w3 = Q({3, 2, 2, 4}, 6.0);
    run("same_even", tg::conv2d(x3, w3, {}, 1, "same", {2, 1}), {x3, w3});
    Var x4 = Q({1, 3, 5, 5}, 7.0), w4 = Q({6, 1, 3, 3}, 8.0), b4 = Q({6}, 9.0);
    run("depthwise_valid", tg::conv2d(x4, w4, b4, {2, 1}, "valid", 1, 3), {x4, w4, b4});
    Var x5 = Q({0, 3, 4, 4}, 1.5), w5 = Q({2, 3, 3, 3}, 2.5), b5 = Q({2}, 3.5);
    run("empty_batch", tg::conv2d(x5, w5, b5), {x5, w5, b5});
    Var x6 = Q({1, 1, 1, 5}, 4.5), w6 = Q({2, 1, 1, 3}, 5.5);
    run("size1", tg::conv2d(x6, w6), {x6, w6});
    Var x9 = Q({2, 2, 5, 4}, 0.25), w9 = Q({3, 2, 3, 3}, 0.35);
    run("stride_rows", tg::conv2d(x9, w9, {}, {2, 1}, 1), {x9, w9});
    Var x10 = Q({1, 2, 4, 5}, 0.45), w10 = Q({2, 2, 2, 3}, 0.55);
    run("dilated_same_width", tg::conv2d(x10, w10, {}, 1, {0, 2}, {1, 2}), {x10, w10});
    Var x7 = Q({2, 3, 4, 4}, 6.5), w7 = Q({5, 3, 1, 1}, 7.5), b7 = Q({5}, 8.5);
    run("pointwise", tg::conv2d(x7, w7, b7), {x7, w7, b7});
    Var x8 = Q({3, 5, 5}, 9.5), w8 = Q({2, 3, 3, 3}, 0.5);
    run("unbatched", tg::conv2d(x8, w8, {}, 1, 1), {x8, w8});
    Var y1 = Q({2, 3, 9}, 1.25), v1 = Q({4, 3, 3}, 2.25), c1 = Q({4}, 3.25);
    run("conv1d", tg::conv1d(y1, v1, c1, 2, 2, 2), {y1, v1, c1});
    Var y2 = Q({1, 3, 8}, 4.25), v2 = Q({3, 1, 4}, 5.25);
    run("conv1d_same", tg::conv1d(y2, v2, {}, 1, "same", 1, 3), {y2, v2});
    Var t1 = Q({2, 4, 3, 3}, 6.25), u1 = Q({4, 3, 3, 3}, 7.25), d1 = Q({3}, 8.25);
    run("tconv", tg::conv_transpose2d(t1, u1, d1, 2, 1, 1), {t1, u1, d1});
    Var t2 = Q({1, 4, 3, 4}, 9.25), u2 = Q({4, 2, 2, 3}, 0.75);
    run("tconv_groups", tg::conv_transpose2d(t2, u2, {}, {1, 2}, 0, 0, 2, 2), {t2, u2});
    Var t3 = Q({1, 2, 4, 3}, 1.75), u3 = Q({2, 2, 3, 3}, 2.75);
    run("tconv_outpad_dilation", tg::conv_transpose2d(t3, u3, {}, 1, 1, 1, 1, 2), {t3, u3});
    Var a1 = Q({2, 3, 5, 6}, 1.1);
    run("unfold", tg::unfold(a1 * a1, {2, 3}, {1, 2}, 1, {2, 1}), {a1});
    Var a2 = Q({2, 4, 4}, 1.2);
    run("unfold_unbatched", tg::unfold(a2, 2, 1, 0, 2), {a2});
    Var a3 = Q({0, 2, 3, 3}, 1.3);
    run("unfold_empty_batch", tg::unfold(a3, 2), {a3});
    Var f1 = Q({2, 18, 12}, 1.4);
    run("fold", tg::fold(f1 * f1, {5, 6}, {2, 3}, {1, 2}, 1, {2, 1}), {f1});
    Var f2 = Q({8, 4}, 1.5);
    run("fold_unbatched", tg::fold(f2, {3, 3}, 2), {f2});
    Var f3 = Q({1, 4, 4}, 1.6);
    run("fold_stride_gaps", tg::fold(f3, {5, 5}, 2, 1, 0, 3), {f3});
  }
}
