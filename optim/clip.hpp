#pragma once

#include <vector>

#include "graph/var.hpp"

namespace tg {

/// Scales the gradients of `params` together so that their total norm (the `norm_type`
/// norm of all gradient elements: (sum |g|^p)^(1/p) for any nonzero p, the largest
/// magnitude for infinity, the smallest for -infinity) is at most `max_norm`, as
/// torch.nn.utils.clip_grad_norm_ (coefficient max_norm / (total + 1e-6), capped at 1; a
/// NaN total makes every gradient NaN). Returns the total norm before clipping. Parameters
/// without a gradient are skipped (none: 0). With `error_if_nonfinite`, a NaN/Inf total
/// throws Error and nothing changes. norm_type 0 (torch counts the parameters with a
/// nonzero gradient, not a norm) or NaN throws Error.
double clip_grad_norm(const std::vector<Var>& params, double max_norm, double norm_type = 2.0,
                      bool error_if_nonfinite = false);

/// Clamps every gradient element to [-clip_value, clip_value].
void clip_grad_value(const std::vector<Var>& params, double clip_value);

}  // namespace tg
