#pragma once

// Internal: the tensor-level kernels every layer above shares: checks, elementwise maps
// with NumPy broadcasting, in-place accumulation, sums, broadcast copies and permutes. The
// engine's own ops (graph/engine_ops.hpp) stand on these; the op families add theirs in
// ops/kernels.hpp. Elementwise maps are templates (instantiated where used).

#include <string>
#include <vector>

#include "graph/tensor.hpp"

namespace tg::kern {

/// Throws DtypeError unless a and b share a dtype.
void check_same_dtype(const Tensor& a, const Tensor& b, const char* op);
/// Throws DtypeError naming `op` unless t is f32 or f64.
inline void check_floating(const Tensor& t, const char* op) {
  if (!is_floating(t.dtype())) [[unlikely]]
    detail::throw_not_floating(t.dtype(), op);
}
/// Throws ShapeError unless a and b have equal shapes.
void check_same_shape(const Tensor& a, const Tensor& b, const char* op,
                      const char* what_a = "input", const char* what_b = "target");

/// y[i] = f(x[i]) for a floating x (DtypeError naming `op` otherwise).
template <class F>
Tensor map(const Tensor& x, const char* op, F f) {
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch(x.dtype(), op, [&]<class T>() {
    const T* px = x.data<T>();
    T* po = out.data<T>();
    const int64_t n = x.numel();
    for (int64_t i = 0; i < n; ++i) po[i] = f(px[i]);
  });
  return out;
}

/// Strides (in elements) of `s` seen inside the broadcast shape `out` (0 on broadcast axes).
void broadcast_strides(const Shape& s, const Shape& out, int64_t* strides);

/// po[i] = f(pa[.], pb[.]) over the broadcast `shape` of sa and sb (NumPy broadcasting):
/// the one loop behind every binary elementwise kernel, whatever the element types.
template <class A, class B, class O, class F>
void zip_loop(const A* pa, const Shape& sa, const B* pb, const Shape& sb, O* po, const Shape& shape,
              F f) {
  const int64_t n = shape.numel();
  if (sa == sb) {
    for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
  } else if (sb.numel() == 1 && sa.numel() == n) {
    const B vb = pb[0];
    for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], vb);
  } else if (sa.numel() == 1 && sb.numel() == n) {
    const A va = pa[0];
    for (int64_t i = 0; i < n; ++i) po[i] = f(va, pb[i]);
  } else if (n > 0) {
    const int r = shape.rank();
    int64_t ta[Shape::kMaxRank], tb[Shape::kMaxRank], idx[Shape::kMaxRank] = {};
    broadcast_strides(sa, shape, ta);
    broadcast_strides(sb, shape, tb);
    const int64_t inner = shape[r - 1], ia = ta[r - 1], ib = tb[r - 1];
    int64_t oa = 0, ob = 0;
    for (int64_t o = 0; o < n; o += inner) {
      for (int64_t i = 0; i < inner; ++i) po[o + i] = f(pa[oa + i * ia], pb[ob + i * ib]);
      for (int d = r - 2; d >= 0; --d) {  // odometer over the outer axes
        oa += ta[d];
        ob += tb[d];
        if (++idx[d] < shape[d]) break;
        oa -= ta[d] * shape[d];
        ob -= tb[d] * shape[d];
        idx[d] = 0;
      }
    }
  }
}

/// z = f(a, b) with NumPy broadcasting, for floating a and b of one dtype (DtypeError naming
/// `op` otherwise).
template <class F>
Tensor zip(const Tensor& a, const Tensor& b, const char* op, F f) {
  check_same_dtype(a, b, op);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = Tensor::empty(shape, a.dtype());
  dispatch(a.dtype(), op, [&]<class T>() {
    zip_loop(a.data<T>(), a.shape(), b.data<T>(), b.shape(), out.data<T>(), shape, f);
  });
  return out;
}

/// dst += src (same shape and dtype), in place.
void add_(Tensor& dst, const Tensor& src);
/// Sum of all elements as a rank-0 tensor (floating: accumulated in double; i64: wraps on
/// overflow, as PyTorch).
Tensor sum_all(const Tensor& x);
/// Sum over one axis (f32, f64 or i64, as sum_all).
Tensor sum_axis(const Tensor& x, int axis, bool keepdims);
/// Sum down to `shape` (inverse of broadcasting); throws ShapeError naming `op`.
Tensor sum_to(const Tensor& x, const Shape& shape, const char* op);
/// Broadcast copy of x to `shape`.
Tensor expand(const Tensor& x, const Shape& shape, const char* op);
/// Axis permutation (copy).
Tensor permute(const Tensor& x, const std::vector<int>& order);
/// `s` without `axis` (or with it as 1 when `keepdims`): the shape of a reduction's result.
Shape reduced_shape(const Shape& s, int axis, bool keepdims);
/// x viewed as [outer, n, inner] around `axis`.
void split_axis(const Shape& s, int axis, int64_t& outer, int64_t& n, int64_t& inner);

}  // namespace tg::kern
