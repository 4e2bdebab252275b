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

}  // namespace tg
