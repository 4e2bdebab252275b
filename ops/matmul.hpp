#pragma once

#include "graph/var.hpp"

namespace tg {

/// Matrix product with torch.matmul's semantics. Rank 2: [M, K] x [K, N] -> [M, N]. A
/// rank-1 operand is a row vector [1, K] on the left and a column vector [K, 1] on the right,
/// and that 1 is dropped from the result ([K] x [K] -> [], [M, K] x [K] -> [M], [K] x
/// [..., K, N] -> [..., N]). Rank >= 3: a batch of products whose batch dims broadcast
/// ([2, 1, 3, 4] x [5, 4, 2] -> [2, 5, 3, 2]). An operand whose batch only broadcasts is
/// never copied: when the right one's batch dims are all 1 ([5, 3, 4] x [4, 2], [2, 3, 4] x
/// [1, 4, 5]) the product is one gemm over all of the left one's rows; otherwise a loop of
/// gemms reads the broadcast operand in place. The gradients of broadcast batch dims are
/// summed by the gemms themselves (no gradient of the broadcast shape is made). Rank 0 is a
/// ShapeError, as in PyTorch.
Var matmul(const Var& a, const Var& b);
/// op(a) x op(b) for rank-2 (or equal-batch) operands, where op transposes when its flag
/// is set. The transposition is passed to BLAS as a flag: no transposed copy is made.
Var matmul(const Var& a, const Var& b, bool transpose_a, bool transpose_b);
/// x W^T + b for x [N, in], W [out, in], b [out] (b may be undefined): one gemm with the
/// bias as its starting value.
Var linear(const Var& x, const Var& weight, const Var& bias = {});

/// op(a) x op(b) written into `out`, which must already have the result's shape and dtype
/// and share no memory with `a` or `b` (ShapeError otherwise): no allocation and nothing
/// recorded, for inference loops and preallocated buffers (as torch::mm_out). Same shapes
/// and transpose flags as `matmul(a, b, transpose_a, transpose_b)`, same bits.
void matmul_out(Tensor& out, const Tensor& a, const Tensor& b, bool transpose_a = false,
                bool transpose_b = false);

}  // namespace tg

namespace tg {

/// Threads OpenBLAS uses for matrix products (process-wide: it is BLAS's own pool).
void set_blas_threads(int n);
int blas_threads();

}  // namespace tg
