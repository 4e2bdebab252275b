#pragma once

// The three ops the engine applies itself (graph/engine.cpp): `add` sums two gradients of
// one value when the backward is recorded (create_graph), `sum_to` brings a broadcast
// gradient back to its input's shape, and `expand` is sum_to's adjoint (its backward). They
// live with the engine so that graph/ depends on nothing above it; ops/arith.hpp and
// ops/reduce.hpp export them with the rest of their families.

#include "graph/var.hpp"

namespace tg {

/// a + b elementwise with NumPy broadcasting (both of one dtype).
Var add(const Var& a, const Var& b);
/// Sums `x` down to `shape` (the inverse of broadcasting: the engine uses it to bring a
/// gradient back to its input's shape).
Var sum_to(const Var& x, const Shape& shape);
/// Broadcasts `x` to `shape` (NumPy rules).
Var expand(const Var& x, const Shape& shape);

namespace detail {
/// a + b where an undefined Var is zero (the sum of the terms of a JVP rule).
inline Var add_defined(const Var& a, const Var& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return add(a, b);
}

/// The JVP of an op bilinear in its first two inputs, f(a, b) (a product, a convolution):
/// f(ta, b) + f(a, tb), each term only where that tangent is defined.
template <class F>
Var bilinear_jvp(const JvpCtx& c, F f) {
  return add_defined(c.has_tangent(0) ? f(c.tangent(0), c.input(1)) : Var(),
                     c.has_tangent(1) ? f(c.input(0), c.tangent(1)) : Var());
}

/// Records an elementwise op of several inputs (broadcast to the output's shape):
/// `partial(ctx, i, d)` returns d times the derivative of the output in input i (a diagonal
/// map; undefined for zero), d of the output's shape, reading ctx.input / ctx.output (ctx is
/// a BackwardCtx or a JvpCtx). The backward applies it to dy for each input that wants a
/// gradient, the JVP rule to each tangent (expanded to the output's shape) and sums.
template <class P>
Var record_elementwise(const char* op, Tensor value, std::initializer_list<VarRef> inputs,
                       P partial) {
  return record(
      op, std::move(value), inputs,
      [partial](const BackwardCtx& c, const Var& dy) {
        Grads g;
        for (size_t i = 0; i < c.num_inputs(); ++i)
          g.push_back(c.needs_grad(i) ? partial(c, i, dy) : Var());
        return g;
      },
      [partial](const JvpCtx& c) {
        Var sum;
        for (size_t i = 0; i < c.num_inputs(); ++i) {
          Var t = c.tangent(i);
          if (!t.defined()) continue;
          if (t.shape() != c.output().shape()) t = expand(t, c.output().shape());
          sum = add_defined(sum, partial(c, i, t));
        }
        return sum;
      });
}
}  // namespace detail

}  // namespace tg
