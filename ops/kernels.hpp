#pragma once

// Internal: the kernels of the op families beyond graph/kernels.hpp (max, softmax, matrix
// products). Elementwise maps and broadcasting are in graph/kernels.hpp.

#include <vector>

#include "graph/kernels.hpp"

namespace tg::kern {

/// Max (largest) or min along `axis`, any dtype; `indices` (when given) gets each result's
/// position along the axis (i64): the first one, or the first NaN, which wins. ShapeError
/// naming `op` when the axis is empty.
Tensor extreme_axis(const Tensor& x, int axis, bool keepdims, bool largest, const char* op,
                    Tensor* indices);
/// Stable sort along `axis`, any dtype, keeping the first `k` (0 <= k <= the axis' extent)
/// of each slice: `values` and `indices` (i64, positions along the axis) get x's shape with
/// k at `axis`. NaN counts as larger than every number (last in ascending order, first in
/// descending), as PyTorch; equal values (and NaNs) keep their order.
void sort_axis(const Tensor& x, int axis, bool descending, int64_t k, Tensor& values,
               Tensor& indices);
/// Inclusive cumulative sum along `axis` (from the end when `reverse`), for f32, f64 and i64
/// (floats accumulated in double); DtypeError naming `op` for bool.
Tensor cumsum_axis(const Tensor& x, int axis, bool reverse, const char* op);
/// Product along `axis` (1 for an empty axis), for f32, f64 and i64 (floats accumulated in
/// double); DtypeError naming `op` for bool.
Tensor prod_axis(const Tensor& x, int axis, bool keepdims, const char* op);
/// out[i] = the product of every other entry of x's slice along `axis` (floating x): prefix
/// times suffix products, no division, so exact with zeros.
Tensor prod_others_axis(const Tensor& x, int axis);
/// Numerically stable softmax / log_softmax along `axis`.
Tensor softmax(const Tensor& x, int axis, bool log);
/// A checked matrix product op(a) op(b) (+ bias): the result's shape and what BLAS is given.
/// Rank-2 or batched operands of equal rank and batch extents.
struct GemmPlan {
  Shape shape;
  int64_t batch = 1, m = 0, n = 0, k = 0;
  bool ta = false, tb = false;
  bool plain = false;  // rank-2 operands of one dtype (the fast path)
};
/// Checks the operands (ShapeError / DtypeError naming `op`, and extents past BLAS's int).
GemmPlan plan_gemm(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor* bias,
                   const char* op);
/// Writes the planned product into `out` (the plan's shape, a's dtype, no overlap with a or
/// b); `bias` (length n) starts every output row when given.
void run_gemm(const GemmPlan& plan, const Tensor& a, const Tensor& b, const Tensor* bias,
              Tensor& out);
/// A matrix product with broadcast batch dims (torch.matmul's), summed down to a batch
/// shape: over every batch index i of F = broadcast(batch(a), batch(b), out_batch),
/// out[j(i)] += op(a[i]) op(b[i]), where j(i) drops the dims that out_batch lacks or holds
/// as 1 (a gradient's reduction done by the gemms themselves). An operand whose batch only
/// broadcasts is read in place (batch stride 0): no broadcast copy is ever made.
struct BroadcastGemmPlan {
  Shape shape;  // out_batch + [m, n]
  Shape full;   // F
  int64_t m = 0, n = 0, k = 0;
  bool ta = false, tb = false;
  bool reduces = false;  // some output matrices sum several products
  int64_t sa[Shape::kMaxRank] = {}, sb[Shape::kMaxRank] = {}, sc[Shape::kMaxRank] = {};
};
/// Checks the operands (rank >= 2, one floating dtype, inner extents, batch dims that
/// broadcast; ShapeError / DtypeError naming `op`) and plans the product.
BroadcastGemmPlan plan_gemm_broadcast(const Tensor& a, bool ta, const Tensor& b, bool tb,
                                      const Shape& out_batch, const char* op);
/// Writes the planned product into `out` (the plan's shape, a's dtype, no overlap).
void run_gemm_broadcast(const BroadcastGemmPlan& plan, const Tensor& a, const Tensor& b,
                        Tensor& out);
/// The planned product as a new tensor.
Tensor gemm(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor* bias);
/// The same product (no bias) into an existing tensor of the result's shape and dtype.
void gemm_into(Tensor& out, const Tensor& a, bool ta, const Tensor& b, bool tb);
/// out += op(a) op(b) for rank-2 operands of out's dtype (a gradient added into its sum).
void gemm_accumulate(Tensor& out, const Tensor& a, bool ta, const Tensor& b, bool tb);
/// C = op(A) op(B) + beta C on raw row-major matrices with leading dimensions (OpenBLAS;
/// the convolutions' column products). Nothing is checked but the extents' 32-bit range;
/// an empty product (m, n or k of 0) only scales C by beta.
void gemm_raw(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
              const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void gemm_raw(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double* a, int64_t lda,
              const double* b, int64_t ldb, double beta, double* c, int64_t ldc);

/// The sum of f(0), ..., f(n - 1) in eight interleaved double accumulators: the compiler
/// vectorizes it (one running sum is a serial chain of double adds), and the order is fixed,
/// so a result does not depend on how a caller splits its work over threads (the
/// normalization kernels, conv2d's bias gradient).
template <class F>
double lane_sum(int64_t n, F f) {
  double acc[8] = {};
  int64_t b = 0;
  for (; b + 8 <= n; b += 8)
    for (int j = 0; j < 8; ++j) acc[j] += f(b + j);
  double tail = 0;
  for (; b < n; ++b) tail += f(b);
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

}  // namespace tg::kern
