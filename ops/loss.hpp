#pragma once

#include <cstdint>
#include <vector>

#include "graph/var.hpp"

namespace tg {

enum class Reduction { mean, sum, none };

/// Mean (or sum, or elementwise) squared error; shapes must be equal.
Var mse_loss(const Var& input, const Var& target, Reduction reduction = Reduction::mean);
/// Softmax cross-entropy from logits [N, C] and class indices in [0, C), one per row.
/// Stable for any finite logits (it works on log_softmax).
Var cross_entropy(const Var& logits, const std::vector<int64_t>& targets,
                  Reduction reduction = Reduction::mean);
/// Negative log-likelihood from log-probabilities [N, C] and class indices.
Var nll_loss(const Var& log_probs, const std::vector<int64_t>& targets,
             Reduction reduction = Reduction::mean);
/// Binary cross-entropy of sigmoid(logits) against targets in [0, 1] (same shape), in the
/// stable form max(x, 0) - x*y + log(1 + exp(-|x|)).
Var binary_cross_entropy_with_logits(const Var& logits, const Var& target,
                                     Reduction reduction = Reduction::mean);

}  // namespace tg
