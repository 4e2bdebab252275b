// Vectorized per-sample gradients (tg::func::per_sample_grad with a BatchLoss): each layer's
// rule against the loop of batch-1 passes (f64, 1e-10) on an MLP, CNNs (conv2d with
// stride / padding / dilation / groups, conv1d, pooling, GroupNorm, flatten, linear), an
// Embedding + Linear model and LayerNorm models at batch sizes 1 and odd; the fallback to the
// loop and its reasons; typed errors; functorch's vmap(grad(...)) as an oracle.
#include <catch2/catch.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "torch_oracle.hpp"

using tg::Var;
namespace func = tg::func;
using Strategy = func::PerSampleStrategy;

namespace {

std::vector<double> vals(const Var& v) { return v.value().to_vector(); }
Var P(const tg::Shape& s, double k, double scale = 1.0) {
  return tg::constant(tgtest::pattern(s, k, scale));
}
// Class labels 0..classes-1 in a fixed pattern.
Var labels(int64_t n, int64_t classes) {
  std::vector<double> v;
  for (int64_t i = 0; i < n; ++i) v.push_back(static_cast<double>((3 * i + 1) % classes));
  return tg::constant(tg::tensor(v, {n}, tg::i64));
}
// Every parameter of `m` set to pattern values (k = 0.5 p for the p-th), so the oracle
// builds the same model.
void set_params(tg::Module& m, double scale = 0.3) {
  const auto ps = m.parameters();
  for (size_t i = 0; i < ps.size(); ++i)
    ps[i].value().copy_(
        tgtest::pattern(ps[i].shape(), 0.5 * static_cast<double>(i), scale).to(ps[i].dtype()));
}

// Per-sample softmax cross-entropy of net(x) against class labels: [B].
func::BatchLoss ce_loss(tg::Layer& net) {
  return [&net](const std::vector<Var>& b) {
    return tg::cross_entropy(net(b[0]), b[1], {.reduction = tg::Reduction::none});
  };
}

// The vectorized path ran and agrees with the loop on every gradient and loss.
void check_against_loop(tg::Module& net, const func::BatchLoss& loss,
                        const std::vector<Var>& batch) {
  const auto vec = func::per_sample_grad(net, loss, batch, {.strategy = Strategy::vectorized});
  const auto loop = func::per_sample_grad(net, loss, batch, {.strategy = Strategy::loop});
  const auto automatic = func::per_sample_grad(net, loss, batch, {});
  CHECK(vec.vectorized);
  CHECK(automatic.vectorized);
  CHECK(!loop.vectorized);
  CHECK(automatic.fallback_reason.empty());
  const auto named = net.named_parameters();
  REQUIRE(vec.grads.size() == named.size());
  REQUIRE(loop.grads.size() == named.size());
  const int64_t n = batch[0].shape()[0];
  for (size_t p = 0; p < named.size(); ++p) {
    INFO("parameter " << named[p].first << " at batch " << n);
    tg::Shape s = named[p].second.shape();
    s.insert(0, n);
    REQUIRE(vec.grads[p].shape() == s);
    REQUIRE(loop.grads[p].shape() == s);
    CHECK(!vec.grads[p].requires_grad());
    tgtest::check_close(vals(vec.grads[p]), vals(loop.grads[p]), 1e-10);
  }
  REQUIRE(vec.losses.shape() == tg::Shape{n});
  tgtest::check_close(vals(vec.losses), vals(loop.losses), 1e-12);
  for (const auto& [name, p] : named) CHECK(!p.grad().defined());
}

template <class E>
void throws_with(const std::function<void()>& f, const std::string& prefix,
                 const std::string& part = "") {
  try {
    f();
    FAIL("no exception");
  } catch (const E& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(what.rfind(prefix, 0) == 0);
    CHECK(what.find(part) != std::string::npos);
  }
}

// The CNN of the tests and of the oracle: conv2d (stride 2, padding 1, groups 2), ReLU,
// conv2d ("same" padding, dilation 2, groups 2, a 2x3 kernel), max pooling, flatten, linear.
std::unique_ptr<tg::Sequential> small_cnn(tg::Rng& rng) {
  auto net = std::make_unique<tg::Sequential>();
  net->emplace_back<tg::Conv2d>(2, 4, 3, rng, 2, 1, 1, 2, true, "zeros", tg::f64);
  net->emplace_back<tg::ReLU>();
  net->emplace_back<tg::Conv2d>(4, 6, tg::Size2(2, 3), rng, 1, "same", 2, 2, true, "zeros",
                                tg::f64);
  net->emplace_back<tg::MaxPool2d>(2);
  net->emplace_back<tg::Flatten>();
  net->emplace_back<tg::Linear>(24, 3, rng, true, tg::f64);
  return net;
}

// A module whose own parameter has no rule.
struct Scaled : tg::Layer {
  tg::Linear fc;
  Var scale;
  explicit Scaled(tg::Rng& rng) : fc(3, 2, rng, true, tg::f64) {
    register_module("fc", fc);
    scale = register_parameter("scale", tgtest::pattern({2}, 1.0));
  }
  Var forward(const Var& x) override { return fc(x) * scale; }
};

// A module that calls its Linear's forward() (no hook runs).
struct Bypass : tg::Layer {
  tg::Linear fc;
  explicit Bypass(tg::Rng& rng) : fc(3, 2, rng, true, tg::f64) { register_module("fc", fc); }
  Var forward(const Var& x) override { return fc.forward(x); }
};

// A module that merges the sample and position dims before its Linear.
struct Merged : tg::Layer {
  tg::Linear fc;
  explicit Merged(tg::Rng& rng) : fc(3, 2, rng, true, tg::f64) { register_module("fc", fc); }
  Var forward(const Var& x) override {
    return tg::reshape(fc(tg::unsqueeze(x, 0)), {x.shape()[0], -1});
  }
};

// sum((net(x) - y)^2) per sample over the rest of the dims.
func::BatchLoss sq_loss(tg::Layer& net) {
  return [&net](const std::vector<Var>& b) {
    const Var d = net(b[0]) - b[1];
    return tg::sum(d * d, {1});
  };
}

}  // namespace

TEST_CASE("per_sample_grad vectorized: an MLP matches the loop") {
  tg::Rng rng(5);
  tg::MLP net({4, 6, 5, 3}, "tanh", "identity", rng, true, tg::f64);
  for (int64_t n : {1, 3, 7}) check_against_loop(net, ce_loss(net), {P({n, 4}, 0.0), labels(n, 3)});
  // Without biases, and a squared-error loss.
  tg::MLP nb({4, 5, 2}, "sigmoid", "identity", rng, false, tg::f64);
  check_against_loop(nb, sq_loss(nb), {P({5, 4}, 1.0), P({5, 2}, 2.0)});
}

TEST_CASE("per_sample_grad vectorized: CNNs match the loop") {
  tg::Rng rng(6);
  auto cnn = small_cnn(rng);
  for (int64_t n : {1, 3, 5})
    check_against_loop(*cnn, ce_loss(*cnn), {P({n, 2, 8, 8}, 0.5), labels(n, 3)});
  // conv1d (stride 2, padding 1, dilation 2), GroupNorm, a grouped conv1d without bias with
  // "valid" padding, and one with "same".
  tg::Sequential c1;
  c1.emplace_back<tg::Conv1d>(3, 4, 3, rng, 2, 1, 2, 1, true, "zeros", tg::f64);
  c1.emplace_back<tg::GroupNorm>(2, 4, 1e-5, true, tg::f64);
  c1.emplace_back<tg::Tanh>();
  c1.emplace_back<tg::Conv1d>(4, 4, 2, rng, 1, "valid", 1, 4, false, "zeros", tg::f64);
  // "same" with an odd total padding (the extra column at the end).
  c1.emplace_back<tg::Conv1d>(4, 2, 2, rng, 1, "same", 1, 2, true, "zeros", tg::f64);
  c1.emplace_back<tg::Flatten>();
  c1.emplace_back<tg::Linear>(6, 2, rng, true, tg::f64);
  set_params(c1);
  for (int64_t n : {1, 5}) check_against_loop(c1, ce_loss(c1), {P({n, 3, 9}, 1.5), labels(n, 2)});
  // conv2d (a 3x2 kernel, strides (1, 2), padding (1, 0)), GroupNorm over [B, C, H, W], a
  // depthwise conv2d, average pooling.
  tg::Sequential c2;
  c2.emplace_back<tg::Conv2d>(1, 4, tg::Size2(3, 2), rng, tg::Size2(1, 2), tg::Size2(1, 0), 1, 1,
                              true, "zeros", tg::f64);
  c2.emplace_back<tg::GroupNorm>(2, 4, 1e-5, true, tg::f64);
  // Stride 2 with dilation 2, padding 2, depthwise (groups = channels).
  c2.emplace_back<tg::Conv2d>(4, 4, 3, rng, 2, 2, 2, 4, true, "zeros", tg::f64);
  c2.emplace_back<tg::AvgPool2d>(tg::Pair2(1, 2));
  c2.emplace_back<tg::Flatten>();
  c2.emplace_back<tg::Linear>(12, 3, rng, true, tg::f64);
  set_params(c2);
  check_against_loop(c2, ce_loss(c2), {P({3, 1, 6, 8}, 2.5), labels(3, 3)});
  // padding_mode other than zeros: the rule sees the padded input (reflect, circular "same"
  // with an odd total, replicate over [B, C, H, W]).
  tg::Sequential c3;
  c3.emplace_back<tg::Conv1d>(2, 3, 3, rng, 1, 1, 1, 1, true, "reflect", tg::f64);
  c3.emplace_back<tg::Conv1d>(3, 2, 2, rng, 1, "same", 2, 1, true, "circular", tg::f64);
  c3.emplace_back<tg::Unflatten>(1, std::vector<int64_t>{1, 2});
  c3.emplace_back<tg::Conv2d>(1, 2, tg::Size2(2, 3), rng, 1, tg::Size2(1, 2), 1, 1, true,
                              "replicate", tg::f64);
  c3.emplace_back<tg::Flatten>();
  c3.emplace_back<tg::Linear>(2 * 3 * 7, 2, rng, true, tg::f64);
  set_params(c3);
  check_against_loop(c3, ce_loss(c3), {P({3, 2, 5}, 3.5), labels(3, 2)});
}

TEST_CASE("per_sample_grad vectorized: Embedding + Linear and LayerNorm models match the loop") {
  tg::Rng rng(7);
  // Embedding with padding_idx 0 (ids repeat within a sample and across samples), then a
  // Linear over [B, T, D] (summed over the positions by its rule).
  tg::Sequential emb;
  emb.emplace_back<tg::Embedding>(6, 4, rng, 0, tg::f64);
  emb.emplace_back<tg::Linear>(4, 3, rng, true, tg::f64);
  std::vector<double> ids = {1, 2, 0, 2, 5, 3, 3, 3, 0, 1, 4, 0, 5, 1, 2};
  const Var I = tg::constant(tg::tensor(ids, {3, 5}, tg::i64));
  auto emb_loss = [&](const std::vector<Var>& b) {
    const Var y = emb(b[0]);  // [B, T, 3]
    return tg::sum(tg::tanh(y) * b[1], {1, 2});
  };
  check_against_loop(emb, emb_loss, {I, P({3, 5, 3}, 0.3)});
  check_against_loop(emb, emb_loss, {tg::narrow(I, 0, 1, 1), P({1, 5, 3}, 0.3)});
  // LayerNorm over the last dim of [B, F] and over the last two of [B, 3, 4] (affine set to
  // non-trivial values; one without bias).
  tg::Sequential ln;
  ln.emplace_back<tg::Linear>(5, 6, rng, true, tg::f64);
  ln.emplace_back<tg::LayerNorm>(std::vector<int64_t>{6}, 1e-5, true, true, tg::f64);
  ln.emplace_back<tg::Tanh>();
  ln.emplace_back<tg::Linear>(6, 3, rng, true, tg::f64);
  set_params(ln);
  for (int64_t n : {1, 3, 5}) check_against_loop(ln, ce_loss(ln), {P({n, 5}, 0.7), labels(n, 3)});
  tg::Sequential ln2;
  ln2.emplace_back<tg::Linear>(5, 4, rng, true, tg::f64);
  ln2.emplace_back<tg::LayerNorm>(std::vector<int64_t>{3, 4}, 1e-5, true, false, tg::f64);
  ln2.emplace_back<tg::Flatten>();
  ln2.emplace_back<tg::Linear>(12, 2, rng, true, tg::f64);
  set_params(ln2);
  check_against_loop(ln2, ce_loss(ln2), {P({3, 3, 5}, 0.9), labels(3, 2)});
}

TEST_CASE("per_sample_grad vectorized: a layer called twice adds its calls up, frozen parameters") {
  tg::Rng rng(8);
  struct Twice : tg::Layer {
    tg::Linear fc;
    explicit Twice(tg::Rng& r) : fc(3, 3, r, true, tg::f64) { register_module("fc", fc); }
    Var forward(const Var& x) override { return fc(tg::tanh(fc(x))); }
  } net(rng);
  check_against_loop(net, sq_loss(net), {P({4, 3}, 0.1), P({4, 3}, 0.2)});
  // A parameter that wants no gradient gets zeros, as in the loop.
  net.fc.bias.requires_grad_(false);
  check_against_loop(net, sq_loss(net), {P({4, 3}, 0.1), P({4, 3}, 0.2)});
  const auto r = func::per_sample_grad(net, sq_loss(net), {P({4, 3}, 0.1), P({4, 3}, 0.2)}, {});
  CHECK(vals(r.grads[1]) == std::vector<double>(12, 0.0));
}

TEST_CASE("per_sample_grad vectorized: a parameter used outside its layer's calls falls back") {
  tg::Rng rng(11);
  // Weight tying: the Embedding's weight is also the output projection (a matmul in the
  // parent's forward, outside any layer call). The rule sees only the Embedding's calls, so
  // the vectorized path must not be taken.
  struct Tied : tg::Layer {
    tg::Embedding emb;
    explicit Tied(tg::Rng& r) : emb(5, 3, r, {}, tg::f64) { register_module("emb", emb); }
    Var forward(const Var& ids) override {
      return tg::matmul(tg::tanh(emb(ids)), tg::transpose(emb.weight));  // [B, T, 5]
    }
  } tied(rng);
  std::vector<double> ids = {1, 2, 0, 4, 3, 3, 1, 0, 2};
  const std::vector<Var> batch = {tg::constant(tg::tensor(ids, {3, 3}, tg::i64)),
                                  P({3, 3, 5}, 0.3)};
  auto loss = [&](const std::vector<Var>& b) { return tg::sum(tied(b[0]) * b[1], {1, 2}); };
  const auto loop = func::per_sample_grad(tied, loss, batch, {.strategy = Strategy::loop});
  const auto r = func::per_sample_grad(tied, loss, batch, {});
  CHECK(!r.vectorized);
  INFO(r.fallback_reason);
  CHECK(r.fallback_reason.find("parameter 'emb.weight' is used outside the calls of") !=
        std::string::npos);
  tgtest::check_close(vals(r.grads[0]), vals(loop.grads[0]), 1e-12);
  // A weight shared by two layers (b's forward reads a's weight: both uses go through a
  // rule) is vectorized.
  struct Shared : tg::Layer {
    tg::Linear a, b;
    explicit Shared(tg::Rng& r) : a(3, 3, r, true, tg::f64), b(3, 3, r, false, tg::f64) {
      b.weight = a.weight;
      register_module("a", a);
      register_module("b", b);
    }
    Var forward(const Var& x) override { return b(tg::tanh(a(x))); }
  } shared(rng);
  check_against_loop(shared, sq_loss(shared), {P({4, 3}, 0.1), P({4, 3}, 0.2)});
  // A direct use that never reaches the loss does not matter.
  struct Unused : tg::Layer {
    tg::Linear fc;
    explicit Unused(tg::Rng& r) : fc(3, 2, r, true, tg::f64) { register_module("fc", fc); }
    Var forward(const Var& x) override {
      (void)tg::sum(fc.weight * 2.0);
      return fc(x);
    }
  } unused(rng);
  check_against_loop(unused, sq_loss(unused), {P({4, 3}, 0.1), P({4, 2}, 0.2)});
}

TEST_CASE("per_sample_grad: an empty batch gives [0, *shape] gradients and [0] losses, f32") {
  tg::Rng rng(12);
  tg::MLP net({3, 4, 2}, "tanh", "identity", rng, true, tg::f64);
  const std::vector<Var> empty = {P({0, 3}, 0.0), P({0, 2}, 0.0)};
  for (Strategy s : {Strategy::automatic, Strategy::vectorized, Strategy::loop}) {
    const auto r = func::per_sample_grad(net, sq_loss(net), empty, {.strategy = s});
    CHECK(r.losses.shape() == tg::Shape{0});
    CHECK(r.losses.dtype() == tg::f64);
    const auto named = net.named_parameters();
    REQUIRE(r.grads.size() == named.size());
    for (size_t p = 0; p < named.size(); ++p) {
      tg::Shape want = named[p].second.shape();
      want.insert(0, 0);
      CHECK(r.grads[p].shape() == want);
    }
  }
  auto sample_loss = [&](const std::vector<Var>& b) {
    const Var d = net(b[0]) - b[1];
    return tg::sum(d * d);
  };
  CHECK(func::per_sample_grad(net, sample_loss, empty)[0].shape() == tg::Shape{0, 4, 3});
  // f32: the vectorized rows agree with the loop's to f32 rounding.
  tg::MLP net32({3, 4, 2}, "tanh", "identity", rng, true, tg::f32);
  const std::vector<Var> batch = {tg::constant(tgtest::pattern({5, 3}, 0.1).to(tg::f32)),
                                  tg::constant(tgtest::pattern({5, 2}, 0.2).to(tg::f32))};
  const auto vec =
      func::per_sample_grad(net32, sq_loss(net32), batch, {.strategy = Strategy::vectorized});
  const auto loop =
      func::per_sample_grad(net32, sq_loss(net32), batch, {.strategy = Strategy::loop});
  REQUIRE(vec.vectorized);
  for (size_t p = 0; p < vec.grads.size(); ++p) {
    CHECK(vec.grads[p].dtype() == tg::f32);
    tgtest::check_close(vals(vec.grads[p]), vals(loop.grads[p]), 2e-6);
  }
  CHECK(vec.losses.dtype() == tg::f32);
}

TEST_CASE("per_sample_grad vectorized: falls back to the loop, saying why") {
  tg::Rng rng(9);
  const std::vector<Var> batch = {P({4, 3}, 0.4), P({4, 2}, 0.6)};
  auto falls_back = [&](tg::Layer& net, const std::string& reason, const std::vector<Var>& b) {
    INFO(reason);
    const auto r = func::per_sample_grad(net, sq_loss(net), b, {});
    CHECK(!r.vectorized);
    INFO(r.fallback_reason);
    CHECK(r.fallback_reason.find(reason) != std::string::npos);
    // The result is the loop's.
    const auto loop = func::per_sample_grad(net, sq_loss(net), b, {.strategy = Strategy::loop});
    for (size_t p = 0; p < r.grads.size(); ++p) CHECK(vals(r.grads[p]) == vals(loop.grads[p]));
    CHECK(loop.fallback_reason.empty());
    throws_with<tg::Error>(
        [&] { func::per_sample_grad(net, sq_loss(net), b, {.strategy = Strategy::vectorized}); },
        "func::per_sample_grad: cannot vectorize: ", reason);
  };
  Scaled scaled(rng);
  falls_back(scaled, "parameter 'scale' belongs to Module (the module itself)", batch);
  Bypass bypass(rng);
  falls_back(bypass, "parameter 'fc.weight' reached the loss without a call of its layer's", batch);
  Merged merged(rng);
  falls_back(merged, "Linear 'fc': its input has shape [1, 4, 3]", batch);
  // BatchNorm in training mode mixes the samples: the loop runs, each sample normalized by
  // its own statistics (a batch of 1; here over the length of [1, C, L]).
  tg::Sequential bnt;
  bnt.emplace_back<tg::Conv1d>(1, 2, 2, rng, 1, 0, 1, 1, true, "zeros", tg::f64);
  bnt.emplace_back<tg::BatchNorm1d>(2, 1e-5, 0.1, true, true, tg::f64);
  bnt.emplace_back<tg::Flatten>();
  falls_back(bnt, "BatchNorm1d '1' is in training mode", {P({4, 1, 5}, 0.4), P({4, 8}, 0.6)});
  // In eval mode its affine has no rule; frozen, the rest is vectorized.
  tg::Sequential bn;
  bn.emplace_back<tg::Linear>(3, 2, rng, true, tg::f64);
  auto& norm = bn.emplace_back<tg::BatchNorm1d>(2, 1e-5, 0.1, true, true, tg::f64);
  bn.eval();
  falls_back(bn, "parameter '1.weight' belongs to BatchNorm1d '1'", batch);
  norm.weight.requires_grad_(false);
  norm.bias.requires_grad_(false);
  check_against_loop(bn, sq_loss(bn), batch);
}

TEST_CASE(
    "per_sample_grad vectorized: bad input throws typed errors naming func::per_sample_grad") {
  tg::Rng rng(10);
  tg::MLP net({3, 4, 2}, "tanh", "identity", rng, true, tg::f64);
  const std::string prefix = "func::per_sample_grad: ";
  for (Strategy s : {Strategy::automatic, Strategy::vectorized, Strategy::loop}) {
    // Batch tensors of different first dims.
    throws_with<tg::ShapeError>(
        [&] {
          func::per_sample_grad(net, sq_loss(net), {P({5, 3}, 0.0), P({4, 2}, 1.0)},
                                {.strategy = s});
        },
        prefix, "expected a first dim of 5");
    throws_with<tg::Error>([&] { func::per_sample_grad(net, sq_loss(net), {}, {.strategy = s}); },
                           prefix, "no tensor");
    // A loss reduced over the batch (one element, not one per sample).
    auto mean_loss = [&](const std::vector<Var>& b) { return tg::mse_loss(net(b[0]), b[1]); };
    throws_with<tg::ShapeError>(
        [&] {
          func::per_sample_grad(net, mean_loss, {P({5, 3}, 0.0), P({5, 2}, 1.0)}, {.strategy = s});
        },
        prefix, s == Strategy::loop ? "must have shape [1]" : "must have shape [5]");
    // A loss of one element per output element: [B, 2].
    auto wide = [&](const std::vector<Var>& b) { return net(b[0]) - b[1]; };
    throws_with<tg::ShapeError>(
        [&] {
          func::per_sample_grad(net, wide, {P({5, 3}, 0.0), P({5, 2}, 1.0)}, {.strategy = s});
        },
        prefix);
  }
  // The sample-loss form keeps its checks.
  auto sample_loss = [&](const std::vector<Var>& s) { return tg::mse_loss(net(s[0]), s[1]); };
  throws_with<tg::ShapeError>(
      [&] {
        func::per_sample_grad(net, sample_loss, {P({5, 3}, 0.0), P({6, 2}, 1.0)});
      },
      prefix);
}

TEST_CASE("per_sample_grad vectorized: matches functorch's vmap(grad(...))") {
  TGTEST_REQUIRE_TORCH();
  const std::string script = std::string(tgtest::kPythonPrelude) + R"PY(
try:
    from torch.func import vmap, grad, functional_call
except ImportError:
    from functorch import vmap, grad
    from torch.nn.utils.stateless import functional_call
F = torch.nn.functional
for D, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
    cnn = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 6, (2, 3), padding="same", dilation=2, groups=2),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(24, 3)).to(D)
    emb = torch.nn.Sequential(torch.nn.Embedding(6, 4, padding_idx=0), torch.nn.Linear(4, 3)).to(D)
    ln = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.LayerNorm(6), torch.nn.Tanh(),
                             torch.nn.Linear(6, 3)).to(D)
    for net in (cnn, emb, ln):
        with torch.no_grad():
            for i, p in enumerate(net.parameters()):
                p.copy_(pattern(tuple(p.shape), 0.5 * i, 0.3, D))
    def per_sample(net, loss, X, Y):
        params = {k: v.detach() for k, v in net.named_parameters()}
        def one(params, x, y):
            return loss(functional_call(net, params, (x.unsqueeze(0),)), y.unsqueeze(0))
        return vmap(grad(one), in_dims=(None, 0, 0))(params, X, Y)
    ce = lambda out, t: F.cross_entropy(out, t)
    X = pattern((5, 2, 8, 8), 0.5, 1.0, D); T = torch.tensor([(3 * i + 1) % 3 for i in range(5)])
    for k, g in per_sample(cnn, ce, X, T).items(): emit("cnn_%s_%s" % (tag, k), g)
    I = torch.tensor([1, 2, 0, 2, 5, 3, 3, 3, 0, 1, 4, 0, 5, 1, 2]).reshape(3, 5)
    W = pattern((3, 5, 3), 0.3, 1.0, D)
    emb_loss = lambda y, w: (torch.tanh(y) * w).sum()
    for k, g in per_sample(emb, emb_loss, I, W).items(): emit("emb_%s_%s" % (tag, k), g)
    X = pattern((5, 5), 0.7, 1.0, D); T = torch.tensor([(3 * i + 1) % 3 for i in range(5)])
    for k, g in per_sample(ln, ce, X, T).items(): emit("ln_%s_%s" % (tag, k), g)
)PY";
  const auto torch = tgtest::run_python(script);
  tg::Rng rng(11);
  auto cnn = small_cnn(rng);
  tg::Sequential emb;
  emb.emplace_back<tg::Embedding>(6, 4, rng, 0, tg::f64);
  emb.emplace_back<tg::Linear>(4, 3, rng, true, tg::f64);
  tg::Sequential ln;
  ln.emplace_back<tg::Linear>(5, 6, rng, true, tg::f64);
  ln.emplace_back<tg::LayerNorm>(std::vector<int64_t>{6}, 1e-5, true, true, tg::f64);
  ln.emplace_back<tg::Tanh>();
  ln.emplace_back<tg::Linear>(6, 3, rng, true, tg::f64);
  const Var I =
      tg::constant(tg::tensor({1, 2, 0, 2, 5, 3, 3, 3, 0, 1, 4, 0, 5, 1, 2}, {3, 5}, tg::i64));
  for (const auto& od : tgtest::oracle_dtypes()) {
    const std::string tag = od.single ? "f32" : "f64";
    auto cast = [&](const Var& v) { return tg::constant(v.value().to(od.dtype)); };
    auto compare = [&](tg::Module& net, const std::string& model, const func::BatchLoss& loss,
                       const std::vector<Var>& batch) {
      net.to(od.dtype);
      set_params(net);
      const auto r = func::per_sample_grad(net, loss, batch, {.strategy = Strategy::vectorized});
      const auto named = net.named_parameters();
      for (size_t p = 0; p < named.size(); ++p) {
        const std::string key = model + "_" + tag + "_" + named[p].first;
        INFO(key);
        REQUIRE(torch.count(key) == 1);
        tgtest::check_close(vals(r.grads[p]), torch.at(key), od.tol);
      }
    };
    compare(*cnn, "cnn", ce_loss(*cnn), {cast(P({5, 2, 8, 8}, 0.5)), labels(5, 3)});
    auto emb_loss = [&](const std::vector<Var>& b) {
      return tg::sum(tg::tanh(emb(b[0])) * b[1], {1, 2});
    };
    compare(emb, "emb", emb_loss, {I, cast(P({3, 5, 3}, 0.3))});
    compare(ln, "ln", ce_loss(ln), {cast(P({5, 5}, 0.7)), labels(5, 3)});
  }
}
