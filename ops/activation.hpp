#pragma once

#include <string_view>

#include "graph/var.hpp"

namespace tg {

Var sigmoid(const Var& x);
Var tanh(const Var& x);
/// NOTE: relu'(0) = 0, as in PyTorch.
Var relu(const Var& x);
Var leaky_relu(const Var& x, double negative_slope = 0.01);
/// Softmax along `axis` (shifted by the max, so it is finite for any finite input).
Var softmax(const Var& x, int64_t axis = -1);
/// log(softmax(x)) along `axis`, computed as x - max - log(sum(exp(x - max))).
Var log_softmax(const Var& x, int64_t axis = -1);

/// x * Phi(x), Phi the standard normal CDF: approximate "none" computes it exactly with erf,
/// "tanh" as 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (as F.gelu); another string is
/// a tg::Error naming it.
Var gelu(const Var& x, std::string_view approximate = "none");
/// x * sigmoid(x) (swish).
Var silu(const Var& x);
/// x * tanh(softplus(x)).
Var mish(const Var& x);
/// x for x > 0, alpha * (exp(x) - 1) otherwise. NOTE: the gradient at 0 is alpha (the x <= 0
/// branch), and a NaN x passes dy on, as PyTorch.
Var elu(const Var& x, double alpha = 1.0);
/// x / (1 + |x|).
Var softsign(const Var& x);
/// x limited to [min_val, max_val]. NOTE: the gradient is dy strictly inside the interval
/// and 0 at its ends (PyTorch's hardtanh_backward; clamp's is dy at the ends). min_val >
/// max_val is a tg::Error (nn.Hardtanh refuses it; F.hardtanh returns max_val everywhere).
Var hardtanh(const Var& x, double min_val = -1.0, double max_val = 1.0);

}  // namespace tg
