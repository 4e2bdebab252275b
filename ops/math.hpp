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

}  // namespace tg
