#include "ops/kernels.hpp"

#include <xsimd/xsimd.hpp>

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

namespace {

// exp(x - mx) of one contiguous row into `res`, returning the sum. Every element, the tail
// included (through a batch padded with -inf, whose exp is 0), goes through xsimd::exp, so
// a result never depends on where the row starts (Note in ops/simd_map.hpp).
template <class T>
T exp_row(const T* in, T* res, int64_t n, T mx) {
  using B = xsimd::batch<T>;
  constexpr int64_t w = static_cast<int64_t>(B::size);
  const B vm(mx);
  B vs(T(0));
  int64_t a = 0;
  for (; a + w <= n; a += w) {
    const B e = xsimd::exp(B::load_unaligned(in + a) - vm);
    e.store_unaligned(res + a);
    vs += e;
  }
  if (a < n) {
    alignas(64) T buf[w];
    for (int64_t j = 0; j < w; ++j)
      buf[j] = a + j < n ? in[a + j] : -std::numeric_limits<T>::infinity();
    const B e = xsimd::exp(B::load_aligned(buf) - vm);
    e.store_aligned(buf);
    vs += e;
    for (int64_t j = 0; a + j < n; ++j) res[a + j] = buf[j];
  }
  return xsimd::hadd(vs);
}

template <class T>
T row_max(const T* in, int64_t n) {
  using B = xsimd::batch<T>;
  constexpr int64_t w = static_cast<int64_t>(B::size);
  T mx = -std::numeric_limits<T>::infinity();
  int64_t a = 0;
  if (n >= w) {
    B vmx = B::load_unaligned(in);
    for (a = w; a + w <= n; a += w) vmx = xsimd::max(vmx, B::load_unaligned(in + a));
    alignas(64) T lanes[w];
    vmx.store_aligned(lanes);
    for (int64_t j = 0; j < w; ++j) mx = std::max(mx, lanes[j]);
  }
  for (; a < n; ++a) mx = std::max(mx, in[a]);
  return mx;
}

}  // namespace

Tensor softmax(const Tensor& x, int axis, bool log) {
  int64_t outer, n, inner;
  split_axis(x.shape(), axis, outer, n, inner);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch(x.dtype(), log ? "log_softmax" : "softmax", [&]<class T>() {
    const T* p = x.data<T>();
    T* o = out.data<T>();
    if (inner == 1) {
      // Rows along the last axis, the common case: vectorized.
      for (int64_t r = 0; r < outer; ++r) {
        const T* in = p + r * n;
        T* res = o + r * n;
        // NOTE: subtracting the max keeps exp() <= 1, so no overflow for any finite input.
        T mx = row_max(in, n);
        if (!std::isfinite(mx)) mx = T(0);
        const T s = exp_row(in, res, n, mx);
        if (log) {
          const T ls = std::log(s);
          for (int64_t a = 0; a < n; ++a) res[a] = in[a] - mx - ls;
        } else {
          const T inv = T(1) / s;
          for (int64_t a = 0; a < n; ++a) res[a] *= inv;
        }
      }
      return;
    }
    for (int64_t r = 0; r < outer; ++r) {
      for (int64_t i = 0; i < inner; ++i) {
        const T* in = p + r * n * inner + i;
        T* res = o + r * n * inner + i;
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
