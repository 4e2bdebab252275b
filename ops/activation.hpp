#pragma once

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

}  // namespace tg
