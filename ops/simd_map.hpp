#pragma once

// Internal: elementwise maps through xtensor + xsimd for the transcendental functions
// (exp, log, tanh, ...), with a scalar loop for tiny tensors where the expression machinery
// costs more than the work. Include only from op .cpp files (it pulls in xtensor).

#include <array>
#include <xtensor/xadapt.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>

#include "ops/kernels.hpp"

namespace tg::kern {

inline constexpr int64_t kSimdMinElements = 32;

/// y = scalar(x) elementwise for small tensors, y = vec(xt-expression of x) for large ones.
template <class S, class V>
Tensor simd_map(const Tensor& x, S scalar, V vec) {
  if (x.numel() < kSimdMinElements) return map(x, scalar);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    const auto n = static_cast<size_t>(x.numel());
    const std::array<size_t, 1> shape{n};
    auto in = xt::adapt(x.data<T>(), n, xt::no_ownership(), shape);
    auto res = xt::adapt(out.data<T>(), n, xt::no_ownership(), shape);
    xt::noalias(res) = vec(in, T(0));
  });
  return out;
}

}  // namespace tg::kern
