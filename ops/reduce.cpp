#include "ops/reduce.hpp"

#include <algorithm>

#include "ops/arith.hpp"
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

Var max(const Var& x) {
  // dx = dy at the first position of the max, 0 elsewhere
  if (x.numel() == 0) throw ShapeError("max: the tensor " + x.shape().str() + " is empty");
  Tensor mask;
  Tensor y = kern::max_axis(x.value().reshape(Shape{x.numel()}), 0, false, &mask);
  return record("max", std::move(y), {x},
                [mask = mask.reshape(x.shape())](const BackwardCtx&, const Var& dy) {
                  return Grads{mul(dy, constant(mask))};
                });
}

Var max(const Var& x, int64_t axis, bool keepdims) {
  const int ax = normalize_axis(axis, x.dim(), "max");
  Tensor mask;
  Tensor y = kern::max_axis(x.value(), ax, keepdims, &mask);
  const Shape kshape = kept_shape(x.shape(), {ax});
  return record("max", std::move(y), {x}, [mask, kshape](const BackwardCtx&, const Var& dy) {
    return Grads{mul(reshape(dy, kshape.to_vector()), constant(mask))};
  });
}

}  // namespace tg
