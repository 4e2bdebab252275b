// The seed question through the library API: why do hidden units that see the same input
// end up different? A 2-3-1 sigmoid network without biases, trained from identical and from
// random initial weights on the 7 rows of data/seed_regression.csv (docs/seed.md).
#include <tapegrad/tapegrad.hpp>

#include <cstdio>

#include "seed_data.hpp"

int main(int argc, char** argv) {
  const auto [X, Y] = read_seed(argc > 1 ? argv[1] : "data/seed_regression.csv");

  double final_loss[2] = {0, 0};
  bool identical[2] = {false, false};
  for (int run = 0; run < 2; ++run) {  // run 0: every weight 0.5; run 1: random weights
    tg::Rng rng(0);
    tg::MLP net({2, 3, 1}, tg::Activation::sigmoid, tg::Activation::sigmoid, rng, /*bias=*/false);
    if (run == 0) {
      tg::init::constant(net.linear(0).weight, 0.5);
      tg::init::constant(net.linear(1).weight, 0.5);
    }
    tg::SGD opt(net.parameters(), {.lr = 2.0});
    for (int step = 0; step < 5000; ++step) {
      opt.zero_grad();
      tg::Var loss = tg::mse_loss(net(X), Y);
      loss.backward();
      opt.step();
      final_loss[run] = loss.item();
    }
    // Are the hidden units' incoming weights still all equal to each other?
    identical[run] = tg::diagnose(net).linear[0].all_units_identical();
    std::printf("%s initial weights: final loss %.6f, hidden units %s\n",
                run == 0 ? "identical" : "random   ", final_loss[run],
                identical[run] ? "still identical" : "different");
  }
  // Identical units get identical gradients and stay equal; random ones drift apart and
  // fit the data better.
  return identical[0] && !identical[1] && final_loss[1] < final_loss[0] ? 0 : 1;
}
