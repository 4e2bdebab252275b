#pragma once

#include <vector>

#include "graph/var.hpp"

namespace tg {

// Comparisons and logic (PyTorch's torch.eq ... torch.all). Results are bool tensors: they
// carry no gradient and record nothing. Comparisons take any dtype, both operands the same
// one (convert with `Tensor::to`), with NumPy broadcasting; NaN compares unequal to
// everything, itself included. A scalar is compared in the tensor's dtype when it is a float
// tensor (as PyTorch), and exactly (not rounded to an integer) when it is an i64 tensor.

Var eq(const Var& a, const Var& b);
Var ne(const Var& a, const Var& b);
Var lt(const Var& a, const Var& b);
Var le(const Var& a, const Var& b);
Var gt(const Var& a, const Var& b);
Var ge(const Var& a, const Var& b);
Var eq(const Var& a, double b);
Var ne(const Var& a, double b);
Var lt(const Var& a, double b);
Var le(const Var& a, double b);
Var gt(const Var& a, double b);
Var ge(const Var& a, double b);

/// Elementwise logic on the truth of each element (non-zero, NaN included, is true); the
/// operands may have different dtypes, as in PyTorch.
Var logical_and(const Var& a, const Var& b);
Var logical_or(const Var& a, const Var& b);
Var logical_xor(const Var& a, const Var& b);
Var logical_not(const Var& x);

/// Elementwise tests (false / true for every element of an i64 or bool tensor).
Var isnan(const Var& x);
Var isinf(const Var& x);
Var isfinite(const Var& x);

/// Whether any / every element is true: over the whole tensor (a rank-0 bool), or along
/// `dim` (negative counts from the end).
Var any(const Var& x);
Var all(const Var& x);
Var any(const Var& x, int64_t dim, bool keepdim = false);
Var all(const Var& x, int64_t dim, bool keepdim = false);

}  // namespace tg
