#pragma once

// Internal: the kernels of the op families beyond graph/kernels.hpp (max, softmax, matrix
// products). Elementwise maps and broadcasting are in graph/kernels.hpp.

#include <vector>

#include "graph/kernels.hpp"

namespace tg {
class NodePtr;
}

namespace tg::kern {

/// Max along `axis`; `mask` gets 1 at the first position of each max, 0 elsewhere.
Tensor max_axis(const Tensor& x, int axis, bool keepdims, Tensor* mask);
/// Numerically stable softmax / log_softmax along `axis`.
Tensor softmax(const Tensor& x, int axis, bool log);
/// General matrix product of rank-2 (or batched rank-3 with equal batch) tensors with BLAS
/// transpose flags; `bias` (length N) starts every output row when given.
Tensor gemm(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor* bias);
/// The same product (no bias) into an existing tensor of the result's shape and dtype.
void gemm_into(Tensor& out, const Tensor& a, bool ta, const Tensor& b, bool tb);
/// `gemm` without bias, its result written in place into a new unrecorded node
/// (detail::matrix_node: a recycled node and block when this thread has one).
NodePtr gemm_node(const Tensor& a, bool ta, const Tensor& b, bool tb);

}  // namespace tg::kern
