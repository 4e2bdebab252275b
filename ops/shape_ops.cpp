#include "ops/shape_ops.hpp"

#include <algorithm>
#include <cstring>

#include "ops/kernels.hpp"

namespace tg {

namespace {

// y = x[..., idx, ...] along `axis` (gather), as [outer, n, inner] blocks.
Tensor gather(const Tensor& x, int axis, const std::vector<int64_t>& idx) {
  int64_t outer, n, inner;
  kern::split_axis(x.shape(), axis, outer, n, inner);
  Shape shape = x.shape();
  shape[axis] = static_cast<int64_t>(idx.size());
  Tensor out = Tensor::empty(shape, x.dtype());
  const size_t esz = itemsize(x.dtype());
  const auto* src = static_cast<const std::byte*>(x.raw_data());
  auto* dst = static_cast<std::byte*>(out.raw_data());
  const int64_t m = static_cast<int64_t>(idx.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < m; ++j)
      std::memcpy(dst + static_cast<size_t>((o * m + j) * inner) * esz,
                  src + static_cast<size_t>((o * n + idx[static_cast<size_t>(j)]) * inner) * esz,
                  static_cast<size_t>(inner) * esz);
  return out;
}

// The adjoint of gather: zeros of `shape` with dy's blocks added at `idx`.
Tensor scatter_add(const Tensor& dy, const Shape& shape, int axis,
                   const std::vector<int64_t>& idx) {
  Tensor out = zeros(shape, dy.dtype());
  int64_t outer, n, inner;
  kern::split_axis(shape, axis, outer, n, inner);
  const int64_t m = static_cast<int64_t>(idx.size());
  dispatch(dy.dtype(), "index_select_backward", [&]<class T>() {
    const T* g = dy.data<T>();
    T* o = out.data<T>();
    for (int64_t r = 0; r < outer; ++r)
      for (int64_t j = 0; j < m; ++j) {
        T* dst = o + (r * n + idx[static_cast<size_t>(j)]) * inner;
        const T* src = g + (r * m + j) * inner;
        for (int64_t i = 0; i < inner; ++i) dst[i] += src[i];
      }
  });
  return out;
}

Var gather_op(const char* name, const Var& x, int axis, std::vector<int64_t> idx);

// Adjoint of gather_op, itself differentiable (its adjoint is gather_op again).
Var scatter_op(const Var& dy, const Shape& shape, int axis, std::vector<int64_t> idx) {
  Tensor g = scatter_add(dy.value(), shape, axis, idx);
  return record("index_select_backward", std::move(g), {dy},
                [axis, idx = std::move(idx)](const BackwardCtx&, const Var& ddx) {
                  return Grads{gather_op("index_select", ddx, axis, idx)};
                });
}

Var gather_op(const char* name, const Var& x, int axis, std::vector<int64_t> idx) {
  Tensor y = gather(x.value(), axis, idx);
  return record(name, std::move(y), {x},
                [axis, idx = std::move(idx)](const BackwardCtx& c, const Var& dy) {
                  return Grads{scatter_op(dy, c.input_shape(0), axis, idx)};
                });
}

}  // namespace

Var detail::index_select_backward(const Var& dy, const Shape& shape, int axis,
                                  std::vector<int64_t> indices) {
  return scatter_op(dy, shape, axis, std::move(indices));
}

Var reshape(const Var& x, const std::vector<int64_t>& shape) {
  // the same elements; dx = dy reshaped back
  return record("reshape", x.value().reshape(shape), {x}, [](const BackwardCtx& c, const Var& dy) {
    return Grads{reshape(dy, c.input_shape(0).to_vector())};
  });
}

Var flatten(const Var& x, int64_t start_axis) {
  if (x.dim() == 0) return reshape(x, {1});
  const int s = normalize_axis(start_axis, x.dim(), "flatten");
  std::vector<int64_t> shape(x.shape().begin(), x.shape().begin() + s);
  shape.push_back(-1);
  if (x.numel() == 0) {
    int64_t rest = 1;
    for (int d = s; d < x.dim(); ++d) rest *= x.shape()[d];
    shape.back() = rest;
  }
  return reshape(x, shape);
}

Var permute(const Var& x, const std::vector<int64_t>& order) {
  // dx = permute(dy, inverse order)
  if (static_cast<int>(order.size()) != x.dim())
    throw ShapeError("permute: " + std::to_string(order.size()) + " axes given for shape " +
                     x.shape().str());
  std::vector<int> ord, inv(order.size(), -1);
  for (size_t i = 0; i < order.size(); ++i) {
    const int a = normalize_axis(order[i], x.dim(), "permute");
    if (inv[static_cast<size_t>(a)] != -1) throw IndexError("permute: axis repeated in the order");
    inv[static_cast<size_t>(a)] = static_cast<int>(i);
    ord.push_back(a);
  }
  std::vector<int64_t> inv64(inv.begin(), inv.end());
  return record("permute", kern::permute(x.value(), ord), {x},
                [inv64](const BackwardCtx&, const Var& dy) { return Grads{permute(dy, inv64)}; });
}

Var transpose(const Var& x, int64_t axis0, int64_t axis1) {
  const int a = normalize_axis(axis0, x.dim(), "transpose");
  const int b = normalize_axis(axis1, x.dim(), "transpose");
  std::vector<int64_t> order(static_cast<size_t>(x.dim()));
  for (int d = 0; d < x.dim(); ++d) order[static_cast<size_t>(d)] = d;
  std::swap(order[static_cast<size_t>(a)], order[static_cast<size_t>(b)]);
  return permute(x, order);
}

Var transpose(const Var& x) {
  if (x.dim() < 2) throw ShapeError("transpose: needs rank >= 2, got " + x.shape().str());
  return transpose(x, -2, -1);
}

Var slice(const Var& x, int64_t axis, int64_t start, int64_t stop, int64_t step) {
  const int ax = normalize_axis(axis, x.dim(), "slice");
  if (step <= 0) throw IndexError("slice: step must be positive, got " + std::to_string(step));
  const int64_t n = x.shape()[ax];
  auto clampi = [n](int64_t i) { return std::clamp(i < 0 ? i + n : i, int64_t{0}, n); };
  const int64_t b = clampi(start), e = clampi(stop);
  std::vector<int64_t> idx;
  for (int64_t i = b; i < e; i += step) idx.push_back(i);
  return gather_op("slice", x, ax, std::move(idx));
}

Var index_select(const Var& x, int64_t axis, const std::vector<int64_t>& indices) {
  const int ax = normalize_axis(axis, x.dim(), "index_select");
  const int64_t n = x.shape()[ax];
  std::vector<int64_t> idx;
  idx.reserve(indices.size());
  for (int64_t i : indices) {
    if (i < -n || i >= n)
      throw IndexError("index_select: index " + std::to_string(i) + " is out of range for axis " +
                       std::to_string(ax) + " of shape " + x.shape().str());
    idx.push_back(i < 0 ? i + n : i);
  }
  return gather_op("index_select", x, ax, std::move(idx));
}

Var concat(const std::vector<Var>& xs, int64_t axis) {
  // dx_i = the slice of dy that x_i filled
  if (xs.empty()) throw ShapeError("concat: no tensors given");
  const Var& first = xs[0];
  const int ax = normalize_axis(axis, first.dim(), "concat");
  Shape shape = first.shape();
  shape[ax] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Var& v = xs[i];
    kern::check_same_dtype(first.value(), v.value(), "concat");
    bool ok = v.dim() == first.dim();
    for (int d = 0; ok && d < v.dim(); ++d) ok = d == ax || v.shape()[d] == first.shape()[d];
    if (!ok)
      throw ShapeError("concat: shape " + v.shape().str() + " of tensor " + std::to_string(i) +
                       " does not match " + first.shape().str() + " outside axis " +
                       std::to_string(ax));
    shape[ax] += v.shape()[ax];
  }
  Tensor out = Tensor::empty(shape, first.dtype());
  int64_t outer, total, inner;
  kern::split_axis(shape, ax, outer, total, inner);
  const size_t esz = itemsize(first.dtype());
  auto* dst = static_cast<std::byte*>(out.raw_data());
  int64_t offset = 0;
  std::vector<int64_t> bounds{0};
  for (const Var& v : xs) {
    const int64_t m = v.shape()[ax];
    const auto* src = static_cast<const std::byte*>(v.value().raw_data());
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(dst + static_cast<size_t>((o * total + offset) * inner) * esz,
                  src + static_cast<size_t>(o * m * inner) * esz,
                  static_cast<size_t>(m * inner) * esz);
    offset += m;
    bounds.push_back(offset);
  }
  return record("concat", std::move(out), std::span<const Var>(xs),
                [ax, bounds](const BackwardCtx& c, const Var& dy) {
                  Grads g;
                  for (size_t i = 0; i < c.num_inputs(); ++i)
                    g.push_back(c.needs_grad(i) ? slice(dy, ax, bounds[i], bounds[i + 1]) : Var());
                  return g;
                });
}

}  // namespace tg
