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

}  // namespace tg
