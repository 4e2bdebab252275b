#pragma once

#include "graph/rng.hpp"
#include "graph/var.hpp"

namespace tg {

/// PyTorch's F.dropout: while `training`, each element of x is zeroed with probability p
/// and the others are scaled by 1 / (1 - p) (inverted dropout; p = 1 gives zeros), the mask
/// drawn from `rng` (one uniform number per element, in order); otherwise, or for p = 0, x
/// itself. p outside [0, 1] throws tg::Error. The gradient is the output gradient times the
/// same mask. (PyTorch's `inplace` flag has no counterpart.)
Var dropout(const Var& x, double p, bool training, Rng& rng);

}  // namespace tg
