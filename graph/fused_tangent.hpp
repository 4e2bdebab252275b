#pragma once

// Internal: the fused tangent kernels of elementwise ops (Note [Fused tangents] in
// graph/forward_ad.cpp). An op passes one to `record` with its JVP rule
// (detail::fused_jvp(rule, kernel)); it runs only inside record's forward-mode branch, when
// nothing records, so an op outside a level runs exactly its path without forward mode.
// Operands that broadcast take the rule. Include only from op .cpp files.

#include "graph/kernels.hpp"
#include "graph/var.hpp"

namespace tg::detail {

// Each kernel writes the output's tangent into `dst` (detail::FusedJvp), a tensor that is
// empty or holds a kept buffer.

/// Makes `dst` a tensor of shape and dtype for a fused kernel's tangent (contents
/// unspecified): the buffer dst holds when it is kept and of exactly its block size (Note
/// [Kept tangent buffers] in graph/forward_ad.cpp), else Tensor::empty's. On the level's
/// thread only.
void tangent_buffer(Tensor& dst, const Shape& shape, Dtype dtype);

/// The tangent of a unary elementwise op: ty[i] = g(tx[i], y[i], x[i]), in one pass.
template <class G>
auto unary_tangent(const char* op, G g) {
  return [op, g](const FusedCtx& c, Tensor* dst) {
    const Tensor& tx = *c.tangents[0];
    const Tensor& x = c.inputs[0]->value();
    const Tensor& y = c.y;
    Tensor& ty = *dst;
    tangent_buffer(ty, y.shape(), y.dtype());
    dispatch(y.dtype(), op, [&]<class T>() {
      const T* pt = tx.data<T>();
      const T* py = y.data<T>();
      const T* px = x.data<T>();
      T* o = ty.data<T>();
      const int64_t n = y.numel();
#pragma GCC ivdep  // a fresh output: no aliasing
      for (int64_t i = 0; i < n; ++i) o[i] = g(pt[i], py[i], px[i]);
    });
  };
}

/// The tangent of a binary elementwise op on operands of one shape:
/// ty[i] = fa(ta[i], a[i], b[i]) + fb(tb[i], a[i], b[i]) (the terms of the operands that
/// have a tangent), in one pass.
template <class FA, class FB>
auto binary_tangent(const char* op, FA fa, FB fb) {
  return [op, fa, fb](const FusedCtx& c, Tensor* dst) {
    const Tensor *ta = c.tangents[0], *tb = c.tangents[1];
    Tensor& ty = *dst;
    tangent_buffer(ty, c.y.shape(), c.y.dtype());
    dispatch(c.y.dtype(), op, [&]<class T>() {
      const T* pa = c.inputs[0]->value().data<T>();
      const T* pb = c.inputs[1]->value().data<T>();
      const T* pta = ta ? ta->data<T>() : nullptr;
      const T* ptb = tb ? tb->data<T>() : nullptr;
      T* o = ty.data<T>();
      const int64_t n = ty.numel();
      if (pta && ptb) {
#pragma GCC ivdep  // a fresh output: no aliasing
        for (int64_t i = 0; i < n; ++i) o[i] = fa(pta[i], pa[i], pb[i]) + fb(ptb[i], pa[i], pb[i]);
      } else if (pta) {
#pragma GCC ivdep
        for (int64_t i = 0; i < n; ++i) o[i] = fa(pta[i], pa[i], pb[i]);
      } else {
#pragma GCC ivdep
        for (int64_t i = 0; i < n; ++i) o[i] = fb(ptb[i], pa[i], pb[i]);
      }
    });
  };
}

/// The tangent of y = a + s b (s = 1 or -1): ta + s tb. A single tangent passes through
/// (pass_tangent; negated in one pass for s = -1).
void sum_tangent(const FusedCtx& c, Tensor* dst, double s);

/// The tangent of an op whose tangent is its input's (add_scalar): a copy in dst's kept
/// buffer when it has one of its size (Note [Kept tangent buffers]), else the same buffer.
void pass_tangent(const FusedCtx& c, Tensor* dst);

}  // namespace tg::detail
