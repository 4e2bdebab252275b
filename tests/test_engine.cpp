#include <catch2/catch.hpp>
#include <cmath>
#include <thread>
#include <vector>

#include <tapegrad/tapegrad.hpp>

using tg::Tensor;
using tg::Var;

namespace {
Var scalar_param(double v) { return tg::param(tg::scalar_tensor(v, tg::f64)); }
double g(const Var& v) { return v.grad().item(); }
}  // namespace

TEST_CASE("diamond graph: both paths contribute", "[engine]") {
  // f = (a*b) * (a+b) = a^2 b + a b^2;  df/da = 2ab + b^2, df/db = a^2 + 2ab
  Var a = scalar_param(3.0), b = scalar_param(-2.0);
  Var f = (a * b) * (a + b);
  CHECK(f.item() == Approx(-6.0));
  f.backward();
  CHECK(g(a) == Approx(2 * 3 * -2 + 4));
  CHECK(g(b) == Approx(9 + 2 * 3 * -2));
}

TEST_CASE("a value used many times accumulates every use", "[engine]") {
  Var x = scalar_param(0.5);
  Var total = tg::constant(tg::scalar_tensor(0.0, tg::f64));
  for (int i = 1; i <= 100; ++i) total = total + x * static_cast<double>(i);
  total.backward();
  CHECK(g(x) == Approx(5050.0));
}

TEST_CASE("broadcast gradients are summed back to the input shape by the engine", "[engine]") {
  Var a = tg::param(tg::ones({3, 4}, tg::f64));
  Var b = tg::param(tg::tensor({1, 2, 3, 4}, {4}, tg::f64));
  Var c = tg::param(tg::ones({3, 1}, tg::f64));
  tg::sum(a * b + c).backward();
  CHECK(b.grad().shape() == tg::Shape{4});
  CHECK(b.grad().value().to_vector() == std::vector<double>{3, 3, 3, 3});
  CHECK(c.grad().shape() == tg::Shape{3, 1});
  CHECK(c.grad().value().to_vector() == std::vector<double>{4, 4, 4});
  CHECK(a.grad().value().to_vector() == std::vector<double>{1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4});
}

TEST_CASE("gradients accumulate across backward calls until zero_grad", "[engine]") {
  Var x = scalar_param(2.0);
  (x * x).backward();
  (x * x).backward();
  CHECK(g(x) == Approx(8.0));
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
  (x * 3.0).backward();
  CHECK(g(x) == Approx(3.0));
}

TEST_CASE("the accumulated gradient never aliases another tensor", "[engine]") {
  // add's backward hands the same dy to both inputs; accumulating into one leaf's grad must
  // not change the other's.
  Var a = tg::param(tg::ones({2}, tg::f64)), b = tg::param(tg::ones({2}, tg::f64));
  Var dy = tg::constant(tg::tensor({1, 2}, {2}, tg::f64));
  (a + b).backward(dy);
  (a * 10.0).backward(dy);
  CHECK(a.grad().value().to_vector() == std::vector<double>{11, 22});
  CHECK(b.grad().value().to_vector() == std::vector<double>{1, 2});
  CHECK(dy.value().to_vector() == std::vector<double>{1, 2});
}

TEST_CASE("a weight used by several linears gets its gradient summed in place", "[engine]") {
  // linear's backward adds dW into the weight's pending sum (BackwardCtx::accumulating_grad);
  // the result, hooks, .grad accumulation, tg::grad and create_graph see the plain sum.
  const Tensor w0 = tg::tensor({0.5, -1, 2, 0.25, 1.5, -0.75}, {2, 3}, tg::f64);
  const Tensor b0 = tg::tensor({0.1, -0.2}, {2}, tg::f64);
  std::vector<Tensor> xs, ws;
  for (int t = 0; t < 4; ++t) {
    std::vector<double> x, wt;
    for (int i = 0; i < 6; ++i) x.push_back(0.3 * i - 0.7 * t + 0.1);
    for (int i = 0; i < 4; ++i) wt.push_back(1.0 + 0.5 * i - 0.25 * t);
    xs.push_back(tg::tensor(x, {2, 3}, tg::f64));
    ws.push_back(tg::tensor(wt, {2, 2}, tg::f64));
  }
  // dW = sum_t ws[t]^T xs[t]; db = sum_t sum_rows(ws[t])
  std::vector<double> want(6, 0.0), want_b(2, 0.0);
  for (int t = 0; t < 4; ++t)
    for (int o = 0; o < 2; ++o)
      for (int i = 0; i < 3; ++i) {
        for (int r = 0; r < 2; ++r) want[o * 3 + i] += ws[t].at({r, o}) * xs[t].at({r, i});
        if (i == 0) want_b[o] += ws[t].at({0, o}) + ws[t].at({1, o});
      }
  auto loss = [&](const Var& w, const Var& b) {
    Var total = tg::sum(tg::linear(tg::constant(xs[0]), w, b) * tg::constant(ws[0]));
    for (int t = 1; t < 4; ++t)
      total = total + tg::sum(tg::linear(tg::constant(xs[t]), w, b) * tg::constant(ws[t]));
    return total;
  };
  auto check = [&](const Tensor& got, const std::vector<double>& expect, double times) {
    const std::vector<double> v = got.to_vector();
    REQUIRE(v.size() == expect.size());
    for (size_t i = 0; i < v.size(); ++i) CHECK(v[i] == Approx(times * expect[i]));
  };
  Var w = tg::param(w0.clone()), b = tg::param(b0.clone());
  int hook_calls = 0;
  w.register_hook([&](const Var& grad) {
    ++hook_calls;
    check(grad.value(), want, 1.0);
    return Var();
  });
  loss(w, b).backward();
  CHECK(hook_calls == 1);
  check(w.grad().value(), want, 1.0);
  check(b.grad().value(), want_b, 1.0);
  loss(w, b).backward();  // .grad accumulates across calls
  check(w.grad().value(), want, 2.0);
  const Var w2 = tg::param(w0.clone());
  check(tg::grad({loss(w2, b)}, {w2})[0].value(), want, 1.0);
  const Var w3 = tg::param(w0.clone());
  const Var dw = tg::grad({loss(w3, b)}, {w3}, {}, {.create_graph = true})[0];
  check(dw.value(), want, 1.0);
}

TEST_CASE("crops of one tensor add their gradients into its sum in place", "[engine]") {
  // narrow's backward adds dy into the input's pending sum when the engine allows it; the
  // result is the padded gradients' sum, overlapping crops included.
  const Var x = tg::param(tg::arange(12, tg::f64).reshape({2, 6}));
  const auto pieces = tg::chunk(x, 3, 1);
  Var loss = tg::sum(tg::narrow(x, 1, 1, 3) * 10.0);
  for (int k = 0; k < 3; ++k) loss = loss + tg::sum(pieces[size_t(k)] * double(k + 1));
  loss.backward();
  // chunk k gives k + 1 on columns 2k, 2k + 1; the narrow adds 10 on columns 1-3
  const std::vector<double> row{1, 11, 12, 12, 3, 3};
  std::vector<double> want = row;
  want.insert(want.end(), row.begin(), row.end());
  CHECK(x.grad().value().to_vector() == want);
  const Var g = tg::grad({tg::sum(tg::narrow(x, 0, 1, 1)) + tg::sum(tg::narrow(x, 1, 5, 1))}, {x},
                         {}, {.create_graph = true})[0];
  CHECK(g.value().to_vector() == std::vector<double>{0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2});
}

TEST_CASE("retain_graph allows a second backward, without it the second one throws", "[engine]") {
  Var x = scalar_param(3.0);
  Var y = tg::exp(x) * x;
  y.backward({.retain_graph = true});
  y.backward();
  CHECK(g(x) == Approx(2 * (std::exp(3.0) * 4.0)));
  CHECK_THROWS_AS(y.backward(), tg::GraphError);
  try {
    y.backward();
  } catch (const tg::GraphError& e) {
    CHECK_THAT(e.what(), Catch::Contains("second time") && Catch::Contains("retain_graph"));
  }
}

TEST_CASE("backward of a non-scalar needs a gradient", "[engine]") {
  Var x = tg::param(tg::ones({3, 2}));
  Var y = x * 2.0;
  CHECK_THROWS_WITH(y.backward(), Catch::Contains("[3, 2]"));
  CHECK_THROWS_AS(y.backward(tg::constant(tg::ones({2}))), tg::GraphError);
  y.backward(tg::constant(tg::full({3, 2}, 0.5)));
  CHECK(x.grad().value().to_vector() == std::vector<double>(6, 1.0));
  CHECK_THROWS_AS(tg::constant(tg::ones({1})).backward(), tg::GraphError);
}

TEST_CASE("create_graph: Hessian-vector products equal the closed form", "[engine]") {
  // f(x) = x^T A x + sum(x^3):  H = A + A^T + diag(6x);  Hv = (A + A^T) v + 6 x * v
  const std::vector<double> A{1, 2, 0, -1, 3, 1, 2, 0, -2};
  const std::vector<double> xs{0.5, -1.0, 2.0}, vs{1.0, 0.5, -1.0};
  Var a = tg::constant(tg::tensor(A, {3, 3}, tg::f64));
  Var x = tg::param(tg::tensor(xs, {3, 1}, tg::f64));
  Var v = tg::constant(tg::tensor(vs, {3, 1}, tg::f64));
  Var f = tg::sum(tg::matmul(tg::matmul(x, a, true, false), x)) + tg::sum(tg::pow(x, 3.0));
  auto gx = tg::grad({f}, {x}, {}, {.create_graph = true})[0];
  CHECK(gx.requires_grad());
  auto hv = tg::grad({tg::sum(gx * v)}, {x})[0];
  for (int i = 0; i < 3; ++i) {
    double expect = 6 * xs[i] * vs[i];
    for (int j = 0; j < 3; ++j) expect += (A[i * 3 + j] + A[j * 3 + i]) * vs[j];
    CHECK(hv.value().at({i, 0}) == Approx(expect));
  }
  CHECK_FALSE(x.grad().defined());  // tg::grad does not touch .grad
}

TEST_CASE("create_graph through backward(): gradient penalty", "[engine]") {
  // y = w * x^2 ; dy/dx = 2 w x ; penalty = (dy/dx)^2 ; d penalty / dw = 8 w x^2
  Var x = scalar_param(1.5), w = scalar_param(0.7);
  Var y = w * x * x;
  auto dx = tg::grad({y}, {x}, {}, {.create_graph = true})[0];
  Var penalty = dx * dx;
  penalty.backward();
  CHECK(g(w) == Approx(8 * 0.7 * 1.5 * 1.5));
}

TEST_CASE("tg::grad: several inputs, unused inputs, non-leaf inputs", "[engine]") {
  Var a = scalar_param(2.0), b = scalar_param(5.0), unused = scalar_param(1.0);
  Var h = a * a;
  Var y = h * b;
  auto gs = tg::grad({y}, {a, b, h}, {}, {.retain_graph = true});
  CHECK(gs[0].item() == Approx(20.0));
  CHECK(gs[1].item() == Approx(4.0));
  CHECK(gs[2].item() == Approx(5.0));
  CHECK_THROWS_WITH(tg::grad({y}, {unused}, {}, {.retain_graph = true}),
                    Catch::Contains("allow_unused"));
  auto gu = tg::grad({y}, {unused}, {}, {.allow_unused = true});
  CHECK_FALSE(gu[0].defined());
}

TEST_CASE("no-grad mode and detach record nothing", "[engine]") {
  Var x = scalar_param(2.0);
  {
    tg::NoGradGuard guard;
    CHECK_FALSE(tg::is_grad_enabled());
    Var y = x * x;
    CHECK(y.is_leaf());
    CHECK_FALSE(y.requires_grad());
    {
      tg::GradModeGuard on(true);
      CHECK((x * x).requires_grad());
    }
    CHECK_FALSE(tg::is_grad_enabled());
  }
  CHECK(tg::is_grad_enabled());
  Var d = (x * x).detach();
  CHECK(d.is_leaf());
  CHECK_FALSE(d.requires_grad());
  CHECK(d.item() == 4.0);
  Var z = d * x;
  z.backward();
  CHECK(g(x) == Approx(4.0));  // only the direct path: d is a constant
  Var c = tg::constant(tg::ones({2}));
  CHECK_FALSE((c * c).requires_grad());
  CHECK(std::string((c * c).op()) == "leaf");
}

TEST_CASE("hooks fire once with the full gradient and can replace it", "[engine]") {
  Var x = scalar_param(3.0);
  int calls = 0;
  double seen = 0;
  x.register_hook([&](const Var& grad) {
    ++calls;
    seen = grad.item();
    return grad * 2.0;
  });
  Var y = x * x + x * 4.0;  // dy/dx = 2x + 4 = 10, reaching x along three uses
  y.backward();
  CHECK(calls == 1);
  CHECK(seen == Approx(10.0));
  CHECK(g(x) == Approx(20.0));

  Var a = scalar_param(1.0);
  Var h = a * 3.0;
  int inner_calls = 0;
  const size_t id = h.register_hook([&](const Var& grad) {
    ++inner_calls;
    CHECK(grad.item() == Approx(2.0));
    return Var();
  });
  (h * 2.0).backward({.retain_graph = true});
  CHECK(inner_calls == 1);
  CHECK(g(a) == Approx(6.0));
  h.remove_hook(id);
  (h * 2.0).backward();
  CHECK(inner_calls == 1);
  CHECK_THROWS_AS(tg::constant(tg::ones({1})).register_hook([](const Var& v) { return v; }),
                  tg::GraphError);
}

TEST_CASE("retain_grad keeps a non-leaf's gradient", "[engine]") {
  Var x = scalar_param(2.0);
  Var h = x * x;
  h.retain_grad();
  (h * 5.0).backward();
  CHECK(h.grad().item() == Approx(5.0));
  CHECK(g(x) == Approx(20.0));
}

TEST_CASE("anomaly mode names the op that produced NaN/Inf", "[engine]") {
  Var x = tg::param(tg::tensor({1.0, -1.0}, {2}, tg::f64));
  {
    tg::AnomalyGuard anomaly;
    CHECK_THROWS_AS(tg::log(x), tg::AnomalyError);
    CHECK_THROWS_WITH(tg::log(x), Catch::Contains("'log'"));
    // forward is finite (sqrt(0) = 0) but the backward divides by 0
    Var z = tg::param(tg::zeros({2}, tg::f64));
    Var y = tg::sum(tg::sqrt(z) + x);
    CHECK_THROWS_WITH(y.backward(), Catch::Contains("backward of op 'sqrt'"));
  }
  // without anomaly mode the NaN just flows
  CHECK(std::isnan(tg::log(x).value().at({1})));
}

TEST_CASE("a chain of 1,000,000 ops runs backward and is freed without recursion", "[engine]") {
  const int64_t base = tg::debug::live_nodes();
  Var x = scalar_param(1.0);
  {
    Var y = x;
    for (int i = 0; i < 1000000; ++i) y = (i % 2 == 0) ? y * 1.0 : y + 0.0;
    CHECK(tg::debug::live_nodes() - base >= 1000000);
    y.backward();
    CHECK(g(x) == Approx(1.0));
  }
  CHECK(tg::debug::live_nodes() == base + 2);  // x and its gradient
  {
    Var y = x;  // never differentiated: destroying it must not recurse either
    for (int i = 0; i < 1000000; ++i) y = y * 1.0;
  }
  CHECK(tg::debug::live_nodes() == base + 2);
}

TEST_CASE("graph nodes return to baseline after a training step", "[engine]") {
  tg::Rng rng(0);
  Var w = tg::param(tg::randn({4, 3}, rng));
  Var b = tg::param(tg::zeros({4}));
  const Var x = tg::constant(tg::randn({8, 3}, rng));
  auto step = [&] {
    w.zero_grad();
    b.zero_grad();
    tg::sum(tg::relu(tg::linear(x, w, b))).backward();
  };
  step();
  const int64_t nodes = tg::debug::live_nodes();
  const int64_t bytes = tg::debug::live_tensor_bytes();
  for (int i = 0; i < 50; ++i) step();
  CHECK(tg::debug::live_nodes() == nodes);
  CHECK(tg::debug::live_tensor_bytes() == bytes);
}

TEST_CASE("a graph built on one thread runs backward and dies on another", "[engine][threads]") {
  // Nodes come from per-thread free lists (Note [Node blocks]): a node freed on another
  // thread joins that thread's lists, and both threads keep building graphs afterwards.
  Var x = scalar_param(2.0);
  const int64_t base = tg::debug::live_nodes();
  const int64_t bytes = tg::debug::live_tensor_bytes();
  for (int round = 0; round < 3; ++round) {
    Var y;
    std::thread builder([&] {
      Var t = x;
      for (int i = 0; i < 2000; ++i) t = tg::sigmoid(t) * 0.5 + t;
      y = t;
    });
    builder.join();
    double from_other = 0;
    std::thread consumer([&] {
      y.backward();
      from_other = g(x);
      y = Var();  // the whole chain is freed on this thread
    });
    consumer.join();
    CHECK(from_other != 0.0);
    x.zero_grad();
    Var z = x;  // the main thread builds again after the other threads ended
    for (int i = 0; i < 2000; ++i) z = tg::sigmoid(z) * 0.5 + z;
    z.backward();
    CHECK(g(x) == Approx(from_other));
    x.zero_grad();
  }
  CHECK(tg::debug::live_nodes() == base);
  CHECK(tg::debug::live_tensor_bytes() == bytes);
}

TEST_CASE("a user's own op records through the same call as built-in ones", "[engine]") {
  // softplus(x) = log(1 + exp(x)), d = sigmoid(x)
  auto my_softplus = [](const Var& x) {
    Tensor y = tg::Tensor::empty(x.shape(), x.dtype());
    const auto in = x.value().to_vector();
    for (int64_t i = 0; i < x.numel(); ++i)
      y.data<double>()[i] = std::log1p(std::exp(in[static_cast<size_t>(i)]));
    return tg::record("my_softplus", y, {x}, [](const tg::BackwardCtx& c, const Var& dy) {
      return tg::Grads{dy * tg::sigmoid(c.input(0))};
    });
  };
  tg::Rng rng(1);
  auto fn = [&](const std::vector<Var>& v) { return my_softplus(v[0]); };
  const auto r1 = tg::gradcheck(fn, {tg::randn({5}, rng, tg::f64)});
  INFO(r1.message);
  CHECK(r1.passed);
  const auto r2 = tg::gradgradcheck(fn, {tg::randn({5}, rng, tg::f64)});
  INFO(r2.message);
  CHECK(r2.passed);
  Var x = tg::param(tg::zeros({1}, tg::f64));
  Var y = my_softplus(x);
  CHECK(std::string(y.op()) == "my_softplus");
}

TEST_CASE("record_into: a user's op writes its result into the tensor it is given", "[engine]") {
  // y = 2x, written by a kernel that fills its output; d = 2 dy.
  auto twice = [](const Var& x) {
    return tg::record_into(
        "twice", x.shape(), x.dtype(), {x},
        [&](Tensor& out) {
          REQUIRE(out.shape() == x.shape());
          REQUIRE(out.dtype() == x.dtype());
          const auto in = x.value().to_vector();
          double* o = out.data<double>();
          for (size_t i = 0; i < in.size(); ++i) o[i] = 2.0 * in[i];
        },
        [](const tg::BackwardCtx&, const Var& dy) { return tg::Grads{dy * 2.0}; });
  };
  tg::Rng rng(2);
  auto fn = [&](const std::vector<Var>& v) { return twice(v[0]); };
  CHECK(tg::gradcheck(fn, {tg::randn({2, 3}, rng, tg::f64)}).passed);
  CHECK(tg::gradgradcheck(fn, {tg::randn({2, 3}, rng, tg::f64)}).passed);

  Var x = tg::param(tg::tensor({1, -2, 3}, {3}, tg::f64));
  Var y = twice(x);  // recorded
  CHECK(std::string(y.op()) == "twice");
  tg::sum(y).backward();
  CHECK(tg::equal(x.grad().value(), tg::full({3}, 2.0, tg::f64)));
  {
    tg::NoGradGuard no_grad;  // unrecorded: a leaf holding the value
    Var z = twice(x);
    CHECK(z.is_leaf());
    CHECK_FALSE(z.requires_grad());
    CHECK(tg::equal(z.value(), tg::tensor({2, -4, 6}, {3}, tg::f64)));
  }
  {
    tg::AnomalyGuard anomaly;  // checked like any op, even one nothing records
    Var inf = tg::constant(tg::tensor({1e308}, {1}, tg::f64));
    CHECK_THROWS_AS(twice(inf), tg::AnomalyError);
  }
}

TEST_CASE("a value changed in place after an op saved it stops backward", "[engine]") {
  SECTION("the output of exp, which its backward reuses") {
    Var x = tg::param(tg::tensor({0.5, 1.0, 2.0}, {3}, tg::f64));
    Var y = tg::exp(x);
    const uint32_t before = y.value().version();
    y.value().fill_(0.0);  // without the check, the gradient would be 0, not exp(x)
    CHECK(y.value().version() == before + 1);
    CHECK_THROWS_WITH(tg::sum(y).backward(),
                      Catch::Contains("backward of op 'exp'") &&
                          Catch::Contains("its output [3] was changed in place") &&
                          Catch::Contains("version 0 then, 1 now"));
  }
  SECTION("an optimizer step between a forward and its backward") {
    tg::Rng rng(4);
    tg::Linear fc1(3, 2, rng), fc2(2, 1, rng);
    std::vector<Var> params = fc1.parameters();
    for (const Var& v : fc2.parameters()) params.push_back(v);
    tg::SGD opt(params, {.lr = 0.1});
    const Var x = tg::constant(tg::randn({4, 3}, rng));
    auto forward = [&] { return tg::sum(fc2(tg::tanh(fc1(x)))); };
    forward().backward();  // gradients to step with
    Var loss = forward();
    opt.step();  // changes the weights; fc2's backward reads its weight for the hidden gradient
    CHECK_THROWS_WITH(loss.backward(), Catch::Contains("backward of op 'linear'") &&
                                           Catch::Contains("its input 1 [1, 2]") &&
                                           Catch::Contains("version 1 then, 2 now"));
  }
  SECTION("a view shares its buffer's count") {
    Var x = tg::param(tg::tensor({1, 2, 3, 4}, {2, 2}, tg::f64));
    Var y = tg::sum(tg::reshape(x, {4}) * tg::reshape(x, {4}));  // mul saves both views
    x.value().copy_(tg::zeros({2, 2}, tg::f64));
    CHECK_THROWS_WITH(y.backward(), Catch::Contains("backward of op 'mul'"));
  }
  SECTION("an input whose value the gradient does not read may change") {
    Var x = tg::param(tg::ones({3}, tg::f64)), w = tg::param(tg::ones({3}, tg::f64));
    Var y = tg::sum(x + w);  // add's gradient is dy whatever x and w hold
    w.value().fill_(5.0);
    y.backward();
    CHECK(tg::equal(x.grad().value(), tg::ones({3}, tg::f64)));
  }
  SECTION("a training loop that steps after each backward is unaffected") {
    tg::Rng rng(5);
    tg::Linear fc(3, 1, rng);
    tg::SGD opt(fc.parameters(), {.lr = 0.1});
    const Var x = tg::constant(tg::randn({8, 3}, rng));
    for (int i = 0; i < 5; ++i) {
      opt.zero_grad();
      tg::sum(fc(x) * fc(x)).backward();
      opt.step();
    }
    CHECK(fc.weight.value().version() >= 5);
  }
}

TEST_CASE("in-place ops: what they change, their versions, and where they are refused",
          "[engine]") {
  SECTION("each op's values, with broadcasting") {
    Var x = tg::constant(tg::tensor({1, 2, 3, 4}, {2, 2}, tg::f64));
    const uint32_t v0 = x.value().version();
    x.add_(tg::constant(tg::tensor({10, 20}, {2}, tg::f64)), 0.5);
    CHECK(x.value().to_vector() == std::vector<double>{6, 12, 8, 14});
    x.mul_(tg::constant(tg::tensor({2, 1}, {2, 1}, tg::f64)));
    CHECK(x.value().to_vector() == std::vector<double>{12, 24, 8, 14});
    x.mul_(0.5).clamp_(5, 10);
    CHECK(x.value().to_vector() == std::vector<double>{6, 10, 5, 7});
    x.masked_fill_(tg::constant(tg::tensor({0, 1}, {2}, tg::boolean)), -1);
    CHECK(x.value().to_vector() == std::vector<double>{6, -1, 5, -1});
    x.copy_(tg::constant(tg::ones({2, 2}, tg::f64))).add_(x);
    CHECK(x.value().to_vector() == std::vector<double>{2, 2, 2, 2});
    x.zero_().fill_(3);
    CHECK(x.value().to_vector() == std::vector<double>{3, 3, 3, 3});
    CHECK(x.value().version() == v0 + 9);  // every op counted once
    Var ids = tg::constant(tg::arange(3, tg::i64));
    ids.add_(tg::constant(tg::full({1}, 2, tg::i64))).mul_(tg::constant(tg::full({1}, 3, tg::i64)));
    CHECK(ids.value().to_vector() == std::vector<double>{6, 9, 12});
  }
  SECTION("bad operands are typed errors naming the op") {
    Var x = tg::constant(tg::zeros({2, 2}, tg::f64));
    CHECK_THROWS_WITH(x.add_(tg::constant(tg::zeros({3}, tg::f64))),
                      Catch::Contains("add_") && Catch::Contains("[3]"));
    CHECK_THROWS_WITH(x.mul_(tg::constant(tg::zeros({2, 2}, tg::f32))),
                      Catch::Contains("mul_: dtypes f64 and f32 differ"));
    CHECK_THROWS_WITH(x.masked_fill_(tg::constant(tg::zeros({2, 2}, tg::f64)), 1),
                      Catch::Contains("masked_fill_: mask must be a bool tensor"));
    CHECK_THROWS_WITH(x.add_(tg::constant(tg::ones({2, 1}, tg::f64))).clamp_(2, 1),
                      Catch::Contains("clamp_: lo"));
    CHECK_THROWS_AS(tg::constant(tg::zeros({2}, tg::i64)).clamp_(0, 1), tg::DtypeError);
    Var ids = tg::constant(tg::full({2}, 3, tg::i64));
    CHECK_THROWS_WITH(ids.add_(ids, 0.5), Catch::Contains("add_: alpha 0.5"));
    CHECK_THROWS_WITH(ids.mul_(0.5), Catch::Contains("mul_: factor 0.5"));
    CHECK(ids.mul_(2.0).value().to_vector() == std::vector<double>{6, 6});
  }
  SECTION("a leaf that requires grad: only under NoGradGuard") {
    Var w = tg::param(tg::ones({3}, tg::f64));
    CHECK_THROWS_WITH(w.add_(w), Catch::Contains("add_: a leaf that requires grad"));
    CHECK_THROWS_AS(w.zero_(), tg::GraphError);
    CHECK(w.value().to_vector() == std::vector<double>{1, 1, 1});  // nothing changed
    {
      tg::NoGradGuard no_grad;
      w.mul_(2.0);
    }
    CHECK(w.value().to_vector() == std::vector<double>{2, 2, 2});
    const Var y = tg::exp(w);
    CHECK_THROWS_WITH(Var(y).fill_(0), Catch::Contains("output of op 'exp' requires grad"));
    // An operand that wants a gradient would lose it: in-place ops are not recorded.
    Var z = tg::constant(tg::zeros({3}, tg::f64));
    CHECK_THROWS_WITH(z.add_(w), Catch::Contains("add_: the operand requires grad"));
    CHECK_THROWS_AS(z.copy_(w), tg::GraphError);
    CHECK_THROWS_AS(z.mul_(w), tg::GraphError);
    {
      tg::NoGradGuard no_grad;
      z.add_(w);  // as an optimizer's update reads a parameter
    }
    CHECK(z.value().to_vector() == std::vector<double>{2, 2, 2});
  }
  SECTION("an in-place change of a saved value stops backward") {
    Var x = tg::param(tg::tensor({0.5, 1.0}, {2}, tg::f64));
    Var c = tg::constant(tg::tensor({2, 3}, {2}, tg::f64));
    Var y = tg::sum(x * c);  // mul saves c for x's gradient
    c.mul_(2.0);
    CHECK_THROWS_WITH(y.backward(), Catch::Contains("backward of op 'mul'") &&
                                        Catch::Contains("changed in place"));
  }
}

TEST_CASE("a backward formula returning the wrong number of gradients is reported", "[engine]") {
  Var x = scalar_param(1.0);
  Var y = tg::record("broken", x.value().clone(), {x}, [](const tg::BackwardCtx&, const Var& dy) {
    return tg::Grads{dy, dy};
  });
  CHECK_THROWS_WITH(y.backward(), Catch::Contains("'broken'") && Catch::Contains("2 gradients"));
}

TEST_CASE("to_dot exports the recorded graph", "[engine]") {
  Var x = tg::param(tg::ones({2, 3}));
  Var w = tg::param(tg::ones({4, 3}));
  Var y = tg::sigmoid(tg::linear(x, w));
  const std::string dot = tg::to_dot(y);
  CHECK_THAT(dot, Catch::StartsWith("digraph"));
  CHECK_THAT(dot, Catch::Contains("sigmoid\\n[2, 4] f32"));
  CHECK_THAT(dot, Catch::Contains("linear"));
  CHECK_THAT(dot, Catch::Contains("param\\n[4, 3] f32"));
  CHECK(std::count(dot.begin(), dot.end(), '>') == 3);  // x->linear, w->linear, linear->sigmoid
}

TEST_CASE("independent graphs on different threads at the same time", "[engine][threads]") {
  auto work = [](uint64_t seed) {
    tg::Rng rng(seed);
    Var w = tg::param(tg::randn({16, 8}, rng, tg::f64));
    Var x = tg::constant(tg::randn({32, 8}, rng, tg::f64));
    std::vector<double> out;
    for (int step = 0; step < 20; ++step) {
      w.zero_grad();
      Var loss = tg::mean(tg::tanh(tg::linear(x, w)) * tg::sigmoid(tg::linear(x, w)));
      loss.backward();
      const auto gv = w.grad().value().to_vector();
      out.insert(out.end(), gv.begin(), gv.end());
    }
    return out;
  };
  std::vector<std::vector<double>> sequential, parallel(4);
  for (uint64_t s = 0; s < 4; ++s) sequential.push_back(work(s));
  std::vector<std::thread> threads;
  for (uint64_t s = 0; s < 4; ++s) threads.emplace_back([&, s] { parallel[s] = work(s); });
  for (auto& t : threads) t.join();
  for (size_t s = 0; s < 4; ++s) {
    REQUIRE(parallel[s].size() == sequential[s].size());
    double diff = 0;
    size_t first = 0;
    for (size_t i = 0; i < parallel[s].size(); ++i) {
      if (diff == 0 && parallel[s][i] != sequential[s][i]) first = i;
      diff = std::max(diff, std::abs(parallel[s][i] - sequential[s][i]));
    }
    INFO("thread " << s << " max difference " << diff << " first at " << first);
    CHECK(diff == 0.0);
  }
}

TEST_CASE("live counts stay right when nodes cross threads", "[engine][threads]") {
  const int64_t nodes = tg::debug::live_nodes(), bytes = tg::debug::live_tensor_bytes();
  std::vector<Var> made(4);
  {
    std::vector<std::thread> threads;
    for (size_t t = 0; t < 4; ++t)
      threads.emplace_back([&made, t] {
        Var x = tg::param(tg::ones({16}));
        made[t] = tg::sum(x * x);  // created here, destroyed on the main thread
      });
    for (auto& th : threads) th.join();
  }
  CHECK(tg::debug::live_nodes() > nodes);
  made.clear();
  CHECK(tg::debug::live_nodes() == nodes);
  CHECK(tg::debug::live_tensor_bytes() == bytes);
}

TEST_CASE("grad mode is per thread", "[engine][threads]") {
  tg::NoGradGuard off;
  bool other = false;
  std::thread t([&] { other = tg::is_grad_enabled(); });
  t.join();
  CHECK(other);
  CHECK_FALSE(tg::is_grad_enabled());
}

TEST_CASE("queue_backward_callback runs once after the sweep, in order", "[engine]") {
  using namespace tg;
  Var w = param(tensor({1, 2}, {2}, f64));
  std::vector<std::string> log;
  w.register_hook([&](const Var& g) {
    log.push_back("hook");
    queue_backward_callback([&] {
      // Every gradient is in place when the callback runs.
      log.push_back(w.grad().defined() ? "first: grad set" : "first: no grad");
      queue_backward_callback([&] { log.push_back("queued by a callback"); });
    });
    queue_backward_callback([&] { log.push_back("second"); });
    return Var();
  });
  sum(mul(w, w)).backward();
  CHECK(log ==
        std::vector<std::string>{"hook", "first: grad set", "second", "queued by a callback"});
  log.clear();
  sum(w).backward();  // the list was emptied: each backward queues its own
  CHECK(log.size() == 4);
  CHECK_THROWS_AS(queue_backward_callback([] {}), GraphError);

  // A callback that throws ends the backward with its exception; the next backward starts clean.
  size_t id = w.register_hook([&](const Var&) {
    queue_backward_callback([] { throw Error("callback failed"); });
    return Var();
  });
  CHECK_THROWS_WITH(sum(w).backward(), "callback failed");
  w.remove_hook(id);
  log.clear();
  sum(w).backward();
  CHECK(log.size() == 4);
}

TEST_CASE("a callback queued in a nested backward runs when that backward ends", "[engine]") {
  // As PyTorch's queue_callback, which appends to the current graph task (checked with
  // torch 2: the same logs).
  using namespace tg;
  std::vector<std::string> log;
  Var v = param(tensor({3, 4}, {2}, f64));
  v.register_hook([&](const Var&) {
    log.push_back("inner hook");
    queue_backward_callback([&] { log.push_back("inner callback"); });
    return Var();
  });
  Var w = param(tensor({1, 2}, {2}, f64));
  size_t id = w.register_hook([&](const Var&) {
    log.push_back("outer hook");
    queue_backward_callback([&] { log.push_back("outer callback"); });
    GradModeGuard on(true);
    sum(v * v).backward();  // a backward inside a backward
    log.push_back("outer hook end");
    return Var();
  });
  sum(w * w).backward();
  CHECK(log == std::vector<std::string>{"outer hook", "inner hook", "inner callback",
                                        "outer hook end", "outer callback"});
  w.remove_hook(id);

  // From an op's backward, through tg::grad.
  log.clear();
  auto twice = [&](const Var& x) {
    return record("twice", (x * 2.0).value(), {x}, [&](const BackwardCtx&, const Var& dy) {
      log.push_back("twice backward");
      GradModeGuard on(true);
      grad({sum(v * v)}, {v});
      log.push_back("twice backward end");
      return Grads{dy * 2.0};
    });
  };
  Var x = param(tensor({1, 1}, {2}, f64));
  x.register_hook([&](const Var&) {
    queue_backward_callback([&] { log.push_back("outer callback"); });
    return Var();
  });
  sum(twice(x)).backward();
  CHECK(log == std::vector<std::string>{"twice backward", "inner hook", "inner callback",
                                        "twice backward end", "outer callback"});
  CHECK(x.grad().value().to_vector() == std::vector<double>{2, 2});

  // A nested backward that throws drops its own callbacks only.
  log.clear();
  Var u = param(tensor({1}, {1}, f64));
  u.register_hook([&](const Var&) -> Var {
    queue_backward_callback([&] { log.push_back("failed nested callback"); });
    throw Error("boom");
  });
  Var z = param(tensor({1}, {1}, f64));
  z.register_hook([&](const Var&) {
    queue_backward_callback([&] { log.push_back("outer callback"); });
    try {
      GradModeGuard on(true);
      sum(u * 2.0).backward();
    } catch (const Error& e) {
      log.push_back(std::string("caught ") + e.what());
    }
    return Var();
  });
  sum(z * 2.0).backward();
  CHECK(log == std::vector<std::string>{"caught boom", "outer callback"});
}

TEST_CASE("a backward inside a backward leaves the outer sweep's partial gradients alone",
          "[engine]") {
  // As PyTorch, whose graph tasks each keep their own input buffers (the same numbers with
  // torch 1.13): a nested backward through a node to which the outer sweep has already sent
  // part of its gradient neither takes that part nor loses its own, on this thread or on
  // another one the hook waits for; a nested failure caught by the hook leaves the outer
  // sweep intact; a nested backward that frees a node the outer sweep still has to go
  // through makes the outer one throw.
  using namespace tg;
  for (int where : {0, 1}) {  // the hook on the first or the second consumer of a
    for (bool thread : {false, true}) {
      INFO("hook on y" << where + 1 << (thread ? ", nested backward on another thread" : ""));
      Var w = param(tensor({1, 2}, {2}, f64));
      const Var a = w * 2.0;
      Var y1 = a * 3.0, y2 = a * 5.0;
      std::vector<double> nested;
      (where == 0 ? y1 : y2).register_hook([&](const Var&) {
        auto run = [&] {
          GradModeGuard on(true);
          nested = grad({sum(a * a)}, {w}, {}, {.retain_graph = true})[0].value().to_vector();
        };
        if (thread) {
          std::thread t(run);
          t.join();
        } else {
          run();
        }
        return Var();
      });
      (sum(y1) + sum(y2)).backward();
      CHECK(nested == std::vector<double>{8, 16});
      CHECK(w.grad().value().to_vector() == std::vector<double>{16, 16});
    }
  }
  {  // A leaf with part of its gradient already: tg::grad asks for it.
    Var w = param(tensor({1, 2}, {2}, f64));
    Var y1 = w * 3.0, y2 = w * 5.0;
    std::vector<double> nested;
    y1.register_hook([&](const Var&) {
      GradModeGuard on(true);
      nested = grad({sum(w * w)}, {w})[0].value().to_vector();
      return Var();
    });
    (sum(y1) + sum(y2)).backward();
    CHECK(nested == std::vector<double>{2, 4});
    CHECK(w.grad().value().to_vector() == std::vector<double>{8, 8});
  }
  {  // A nested backward that throws, caught by the hook.
    Var w = param(tensor({1, 2}, {2}, f64));
    const Var a = w * 2.0;
    Var y1 = a * 3.0, y2 = a * 5.0, u = a * 7.0;
    u.register_hook([](const Var&) -> Var { throw Error("boom"); });
    std::string caught;
    y1.register_hook([&](const Var&) {
      try {
        GradModeGuard on(true);
        grad({sum(u)}, {w}, {}, {.retain_graph = true});
      } catch (const Error& e) {
        caught = e.what();
      }
      return Var();
    });
    (sum(y1) + sum(y2)).backward();
    CHECK(caught == "boom");
    CHECK(w.grad().value().to_vector() == std::vector<double>{16, 16});
  }
  {  // A nested backward without retain_graph frees a it shares with the outer sweep.
    Var w = param(tensor({1, 2}, {2}, f64));
    const Var a = w * 2.0;
    Var y1 = a * 3.0, y2 = a * 5.0;
    y1.register_hook([&](const Var&) {
      GradModeGuard on(true);
      sum(a * a).backward();
      return Var();
    });
    CHECK_THROWS_WITH(
        (sum(y1) + sum(y2)).backward(),
        Catch::Matchers::Contains("a second time") && Catch::Matchers::Contains("retain_graph"));
  }
}

TEST_CASE("tg::grad runs no hook of a leaf it was not asked for", "[engine]") {
  // As torch.autograd.grad: a leaf outside `inputs` takes no gradient, so its hooks (a
  // DistributedDataParallel's, which would start a sync and write .grad) do not run; an
  // intermediate value's hooks do.
  using namespace tg;
  Var w = param(tensor({1, 2}, {2}, f64)), x = param(tensor({3, 4}, {2}, f64));
  std::vector<std::string> calls;
  w.register_hook([&](const Var&) {
    calls.push_back("w");
    return Var();
  });
  Var h = w * x;
  h.register_hook([&](const Var&) {
    calls.push_back("h");
    return Var();
  });
  const auto g = grad({sum(h * 2.0)}, {x}, {}, {.retain_graph = true});
  CHECK(g[0].value().to_vector() == std::vector<double>{2, 4});
  CHECK(calls == std::vector<std::string>{"h"});
  calls.clear();
  grad({sum(h * 2.0)}, {w, x});  // asked for: its hooks run
  CHECK(calls == std::vector<std::string>{"h", "w"});
  CHECK_FALSE(w.grad().defined());
}
