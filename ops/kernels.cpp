#include "ops/kernels.hpp"

#include <cmath>
#include <limits>
#include <string>
#include <type_traits>

namespace tg::kern {

Tensor extreme_axis(const Tensor& x, int axis, bool keepdims, bool largest, const char* op,
                    Tensor* indices) {
  int64_t outer, n, inner;
  split_axis(x.shape(), axis, outer, n, inner);
  if (n == 0)
    throw ShapeError(std::string(op) + ": dim " + std::to_string(axis) + " of shape " +
                     x.shape().str() + " is empty");
  const Shape shape = reduced_shape(x.shape(), axis, keepdims);
  Tensor out = Tensor::empty(shape, x.dtype());
  if (indices) *indices = Tensor::empty(shape, i64);
  dispatch_all(x.dtype(), [&]<class T>() {
    const T* p = x.data<T>();
    T* o = out.data<T>();
    int64_t* oi = indices ? indices->data<int64_t>() : nullptr;
    for (int64_t r = 0; r < outer; ++r) {
      for (int64_t i = 0; i < inner; ++i) {
        const T* base = p + r * n * inner + i;
        int64_t best = 0;
        for (int64_t a = 1; a < n; ++a) {
          const T v = base[a * inner], b = base[best * inner];
          // NOTE: NaN wins (it propagates, as in NumPy and PyTorch); ties keep the first.
          bool nan_v = false, nan_b = false;
          if constexpr (std::is_floating_point_v<T>) {
            nan_v = std::isnan(v);
            nan_b = std::isnan(b);
          }
          if (nan_b) break;
          if (nan_v || (largest ? v > b : v < b)) best = a;
        }
        o[r * inner + i] = base[best * inner];
        if (oi) oi[r * inner + i] = best;
      }
    }
  });
  return out;
}

Tensor softmax(const Tensor& x, int axis, bool log) {
  int64_t outer, n, inner;
  split_axis(x.shape(), axis, outer, n, inner);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch(x.dtype(), log ? "log_softmax" : "softmax", [&]<class T>() {
    const T* p = x.data<T>();
    T* o = out.data<T>();
    for (int64_t r = 0; r < outer; ++r) {
      for (int64_t i = 0; i < inner; ++i) {
        const T* in = p + r * n * inner + i;
        T* res = o + r * n * inner + i;
        // NOTE: subtracting the max keeps exp() <= 1, so no overflow for any finite input.
        T mx = -std::numeric_limits<T>::infinity();
        for (int64_t a = 0; a < n; ++a) mx = std::max(mx, in[a * inner]);
        if (!std::isfinite(mx)) mx = T(0);
        T s = 0;
        for (int64_t a = 0; a < n; ++a) {
          const T e = std::exp(in[a * inner] - mx);
          res[a * inner] = e;
          s += e;
        }
        if (log) {
          const T ls = std::log(s);
          for (int64_t a = 0; a < n; ++a) res[a * inner] = in[a * inner] - mx - ls;
        } else {
          const T inv = T(1) / s;
          for (int64_t a = 0; a < n; ++a) res[a * inner] *= inv;
        }
      }
    }
  });
  return out;
}

}  // namespace tg::kern
