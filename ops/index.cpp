#include "ops/index.hpp"

#include <cmath>
#include <sstream>
#include <string>
#include <type_traits>

#include "graph/engine_ops.hpp"
#include "graph/kernels.hpp"
#include "ops/arith.hpp"
#include "ops/shape_ops.hpp"

namespace tg {

namespace {

std::string dt(const Tensor& t) { return std::string(dtype_name(t.dtype())); }

void check_index_dtype(const Tensor& index, const char* op) {
  if (index.dtype() != i64)
    throw DtypeError(std::string(op) + ": index must be an i64 tensor, got " + dt(index));
}

void check_mask_dtype(const Tensor& mask, const char* op) {
  if (mask.dtype() != boolean)
    throw DtypeError(std::string(op) + ": mask must be a bool tensor, got " + dt(mask));
}

[[noreturn]] void throw_out_of_range(const char* op, int dim, int64_t value, int64_t size) {
  throw IndexError(std::string(op) + ": index " + std::to_string(value) +
                   " is out of range for dim " + std::to_string(dim) + " of size " +
                   std::to_string(size));
}

// ---- where ----

Tensor where_kernel(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_mask_dtype(cond, "where");
  kern::check_same_dtype(a, b, "where");
  const Shape shape =
      broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  const Tensor c = kern::expand(cond, shape, "where");
  const Tensor ea = a.numel() == 1 ? a : kern::expand(a, shape, "where");
  const Tensor eb = b.numel() == 1 ? b : kern::expand(b, shape, "where");
  Tensor out = Tensor::empty(shape, a.dtype());
  dispatch_all(a.dtype(), [&]<class T>() {
    const bool* pc = c.data<bool>();
    const T* pa = ea.data<T>();
    const T* pb = eb.data<T>();
    T* po = out.data<T>();
    const int64_t n = out.numel();
    const bool sa = ea.numel() == 1 && n != 1, sb = eb.numel() == 1 && n != 1;
    for (int64_t i = 0; i < n; ++i) po[i] = pc[i] ? pa[sa ? 0 : i] : pb[sb ? 0 : i];
  });
  return out;
}

Var scalar_like(double v, const Var& x) { return constant(scalar_tensor(v, x.dtype())); }

// A scalar operand of where in the other operand's dtype. PyTorch promotes the result past
// an i64 or bool tensor for a scalar it cannot hold (7.5, or 2 beside a bool); tapegrad does
// not promote, so such a scalar is a DtypeError rather than silently rounded.
Var where_scalar(double v, const Var& x) {
  const bool fits = x.dtype() == i64 ? v == std::trunc(v) && v >= -9.2233720368547758e18 &&
                                           v < 9.2233720368547758e18
                    : x.dtype() == boolean ? v == 0 || v == 1
                                           : true;
  if (!fits) {
    std::ostringstream os;
    os << "where: the scalar " << v << " is not a value of the other operand's dtype "
       << dt(x.value()) << " (PyTorch would promote; convert the tensor with .to())";
    throw DtypeError(os.str());
  }
  return scalar_like(v, x);
}

// ---- gather / scatter along a dim ----

// The offsets an index tensor addresses: for each position p of `index` (row-major),
// f(p, offset of x's element at p's coordinates with `dim` set to index[p]). Checks the
// ranks and extents first and each index value as it goes (an out-of-place op's result is
// dropped when it throws).
template <class F>
void walk_index(const Shape& xs, const Tensor& index, int dim, const char* op, F f) {
  const Shape& is = index.shape();
  if (is.rank() != xs.rank())
    throw ShapeError(std::string(op) + ": index of shape " + is.str() + " has rank " +
                     std::to_string(is.rank()) + ", the input " + xs.str() + " has rank " +
                     std::to_string(xs.rank()));
  for (int d = 0; d < xs.rank(); ++d)
    if (d != dim && is[d] > xs[d])
      throw ShapeError(std::string(op) + ": index of shape " + is.str() +
                       " is larger than the input " + xs.str() + " at dim " + std::to_string(d));
  const int64_t* iv = index.data<int64_t>();
  const int64_t n = index.numel(), size = xs.rank() ? xs[dim] : 1;
  if (n == 0) return;
  const int r = xs.rank();
  if (r == 0) {
    if (iv[0] != 0) throw_out_of_range(op, 0, iv[0], 1);
    f(0, 0);
    return;
  }
  int64_t xstride[Shape::kMaxRank], coord[Shape::kMaxRank] = {};
  int64_t s = 1;
  for (int d = r - 1; d >= 0; --d) {
    xstride[d] = s;
    s *= xs[d];
  }
  // Rows along the last dim: x's offset of element j is base + j (or, along `dim` itself,
  // base + index), so the inner loop has no odometer.
  const int64_t inner = is[r - 1], dstride = xstride[dim];
  const bool along_last = dim == r - 1;
  int64_t base = 0;  // x's offset of the row's coordinates, `dim` at 0
  for (int64_t row = 0; row < n; row += inner) {
    const int64_t* rv = iv + row;
    // Checked apart (one unsigned compare: a negative index is huge), so this loop
    // vectorizes and the one below stays branch-free.
    uint64_t bad = 0;
    for (int64_t j = 0; j < inner; ++j)
      bad |= static_cast<uint64_t>(static_cast<uint64_t>(rv[j]) >= static_cast<uint64_t>(size));
    if (bad) [[unlikely]]
      for (int64_t j = 0; j < inner; ++j)
        if (rv[j] < 0 || rv[j] >= size) throw_out_of_range(op, dim, rv[j], size);
    if (along_last) {
      for (int64_t j = 0; j < inner; ++j) f(row + j, base + rv[j]);
    } else {
      for (int64_t j = 0; j < inner; ++j) f(row + j, base + j + rv[j] * dstride);
    }
    for (int d = r - 2; d >= 0; --d) {  // odometer over the outer dims of index's shape
      if (d != dim) base += xstride[d];
      if (++coord[d] < is[d]) break;
      if (d != dim) base -= xstride[d] * is[d];
      coord[d] = 0;
    }
  }
}

Tensor gather_kernel(const Tensor& x, int dim, const Tensor& index) {
  Tensor out = Tensor::empty(index.shape(), x.dtype());
  dispatch_all(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T* po = out.data<T>();
    walk_index(x.shape(), index, dim, "gather",
               [po, px](int64_t p, int64_t off) { po[p] = px[off]; });
  });
  return out;
}

// `out` (x's copy, or zeros) with src added (accumulate) or written at the indexed places;
// src null: `value` written.
Tensor scatter_kernel(Tensor out, int dim, const Tensor& index, const Tensor* src, double value,
                      bool accumulate, const char* op) {
  const Tensor& x = out;
  if (src) {
    kern::check_same_dtype(x, *src, op);
    if (src->shape() != index.shape())
      throw ShapeError(std::string(op) + ": src of shape " + src->shape().str() +
                       " differs from the index's shape " + index.shape().str());
  }
  dispatch_all(x.dtype(), [&]<class T>() {
    T* po = out.data<T>();
    const T* ps = src ? src->data<T>() : nullptr;
    const T v = detail::convert<T>(value);
    if (!ps) {
      walk_index(x.shape(), index, dim, op, [po, v](int64_t, int64_t off) { po[off] = v; });
    } else if (!accumulate) {
      walk_index(x.shape(), index, dim, op, [po, ps](int64_t p, int64_t off) { po[off] = ps[p]; });
    } else if constexpr (std::is_same_v<T, bool>) {
      walk_index(x.shape(), index, dim, op,
                 [po, ps](int64_t p, int64_t off) { po[off] = po[off] || ps[p]; });
    } else if constexpr (std::is_same_v<T, int64_t>) {  // wraps as PyTorch's (no signed UB)
      walk_index(x.shape(), index, dim, op, [po, ps](int64_t p, int64_t off) {
        po[off] =
            static_cast<int64_t>(static_cast<uint64_t>(po[off]) + static_cast<uint64_t>(ps[p]));
      });
    } else {
      walk_index(x.shape(), index, dim, op, [po, ps](int64_t p, int64_t off) { po[off] += ps[p]; });
    }
  });
  return out;
}

int checked_dim(const Var& x, int64_t dim, const char* op) {
  return x.dim() == 0 && (dim == 0 || dim == -1) ? 0 : normalize_axis(dim, x.dim(), op);
}

}  // namespace

Var where(const Var& cond, const Var& a, const Var& b) {
  // d/da = dy where cond, else 0; d/db = dy where not cond (each summed back to its shape)
  Tensor y = where_kernel(cond.value(), a.value(), b.value());
  return record(
      "where", std::move(y), {cond, a, b},
      [](const BackwardCtx& c, const Var& dy) {
        const Var& m = c.input(0);
        return Grads{Var(), c.needs_grad(1) ? where(m, dy, 0.0) : Var(),
                     c.needs_grad(2) ? where(m, 0.0, dy) : Var()};
      },
      [](const JvpCtx& c) {  // ta where cond, tb elsewhere
        const Var& m = c.input(0);
        if (!c.has_tangent(2)) return where(m, c.tangent(1), 0.0);
        if (!c.has_tangent(1)) return where(m, 0.0, c.tangent(2));
        return where(m, c.tangent(1), c.tangent(2));
      });
}

Var where(const Var& cond, const Var& a, double b) { return where(cond, a, where_scalar(b, a)); }
Var where(const Var& cond, double a, const Var& b) { return where(cond, where_scalar(a, b), b); }

Var masked_fill(const Var& x, const Var& mask, double value) {
  check_mask_dtype(mask.value(), "masked_fill");
  if (broadcast_shapes(mask.shape(), x.shape(), "masked_fill") != x.shape())
    throw ShapeError("masked_fill: mask of shape " + mask.shape().str() +
                     " does not broadcast to the input's shape " + x.shape().str());
  return where(mask, scalar_like(value, x), x);
}

namespace {
// The row-major offsets of t's non-zero elements.
std::vector<int64_t> nonzero_offsets(const Tensor& t) {
  std::vector<int64_t> out;
  dispatch_all(t.dtype(), [&]<class T>() {
    const T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i)
      if (p[i] != T(0)) out.push_back(i);
  });
  return out;
}
}  // namespace

Var masked_select(const Var& x, const Var& mask) {
  // y = the flattened broadcast x at the mask's true offsets: its gradient is index_select's
  check_mask_dtype(mask.value(), "masked_select");
  const Shape shape = broadcast_shapes(x.shape(), mask.shape(), "masked_select");
  const Tensor m = kern::expand(mask.value(), shape, "masked_select");
  const Var xe = x.shape() == shape ? x : expand(x, shape);
  return index_select(reshape(xe, {-1}), 0, nonzero_offsets(m));
}

Var nonzero(const Var& x) {
  const std::vector<int64_t> offsets = nonzero_offsets(x.value());
  const Shape& s = x.shape();
  const int r = s.rank();
  Tensor out = Tensor::empty(Shape{static_cast<int64_t>(offsets.size()), r}, i64);
  int64_t* po = out.data<int64_t>();
  for (int64_t off : offsets) {
    for (int d = r - 1; d >= 0; --d) {  // the coordinates of `off`, last dim fastest
      po[d] = off % s[d];
      off /= s[d];
    }
    po += r;
  }
  return constant(std::move(out));
}

Var gather(const Var& x, int64_t dim, const Var& index) {
  // dx = scatter_add(zeros like x, dim, index, dy)
  check_index_dtype(index.value(), "gather");
  const int d = checked_dim(x, dim, "gather");
  Tensor y = gather_kernel(x.value(), d, index.value());
  return record(
      "gather", std::move(y), {x, index},
      [d](const BackwardCtx& c, const Var& dy) {
        return Grads{detail::gather_backward(dy, c.input_shape(0), d, c.input(1)), Var()};
      },
      [d](const JvpCtx& c) { return gather(c.tangent(0), d, c.input(1)); });
}

Var detail::gather_backward(const Var& dy, const Shape& shape, int64_t dim, const Var& index) {
  // scatter_add(zeros of shape, dim, index, dy) without copying the zeros;
  // d(dy) = gather(ddx, dim, index)
  Tensor y = scatter_kernel(zeros(shape, dy.dtype()), static_cast<int>(dim), index.value(),
                            &dy.value(), 0.0, true, "gather_backward");
  return record(
      "gather_backward", std::move(y), {dy, index},
      [dim](const BackwardCtx& c, const Var& ddx) {
        return Grads{gather(ddx, dim, c.input(1)), Var()};
      },
      [dim](const JvpCtx& c) {
        return gather_backward(c.tangent(0), c.output().shape(), dim, c.input(1));
      });
}

Var scatter_add(const Var& x, int64_t dim, const Var& index, const Var& src) {
  // dx = dy; dsrc = gather(dy, dim, index)
  check_index_dtype(index.value(), "scatter_add");
  const int d = checked_dim(x, dim, "scatter_add");
  Tensor y =
      scatter_kernel(x.value().clone(), d, index.value(), &src.value(), 0.0, true, "scatter_add");
  return record(
      "scatter_add", std::move(y), {x, index, src},
      [d](const BackwardCtx& c, const Var& dy) {
        return Grads{dy, Var(), c.needs_grad(2) ? gather(dy, d, c.input(1)) : Var()};
      },
      [d](const JvpCtx& c) {  // linear in x and src
        return scatter_add(c.tangent_or_zeros(0), d, c.input(1), c.tangent_or_zeros(2));
      });
}

Var scatter(const Var& x, int64_t dim, const Var& index, const Var& src) {
  // dx = dy with the written places zeroed; dsrc = gather(dy, dim, index)
  check_index_dtype(index.value(), "scatter");
  const int d = checked_dim(x, dim, "scatter");
  Tensor y =
      scatter_kernel(x.value().clone(), d, index.value(), &src.value(), 0.0, false, "scatter");
  return record(
      "scatter", std::move(y), {x, index, src},
      [d](const BackwardCtx& c, const Var& dy) {
        const Var& idx = c.input(1);
        return Grads{c.needs_grad(0) ? scatter(dy, d, idx, 0.0) : Var(), Var(),
                     c.needs_grad(2) ? gather(dy, d, idx) : Var()};
      },
      [d](const JvpCtx& c) {  // linear in x and src
        return scatter(c.tangent_or_zeros(0), d, c.input(1), c.tangent_or_zeros(2));
      });
}

Var scatter(const Var& x, int64_t dim, const Var& index, double value) {
  // dx = dy with the written places zeroed
  check_index_dtype(index.value(), "scatter");
  const int d = checked_dim(x, dim, "scatter");
  Tensor y = scatter_kernel(x.value().clone(), d, index.value(), nullptr, value, false, "scatter");
  return record(
      "scatter", std::move(y), {x, index},
      [d](const BackwardCtx& c, const Var& dy) {
        return Grads{scatter(dy, d, c.input(1), 0.0), Var()};
      },
      [d](const JvpCtx& c) { return scatter(c.tangent(0), d, c.input(1), 0.0); });
}

namespace {
std::vector<int64_t> index_vector(const Var& index, const char* op) {
  check_index_dtype(index.value(), op);
  if (index.dim() > 1)
    throw ShapeError(std::string(op) + ": index must have rank 0 or 1, got shape " +
                     index.shape().str());
  const int64_t* p = index.value().data<int64_t>();
  return std::vector<int64_t>(p, p + index.numel());
}
// index_add of an i64 x (as PyTorch, which takes any numeric dtype): scatter_add with the
// index spread over source's shape, wrapping on overflow; alpha must be integral (as add_).
Tensor index_add_integer(const Tensor& x, int d, const std::vector<int64_t>& idx,
                         const Tensor& source, double alpha) {
  if (x.dtype() != i64)
    throw DtypeError("index_add: expected a f32, f64 or i64 tensor, got " + dt(x));
  if (alpha != std::trunc(alpha) ||
      !(alpha >= -9.2233720368547758e18 && alpha < 9.2233720368547758e18))
    throw DtypeError("index_add: alpha " + std::to_string(alpha) +
                     " is not an integer within int64's range, and the tensor is i64");
  int64_t outer, m, inner;
  kern::split_axis(source.shape(), d, outer, m, inner);
  Tensor spread = Tensor::empty(source.shape(), i64);
  int64_t* ps = spread.data<int64_t>();
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < m; ++j)
      for (int64_t i = 0; i < inner; ++i) ps[(o * m + j) * inner + i] = idx[static_cast<size_t>(j)];
  const Tensor src = alpha == 1.0 ? source : source.clone().mul_(alpha);
  return scatter_kernel(x.clone(), d, spread, &src, 0.0, true, "index_add");
}

}  // namespace

Var index_select(const Var& x, int64_t dim, const Var& index) {
  // An index tensor's negative entries are out of range, as PyTorch's (the std::vector
  // overload counts them from the end).
  const std::vector<int64_t> idx = index_vector(index, "index_select");
  const int d = normalize_axis(dim, x.dim(), "index_select");
  for (int64_t i : idx)
    if (i < 0) throw_out_of_range("index_select", d, i, x.shape()[d]);
  return index_select(x, d, idx);
}

Var index_add(const Var& x, int64_t dim, const Var& index, const Var& source, double alpha) {
  // y = x + alpha * (source's entries added at index): dx = dy,
  // dsource = alpha * index_select(dy, dim, index), through the ops below.
  const std::vector<int64_t> idx = index_vector(index, "index_add");
  const int d = normalize_axis(dim, x.dim(), "index_add");
  kern::check_same_dtype(x.value(), source.value(), "index_add");
  Shape want = x.shape();
  want[d] = static_cast<int64_t>(idx.size());
  if (source.shape() != want)
    throw ShapeError("index_add: source of shape " + source.shape().str() + " should be " +
                     want.str() + " (the input " + x.shape().str() + " with the index's length " +
                     std::to_string(idx.size()) + " at dim " + std::to_string(d) + ")");
  for (int64_t i : idx)
    if (i < 0 || i >= x.shape()[d]) throw_out_of_range("index_add", d, i, x.shape()[d]);
  if (!is_floating(x.dtype()))
    return constant(index_add_integer(x.value(), d, idx, source.value(), alpha));
  Var placed = detail::index_select_backward(source, x.shape(), d, idx);
  return add(x, alpha == 1.0 ? placed : mul_scalar(placed, alpha));
}

Var embedding(const Var& ids, const Var& weight, std::optional<int64_t> padding_idx) {
  // y = weight's rows at ids; dweight = the rows of dy added back at ids, except the rows
  // looked up at padding_idx (kept at zero gradient, as PyTorch).
  check_index_dtype(ids.value(), "embedding");
  kern::check_floating(weight.value(), "embedding");
  if (weight.dim() != 2)
    throw ShapeError("embedding: weight must be [num_embeddings, embedding_dim], got " +
                     weight.shape().str());
  const int64_t rows = weight.shape()[0], cols = weight.shape()[1];
  std::optional<int64_t> pad;
  if (padding_idx) {
    const int64_t p = *padding_idx < 0 ? *padding_idx + rows : *padding_idx;
    if (p < 0 || p >= rows)
      throw IndexError("embedding: padding_idx " + std::to_string(*padding_idx) +
                       " is out of range for " + std::to_string(rows) + " embeddings");
    pad = p;
  }
  const int64_t* pi = ids.value().data<int64_t>();
  std::vector<int64_t> idx(pi, pi + ids.numel());
  for (int64_t i : idx)
    if (i < 0 || i >= rows) throw_out_of_range("embedding", 0, i, rows);
  Shape shape = ids.shape();
  shape.push_back(cols);
  Tensor y = index_select(constant(weight.value()), 0, idx).value().reshape(shape);
  return record(
      "embedding", std::move(y), {weight, ids},
      [idx = std::move(idx), pad, cols](const BackwardCtx& c, const Var& dy) {
        Var rows_dy = reshape(dy, {static_cast<int64_t>(idx.size()), cols});
        if (pad) {
          Tensor keep = Tensor::empty(Shape{static_cast<int64_t>(idx.size()), 1}, boolean);
          for (size_t i = 0; i < idx.size(); ++i) keep.data<bool>()[i] = idx[i] != *pad;
          rows_dy = where(constant(std::move(keep)), rows_dy, 0.0);
        }
        return Grads{detail::index_select_backward(rows_dy, c.input_shape(0), 0, idx), Var()};
      },
      [idx](const JvpCtx& c) {  // the tangent's rows at ids
        return reshape(index_select(c.tangent(0), 0, idx), c.output().shape().to_vector());
      });
}

}  // namespace tg
