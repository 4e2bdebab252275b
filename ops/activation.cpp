#include "ops/activation.hpp"

#include <cmath>
#include <numbers>
#include <string>

#include "graph/fused_tangent.hpp"
#include "ops/arith.hpp"
#include "ops/index.hpp"
#include "ops/math.hpp"
#include "ops/reduce.hpp"
#include "ops/simd_map.hpp"

namespace tg {

// The backward formulas of the activations are ops themselves (fused into one pass, and
// differentiable again), as PyTorch's sigmoid_backward / threshold_backward are.

namespace {

// relu_backward(dy, x) = dy * [x > 0] (slope 0), dy * (x > 0 ? 1 : slope) (leaky); linear in
// dy, and zero derivative in x.
// NOTE: at x = NaN relu passes dy on (PyTorch's threshold_backward zeroes only where
// x <= 0) and leaky_relu scales it by the slope (x > 0 is false), as PyTorch does.
Var relu_backward(const Var& dy, const Var& x, double slope) {
  Tensor g = dispatch(dy.dtype(), "relu_backward", [&]<class T>() {
    const T s = static_cast<T>(slope);
    if (slope == 0.0)
      return kern::zip(dy.value(), x.value(), "relu_backward",
                       [](T d, T v) { return v <= T(0) ? T(0) : d; });
    return kern::zip(dy.value(), x.value(), "relu_backward",
                     [s](T d, T v) { return v > T(0) ? d : d * s; });
  });
  return detail::record_elementwise(
      "relu_backward", std::move(g), {dy, x}, [slope](const auto& c, size_t i, const Var& d) {
        return i == 0 ? relu_backward(d, c.input(1), slope) : Var();  // piecewise constant in x
      });
}

// sigmoid_backward(dy, y) = dy * y * (1 - y)
Var sigmoid_backward(const Var& dy, const Var& y) {
  Tensor g = kern::zip(dy.value(), y.value(), "sigmoid_backward", [](auto d, auto v) {
    using T = decltype(v);
    return d * v * (T(1) - v);
  });
  return detail::record_elementwise(
      "sigmoid_backward", std::move(g), {dy, y}, [](const auto& c, size_t i, const Var& ddx) {
        // d/d(dy) = ddx * y(1-y);  d/dy = ddx * dy * (1 - 2y)
        const Var& yv = c.input(1);
        return i == 0 ? sigmoid_backward(ddx, yv)
                      : mul(mul(ddx, c.input(0)), add_scalar(mul_scalar(yv, -2.0), 1.0));
      });
}

// tanh_backward(dy, y) = dy * (1 - y^2)
Var tanh_backward(const Var& dy, const Var& y) {
  Tensor g = kern::zip(dy.value(), y.value(), "tanh_backward", [](auto d, auto v) {
    using T = decltype(v);
    return d * (T(1) - v * v);
  });
  return detail::record_elementwise(
      "tanh_backward", std::move(g), {dy, y}, [](const auto& c, size_t i, const Var& ddx) {
        // d/d(dy) = ddx * (1 - y^2);  d/dy = -2 * ddx * dy * y
        const Var& yv = c.input(1);
        return i == 0 ? tanh_backward(ddx, yv) : mul_scalar(mul(mul(ddx, c.input(0)), yv), -2.0);
      });
}

// exp, erf, tanh and log1p of a scalar (std::) or of an xsimd batch (xsimd::), for the
// pointwise gradients' f' (see pointwise_backward).
template <class T>
T exp_(T v) {
  if constexpr (std::is_floating_point_v<T>)
    return std::exp(v);
  else
    return xsimd::exp(v);
}
template <class T>
T erf_(T v) {
  if constexpr (std::is_floating_point_v<T>)
    return std::erf(v);
  else
    return xsimd::erf(v);
}
template <class T>
T tanh_(T v) {
  if constexpr (std::is_floating_point_v<T>)
    return std::tanh(v);
  else
    return xsimd::tanh(v);
}
template <class T>
T log1p_(T v) {
  if constexpr (std::is_floating_point_v<T>)
    return std::log1p(v);
  else
    return xsimd::log1p(v);
}

// The gradient of a pointwise activation f fused into one pass: g = dy * f'(x), with f'
// (`d1`) a scalar function. Linear in dy, so its own backward is the same op for dy, and
// ddx * dy * f''(x) for x, with f'' (`d2`) written with ops, so it differentiates again.
// NOTE: in f32, f' runs on xsimd batches (as the forwards do), so `d1` is written for a
// scalar and a batch alike (through exp_ / erf_ / tanh_ / log1p_ below); in f64 it runs on
// scalars with std:: functions (xsimd's f64 erf is up to 68 ulps off).
template <class D1, class D2>
Var pointwise_backward(const char* name, const Var& dy, const Var& x, D1 d1, D2 d2) {
  auto f = [d1](auto d, auto v) { return d * d1(v); };
  Tensor g = dy.dtype() == f32 && x.dtype() == f32 && dy.shape() == x.shape()
                 ? kern::simd_zip(dy.value(), x.value(), name, f)
                 : kern::zip(dy.value(), x.value(), name, f);
  return detail::record_elementwise(name, std::move(g), {dy, x},
                                    [name, d1, d2](const auto& c, size_t i, const Var& ddx) {
                                      const Var& xv = c.input(1);
                                      return i == 0 ? pointwise_backward(name, ddx, xv, d1, d2)
                                                    : mul(mul(ddx, c.input(0)), d2(xv));
                                    });
}

constexpr double kSqrt1_2 = 0.70710678118654752440;                           // 1/sqrt(2)
constexpr double kInvSqrt2Pi = std::numbers::inv_sqrtpi * kSqrt1_2;           // 1/sqrt(2 pi)
constexpr double kGeluBeta = std::numbers::sqrt2 * std::numbers::inv_sqrtpi;  // sqrt(2/pi)
constexpr double kGeluKappa = 0.044715;

// 1 - v^2 as ops.
Var one_minus_square(const Var& v) { return add_scalar(neg(square(v)), 1.0); }

}  // namespace

Var sigmoid(const Var& x) {
  // y = 1 / (1 + exp(-x));  dx = dy * y * (1 - y)
  Tensor y = kern::simd_map(x.value(), "sigmoid", [](auto b) {
    using T = typename decltype(b)::value_type;
    return T(1) / (T(1) + xsimd::exp(-b));
  });
  return detail::record_symmetric(
      "sigmoid", std::move(y), x,
      [](const auto& c, const Var& dy) { return sigmoid_backward(dy, c.output()); },
      detail::unary_tangent("sigmoid",
                            [](auto t, auto v, auto) { return t * v * (decltype(v)(1) - v); }));
}

Var tanh(const Var& x) {
  // dx = dy * (1 - y^2)
  Tensor y = kern::simd_map(x.value(), "tanh", [](auto b) { return xsimd::tanh(b); });
  return detail::record_symmetric(
      "tanh", std::move(y), x,
      [](const auto& c, const Var& dy) { return tanh_backward(dy, c.output()); },
      detail::unary_tangent("tanh",
                            [](auto t, auto v, auto) { return t * (decltype(v)(1) - v * v); }));
}

Var relu(const Var& x) {
  // y = max(x, 0);  dx = dy * [x > 0]   NOTE: relu'(0) = 0, as in PyTorch; NaN stays NaN
  // (an upstream NaN must not turn into a finite loss).
  Tensor y = kern::map(x.value(), "relu", [](auto v) {
    using T = decltype(v);
    return v > T(0) || v != v ? v : T(0);
  });
  return detail::record_symmetric(
      "relu", std::move(y), x,
      [](const auto& c, const Var& dy) { return relu_backward(dy, c.input(0), 0.0); },
      // relu_backward's rule: the tangent passes where x > 0 or is NaN
      detail::unary_tangent(
          "relu", [](auto t, auto, auto u) { return u <= decltype(u)(0) ? decltype(u)(0) : t; }));
}

Var leaky_relu(const Var& x, double negative_slope) {
  // y = x if x > 0 else slope * x;  dx = dy * (x > 0 ? 1 : slope)
  Tensor y = dispatch(x.dtype(), "leaky_relu", [&]<class T>() {
    const T s = static_cast<T>(negative_slope);
    return kern::map(x.value(), "leaky_relu", [s](T v) { return v > T(0) ? v : v * s; });
  });
  return detail::record_symmetric("leaky_relu", std::move(y), x,
                                  [negative_slope](const auto& c, const Var& dy) {
                                    return relu_backward(dy, c.input(0), negative_slope);
                                  });
}

Var softmax(const Var& x, int64_t axis) {
  // y = exp(x - max) / sum(exp(x - max));  dx = y * (dy - sum(dy * y, axis))
  const int ax = normalize_axis(axis, x.dim(), "softmax");
  // The Jacobian diag(y) - y y^T is symmetric: the JVP is the same formula on the tangent.
  return detail::record_symmetric("softmax", kern::softmax(x.value(), ax, false), x,
                                  [ax](const auto& c, const Var& dy) {
                                    const Var y = c.output();
                                    return mul(y, sub(dy, sum(mul(dy, y), {ax}, true)));
                                  });
}

Var log_softmax(const Var& x, int64_t axis) {
  // NOTE: y = x - max - log(sum(exp(x - max))): finite for any finite x.
  // dx = dy - exp(y) * sum(dy, axis)
  const int ax = normalize_axis(axis, x.dim(), "log_softmax");
  return record(
      "log_softmax", kern::softmax(x.value(), ax, true), {x},
      [ax](const BackwardCtx& c, const Var& dy) {
        return Grads{sub(dy, mul(exp(c.output()), sum(dy, {ax}, true)))};
      },
      [ax](const JvpCtx& c) {  // J = I - 1 softmax^T: t - sum(t * exp(y), axis)
        const Var& t = c.tangent(0);
        return sub(t, sum(mul(t, exp(c.output())), {ax}, true));
      });
}

Var gelu(const Var& x, std::string_view approximate) {
  // Exact ("none"): y = x Phi(x);  y' = Phi(x) + x phi(x);  y'' = phi(x) (2 - x^2).
  // "tanh": t = tanh(u), u = b (x + k x^3);  y = x (1 + t) / 2;
  //   y' = (1 + t) / 2 + x (1 - t^2) u' / 2;  y'' = (1 - t^2) (u' + x (u'' - 2 t u'^2) / 2).
  // (the forward and y' as PyTorch's CPU kernels)
  if (approximate == "none") {
    // (erf through std::erf in f64, as tg::erf: xsimd's is up to 68 ulps off there)
    Tensor y = x.dtype() == f64
                   ? kern::map(x.value(), "gelu",
                               [](auto v) {
                                 using T = decltype(v);
                                 return v * T(0.5) * (T(1) + std::erf(v * T(kSqrt1_2)));
                               })
                   : kern::simd_map(x.value(), "gelu", [](auto b) {
                       using T = typename decltype(b)::value_type;
                       return b * T(0.5) * (T(1) + xsimd::erf(b * T(kSqrt1_2)));
                     });
    return detail::record_symmetric("gelu", std::move(y), x, [](const auto& c, const Var& dy) {
      auto d1 = [](auto v) {
        using T = decltype(v);
        const T cdf = T(0.5) * (T(1) + erf_(v * T(kSqrt1_2)));
        return cdf + v * T(kInvSqrt2Pi) * exp_(v * v * T(-0.5));
      };
      auto d2 = [](const Var& v) {
        const Var pdf = mul_scalar(exp(mul_scalar(square(v), -0.5)), kInvSqrt2Pi);
        return mul(pdf, add_scalar(neg(square(v)), 2.0));
      };
      return pointwise_backward("gelu_backward", dy, c.input(0), d1, d2);
    });
  }
  if (approximate == "tanh") {
    Tensor y = kern::simd_map(x.value(), "gelu", [](auto b) {
      using T = typename decltype(b)::value_type;
      const auto inner = T(kGeluBeta) * (b + T(kGeluKappa) * b * b * b);
      return T(0.5) * b * (T(1) + xsimd::tanh(inner));
    });
    return detail::record_symmetric("gelu", std::move(y), x, [](const auto& c, const Var& dy) {
      auto d1 = [](auto v) {
        using T = decltype(v);
        const T t = tanh_(T(kGeluBeta) * (v + T(kGeluKappa) * v * v * v));
        return T(0.5) * (T(1) + t) +
               T(0.5) * v * (T(1) - t * t) * T(kGeluBeta) * (T(1) + T(3 * kGeluKappa) * v * v);
      };
      auto d2 = [](const Var& v) {
        const Var t = tanh(mul_scalar(add(v, mul_scalar(pow(v, 3.0), kGeluKappa)), kGeluBeta));
        const Var u1 = add_scalar(mul_scalar(square(v), 3 * kGeluKappa * kGeluBeta), kGeluBeta);
        const Var u2 = mul_scalar(v, 6 * kGeluKappa * kGeluBeta);
        const Var inner = sub(u2, mul_scalar(mul(t, square(u1)), 2.0));
        return mul(one_minus_square(t), add(u1, mul(mul_scalar(v, 0.5), inner)));
      };
      return pointwise_backward("gelu_backward", dy, c.input(0), d1, d2);
    });
  }
  throw Error("gelu: approximate must be 'none' or 'tanh', got '" + std::string(approximate) + "'");
}

Var silu(const Var& x) {
  // y = x s, s = sigmoid(x);  y' = s (1 + x (1 - s));  y'' = s (1 - s) (2 + x (1 - 2 s))
  Tensor y = kern::simd_map(x.value(), "silu", [](auto b) {
    using T = typename decltype(b)::value_type;
    return b / (T(1) + xsimd::exp(-b));
  });
  return detail::record_symmetric("silu", std::move(y), x, [](const auto& c, const Var& dy) {
    auto d1 = [](auto v) {
      using T = decltype(v);
      const T s = T(1) / (T(1) + exp_(-v));
      return s * (T(1) + v * (T(1) - s));
    };
    auto d2 = [](const Var& v) {
      const Var s = sigmoid(v);
      return mul(mul(s, add_scalar(neg(s), 1.0)),
                 add_scalar(mul(v, add_scalar(mul_scalar(s, -2.0), 1.0)), 2.0));
    };
    return pointwise_backward("silu_backward", dy, c.input(0), d1, d2);
  });
}

Var mish(const Var& x) {
  // y = x t, t = tanh(softplus(x)), s = sigmoid(x);  y' = t + x s (1 - t^2);
  // y'' = (1 - t^2) s (2 + x (1 - s - 2 t s))
  Tensor y = kern::simd_map(x.value(), "mish",
                            [](auto b) { return b * xsimd::tanh(xsimd::log1p(xsimd::exp(b))); });
  return detail::record_symmetric("mish", std::move(y), x, [](const auto& c, const Var& dy) {
    auto d1 = [](auto v) {
      using T = decltype(v);
      const T s = T(1) / (T(1) + exp_(-v));
      const T t = tanh_(log1p_(exp_(v)));
      return t + v * s * (T(1) - t * t);
    };
    auto d2 = [](const Var& v) {
      const Var t = tanh(softplus(v));
      const Var s = sigmoid(v);
      const Var inner = sub(add_scalar(neg(s), 1.0), mul_scalar(mul(t, s), 2.0));
      return mul(mul(one_minus_square(t), s), add_scalar(mul(v, inner), 2.0));
    };
    return pointwise_backward("mish_backward", dy, c.input(0), d1, d2);
  });
}

Var elu(const Var& x, double alpha) {
  // y = x where x > 0, alpha (exp(x) - 1) where x <= 0;  dx = dy, or dy alpha exp(x)
  Tensor y = dispatch(x.dtype(), "elu", [&]<class T>() {
    const T a = static_cast<T>(alpha);
    return kern::map(x.value(), "elu", [a](T v) { return v <= T(0) ? a * std::expm1(v) : v; });
  });
  return detail::record_symmetric("elu", std::move(y), x, [alpha](const auto& c, const Var& dy) {
    const Var& xv = c.input(0);
    Tensor le = Tensor::empty(xv.shape(), boolean), lt = le.clone();
    dispatch(xv.dtype(), "elu", [&]<class T>() {
      const T* p = xv.value().data<T>();
      bool *ple = le.data<bool>(), *plt = lt.data<bool>();
      for (int64_t i = 0, n = xv.numel(); i < n; ++i) {
        ple[i] = p[i] <= T(0);
        plt[i] = p[i] < T(0);
      }
    });
    // dy alpha exp(x) where x <= 0. NOTE: exp reads x only where x < 0 (0 elsewhere, the same
    // value at x = 0), so the second derivative is 0 at x = 0 as PyTorch's
    // elu_double_backward (mask x < 0), and no Inf from a large x meets a zero there.
    const Var e = mul_scalar(exp(where(constant(std::move(lt)), xv, 0.0)), alpha);
    return where(constant(std::move(le)), mul(dy, e), dy);
  });
}

Var softsign(const Var& x) {
  // y = x / (1 + |x|), composed as F.softsign is;  dx = dy / (1 + |x|)^2
  return div(x, add_scalar(abs(x), 1.0));
}

Var hardtanh(const Var& x, double min_val, double max_val) {
  // y = clamp(x, min_val, max_val);  dx = dy where min_val < x < max_val (or x is NaN), else 0
  if (min_val > max_val)
    throw Error("hardtanh: min_val " + std::to_string(min_val) + " is greater than max_val " +
                std::to_string(max_val));
  Tensor y = dispatch(x.dtype(), "hardtanh", [&]<class T>() {
    const T l = static_cast<T>(min_val), h = static_cast<T>(max_val);
    return kern::map(x.value(), "hardtanh", [l, h](T v) { return v < l ? l : (v > h ? h : v); });
  });
  return detail::record_symmetric(
      "hardtanh", std::move(y), x, [min_val, max_val](const auto& c, const Var& dy) {
        Tensor keep = dispatch(dy.dtype(), "hardtanh", [&]<class T>() {
          const T l = static_cast<T>(min_val), h = static_cast<T>(max_val);
          return kern::map(c.input(0).value(), "hardtanh",
                           [l, h](T v) { return T(!(v <= l || v >= h)); });
        });
        return detail::keep_where(dy, keep, 0.0);
      });
}

}  // namespace tg
