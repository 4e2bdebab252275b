#pragma once

#include <optional>
#include <vector>

#include "graph/var.hpp"

namespace tg {

// Selection and indexing with mask and index tensors (PyTorch's torch.where, masked_fill,
// gather, scatter, scatter_add, index_select, index_add and F.embedding). Masks are bool
// tensors, indices i64 tensors (a DtypeError naming the op otherwise); an index outside
// its dimension is an IndexError naming the op, the dimension, the value and the size.
// Every op is differentiable in its floating operands, and its backward is made of these
// same ops (gather's is scatter_add and the other way round), so second derivatives work.

/// a where cond is true, else b; cond, a and b broadcast together (NumPy rules). a and b
/// share one dtype; a scalar takes the dtype of the other operand.
Var where(const Var& cond, const Var& a, const Var& b);
Var where(const Var& cond, const Var& a, double b);
Var where(const Var& cond, double a, const Var& b);
/// x with `value` where mask is true; mask broadcasts to x's shape.
Var masked_fill(const Var& x, const Var& mask, double value);

/// x's elements where mask is true, as a rank-1 tensor in row-major order
/// (torch.masked_select); x and mask broadcast together (NumPy rules). The gradient goes
/// back to the selected places (an index_select of the flattened, broadcast x).
Var masked_select(const Var& x, const Var& mask);
/// The coordinates of x's non-zero elements (true for bool; a NaN is non-zero), an i64
/// tensor [count, rank] in row-major order (torch.nonzero): [1, 0] or [0, 0] for a rank-0
/// x. Any dtype; records nothing.
Var nonzero(const Var& x);

/// out[i][j] = x[index[i][j]][j] (dim 0; likewise for any dim): index has x's rank, and
/// extents no larger than x's outside `dim`; the result has index's shape.
Var gather(const Var& x, int64_t dim, const Var& index);
/// x with src[i][j] added at [index[i][j]][j] (dim 0; likewise for any dim); src has
/// index's shape (PyTorch also takes a larger src and reads its leading part; here that is
/// a ShapeError). Repeated indices add up.
Var scatter_add(const Var& x, int64_t dim, const Var& index, const Var& src);
/// x with src[i][j] written at [index[i][j]][j]; with repeated indices the last write
/// wins (PyTorch leaves the choice unspecified).
Var scatter(const Var& x, int64_t dim, const Var& index, const Var& src);
Var scatter(const Var& x, int64_t dim, const Var& index, double value);
/// The entries of x at `index` (rank 0 or 1, i64) along `dim`.
Var index_select(const Var& x, int64_t dim, const Var& index);
/// x with alpha * source's entries added at `index` (rank 1) along `dim`; source has x's
/// shape with index's length at `dim`. Repeated indices add up.
Var index_add(const Var& x, int64_t dim, const Var& index, const Var& source, double alpha = 1.0);
/// Rows of `weight` ([num_embeddings, embedding_dim]) at `ids` (i64, any shape): the
/// result has shape ids.shape + [embedding_dim]. Rows looked up at `padding_idx` (negative
/// counts from the end) get no gradient.
Var embedding(const Var& ids, const Var& weight, std::optional<int64_t> padding_idx = {});

namespace detail {
/// gather's adjoint: zeros of `shape` with dy added at `index` along `dim` (scatter_add into
/// fresh zeros, without copying them); differentiable (its adjoint is gather).
Var gather_backward(const Var& dy, const Shape& shape, int64_t dim, const Var& index);
}  // namespace detail

}  // namespace tg
