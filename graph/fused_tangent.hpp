#pragma once

// Internal: the raw kernels of fused forward-mode tangents (Note [Fused tangents] in
// graph/forward_ad.cpp). An op calls them only when detail::fuse_tangent said so, which
// implies an input has a tangent and nothing records. Include only from op .cpp files.

#include "graph/kernels.hpp"
#include "graph/var.hpp"

namespace tg::detail {

/// `y` (already computed from `x`) with the tangent ty[i] = g(tx[i], y[i], x[i]), in one pass.
// (Out of line: the op's own path stays as it was without forward mode.)
template <class G>
[[gnu::noinline]] Var unary_dual(const Var& x, Tensor&& y, const char* op, G g) {
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

/// Whether a binary op may take the fused path: same shape and dtype (no broadcasting), and
/// fuse_tangent's conditions.
inline bool fuse_binary(const Var& a, const Var& b) {
  return fuse_tangent({a, b}) && a.shape() == b.shape() && a.dtype() == b.dtype();
}

/// y[i] = f(a[i], b[i]) and its tangent ty[i] = fa(ta[i], a[i], b[i]) + fb(tb[i], a[i], b[i])
/// (the terms of the operands that have a tangent) in one pass; a and b of one shape and
/// floating dtype (fuse_binary).
template <class F, class FA, class FB>
[[gnu::noinline]] Var binary_dual(const Var& a, const Var& b, const char* op, F f, FA fa, FB fb) {
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
#pragma GCC ivdep  // fresh outputs: no aliasing
      for (int64_t i = 0; i < n; ++i) {
        py[i] = f(pa[i], pb[i]);
        pty[i] = fa(pta[i], pa[i], pb[i]);
      }
    } else {
#pragma GCC ivdep  // fresh outputs: no aliasing
      for (int64_t i = 0; i < n; ++i) {
        py[i] = f(pa[i], pb[i]);
        pty[i] = fb(ptb[i], pa[i], pb[i]);
      }
    }
  });
  return fused_dual(std::move(y), Var(std::move(ty)));
}

/// `y` = a + s b (already computed; s = 1 or -1) with the tangent ta + s tb: a single tangent
/// passes through (negated in one pass for s = -1), two are summed in one pass.
[[gnu::noinline]] inline Var sum_dual(const Var& a, const Var& b, Tensor&& y, double s) {
  const Var &ta = a.node()->tangent, &tb = b.node()->tangent;
  if (!tb.defined()) return fused_dual(std::move(y), ta);
  if (!ta.defined() && s == 1.0) return fused_dual(std::move(y), tb);
  Tensor t = ta.defined() ? kern::zip(ta.value(), tb.value(), "add",
                                      [s](auto p, auto q) { return p + decltype(p)(s) * q; })
                          : kern::map(tb.value(), "neg", [](auto q) { return -q; });
  return fused_dual(std::move(y), Var(std::move(t)));
}

}  // namespace tg::detail
