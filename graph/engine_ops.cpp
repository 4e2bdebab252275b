#include "graph/engine_ops.hpp"

#include "graph/fused_tangent.hpp"
#include "graph/kernels.hpp"

namespace tg {

Var add(const Var& a, const Var& b) {
  // d(a + b) = (dy, dy); the engine sums each back to its input's shape.
  return record(
      "add", kern::zip(a.value(), b.value(), "add", [](auto x, auto y) { return x + y; }), {a, b},
      [](const BackwardCtx&, const Var& dy) {
        return Grads{dy, dy};
      },
      detail::fused_jvp(
          [](const JvpCtx& c) { return detail::add_defined(c.tangent(0), c.tangent(1)); },
          [](const detail::FusedCtx& c, Tensor* t) { detail::sum_tangent(c, t, 1.0); }));
}

Var sum_to(const Var& x, const Shape& shape) {
  // the adjoint of expand
  return record(
      "sum_to", kern::sum_to(x.value(), shape, "sum_to"), {x},
      [](const BackwardCtx& c, const Var& dy) { return Grads{expand(dy, c.input_shape(0))}; },
      [shape](const JvpCtx& c) { return sum_to(c.tangent(0), shape); });
}

Var expand(const Var& x, const Shape& shape) {
  // the adjoint of sum_to
  return record(
      "expand", kern::expand(x.value(), shape, "expand"), {x},
      [](const BackwardCtx& c, const Var& dy) { return Grads{sum_to(dy, c.input_shape(0))}; },
      [shape](const JvpCtx& c) { return expand(c.tangent(0), shape); });
}

}  // namespace tg
