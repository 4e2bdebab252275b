#include "ops/reduce.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "ops/arith.hpp"
#include "ops/index.hpp"
#include "ops/kernels.hpp"
#include "ops/shape_ops.hpp"

namespace tg {

namespace {

// Sorted, unique, non-negative axes; throws naming `op` on a bad or repeated axis.
std::vector<int> normalize_axes(const std::vector<int64_t>& axes, int rank, const char* op) {
  std::vector<int> out;
  for (int64_t a : axes) out.push_back(normalize_axis(a, rank, op));
  std::sort(out.begin(), out.end());
  if (std::adjacent_find(out.begin(), out.end()) != out.end())
    throw IndexError(std::string(op) + ": an axis is repeated");
  return out;
}

// The shape of a reduction with keepdims = true.
Shape kept_shape(const Shape& s, const std::vector<int>& axes) {
  Shape k = s;
  for (int a : axes) k[a] = 1;
  return k;
}

}  // namespace

Var sum(const Var& x) {
  // d sum(x) = dy broadcast to x's shape
  return record("sum", kern::sum_all(x.value()), {x}, [](const BackwardCtx& c, const Var& dy) {
    return Grads{expand(dy, c.input_shape(0))};
  });
}

Var sum(const Var& x, const std::vector<int64_t>& axes, bool keepdims) {
  const std::vector<int> ax = normalize_axes(axes, x.dim(), "sum");
  const Shape kshape = kept_shape(x.shape(), ax);
  Tensor y = x.value();
  for (auto it = ax.rbegin(); it != ax.rend(); ++it) y = kern::sum_axis(y, *it, true);
  if (ax.empty()) y = y.clone();
  if (!keepdims) {
    Shape s;
    for (int d = 0; d < x.dim(); ++d)
      if (!std::binary_search(ax.begin(), ax.end(), d)) s.push_back(x.shape()[d]);
    y = y.reshape(s);
  }
  return record("sum", std::move(y), {x}, [kshape](const BackwardCtx& c, const Var& dy) {
    return Grads{expand(reshape(dy, kshape.to_vector()), c.input_shape(0))};
  });
}

Var mean(const Var& x) { return mul_scalar(sum(x), 1.0 / static_cast<double>(x.numel())); }

Var mean(const Var& x, const std::vector<int64_t>& axes, bool keepdims) {
  int64_t count = 1;
  for (int a : normalize_axes(axes, x.dim(), "mean")) count *= x.shape()[a];
  return mul_scalar(sum(x, axes, keepdims), 1.0 / static_cast<double>(count));
}

namespace {

// max(x) or min(x) over every element: dx = dy spread evenly over the positions holding the
// result (ties share it, as PyTorch; a NaN result goes to the NaNs).
Var extreme_all(const Var& x, bool largest, const char* op) {
  if (x.numel() == 0)
    throw ShapeError(std::string(op) + ": the tensor " + x.shape().str() + " is empty");
  Tensor y =
      kern::extreme_axis(x.value().reshape(Shape{x.numel()}), 0, false, largest, op, nullptr);
  if (!is_floating(x.dtype())) return constant(std::move(y));
  Tensor share = dispatch(x.dtype(), op, [&]<class T>() {
    Tensor m = zeros(x.shape(), x.dtype());
    const T* p = x.value().data<T>();
    T* pm = m.data<T>();
    const T best = y.data<T>()[0];
    int64_t count = 0;
    for (int64_t i = 0; i < x.numel(); ++i)
      if (p[i] == best || (std::isnan(p[i]) && std::isnan(best))) {
        pm[i] = T(1);
        ++count;
      }
    for (int64_t i = 0; i < x.numel(); ++i) pm[i] /= static_cast<T>(count);
    return m;
  });
  return record(op, std::move(y), {x},
                [share = std::move(share)](const BackwardCtx&, const Var& dy) {
                  return Grads{mul(dy, constant(share))};
                });
}

// Along a dim: values and the index of each (the first extreme, or the first NaN); dx = dy
// written at the returned index (scatter, whose own gradient is gather).
ValuesIndices extreme_dim(const Var& x, int64_t dim, bool keepdim, bool largest, const char* op) {
  const int ax = x.dim() == 0 && (dim == 0 || dim == -1) ? 0 : normalize_axis(dim, x.dim(), op);
  const Var xv = x.dim() == 0 ? reshape(x, {1}) : x;
  Tensor idx;
  Tensor y = kern::extreme_axis(xv.value(), ax, keepdim || x.dim() == 0, largest, op, &idx);
  const Shape kshape = kept_shape(xv.shape(), {ax});
  Var kept_idx = constant(idx.reshape(kshape));
  if (x.dim() == 0 || !keepdim) {
    const Shape out = x.dim() == 0 ? Shape{} : kern::reduced_shape(x.shape(), ax, false);
    y = y.reshape(out);
    idx = idx.reshape(out);
  }
  if (!is_floating(x.dtype())) return {constant(std::move(y)), constant(std::move(idx))};
  Var values =
      record(op, std::move(y), {x},
             [ax, kshape, kept_idx, xshape = xv.shape()](const BackwardCtx& c, const Var& dy) {
               const Var zero = constant(zeros(xshape, dy.dtype()));
               const Var g = scatter(zero, ax, kept_idx, reshape(dy, kshape.to_vector()));
               return Grads{reshape(g, c.input_shape(0).to_vector())};
             });
  return {std::move(values), constant(std::move(idx))};
}

}  // namespace

Var max(const Var& x) { return extreme_all(x, true, "max"); }
Var min(const Var& x) { return extreme_all(x, false, "min"); }
Var max(const Var& x, int64_t axis, bool keepdims) {
  return extreme_dim(x, axis, keepdims, true, "max").values;
}
Var min(const Var& x, int64_t axis, bool keepdims) {
  return extreme_dim(x, axis, keepdims, false, "min").values;
}
ValuesIndices max_dim(const Var& x, int64_t dim, bool keepdim) {
  return extreme_dim(x, dim, keepdim, true, "max");
}
ValuesIndices min_dim(const Var& x, int64_t dim, bool keepdim) {
  return extreme_dim(x, dim, keepdim, false, "min");
}

namespace {
// argmax / argmin: the indices extreme_dim would return, without values to record.
Var indices_of(const Var& x, int64_t dim, bool keepdim, bool largest, const char* which) {
  const int ax = x.dim() == 0 && (dim == 0 || dim == -1) ? 0 : normalize_axis(dim, x.dim(), which);
  const Tensor xv = x.dim() == 0 ? x.value().reshape(Shape{1}) : x.value();
  Tensor idx;
  (void)kern::extreme_axis(xv, ax, keepdim, largest, which, &idx);
  return constant(x.dim() == 0 ? idx.reshape(Shape{}) : idx);
}
}  // namespace

Var argmax(const Var& x) {
  return indices_of(reshape(constant(x.value()), {-1}), 0, false, true, "argmax");
}
Var argmin(const Var& x) {
  return indices_of(reshape(constant(x.value()), {-1}), 0, false, false, "argmin");
}
Var argmax(const Var& x, int64_t dim, bool keepdim) {
  return indices_of(x, dim, keepdim, true, "argmax");
}
Var argmin(const Var& x, int64_t dim, bool keepdim) {
  return indices_of(x, dim, keepdim, false, "argmin");
}

}  // namespace tg
