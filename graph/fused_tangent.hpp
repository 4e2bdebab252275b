#pragma once

// Internal: the fused forward-mode paths of elementwise ops (Note [Fused tangents] in
// graph/forward_ad.cpp). Each `*_fused` function returns the op's result with its tangent,
// or an undefined Var when the op must take its recorded path (no level open, no tangent
// on its inputs, something records, or operands that broadcast). Only the thread-local flag
// test is inline; the rest is out of line, so an op's path outside a level is what it was
// without forward mode. Include only from op .cpp files.

#include "graph/kernels.hpp"
#include "graph/var.hpp"

namespace tg::detail {

template <class G>
[[gnu::noinline]] Var unary_dual(const Var& x, Tensor& y, const char* op, G g) {
  if (!fuse_tangent({x})) return Var();
  const Tensor& tx = x.node()->tangent.value();
  Tensor ty = Tensor::empty(y.shape(), y.dtype());
  dispatch(y.dtype(), op, [&]<class T>() {
    const T* pt = tx.data<T>();
    const T* py = y.data<T>();
    const T* px = x.value().data<T>();
    T* o = ty.data<T>();
    const int64_t n = y.numel();
#pragma GCC ivdep  // fresh outputs: no aliasing
    for (int64_t i = 0; i < n; ++i) o[i] = g(pt[i], py[i], px[i]);
  });
  return fused_dual(std::move(y), Var(std::move(ty)));
}

/// `y`, already computed from `x`, with the tangent ty[i] = g(tx[i], y[i], x[i]) in one
/// pass (`y` is moved from only when the result is defined).
template <class G>
Var unary_fused(const Var& x, Tensor& y, const char* op, G g) {
  if (!fw_enabled) [[likely]]
    return Var();
  return unary_dual(x, y, op, g);
}

/// `y`, already computed from `x` by an op whose tangent is x's (add_scalar), sharing it.
Var pass_fused_slow(const Var& x, Tensor& y);
inline Var pass_fused(const Var& x, Tensor& y) {
  if (!fw_enabled) [[likely]]
    return Var();
  return pass_fused_slow(x, y);
}

/// Whether a binary op may take the fused path: fuse_tangent's conditions, and operands of
/// one shape and dtype (no broadcasting).
inline bool fuse_binary(const Var& a, const Var& b) {
  return fuse_tangent({a, b}) && a.shape() == b.shape() && a.dtype() == b.dtype();
}

template <class F, class FA, class FB>
[[gnu::noinline]] Var binary_dual(const Var& a, const Var& b, const char* op, F f, FA fa, FB fb) {
  if (!fuse_binary(a, b)) return Var();
  const Var &ta = a.node()->tangent, &tb = b.node()->tangent;
  Tensor y = Tensor::empty(a.shape(), a.dtype());
  Tensor ty = Tensor::empty(a.shape(), a.dtype());
  dispatch(a.dtype(), op, [&]<class T>() {
    const T* pa = a.value().data<T>();
    const T* pb = b.value().data<T>();
    const T* pta = ta.defined() ? ta.value().data<T>() : nullptr;
    const T* ptb = tb.defined() ? tb.value().data<T>() : nullptr;
    T* py = y.data<T>();
    T* pty = ty.data<T>();
    const int64_t n = y.numel();
    if (pta && ptb) {
#pragma GCC ivdep  // fresh outputs: no aliasing
      for (int64_t i = 0; i < n; ++i) {
        py[i] = f(pa[i], pb[i]);
        pty[i] = fa(pta[i], pa[i], pb[i]) + fb(ptb[i], pa[i], pb[i]);
      }
    } else if (pta) {
#pragma GCC ivdep
      for (int64_t i = 0; i < n; ++i) {
        py[i] = f(pa[i], pb[i]);
        pty[i] = fa(pta[i], pa[i], pb[i]);
      }
    } else {
#pragma GCC ivdep
      for (int64_t i = 0; i < n; ++i) {
        py[i] = f(pa[i], pb[i]);
        pty[i] = fb(ptb[i], pa[i], pb[i]);
      }
    }
  });
  return fused_dual(std::move(y), Var(std::move(ty)));
}

/// y[i] = f(a[i], b[i]) and its tangent ty[i] = fa(ta[i], a[i], b[i]) + fb(tb[i], a[i], b[i])
/// (the terms of the operands that have a tangent), in one pass.
template <class F, class FA, class FB>
Var binary_fused(const Var& a, const Var& b, const char* op, F f, FA fa, FB fb) {
  if (!fw_enabled) [[likely]]
    return Var();
  return binary_dual(a, b, op, f, fa, fb);
}

/// y = a + s b (s = 1 or -1), computed by `value()`, with the tangent ta + s tb: a single
/// tangent passes through (negated in one pass for s = -1), two are summed in one pass.
Var sum_dual(const Var& a, const Var& b, Tensor&& y, double s);
template <class V>
[[gnu::noinline]] Var sum_fused_slow(const Var& a, const Var& b, V value, double s) {
  if (!fuse_binary(a, b)) return Var();
  return sum_dual(a, b, value(), s);
}
template <class V>
Var sum_fused(const Var& a, const Var& b, V value, double s) {
  if (!fw_enabled) [[likely]]
    return Var();
  return sum_fused_slow(a, b, value, s);
}

}  // namespace tg::detail
