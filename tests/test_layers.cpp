// CNN-era modules (models/cnn_layers.hpp, GELU and SiLU): shapes, parameter and buffer names,
// str(), BatchNorm's train / eval behaviour and running statistics against torch.nn, a
// checkpoint round trip, and a tapegrad Sequential loaded into torch.

#include <catch2/catch.hpp>
#include <memory>

#include "models/activations.hpp"
#include "models/checkpoint.hpp"
#include "models/cnn_layers.hpp"
#include "models/sequential.hpp"
#include "models_test_util.hpp"
#include "ops/dropout.hpp"
#include "torch_oracle.hpp"

namespace {

std::vector<double> values_of(const tg::Tensor& t) {
  const tg::Tensor d = t.to(tg::f64);
  return {d.data<double>(), d.data<double>() + d.numel()};
}

tg::Var input(const tg::Shape& s, double k, double scale = 1.0, tg::Dtype dt = tg::f32) {
  return tg::constant(tgtest::pattern(s, k, scale).to(dt));
}

std::vector<std::string> names_of(const std::vector<std::pair<std::string, tg::Var>>& v) {
  std::vector<std::string> out;
  for (const auto& [n, p] : v) out.push_back(n);
  return out;
}

std::vector<std::string> names_of(const std::vector<std::pair<std::string, tg::Tensor>>& v) {
  std::vector<std::string> out;
  for (const auto& [n, p] : v) out.push_back(n);
  return out;
}

}  // namespace

TEST_CASE("pooling modules: shapes, no parameters, str() as PyTorch's repr", "[layers]") {
  const tg::Var x = input(tg::Shape{2, 3, 7, 6}, 0.2);
  tg::MaxPool2d mp(2);
  CHECK(mp(x).shape() == tg::Shape{2, 3, 3, 3});
  CHECK(mp.parameters().empty());
  CHECK(mp.str() == "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=false)");
  tg::MaxPool2d mp2({3, 2}, tg::Pair2(1, 2), {1, 0}, 1, true);
  CHECK(mp2(x).shape() == tg::Shape{2, 3, 7, 3});
  // return_indices: the maxima and their flat positions, as max_pool2d_with_indices.
  const auto [mv, mi] = mp2.forward_with_indices(x);
  const auto want = tg::max_pool2d_with_indices(x, {3, 2}, tg::Pair2(1, 2), {1, 0}, 1, true);
  CHECK(values_of(mv.value()) == values_of(want.values.value()));
  CHECK(mi.dtype() == tg::i64);
  CHECK(values_of(mi.value()) == values_of(want.indices.value()));
  CHECK(mp2.str() ==
        "MaxPool2d(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0), dilation=1, "
        "ceil_mode=true)");
  tg::AvgPool2d ap(3, 2, 1);
  CHECK(ap(x).shape() == tg::Shape{2, 3, 4, 3});
  CHECK(ap.str() == "AvgPool2d(kernel_size=3, stride=2, padding=1)");
  // divisor_override divides every window's sum: 4 / 3 of the 2x2 means.
  tg::AvgPool2d ap_div(2, {}, 0, false, true, 3);
  const auto div = values_of(ap_div(x).value()), plain = values_of(tg::avg_pool2d(x, 2).value());
  REQUIRE(div.size() == plain.size());
  for (size_t i = 0; i < div.size(); ++i) CHECK(div[i] == Approx(plain[i] * 4.0 / 3.0));
  CHECK_THROWS_WITH(tg::AvgPool2d(2, {}, 0, false, true, 0)(x),
                    Catch::StartsWith("avg_pool2d: divisor_override"));
  tg::AdaptiveAvgPool2d aap({1, 2});
  CHECK(aap(x).shape() == tg::Shape{2, 3, 1, 2});
  CHECK(tg::AdaptiveAvgPool2d(1)(x).shape() == tg::Shape{2, 3, 1, 1});
  CHECK(aap.str() == "AdaptiveAvgPool2d(output_size=(1, 2))");
  CHECK(tg::AdaptiveAvgPool2d(5).str() == "AdaptiveAvgPool2d(output_size=5)");
  CHECK_THROWS_AS(tg::MaxPool2d(0)(x), tg::Error);

  // The 1-d modules over [N, C, L] and [C, L], as max_pool1d / avg_pool1d.
  const tg::Var s = input(tg::Shape{2, 3, 9}, 0.4);
  tg::MaxPool1d mp1(3, 2, 1, 2, true);
  CHECK(values_of(mp1(s).value()) == values_of(tg::max_pool1d(s, 3, 2, 1, 2, true).value()));
  CHECK(values_of(mp1.forward_with_indices(s).indices.value()) ==
        values_of(tg::max_pool1d_with_indices(s, 3, 2, 1, 2, true).indices.value()));
  CHECK(tg::MaxPool1d(2)(input(tg::Shape{3, 9}, 0.4)).shape() == tg::Shape{3, 4});
  CHECK(tg::MaxPool1d(2).str() ==
        "MaxPool1d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=false)");
  tg::AvgPool1d ap1(4, 3, 2, true, false);
  CHECK(values_of(ap1(s).value()) == values_of(tg::avg_pool1d(s, 4, 3, 2, true, false).value()));
  CHECK(tg::AvgPool1d(3)(s).shape() == tg::Shape{2, 3, 3});
  CHECK(ap1.str() == "AvgPool1d(kernel_size=(4,), stride=(3,), padding=(2,))");
  CHECK(ap1.parameters().empty());
}

TEST_CASE("BatchNorm: parameters, buffers, str(), rank checks", "[layers]") {
  tg::BatchNorm2d bn(3);
  CHECK(names_of(bn.named_parameters()) == std::vector<std::string>{"weight", "bias"});
  CHECK(names_of(bn.named_buffers()) ==
        std::vector<std::string>{"running_mean", "running_var", "num_batches_tracked"});
  CHECK(values_of(bn.weight.value()) == std::vector<double>{1, 1, 1});
  CHECK(values_of(bn.bias.value()) == std::vector<double>{0, 0, 0});
  CHECK(values_of(bn.buffer("running_mean")) == std::vector<double>{0, 0, 0});
  CHECK(values_of(bn.buffer("running_var")) == std::vector<double>{1, 1, 1});
  CHECK(bn.buffer("num_batches_tracked").dtype() == tg::i64);
  CHECK(bn.buffer("num_batches_tracked").shape() == tg::Shape{});
  CHECK(bn.str() ==
        "BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=true, track_running_stats=true)");

  // Inside a Sequential the names carry the prefix.
  tg::Sequential seq;
  seq.emplace_back<tg::BatchNorm2d>(3);
  CHECK(names_of(seq.named_buffers()) ==
        std::vector<std::string>{"0.running_mean", "0.running_var", "0.num_batches_tracked"});

  tg::BatchNorm1d plain(4, 1e-3, std::nullopt, false, false);
  CHECK(plain.parameters().empty());
  CHECK(plain.named_buffers().empty());
  CHECK(plain.str() ==
        "BatchNorm1d(4, eps=0.001, momentum=None, affine=false, track_running_stats=false)");
  // Without running statistics the batch's statistics normalize, in eval mode too.
  plain.eval();
  const tg::Var y = plain(input(tg::Shape{5, 4}, 0.4, 2.0));
  CHECK(y.shape() == tg::Shape{5, 4});
  const auto v = values_of(tg::mean(y, {0}).value());
  for (double m : v) CHECK(std::abs(m) < 1e-5);

  // A training step moves the statistics; to(f64) converts the float buffers, which the next
  // step updates; reset_running_stats restores them in place.
  bn(input(tg::Shape{2, 3, 2, 2}, 0.1, 1.0) + 1.0);
  CHECK(values_of(bn.buffer("running_mean"))[0] != 0.0);
  bn.to(tg::f64);
  CHECK(bn.buffer("running_var").dtype() == tg::f64);
  CHECK(bn.buffer("num_batches_tracked").dtype() == tg::i64);
  const auto moved = values_of(bn.buffer("running_mean"));
  bn(input(tg::Shape{2, 3, 2, 2}, 0.1, 1.0, tg::f64) + 1.0);
  CHECK(values_of(bn.buffer("running_mean")) != moved);
  CHECK(values_of(bn.buffer("num_batches_tracked")) == std::vector<double>{2});
  const tg::Tensor handle = bn.buffer("running_mean");
  bn.reset_running_stats();
  CHECK(values_of(handle) == std::vector<double>{0, 0, 0});
  CHECK(values_of(bn.buffer("running_var")) == std::vector<double>{1, 1, 1});
  CHECK(values_of(bn.buffer("num_batches_tracked")) == std::vector<double>{0});
  bn.to(tg::f32);

  CHECK_THROWS_AS(bn(input(tg::Shape{2, 3}, 0.1)), tg::ShapeError);
  CHECK_THROWS_AS(bn(input(tg::Shape{2, 4, 2, 2}, 0.1)), tg::ShapeError);
  CHECK_THROWS_AS(tg::BatchNorm1d(3)(input(tg::Shape{2, 3, 2, 2}, 0.1)), tg::ShapeError);
  CHECK(tg::BatchNorm1d(3)(input(tg::Shape{2, 3, 5}, 0.1)).shape() == tg::Shape{2, 3, 5});
  CHECK_THROWS_AS(tg::BatchNorm2d(0), tg::ShapeError);
}

TEST_CASE("BatchNorm2d: running statistics after 10 steps and eval outputs equal torch.nn's",
          "[layers][oracle]") {
  if (!tgtest::torch_available()) {
    WARN("SKIPPED: PyTorch is not available");
    return;
  }
  for (const bool cumulative : {false, true}) {
    for (const tg::Dtype dt : {tg::f64, tg::f32}) {
      INFO("cumulative " << cumulative << ", dtype " << (dt == tg::f64 ? "f64" : "f32"));
      const double tol = dt == tg::f64 ? 1e-10 : 2e-5;
      const std::optional<double> momentum = cumulative ? std::nullopt : std::optional<double>(0.3);
      tg::BatchNorm2d bn(3, 1e-5, momentum, true, true, dt);
      {
        tg::NoGradGuard ng;
        bn.weight.value().copy_(tgtest::pattern(tg::Shape{3}, 2.0, 0.5).to(dt));
        bn.bias.value().copy_(tgtest::pattern(tg::Shape{3}, 3.0, 0.5).to(dt));
      }
      std::vector<double> train_out;
      for (int step = 0; step < 10; ++step) {
        // Inputs with an offset per step, so the running statistics move.
        const tg::Var x = input(tg::Shape{4, 3, 3, 2}, 0.5 * step, 1.0 + 0.1 * step, dt) +
                          static_cast<double>(step) * 0.2;
        const tg::Var y = bn(x);
        if (step == 9) train_out = values_of(y.value());
      }
      bn.eval();
      const tg::Var xe = input(tg::Shape{2, 3, 2, 2}, 7.0, 1.5, dt);
      const std::vector<double> eval_out = values_of(bn(xe).value());
      const std::string D = dt == tg::f64 ? "torch.float64" : "torch.float32";
      auto torch = tgtest::run_python(
          std::string(tgtest::kPythonPrelude) + "D = " + D +
          "\nbn = torch.nn.BatchNorm2d(3, eps=1e-5, momentum=" + (cumulative ? "None" : "0.3") +
          ").to(D)\n"
          "with torch.no_grad():\n"
          "    bn.weight.copy_(pattern([3], 2.0, 0.5, D))\n"
          "    bn.bias.copy_(pattern([3], 3.0, 0.5, D))\n"
          "for step in range(10):\n"
          "    x = pattern([4, 3, 3, 2], 0.5 * step, 1.0 + 0.1 * step, D) + step * 0.2\n"
          "    y = bn(x)\n"
          "emit('train', y)\n"
          "emit('mean', bn.running_mean)\n"
          "emit('var', bn.running_var)\n"
          "emit('count', bn.num_batches_tracked)\n"
          "bn.eval()\n"
          "emit('eval', bn(pattern([2, 3, 2, 2], 7.0, 1.5, D)))\n");
      tgtest::check_close(train_out, torch["train"], tol);
      tgtest::check_close(values_of(bn.buffer("running_mean")), torch["mean"], tol);
      tgtest::check_close(values_of(bn.buffer("running_var")), torch["var"], tol);
      CHECK(values_of(bn.buffer("num_batches_tracked")) == torch["count"]);
      CHECK(torch["count"] == std::vector<double>{10});
      tgtest::check_close(eval_out, torch["eval"], tol);
      // Eval mode leaves the running statistics alone.
      const auto before = values_of(bn.buffer("running_mean"));
      bn(xe);
      CHECK(values_of(bn.buffer("running_mean")) == before);
      CHECK(values_of(bn.buffer("num_batches_tracked")) == std::vector<double>{10});
    }
  }
}

TEST_CASE("LayerNorm, GroupNorm: parameters, str(), shapes, bad arguments", "[layers]") {
  tg::LayerNorm ln({3, 2});
  CHECK(names_of(ln.named_parameters()) == std::vector<std::string>{"weight", "bias"});
  CHECK(ln.weight.shape() == tg::Shape{3, 2});
  CHECK(values_of(ln.weight.value()) == std::vector<double>(6, 1.0));
  CHECK(values_of(ln.bias.value()) == std::vector<double>(6, 0.0));
  CHECK(ln.str() == "LayerNorm((3, 2), eps=1e-05, elementwise_affine=true)");
  CHECK(tg::LayerNorm({4}).str() == "LayerNorm((4,), eps=1e-05, elementwise_affine=true)");
  CHECK(ln(input(tg::Shape{5, 3, 2}, 0.3)).shape() == tg::Shape{5, 3, 2});
  CHECK_THROWS_AS(ln(input(tg::Shape{5, 2, 3}, 0.3)), tg::ShapeError);
  CHECK(tg::LayerNorm({4}, 1e-5, false).parameters().empty());
  CHECK(names_of(tg::LayerNorm({4}, 1e-5, true, false).named_parameters()) ==
        std::vector<std::string>{"weight"});

  tg::GroupNorm gn(2, 4);
  CHECK(names_of(gn.named_parameters()) == std::vector<std::string>{"weight", "bias"});
  CHECK(gn.weight.shape() == tg::Shape{4});
  CHECK(gn.str() == "GroupNorm(2, 4, eps=1e-05, affine=true)");
  CHECK(gn(input(tg::Shape{3, 4, 2, 2}, 0.3)).shape() == tg::Shape{3, 4, 2, 2});
  CHECK_THROWS_AS(tg::GroupNorm(3, 4), tg::Error);
  CHECK(tg::GroupNorm(1, 4, 1e-5, false).parameters().empty());
}

TEST_CASE("LayerNorm and GroupNorm modules compute what torch.nn's do", "[layers][oracle]") {
  if (!tgtest::torch_available()) {
    WARN("SKIPPED: PyTorch is not available");
    return;
  }
  tg::LayerNorm ln({3, 2});
  tg::GroupNorm gn(2, 4);
  {
    tg::NoGradGuard ng;
    ln.weight.value().copy_(tgtest::pattern(tg::Shape{3, 2}, 1.0).to(tg::f32));
    gn.bias.value().copy_(tgtest::pattern(tg::Shape{4}, 2.0).to(tg::f32));
  }
  const auto yl = values_of(ln(input(tg::Shape{5, 3, 2}, 0.3, 2.0)).value());
  const auto yg = values_of(gn(input(tg::Shape{3, 4, 2, 2}, 0.7, 2.0)).value());
  auto torch = tgtest::run_python(std::string(tgtest::kPythonPrelude) +
                                  "D = torch.float32\n"
                                  "ln = torch.nn.LayerNorm((3, 2))\n"
                                  "gn = torch.nn.GroupNorm(2, 4)\n"
                                  "with torch.no_grad():\n"
                                  "    ln.weight.copy_(pattern([3, 2], 1.0, 1.0, D))\n"
                                  "    gn.bias.copy_(pattern([4], 2.0, 1.0, D))\n"
                                  "emit('ln', ln(pattern([5, 3, 2], 0.3, 2.0, D)))\n"
                                  "emit('gn', gn(pattern([3, 4, 2, 2], 0.7, 2.0, D)))\n");
  tgtest::check_close(yl, torch["ln"], 2e-5);
  tgtest::check_close(yg, torch["gn"], 2e-5);
}

TEST_CASE("Embedding: N(0, 1) weight from the Rng, padding row zeroed, i64 ids", "[layers]") {
  tg::Rng rng(5);
  tg::Embedding emb(10, 3, rng, -1);
  CHECK(names_of(emb.named_parameters()) == std::vector<std::string>{"weight"});
  CHECK(emb.weight.shape() == tg::Shape{10, 3});
  CHECK(emb.str() == "Embedding(10, 3, padding_idx=9)");
  const auto w = values_of(emb.weight.value());
  for (size_t i = 27; i < 30; ++i) CHECK(w[i] == 0.0);
  double s = 0, s2 = 0;
  for (size_t i = 0; i < 27; ++i) s += w[i], s2 += w[i] * w[i];
  CHECK(s2 > 0.0);
  // The same Rng state gives the same weights.
  tg::Rng rng2(5);
  tg::Embedding emb2(10, 3, rng2, -1);
  CHECK(tg::equal(emb.weight.value(), emb2.weight.value()));
  tg::Rng rng3(5);
  CHECK(tg::Embedding(1000, 10, rng3).str() == "Embedding(1000, 10)");

  const tg::Var ids = tg::constant(tg::tensor({1, 9, 4, 1, 0, 9}, tg::Shape{2, 3}, tg::i64));
  const tg::Var y = emb(ids);
  CHECK(y.shape() == tg::Shape{2, 3, 3});
  tg::sum(y).backward();
  const auto g = values_of(emb.weight.grad().value());
  CHECK(g[3] == 2.0);   // row 1 used twice
  CHECK(g[27] == 0.0);  // the padding row gets no gradient
  CHECK_THROWS_AS(tg::Embedding(10, 3, rng, 10), tg::IndexError);
  CHECK_THROWS_AS(emb(input(tg::Shape{2}, 0.1)), tg::Error);
}

TEST_CASE("Flatten, Unflatten, GELU, SiLU", "[layers]") {
  const tg::Var x = input(tg::Shape{2, 3, 4, 5}, 0.1);
  tg::Flatten f;
  CHECK(f(x).shape() == tg::Shape{2, 60});
  CHECK(f.str() == "Flatten(start_dim=1, end_dim=-1)");
  CHECK(tg::Flatten(0)(x).shape() == tg::Shape{120});
  CHECK(tg::Flatten(1, 2)(x).shape() == tg::Shape{2, 12, 5});
  CHECK(tg::Flatten(-3, -2)(x).shape() == tg::Shape{2, 12, 5});
  CHECK(tg::Flatten(2, 2)(x).shape() == tg::Shape{2, 3, 4, 5});
  CHECK_THROWS_AS(tg::Flatten(4)(x), tg::IndexError);
  CHECK_THROWS_AS(tg::Flatten(2, 1)(x), tg::Error);

  tg::Unflatten u(1, {2, 30});
  CHECK(u(f(x)).shape() == tg::Shape{2, 2, 30});
  CHECK(u.str() == "Unflatten(dim=1, unflattened_size=(2, 30))");
  CHECK(tg::Unflatten(-1, {-1, 5})(f(x)).shape() == tg::Shape{2, 12, 5});
  CHECK_THROWS_AS(tg::Unflatten(1, {7, -1})(f(x)), tg::ShapeError);
  CHECK_THROWS_AS(tg::Unflatten(1, {2, 31})(f(x)), tg::ShapeError);

  tg::GELU gelu;
  CHECK(gelu.str() == "GELU(approximate='none')");
  CHECK(tg::GELU("tanh").str() == "GELU(approximate='tanh')");
  CHECK_THROWS_AS(tg::GELU("fast"), tg::Error);
  CHECK(tg::equal(gelu(x).value(), tg::gelu(x).value()));
  CHECK(tg::equal(tg::GELU("tanh")(x).value(), tg::gelu(x, "tanh").value()));
  tg::SiLU silu;
  CHECK(silu.str() == "SiLU()");
  CHECK(tg::equal(silu(x).value(), tg::silu(x).value()));
  CHECK(tg::make_activation("gelu")->str() == "GELU(approximate='none')");
  CHECK(tg::make_activation("silu")->str() == "SiLU()");
}

TEST_CASE("Dropout2d: whole channels zeroed and the rest scaled in training, identity in eval",
          "[layers]") {
  tg::Rng r1(3), r2(3), r3(3);
  tg::Dropout2d d(r1);
  CHECK(d.p() == 0.5);
  CHECK(d.str() == "Dropout2d(p=0.5, inplace=false)");
  CHECK(tg::Dropout2d(0.25, r2).str() == "Dropout2d(p=0.25, inplace=false)");
  CHECK(d.parameters().empty());
  const tg::Var x = tg::param(tg::ones({8, 16, 3, 4}));
  const tg::Var y = d(x);
  REQUIRE(y.shape() == x.shape());
  // Same generator state, same masks as the functional op.
  CHECK(tg::equal(y.value(), tg::dropout2d(x, 0.5, true, r3).value()));
  const std::vector<double> v = y.value().to_vector();
  int64_t dropped = 0;
  for (int64_t plane = 0; plane < 8 * 16; ++plane) {
    const double first = v[static_cast<size_t>(plane * 12)];
    CHECK((first == 0.0 || first == 2.0));
    for (int64_t k = 1; k < 12; ++k) CHECK(v[static_cast<size_t>(plane * 12 + k)] == first);
    dropped += first == 0.0;
  }
  CHECK(dropped > 32);
  CHECK(dropped < 96);
  tg::sum(y).backward();
  CHECK(tg::equal(x.grad().value(), y.value()));  // the mask, scaled, for a gradient of ones

  d.eval();
  CHECK(tg::equal(d(x).value(), x.value()));
  const tg::Var unbatched = tg::constant(tg::ones({16, 3, 4}));
  CHECK(d(unbatched).shape() == tg::Shape{16, 3, 4});
  d.train();
  CHECK(d(unbatched).shape() == tg::Shape{16, 3, 4});
  CHECK_THROWS_AS(tg::Dropout2d(1.5, r2), tg::Error);
  CHECK_THROWS_AS(tg::Dropout2d(-0.1, r2), tg::Error);
}

namespace {

// Sequential(BatchNorm2d(3), ReLU, MaxPool2d(2), Flatten, Linear(12, 4)) for [N, 3, 4, 4].
std::unique_ptr<tg::Sequential> make_net(tg::Rng& rng) {
  auto net = std::make_unique<tg::Sequential>();
  net->emplace_back<tg::BatchNorm2d>(3);
  net->emplace_back<tg::ReLU>();
  net->emplace_back<tg::MaxPool2d>(2);
  net->emplace_back<tg::Flatten>();
  net->emplace_back<tg::Linear>(12, 4, rng);
  return net;
}

// A few training-mode forwards so the running statistics are not the initial ones.
void warm_up(tg::Sequential& net) {
  for (int step = 0; step < 3; ++step)
    net(input(tg::Shape{4, 3, 4, 4}, 0.3 * step, 2.0) + 0.5 * step);
}

}  // namespace

TEST_CASE("a Sequential with BatchNorm2d saves and loads its buffers", "[layers]") {
  const auto dir = tgtest::temp_dir("layers_ckpt");
  const auto path = (dir / "net.npz").string();
  tg::Rng rng(1);
  auto a = make_net(rng);
  warm_up(*a);
  a->save(path);
  const auto archive = tg::NpzArchive::load(path);
  CHECK(archive.names() == std::vector<std::string>{"0.bias", "0.num_batches_tracked",
                                                    "0.running_mean", "0.running_var", "0.weight",
                                                    "4.bias", "4.weight"});
  tg::Rng rng2(2);
  auto b = make_net(rng2);
  b->load(path);
  for (const char* name : {"running_mean", "running_var", "num_batches_tracked"})
    CHECK(tg::equal((*b)[0].buffer(name), (*a)[0].buffer(name)));
  CHECK(values_of((*b)[0].buffer("num_batches_tracked")) == std::vector<double>{3});
  a->eval();
  b->eval();
  const tg::Var x = input(tg::Shape{2, 3, 4, 4}, 1.3);
  CHECK(tg::equal((*a)(x).value(), (*b)(x).value()));
  CHECK(a->str().find("(0): BatchNorm2d(3, eps=1e-05") != std::string::npos);
}

TEST_CASE("a tapegrad Sequential with BatchNorm2d loads into torch with the same outputs",
          "[layers][oracle]") {
  if (!tgtest::torch_available()) {
    WARN("SKIPPED: PyTorch is not available");
    return;
  }
  const auto dir = tgtest::temp_dir("layers_torch");
  const auto path = (dir / "net.npz").string();
  tg::Rng rng(3);
  auto net = make_net(rng);
  warm_up(*net);
  net->save(path);
  net->eval();
  const tg::Var y = (*net)(input(tg::Shape{2, 3, 4, 4}, 1.3));
  auto torch = tgtest::run_python(
      std::string(tgtest::kPythonPrelude) +
      "import numpy as np\n"
      "import torch.nn as nn\n"
      "net = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),\n"
      "                    nn.Linear(12, 4))\n"
      "d = np.load('" +
      path +
      "')\n"
      "net.load_state_dict({k: torch.from_numpy(d[k]) for k in d.files})\n"
      "net.eval()\n"
      "emit('y', net(pattern([2, 3, 4, 4], 1.3, 1.0, torch.float32)))\n"
      "emit('count', net[0].num_batches_tracked)\n");
  tgtest::check_close(values_of(y.value()), torch["y"], 1e-5);
  CHECK(torch["count"] == std::vector<double>{3});
}

// ---- convolution modules ----

namespace {

double max_abs(const tg::Tensor& t) {
  double m = 0;
  for (double v : values_of(t)) m = std::max(m, std::abs(v));
  return m;
}

double stddev(const tg::Tensor& t) {
  const auto v = values_of(t);
  double mean = 0, sq = 0;
  for (double e : v) mean += e;
  mean /= static_cast<double>(v.size());
  for (double e : v) sq += (e - mean) * (e - mean);
  return std::sqrt(sq / static_cast<double>(v.size()));
}

}  // namespace

TEST_CASE("Conv1d, Conv2d, ConvTranspose2d: shapes, parameters, str() as PyTorch's repr",
          "[layers]") {
  tg::Rng rng(4);
  tg::Conv2d c(1, 32, 3, rng, 1, 1);
  CHECK(c.str() == "Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))");
  CHECK(names_of(c.named_parameters()) == std::vector<std::string>{"weight", "bias"});
  CHECK(c.weight.shape() == tg::Shape{32, 1, 3, 3});
  CHECK(c.bias.shape() == tg::Shape{32});
  CHECK(c.weight.dtype() == tg::f32);
  CHECK(c(input(tg::Shape{2, 1, 7, 6}, 0.1)).shape() == tg::Shape{2, 32, 7, 6});
  CHECK(c(input(tg::Shape{1, 7, 6}, 0.1)).shape() == tg::Shape{32, 7, 6});

  tg::Conv2d g(4, 8, 3, rng, 1, 0, 1, 2);
  CHECK(g.str() == "Conv2d(4, 8, kernel_size=(3, 3), stride=(1, 1), groups=2)");
  CHECK(g.weight.shape() == tg::Shape{8, 2, 3, 3});
  CHECK(g(input(tg::Shape{2, 4, 5, 5}, 0.2)).shape() == tg::Shape{2, 8, 3, 3});
  tg::Conv2d v(4, 8, {3, 5}, rng, 2, "valid", 2, 1, false, "zeros", tg::f64);
  CHECK(v.str() ==
        "Conv2d(4, 8, kernel_size=(3, 5), stride=(2, 2), padding=valid, dilation=(2, 2), "
        "bias=false)");
  CHECK(names_of(v.named_parameters()) == std::vector<std::string>{"weight"});
  CHECK(v.weight.dtype() == tg::f64);
  CHECK(v(input(tg::Shape{1, 4, 9, 12}, 0.3, 1.0, tg::f64)).shape() == tg::Shape{1, 8, 3, 2});
  tg::Conv2d s(4, 8, 3, rng, 1, "same");
  CHECK(s.str() == "Conv2d(4, 8, kernel_size=(3, 3), stride=(1, 1), padding=same)");
  CHECK(s(input(tg::Shape{2, 4, 5, 6}, 0.2)).shape() == tg::Shape{2, 8, 5, 6});
  CHECK(tg::Conv2d(4, 8, 3, rng, 1, {1, 0}).str() ==
        "Conv2d(4, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 0))");
  CHECK_THROWS_AS(tg::Conv2d(4, 8, 3, rng, 2, "same"), tg::Error);
  CHECK_THROWS_AS(tg::Conv2d(3, 8, 3, rng, 1, 0, 1, 2), tg::Error);
  CHECK_THROWS_AS(tg::Conv2d(4, 6, 3, rng, 1, 0, 1, 4), tg::Error);
  CHECK_THROWS_AS(tg::Conv2d(0, 6, 3, rng), tg::ShapeError);
  CHECK_THROWS_AS(g(input(tg::Shape{2, 3, 5, 5}, 0.2)), tg::Error);

  tg::Conv1d c1(2, 4, 3, rng);
  CHECK(c1.str() == "Conv1d(2, 4, kernel_size=(3,), stride=(1,))");
  CHECK(c1.weight.shape() == tg::Shape{4, 2, 3});
  CHECK(c1(input(tg::Shape{2, 2, 10}, 0.1)).shape() == tg::Shape{2, 4, 8});
  tg::Conv1d c1b(2, 4, 3, rng, 2, 1, 2, 2, false);
  CHECK(c1b.str() ==
        "Conv1d(2, 4, kernel_size=(3,), stride=(2,), padding=(1,), dilation=(2,), groups=2, "
        "bias=false)");
  CHECK(c1b.weight.shape() == tg::Shape{4, 1, 3});
  CHECK(c1b(input(tg::Shape{2, 10}, 0.1)).shape() == tg::Shape{4, 4});
  CHECK_THROWS_AS(tg::Conv1d(2, 4, 3, rng, 1, tg::Padding2(1, 2)), tg::Error);

  tg::ConvTranspose2d t(4, 6, 3, rng);
  CHECK(t.str() == "ConvTranspose2d(4, 6, kernel_size=(3, 3), stride=(1, 1))");
  CHECK(t.weight.shape() == tg::Shape{4, 6, 3, 3});
  CHECK(t.bias.shape() == tg::Shape{6});
  CHECK(t(input(tg::Shape{2, 4, 5, 5}, 0.1)).shape() == tg::Shape{2, 6, 7, 7});
  tg::ConvTranspose2d t2(4, 6, 3, rng, 2, 1, 1, 2, false, 2);
  CHECK(t2.str() ==
        "ConvTranspose2d(4, 6, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), "
        "dilation=(2, 2), output_padding=(1, 1), groups=2, bias=false)");
  CHECK(t2.weight.shape() == tg::Shape{4, 3, 3, 3});
  // (5 - 1) * 2 - 2 * 1 + 2 * (3 - 1) + 1 + 1 = 12
  CHECK(t2(input(tg::Shape{1, 4, 5, 5}, 0.1)).shape() == tg::Shape{1, 6, 12, 12});
}

TEST_CASE("convolution modules: PyTorch's default initialization bounds", "[layers]") {
  tg::Rng rng(5);
  // fan_in = 64 * 9 = 576: bound 1/24.
  tg::Conv2d c(64, 64, 3, rng);
  const double b = 1.0 / 24.0;
  CHECK(max_abs(c.weight.value()) <= b);
  CHECK(stddev(c.weight.value()) == Approx(b / std::sqrt(3.0)).epsilon(0.02));
  CHECK(max_abs(c.bias.value()) <= b);
  CHECK(max_abs(c.bias.value()) > 0.5 * b);
  // ConvTranspose2d: fan_in = weight.size(1) * 9 = (32 / 2) * 9 = 144: bound 1/12.
  tg::ConvTranspose2d t(128, 32, 3, rng, 1, 0, 0, 2);
  CHECK(t.weight.shape() == tg::Shape{128, 16, 3, 3});
  CHECK(max_abs(t.weight.value()) <= 1.0 / 12.0);
  CHECK(stddev(t.weight.value()) == Approx(1.0 / 12.0 / std::sqrt(3.0)).epsilon(0.02));
  CHECK(max_abs(t.bias.value()) <= 1.0 / 12.0);
  // Conv1d with groups: fan_in = (8 / 4) * 5 = 10.
  tg::Conv1d c1(8, 512, 5, rng, 1, 0, 1, 4);
  CHECK(max_abs(c1.weight.value()) <= 1.0 / std::sqrt(10.0));
  CHECK(stddev(c1.weight.value()) == Approx(1.0 / std::sqrt(10.0) / std::sqrt(3.0)).epsilon(0.03));
  CHECK(max_abs(c1.bias.value()) <= 1.0 / std::sqrt(10.0));
  // Same seed, same weights.
  tg::Rng r1(9), r2(9);
  CHECK(tg::equal(tg::Conv2d(3, 4, 3, r1).weight.value(), tg::Conv2d(3, 4, 3, r2).weight.value()));
}

TEST_CASE("a tapegrad CNN Sequential loads into torch with the same eval outputs",
          "[layers][oracle]") {
  if (!tgtest::torch_available()) {
    WARN("SKIPPED: PyTorch is not available");
    return;
  }
  const auto dir = tgtest::temp_dir("layers_cnn_torch");
  const auto path = (dir / "cnn.npz").string();
  tg::Rng rng(6);
  tg::Sequential net;
  net.emplace_back<tg::Conv2d>(1, 4, 3, rng, 1, 1);
  net.emplace_back<tg::BatchNorm2d>(4);
  net.emplace_back<tg::ReLU>();
  net.emplace_back<tg::MaxPool2d>(2);
  net.emplace_back<tg::Conv2d>(4, 8, 3, rng, 1, 0, 1, 2);
  net.emplace_back<tg::Flatten>();
  net.emplace_back<tg::Linear>(32, 5, rng);
  for (int step = 0; step < 3; ++step) net(input(tg::Shape{4, 1, 8, 8}, 0.3 * step, 2.0));
  net.save(path);
  net.eval();
  const tg::Var y = net(input(tg::Shape{2, 1, 8, 8}, 1.3));
  CHECK(y.shape() == tg::Shape{2, 5});
  auto torch = tgtest::run_python(
      std::string(tgtest::kPythonPrelude) +
      "import numpy as np\n"
      "import torch.nn as nn\n"
      "net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),\n"
      "                    nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, groups=2), nn.Flatten(),\n"
      "                    nn.Linear(32, 5))\n"
      "d = np.load('" +
      path +
      "')\n"
      "net.load_state_dict({k: torch.from_numpy(d[k]) for k in d.files})\n"
      "net.eval()\n"
      "emit('y', net(pattern([2, 1, 8, 8], 1.3, 1.0, torch.float32)))\n");
  tgtest::check_close(values_of(y.value()), torch["y"], 1e-5);
}

TEST_CASE("Conv1d and ConvTranspose2d modules compute what torch.nn's do with the same weights",
          "[layers][oracle]") {
  if (!tgtest::torch_available()) {
    WARN("SKIPPED: PyTorch is not available");
    return;
  }
  const auto dir = tgtest::temp_dir("layers_conv_torch");
  const auto p1 = (dir / "c1.npz").string();
  const auto p2 = (dir / "t2.npz").string();
  tg::Rng rng(7);
  tg::Conv1d c1(4, 6, 3, rng, 2, 1, 2, 2);
  tg::ConvTranspose2d t2(4, 6, {3, 2}, rng, {2, 1}, {1, 0}, {1, 0}, 2, true, 1);
  c1.save(p1);
  t2.save(p2);
  const tg::Var y1 = c1(input(tg::Shape{2, 4, 11}, 0.7));
  const tg::Var y2 = t2(input(tg::Shape{2, 4, 5, 4}, 0.9));
  auto torch = tgtest::run_python(
      std::string(tgtest::kPythonPrelude) +
      "import numpy as np\n"
      "import torch.nn as nn\n"
      "def load(m, p):\n"
      "    d = np.load(p)\n"
      "    m.load_state_dict({k: torch.from_numpy(d[k]) for k in d.files})\n"
      "    return m\n"
      "c1 = load(nn.Conv1d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2), '" +
      p1 +
      "')\n"
      "t2 = load(nn.ConvTranspose2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0),\n"
      "                             output_padding=(1, 0), groups=2), '" +
      p2 +
      "')\n"
      "emit('y1', c1(pattern([2, 4, 11], 0.7, 1.0, torch.float32)))\n"
      "emit('y2', t2(pattern([2, 4, 5, 4], 0.9, 1.0, torch.float32)))\n");
  CHECK(y1.shape() == tg::Shape{2, 6, 5});
  tgtest::check_close(values_of(y1.value()), torch["y1"], 1e-5);
  tgtest::check_close(values_of(y2.value()), torch["y2"], 1e-5);
}

// "c<i>" (built by append: g++ 12 warns, falsely, on `"c" + std::to_string(i)` here).
static std::string case_name(size_t i) {
  std::string name = "c";
  name.append(std::to_string(i));
  return name;
}

TEST_CASE("Conv1d and Conv2d with padding_mode reflect, replicate, circular equal torch.nn's",
          "[layers][oracle]") {
  if (!tgtest::torch_available()) {
    WARN("SKIPPED: PyTorch is not available");
    return;
  }
  const auto dir = tgtest::temp_dir("layers_padding_mode_torch");
  tg::Rng rng(11);
  // Each case: the module, its torch constructor, the input shape. Values and the gradients
  // of sum(y * w) for the input and the weight, in f64.
  struct Case {
    std::unique_ptr<tg::ConvBase> m;
    std::string torch;
    tg::Shape in;
  };
  std::vector<Case> cases;
  auto add = [&](tg::ConvBase* m, std::string torch, tg::Shape in) {
    cases.push_back({std::unique_ptr<tg::ConvBase>(m), std::move(torch), std::move(in)});
  };
  add(new tg::Conv1d(2, 3, 3, rng, 1, 2, 1, 1, true, "reflect", tg::f64),
      "nn.Conv1d(2, 3, 3, padding=2, padding_mode='reflect')", {2, 2, 7});
  add(new tg::Conv1d(2, 4, 4, rng, 1, "same", 1, 2, true, "circular", tg::f64),
      "nn.Conv1d(2, 4, 4, padding='same', groups=2, padding_mode='circular')", {2, 2, 6});
  add(new tg::Conv1d(2, 2, 3, rng, 2, 1, 2, 1, false, "replicate", tg::f64),
      "nn.Conv1d(2, 2, 3, stride=2, padding=1, dilation=2, bias=False, "
      "padding_mode='replicate')",
      {1, 2, 8});
  add(new tg::Conv2d(2, 3, {3, 2}, rng, {2, 1}, {1, 1}, 1, 1, true, "replicate", tg::f64),
      "nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 1), padding_mode='replicate')",
      {2, 2, 5, 4});
  add(new tg::Conv2d(2, 2, 3, rng, 1, "same", 2, 1, true, "circular", tg::f64),
      "nn.Conv2d(2, 2, 3, padding='same', dilation=2, padding_mode='circular')", {2, 2, 5, 6});
  add(new tg::Conv2d(2, 2, 3, rng, 1, "same", 2, 2, true, "reflect", tg::f64),
      "nn.Conv2d(2, 2, 3, padding='same', dilation=2, groups=2, padding_mode='reflect')",
      {2, 5, 6});
  add(new tg::Conv2d(1, 2, 3, rng, 1, 3, 1, 1, true, "circular", tg::f64),
      "nn.Conv2d(1, 2, 3, padding=3, padding_mode='circular')", {1, 1, 3, 4});
  std::string script = std::string(tgtest::kPythonPrelude) +
                       "import numpy as np\n"
                       "import torch.nn as nn\n"
                       "def check(name, m, path, shape):\n"
                       "    d = np.load(path)\n"
                       "    m = m.double()\n"
                       "    m.load_state_dict({k: torch.from_numpy(d[k]) for k in d.files})\n"
                       "    x = pattern(shape, 0.3, 1.0, torch.float64).requires_grad_()\n"
                       "    y = m(x)\n"
                       "    w = pattern(tuple(y.shape), 9.0, 1.0, torch.float64)\n"
                       "    emit(name, y)\n"
                       "    gx, gw = torch.autograd.grad((y * w).sum(), (x, m.weight))\n"
                       "    emit(name + '_gx', gx)\n"
                       "    emit(name + '_gw', gw)\n";
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string path = (dir / case_name(i)).string() + ".npz";
    cases[i].m->save(path);
    std::string shape = "[";
    for (int d = 0; d < cases[i].in.rank(); ++d) shape += std::to_string(cases[i].in[d]) + ", ";
    script += "check('c" + std::to_string(i) + "', " + cases[i].torch + ", '" + path + "', " +
              shape + "])\n";
  }
  auto torch = tgtest::run_python(script);
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string name = case_name(i);
    INFO(name << ": " << cases[i].torch);
    tg::ConvBase& m = *cases[i].m;
    CHECK(m.str().find("padding_mode=" + m.padding_mode()) != std::string::npos);
    const tg::Var x = tg::param(tgtest::pattern(cases[i].in, 0.3, 1.0));
    const tg::Var y = m(x);
    const tg::Var w = tg::constant(tgtest::pattern(y.shape(), 9.0, 1.0));
    tg::sum(y * w).backward();
    tgtest::check_close(values_of(y.value()), torch[name], 1e-10);
    tgtest::check_close(values_of(x.grad().value()), torch[name + "_gx"], 1e-10);
    tgtest::check_close(values_of(m.weight.grad().value()), torch[name + "_gw"], 1e-10);
  }
  CHECK(tg::Conv2d(2, 2, 3, rng, 1, 1, 1, 1, true, "reflect").str() ==
        "Conv2d(2, 2, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), padding_mode=reflect)");
  CHECK_THROWS_WITH(tg::Conv2d(2, 2, 3, rng, 1, 0, 1, 1, true, "foo"),
                    "Conv2d: padding_mode must be one of 'zeros', 'reflect', 'replicate' or "
                    "'circular', got 'foo'");
  // Circular padding wraps around at most once; reflect pads stay below the extent.
  CHECK_THROWS_WITH(
      tg::Conv1d(2, 2, 3, rng, 1, 4, 1, 1, true, "circular")(input(tg::Shape{1, 2, 3}, 0.1)),
      Catch::StartsWith("Conv1d: circular padding (4, 4) wraps around more than once"));
  CHECK_THROWS_AS(
      tg::Conv1d(2, 2, 3, rng, 1, 3, 1, 1, true, "reflect")(input(tg::Shape{1, 2, 3}, 0.1)),
      tg::ShapeError);
  CHECK_THROWS_AS(
      tg::Conv2d(2, 2, 3, rng, 1, 1, 1, 1, true, "reflect")(input(tg::Shape{4, 4}, 0.1)),
      tg::ShapeError);
}
