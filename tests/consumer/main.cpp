// Trains y = 2x + 1 with the installed library and checks the gradient of a custom op.
#include <cmath>
#include <cstdio>
#include <tapegrad/tapegrad.hpp>

int main() {
  tg::Rng rng(1);
  tg::Var x = tg::constant(tg::arange(0.0, 1.0, 0.125).reshape({8, 1}));
  tg::Var y = tg::constant(tg::tensor({1, 1.25, 1.5, 1.75, 2, 2.25, 2.5, 2.75}, {8, 1}));
  tg::Var w = tg::param(tg::randn({1, 1}, rng));
  tg::Var b = tg::param(tg::zeros({1}));
  double loss = 0;
  for (int i = 0; i < 500; ++i) {
    w.zero_grad();
    b.zero_grad();
    tg::Var l = tg::mse_loss(tg::linear(x, w, b), y);
    l.backward();
    for (tg::Var* p : {&w, &b}) {
      float* v = p->value().data<float>();
      v[0] -= 0.5f * p->grad().value().data<float>()[0];
    }
    loss = l.item();
  }
  const auto report =
      tg::gradcheck([](const std::vector<tg::Var>& v) { return tg::sum(tg::tanh(v[0]) * v[0]); },
                    {tg::randn({3}, rng)});
  std::printf("consumer: loss %.3g, w %.4f, b %.4f, gradcheck %s\n", loss, w.item(), b.item(),
              report.passed ? "passed" : "FAILED");
  const bool ok = loss < 1e-4 && std::abs(w.item() - 2.0) < 1e-2 && report.passed;
  return ok ? 0 : 1;
}
