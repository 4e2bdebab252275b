#include "ops/activation.hpp"

#include <cmath>

#include "ops/arith.hpp"
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
  return record(
      "relu_backward", std::move(g), {dy, x}, [slope](const BackwardCtx& c, const Var& ddx) {
        return Grads{c.needs_grad(0) ? relu_backward(ddx, c.input(1), slope) : Var(), Var()};
      });
}

// sigmoid_backward(dy, y) = dy * y * (1 - y)
Var sigmoid_backward(const Var& dy, const Var& y) {
  Tensor g = kern::zip(dy.value(), y.value(), "sigmoid_backward", [](auto d, auto v) {
    using T = decltype(v);
    return d * v * (T(1) - v);
  });
  return record(
      "sigmoid_backward", std::move(g), {dy, y}, [](const BackwardCtx& c, const Var& ddx) {
        // d/d(dy) = ddx * y(1-y);  d/dy = ddx * dy * (1 - 2y)
        const Var& d = c.input(0);
        const Var& yv = c.input(1);
        return Grads{
            c.needs_grad(0) ? sigmoid_backward(ddx, yv) : Var(),
            c.needs_grad(1) ? mul(mul(ddx, d), add_scalar(mul_scalar(yv, -2.0), 1.0)) : Var()};
      });
}

// tanh_backward(dy, y) = dy * (1 - y^2)
Var tanh_backward(const Var& dy, const Var& y) {
  Tensor g = kern::zip(dy.value(), y.value(), "tanh_backward", [](auto d, auto v) {
    using T = decltype(v);
    return d * (T(1) - v * v);
  });
  return record("tanh_backward", std::move(g), {dy, y}, [](const BackwardCtx& c, const Var& ddx) {
    // d/d(dy) = ddx * (1 - y^2);  d/dy = -2 * ddx * dy * y
    const Var& d = c.input(0);
    const Var& yv = c.input(1);
    return Grads{c.needs_grad(0) ? tanh_backward(ddx, yv) : Var(),
                 c.needs_grad(1) ? mul_scalar(mul(mul(ddx, d), yv), -2.0) : Var()};
  });
}

}  // namespace

Var sigmoid(const Var& x) {
  // y = 1 / (1 + exp(-x));  dx = dy * y * (1 - y)
  Tensor y = kern::simd_map(x.value(), "sigmoid", [](auto b) {
    using T = typename decltype(b)::value_type;
    return T(1) / (T(1) + xsimd::exp(-b));
  });
  return record("sigmoid", std::move(y), {x}, [](const BackwardCtx& c, const Var& dy) {
    return Grads{sigmoid_backward(dy, c.output())};
  });
}

Var tanh(const Var& x) {
  // dx = dy * (1 - y^2)
  Tensor y = kern::simd_map(x.value(), "tanh", [](auto b) { return xsimd::tanh(b); });
  return record("tanh", std::move(y), {x}, [](const BackwardCtx& c, const Var& dy) {
    return Grads{tanh_backward(dy, c.output())};
  });
}

Var relu(const Var& x) {
  // y = max(x, 0);  dx = dy * [x > 0]   NOTE: relu'(0) = 0, as in PyTorch; NaN stays NaN
  // (an upstream NaN must not turn into a finite loss).
  Tensor y = kern::map(x.value(), "relu", [](auto v) {
    using T = decltype(v);
    return v > T(0) || v != v ? v : T(0);
  });
  return record("relu", std::move(y), {x}, [](const BackwardCtx& c, const Var& dy) {
    return Grads{relu_backward(dy, c.input(0), 0.0)};
  });
}

Var leaky_relu(const Var& x, double negative_slope) {
  // y = x if x > 0 else slope * x;  dx = dy * (x > 0 ? 1 : slope)
  Tensor y = dispatch(x.dtype(), "leaky_relu", [&]<class T>() {
    const T s = static_cast<T>(negative_slope);
    return kern::map(x.value(), "leaky_relu", [s](T v) { return v > T(0) ? v : v * s; });
  });
  return record("leaky_relu", std::move(y), {x},
                [negative_slope](const BackwardCtx& c, const Var& dy) {
                  return Grads{relu_backward(dy, c.input(0), negative_slope)};
                });
}

Var softmax(const Var& x, int64_t axis) {
  // y = exp(x - max) / sum(exp(x - max));  dx = y * (dy - sum(dy * y, axis))
  const int ax = normalize_axis(axis, x.dim(), "softmax");
  return record("softmax", kern::softmax(x.value(), ax, false), {x},
                [ax](const BackwardCtx& c, const Var& dy) {
                  const Var y = c.output();
                  return Grads{mul(y, sub(dy, sum(mul(dy, y), {ax}, true)))};
                });
}

Var log_softmax(const Var& x, int64_t axis) {
  // NOTE: y = x - max - log(sum(exp(x - max))): finite for any finite x.
  // dx = dy - exp(y) * sum(dy, axis)
  const int ax = normalize_axis(axis, x.dim(), "log_softmax");
  return record("log_softmax", kern::softmax(x.value(), ax, true), {x},
                [ax](const BackwardCtx& c, const Var& dy) {
                  return Grads{sub(dy, mul(exp(c.output()), sum(dy, {ax}, true)))};
                });
}

}  // namespace tg
