#include "ops/math.hpp"

#include <cmath>
#include <limits>
#include <numbers>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "graph/fused_tangent.hpp"
#include "ops/activation.hpp"
#include "ops/arith.hpp"
#include "ops/simd_map.hpp"

namespace tg {

Var exp(const Var& x) {
  // d exp(x) = dy * y
  Tensor y = kern::simd_map(x.value(), "exp", [](auto b) { return xsimd::exp(b); });
  return detail::record_symmetric(
      "exp", std::move(y), x, [](const auto& c, const Var& dy) { return mul(dy, c.output()); },
      detail::unary_tangent("exp", [](auto t, auto v, auto) { return t * v; }));
}

Var log(const Var& x) {
  // d log(x) = dy / x
  Tensor y = kern::simd_map(x.value(), "log", [](auto b) { return xsimd::log(b); });
  return detail::record_symmetric(
      "log", std::move(y), x, [](const auto& c, const Var& dy) { return div(dy, c.input(0)); },
      detail::unary_tangent("log", [](auto t, auto, auto u) { return t / u; }));
}

Var sqrt(const Var& x) {
  // d sqrt(x) = dy / (2 y)
  Tensor y = kern::simd_map(x.value(), "sqrt", [](auto b) { return xsimd::sqrt(b); });
  return detail::record_symmetric("sqrt", std::move(y), x, [](const auto& c, const Var& dy) {
    return div(dy, mul_scalar(c.output(), 2.0));
  });
}

Var abs(const Var& x) {
  // d|x| = dy * sign(x)   NOTE: sign(0) = 0.
  return detail::record_symmetric("abs",
                                  kern::map(x.value(), "abs", [](auto v) { return std::abs(v); }),
                                  x, [](const auto& c, const Var& dy) {
                                    Tensor sign = kern::map(c.input(0).value(), "abs", [](auto v) {
                                      using T = decltype(v);
                                      return v > T(0) ? T(1) : (v < T(0) ? T(-1) : T(0));
                                    });
                                    return mul(dy, constant(std::move(sign)));
                                  });
}

Var clamp(const Var& x, double lo, double hi) {
  // d clamp(x) = dy where lo <= x <= hi, 0 elsewhere
  if (lo > hi)
    throw Error("clamp: lo " + std::to_string(lo) + " is greater than hi " + std::to_string(hi));
  Tensor y = dispatch(x.dtype(), "clamp", [&]<class T>() {
    const T l = static_cast<T>(lo), h = static_cast<T>(hi);
    return kern::map(x.value(), "clamp", [l, h](T v) { return v < l ? l : (v > h ? h : v); });
  });
  return detail::record_symmetric("clamp", std::move(y), x, [lo, hi](const auto& c, const Var& dy) {
    Tensor mask = dispatch(dy.dtype(), "clamp", [&]<class T>() {
      const T l = static_cast<T>(lo), h = static_cast<T>(hi);
      return kern::map(c.input(0).value(), "clamp",
                       [l, h](T v) { return v >= l && v <= h ? T(1) : T(0); });
    });
    return mul(dy, constant(std::move(mask)));
  });
}

Var softplus(const Var& x) {
  // softplus(x) = max(x, 0) + log1p(exp(-|x|));  d = dy * sigmoid(x)
  Tensor y = kern::map(x.value(), "softplus", [](auto v) {
    using T = decltype(v);
    return std::max(v, T(0)) + std::log1p(std::exp(-std::abs(v)));
  });
  return detail::record_symmetric("softplus", std::move(y), x, [](const auto& c, const Var& dy) {
    return mul(dy, sigmoid(c.input(0)));
  });
}

// ---- maximum, minimum ----

namespace {

template <class T>
bool is_nan(T v) {
  if constexpr (std::is_floating_point_v<T>)
    return v != v;
  else
    return false;
}

// NaN in either operand gives NaN (torch.maximum / torch.minimum); otherwise the larger
// (smaller) one.
template <class T>
T max_nan(T a, T b) {
  return is_nan(a) || is_nan(b) ? std::numeric_limits<T>::quiet_NaN() : (a < b ? b : a);
}
template <class T>
T min_nan(T a, T b) {
  return is_nan(a) || is_nan(b) ? std::numeric_limits<T>::quiet_NaN() : (b < a ? b : a);
}

// z = f(a, b) with NumPy broadcasting for a and b of one dtype, any dtype.
template <class F>
Tensor zip_any(const Tensor& a, const Tensor& b, const char* op, F f) {
  kern::check_same_dtype(a, b, op);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = Tensor::empty(shape, a.dtype());
  dispatch_all(a.dtype(), [&]<class T>() {
    kern::zip_loop(a.data<T>(), a.shape(), b.data<T>(), b.shape(), out.data<T>(), shape,
                   [&f](T x, T y) { return f(x, y); });
  });
  return out;
}

// The share of dy that operand `first ? a : b` of maximum (largest) or minimum gets, in the
// output's shape: dy where it wins (or either is NaN), dy / 2 at a tie, exactly 0 where the
// other wins (a selection, as PyTorch's masked_fill).
Var extreme_grad(const Var& dy, const Tensor& a, const Tensor& b, bool largest, bool first,
                 const char* op) {
  bool ties = false;
  const Tensor w = kern::zip(a, b, op, [&](auto x, auto y) {
    using T = decltype(x);
    if (x == y) {
      ties = true;
      return T(0.5);
    }
    const bool other_wins = largest == first ? x < y : y < x;
    return other_wins ? T(0) : T(1);
  });
  return detail::keep_where(ties ? mul(dy, constant(w)) : dy, w, 0.0);
}

Var extreme_pair(const Var& a, const Var& b, bool largest, const char* op) {
  Tensor y = largest
                 ? zip_any(a.value(), b.value(), op, [](auto x, auto z) { return max_nan(x, z); })
                 : zip_any(a.value(), b.value(), op, [](auto x, auto z) { return min_nan(x, z); });
  return detail::record_elementwise(
      op, std::move(y), {a, b}, [largest, op](const auto& c, size_t i, const Var& d) {
        return extreme_grad(d, c.input(0).value(), c.input(1).value(), largest, i == 0, op);
      });
}

}  // namespace

Var maximum(const Var& a, const Var& b) { return extreme_pair(a, b, true, "maximum"); }
Var minimum(const Var& a, const Var& b) { return extreme_pair(a, b, false, "minimum"); }

// ---- smooth elementwise functions ----

Var sin(const Var& x) {
  // d sin(x) = dy * cos(x)
  Tensor y = kern::simd_map(x.value(), "sin", [](auto b) { return xsimd::sin(b); });
  return detail::record_symmetric("sin", std::move(y), x, [](const auto& c, const Var& dy) {
    return mul(dy, cos(c.input(0)));
  });
}

Var cos(const Var& x) {
  // d cos(x) = -dy * sin(x)
  Tensor y = kern::simd_map(x.value(), "cos", [](auto b) { return xsimd::cos(b); });
  return detail::record_symmetric("cos", std::move(y), x, [](const auto& c, const Var& dy) {
    return mul(dy, neg(sin(c.input(0))));
  });
}

Var erf(const Var& x) {
  // d erf(x) = dy * 2/sqrt(pi) * exp(-x^2)
  // NOTE: xsimd's erf (8.1) is within 2 ulps of std::erf in f32 but up to 68 ulps off in f64
  // (measured over [-6, 6]; worst near |x| = 2.2): f64 goes through std::erf, as accurate as
  // PyTorch's. tests/test_elementwise_ops.cpp bounds both dtypes' ulps against std::erf.
  Tensor y = x.dtype() == f64
                 ? kern::map(x.value(), "erf", [](auto v) { return std::erf(v); })
                 : kern::simd_map(x.value(), "erf", [](auto b) { return xsimd::erf(b); });
  return detail::record_symmetric("erf", std::move(y), x, [](const auto& c, const Var& dy) {
    const double k = 2.0 * std::numbers::inv_sqrtpi;
    return mul(dy, mul_scalar(exp(neg(square(c.input(0)))), k));
  });
}

Var rsqrt(const Var& x) {
  // y = 1 / sqrt(x);  d = -dy * y^3 / 2
  Tensor y = kern::simd_map(x.value(), "rsqrt", [](auto b) {
    using T = typename decltype(b)::value_type;
    return T(1) / xsimd::sqrt(b);
  });
  return detail::record_symmetric("rsqrt", std::move(y), x, [](const auto& c, const Var& dy) {
    return mul(dy, mul_scalar(pow(c.output(), 3.0), -0.5));
  });
}

Var reciprocal(const Var& x) {
  // y = 1 / x;  d = -dy * y^2
  Tensor y = kern::map(x.value(), "reciprocal", [](auto v) { return decltype(v)(1) / v; });
  return detail::record_symmetric("reciprocal", std::move(y), x, [](const auto& c, const Var& dy) {
    return neg(mul(dy, square(c.output())));
  });
}

Var square(const Var& x) {
  // d x^2 = 2 x dy
  Tensor y = kern::map(x.value(), "square", [](auto v) { return v * v; });
  return detail::record_symmetric("square", std::move(y), x, [](const auto& c, const Var& dy) {
    return mul(dy, mul_scalar(c.input(0), 2.0));
  });
}

Var log1p(const Var& x) {
  // d log(1 + x) = dy / (1 + x)
  Tensor y = kern::simd_map(x.value(), "log1p", [](auto b) { return xsimd::log1p(b); });
  return detail::record_symmetric("log1p", std::move(y), x, [](const auto& c, const Var& dy) {
    return div(dy, add_scalar(c.input(0), 1.0));
  });
}

Var expm1(const Var& x) {
  // d (exp(x) - 1) = dy * (y + 1)
  Tensor y = kern::simd_map(x.value(), "expm1", [](auto b) { return xsimd::expm1(b); });
  return detail::record_symmetric("expm1", std::move(y), x, [](const auto& c, const Var& dy) {
    return mul(dy, add_scalar(c.output(), 1.0));
  });
}

// ---- piecewise constant functions ----

namespace {

// f on a floating or i64 tensor (bool too when `bool_ok`, as sign's copy); the gradient is
// dy * 0 (see the header's NOTE).
template <class F>
Var piecewise_constant(const char* op, const Var& x, bool bool_ok, F f) {
  const Tensor& xv = x.value();
  if (xv.dtype() == boolean && !bool_ok) detail::throw_not_floating(xv.dtype(), op);
  Tensor y = Tensor::empty(xv.shape(), xv.dtype());
  dispatch_all(xv.dtype(), [&]<class T>() {
    const T* px = xv.data<T>();
    T* py = y.data<T>();
    const int64_t n = xv.numel();
    for (int64_t i = 0; i < n; ++i) py[i] = f(px[i]);
  });
  return detail::record_symmetric(op, std::move(y), x,
                                  [](const auto&, const Var& dy) { return mul_scalar(dy, 0.0); });
}

}  // namespace

Var sign(const Var& x) {
  return piecewise_constant("sign", x, true, []<class T>(T v) {
    if constexpr (std::is_same_v<T, bool>)
      return v;
    else
      return v > T(0) ? T(1) : (v < T(0) ? T(-1) : (v == T(0) ? T(0) : v));  // NaN stays
  });
}

Var floor(const Var& x) {
  return piecewise_constant("floor", x, false, []<class T>(T v) {
    if constexpr (std::is_floating_point_v<T>)
      return std::floor(v);
    else
      return v;
  });
}

Var ceil(const Var& x) {
  return piecewise_constant("ceil", x, false, []<class T>(T v) {
    if constexpr (std::is_floating_point_v<T>)
      return std::ceil(v);
    else
      return v;
  });
}

Var round(const Var& x) {
  // NOTE: nearbyint in the default rounding mode rounds halves to even, as torch.round.
  return piecewise_constant("round", x, false, []<class T>(T v) {
    if constexpr (std::is_floating_point_v<T>)
      return std::nearbyint(v);
    else
      return v;
  });
}

// ---- clamp with tensor bounds ----

Var clamp(const Var& x, const Var& min, const Var& max) {
  // y = min(max(x, lo), hi), NaN when any of them is NaN (as torch.clamp).
  // dx = dy where lo <= x <= hi;  dlo = dy where x < lo and lo < hi;
  // dhi = dy where x > hi or hi < lo (PyTorch's clamp_backward and clamp_backward_min_max).
  const bool has_lo = min.defined(), has_hi = max.defined();
  if (!has_lo && !has_hi) throw Error("clamp: at least one of min and max must be defined");
  Tensor y = x.value();
  if (has_lo) y = zip_any(y, min.value(), "clamp", [](auto a, auto b) { return max_nan(a, b); });
  if (has_hi) y = zip_any(y, max.value(), "clamp", [](auto a, auto b) { return min_nan(a, b); });
  std::vector<Var> inputs{x};
  if (has_lo) inputs.push_back(min);
  if (has_hi) inputs.push_back(max);
  // The masks: 1 where each operand gets dy (or its tangent), else 0.
  auto masks = [has_lo, has_hi](const auto& c, const Shape& shape, Dtype dtype) {
    const int ilo = 1, ihi = has_lo ? 2 : 1;
    auto full = [&](int i) {
      const Tensor& t = c.input(i).value();
      return t.shape() == shape ? t : kern::expand(t, shape, "clamp");
    };
    const Tensor xv = full(0);
    const Tensor lo = has_lo ? full(ilo) : Tensor();
    const Tensor hi = has_hi ? full(ihi) : Tensor();
    std::vector<Tensor> k{Tensor::empty(shape, dtype)};
    if (has_lo) k.push_back(Tensor::empty(shape, dtype));
    if (has_hi) k.push_back(Tensor::empty(shape, dtype));
    dispatch(dtype, "clamp", [&]<class T>() {
      const T* px = xv.data<T>();
      const T* pl = has_lo ? lo.data<T>() : nullptr;
      const T* ph = has_hi ? hi.data<T>() : nullptr;
      T* ox = k[0].data<T>();
      T* ol = has_lo ? k[ilo].data<T>() : nullptr;
      T* oh = has_hi ? k[ihi].data<T>() : nullptr;
      for (int64_t i = 0, n = shape.numel(); i < n; ++i) {
        const T v = px[i];
        if (pl && ph) {
          ox[i] = v >= pl[i] && v <= ph[i];
          ol[i] = v < pl[i] && pl[i] < ph[i];
          oh[i] = v > ph[i] || ph[i] < pl[i];
        } else if (pl) {
          ox[i] = v >= pl[i];
          ol[i] = v < pl[i];
        } else {
          ox[i] = v <= ph[i];
          oh[i] = v > ph[i];
        }
      }
    });
    return k;
  };
  return record(
      "clamp", std::move(y), std::span<const Var>(inputs),
      [masks](const BackwardCtx& c, const Var& dy) {
        const std::vector<Tensor> k = masks(c, dy.shape(), dy.dtype());
        Grads g;
        for (size_t i = 0; i < k.size(); ++i)
          g.push_back(c.needs_grad(i) ? detail::keep_where(dy, k[i], 0.0) : Var());
        return g;
      },
      [masks](const JvpCtx& c) {  // the sum of each operand's tangent where it is selected
        const Var& y = c.output();
        const std::vector<Tensor> k = masks(c, y.shape(), y.dtype());
        Var sum;
        for (size_t i = 0; i < k.size(); ++i)
          if (c.has_tangent(i))
            sum = detail::add_defined(
                sum, detail::keep_where(expand(c.tangent(i), y.shape()), k[i], 0.0));
        return sum;
      });
}

}  // namespace tg
