#include "ops/math.hpp"

#include <cmath>

#include "ops/activation.hpp"
#include "ops/arith.hpp"
#include "ops/simd_map.hpp"

namespace tg {

Var exp(const Var& x) {
  // d exp(x) = dy * y
  Tensor y = kern::simd_map(x.value(), "exp", [](auto b) { return xsimd::exp(b); });
  return record("exp", std::move(y), {x},
                [](const BackwardCtx& c, const Var& dy) { return Grads{mul(dy, c.output())}; });
}

Var log(const Var& x) {
  // d log(x) = dy / x
  Tensor y = kern::simd_map(x.value(), "log", [](auto b) { return xsimd::log(b); });
  return record("log", std::move(y), {x},
                [](const BackwardCtx& c, const Var& dy) { return Grads{div(dy, c.input(0))}; });
}

Var sqrt(const Var& x) {
  // d sqrt(x) = dy / (2 y)
  Tensor y = kern::simd_map(x.value(), "sqrt", [](auto b) { return xsimd::sqrt(b); });
  return record("sqrt", std::move(y), {x}, [](const BackwardCtx& c, const Var& dy) {
    return Grads{div(dy, mul_scalar(c.output(), 2.0))};
  });
}

Var abs(const Var& x) {
  // d|x| = dy * sign(x)   NOTE: sign(0) = 0.
  return record("abs", kern::map(x.value(), "abs", [](auto v) { return std::abs(v); }), {x},
                [](const BackwardCtx& c, const Var& dy) {
                  Tensor sign = kern::map(c.input(0).value(), "abs", [](auto v) {
                    using T = decltype(v);
                    return v > T(0) ? T(1) : (v < T(0) ? T(-1) : T(0));
                  });
                  return Grads{mul(dy, constant(std::move(sign)))};
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
  return record("clamp", std::move(y), {x}, [lo, hi](const BackwardCtx& c, const Var& dy) {
    Tensor mask = dispatch(dy.dtype(), "clamp", [&]<class T>() {
      const T l = static_cast<T>(lo), h = static_cast<T>(hi);
      return kern::map(c.input(0).value(), "clamp",
                       [l, h](T v) { return v >= l && v <= h ? T(1) : T(0); });
    });
    return Grads{mul(dy, constant(std::move(mask)))};
  });
}

Var softplus(const Var& x) {
  // softplus(x) = max(x, 0) + log1p(exp(-|x|));  d = dy * sigmoid(x)
  Tensor y = kern::map(x.value(), "softplus", [](auto v) {
    using T = decltype(v);
    return std::max(v, T(0)) + std::log1p(std::exp(-std::abs(v)));
  });
  return record("softplus", std::move(y), {x}, [](const BackwardCtx& c, const Var& dy) {
    return Grads{mul(dy, sigmoid(c.input(0)))};
  });
}

}  // namespace tg
