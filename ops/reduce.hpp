#pragma once

#include <vector>

#include "graph/engine_ops.hpp"  // sum_to, expand
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

}  // namespace tg
