#pragma once

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "graph/var.hpp"

namespace tg {

// Losses, as torch.nn.functional's: same names, argument order, defaults and results.
// `input` and `target` of the elementwise losses must have equal shapes (PyTorch broadcasts
// them with a warning; here a mismatch is a ShapeError naming both shapes). Every loss is
// differentiable twice in its floating operands.

/// How per-element losses are combined. `batchmean` (the sum divided by the batch size,
/// input.shape[0]) is for kl_div only; any other loss given it throws tg::Error.
enum class Reduction { mean, sum, none, batchmean };

/// Mean (or sum, or elementwise) squared error; shapes must be equal.
Var mse_loss(const Var& input, const Var& target, Reduction reduction = Reduction::mean);
/// Mean (or sum, or elementwise) absolute error |input - target| (gradient 0 where equal).
Var l1_loss(const Var& input, const Var& target, Reduction reduction = Reduction::mean);
/// 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (d = input - target); beta = 0 is
/// l1_loss. beta < 0 throws tg::Error.
Var smooth_l1_loss(const Var& input, const Var& target, Reduction reduction = Reduction::mean,
                   double beta = 1.0);
/// 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta); delta must be > 0 (tg::Error).
Var huber_loss(const Var& input, const Var& target, Reduction reduction = Reduction::mean,
               double delta = 1.0);
/// Kullback-Leibler divergence with `input` in log space: target (log target - input),
/// 0 where target = 0; with `log_target`, exp(target) (target - input). `batchmean` divides
/// the sum by input.shape[0] (by 1 for a rank-0 input), the true KL divergence per sample.
/// Differentiable in input and target. NOTE: where target = 0 (not log_target) the gradient
/// in target is -input; PyTorch's is NaN there (0 / 0 in xlogy's derivative).
Var kl_div(const Var& input, const Var& target, Reduction reduction = Reduction::mean,
           bool log_target = false);

/// Options of nll_loss (a designated initializer reads `{.ignore_index = 0}`). Every field
/// has a default member initializer, so g++'s -Wmissing-field-initializers stays quiet about
/// the fields such an initializer leaves out.
struct NllLossOptions {
  /// Weight of each class ([C], the input's dtype), or undefined for all ones. Not
  /// differentiable (as PyTorch's): a weight that requires grad throws tg::Error while
  /// grad mode is on.
  Var weight = Var();
  /// Positions whose target is this value add nothing and count for nothing in the mean.
  int64_t ignore_index = -100;
  /// mean divides the sum by the summed weights of the targets not ignored (NaN when every
  /// target is ignored, as PyTorch).
  Reduction reduction = Reduction::mean;
};

/// Options of cross_entropy.
struct CrossEntropyOptions {
  /// As NllLossOptions::weight. With class-probability targets the loss is a plain product
  /// in the weight, and it is differentiable there (as PyTorch's).
  Var weight = Var();
  /// As NllLossOptions::ignore_index; class-probability targets take none (a value >= 0
  /// throws tg::Error).
  int64_t ignore_index = -100;
  /// As NllLossOptions::reduction; with class-probability targets mean divides by the number
  /// of positions (N d1 ...), whatever the weights.
  Reduction reduction = Reduction::mean;
  /// In [0, 1]: the target is mixed with the uniform distribution over the C classes,
  /// (1 - label_smoothing) target + label_smoothing / C.
  double label_smoothing = 0.0;
};

/// Negative log-likelihood from log-probabilities `input` [N, C] or [N, C, d1, ...] (or
/// [C] with a rank-0 target) and class indices `target` (i64, [N] or [N, d1, ...]):
/// -weight[t] input[n, t, ...] per position. A target outside [0, C) that is not
/// ignore_index is an IndexError naming the value and C.
Var nll_loss(const Var& input, const Var& target, const NllLossOptions& options = {});
/// Softmax cross-entropy from logits `input` [N, C] or [N, C, d1, ...] (or [C]), along
/// dim 1. `target` is either class indices (i64, input's shape without dim 1), or class
/// probabilities (floating, input's shape), differentiable in the target too.
/// NOTE: computed from log_softmax, which subtracts the max: finite for logits of 1e4.
Var cross_entropy(const Var& input, const Var& target, const CrossEntropyOptions& options = {});
/// The same with the class indices of [N, C] input given as a vector (as Tensor(targets,
/// {N}) with the default ignore_index, -100).
Var cross_entropy(const Var& logits, const std::vector<int64_t>& targets,
                  Reduction reduction = Reduction::mean);
Var nll_loss(const Var& log_probs, const std::vector<int64_t>& targets,
             Reduction reduction = Reduction::mean);
/// A braced list of class indices, `cross_entropy(x, {2, 0})`, is taken as a vector (an
/// overload of its own, else `{0}` would also read as a Var).
Var cross_entropy(const Var& logits, std::initializer_list<int64_t> targets,
                  Reduction reduction = Reduction::mean);
Var nll_loss(const Var& log_probs, std::initializer_list<int64_t> targets,
             Reduction reduction = Reduction::mean);

/// Binary cross-entropy of probabilities `input` (in [0, 1]; a value outside is an
/// IndexError, NaN passes through) against `target` (same shape):
/// -weight (target log(input) + (1 - target) log(1 - input)), each log clamped to >= -100
/// as PyTorch. `weight` broadcasts to the input's shape and is not differentiable (a weight
/// that requires grad throws tg::Error while grad mode is on). The gradient in target is
/// log(1 - input) - log(input) (PyTorch's, unclamped).
Var binary_cross_entropy(const Var& input, const Var& target, const Var& weight = Var(),
                         Reduction reduction = Reduction::mean);
/// Binary cross-entropy of sigmoid(logits) against targets in [0, 1] (same shape), in the
/// stable form max(x, 0) - x*y + log(1 + exp(-|x|)).
Var binary_cross_entropy_with_logits(const Var& logits, const Var& target,
                                     Reduction reduction = Reduction::mean);

}  // namespace tg
