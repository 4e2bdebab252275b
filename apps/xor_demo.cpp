// Trains XOR with a 2-8-1 tanh/sigmoid network built from tapegrad's ops, printing the
// loss as it falls. The first program the README runs until the `tapegrad` CLI exists.

#include <cstdio>

#include <tapegrad/tapegrad.hpp>

int main() {
  tg::Rng rng(0);
  const tg::Var x = tg::constant(tg::tensor({0, 0, 0, 1, 1, 0, 1, 1}, {4, 2}));
  const tg::Var y = tg::constant(tg::tensor({0, 1, 1, 0}, {4, 1}));
  tg::Var w1 = tg::param(tg::rand({8, 2}, rng, -1.0, 1.0));
  tg::Var b1 = tg::param(tg::zeros({8}));
  tg::Var w2 = tg::param(tg::rand({1, 8}, rng, -1.0, 1.0));
  tg::Var b2 = tg::param(tg::zeros({1}));
  const double lr = 0.5;
  for (int step = 0; step <= 2000; ++step) {
    tg::Var out = tg::sigmoid(tg::linear(tg::tanh(tg::linear(x, w1, b1)), w2, b2));
    tg::Var loss = tg::mse_loss(out, y);
    for (tg::Var* p : {&w1, &b1, &w2, &b2}) p->zero_grad();
    loss.backward();
    for (tg::Var* p : {&w1, &b1, &w2, &b2}) {  // plain gradient descent, in place
      float* w = p->value().data<float>();
      const float* g = p->grad().value().data<float>();
      for (int64_t i = 0; i < p->numel(); ++i) w[i] -= static_cast<float>(lr) * g[i];
    }
    if (step % 250 == 0) std::printf("step %4d  loss %.6f\n", step, loss.item());
  }
  tg::NoGradGuard no_grad;
  tg::Var out = tg::sigmoid(tg::linear(tg::tanh(tg::linear(x, w1, b1)), w2, b2));
  std::printf("predictions for (0,0) (0,1) (1,0) (1,1): %s\n", out.value().str().c_str());
  return 0;
}
