#include "ops/compare.hpp"

#include <cmath>
#include <string>
#include <type_traits>

#include "graph/kernels.hpp"

namespace tg {

namespace {

template <class T>
bool truth(T v) {
  return v != T(0);
}

// out[i] = f(a[.], b[.]) as bool, with broadcasting; a and b of one dtype.
template <class F>
Var compare(const Var& a, const Var& b, const char* op, F f) {
  kern::check_same_dtype(a.value(), b.value(), op);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = Tensor::empty(shape, boolean);
  dispatch_all(a.dtype(), [&]<class T>() {
    kern::zip_loop(a.value().data<T>(), a.shape(), b.value().data<T>(), b.shape(), out.data<bool>(),
                   shape, f);
  });
  return constant(std::move(out));
}

// x compared with a scalar: in x's dtype for floats (PyTorch casts the scalar), exactly for
// i64 and bool (1.5 > 1 is true, 1 == 1.0 is true).
template <class F>
Var compare_scalar(const Var& x, double s, F f) {
  Tensor out = Tensor::empty(x.shape(), boolean);
  bool* po = out.data<bool>();
  dispatch_all(x.dtype(), [&]<class T>() {
    const T* p = x.value().data<T>();
    const int64_t n = x.numel();
    if constexpr (std::is_floating_point_v<T>) {
      const T ts = static_cast<T>(s);
      for (int64_t i = 0; i < n; ++i) po[i] = f(p[i], ts);
    } else if constexpr (std::is_same_v<T, int64_t>) {
      // Exact: as a long double, every int64 and every double is represented.
      const long double ls = s;
      for (int64_t i = 0; i < n; ++i) po[i] = f(static_cast<long double>(p[i]), ls);
    } else {
      for (int64_t i = 0; i < n; ++i) po[i] = f(p[i] ? 1.0 : 0.0, s);
    }
  });
  return constant(std::move(out));
}

template <class F>
Var logical(const Var& a, const Var& b, const char* op, F f) {
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = Tensor::empty(shape, boolean);
  dispatch_all(a.dtype(), [&]<class A>() {
    dispatch_all(b.dtype(), [&]<class B>() {
      kern::zip_loop(a.value().data<A>(), a.shape(), b.value().data<B>(), b.shape(),
                     out.data<bool>(), shape, [f](A x, B y) { return f(truth(x), truth(y)); });
    });
  });
  return constant(std::move(out));
}

template <class F>
Var test(const Var& x, F f) {
  Tensor out = Tensor::empty(x.shape(), boolean);
  bool* po = out.data<bool>();
  dispatch_all(x.dtype(), [&]<class T>() {
    const T* p = x.value().data<T>();
    for (int64_t i = 0; i < x.numel(); ++i) po[i] = f(p[i]);
  });
  return constant(std::move(out));
}

// any (want = true) or all (want = false) over [outer, n, inner] blocks: out[o, i] is
// `want` when some element of the block's column has truth `want`.
Tensor any_all(const Tensor& x, int64_t outer, int64_t n, int64_t inner, bool want,
               const Shape& shape) {
  Tensor out = Tensor::empty(shape, boolean);
  bool* po = out.data<bool>();
  dispatch_all(x.dtype(), [&]<class T>() {
    const T* p = x.data<T>();
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        bool found = false;
        for (int64_t a = 0; a < n && !found; ++a) found = truth(p[(o * n + a) * inner + i]) == want;
        po[o * inner + i] = found ? want : !want;
      }
  });
  return out;
}

Var any_all(const Var& x, int64_t dim, bool keepdim, bool want, const char* op) {
  if (x.dim() == 0 && (dim == 0 || dim == -1))  // as PyTorch: a rank-0 tensor's one "dim"
    return constant(any_all(x.value(), 1, 1, 1, want, Shape{}));
  const int axis = normalize_axis(dim, x.dim(), op);
  int64_t outer, n, inner;
  kern::split_axis(x.shape(), axis, outer, n, inner);
  return constant(
      any_all(x.value(), outer, n, inner, want, kern::reduced_shape(x.shape(), axis, keepdim)));
}

}  // namespace

Var eq(const Var& a, const Var& b) {
  return compare(a, b, "eq", [](auto x, auto y) { return x == y; });
}
Var ne(const Var& a, const Var& b) {
  return compare(a, b, "ne", [](auto x, auto y) { return x != y; });
}
Var lt(const Var& a, const Var& b) {
  return compare(a, b, "lt", [](auto x, auto y) { return x < y; });
}
Var le(const Var& a, const Var& b) {
  return compare(a, b, "le", [](auto x, auto y) { return x <= y; });
}
Var gt(const Var& a, const Var& b) {
  return compare(a, b, "gt", [](auto x, auto y) { return x > y; });
}
Var ge(const Var& a, const Var& b) {
  return compare(a, b, "ge", [](auto x, auto y) { return x >= y; });
}
Var eq(const Var& a, double b) {
  return compare_scalar(a, b, [](auto x, auto y) { return x == y; });
}
Var ne(const Var& a, double b) {
  return compare_scalar(a, b, [](auto x, auto y) { return x != y; });
}
Var lt(const Var& a, double b) {
  return compare_scalar(a, b, [](auto x, auto y) { return x < y; });
}
Var le(const Var& a, double b) {
  return compare_scalar(a, b, [](auto x, auto y) { return x <= y; });
}
Var gt(const Var& a, double b) {
  return compare_scalar(a, b, [](auto x, auto y) { return x > y; });
}
Var ge(const Var& a, double b) {
  return compare_scalar(a, b, [](auto x, auto y) { return x >= y; });
}

Var logical_and(const Var& a, const Var& b) {
  return logical(a, b, "logical_and", [](bool x, bool y) { return x && y; });
}
Var logical_or(const Var& a, const Var& b) {
  return logical(a, b, "logical_or", [](bool x, bool y) { return x || y; });
}
Var logical_xor(const Var& a, const Var& b) {
  return logical(a, b, "logical_xor", [](bool x, bool y) { return x != y; });
}
Var logical_not(const Var& x) {
  return test(x, [](auto v) { return !truth(v); });
}

Var isnan(const Var& x) {
  return test(x, [](auto v) {
    if constexpr (std::is_floating_point_v<decltype(v)>) return std::isnan(v);
    return false;
  });
}
Var isinf(const Var& x) {
  return test(x, [](auto v) {
    if constexpr (std::is_floating_point_v<decltype(v)>) return std::isinf(v);
    return false;
  });
}
Var isfinite(const Var& x) {
  return test(x, [](auto v) {
    if constexpr (std::is_floating_point_v<decltype(v)>) return std::isfinite(v);
    return true;
  });
}

Var any(const Var& x) { return constant(any_all(x.value(), 1, x.numel(), 1, true, Shape{})); }
Var all(const Var& x) { return constant(any_all(x.value(), 1, x.numel(), 1, false, Shape{})); }
Var any(const Var& x, int64_t dim, bool keepdim) { return any_all(x, dim, keepdim, true, "any"); }
Var all(const Var& x, int64_t dim, bool keepdim) { return any_all(x, dim, keepdim, false, "all"); }

}  // namespace tg
