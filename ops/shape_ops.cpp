#include "ops/shape_ops.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "graph/engine_ops.hpp"  // expand
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
  return record(
      "index_select_backward", std::move(g), {dy},
      [axis, idx](const BackwardCtx&, const Var& ddx) {
        return Grads{gather_op("index_select", ddx, axis, idx)};
      },
      [axis, idx](const JvpCtx& c) {
        return scatter_op(c.tangent(0), c.output().shape(), axis, idx);
      });
}

Var gather_op(const char* name, const Var& x, int axis, std::vector<int64_t> idx) {
  Tensor y = gather(x.value(), axis, idx);
  return record(
      name, std::move(y), {x},
      [axis, idx](const BackwardCtx& c, const Var& dy) {
        return Grads{scatter_op(dy, c.input_shape(0), axis, idx)};
      },
      [name, axis, idx](const JvpCtx& c) { return gather_op(name, c.tangent(0), axis, idx); });
}

}  // namespace

Var detail::index_select_backward(const Var& dy, const Shape& shape, int axis,
                                  std::vector<int64_t> indices) {
  return scatter_op(dy, shape, axis, std::move(indices));
}

Var reshape(const Var& x, const std::vector<int64_t>& shape) {
  // the same elements; dx = dy reshaped back
  return record(
      "reshape", x.value().reshape(shape), {x},
      [](const BackwardCtx& c, const Var& dy) {
        return Grads{reshape(dy, c.input_shape(0).to_vector())};
      },
      [](const JvpCtx& c) { return reshape(c.tangent(0), c.output().shape().to_vector()); });
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
  return record(
      "permute", kern::permute(x.value(), ord), {x},
      [inv64](const BackwardCtx&, const Var& dy) { return Grads{permute(dy, inv64)}; },
      [order](const JvpCtx& c) { return permute(c.tangent(0), order); });
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
  return record(
      "concat", std::move(out), std::span<const Var>(xs),
      [ax, bounds](const BackwardCtx& c, const Var& dy) {
        Grads g;
        for (size_t i = 0; i < c.num_inputs(); ++i)
          g.push_back(c.needs_grad(i) ? slice(dy, ax, bounds[i], bounds[i + 1]) : Var());
        return g;
      },
      [ax](const JvpCtx& c) {  // the tangents side by side (zeros for none)
        std::vector<Var> ts;
        for (size_t i = 0; i < c.num_inputs(); ++i) ts.push_back(c.tangent_or_zeros(i));
        return concat(ts, ax);
      });
}

// ---- PyTorch's shape ops ----

namespace {

std::string list_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// A dim of a tensor of rank `rank`, wrapped as PyTorch does: a rank-0 tensor takes -1 and 0
// (as if it had rank 1). `extra` widens the range for a new dim (unsqueeze, stack).
int wrap_dim(int64_t dim, int rank, const char* op, int extra = 0) {
  const int r = std::max(rank + extra, 1);
  if (dim < -r || dim >= r)
    throw IndexError(std::string(op) + ": dim " + std::to_string(dim) +
                     " is out of range for a tensor of rank " + std::to_string(rank) +
                     " (expected [" + std::to_string(-r) + ", " + std::to_string(r - 1) + "])");
  return static_cast<int>(dim < 0 ? dim + r : dim);
}

// A copy of x recorded as `name` (an op that moves nothing): dx = dy, its tangent x's.
Var copy_op(const char* name, const Var& x) {
  return detail::record_symmetric(name, x.value().clone(), x,
                                  [](const auto&, const Var& d) { return d; });
}

// The same elements under a new shape, shared (a view, as reshape), recorded as `name`.
Var view_op(const char* name, const Var& x, const Shape& shape) {
  return record(
      name, x.value().reshape(shape), {x},
      [](const BackwardCtx& c, const Var& dy) {
        return Grads{reshape(dy, c.input_shape(0).to_vector())};
      },
      [](const JvpCtx& c) { return reshape(c.tangent(0), c.output().shape().to_vector()); });
}

// The box of x (shape `xs`) that lands in a tensor of `shape` when x's entries are shifted by
// lo[d] along each dim: its rows of contiguous entries, as (offset in x, offset in the
// output, length) in elements.
struct LandingBox {
  int r = 0;
  int64_t begin[Shape::kMaxRank] = {}, count[Shape::kMaxRank] = {};
  int64_t in_stride[Shape::kMaxRank] = {}, out_stride[Shape::kMaxRank] = {};
  int64_t landed = 1;  // entries of x that land

  LandingBox(const Shape& xs, const std::vector<int64_t>& lo, const Shape& shape) : r(xs.rank()) {
    for (int d = r - 1, si = 1, so = 1; d >= 0; --d) {
      in_stride[d] = si;
      out_stride[d] = so;
      si *= xs[d];
      so *= shape[d];
      const size_t u = static_cast<size_t>(d);
      begin[d] = std::max<int64_t>(0, -lo[u]);
      const int64_t end = std::min<int64_t>(xs[d], shape[d] - lo[u]);
      count[d] = std::max<int64_t>(0, end - begin[d]);
      landed *= count[d];
    }
  }

  template <class F>
  void for_each_run(const std::vector<int64_t>& lo, F&& run) const {
    if (landed == 0) return;
    int64_t idx[Shape::kMaxRank] = {};
    const int64_t runs = landed / count[r - 1];
    for (int64_t k = 0; k < runs; ++k) {
      int64_t io = 0, oo = 0;
      for (int d = 0; d < r; ++d) {
        const int64_t i = begin[d] + idx[d];
        io += i * in_stride[d];
        oo += (i + lo[static_cast<size_t>(d)]) * out_stride[d];
      }
      run(io, oo, count[r - 1]);
      for (int d = r - 2; d >= 0; --d) {  // odometer over the box's outer dims
        if (++idx[d] < count[d]) break;
        idx[d] = 0;
      }
    }
  }
};

// Output extent of dim d is n + lo[d] + hi[d]: x's entries shifted by lo[d], `value` where
// no entry lands (a negative lo or hi crops). Any dtype.
Tensor pad_constant(const Tensor& x, const std::vector<int64_t>& lo, const Shape& shape,
                    double value) {
  Tensor out = Tensor::empty(shape, x.dtype());
  if (out.numel() == 0) return out;
  if (x.dim() == 0) return x.clone();
  const LandingBox box(x.shape(), lo, shape);
  if (box.landed < out.numel())
    dispatch_all(x.dtype(), [&]<class T>() {
      const T v = detail::convert<T>(value);
      T* po = out.data<T>();
      for (int64_t i = 0, n = out.numel(); i < n; ++i) po[i] = v;
    });
  const size_t esz = itemsize(x.dtype());
  const auto* src = static_cast<const std::byte*>(x.raw_data());
  auto* dst = static_cast<std::byte*>(out.raw_data());
  box.for_each_run(lo, [&](int64_t io, int64_t oo, int64_t len) {
    std::memcpy(dst + static_cast<size_t>(oo) * esz, src + static_cast<size_t>(io) * esz,
                static_cast<size_t>(len) * esz);
  });
  return out;
}

// sum += x padded by lo (floating x of sum's dtype): pad_constant's zeros are not written.
void add_padded_into(Tensor& sum, const Tensor& x, const std::vector<int64_t>& lo) {
  if (x.dim() == 0) return kern::add_(sum, x);
  if (sum.numel() == 0) return;
  const LandingBox box(x.shape(), lo, sum.shape());
  sum.bump_version();
  dispatch(x.dtype(), "pad", [&]<class T>() {
    const T* px = x.data<T>();
    T* ps = sum.data<T>();
    box.for_each_run(lo, [&](int64_t io, int64_t oo, int64_t len) {
      for (int64_t i = 0; i < len; ++i) ps[oo + i] += px[io + i];
    });
  });
}

// Constant padding (or cropping) by lo / hi per dim, recorded as `name`. Its adjoint is the
// same op with the pads negated and zeros: dx = dy cropped (and zero-padded where x's
// entries were cropped away).
Var pad_const_op(const char* name, const Var& x, std::vector<int64_t> lo, std::vector<int64_t> hi,
                 double value) {
  Shape shape = x.shape();
  for (int d = 0; d < x.dim(); ++d) {
    const size_t u = static_cast<size_t>(d);
    const int64_t e = x.shape()[d] + lo[u] + hi[u];
    if (e < 0)
      throw ShapeError(std::string(name) + ": padding (" + std::to_string(lo[u]) + ", " +
                       std::to_string(hi[u]) + ") of dim " + std::to_string(d) + " of shape " +
                       x.shape().str() + " gives a negative extent " + std::to_string(e));
    shape[d] = e;
  }
  Tensor y = pad_constant(x.value(), lo, shape, value);
  return record(
      name, std::move(y), {x},
      [lo, hi](const BackwardCtx& c, const Var& dy) {
        std::vector<int64_t> nlo(lo.size()), nhi(hi.size());
        for (size_t i = 0; i < lo.size(); ++i) {
          nlo[i] = -lo[i];
          nhi[i] = -hi[i];
        }
        // Several crops of one tensor (chunk's pieces, an unrolled loop's steps) add their
        // parts into its gradient summed so far in place when the engine allows it, instead
        // of each padding back to the full size.
        if (Tensor sum = c.accumulating_grad(0); sum.defined()) {
          add_padded_into(sum, dy.value(), nlo);
          return Grads{Var()};
        }
        return Grads{pad_const_op("pad", dy, std::move(nlo), std::move(nhi), 0.0)};
      },
      [name, lo, hi](const JvpCtx& c) { return pad_const_op(name, c.tangent(0), lo, hi, 0.0); });
}

// The lower (j - i <= diagonal) or upper (j - i >= diagonal) triangle of the last two dims,
// the rest 0 (a selection: a NaN outside it is gone, as in PyTorch). Self-adjoint:
// dx = the same triangle of dy.
Var tri_op(const char* name, const Var& x, int64_t diagonal, bool lower) {
  if (x.dim() < 2)
    throw ShapeError(std::string(name) + ": needs a tensor of rank >= 2, got " + x.shape().str());
  const Tensor& xv = x.value();
  Tensor y = Tensor::empty(xv.shape(), xv.dtype());
  const int64_t rows = xv.shape()[x.dim() - 2], cols = xv.shape()[x.dim() - 1];
  const int64_t mats = rows * cols == 0 ? 0 : xv.numel() / (rows * cols);
  dispatch_all(xv.dtype(), [&]<class T>() {
    const T* px = xv.data<T>();
    T* py = y.data<T>();
    for (int64_t m = 0; m < mats; ++m)
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t o = (m * rows + i) * cols;
        for (int64_t j = 0; j < cols; ++j) {
          const bool keep = lower ? j - i <= diagonal : j - i >= diagonal;
          py[o + j] = keep ? px[o + j] : T(0);
        }
      }
  });
  return detail::record_symmetric(name, std::move(y), x,
                                  [name, diagonal, lower](const auto&, const Var& dy) {
                                    return tri_op(name, dy, diagonal, lower);
                                  });
}

}  // namespace

Var squeeze(const Var& x) {
  Shape shape;
  for (int64_t e : x.shape())
    if (e != 1) shape.push_back(e);
  return view_op("squeeze", x, shape);
}

Var squeeze(const Var& x, int64_t dim) {
  const int d = wrap_dim(dim, x.dim(), "squeeze");
  Shape shape;
  for (int i = 0; i < x.dim(); ++i)
    if (i != d || x.shape()[i] != 1) shape.push_back(x.shape()[i]);
  return view_op("squeeze", x, shape);
}

Var unsqueeze(const Var& x, int64_t dim) {
  const int d = wrap_dim(dim, x.dim(), "unsqueeze", 1);
  if (x.dim() >= Shape::kMaxRank)
    throw ShapeError("unsqueeze: shape " + x.shape().str() + " already has the largest rank, " +
                     std::to_string(Shape::kMaxRank));
  Shape shape;
  for (int i = 0; i <= x.dim(); ++i) {
    if (i == d) shape.push_back(1);
    if (i < x.dim()) shape.push_back(x.shape()[i]);
  }
  return view_op("unsqueeze", x, shape);
}

Var stack(const std::vector<Var>& xs, int64_t dim) {
  // concat of the inputs, each with a size-1 dim at `dim`; dx_i = dy's slice i (through
  // concat and unsqueeze)
  if (xs.empty()) throw ShapeError("stack: no tensors given");
  const Var& first = xs[0];
  const int d = wrap_dim(dim, first.dim(), "stack", 1);
  for (size_t i = 1; i < xs.size(); ++i) {
    kern::check_same_dtype(first.value(), xs[i].value(), "stack");
    if (xs[i].shape() != first.shape())
      throw ShapeError("stack: expects tensors of one shape, got " + first.shape().str() +
                       " at entry 0 and " + xs[i].shape().str() + " at entry " + std::to_string(i));
  }
  std::vector<Var> parts;
  parts.reserve(xs.size());
  for (const Var& x : xs) parts.push_back(unsqueeze(x, d));
  return concat(parts, d);
}

Var narrow(const Var& x, int64_t dim, int64_t start, int64_t length) {
  // x's entries [start, start + length) of dim; dx = dy padded with zeros back to x's extent
  if (x.dim() == 0) throw IndexError("narrow: cannot narrow a rank-0 tensor");
  const int d = normalize_axis(dim, x.dim(), "narrow");
  const int64_t n = x.shape()[d];
  if (start < -n || start > n)
    throw IndexError("narrow: start " + std::to_string(start) + " is out of range for dim " +
                     std::to_string(d) + " of shape " + x.shape().str() + " (expected [" +
                     std::to_string(-n) + ", " + std::to_string(n) + "])");
  if (start < 0) start += n;
  if (length < 0 || start + length > n)
    throw IndexError("narrow: start " + std::to_string(start) + " + length " +
                     std::to_string(length) + " exceeds the extent " + std::to_string(n) +
                     " of dim " + std::to_string(d) + " of shape " + x.shape().str());
  std::vector<int64_t> lo(static_cast<size_t>(x.dim()), 0), hi = lo;
  lo[static_cast<size_t>(d)] = -start;
  hi[static_cast<size_t>(d)] = start + length - n;
  return pad_const_op("narrow", x, std::move(lo), std::move(hi), 0.0);
}

std::vector<Var> split(const Var& x, const std::vector<int64_t>& split_sizes, int64_t dim) {
  if (x.dim() == 0) throw ShapeError("split: needs a tensor of rank >= 1, got []");
  const int d = normalize_axis(dim, x.dim(), "split");
  const int64_t n = x.shape()[d];
  int64_t total = 0;
  for (int64_t s : split_sizes) {
    if (s < 0) throw Error("split: split sizes must be non-negative, got " + list_str(split_sizes));
    total += s;
  }
  if (total != n)
    throw ShapeError("split: split sizes " + list_str(split_sizes) + " sum to " +
                     std::to_string(total) + ", not to the extent " + std::to_string(n) +
                     " of dim " + std::to_string(d) + " of shape " + x.shape().str());
  std::vector<Var> out;
  out.reserve(split_sizes.size());
  int64_t start = 0;
  for (int64_t s : split_sizes) {
    out.push_back(narrow(x, d, start, s));
    start += s;
  }
  return out;
}

std::vector<Var> split(const Var& x, int64_t split_size, int64_t dim) {
  if (x.dim() == 0) throw ShapeError("split: needs a tensor of rank >= 1, got []");
  const int d = normalize_axis(dim, x.dim(), "split");
  const int64_t n = x.shape()[d];
  if (split_size < 0)
    throw Error("split: split_size must be non-negative, got " + std::to_string(split_size));
  if (split_size == 0 && n != 0)
    throw Error("split: split_size can be 0 only for an empty dim, got dim " + std::to_string(d) +
                " of shape " + x.shape().str());
  std::vector<int64_t> sizes;
  if (n == 0) sizes.push_back(0);  // one empty piece, as PyTorch
  for (int64_t start = 0; start < n; start += split_size)
    sizes.push_back(std::min(split_size, n - start));
  return split(x, sizes, d);
}

std::vector<Var> chunk(const Var& x, int64_t chunks, int64_t dim) {
  if (chunks <= 0) throw Error("chunk: chunks must be positive, got " + std::to_string(chunks));
  if (x.dim() == 0) throw ShapeError("chunk: needs a tensor of rank >= 1, got []");
  const int d = normalize_axis(dim, x.dim(), "chunk");
  const int64_t n = x.shape()[d];
  if (n == 0) return split(x, std::vector<int64_t>(static_cast<size_t>(chunks), 0), d);
  return split(x, (n + chunks - 1) / chunks, d);
}

Var pad(const Var& x, const std::vector<int64_t>& pad, const std::string& mode, double value) {
  // constant: see pad_const_op. reflect / replicate: an index_select along each padded dim
  // (index i - before mirrored or clamped into [0, n)), so dx sums dy's entries back into
  // the entries they copied.
  const int r = x.dim();
  if (pad.size() % 2 != 0)
    throw Error("pad: the padding " + list_str(pad) + " has an odd length " +
                std::to_string(pad.size()) + " (it holds (before, after) pairs)");
  const int pairs = static_cast<int>(pad.size() / 2);
  if (pairs > r)
    throw ShapeError("pad: the padding " + list_str(pad) + " has " + std::to_string(pairs) +
                     " pairs for shape " + x.shape().str() + " of rank " + std::to_string(r));
  std::vector<int64_t> lo(static_cast<size_t>(r), 0), hi = lo;
  for (int i = 0; i < pairs; ++i) {
    lo[static_cast<size_t>(r - 1 - i)] = pad[static_cast<size_t>(2 * i)];
    hi[static_cast<size_t>(r - 1 - i)] = pad[static_cast<size_t>(2 * i + 1)];
  }
  if (mode == "constant") return pad_const_op("pad", x, std::move(lo), std::move(hi), value);
  const bool reflect = mode == "reflect";
  if (!reflect && mode != "replicate")
    throw Error("pad: unknown mode '" + mode + "' (expected constant, reflect or replicate)");
  if (value != 0.0)
    throw Error("pad: mode '" + mode + "' takes no value, got " + std::to_string(value));
  if (pairs < 1 || pairs > 3 || r < pairs + 1 || r > pairs + 2)
    throw ShapeError("pad: mode '" + mode +
                     "' pads the last 1, 2 or 3 dims of a tensor of rank pairs + 1 or pairs + 2 "
                     "(as PyTorch), got the padding " +
                     list_str(pad) + " for shape " + x.shape().str());
  Var y = x;
  for (int d = r - pairs; d < r; ++d) {
    const size_t u = static_cast<size_t>(d);
    const int64_t n = x.shape()[d], e = n + lo[u] + hi[u];
    if (n == 0 || e < 1 || (reflect && (lo[u] >= n || hi[u] >= n)))
      throw ShapeError("pad: mode '" + mode + "' cannot pad dim " + std::to_string(d) +
                       " of shape " + x.shape().str() + " by (" + std::to_string(lo[u]) + ", " +
                       std::to_string(hi[u]) + ")" +
                       (reflect ? " (needs a non-empty dim, pads below its extent and a non-empty "
                                  "result)"
                                : " (needs a non-empty dim and a non-empty result)"));
    if (lo[u] == 0 && hi[u] == 0) continue;
    std::vector<int64_t> idx(static_cast<size_t>(e));
    for (int64_t o = 0; o < e; ++o) {
      int64_t i = o - lo[u];
      if (reflect)
        i = i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i;
      else
        i = std::clamp<int64_t>(i, 0, n - 1);
      idx[static_cast<size_t>(o)] = i;
    }
    y = gather_op("pad", y, d, std::move(idx));
  }
  if (y.value().shares_storage_with(x.value()))  // all pads 0: a copy
    return copy_op("pad", x);
  return y;
}

Var flip(const Var& x, const std::vector<int64_t>& dims) {
  // an index_select of the reversed indices along each dim; dx = dy flipped back
  std::vector<bool> seen(static_cast<size_t>(std::max(x.dim(), 1)), false);
  std::vector<int> ds;
  for (int64_t dim : dims) {
    const int d = wrap_dim(dim, x.dim(), "flip");
    if (seen[static_cast<size_t>(d)])
      throw IndexError("flip: dim " + std::to_string(d) + " appears more than once in " +
                       list_str(dims));
    seen[static_cast<size_t>(d)] = true;
    if (x.dim() > 0 && x.shape()[d] > 1) ds.push_back(d);
  }
  if (ds.empty())  // nothing moves: a copy
    return copy_op("flip", x);
  Var y = x;
  for (int d : ds) {
    const int64_t n = x.shape()[d];
    std::vector<int64_t> idx(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) idx[static_cast<size_t>(i)] = n - 1 - i;
    y = gather_op("flip", y, d, std::move(idx));
  }
  return y;
}

Var repeat(const Var& x, const std::vector<int64_t>& repeats) {
  // x (with leading size-1 dims) tiled; dx = the tiles summed (through expand's sum_to, or
  // index_select's scatter-add)
  const int r = x.dim(), k = static_cast<int>(repeats.size());
  if (k < r)
    throw ShapeError("repeat: " + std::to_string(k) + " repeats " + list_str(repeats) +
                     " for shape " + x.shape().str() + " (needs at least its rank, " +
                     std::to_string(r) + ")");
  if (k > Shape::kMaxRank)
    throw ShapeError("repeat: " + std::to_string(k) + " repeats " + list_str(repeats) +
                     " exceed the largest rank, " + std::to_string(Shape::kMaxRank));
  for (int64_t q : repeats)
    if (q < 0) throw Error("repeat: repeats must be non-negative, got " + list_str(repeats));
  std::vector<int64_t> padded(static_cast<size_t>(k - r), 1), out_shape;
  padded.insert(padded.end(), x.shape().begin(), x.shape().end());
  int tiled = 0;
  for (int i = 0; i < k; ++i) {
    out_shape.push_back(padded[static_cast<size_t>(i)] * repeats[static_cast<size_t>(i)]);
    tiled += repeats[static_cast<size_t>(i)] != 1;
  }
  const Var xp = k == r ? x : reshape(x, padded);
  if (k + tiled <= Shape::kMaxRank) {
    // [.., 1, n_i, ..] expanded to [.., q_i, n_i, ..] for each tiled dim, then merged
    std::vector<int64_t> view;
    Shape expanded;
    for (int i = 0; i < k; ++i) {
      const int64_t q = repeats[static_cast<size_t>(i)], n = padded[static_cast<size_t>(i)];
      if (q != 1) {
        view.push_back(1);
        expanded.push_back(q);
      }
      view.push_back(n);
      expanded.push_back(n);
    }
    if (tiled == 0)  // nothing tiled: a copy
      return copy_op("repeat", xp);
    return reshape(expand(reshape(xp, view), expanded), out_shape);
  }
  // too many dims to interleave: tile one dim at a time
  Var y = xp;
  for (int i = 0; i < k; ++i) {
    const int64_t q = repeats[static_cast<size_t>(i)], n = padded[static_cast<size_t>(i)];
    if (q == 1) continue;
    std::vector<int64_t> idx;
    idx.reserve(static_cast<size_t>(q * n));
    for (int64_t t = 0; t < q; ++t)
      for (int64_t j = 0; j < n; ++j) idx.push_back(j);
    y = gather_op("repeat", y, i, std::move(idx));
  }
  return y;
}

Var tril(const Var& x, int64_t diagonal) { return tri_op("tril", x, diagonal, true); }
Var triu(const Var& x, int64_t diagonal) { return tri_op("triu", x, diagonal, false); }

}  // namespace tg
