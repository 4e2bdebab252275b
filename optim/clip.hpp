#pragma once

#include <string>
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

namespace detail {
/// clip_grad_norm in steps, for gradients held in parts (dist::ZeroRedundancyOptimizer:
/// each rank reduces its slices, the partial norms are combined over the ranks, every
/// part is scaled by the same coefficient). `op` names the caller in errors.
struct GradNorm {
  /// Error for a norm type clip_grad_norm refuses.
  GradNorm(double norm_type, std::string op);
  /// The partial norm of some gradient elements: the sum of |g|^p, the largest |g| (inf)
  /// or the smallest (-inf), NaN when any element is NaN; `none()` for no element.
  double partial(const std::vector<Tensor>& grads) const;
  double none() const;
  /// Two partial norms as one (NaN when either is NaN).
  double combine(double a, double b) const;
  /// The total norm of all the parts' combined partial norm.
  double total(double partial) const;
  /// The factor clip_grad_norm scales by, when it scales (a NaN total gives NaN); 1 when
  /// the gradients stay. Error when `error_if_nonfinite` and the total is NaN or infinite.
  double coefficient(double total, double max_norm, bool error_if_nonfinite) const;
  double norm_type;
  std::string op;
};

/// t *= coef, element by element, in place (a floating tensor).
void scale_in_place(Tensor& t, double coef);
}  // namespace detail

}  // namespace tg
