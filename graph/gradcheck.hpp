#pragma once

#include <functional>
#include <string>
#include <vector>

#include "graph/var.hpp"

namespace tg {

struct GradcheckOptions {
  /// Finite-difference step (central differences, in float64).
  double eps = 1e-6;
  /// An element passes when |analytic - numeric| <= atol + rtol * |numeric|.
  double atol = 1e-5;
  double rtol = 1e-3;
  /// Seed of the random output weights used by gradgradcheck.
  uint64_t seed = 0;
};

/// Result of `gradcheck` / `gradgradcheck`.
struct GradcheckReport {
  bool passed = true;
  double max_abs_error = 0.0;
  double max_rel_error = 0.0;
  /// Where the worst error was: input index and flat element index within it.
  int worst_input = -1;
  int64_t worst_element = -1;
  /// Analytic and numeric derivative at the worst element (for the worst output element).
  double analytic = 0.0;
  double numeric = 0.0;
  /// One readable line.
  std::string message;
  explicit operator bool() const { return passed; }
};

using GradcheckFn = std::function<Var(const std::vector<Var>&)>;

/// Compares the full Jacobian from backprop with central finite differences, in float64
/// (inputs given in f32 are promoted; the function sees f64 leaves).
GradcheckReport gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = {});
/// The same check for the gradient itself: differentiates v . J(x) (v random, fixed by
/// `options.seed`) with create_graph and compares with finite differences of it.
GradcheckReport gradgradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                              const GradcheckOptions& options = {});

/// The forward-mode check (PyTorch's gradcheck(check_forward_ad=True)): runs `fn` inside a
/// fwd::DualLevel on duals of the inputs with random tangents t (fixed by `options.seed`)
/// and compares the output's tangent J t with central finite differences along t and with
/// J t from backprop (the Jacobian row by row, as gradcheck). An output without a tangent
/// counts as zeros.
GradcheckReport fwdcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                         const GradcheckOptions& options = {});

}  // namespace tg
