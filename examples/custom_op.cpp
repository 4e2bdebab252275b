// A user-defined op, recorded the same way every built-in op is: its forward, its backward
// and its JVP rule (forward mode) side by side, checked with gradcheck (first derivatives),
// gradgradcheck (second derivatives) and fwdcheck (the JVP) in float64.
#include <tapegrad/tapegrad.hpp>

#include <iostream>

// swish(x) = x * sigmoid(x);  d swish / dx = s + x * s * (1 - s), with s = sigmoid(x).
tg::Var swish(const tg::Var& x) {
  tg::Tensor y = (x.detach() * tg::sigmoid(x.detach())).value();  // forward value, unrecorded
  return tg::record(
      "swish", y, {x},
      [](const tg::BackwardCtx& c, const tg::Var& dy) {
        const tg::Var& x = c.input(0);
        tg::Var s = tg::sigmoid(x);
        // Written with the framework's own ops, so this gradient is differentiable again.
        return tg::Grads{dy * (s + x * s * (1.0 - s))};  // one gradient per input
      },
      // The JVP rule (optional): the output's tangent from the inputs' (c.tangent(i), undefined
      // when input i has none), used inside a tg::fwd::DualLevel. Without it, forward mode
      // reaching this op throws. Written with ops too, so reverse mode can differentiate it.
      [](const tg::JvpCtx& c) {
        const tg::Var& x = c.input(0);
        tg::Var s = tg::sigmoid(x);
        return c.tangent(0) * (s + x * s * (1.0 - s));
      });
}

int main() {
  tg::Rng rng(0);
  const std::vector<tg::Tensor> inputs{tg::randn({4, 3}, rng)};
  const auto fn = [](const std::vector<tg::Var>& v) { return swish(v[0]); };
  const tg::GradcheckReport first = tg::gradcheck(fn, inputs);
  const tg::GradcheckReport second = tg::gradgradcheck(fn, inputs);
  const tg::GradcheckReport forward = tg::fwdcheck(fn, inputs);
  std::cout << "gradcheck:     " << first.message << "\n";
  std::cout << "gradgradcheck: " << second.message << "\n";
  std::cout << "fwdcheck:      " << forward.message << "\n";

  // The op in use: a graph through it differentiates like any other.
  tg::Var x = tg::param(tg::tensor({-2, 0, 3}, {3}));
  tg::sum(swish(x)).backward();
  std::cout << "d/dx sum(swish(x)) at x = [-2, 0, 3]: " << x.grad().value() << "\n";

  // Forward mode: the tangent of swish(x) along t, in the same pass as the value.
  {
    tg::fwd::DualLevel level;
    const tg::Var t = tg::constant(tg::tensor({1, 1, 1}, {3}));
    const auto [y, dy] = tg::fwd::unpack_dual(swish(tg::fwd::make_dual(x, t)));
    std::cout << "swish'(x) at x = [-2, 0, 3] by forward mode: " << dy.value() << "\n";
  }
  return first.passed && second.passed && forward.passed ? 0 : 1;
}
