#include "ops/kernels.hpp"

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
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

namespace {

// The first k of a contiguous row in sort_axis's order (descending: NaN first, then larger;
// ascending: smaller, NaN last; ties by position), in that order, by one pass that keeps the
// best k seen so far sorted: for small k nearly every element only meets one comparison
// with the current k-th, 16 at a time.
constexpr int64_t kSelectMax = 64;

template <class T>
void select_first_k(const T* row, int64_t n, int64_t k, bool descending, T* out_v, int64_t* out_i) {
  T bv[kSelectMax];
  int64_t bi[kSelectMax];
  int64_t have = 0;
  auto is_nan = [](T v) {
    if constexpr (std::is_floating_point_v<T>) return v != v;
    return false;
  };
  // Whether (v, a) comes before the held (w, b): a > b always, so ties go to the held one.
  auto before = [&](T v, T w) {
    const bool nv = is_nan(v), nw = is_nan(w);
    if (nv || nw) return descending ? nv && !nw : nw && !nv;
    return descending ? v > w : v < w;
  };
  auto insert = [&](T v, int64_t a) {
    int64_t pos = have < k ? have++ : k - 1;
    while (pos > 0 && before(v, bv[pos - 1])) {
      bv[pos] = bv[pos - 1];
      bi[pos] = bi[pos - 1];
      --pos;
    }
    bv[pos] = v;
    bi[pos] = a;
  };
  int64_t a = 0;
  for (; a < n && have < k; ++a) insert(row[a], a);
  constexpr int64_t chunk = 16;
  for (; a < n; a += chunk) {
    const int64_t m = std::min(chunk, n - a);
    const T worst = bv[k - 1];
    // `!(x <= worst)` (descending) is true for a larger x and for NaN: nothing in the chunk
    // can enter when it is false for all 16, unless the worst held is itself NaN.
    bool maybe = is_nan(worst);
    if (!maybe) {
      bool any = false;
      if (descending) {
        for (int64_t j = 0; j < m; ++j) any |= !(row[a + j] <= worst);
      } else {
        for (int64_t j = 0; j < m; ++j) any |= row[a + j] < worst;
      }
      maybe = any;
    }
    if (maybe)
      for (int64_t j = 0; j < m; ++j)
        if (before(row[a + j], bv[k - 1])) insert(row[a + j], a + j);
  }
  for (int64_t j = 0; j < k; ++j) {
    out_v[j] = bv[j];
    out_i[j] = bi[j];
  }
}

}  // namespace

void sort_axis(const Tensor& x, int axis, bool descending, int64_t k, Tensor& values,
               Tensor& indices) {
  int64_t outer, n, inner;
  split_axis(x.shape(), axis, outer, n, inner);
  Shape shape = x.shape();
  shape[axis] = k;
  values = Tensor::empty(shape, x.dtype());
  indices = Tensor::empty(shape, i64);
  dispatch_all(x.dtype(), [&]<class T>() {
    const T* p = x.data<T>();
    T* o = values.data<T>();
    int64_t* oi = indices.data<int64_t>();
    std::vector<T> slice(static_cast<size_t>(n));
    std::vector<int64_t> order(static_cast<size_t>(n));
    // NOTE: a strict total order (NaN above every number, then the position), so any sort
    // algorithm gives the stable result, and topk's partial sort the same first k.
    auto before = [&](int64_t a, int64_t b) {
      const T va = slice[a], vb = slice[b];
      if constexpr (std::is_floating_point_v<T>) {
        const bool na = std::isnan(va), nb = std::isnan(vb);
        if (na || nb) return na && nb ? a < b : (descending ? na : nb);
      }
      if (va != vb) return descending ? vb < va : va < vb;
      return a < b;
    };
    if (inner == 1 && k > 0 && k < n && k <= kSelectMax) {
      for (int64_t r = 0; r < outer; ++r)
        select_first_k(p + r * n, n, k, descending, o + r * k, oi + r * k);
      return;
    }
    for (int64_t r = 0; r < outer; ++r) {
      for (int64_t i = 0; i < inner; ++i) {
        const T* base = p + r * n * inner + i;
        for (int64_t a = 0; a < n; ++a) slice[a] = base[a * inner];
        std::iota(order.begin(), order.end(), int64_t{0});
        if (k < n)
          std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
        else
          std::sort(order.begin(), order.end(), before);
        T* ob = o + r * k * inner + i;
        int64_t* oib = oi + r * k * inner + i;
        for (int64_t a = 0; a < k; ++a) {
          ob[a * inner] = slice[order[a]];
          oib[a * inner] = order[a];
        }
      }
    }
  });
}

namespace {
// f32, f64 or i64 (the dtypes PyTorch's cumsum and prod keep); bool is refused, naming op.
void check_numeric(const Tensor& x, const char* op) {
  if (x.dtype() == boolean)
    throw DtypeError(std::string(op) + ": expected a f32, f64 or i64 tensor, got bool");
}
template <class T>
// (integers accumulate unsigned: an overflow wraps, as PyTorch's, instead of being undefined)
using acc_t = std::conditional_t<std::is_floating_point_v<T>, double, uint64_t>;
}  // namespace

Tensor cumsum_axis(const Tensor& x, int axis, bool reverse, const char* op) {
  check_numeric(x, op);
  int64_t outer, n, inner;
  split_axis(x.shape(), axis, outer, n, inner);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch_all(x.dtype(), [&]<class T>() {
    if constexpr (!std::is_same_v<T, bool>) {
      const T* p = x.data<T>();
      T* o = out.data<T>();
      for (int64_t r = 0; r < outer; ++r) {
        for (int64_t i = 0; i < inner; ++i) {
          const int64_t off = r * n * inner + i;
          acc_t<T> s = 0;
          for (int64_t a = 0; a < n; ++a) {
            const int64_t at = off + (reverse ? n - 1 - a : a) * inner;
            s += p[at];
            o[at] = static_cast<T>(s);
          }
        }
      }
    }
  });
  return out;
}

Tensor prod_axis(const Tensor& x, int axis, bool keepdims, const char* op) {
  check_numeric(x, op);
  int64_t outer, n, inner;
  split_axis(x.shape(), axis, outer, n, inner);
  Tensor out = Tensor::empty(reduced_shape(x.shape(), axis, keepdims), x.dtype());
  dispatch_all(x.dtype(), [&]<class T>() {
    if constexpr (!std::is_same_v<T, bool>) {
      const T* p = x.data<T>();
      T* o = out.data<T>();
      for (int64_t r = 0; r < outer; ++r) {
        for (int64_t i = 0; i < inner; ++i) {
          const T* base = p + r * n * inner + i;
          acc_t<T> s = 1;
          for (int64_t a = 0; a < n; ++a) s *= base[a * inner];
          o[r * inner + i] = static_cast<T>(s);
        }
      }
    }
  });
  return out;
}

Tensor prod_others_axis(const Tensor& x, int axis) {
  int64_t outer, n, inner;
  split_axis(x.shape(), axis, outer, n, inner);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch(x.dtype(), "prod", [&]<class T>() {
    const T* p = x.data<T>();
    T* o = out.data<T>();
    std::vector<double> prefix(static_cast<size_t>(n));
    for (int64_t r = 0; r < outer; ++r) {
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t off = r * n * inner + i;
        double s = 1;
        for (int64_t a = 0; a < n; ++a) {
          prefix[a] = s;
          s *= p[off + a * inner];
        }
        s = 1;
        for (int64_t a = n - 1; a >= 0; --a) {
          o[off + a * inner] = static_cast<T>(prefix[a] * s);
          s *= p[off + a * inner];
        }
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
