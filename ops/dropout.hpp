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

/// PyTorch's F.dropout2d (channel dropout): while `training`, each whole channel of x
/// ([N, C, H, W], or unbatched [C, H, W]) is zeroed with probability p and the others are
/// scaled by 1 / (1 - p); one uniform number per (n, c) in order from `rng`. Otherwise, or
/// for p = 0, x itself. p outside [0, 1] throws tg::Error, another rank a ShapeError.
/// NOTE: PyTorch (2.x) reads a 3-D input as [N, C, L] (1-d behaviour, with a warning that
/// this will change to [C, H, W]); tapegrad takes the documented meaning [C, H, W], and
/// throws for other ranks where PyTorch warns.
Var dropout2d(const Var& x, double p, bool training, Rng& rng);
/// PyTorch's F.dropout1d: as dropout2d over [N, C, L] or unbatched [C, L].
Var dropout1d(const Var& x, double p, bool training, Rng& rng);

}  // namespace tg
