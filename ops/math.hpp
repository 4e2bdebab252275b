#pragma once

#include "graph/var.hpp"

namespace tg {

// Elementwise functions.

Var exp(const Var& x);
/// Natural log (x > 0).
Var log(const Var& x);
Var sqrt(const Var& x);
/// NOTE: d|x|/dx at 0 is taken as 0 (the subgradient PyTorch uses).
Var abs(const Var& x);
/// Values limited to [lo, hi]; the gradient is 1 inside the interval, 0 outside.
Var clamp(const Var& x, double lo, double hi);
/// log(1 + exp(x)), stable for large |x|.
Var softplus(const Var& x);

/// Elementwise larger / smaller of a and b, with NumPy broadcasting (any dtype, both the
/// same). NaN in either operand gives NaN. NOTE: where a == b the gradient is split half and
/// half between a and b; a NaN sends the whole gradient to both (as torch.maximum).
Var maximum(const Var& a, const Var& b);
Var minimum(const Var& a, const Var& b);

Var sin(const Var& x);
Var cos(const Var& x);
/// The error function, 2/sqrt(pi) * integral of exp(-t^2) from 0 to x.
Var erf(const Var& x);
/// 1 / sqrt(x).
Var rsqrt(const Var& x);
/// 1 / x.
Var reciprocal(const Var& x);
/// x * x.
Var square(const Var& x);
/// log(1 + x), accurate for small x.
Var log1p(const Var& x);
/// exp(x) - 1, accurate for small x.
Var expm1(const Var& x);

// Piecewise constant functions: differentiable, with a zero gradient (as PyTorch).
// NOTE: the zero gradient is dy * 0, so a NaN or Inf reaching them stays NaN (PyTorch's
// zeros_like hides it). They take i64 tensors too (floor, ceil and round return a copy) and
// sign takes bool (a copy), as PyTorch.

/// -1, 0 or 1 by the sign of x. NOTE: sign(NaN) is NaN, as numpy.sign; torch.sign gives 0
/// (pytorch/pytorch#41245), which would hide a NaN.
Var sign(const Var& x);
Var floor(const Var& x);
Var ceil(const Var& x);
/// Round to the nearest integer, halves to even (torch.round: 0.5 -> 0, 1.5 -> 2, -2.5 -> -2).
Var round(const Var& x);

/// x limited to [min, max] elementwise, with tensor bounds (x, min and max broadcast
/// together; any dtype, all the same). Either bound may be undefined (`Var()`: no bound),
/// not both (tg::Error). As torch.clamp: min(max(x, min), max), so where min > max the result
/// is max; NaN in x or a bound gives NaN. Gradients as PyTorch: x gets dy where
/// min <= x <= max, min gets dy where x < min (and min < max), max gets dy where x > max
/// (or max < min).
Var clamp(const Var& x, const Var& min, const Var& max);

}  // namespace tg
