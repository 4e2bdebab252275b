#include "ops/kernels.hpp"

#include <cmath>
#include <limits>

namespace tg::kern {

Tensor max_axis(const Tensor& x, int axis, bool keepdims, Tensor* mask) {
  int64_t outer, n, inner;
  split_axis(x.shape(), axis, outer, n, inner);
  if (n == 0)
    throw ShapeError("max: axis " + std::to_string(axis) + " of shape " + x.shape().str() +
                     " is empty");
  Tensor out = Tensor::empty(reduced_shape(x.shape(), axis, keepdims), x.dtype());
  if (mask) *mask = zeros(x.shape(), x.dtype());
  dispatch(x.dtype(), "max", [&]<class T>() {
    const T* p = x.data<T>();
    T* o = out.data<T>();
    T* m = mask ? mask->data<T>() : nullptr;
    for (int64_t r = 0; r < outer; ++r) {
      for (int64_t i = 0; i < inner; ++i) {
        const T* base = p + r * n * inner + i;
        int64_t best = 0;
        for (int64_t a = 1; a < n; ++a) {
          const T v = base[a * inner], b = base[best * inner];
          // NOTE: NaN wins (it propagates, as in NumPy); ties keep the first position.
          if (v > b || (std::isnan(v) && !std::isnan(b))) best = a;
        }
        o[r * inner + i] = base[best * inner];
        if (m) m[r * n * inner + best * inner + i] = T(1);
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
