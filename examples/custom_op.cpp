// A user-defined op, recorded the same way every built-in op is, and checked with
// gradcheck (first derivatives) and gradgradcheck (second derivatives) in float64.
#include <tapegrad/tapegrad.hpp>

#include <iostream>

// swish(x) = x * sigmoid(x);  d swish / dx = s + x * s * (1 - s), with s = sigmoid(x).
tg::Var swish(const tg::Var& x) {
  tg::Tensor y = (x.detach() * tg::sigmoid(x.detach())).value();  // forward value, unrecorded
  return tg::record("swish", y, {x}, [](const tg::BackwardCtx& c, const tg::Var& dy) {
    const tg::Var& x = c.input(0);
    tg::Var s = tg::sigmoid(x);
    // Written with the framework's own ops, so this gradient is differentiable again.
    return tg::Grads{dy * (s + x * s * (1.0 - s))};  // one gradient per input
  });
}

int main() {
  tg::Rng rng(0);
  const std::vector<tg::Tensor> inputs{tg::randn({4, 3}, rng)};
  const auto fn = [](const std::vector<tg::Var>& v) { return swish(v[0]); };
  const tg::GradcheckReport first = tg::gradcheck(fn, inputs);
  const tg::GradcheckReport second = tg::gradgradcheck(fn, inputs);
  std::cout << "gradcheck:     " << first.message << "\n";
  std::cout << "gradgradcheck: " << second.message << "\n";

  // The op in use: a graph through it differentiates like any other.
  tg::Var x = tg::param(tg::tensor({-2, 0, 3}, {3}));
  tg::sum(swish(x)).backward();
  std::cout << "d/dx sum(swish(x)) at x = [-2, 0, 3]: " << x.grad().value() << "\n";
  return first.passed && second.passed ? 0 : 1;
}
