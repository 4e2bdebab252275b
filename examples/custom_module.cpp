// A user-defined module trained with an optimizer, saved, and loaded back.
#include <tapegrad/tapegrad.hpp>

#include <iostream>

struct TwoLayer : tg::Module {  // a user's own module
  tg::Linear fc1, fc2;
  TwoLayer(int in, int hidden, tg::Rng& rng) : fc1(in, hidden, rng), fc2(hidden, 1, rng) {
    register_module("fc1", fc1);  // parameters(), named_parameters(),
    register_module("fc2", fc2);  // to(dtype), save and load follow from this
  }
  tg::Var forward(const tg::Var& x) { return tg::sigmoid(fc2(tg::softplus(fc1(x)))); }
};

int main() {
  tg::Rng rng(42);  // all randomness comes from explicit, seeded generators
  TwoLayer net(2, 8, rng);
  tg::Adam opt(net.parameters(), {.lr = 0.05});
  tg::Var X = tg::constant(tg::randn({64, 2}, rng));
  tg::Var Y = tg::constant(tg::rand({64, 1}, rng));
  double first = 0, last = 0;
  for (int step = 0; step < 500; ++step) {
    opt.zero_grad();
    tg::Var loss = tg::mse_loss(net.forward(X), Y);  // records the graph as it runs
    loss.backward();                                 // walks it in reverse
    opt.step();
    (step == 0 ? first : last) = loss.item();
  }
  std::cout << "loss " << first << " -> " << last << "\n";
  net.save("two_layer.npz");  // numpy.load reads it; written atomically
  TwoLayer copy(2, 8, rng);
  copy.load("two_layer.npz");  // all or nothing: a bad file changes no parameter
  const bool same = tg::equal(copy.fc2.weight.value(), net.fc2.weight.value());
  return last < first && same ? 0 : 1;
}
