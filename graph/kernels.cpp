#include "graph/kernels.hpp"

#include <cmath>
#include <limits>

namespace tg::kern {

void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  if (a.dtype() != b.dtype())
    throw DtypeError(std::string(op) + ": dtypes " + std::string(dtype_name(a.dtype())) + " " +
                     a.shape().str() + " and " + std::string(dtype_name(b.dtype())) + " " +
                     b.shape().str() + " differ (convert one with .to())");
}

void check_same_shape(const Tensor& a, const Tensor& b, const char* op, const char* what_a,
                      const char* what_b) {
  if (a.shape() != b.shape())
    throw ShapeError(std::string(op) + ": " + what_a + " shape " + a.shape().str() + " and " +
                     what_b + " shape " + b.shape().str() + " differ");
}

void broadcast_strides(const Shape& s, const Shape& out, int64_t* strides) {
  const int r = out.rank(), off = r - s.rank();
  int64_t stride = 1;
  for (int d = r - 1; d >= 0; --d) {
    const int ds = d - off;
    if (ds < 0 || s[ds] == 1) {
      strides[d] = 0;
    } else {
      strides[d] = stride;
    }
    if (ds >= 0) stride *= s[ds];
  }
}

void add_(Tensor& dst, const Tensor& src) {
  check_same_dtype(dst, src, "add_");
  check_same_shape(dst, src, "add_", "destination", "source");
  dst.bump_version();
  dispatch(dst.dtype(), "add_", [&]<class T>() {
    T* d = dst.data<T>();
    const T* s = src.data<T>();
    const int64_t n = dst.numel();
    for (int64_t i = 0; i < n; ++i) d[i] += s[i];
  });
}

void split_axis(const Shape& s, int axis, int64_t& outer, int64_t& n, int64_t& inner) {
  outer = 1;
  inner = 1;
  for (int d = 0; d < axis; ++d) outer *= s[d];
  n = s[axis];
  for (int d = axis + 1; d < s.rank(); ++d) inner *= s[d];
}

namespace {
// Integer sums (PyTorch's sum keeps i64 and wraps on overflow): accumulated unsigned, where
// overflow is defined. Bool is refused as every floating-only op refuses it.
Tensor sum_i64(const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Shape& shape) {
  Tensor out = Tensor::empty(shape, i64);
  const int64_t* p = x.data<int64_t>();
  int64_t* o = out.data<int64_t>();
  for (int64_t r = 0; r < outer; ++r)
    for (int64_t i = 0; i < inner; ++i) {
      uint64_t s = 0;
      for (int64_t a = 0; a < n; ++a) s += static_cast<uint64_t>(p[(r * n + a) * inner + i]);
      o[r * inner + i] = static_cast<int64_t>(s);
    }
  return out;
}
}  // namespace

Tensor sum_all(const Tensor& x) {
  if (x.dtype() == i64) return sum_i64(x, 1, x.numel(), 1, Shape{});
  Tensor out = Tensor::empty(Shape{}, x.dtype());
  dispatch(x.dtype(), "sum", [&]<class T>() {
    const T* p = x.data<T>();
    // NOTE: accumulated in double with four partial sums: float accumulation of 2e7 ones
    // stops at 16777216.
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    const int64_t n = x.numel();
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
      s0 += p[i];
      s1 += p[i + 1];
      s2 += p[i + 2];
      s3 += p[i + 3];
    }
    for (; i < n; ++i) s0 += p[i];
    *out.data<T>() = static_cast<T>((s0 + s1) + (s2 + s3));
  });
  return out;
}

Shape reduced_shape(const Shape& s, int axis, bool keepdims) {
  Shape shape = s;
  if (keepdims) {
    shape[axis] = 1;
  } else {
    shape.erase(axis);
  }
  return shape;
}

Tensor sum_axis(const Tensor& x, int axis, bool keepdims) {
  int64_t outer, n, inner;
  split_axis(x.shape(), axis, outer, n, inner);
  if (x.dtype() == i64)
    return sum_i64(x, outer, n, inner, reduced_shape(x.shape(), axis, keepdims));
  Tensor out = Tensor::empty(reduced_shape(x.shape(), axis, keepdims), x.dtype());
  dispatch(x.dtype(), "sum", [&]<class T>() {
    const T* p = x.data<T>();
    T* o = out.data<T>();
    if (inner == 1) {
      for (int64_t r = 0; r < outer; ++r) {
        double s = 0;
        const T* row = p + r * n;
        for (int64_t a = 0; a < n; ++a) s += row[a];
        o[r] = static_cast<T>(s);
      }
      return;
    }
    for (int64_t r = 0; r < outer; ++r) {
      T* orow = o + r * inner;
      for (int64_t i = 0; i < inner; ++i) orow[i] = T(0);
      for (int64_t a = 0; a < n; ++a) {
        const T* src = p + (r * n + a) * inner;
        for (int64_t i = 0; i < inner; ++i) orow[i] += src[i];
      }
    }
  });
  return out;
}

Tensor sum_to(const Tensor& x, const Shape& shape, const char* op) {
  if (x.shape() == shape) return x;
  const int r = x.dim(), off = r - shape.rank();
  bool ok = off >= 0;
  for (int d = 0; ok && d < shape.rank(); ++d) ok = shape[d] == x.shape()[d + off] || shape[d] == 1;
  if (!ok)
    throw ShapeError(std::string(op) + ": cannot sum shape " + x.shape().str() + " down to " +
                     shape.str() + " (it is not a broadcast of it)");
  Tensor t = x;
  for (int d = r - 1; d >= off; --d)
    if (shape[d - off] == 1 && t.shape()[d] != 1) t = sum_axis(t, d, true);
  if (off > 0) {
    if (off == r) return sum_all(t).reshape(shape);
    // Sum the leading axes: view as [lead, rest] and sum axis 0.
    // (rest from the extents, not numel / lead: with an empty leading axis numel is 0.)
    int64_t lead = 1, rest = 1;
    for (int d = 0; d < off; ++d) lead *= t.shape()[d];
    for (int d = off; d < r; ++d) rest *= t.shape()[d];
    t = sum_axis(t.reshape(std::vector<int64_t>{lead, rest}), 0, false);
  }
  return t.reshape(shape);
}

namespace {

// out = src read through `strides` (elements; 0 repeats along an axis) over `shape`, in
// row-major order: the one strided walk behind expand (broadcast copy) and permute.
Tensor strided_copy(const Tensor& src, const int64_t* strides, const Shape& shape) {
  Tensor out = Tensor::empty(shape, src.dtype());
  const int64_t n = out.numel();
  if (n == 0) return out;
  dispatch_all(src.dtype(), [&]<class T>() {
    const T* ps = src.data<T>();
    T* po = out.data<T>();
    const int r = shape.rank();
    if (r == 0) {
      po[0] = ps[0];
      return;
    }
    int64_t idx[Shape::kMaxRank] = {};
    const int64_t inner = shape[r - 1], is = strides[r - 1];
    int64_t off = 0;
    for (int64_t o = 0; o < n; o += inner) {
      for (int64_t i = 0; i < inner; ++i) po[o + i] = ps[off + i * is];
      for (int d = r - 2; d >= 0; --d) {  // odometer over the outer axes
        off += strides[d];
        if (++idx[d] < shape[d]) break;
        off -= strides[d] * shape[d];
        idx[d] = 0;
      }
    }
  });
  return out;
}

}  // namespace

Tensor expand(const Tensor& x, const Shape& shape, const char* op) {
  if (x.shape() == shape) return x;
  if (broadcast_shapes(x.shape(), shape, op) != shape)
    throw ShapeError(std::string(op) + ": cannot broadcast shape " + x.shape().str() + " to " +
                     shape.str());
  int64_t strides[Shape::kMaxRank];
  broadcast_strides(x.shape(), shape, strides);
  return strided_copy(x, strides, shape);
}

Tensor permute(const Tensor& x, const std::vector<int>& order) {
  const int r = x.dim();
  Shape shape;
  int64_t in_strides[Shape::kMaxRank], st[Shape::kMaxRank];
  int64_t stride = 1;
  for (int d = r - 1; d >= 0; --d) {
    in_strides[d] = stride;
    stride *= x.shape()[d];
  }
  for (int d = 0; d < r; ++d) {
    shape.push_back(x.shape()[order[static_cast<size_t>(d)]]);
    st[d] = in_strides[order[static_cast<size_t>(d)]];
  }
  return strided_copy(x, st, shape);
}

}  // namespace tg::kern
