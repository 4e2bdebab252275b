// The README's "library in 30 lines", compiled and run as written.

#include <catch2/catch.hpp>
#include <filesystem>
#include <iostream>
#include <tapegrad/tapegrad.hpp>

namespace {

// A user's own op: the same recording call every built-in op uses.
tg::Var my_softplus(const tg::Var& x) {
  tg::Tensor y = tg::softplus(x.detach()).value();  // forward value
  return tg::record("my_softplus", y, {x}, [](const tg::BackwardCtx& c, const tg::Var& dy) {
    return tg::Grads{dy * tg::sigmoid(c.input(0))};  // one gradient per input
  });
}

struct TwoLayer : tg::Module {  // a user's own module
  tg::Linear fc1, fc2;
  TwoLayer(int in, int hidden, tg::Rng& rng) : fc1(in, hidden, rng), fc2(hidden, 1, rng) {
    register_module("fc1", fc1);  // parameters(), named_parameters(),
    register_module("fc2", fc2);  // to(dtype), save/load follow
  }
  tg::Var forward(const tg::Var& x) { return tg::sigmoid(fc2(my_softplus(fc1(x)))); }
};

}  // namespace

TEST_CASE("the README example works as written", "[readme]") {
  tg::Rng rng(42);  // all randomness is explicit
  TwoLayer net(2, 8, rng);
  tg::Adam opt(net.parameters(), {.lr = 0.05});
  tg::Var X = tg::constant(tg::randn({64, 2}, rng)), Y = tg::constant(tg::rand({64, 1}, rng));
  double first = 0, last = 0;
  for (int step = 0; step < 1000; ++step) {
    opt.zero_grad();
    tg::Var loss = tg::mse_loss(net.forward(X), Y);
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item();
  }
  auto report = tg::gradcheck([](const std::vector<tg::Var>& v) { return my_softplus(v[0]); },
                              {tg::randn({4, 3}, rng)});  // float64 central differences
  std::cout << report.message << "\n";                    // pass/fail, max errors, worst element
  const auto path = (std::filesystem::temp_directory_path() / "tapegrad_readme_net.npz").string();
  net.save(path);  // numpy.load reads it
  CHECK(report.passed);
  CHECK(last < first);
  CHECK(net.named_parameters()[0].first == "fc1.weight");
  TwoLayer other(2, 8, rng);
  other.load(path);
  CHECK(tg::equal(other.fc2.weight.value(), net.fc2.weight.value()));
  std::filesystem::remove(path);
}
