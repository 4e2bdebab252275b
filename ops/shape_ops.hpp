#pragma once

#include <initializer_list>
#include <vector>

#include "graph/var.hpp"

namespace tg {

/// Same elements, new shape (one extent may be -1). Shares the buffer.
Var reshape(const Var& x, const std::vector<int64_t>& shape);
/// Keeps axes before `start_axis` and flattens the rest into one.
Var flatten(const Var& x, int64_t start_axis = 1);
/// Swaps the last two axes (rank >= 2).
Var transpose(const Var& x);
/// Swaps two axes.
Var transpose(const Var& x, int64_t axis0, int64_t axis1);
/// Reorders axes: output axis i is input axis `order[i]`.
Var permute(const Var& x, const std::vector<int64_t>& order);
/// Elements start, start+step, ... before stop along `axis` (Python semantics for negative
/// start/stop; step > 0).
Var slice(const Var& x, int64_t axis, int64_t start, int64_t stop, int64_t step = 1);
/// The entries at `indices` along `axis` (repeats allowed; gradients of repeats add up).
Var index_select(const Var& x, int64_t axis, const std::vector<int64_t>& indices);
inline Var index_select(const Var& x, int64_t axis, std::initializer_list<int64_t> indices) {
  return index_select(x, axis, std::vector<int64_t>(indices));
}
namespace detail {
/// index_select's adjoint: zeros of `shape` with dy's entries added at `indices` (in range,
/// non-negative) along `axis`; differentiable (its adjoint is index_select).
Var index_select_backward(const Var& dy, const Shape& shape, int axis,
                          std::vector<int64_t> indices);
}  // namespace detail
/// Joins tensors along `axis` (all other extents equal).
Var concat(const std::vector<Var>& xs, int64_t axis = 0);

}  // namespace tg
