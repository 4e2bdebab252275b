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
/// Largest / smallest element (any dtype; NaN wins). The gradient is shared evenly by the
/// positions holding it (ties), as PyTorch's.
Var max(const Var& x);
Var min(const Var& x);
/// Largest / smallest element along `axis` (NaN wins); the gradient goes to the position
/// max_dim / min_dim return.
Var max(const Var& x, int64_t axis, bool keepdims = false);
Var min(const Var& x, int64_t axis, bool keepdims = false);
/// PyTorch's torch.max(x, dim) / torch.min(x, dim): the values along `dim` and their indices
/// (i64: the first extreme, or the first NaN). `auto [values, indices] = max_dim(x, 1);`
struct ValuesIndices {
  Var values;
  Var indices;
};
ValuesIndices max_dim(const Var& x, int64_t dim, bool keepdim = false);
ValuesIndices min_dim(const Var& x, int64_t dim, bool keepdim = false);
/// Index (i64) of the largest / smallest element: of the flattened tensor, or along `dim`.
Var argmax(const Var& x);
Var argmin(const Var& x);
Var argmax(const Var& x, int64_t dim, bool keepdim = false);
Var argmin(const Var& x, int64_t dim, bool keepdim = false);

}  // namespace tg
