// Shape ops (squeeze, unsqueeze, stack, split, chunk, narrow, pad, flip, repeat, tril, triu)
// and torch.matmul's rank and broadcasting rules: PyTorch as an oracle for values and
// gradients in f64 and f32 (skipped when torch is not installed), every dtype through the
// data movement ops, and typed errors naming the op and the values.

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

#include "torch_oracle.hpp"

using tg::Shape;
using tg::Tensor;
using tg::Var;
using tgtest::check_close;
using tgtest::pattern;

namespace {
std::vector<double> vals(const Var& v) { return v.value().to_vector(); }
std::vector<int64_t> dims(const Var& v) { return v.shape().to_vector(); }
Var f64(const std::vector<double>& v, const Shape& s) {
  return tg::constant(tg::tensor(v, s, tg::f64));
}
}  // namespace

TEST_CASE("shape ops and matmul match PyTorch", "[ops][shape][oracle]") {
  TGTEST_REQUIRE_TORCH();
  // Each op at f64 and f32; gradients through sum(y * w) with a fixed weight pattern w. A
  // list of pieces (split, chunk) is compared as its flattened pieces joined, plus their
  // shapes.
  for (const auto& [single, dt, tdt, tol] : tgtest::oracle_dtypes()) {
    std::string script = std::string(tgtest::kPythonPrelude) + "D = " + dt + R"PY(
F = torch.nn.functional
def P(shape, k, scale=1.0):
    return pattern(shape, k, scale, D).requires_grad_()
def run(name, y, *xs):
    w = pattern(tuple(y.shape), 9.0, 1.0, D)
    emit(name, y)
    emit(name + "_shape", torch.tensor([float(e) for e in y.shape]))
    gs = torch.autograd.grad((y * w).sum(), xs, allow_unused=True)
    for i, g in enumerate(gs):
        emit(name + "_g%d" % i, torch.zeros_like(xs[i]) if g is None else g)
def runs(name, ys, *xs):
    shapes = []
    for p in ys:
        shapes += [float(p.dim())] + [float(e) for e in p.shape]
    emit(name + "_pieces", torch.tensor(shapes))
    run(name, torch.cat([p.reshape(-1) for p in ys]), *xs)

s1 = P((3, 1, 4, 1), 0.0)
run("squeeze_all", s1.squeeze(), s1)
run("squeeze_dim", s1.squeeze(-3), s1)
run("squeeze_keep", s1.squeeze(0), s1)
s0 = P((), 0.5)
run("squeeze_scalar", s0.squeeze(-1), s0)
a = P((3, 4), 1.0); b = P((3, 4), 2.0)
run("unsqueeze_neg", a.unsqueeze(-1), a)
run("unsqueeze_mid", a.unsqueeze(1), a)
run("unsqueeze_scalar", s0.unsqueeze(0), s0)
run("stack_last", torch.stack([a, b, a], -1), a, b)
run("stack_first", torch.stack([a, b]), a, b)
e0 = P((0, 2), 3.0); e1 = P((0, 2), 4.0)
run("stack_empty", torch.stack([e0, e1], 1), e0, e1)
run("stack_scalars", torch.stack([s0, s0 * 2]), s0)
c = P((5, 3), 5.0)
runs("split_2", torch.split(c, 2), c)
runs("split_last", torch.split(c, 2, -1), c)
runs("split_sizes", torch.split(c, [1, 0, 4]), c)
ce = P((0, 3), 6.0)
runs("split_empty", torch.split(ce, 2), ce)
runs("chunk_3", torch.chunk(c, 3), c)
runs("chunk_4_dim1", torch.chunk(c, 4, 1), c)
c6 = P((6,), 7.0)
runs("chunk_6_by_4", torch.chunk(c6, 4), c6)
c20 = P((2, 0), 8.0)
runs("chunk_empty", torch.chunk(c20, 3, 1), c20)
run("narrow_neg", torch.narrow(c, 0, -3, 2), c)
run("narrow_empty", torch.narrow(c, 1, 3, 0), c)
d = P((2, 3, 4), 9.0)
run("pad_const", F.pad(a, (1, 2, 0, 1), value=0.5), a)
run("pad_const_crop", F.pad(d, (-1, 2, 1, -1)), d)
run("pad_const_1d", F.pad(c6, (1, 1), value=-2.0), c6)
run("pad_const_empty", F.pad(ce, (1, 1)), ce)
run("pad_const_fill", F.pad(c20, (1, 2), value=3.0), c20)
run("pad_const_none", F.pad(a, ()), a)
run("pad_reflect_2d", F.pad(a, (1, 3), mode="reflect"), a)
run("pad_reflect_3d", F.pad(d, (2, 1, 1, 2), mode="reflect"), d)
r5 = P((1, 2, 3, 3, 4), 10.0)
run("pad_reflect_5d", F.pad(r5, (1, 1, 2, 0, 1, 2), mode="reflect"), r5)
r25 = P((2, 5), 11.0)
run("pad_reflect_neg", F.pad(r25, (-1, 2), mode="reflect"), r25)
r114 = P((1, 1, 4), 12.0)
run("pad_reflect_size1", F.pad(r114, (3, 2), mode="reflect"), r114)
r034 = P((0, 3, 4), 13.0)
run("pad_reflect_empty", F.pad(r034, (1, 1), mode="reflect"), r034)
run("pad_replicate_3d", F.pad(d, (1, 3), mode="replicate"), d)
run("pad_replicate_3d2", F.pad(d, (1, 3, 2, 0), mode="replicate"), d)
p4 = P((2, 2, 3, 4), 14.0)
run("pad_replicate_4d", F.pad(p4, (1, 1, 1, 2, 2, 1), mode="replicate"), p4)
run("pad_replicate_neg", F.pad(r25, (2, -1), mode="replicate"), r25)
p21 = P((2, 1), 15.0)
run("pad_replicate_size1", F.pad(p21, (2, 3), mode="replicate"), p21)
run("flip_2", torch.flip(d, [0, -1]), d)
run("flip_1", torch.flip(d, [1]), d)
f0 = P((1, 0, 3), 16.0)
run("flip_empty", torch.flip(f0, [0, 2]), f0)
run("flip_scalar", torch.flip(s0, [0]), s0)
run("repeat_lead", a.repeat(2, 1, 3), a)
run("repeat_zero", a.repeat(0, 2), a)
q5 = P((1, 2, 2, 1, 2), 17.0)
run("repeat_many", q5.repeat(2, 2, 1, 2, 2, 2), q5)
run("repeat_scalar", s0.repeat(2, 3), s0)
run("repeat_ones", a.repeat(1, 1), a)
run("tril_1", torch.tril(d, 1), d)
run("triu_m1", torch.triu(d, -1), d)
run("tril_none", torch.tril(a, -5), a)
t11 = P((1, 1), 18.0)
run("triu_11", torch.triu(t11), t11)
run("tril_empty", torch.tril(r034), r034)
run("triu_none", torch.triu(a, 10), a)
v = P((4,), 20.0); v2 = P((4,), 21.0)
def mm(name, x, y):
    run(name, torch.matmul(x, y), x, y)
mm("mm_1_1", v, v2)
mm("mm_2_1", P((3, 4), 22.0), v)
mm("mm_1_2", v, P((4, 5), 23.0))
mm("mm_1_3", v, P((2, 4, 3), 24.0))
mm("mm_3_1", P((2, 3, 4), 25.0), v)
mm("mm_4_1", P((2, 1, 3, 4), 26.0), v)
mm("mm_1_4", v, P((2, 2, 4, 3), 27.0))
mm("mm_2_2", P((3, 4), 28.0), P((4, 5), 29.0))
mm("mm_3_3", P((2, 3, 4), 30.0), P((2, 4, 5), 31.0))
mm("mm_3_2", P((5, 3, 4), 32.0), P((4, 2), 33.0))
mm("mm_2_3", P((3, 4), 34.0), P((2, 4, 5), 35.0))
mm("mm_3_3_b1", P((2, 3, 4), 36.0), P((1, 4, 5), 37.0))
mm("mm_3_3_a1", P((1, 3, 4), 38.0), P((2, 4, 5), 39.0))
mm("mm_4_3", P((2, 1, 3, 4), 40.0), P((5, 4, 2), 41.0))
mm("mm_3_4", P((1, 2, 3), 42.0), P((3, 1, 3, 2), 43.0))
mm("mm_2_4_b1", P((3, 4), 44.0), P((1, 1, 4, 2), 45.0))
mm("mm_empty_batch", P((0, 3, 4), 46.0), P((4, 2), 47.0))
mm("mm_empty_batch_b1", P((2, 0, 3, 4), 48.0), P((1, 4, 2), 49.0))
mm("mm_empty_bcast", P((1, 3, 4), 50.0), P((0, 4, 2), 51.0))
mm("mm_k0", P((2, 3, 0), 52.0), P((2, 0, 5), 53.0))
mm("mm_k0_bcast", P((1, 3, 0), 54.0), P((2, 0, 5), 55.0))
mm("mm_m0", P((2, 0, 4), 56.0), P((1, 4, 3), 57.0))
mm("mm_size1", P((1, 1, 4), 58.0), P((3, 4, 1), 59.0))
mm("mm_1_1_empty", P((0,), 60.0), P((0,), 61.0))
)PY";
    const auto torch = tgtest::run_python(script);
    auto P = [&](const Shape& s, double k) { return tg::param(pattern(s, k).to(tdt)); };
    auto run = [&](const std::string& name, const Var& y, const std::vector<Var>& xs) {
      INFO(name << (single ? " f32" : " f64"));
      REQUIRE(torch.count(name) == 1);
      std::vector<double> shape;
      for (int64_t e : y.shape()) shape.push_back(static_cast<double>(e));
      CHECK(shape == torch.at(name + "_shape"));
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
    auto runs = [&](const std::string& name, const std::vector<Var>& ys,
                    const std::vector<Var>& xs) {
      INFO(name << (single ? " f32" : " f64"));
      std::vector<double> shapes;
      std::vector<Var> flat;
      for (const Var& p : ys) {
        shapes.push_back(p.dim());
        for (int64_t e : p.shape()) shapes.push_back(static_cast<double>(e));
        flat.push_back(tg::reshape(p, {p.numel()}));
      }
      REQUIRE(torch.count(name + "_pieces") == 1);
      CHECK(shapes == torch.at(name + "_pieces"));
      run(name, tg::concat(flat), xs);
    };
    const Var s1 = P({3, 1, 4, 1}, 0.0);
    run("squeeze_all", tg::squeeze(s1), {s1});
    run("squeeze_dim", tg::squeeze(s1, -3), {s1});
    run("squeeze_keep", tg::squeeze(s1, 0), {s1});
    const Var s0 = P({}, 0.5);
    run("squeeze_scalar", tg::squeeze(s0, -1), {s0});
    const Var a = P({3, 4}, 1.0), b = P({3, 4}, 2.0);
    run("unsqueeze_neg", tg::unsqueeze(a, -1), {a});
    run("unsqueeze_mid", tg::unsqueeze(a, 1), {a});
    run("unsqueeze_scalar", tg::unsqueeze(s0, 0), {s0});
    run("stack_last", tg::stack({a, b, a}, -1), {a, b});
    run("stack_first", tg::stack({a, b}), {a, b});
    const Var e0 = P({0, 2}, 3.0), e1 = P({0, 2}, 4.0);
    run("stack_empty", tg::stack({e0, e1}, 1), {e0, e1});
    run("stack_scalars", tg::stack({s0, s0 * 2.0}), {s0});
    const Var c = P({5, 3}, 5.0);
    runs("split_2", tg::split(c, 2), {c});
    runs("split_last", tg::split(c, 2, -1), {c});
    runs("split_sizes", tg::split(c, std::vector<int64_t>{1, 0, 4}), {c});
    const Var ce = P({0, 3}, 6.0);
    runs("split_empty", tg::split(ce, 2), {ce});
    runs("chunk_3", tg::chunk(c, 3), {c});
    runs("chunk_4_dim1", tg::chunk(c, 4, 1), {c});
    const Var c6 = P({6}, 7.0);
    runs("chunk_6_by_4", tg::chunk(c6, 4), {c6});
    const Var c20 = P({2, 0}, 8.0);
    runs("chunk_empty", tg::chunk(c20, 3, 1), {c20});
    run("narrow_neg", tg::narrow(c, 0, -3, 2), {c});
    run("narrow_empty", tg::narrow(c, 1, 3, 0), {c});
    const Var d = P({2, 3, 4}, 9.0);
    run("pad_const", tg::pad(a, {1, 2, 0, 1}, "constant", 0.5), {a});
    run("pad_const_crop", tg::pad(d, {-1, 2, 1, -1}), {d});
    run("pad_const_1d", tg::pad(c6, {1, 1}, "constant", -2.0), {c6});
    run("pad_const_empty", tg::pad(ce, {1, 1}), {ce});
    run("pad_const_fill", tg::pad(c20, {1, 2}, "constant", 3.0), {c20});
    run("pad_const_none", tg::pad(a, {}), {a});
    run("pad_reflect_2d", tg::pad(a, {1, 3}, "reflect"), {a});
    run("pad_reflect_3d", tg::pad(d, {2, 1, 1, 2}, "reflect"), {d});
    const Var r5 = P({1, 2, 3, 3, 4}, 10.0);
    run("pad_reflect_5d", tg::pad(r5, {1, 1, 2, 0, 1, 2}, "reflect"), {r5});
    const Var r25 = P({2, 5}, 11.0);
    run("pad_reflect_neg", tg::pad(r25, {-1, 2}, "reflect"), {r25});
    const Var r114 = P({1, 1, 4}, 12.0);
    run("pad_reflect_size1", tg::pad(r114, {3, 2}, "reflect"), {r114});
    const Var r034 = P({0, 3, 4}, 13.0);
    run("pad_reflect_empty", tg::pad(r034, {1, 1}, "reflect"), {r034});
    run("pad_replicate_3d", tg::pad(d, {1, 3}, "replicate"), {d});
    run("pad_replicate_3d2", tg::pad(d, {1, 3, 2, 0}, "replicate"), {d});
    const Var p4 = P({2, 2, 3, 4}, 14.0);
    run("pad_replicate_4d", tg::pad(p4, {1, 1, 1, 2, 2, 1}, "replicate"), {p4});
    run("pad_replicate_neg", tg::pad(r25, {2, -1}, "replicate"), {r25});
    const Var p21 = P({2, 1}, 15.0);
    run("pad_replicate_size1", tg::pad(p21, {2, 3}, "replicate"), {p21});
    run("flip_2", tg::flip(d, {0, -1}), {d});
    run("flip_1", tg::flip(d, {1}), {d});
    const Var f0 = P({1, 0, 3}, 16.0);
    run("flip_empty", tg::flip(f0, {0, 2}), {f0});
    run("flip_scalar", tg::flip(s0, {0}), {s0});
    run("repeat_lead", tg::repeat(a, {2, 1, 3}), {a});
    run("repeat_zero", tg::repeat(a, {0, 2}), {a});
    const Var q5 = P({1, 2, 2, 1, 2}, 17.0);
    run("repeat_many", tg::repeat(q5, {2, 2, 1, 2, 2, 2}), {q5});
    run("repeat_scalar", tg::repeat(s0, {2, 3}), {s0});
    run("repeat_ones", tg::repeat(a, {1, 1}), {a});
    run("tril_1", tg::tril(d, 1), {d});
    run("triu_m1", tg::triu(d, -1), {d});
    run("tril_none", tg::tril(a, -5), {a});
    const Var t11 = P({1, 1}, 18.0);
    run("triu_11", tg::triu(t11), {t11});
    run("tril_empty", tg::tril(r034), {r034});
    run("triu_none", tg::triu(a, 10), {a});
    const Var v = P({4}, 20.0), v2 = P({4}, 21.0);
    auto mm = [&](const std::string& name, const Var& x, const Var& y) {
      run(name, tg::matmul(x, y), {x, y});
    };
    mm("mm_1_1", v, v2);
    mm("mm_2_1", P({3, 4}, 22.0), v);
    mm("mm_1_2", v, P({4, 5}, 23.0));
    mm("mm_1_3", v, P({2, 4, 3}, 24.0));
    mm("mm_3_1", P({2, 3, 4}, 25.0), v);
    mm("mm_4_1", P({2, 1, 3, 4}, 26.0), v);
    mm("mm_1_4", v, P({2, 2, 4, 3}, 27.0));
    mm("mm_2_2", P({3, 4}, 28.0), P({4, 5}, 29.0));
    mm("mm_3_3", P({2, 3, 4}, 30.0), P({2, 4, 5}, 31.0));
    mm("mm_3_2", P({5, 3, 4}, 32.0), P({4, 2}, 33.0));
    mm("mm_2_3", P({3, 4}, 34.0), P({2, 4, 5}, 35.0));
    mm("mm_3_3_b1", P({2, 3, 4}, 36.0), P({1, 4, 5}, 37.0));
    mm("mm_3_3_a1", P({1, 3, 4}, 38.0), P({2, 4, 5}, 39.0));
    mm("mm_4_3", P({2, 1, 3, 4}, 40.0), P({5, 4, 2}, 41.0));
    mm("mm_3_4", P({1, 2, 3}, 42.0), P({3, 1, 3, 2}, 43.0));
    mm("mm_2_4_b1", P({3, 4}, 44.0), P({1, 1, 4, 2}, 45.0));
    mm("mm_empty_batch", P({0, 3, 4}, 46.0), P({4, 2}, 47.0));
    mm("mm_empty_batch_b1", P({2, 0, 3, 4}, 48.0), P({1, 4, 2}, 49.0));
    mm("mm_empty_bcast", P({1, 3, 4}, 50.0), P({0, 4, 2}, 51.0));
    mm("mm_k0", P({2, 3, 0}, 52.0), P({2, 0, 5}, 53.0));
    mm("mm_k0_bcast", P({1, 3, 0}, 54.0), P({2, 0, 5}, 55.0));
    mm("mm_m0", P({2, 0, 4}, 56.0), P({1, 4, 3}, 57.0));
    mm("mm_size1", P({1, 1, 4}, 58.0), P({3, 4, 1}, 59.0));
    mm("mm_1_1_empty", P({0}, 60.0), P({0}, 61.0));
  }
}

TEST_CASE("shape ops move every dtype and record only floating outputs", "[ops][shape]") {
  const Var n = tg::constant(Tensor(std::vector<int64_t>{1, 2, 3, 4, 5, 6}, Shape{2, 3}));
  const Var m = tg::constant(tg::tensor({1, 0, 1, 1, 1, 0}, {2, 3}, tg::boolean));
  CHECK(vals(tg::pad(n, {1, 0}, "constant", 7.9)) ==
        std::vector<double>{7, 1, 2, 3, 7, 4, 5, 6});  // the value converts as PyTorch's
  CHECK(tg::pad(n, {1, 0}).dtype() == tg::i64);
  CHECK(vals(tg::pad(n, {2, 0}, "reflect")) == std::vector<double>{3, 2, 1, 2, 3, 6, 5, 4, 5, 6});
  CHECK(vals(tg::flip(m, {1})) == std::vector<double>{1, 0, 1, 0, 1, 1});
  CHECK(tg::flip(m, {1}).dtype() == tg::boolean);
  CHECK(vals(tg::tril(m)) == std::vector<double>{1, 0, 0, 1, 1, 0});
  CHECK(vals(tg::triu(n, 1)) == std::vector<double>{0, 2, 3, 0, 0, 6});
  CHECK(vals(tg::repeat(n, {1, 2})) == std::vector<double>{1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6});
  CHECK(dims(tg::stack({m, m}, -1)) == std::vector<int64_t>{2, 3, 2});
  CHECK(dims(tg::squeeze(tg::unsqueeze(n, 0))) == std::vector<int64_t>{2, 3});
  const auto pieces = tg::chunk(n, 2, 1);
  REQUIRE(pieces.size() == 2);
  CHECK(vals(pieces[1]) == std::vector<double>{3, 6});
  CHECK(vals(tg::narrow(n, 0, 1, 1)) == std::vector<double>{4, 5, 6});
  for (const Var& y : {tg::pad(n, {1, 1}, "replicate"), tg::flip(n, {0}), tg::tril(n),
                       tg::repeat(n, {2, 1}), tg::narrow(n, 1, 0, 2), tg::squeeze(n)})
    CHECK_FALSE(y.requires_grad());
  // a floating input that wants a gradient records
  const Var x = tg::param(tg::ones({2, 3}));
  for (const Var& y : {tg::pad(x, {1, 1}, "replicate"), tg::flip(x, {0}), tg::tril(x),
                       tg::repeat(x, {2, 1}), tg::narrow(x, 1, 0, 2), tg::squeeze(x)})
    CHECK(y.requires_grad());
}

TEST_CASE("shape ops give values PyTorch gives (spot checks without torch)", "[ops][shape]") {
  const Var x = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(vals(tg::pad(x, {2, 1}, "reflect")) ==
        std::vector<double>{3, 2, 1, 2, 3, 2, 6, 5, 4, 5, 6, 5});
  CHECK(vals(tg::pad(x, {1, 2}, "replicate")) ==
        std::vector<double>{1, 1, 2, 3, 3, 3, 4, 4, 5, 6, 6, 6});
  CHECK(vals(tg::pad(x, {0, 0, 1, 0}, "constant", 9)) ==
        std::vector<double>{9, 9, 9, 1, 2, 3, 4, 5, 6});
  CHECK(vals(tg::flip(x, {0, 1})) == std::vector<double>{6, 5, 4, 3, 2, 1});
  CHECK(vals(tg::tril(x, -1)) == std::vector<double>{0, 0, 0, 4, 0, 0});
  CHECK(vals(tg::matmul(f64({1, 2, 3}, {3}), f64({4, 5, 6}, {3}))) == std::vector<double>{32});
  CHECK(tg::matmul(f64({1, 2, 3}, {3}), f64({4, 5, 6}, {3})).dim() == 0);
  const auto parts = tg::split(x, std::vector<int64_t>{2, 1}, -1);
  REQUIRE(parts.size() == 2);
  CHECK(vals(parts[0]) == std::vector<double>{1, 2, 4, 5});
  CHECK(vals(parts[1]) == std::vector<double>{3, 6});
}

TEST_CASE("matmul and linear over an empty contraction give zeros", "[ops][shape]") {
  // [.., M, 0] x [0, N]: zeros, as torch.matmul (a -1 extent cannot be inferred from 0).
  const Var a = tg::param(tg::zeros({2, 3, 0}, tg::f64));
  const Var y = tg::matmul(a, tg::constant(tg::zeros({0, 5}, tg::f64)));
  CHECK(y.shape() == Shape{2, 3, 5});
  CHECK(tg::equal(y.value(), tg::zeros({2, 3, 5}, tg::f64)));
  CHECK(tg::matmul(a, tg::constant(tg::zeros({0}, tg::f64))).shape() == Shape{2, 3});
  const Var l =
      tg::linear(a, tg::constant(tg::zeros({4, 0}, tg::f64)), tg::constant(tg::ones({4}, tg::f64)));
  CHECK(l.shape() == Shape{2, 3, 4});
  CHECK(tg::equal(l.value(), tg::ones({2, 3, 4}, tg::f64)));
  tg::sum(y).backward();
  CHECK(a.grad().shape() == Shape{2, 3, 0});
}

TEST_CASE("matmul reads a broadcast operand in place and sums its gradient directly",
          "[ops][matmul]") {
  // [2, 1, 3, 4] x [5, 4, 2]: the batch [2, 5] is never materialized for either operand,
  // and each gradient comes back in its operand's shape from the product itself (the
  // engine has nothing left to sum).
  const Var a = tg::param(pattern({2, 1, 3, 4}, 1.0)), b = tg::param(pattern({5, 4, 2}, 2.0));
  const Var c = tg::matmul(a, b);
  CHECK(dims(c) == std::vector<int64_t>{2, 5, 3, 2});
  tg::sum(c).backward();
  CHECK(dims(a.grad()) == std::vector<int64_t>{2, 1, 3, 4});
  CHECK(dims(b.grad()) == std::vector<int64_t>{5, 4, 2});
  // The same numbers as the explicitly broadcast product.
  const Var ae =
      tg::param(tg::expand(tg::constant(pattern({2, 1, 3, 4}, 1.0)), {2, 5, 3, 4}).value());
  const Var be = tg::param(tg::expand(tg::constant(pattern({5, 4, 2}, 2.0)), {2, 5, 4, 2}).value());
  const Var ce = tg::matmul(ae, be);
  check_close(vals(c), vals(ce), 1e-12);
  tg::sum(ce).backward();
  check_close(vals(a.grad()), vals(tg::sum(ae.grad(), {1}, true)), 1e-12);
  check_close(vals(b.grad()), vals(tg::sum(be.grad(), {0})), 1e-12);
  // A broadcast-only right operand runs as one gemm over the left's rows: its gradient is
  // one product too (recorded as a rank-2 matmul, under the reshapes).
  const Var x = tg::param(pattern({5, 3, 4}, 3.0)), w = tg::param(pattern({1, 4, 2}, 4.0));
  tg::sum(tg::matmul(x, w)).backward();
  CHECK(dims(w.grad()) == std::vector<int64_t>{1, 4, 2});
}

TEST_CASE("shape ops and matmul throw typed errors naming the op and the values",
          "[ops][shape][errors]") {
  const Var x = tg::param(tg::ones({2, 3}));
  const Var s = tg::param(tg::ones({}));
  using Catch::Contains;
  // dims out of range
  CHECK_THROWS_AS(tg::squeeze(x, 2), tg::IndexError);
  CHECK_THROWS_WITH(tg::squeeze(x, -3),
                    Contains("squeeze") && Contains("-3") && Contains("[-2, 1]"));
  CHECK_THROWS_AS(tg::squeeze(s, 1), tg::IndexError);
  CHECK_NOTHROW(tg::squeeze(s, -1));
  CHECK_THROWS_WITH(tg::unsqueeze(x, 3),
                    Contains("unsqueeze") && Contains("3") && Contains("[-3, 2]"));
  CHECK_THROWS_AS(tg::unsqueeze(x, -4), tg::IndexError);
  CHECK_NOTHROW(tg::unsqueeze(x, -3));
  CHECK_THROWS_AS(tg::stack({x, x}, 3), tg::IndexError);
  CHECK_THROWS_AS(tg::narrow(x, 2, 0, 1), tg::IndexError);
  CHECK_THROWS_AS(tg::narrow(s, 0, 0, 1), tg::IndexError);
  CHECK_THROWS_AS(tg::flip(x, {2}), tg::IndexError);
  CHECK_THROWS_WITH(tg::flip(x, {0, -2}), Contains("flip") && Contains("more than once"));
  CHECK_THROWS_AS(tg::split(x, 1, 2), tg::IndexError);
  CHECK_THROWS_AS(tg::chunk(x, 1, -3), tg::IndexError);
  // bad extents and arguments
  CHECK_THROWS_WITH(tg::narrow(x, 1, 2, 2), Contains("narrow") && Contains("start 2") &&
                                                Contains("length 2") && Contains("[2, 3]"));
  CHECK_THROWS_AS(tg::narrow(x, 1, 4, 0), tg::IndexError);
  CHECK_THROWS_AS(tg::narrow(x, 1, 0, -1), tg::IndexError);
  CHECK_THROWS_AS(tg::stack({}), tg::ShapeError);
  CHECK_THROWS_WITH(tg::stack({x, tg::param(tg::ones({3, 2}))}),
                    Contains("stack") && Contains("[2, 3]") && Contains("[3, 2]"));
  CHECK_THROWS_AS(tg::stack({x, tg::param(tg::ones({2, 3}, tg::f64))}), tg::DtypeError);
  // bad split sizes
  CHECK_THROWS_AS(tg::split(x, std::vector<int64_t>{1, 1}, 1), tg::ShapeError);
  CHECK_THROWS_WITH(tg::split(x, std::vector<int64_t>{1, 1}, 1),
                    Contains("split") && Contains("[1, 1]") && Contains("3"));
  CHECK_THROWS_AS(tg::split(x, std::vector<int64_t>{4, -1}, 1), tg::Error);
  CHECK_THROWS_WITH(tg::split(x, -1), Contains("split") && Contains("-1"));
  CHECK_THROWS_WITH(tg::split(x, 0), Contains("split") && Contains("0"));
  CHECK_THROWS_AS(tg::split(s, 1), tg::ShapeError);
  CHECK_THROWS_WITH(tg::chunk(x, 0), Contains("chunk") && Contains("0"));
  CHECK_THROWS_AS(tg::chunk(s, 1), tg::ShapeError);
  // bad pad
  CHECK_THROWS_WITH(tg::pad(x, {1}), Contains("pad") && Contains("odd"));
  CHECK_THROWS_AS(tg::pad(x, {1, 1, 1, 1, 1, 1}), tg::ShapeError);
  CHECK_THROWS_WITH(tg::pad(x, {1, 1}, "circular"),
                    Contains("pad") && Contains("circular") && Contains("reflect"));
  CHECK_THROWS_WITH(tg::pad(x, {1, 1}, "reflect", 2.0), Contains("pad") && Contains("value"));
  CHECK_THROWS_WITH(tg::pad(x, {3, 0}, "reflect"), Contains("pad") && Contains("reflect") &&
                                                       Contains("[2, 3]") && Contains("(3, 0)"));
  CHECK_NOTHROW(tg::pad(x, {2, 2}, "reflect"));
  CHECK_THROWS_AS(tg::pad(x, {-2, -1}, "replicate"), tg::ShapeError);
  CHECK_THROWS_AS(tg::pad(x, {-2, -2}), tg::ShapeError);
  CHECK_THROWS_AS(tg::pad(tg::param(tg::ones({4})), {1, 1}, "reflect"), tg::ShapeError);
  CHECK_THROWS_AS(tg::pad(x, {1, 1, 1, 1}, "replicate"), tg::ShapeError);
  CHECK_THROWS_AS(tg::pad(tg::param(tg::ones({2, 0})), {1, 1}, "replicate"), tg::ShapeError);
  // repeat and triangles
  CHECK_THROWS_WITH(tg::repeat(x, {2}), Contains("repeat") && Contains("[2, 3]"));
  CHECK_THROWS_AS(tg::repeat(x, {2}), tg::ShapeError);
  CHECK_THROWS_AS(tg::repeat(x, {-1, 2}), tg::Error);
  CHECK_THROWS_WITH(tg::tril(tg::param(tg::ones({4}))), Contains("tril") && Contains("[4]"));
  CHECK_THROWS_AS(tg::triu(s), tg::ShapeError);
  // matmul
  CHECK_THROWS_WITH(tg::matmul(s, x), Contains("matmul") && Contains("rank"));
  CHECK_THROWS_WITH(tg::matmul(tg::param(tg::ones({4})), tg::param(tg::ones({3}))),
                    Contains("matmul") && Contains("[4]") && Contains("[3]"));
  CHECK_THROWS_WITH(
      tg::matmul(tg::param(tg::ones({2, 3, 4})), tg::param(tg::ones({5, 4, 6}))),
      Contains("matmul") && Contains("[2, 3, 4]") && Contains("[5, 4, 6]") && Contains("batch"));
  CHECK_THROWS_WITH(tg::matmul(tg::param(tg::ones({2, 3, 4})), tg::param(tg::ones({2, 5, 6}))),
                    Contains("matmul") && Contains("inner extents 4 and 5"));
  CHECK_THROWS_AS(
      tg::matmul(tg::param(tg::ones({1, 3, 4})), tg::param(tg::ones({2, 4, 2}, tg::f64))),
      tg::DtypeError);
  CHECK_THROWS_WITH(tg::matmul(tg::constant(tg::ones({1, 3, 4}, tg::i64)),
                               tg::constant(tg::ones({2, 4, 2}, tg::i64))),
                    Contains("matmul: ") && Contains("i64"));
}
