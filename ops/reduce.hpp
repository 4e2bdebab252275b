#pragma once

#include <initializer_list>
#include <limits>
#include <vector>

#include "graph/engine_ops.hpp"  // sum_to, expand
#include "graph/var.hpp"

namespace tg {

/// Sum of all elements (a rank-0 result). An i64 tensor sums to i64, wrapping on overflow
/// (as PyTorch) and recording nothing; bool is a DtypeError (PyTorch gives i64).
Var sum(const Var& x);
/// Sum over `axes` (negative counts from the end).
Var sum(const Var& x, const std::vector<int64_t>& axes, bool keepdims = false);
/// Mean (f32 or f64 only, as PyTorch).
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

// Sorting and selection (PyTorch's torch.sort, argsort, topk). Every dtype (bool too):
// i64 and bool values come back unrecorded. NaN counts as larger than every number: last
// in ascending order, first in descending, and the first pick of topk(largest). The
// gradient of the values goes to the positions the indices name (scatter, whose own
// gradient is gather, so second derivatives work). A rank-0 x takes dim 0 or -1.

/// The values along `dim` in ascending (or descending) order and their positions (i64).
/// The sort is always stable (equal values keep their order), as PyTorch's CPU sort;
/// `stable = false` is accepted and gives the same result.
ValuesIndices sort(const Var& x, int64_t dim = -1, bool descending = false, bool stable = true);
/// The indices of sort(x, dim, descending).
Var argsort(const Var& x, int64_t dim = -1, bool descending = false, bool stable = true);
/// The k largest (or smallest) entries along `dim` and their positions; 0 <= k <= the
/// extent of `dim` (an IndexError naming topk, k and the extent otherwise). Equal values
/// are taken in order of position. `sorted = false` is accepted and also returns them
/// sorted (PyTorch leaves that order unspecified).
ValuesIndices topk(const Var& x, int64_t k, int64_t dim = -1, bool largest = true,
                   bool sorted = true);

// Reductions over several dims, as PyTorch: `dims` may be negative, an empty list reduces
// every dim (PyTorch's dim=() or None), a rank-0 x takes {0} or {-1}. Floating x only (a
// DtypeError naming the op otherwise).

/// log(sum(exp(x))) over `dims`, shifted by the max (no overflow): a slice of -inf gives
/// -inf, one holding +inf gives +inf, an empty one -inf, as PyTorch.
Var logsumexp(const Var& x, const std::vector<int64_t>& dims, bool keepdim = false);
Var logsumexp(const Var& x, std::initializer_list<int64_t> dims, bool keepdim = false);
/// Variance over `dims`: sum((x - mean)^2) / max(0, N - correction), two passes (mean first)
/// as PyTorch; correction >= N gives inf (NaN for a constant slice), as PyTorch.
Var var(const Var& x, const std::vector<int64_t>& dims, int64_t correction = 1,
        bool keepdim = false);
Var var(const Var& x, std::initializer_list<int64_t> dims, int64_t correction = 1,
        bool keepdim = false);
/// Variance of every element.
Var var(const Var& x, int64_t correction = 1);
/// sqrt(var): the same arguments. Where std is 0 the gradient is 0 (not NaN), as PyTorch.
Var std(const Var& x, const std::vector<int64_t>& dims, int64_t correction = 1,
        bool keepdim = false);
Var std(const Var& x, std::initializer_list<int64_t> dims, int64_t correction = 1,
        bool keepdim = false);
Var std(const Var& x, int64_t correction = 1);
/// The vector p-norm over `dims` (torch.norm / torch.linalg.vector_norm) for any p:
/// sum(|x|^p)^(1/p); p = +-inf (std::numeric_limits<double>::infinity()) the max (min) |x|;
/// p = 0 the count of non-zeros (NOTE: a NaN makes it NaN, where PyTorch counts it as a
/// non-zero); p = NaN is a tg::Error. Gradients as PyTorch: sign(x) for p = 1; x / norm for
/// p = 2, and 0 where the norm is 0; for p = +-inf, dy shared evenly by the entries whose
/// |x| reaches the norm (or is NaN), times sign(x); 0 for p = 0; else sign(x) |x|^(p - 1) /
/// norm^(p - 1), 0 where x = 0 or the norm is 0.
Var norm(const Var& x, double p, const std::vector<int64_t>& dims, bool keepdim = false);
Var norm(const Var& x, double p, std::initializer_list<int64_t> dims, bool keepdim = false);
/// The p-norm of every element.
Var norm(const Var& x, double p = 2);

/// Product of every element (rank 0; 1 for an empty x), and along `dim`. f32, f64 and i64
/// (i64 unrecorded, as PyTorch's integer prod; bool is a DtypeError, where PyTorch gives
/// i64). The gradient is the product of the other entries, exact with one or several
/// zeros, and differentiable again.
Var prod(const Var& x);
Var prod(const Var& x, int64_t dim, bool keepdim = false);
/// Cumulative sum along `dim` (f32, f64, i64 as prod); its gradient is the cumulative sum
/// of dy from the end.
Var cumsum(const Var& x, int64_t dim);

}  // namespace tg
