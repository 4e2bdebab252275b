#pragma once

#include "graph/var.hpp"

namespace tg {

/// Matrix product. Rank 2: [M, K] x [K, N] -> [M, N]. Rank >= 3 with equal leading batch
/// extents: a batch of products. A rank >= 3 left operand times a rank-2 right operand
/// multiplies every row block by the same matrix.
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
