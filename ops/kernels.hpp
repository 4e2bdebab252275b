#pragma once

// Internal: tensor-level kernels shared by the op files and the engine. Elementwise maps are
// templates (instantiated in the op file that uses them); the rest lives in kernels.cpp.

#include <string>
#include <vector>

#include "graph/tensor.hpp"

namespace tg {
class NodePtr;
}

namespace tg::kern {

/// Throws DtypeError unless a and b share a dtype.
void check_same_dtype(const Tensor& a, const Tensor& b, const char* op);
/// Throws ShapeError unless a and b have equal shapes.
void check_same_shape(const Tensor& a, const Tensor& b, const char* op,
                      const char* what_a = "input", const char* what_b = "target");

/// y[i] = f(x[i]).
template <class F>
Tensor map(const Tensor& x, F f) {
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T* po = out.data<T>();
    const int64_t n = x.numel();
    for (int64_t i = 0; i < n; ++i) po[i] = f(px[i]);
  });
  return out;
}

/// Strides (in elements) of `s` seen inside the broadcast shape `out` (0 on broadcast axes).
void broadcast_strides(const Shape& s, const Shape& out, int64_t* strides);

/// z = f(a, b) with NumPy broadcasting.
template <class F>
Tensor zip(const Tensor& a, const Tensor& b, const char* op, F f) {
  check_same_dtype(a, b, op);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = Tensor::empty(shape, a.dtype());
  dispatch(a.dtype(), [&]<class T>() {
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* po = out.data<T>();
    const int64_t n = out.numel();
    if (a.shape() == b.shape()) {
      for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
    } else if (b.numel() == 1 && a.numel() == n) {
      const T vb = pb[0];
      for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], vb);
    } else if (a.numel() == 1 && b.numel() == n) {
      const T va = pa[0];
      for (int64_t i = 0; i < n; ++i) po[i] = f(va, pb[i]);
    } else if (n > 0) {
      const int r = shape.rank();
      int64_t sa[Shape::kMaxRank], sb[Shape::kMaxRank], idx[Shape::kMaxRank] = {};
      broadcast_strides(a.shape(), shape, sa);
      broadcast_strides(b.shape(), shape, sb);
      const int64_t inner = shape[r - 1], ia = sa[r - 1], ib = sb[r - 1];
      int64_t oa = 0, ob = 0;
      for (int64_t o = 0; o < n; o += inner) {
        for (int64_t i = 0; i < inner; ++i) po[o + i] = f(pa[oa + i * ia], pb[ob + i * ib]);
        for (int d = r - 2; d >= 0; --d) {  // odometer over the outer axes
          oa += sa[d];
          ob += sb[d];
          if (++idx[d] < shape[d]) break;
          oa -= sa[d] * shape[d];
          ob -= sb[d] * shape[d];
          idx[d] = 0;
        }
      }
    }
  });
  return out;
}

/// dst += src (same shape and dtype), in place.
void add_(Tensor& dst, const Tensor& src);
/// Sum of all elements as a rank-0 tensor (accumulated in double).
Tensor sum_all(const Tensor& x);
/// Sum over one axis.
Tensor sum_axis(const Tensor& x, int axis, bool keepdims);
/// Sum down to `shape` (inverse of broadcasting); throws ShapeError naming `op`.
Tensor sum_to(const Tensor& x, const Shape& shape, const char* op);
/// Broadcast copy of x to `shape`.
Tensor expand(const Tensor& x, const Shape& shape, const char* op);
/// Axis permutation (copy).
Tensor permute(const Tensor& x, const std::vector<int>& order);
/// Max along `axis`; `mask` gets 1 at the first position of each max, 0 elsewhere.
Tensor max_axis(const Tensor& x, int axis, bool keepdims, Tensor* mask);
/// Numerically stable softmax / log_softmax along `axis`.
Tensor softmax(const Tensor& x, int axis, bool log);
/// x viewed as [outer, n, inner] around `axis`.
void split_axis(const Shape& s, int axis, int64_t& outer, int64_t& n, int64_t& inner);
/// General matrix product of rank-2 (or batched rank-3 with equal batch) tensors with BLAS
/// transpose flags; `bias` (length N) starts every output row when given.
Tensor gemm(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor* bias);
/// The same product (no bias) into an existing tensor of the result's shape and dtype.
void gemm_into(Tensor& out, const Tensor& a, bool ta, const Tensor& b, bool tb);
/// `gemm` without bias, its result written in place into a new unrecorded node
/// (detail::matrix_node: a recycled node and block when this thread has one).
NodePtr gemm_node(const Tensor& a, bool ta, const Tensor& b, bool tb);

}  // namespace tg::kern
