#pragma once

#include <vector>

#include "graph/var.hpp"

namespace tg {

// Normalization (PyTorch's torch.nn.functional.batch_norm, layer_norm, group_norm,
// instance_norm). Statistics are the mean and the biased variance over the normalized
// elements; y = (x - mean) / sqrt(var + eps), then times weight and plus bias when given
// (an undefined Var means none). Floating inputs only (a DtypeError naming the op
// otherwise); a wrong rank or a channel count that does not match the running statistics,
// weight or bias is a ShapeError naming the op and the shapes.
//
// One fused kernel normalizes for all four (recorded as `normalize`): the statistics in
// double, per contiguous row in two passes (mean, then squared deviations) merged by
// Chan's formula, so a large offset costs no precision; then one pass writes the result.
// Its backward is the closed form dx = rstd (g - mean(g) - xhat mean(g xhat)), recorded as
// `normalize_backward`, whose own backward is made of differentiable ops: derivatives of
// every order work. The affine part (weight, bias) and eval mode's running statistics are
// elementwise ops. Deviation: the running statistics may be given as values that require a
// gradient in eval mode and then get one (PyTorch refuses them).

/// x is [N, C] or [N, C, *]. training: the batch's statistics per channel, and, when
/// running_mean / running_var are given, they are updated in place without recording
/// (running = (1 - momentum) running + momentum batch, with the unbiased variance for
/// running_var, as PyTorch); training with one value per channel is an Error, as PyTorch.
/// Otherwise (eval) the running statistics normalize x (they must be given).
Var batch_norm(const Var& x, const Var& running_mean, const Var& running_var,
               const Var& weight = {}, const Var& bias = {}, bool training = false,
               double momentum = 0.1, double eps = 1e-5);
/// Normalizes over the last dims, which must equal `normalized_shape`; weight and bias have
/// that shape.
Var layer_norm(const Var& x, const std::vector<int64_t>& normalized_shape, const Var& weight = {},
               const Var& bias = {}, double eps = 1e-5);
/// x is [N, C, *]; the C channels split into num_groups groups (C % num_groups == 0), each
/// normalized over its channels and the rest; weight and bias are per channel ([C]).
Var group_norm(const Var& x, int64_t num_groups, const Var& weight = {}, const Var& bias = {},
               double eps = 1e-5);
/// x is [N, C, *] with at least one dim after C: each (sample, channel) normalized over the
/// rest. With use_input_stats and running statistics given, they are updated in place with
/// the statistics averaged over the batch (as PyTorch); without use_input_stats the running
/// statistics normalize x.
Var instance_norm(const Var& x, const Var& running_mean = {}, const Var& running_var = {},
                  const Var& weight = {}, const Var& bias = {}, bool use_input_stats = true,
                  double momentum = 0.1, double eps = 1e-5);

}  // namespace tg
