#pragma once

#include <vector>

#include "graph/var.hpp"

namespace tg {

/// Sum of all elements (a rank-0 result).
Var sum(const Var& x);
/// Sum over `axes` (negative counts from the end).
Var sum(const Var& x, const std::vector<int64_t>& axes, bool keepdims = false);
Var mean(const Var& x);
Var mean(const Var& x, const std::vector<int64_t>& axes, bool keepdims = false);
/// Largest element; its gradient goes to the first position holding it.
Var max(const Var& x);
/// Largest element along `axis`; its gradient goes to the first position holding it.
Var max(const Var& x, int64_t axis, bool keepdims = false);
/// Sums `x` down to `shape` (the inverse of broadcasting: the engine uses it to bring a
/// gradient back to its input's shape).
Var sum_to(const Var& x, const Shape& shape);
/// Broadcasts `x` to `shape` (NumPy rules).
Var expand(const Var& x, const Shape& shape);

}  // namespace tg
