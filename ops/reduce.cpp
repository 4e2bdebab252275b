#include "ops/reduce.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "ops/arith.hpp"
#include "ops/compare.hpp"
#include "ops/index.hpp"
#include "ops/kernels.hpp"
#include "ops/math.hpp"
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
  return record(
      "sum", kern::sum_all(x.value()), {x},
      [](const BackwardCtx& c, const Var& dy) { return Grads{expand(dy, c.input_shape(0))}; },
      [](const JvpCtx& c) { return sum(c.tangent(0)); });
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
  return record(
      "sum", std::move(y), {x},
      [kshape](const BackwardCtx& c, const Var& dy) {
        return Grads{expand(reshape(dy, kshape.to_vector()), c.input_shape(0))};
      },
      [axes, keepdims](const JvpCtx& c) { return sum(c.tangent(0), axes, keepdims); });
}

Var mean(const Var& x) {
  kern::check_floating(x.value(), "mean");  // as PyTorch: no mean of integers
  return mul_scalar(sum(x), 1.0 / static_cast<double>(x.numel()));
}

Var mean(const Var& x, const std::vector<int64_t>& axes, bool keepdims) {
  kern::check_floating(x.value(), "mean");
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
  return record(
      op, std::move(y), {x},
      [share](const BackwardCtx&, const Var& dy) { return Grads{mul(dy, constant(share))}; },
      [share](const JvpCtx& c) { return sum(mul(c.tangent(0), constant(share))); });
}

// Along a dim: values and the index of each (the first extreme, or the first NaN); dx = dy
// written at the returned index (scatter, whose own gradient is gather).
ValuesIndices extreme_dim(const Var& x, int64_t dim, bool keepdim, bool largest, const char* op) {
  const int ax = x.dim() == 0 && (dim == 0 || dim == -1) ? 0 : normalize_axis(dim, x.dim(), op);
  const Var xv = x.dim() == 0 ? reshape(x, {1}) : x;
  Tensor idx;
  Tensor y = kern::extreme_axis(xv.value(), ax, keepdim || x.dim() == 0, largest, op, &idx);
  const Shape kshape = kept_shape(xv.shape(), {ax});
  // A copy: the indices returned share no buffer with the backward's (an in-place change of
  // them must not move the gradient).
  Var kept_idx = constant(idx.clone().reshape(kshape));
  if (x.dim() == 0 || !keepdim) {
    const Shape out = x.dim() == 0 ? Shape{} : kern::reduced_shape(x.shape(), ax, false);
    y = y.reshape(out);
    idx = idx.reshape(out);
  }
  if (!is_floating(x.dtype())) return {constant(std::move(y)), constant(std::move(idx))};
  Var values = record(
      op, std::move(y), {x},
      [ax, kshape, kept_idx, xshape = xv.shape()](const BackwardCtx& c, const Var& dy) {
        const Var zero = constant(zeros(xshape, dy.dtype()));
        const Var g = scatter(zero, ax, kept_idx, reshape(dy, kshape.to_vector()));
        return Grads{reshape(g, c.input_shape(0).to_vector())};
      },
      [ax, kept_idx, xshape = xv.shape()](const JvpCtx& c) {  // t at the indices
        const Var t = gather(reshape(c.tangent(0), xshape.to_vector()), ax, kept_idx);
        return reshape(t, c.output().shape().to_vector());
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

namespace {

// The axis of a one-dim op: a rank-0 x takes 0 or -1 (as PyTorch) and is seen as [1].
int one_axis(const Var& x, int64_t dim, const char* op) {
  return x.dim() == 0 && (dim == 0 || dim == -1) ? 0 : normalize_axis(dim, x.dim(), op);
}
Shape as_rank1(const Shape& s) { return s.rank() == 0 ? Shape{1} : s; }

// sort (k < 0: all) and topk: values recorded under `op`; dx = dy written at the indices.
ValuesIndices sorted_op(const Var& x, int64_t k, int64_t dim, bool descending, const char* op) {
  const int ax = one_axis(x, dim, op);
  const Shape xshape = as_rank1(x.shape());
  if (k < 0) k = xshape[ax];
  Tensor values, idx;
  kern::sort_axis(x.value().reshape(xshape), ax, descending, k, values, idx);
  // The backward's own copy of the indices: the caller may write into the returned ones.
  const Var kept_idx = is_floating(x.dtype()) ? constant(idx.clone()) : Var();
  if (x.dim() == 0 && k == 1) {  // (topk(x, 0) of a rank-0 x keeps its [0] shape)
    values = values.reshape(Shape{});
    idx = idx.reshape(Shape{});
  }
  if (!is_floating(x.dtype())) return {constant(std::move(values)), constant(std::move(idx))};
  Var v = record(
      op, std::move(values), {x},
      [ax, kept_idx, xshape](const BackwardCtx& c, const Var& dy) {
        // dx = dy at the positions the values came from, 0 elsewhere
        const Var zero = constant(zeros(xshape, dy.dtype()));
        const Var g = scatter(zero, ax, kept_idx, reshape(dy, kept_idx.shape().to_vector()));
        return Grads{reshape(g, c.input_shape(0).to_vector())};
      },
      [ax, kept_idx, xshape](const JvpCtx& c) {  // t at the positions the values came from
        const Var t = gather(reshape(c.tangent(0), xshape.to_vector()), ax, kept_idx);
        return reshape(t, c.output().shape().to_vector());
      });
  return {std::move(v), constant(std::move(idx))};
}

}  // namespace

ValuesIndices sort(const Var& x, int64_t dim, bool descending, bool /*stable*/) {
  return sorted_op(x, -1, dim, descending, "sort");
}

Var argsort(const Var& x, int64_t dim, bool descending, bool /*stable*/) {
  const int ax = one_axis(x, dim, "argsort");
  const Shape xshape = as_rank1(x.shape());
  Tensor values, idx;
  kern::sort_axis(x.value().reshape(xshape), ax, descending, xshape[ax], values, idx);
  return constant(idx.reshape(x.shape()));
}

ValuesIndices topk(const Var& x, int64_t k, int64_t dim, bool largest, bool /*sorted*/) {
  const int64_t n = as_rank1(x.shape())[one_axis(x, dim, "topk")];
  if (k < 0 || k > n)
    throw IndexError("topk: k = " + std::to_string(k) + " is out of range for dim " +
                     std::to_string(dim) + " of size " + std::to_string(n));
  // NOTE: the k largest are the first k of the descending order (NaN first), the k smallest
  // the first k of the ascending one (NaN last), as PyTorch.
  return sorted_op(x, k, dim, largest, "topk");
}

namespace {

// A reduction over several dims: the axes (sorted; an empty list means every axis), their
// int64 form for sum/mean, the shapes with and without keepdim, and the element count N.
struct Reduction {
  std::vector<int> axes;
  std::vector<int64_t> axes64;
  Shape kept, out;
  int64_t count = 1;
};

Reduction plan_reduction(const Var& x, const std::vector<int64_t>& dims, bool keepdim,
                         const char* op) {
  Reduction r;
  if (x.dim() == 0) {
    for (int64_t d : dims)
      if (d != 0 && d != -1) normalize_axis(d, 0, op);  // throws, naming op
  } else if (dims.empty()) {
    for (int a = 0; a < x.dim(); ++a) r.axes.push_back(a);
  } else {
    r.axes = normalize_axes(dims, x.dim(), op);
  }
  r.kept = kept_shape(x.shape(), r.axes);
  for (int a : r.axes) {
    r.axes64.push_back(a);
    r.count *= x.shape()[a];
  }
  if (keepdim) {
    r.out = r.kept;
  } else {
    for (int d = 0; d < x.dim(); ++d)
      if (!std::binary_search(r.axes.begin(), r.axes.end(), d)) r.out.push_back(x.shape()[d]);
  }
  return r;
}

// The max (or min) over the reduction's axes, kept (NaN wins); ShapeError naming op when
// empty.
Tensor amax_kept(const Tensor& x, const Reduction& r, const char* op, bool largest = true) {
  Tensor m = x;
  for (int a : r.axes) m = kern::extreme_axis(m, a, true, largest, op, nullptr);
  return r.axes.empty() ? x.clone() : m;
}

}  // namespace

Var logsumexp(const Var& x, const std::vector<int64_t>& dims, bool keepdim) {
  kern::check_floating(x.value(), "logsumexp");
  const Reduction r = plan_reduction(x, dims, keepdim, "logsumexp");
  Tensor y;
  {
    NoGradGuard no_grad;
    const Var xc = constant(x.value());
    if (x.numel() == 0) {
      y = log(sum(exp(xc), r.axes64, true)).value();  // log(0) = -inf
    } else {
      // NOTE: shifted by the max of each slice, so exp() <= 1; a max of +-inf shifts by 0
      // instead (as PyTorch), so -inf slices give log(0) = -inf and +inf ones +inf.
      const Var m = constant(kern::map(amax_kept(x.value(), r, "logsumexp"), "logsumexp",
                                       [](auto v) { return std::isinf(v) ? decltype(v)(0) : v; }));
      y = add(log(sum(exp(sub(xc, m)), r.axes64, true)), m).value();
    }
  }
  const Shape kept = r.kept;
  return record(
      "logsumexp", y.reshape(r.out), {x},
      [kept](const BackwardCtx& c, const Var& dy) {
        // d logsumexp(x) = dy * exp(x - y)  (softmax of x)
        const Var yk = reshape(c.output(), kept.to_vector());
        return Grads{mul(reshape(dy, kept.to_vector()), exp(sub(c.input(0), yk)))};
      },
      [r](const JvpCtx& c) {  // sum(t * softmax(x))
        const Var yk = reshape(c.output(), r.kept.to_vector());
        const Var t = sum(mul(c.tangent(0), exp(sub(c.input(0), yk))), r.axes64, true);
        return reshape(t, r.out.to_vector());
      });
}
Var logsumexp(const Var& x, std::initializer_list<int64_t> dims, bool keepdim) {
  return logsumexp(x, std::vector<int64_t>(dims), keepdim);
}

namespace {
// PyTorch's divisor of var and std: max(0, N - correction).
double var_divisor(const Reduction& r, int64_t correction) {
  return static_cast<double>(std::max<int64_t>(0, r.count - correction));
}
}  // namespace

Var var(const Var& x, const std::vector<int64_t>& dims, int64_t correction, bool keepdim) {
  kern::check_floating(x.value(), "var");
  const Reduction r = plan_reduction(x, dims, keepdim, "var");
  // NOTE: two passes (the deviations from the mean, then their squares), so no
  // cancellation; made of ops, so its gradient 2 (x - mean) / (N - correction) and the
  // second derivative follow. 1 / 0 = inf: correction >= N gives inf, or NaN (0 * inf) for
  // a constant slice, as PyTorch.
  const Var d = sub(x, mean(x, r.axes64, true));
  return mul_scalar(sum(mul(d, d), r.axes64, keepdim), 1.0 / var_divisor(r, correction));
}
Var var(const Var& x, std::initializer_list<int64_t> dims, int64_t correction, bool keepdim) {
  return var(x, std::vector<int64_t>(dims), correction, keepdim);
}
Var var(const Var& x, int64_t correction) { return var(x, std::vector<int64_t>{}, correction); }

Var std(const Var& x, const std::vector<int64_t>& dims, int64_t correction, bool keepdim) {
  kern::check_floating(x.value(), "std");
  const Reduction r = plan_reduction(x, dims, keepdim, "std");
  Tensor y;
  {
    NoGradGuard no_grad;
    y = sqrt(var(constant(x.value()), dims, correction, keepdim)).value();
  }
  const double scale = 2.0 / var_divisor(r, correction);
  return record(
      "std", std::move(y), {x},
      [r, scale](const BackwardCtx& c, const Var& dy) {
        // d std = dy / (2 std) * d var, d var = 2 (x - mean) / (N - correction).
        // NOTE: 0 where std = 0 (a constant slice), not NaN, as PyTorch; the division is by a
        // safe 1 there, so a second derivative stays finite too.
        const Var yk = reshape(c.output(), r.kept.to_vector());
        const Var zero = eq(yk, 0.0);
        const Var dv = where(zero, 0.0, div(reshape(dy, r.kept.to_vector()), where(zero, 1.0, yk)));
        const Var& xin = c.input(0);
        return Grads{mul(mul_scalar(sub(xin, mean(xin, r.axes64, true)), scale / 2.0), dv)};
      },
      [r, scale](const JvpCtx& c) {  // sum(t (x - mean)) (scale / 2) / std, 0 where std = 0
        const Var yk = reshape(c.output(), r.kept.to_vector());
        const Var zero = eq(yk, 0.0);
        const Var& xin = c.input(0);
        const Var g =
            sum(mul(c.tangent(0), mul_scalar(sub(xin, mean(xin, r.axes64, true)), scale / 2.0)),
                r.axes64, true);
        return reshape(where(zero, 0.0, div(g, where(zero, 1.0, yk))), r.out.to_vector());
      });
}
Var std(const Var& x, std::initializer_list<int64_t> dims, int64_t correction, bool keepdim) {
  return std(x, std::vector<int64_t>(dims), correction, keepdim);
}
Var std(const Var& x, int64_t correction) { return std(x, std::vector<int64_t>{}, correction); }

namespace {
// sign(x) as a constant: -1, 0 or 1 (NaN stays NaN), as PyTorch's sgn.
Tensor sign_of(const Tensor& x) {
  return kern::map(x, "norm", [](auto v) {
    using T = decltype(v);
    return v > T(0) ? T(1) : v < T(0) ? T(-1) : v;  // 0 stays 0, NaN stays NaN
  });
}

// The derivative of the p = +-inf norm: shared evenly by the entries reaching the max (min)
// |x| (or NaN), times their sign, as PyTorch's amax-based norm (yk: the norm with the axes
// kept).
Tensor inf_norm_share(const Tensor& x, const Tensor& yk, const Reduction& r) {
  NoGradGuard no_grad;
  const Var xc = constant(x);
  const Var hit = logical_or(eq(abs(xc), constant(yk)), isnan(xc));
  const Var h = constant(hit.value().to(x.dtype()));
  return mul(div(h, sum(h, r.axes64, true)), constant(sign_of(x))).value();
}

// The derivative of a general p-norm without the division by norm^(p - 1):
// sign(x) |x|^(p - 1), 0 where x = 0 (PyTorch's masked_fill for p < 1, where |x|^(p - 1) is
// infinite; for p > 1 it is 0 there anyway). Written with ops, so it differentiates again.
Var p_norm_share(const Var& x, double p) {
  return where(eq(x, 0.0), 0.0, mul(constant(sign_of(x.value())), pow(abs(x), p - 1.0)));
}
// g / norm^(p - 1), 0 where the norm is 0 (as PyTorch).
Var over_norm_power(const Var& g, const Var& yk, double p) {
  const Var zero = eq(yk, 0.0);
  return where(zero, 0.0, div(g, where(zero, 1.0, pow(yk, p - 1.0))));
}
}  // namespace

Var norm(const Var& x, double p, const std::vector<int64_t>& dims, bool keepdim) {
  kern::check_floating(x.value(), "norm");
  if (std::isnan(p)) throw Error("norm: p = nan is not an order");
  const Reduction r = plan_reduction(x, dims, keepdim, "norm");
  Tensor y;
  {
    NoGradGuard no_grad;
    const Var xc = constant(x.value());
    if (p == 1) {
      y = sum(abs(xc), r.axes64, keepdim).value();
    } else if (p == 2) {
      y = sqrt(sum(mul(xc, xc), r.axes64, keepdim)).value();
    } else if (std::isinf(p)) {
      y = amax_kept(abs(xc).value(), r, "norm", p > 0).reshape(r.out);
    } else if (p == 0) {  // the count of non-zeros; NOTE: NaN stays NaN (PyTorch counts it)
      y = sum(where(isnan(xc), xc, constant(ne(xc, 0.0).value().to(x.dtype()))), r.axes64, keepdim)
              .value();
    } else {
      y = pow(sum(pow(abs(xc), p), r.axes64, keepdim), 1.0 / p).value();
    }
  }
  return record(
      "norm", std::move(y), {x},
      [p, r](const BackwardCtx& c, const Var& dy) {
        const Var dyk = reshape(dy, r.kept.to_vector());
        const Var& xin = c.input(0);
        if (p == 1) return Grads{mul(dyk, constant(sign_of(xin.value())))};  // d|x| = sign(x)
        if (p == 0) return Grads{mul(dyk, constant(zeros(xin.shape(), xin.dtype())))};
        const Var yk = reshape(c.output(), r.kept.to_vector());
        if (p == 2) {
          // d ||x|| = x / ||x||; NOTE: 0 where the norm is 0 (a subgradient), as PyTorch.
          const Var zero = eq(yk, 0.0);
          return Grads{mul(xin, where(zero, 0.0, div(dyk, where(zero, 1.0, yk))))};
        }
        if (std::isinf(p))
          return Grads{mul(dyk, constant(inf_norm_share(xin.value(), yk.value(), r)))};
        // d ||x||_p = sign(x) |x|^(p - 1) / ||x||^(p - 1)
        return Grads{mul(p_norm_share(xin, p), over_norm_power(dyk, yk, p))};
      },
      [p, r](const JvpCtx& c) {
        const Var& xin = c.input(0);
        const Var& t = c.tangent(0);
        const Var yk = reshape(c.output(), r.kept.to_vector());
        Var g;
        if (p == 1) {
          g = sum(mul(t, constant(sign_of(xin.value()))), r.axes64, true);
        } else if (p == 0) {
          g = sum(mul(t, constant(zeros(xin.shape(), xin.dtype()))), r.axes64, true);
        } else if (p == 2) {  // <x, t> / ||x||, 0 where the norm is 0
          const Var zero = eq(yk, 0.0);
          g = where(zero, 0.0, div(sum(mul(xin, t), r.axes64, true), where(zero, 1.0, yk)));
        } else if (std::isinf(p)) {
          g = sum(mul(t, constant(inf_norm_share(xin.value(), yk.value(), r))), r.axes64, true);
        } else {
          g = over_norm_power(sum(mul(t, p_norm_share(xin, p)), r.axes64, true), yk, p);
        }
        return reshape(g, r.out.to_vector());
      });
}
Var norm(const Var& x, double p, std::initializer_list<int64_t> dims, bool keepdim) {
  return norm(x, p, std::vector<int64_t>(dims), keepdim);
}
Var norm(const Var& x, double p) { return norm(x, p, std::vector<int64_t>{}); }

namespace {

// out_i = the product of the other entries of x along `ax` (floating x), recorded so that
// prod's gradient can be differentiated again.
Var prod_others(const Var& x, int ax) {
  // Its Jacobian is symmetric (d out_i / d x_k = d out_k / d x_i): the backward is also the
  // JVP rule.
  return detail::record_symmetric(
      "prod_others", kern::prod_others_axis(x.value(), ax), x, [ax](const auto& c, const Var& g) {
        // d out_i / d x_k = prod_{j != i, k} x_j (i != k), 0 for i = k: the
        // products of the others of E_k (x with x_k set to 1), summed against g
        // with g_k left out. E has a new axis k before `ax`: O(N^2) per slice,
        // paid by second derivatives only.
        const Shape& s = c.input_shape(0);
        const int64_t n = s[ax];
        Shape eshape(std::vector<int64_t>(static_cast<size_t>(s.rank() + 1), 1));
        eshape[ax] = n;
        eshape[ax + 1] = n;
        Tensor eye = zeros(eshape, boolean);
        for (int64_t i = 0; i < n; ++i) eye.data<bool>()[i * n + i] = true;
        const Var e = constant(std::move(eye));
        Shape u = s;
        u.insert(ax, 1);
        const Var big = where(e, 1.0, reshape(c.input(0), u.to_vector()));
        const Var gk = where(e, 0.0, reshape(g, u.to_vector()));
        return sum(mul(gk, prod_others(big, ax + 1)), {ax + 1});
      });
}

}  // namespace

Var prod(const Var& x, int64_t dim, bool keepdim) {
  const int ax = one_axis(x, dim, "prod");
  const Shape xshape = as_rank1(x.shape());
  Tensor y = kern::prod_axis(x.value().reshape(xshape), ax, keepdim, "prod");
  if (x.dim() == 0) y = y.reshape(Shape{});
  if (!is_floating(x.dtype())) return constant(std::move(y));
  const Shape kept = kept_shape(xshape, {ax});
  return record(
      "prod", std::move(y), {x},
      [ax, kept, xshape](const BackwardCtx& c, const Var& dy) {
        // d prod(x) / d x_i = the product of the other entries. NOTE: no division by x_i, so
        // one or several zeros give PyTorch's gradient (and the second derivative is exact).
        const Var others = prod_others(reshape(c.input(0), xshape.to_vector()), ax);
        return Grads{
            reshape(mul(reshape(dy, kept.to_vector()), others), c.input_shape(0).to_vector())};
      },
      [ax, xshape](const JvpCtx& c) {  // sum(t * the products of the others)
        const Var others = prod_others(reshape(c.input(0), xshape.to_vector()), ax);
        const Var t = sum(mul(reshape(c.tangent(0), xshape.to_vector()), others), {ax}, true);
        return reshape(t, c.output().shape().to_vector());
      });
}

Var prod(const Var& x) { return prod(reshape(x, {-1}), 0); }

namespace {
Var cumsum_along(const Var& x, int ax, bool reverse) {
  return record(
      "cumsum", kern::cumsum_axis(x.value(), ax, reverse, "cumsum"), {x},
      [ax, reverse](const BackwardCtx&, const Var& dy) {
        // d cumsum = the cumsum of dy in the other direction (sums from the end)
        return Grads{cumsum_along(dy, ax, !reverse)};
      },
      [ax, reverse](const JvpCtx& c) { return cumsum_along(c.tangent(0), ax, reverse); });
}
}  // namespace

Var cumsum(const Var& x, int64_t dim) {
  const int ax = one_axis(x, dim, "cumsum");
  if (x.dim() == 0) return reshape(cumsum_along(reshape(x, {1}), ax, false), {});
  return cumsum_along(x, ax, false);
}

}  // namespace tg
