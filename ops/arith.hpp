#pragma once

#include "graph/engine_ops.hpp"  // add
#include "graph/var.hpp"

namespace tg {

// Elementwise arithmetic with NumPy broadcasting. Both operands must have the same dtype
// (convert with `Tensor::to`); a scalar takes the dtype of the Var.

Var sub(const Var& a, const Var& b);
Var mul(const Var& a, const Var& b);
Var div(const Var& a, const Var& b);
Var neg(const Var& x);
/// x ** p for a constant exponent.
Var pow(const Var& x, double p);
/// a ** b elementwise (a > 0 where b is not an integer).
Var pow(const Var& a, const Var& b);
Var add_scalar(const Var& x, double s);
Var mul_scalar(const Var& x, double s);

Var operator+(const Var& a, const Var& b);
Var operator-(const Var& a, const Var& b);
Var operator*(const Var& a, const Var& b);
Var operator/(const Var& a, const Var& b);
Var operator-(const Var& x);
Var operator+(const Var& a, double s);
Var operator+(double s, const Var& a);
Var operator-(const Var& a, double s);
Var operator-(double s, const Var& a);
Var operator*(const Var& a, double s);
Var operator*(double s, const Var& a);
Var operator/(const Var& a, double s);
Var operator/(double s, const Var& a);

namespace detail {
/// x where `keep` is nonzero, else `other` (a selection: a NaN or Inf where keep is 0 is
/// gone); its gradient is dy where keep is nonzero, else 0. `keep` is a constant of x's shape
/// and dtype. Backward formulas use it to read an operand safely where their value is fixed
/// by definition (pow's gradients at a = 0 and b = 0).
Var keep_where(const Var& x, const Tensor& keep, double other = 0.0);
}  // namespace detail

}  // namespace tg
