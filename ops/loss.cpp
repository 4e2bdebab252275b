#include "ops/loss.hpp"

#include <cmath>
#include <limits>
#include <memory>
#include <string>

#include "ops/activation.hpp"
#include "ops/arith.hpp"
#include "ops/compare.hpp"
#include "ops/index.hpp"
#include "ops/kernels.hpp"
#include "ops/math.hpp"
#include "ops/reduce.hpp"
#include "ops/shape_ops.hpp"

namespace tg {

namespace {

// Reduces elementwise losses as asked.
Tensor reduce(const Tensor& per_element, Reduction r) {
  if (r == Reduction::none) return per_element;
  Tensor s = kern::sum_all(per_element);
  if (r == Reduction::mean) {
    const double inv = 1.0 / static_cast<double>(per_element.numel());
    dispatch(s.dtype(), "reduce", [&]<class T>() { *s.data<T>() *= static_cast<T>(inv); });
  }
  return s;
}

// The output gradient brought to per-element scale: dy / N for mean, dy for sum (both
// rank 0, broadcast by the caller), dy itself for none.
Var per_element_grad(const Var& dy, Reduction r, int64_t n) {
  return r == Reduction::mean ? mul_scalar(dy, 1.0 / static_cast<double>(n)) : dy;
}

std::string dname(const Var& v) { return std::string(dtype_name(v.dtype())); }

void check_reduction(Reduction r, const char* op) {
  if (r == Reduction::batchmean)
    throw Error(std::string(op) +
                ": reduction batchmean is only for kl_div (use mean, sum or none)");
}

// The elementwise losses' operands: floating, of one dtype and one shape.
void check_pair(const Var& input, const Var& target, const char* op) {
  kern::check_floating(input.value(), op);
  kern::check_floating(target.value(), op);
  kern::check_same_dtype(input.value(), target.value(), op);
  kern::check_same_shape(input.value(), target.value(), op);
}

// Reduces elementwise losses made of differentiable ops.
Var reduce_var(const Var& l, Reduction r) {
  if (r == Reduction::sum) return sum(l);
  if (r == Reduction::mean) return mean(l);
  return l;
}

// PyTorch refuses a weight that requires grad where it has no derivative for it.
void check_weight_constant(const Var& weight, const char* op) {
  if (weight.defined() && weight.requires_grad() && is_grad_enabled())
    throw Error(std::string(op) +
                ": weight is not differentiable here (as in PyTorch); pass weight.detach()");
}

// ---- class targets (nll_loss, cross_entropy) ----

// The class axis: 1, or 0 for an input [C] of one sample.
int class_axis(const Var& input) { return input.dim() == 1 ? 0 : 1; }

void check_class_input(const Var& input, const char* op) {
  if (input.dim() == 0)
    throw ShapeError(std::string(op) +
                     ": input of shape [] has no class dim (expected [C], [N, C] or "
                     "[N, C, d1, ...])");
}

void check_class_weight(const Var& input, const Var& weight, const char* op) {
  if (!weight.defined()) return;
  kern::check_floating(weight.value(), op);
  kern::check_same_dtype(input.value(), weight.value(), op);
  const int64_t c = input.shape()[class_axis(input)];
  if (weight.dim() != 1 || weight.shape()[0] != c)
    throw ShapeError(std::string(op) + ": weight of shape " + weight.shape().str() + " for input " +
                     input.shape().str() + " (expected [" + std::to_string(c) +
                     "], one per class)");
}

// Class indices must be i64 of the input's shape without its class axis.
void check_index_target(const Var& input, const Var& target, const char* op, const char* what) {
  if (target.dtype() != i64)
    throw DtypeError(std::string(op) + ": target must be " + what + ", got " + dname(target) + " " +
                     target.shape().str() + " for input " + input.shape().str());
  Shape want = input.shape();
  want.erase(class_axis(input));
  if (target.shape() != want)
    throw ShapeError(std::string(op) + ": target of shape " + target.shape().str() +
                     " does not fit input of shape " + input.shape().str() +
                     " (expected target shape " + want.str() + ")");
}

// Class-index targets of an input viewed as [n, c, inner] around its class axis: per
// position (r * inner + i) its target (-1 when ignored) and the weight of that target (0
// when ignored), the class weights, and the total weight of the targets not ignored.
struct ClassTargets {
  int64_t n = 0, c = 0, inner = 1;
  int axis = 1;
  std::vector<int64_t> t;
  std::vector<double> w;
  std::vector<double> class_w;  // empty: all ones
  double total = 0;
  int64_t counted = 0;  // targets not ignored
  double eps = 0;       // label smoothing
  bool plain = true;    // no class weights, nothing ignored, no smoothing
  Reduction reduction = Reduction::mean;
  Shape bshape;  // the input's shape with the class axis 1 (the per-position gradient's)
};

std::shared_ptr<const ClassTargets> read_targets(const Var& input, const Var& target,
                                                 const Var& weight, int64_t ignore_index,
                                                 double eps, Reduction reduction, const char* op) {
  auto ct = std::make_shared<ClassTargets>();
  ct->axis = class_axis(input);
  kern::split_axis(input.shape(), ct->axis, ct->n, ct->c, ct->inner);
  ct->eps = eps;
  ct->reduction = reduction;
  ct->bshape = input.shape();
  ct->bshape[ct->axis] = 1;
  if (weight.defined()) ct->class_w = weight.value().to_vector();
  const int64_t m = target.numel();
  const int64_t* pt = target.value().data<int64_t>();
  ct->t.resize(static_cast<size_t>(m));
  ct->w.resize(static_cast<size_t>(m));
  for (int64_t p = 0; p < m; ++p) {
    const int64_t v = pt[p];
    const size_t k = static_cast<size_t>(p);
    if (v == ignore_index) {
      ct->t[k] = -1;
      ct->w[k] = 0.0;
      ct->plain = false;
      continue;
    }
    if (v < 0 || v >= ct->c)
      throw IndexError(std::string(op) + ": target " + std::to_string(v) + " at position " +
                       std::to_string(p) + " is out of range for " + std::to_string(ct->c) +
                       " classes");
    ct->t[k] = v;
    ct->w[k] = ct->class_w.empty() ? 1.0 : ct->class_w[static_cast<size_t>(v)];
    ct->total += ct->w[k];
    ++ct->counted;
  }
  if (!ct->class_w.empty() || eps != 0.0) ct->plain = false;
  return ct;
}

double class_weight(const ClassTargets& ct, int64_t c) {
  return ct.class_w.empty() ? 1.0 : ct.class_w[static_cast<size_t>(c)];
}

// l[r, i] = -((1 - eps) w_t x[r, t, i] + eps / C sum_c w_c x[r, c, i]), 0 when ignored,
// reduced: the sum, or the sum divided by the total weight for mean (NaN when it is 0).
Tensor class_loss(const Tensor& x, const ClassTargets& ct, const Shape& target_shape,
                  const char* op) {
  Tensor l = Tensor::empty(target_shape, x.dtype());
  dispatch(x.dtype(), op, [&]<class T>() {
    const T* px = x.data<T>();
    T* pl = l.data<T>();
    const T a = static_cast<T>(1.0 - ct.eps);
    const T b = static_cast<T>(ct.eps / static_cast<double>(ct.c));
    for (int64_t r = 0; r < ct.n; ++r) {
      for (int64_t i = 0; i < ct.inner; ++i) {
        const size_t p = static_cast<size_t>(r * ct.inner + i);
        const int64_t t = ct.t[p];
        if (t < 0) {
          pl[p] = T(0);
          continue;
        }
        const T* row = px + r * ct.c * ct.inner + i;
        T v = -(static_cast<T>(ct.w[p]) * row[t * ct.inner]);
        if (ct.eps != 0.0) {
          T s = 0;
          for (int64_t c = 0; c < ct.c; ++c)
            s += static_cast<T>(class_weight(ct, c)) * row[c * ct.inner];
          v = a * v - b * s;
        }
        pl[p] = v;
      }
    }
  });
  if (ct.reduction == Reduction::none) return l;
  Tensor s = kern::sum_all(l);
  if (ct.reduction == Reduction::mean) {
    const double inv = 1.0 / ct.total;
    dispatch(s.dtype(), op, [&]<class T>() { *s.data<T>() *= static_cast<T>(inv); });
  }
  return s;
}

// The loss's coefficients (negated) of x as constants of x's shape, Q[r, c, i] =
// (1 - eps) w_t [c = t] + eps / C w_c (0 when ignored), and, when `sums`, their sums over
// the classes S[r, 0, i] (the loss is -sum_c Q log p; its gradient in logits is S p - Q);
// `sign` -1 gives -Q.
Tensor class_coefficients(const ClassTargets& ct, const Shape& x_shape, Dtype dtype, bool sums,
                          double sign = 1.0) {
  Tensor out = zeros(sums ? ct.bshape : x_shape, dtype);
  dispatch(dtype, "class_coefficients", [&]<class T>() {
    T* po = out.data<T>();
    const double b = ct.eps / static_cast<double>(ct.c);
    double wsum = 0;
    for (int64_t c = 0; c < ct.c; ++c) wsum += class_weight(ct, c);
    for (int64_t r = 0; r < ct.n; ++r) {
      for (int64_t i = 0; i < ct.inner; ++i) {
        const size_t p = static_cast<size_t>(r * ct.inner + i);
        const int64_t t = ct.t[p];
        if (t < 0) continue;
        const double a = (1.0 - ct.eps) * ct.w[p];
        if (sums) {
          po[p] = static_cast<T>(sign * (a + b * wsum));
          continue;
        }
        T* row = po + r * ct.c * ct.inner + i;
        if (ct.eps != 0.0)
          for (int64_t c = 0; c < ct.c; ++c)
            row[c * ct.inner] = static_cast<T>(sign * b * class_weight(ct, c));
        row[t * ct.inner] =
            static_cast<T>(sign * (a + (ct.eps != 0.0 ? b * class_weight(ct, t) : 0.0)));
      }
    }
  });
  return out;
}

// The output gradient at each position, broadcast over the classes: dy / total weight for
// mean (whatever the total's sign, as the forward divides; 0 when every target is ignored,
// as PyTorch's), dy for sum, dy with a class axis of 1 for none.
Var class_grad(const Var& dy, const ClassTargets& ct) {
  if (ct.reduction == Reduction::none) return reshape(dy, ct.bshape.to_vector());
  if (ct.reduction == Reduction::mean) return mul_scalar(dy, ct.counted > 0 ? 1.0 / ct.total : 0.0);
  return dy;
}

// The adjoint of class_grad: per-position values [.., 1, ..] (bshape) reduced as the loss
// is (the JVP of a class loss), of the loss's shape `out`.
Var class_reduce(const Var& v, const ClassTargets& ct, const Shape& out) {
  if (ct.reduction == Reduction::none) return reshape(v, out.to_vector());
  if (ct.reduction == Reduction::mean)
    return mul_scalar(sum(v), ct.counted > 0 ? 1.0 / ct.total : 0.0);
  return sum(v);
}

// The JVP of a class loss whose gradient in x is D * class_grad(dy): the tangent weighted by
// D, summed over the classes and reduced as the loss.
Var class_loss_jvp(const JvpCtx& c, const Var& D, const ClassTargets& ct) {
  return class_reduce(sum(mul(D, c.tangent(0)), {ct.axis}, true), ct, c.output().shape());
}

// The JVP of an elementwise loss reduce(l): the tangents weighted by l's derivatives
// (`partial(c, i)`, elementwise in input i), summed and reduced as the loss.
template <class P>
Var elementwise_loss_jvp(const JvpCtx& c, Reduction r, P partial) {
  Var s;
  for (size_t i = 0; i < c.num_inputs(); ++i)
    if (c.has_tangent(i)) s = detail::add_defined(s, mul(c.tangent(i), partial(c, i)));
  return reduce_var(s, r);
}

// Cross-entropy against class probabilities, from differentiable ops (so differentiable in
// the target and the weight too), as PyTorch's.
Var soft_cross_entropy(const Var& input, const Var& target, const CrossEntropyOptions& o) {
  const int ax = class_axis(input);
  const int64_t c = input.shape()[ax];
  int64_t positions = 1;
  for (int d = 0; d < input.dim(); ++d)
    if (d != ax) positions *= input.shape()[d];
  const double eps = o.label_smoothing;
  const Var q =
      eps > 0.0 ? add_scalar(mul_scalar(target, 1.0 - eps), eps / static_cast<double>(c)) : target;
  Var prod = mul(log_softmax(input, ax), q);
  if (o.weight.defined()) {
    std::vector<int64_t> wshape(static_cast<size_t>(input.dim()), 1);
    wshape[static_cast<size_t>(ax)] = c;
    prod = mul(prod, reshape(o.weight, wshape));
  }
  if (o.reduction == Reduction::none) return neg(sum(prod, {ax}));
  const Var total = neg(sum(prod));
  if (o.reduction == Reduction::sum) return total;
  return mul_scalar(total, 1.0 / static_cast<double>(positions));
}
}  // namespace

Var mse_loss(const Var& input, const Var& target, Reduction reduction) {
  // l = (x - t)^2;  dx = 2 (x - t) dy' = -dt
  kern::check_same_shape(input.value(), target.value(), "mse_loss");
  check_reduction(reduction, "mse_loss");
  Tensor d2 = kern::zip(input.value(), target.value(), "mse_loss",
                        [](auto a, auto b) { return (a - b) * (a - b); });
  const int64_t n = input.numel();
  return record(
      "mse_loss", reduce(d2, reduction), {input, target},
      [reduction, n](const BackwardCtx& c, const Var& dy) {
        Var dx =
            mul(mul_scalar(sub(c.input(0), c.input(1)), 2.0), per_element_grad(dy, reduction, n));
        return Grads{c.needs_grad(0) ? dx : Var(), c.needs_grad(1) ? neg(dx) : Var()};
      },
      [reduction](const JvpCtx& c) {  // reduce(2 (x - t) (tx - tt))
        return elementwise_loss_jvp(c, reduction, [](const JvpCtx& k, size_t i) {
          return mul_scalar(sub(k.input(0), k.input(1)), i == 0 ? 2.0 : -2.0);
        });
      });
}

Var nll_loss(const Var& input, const Var& target, const NllLossOptions& options) {
  // l = -w_t x[n, t, ...] (0 where ignored);  dx = -w_t onehot(t) dy'  (constant in x)
  const char* op = "nll_loss";
  kern::check_floating(input.value(), op);
  check_reduction(options.reduction, op);
  check_class_input(input, op);
  check_index_target(input, target, op, "an i64 tensor of class indices");
  check_class_weight(input, options.weight, op);
  check_weight_constant(options.weight, op);
  auto ct =
      read_targets(input, target, options.weight, options.ignore_index, 0.0, options.reduction, op);
  // -Q written directly: its zeros stay +0, as the old one-hot's (bit-equal gradients).
  const Tensor neg_q = class_coefficients(*ct, input.shape(), input.dtype(), false, -1.0);
  return record(
      "nll_loss", class_loss(input.value(), *ct, target.shape(), op), {input},
      [ct, neg_q](const BackwardCtx&, const Var& dy) {
        return Grads{mul(constant(neg_q), class_grad(dy, *ct))};
      },
      [ct, neg_q](const JvpCtx& c) { return class_loss_jvp(c, constant(neg_q), *ct); });
}

namespace {
// cross_entropy's gradient in x per unit of dy': softmax(x) sum_c Q - Q.
Var cross_entropy_coefficients(const Var& x, const ClassTargets& ct) {
  const Var p = softmax(x, ct.axis);
  const Var q = constant(class_coefficients(ct, x.shape(), x.dtype(), false));
  return ct.plain ? sub(p, q)
                  : sub(mul(p, constant(class_coefficients(ct, x.shape(), x.dtype(), true))), q);
}
}  // namespace

Var cross_entropy(const Var& input, const Var& target, const CrossEntropyOptions& options) {
  // Class indices: l = -sum_c Q log_softmax(x) with Q = (1 - e) w_t onehot(t) + e/C w (0
  // where ignored);  dx = (softmax(x) sum_c Q - Q) dy'.
  // Probabilities: l = -sum_c w_c ((1 - e) y + e/C) log_softmax(x), from differentiable ops.
  // NOTE: computed from log_softmax, which subtracts the max: finite for logits of 1e4.
  const char* op = "cross_entropy";
  kern::check_floating(input.value(), op);
  check_reduction(options.reduction, op);
  const double eps = options.label_smoothing;
  if (!(eps >= 0.0 && eps <= 1.0))
    throw Error("cross_entropy: label_smoothing must be in [0, 1], got " + std::to_string(eps));
  check_class_input(input, op);
  check_class_weight(input, options.weight, op);
  if (input.shape() == target.shape()) {  // class probabilities, as PyTorch decides
    if (!is_floating(target.dtype()))
      throw DtypeError("cross_entropy: a target of the input's shape " + input.shape().str() +
                       " holds class probabilities and must be floating, got " + dname(target));
    kern::check_same_dtype(input.value(), target.value(), op);
    if (options.ignore_index >= 0)
      throw Error("cross_entropy: ignore_index (" + std::to_string(options.ignore_index) +
                  ") is not supported for class-probability targets");
    return soft_cross_entropy(input, target, options);
  }
  Shape index_shape = input.shape();
  index_shape.erase(class_axis(input));
  if (is_floating(target.dtype()) && target.shape() != index_shape)  // probabilities, misshapen
    throw ShapeError("cross_entropy: target of class probabilities of shape " +
                     target.shape().str() + " differs from the input's shape " +
                     input.shape().str() + " (class indices: i64 of shape " + index_shape.str() +
                     ")");
  check_index_target(input, target, op,
                     "an i64 tensor of class indices, or class probabilities of the input's "
                     "shape");
  check_weight_constant(options.weight, op);
  auto ct =
      read_targets(input, target, options.weight, options.ignore_index, eps, options.reduction, op);
  Tensor logp = kern::softmax(input.value(), ct->axis, true);
  return record(
      "cross_entropy", class_loss(logp, *ct, target.shape(), op), {input},
      [ct](const BackwardCtx& c, const Var& dy) {
        return Grads{mul(cross_entropy_coefficients(c.input(0), *ct), class_grad(dy, *ct))};
      },
      [ct](const JvpCtx& c) {
        return class_loss_jvp(c, cross_entropy_coefficients(c.input(0), *ct), *ct);
      });
}

Var cross_entropy(const Var& logits, const std::vector<int64_t>& targets, Reduction reduction) {
  CrossEntropyOptions o;
  o.reduction = reduction;
  return cross_entropy(logits,
                       constant(Tensor(targets, Shape{static_cast<int64_t>(targets.size())})), o);
}

Var nll_loss(const Var& log_probs, const std::vector<int64_t>& targets, Reduction reduction) {
  NllLossOptions o;
  o.reduction = reduction;
  return nll_loss(log_probs, constant(Tensor(targets, Shape{static_cast<int64_t>(targets.size())})),
                  o);
}

Var cross_entropy(const Var& logits, std::initializer_list<int64_t> targets, Reduction reduction) {
  return cross_entropy(logits, std::vector<int64_t>(targets), reduction);
}

Var nll_loss(const Var& log_probs, std::initializer_list<int64_t> targets, Reduction reduction) {
  return nll_loss(log_probs, std::vector<int64_t>(targets), reduction);
}

Var binary_cross_entropy(const Var& input, const Var& target, const Var& weight,
                         Reduction reduction) {
  // l = w ((y - 1) max(log(1 - x), -100) - y max(log x, -100))
  // dx = w (x - y) / max(x (1 - x), 1e-12f) dy',  dy_t = w (log(1 - x) - log x) dy'
  const char* op = "binary_cross_entropy";
  check_pair(input, target, op);
  check_reduction(reduction, op);
  Tensor w;
  if (weight.defined()) {
    kern::check_floating(weight.value(), op);
    kern::check_same_dtype(input.value(), weight.value(), op);
    if (broadcast_shapes(weight.shape(), input.shape(), op) != input.shape())
      throw ShapeError("binary_cross_entropy: weight of shape " + weight.shape().str() +
                       " does not broadcast to the input's shape " + input.shape().str());
    check_weight_constant(weight, op);
    w = weight.shape() == input.shape() ? weight.value().clone()
                                        : kern::expand(weight.value(), input.shape(), op);
  }
  dispatch(input.dtype(), op, [&]<class T>() {
    const T* p = input.value().data<T>();
    for (int64_t i = 0; i < input.numel(); ++i)
      if (p[i] < T(0) || p[i] > T(1))
        throw IndexError("binary_cross_entropy: input " + std::to_string(p[i]) + " at position " +
                         std::to_string(i) + " is outside [0, 1] (the input holds probabilities)");
  });
  Tensor l = kern::zip(input.value(), target.value(), op, [](auto x, auto y) {
    using T = decltype(x);
    const T lx = std::log(x), l1x = std::log1p(-x);
    // NaN stays NaN: only a value below -100 is raised to it.
    return (y - T(1)) * (l1x < T(-100) ? T(-100) : l1x) - y * (lx < T(-100) ? T(-100) : lx);
  });
  if (weight.defined()) l = kern::zip(l, w, op, [](auto a, auto b) { return a * b; });
  const int64_t n = input.numel();
  return record(
      "binary_cross_entropy", reduce(l, reduction), {input, target},
      [reduction, n, w](const BackwardCtx& c, const Var& dy) {
        Var g = per_element_grad(dy, reduction, n);
        if (w.defined()) g = mul(g, constant(w));
        const Var& x = c.input(0);
        Var dx, dt;
        if (c.needs_grad(0)) {
          // (PyTorch's 1e-12 floor is a float constant: 9.99999996e-13 in f64 too)
          const Var den = clamp(mul(x, 1.0 - x), static_cast<double>(1e-12f),
                                std::numeric_limits<double>::infinity());
          dx = mul(div(sub(x, c.input(1)), den), g);
        }
        if (c.needs_grad(1)) dt = mul(sub(log(1.0 - x), log(x)), g);
        return Grads{dx, dt};
      },
      [reduction, w](const JvpCtx& c) {
        const Var l = elementwise_loss_jvp(c, Reduction::none, [](const JvpCtx& k, size_t i) {
          const Var& x = k.input(0);
          if (i == 1) return sub(log(1.0 - x), log(x));
          const Var den = clamp(mul(x, 1.0 - x), static_cast<double>(1e-12f),
                                std::numeric_limits<double>::infinity());
          return div(sub(x, k.input(1)), den);
        });
        return reduce_var(w.defined() ? mul(l, constant(w)) : l, reduction);
      });
}

Var l1_loss(const Var& input, const Var& target, Reduction reduction) {
  // l = |x - y|;  dx = sign(x - y) dy' = -dy  (0 where x = y)
  check_pair(input, target, "l1_loss");
  check_reduction(reduction, "l1_loss");
  return reduce_var(abs(sub(input, target)), reduction);
}

Var smooth_l1_loss(const Var& input, const Var& target, Reduction reduction, double beta) {
  // l = 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta;  dx = d / beta or sign(d)
  check_pair(input, target, "smooth_l1_loss");
  check_reduction(reduction, "smooth_l1_loss");
  if (!(beta >= 0.0)) throw Error("smooth_l1_loss: beta must be >= 0, got " + std::to_string(beta));
  const Var d = sub(input, target);
  const Var ad = abs(d);
  if (beta == 0.0) return reduce_var(ad, reduction);
  return reduce_var(
      where(lt(ad, beta), mul_scalar(mul(d, d), 0.5 / beta), add_scalar(ad, -0.5 * beta)),
      reduction);
}

Var huber_loss(const Var& input, const Var& target, Reduction reduction, double delta) {
  // l = 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta);  dx = d or delta sign(d)
  check_pair(input, target, "huber_loss");
  check_reduction(reduction, "huber_loss");
  if (!(delta > 0.0)) throw Error("huber_loss: delta must be > 0, got " + std::to_string(delta));
  const Var d = sub(input, target);
  const Var ad = abs(d);
  return reduce_var(where(lt(ad, delta), mul_scalar(mul(d, d), 0.5),
                          mul_scalar(add_scalar(ad, -0.5 * delta), delta)),
                    reduction);
}

Var kl_div(const Var& input, const Var& target, Reduction reduction, bool log_target) {
  // l = y log y - y x (0 log 0 = 0);  dx = -y dy',  dy_t = (log y + 1 - x) dy'
  // log_target: l = exp(y) (y - x);  dx = -exp(y) dy',  dy_t = exp(y) (y - x + 1) dy'
  check_pair(input, target, "kl_div");
  Var l;
  if (log_target) {
    l = mul(exp(target), sub(target, input));
  } else {
    // y log y through log(y or 1 where y = 0): 0 there, with a gradient of 0 (not 0 / 0).
    const Tensor keep = kern::map(target.value(), "kl_div",
                                  [](auto v) { return static_cast<decltype(v)>(v != 0); });
    l = sub(mul(target, log(detail::keep_where(target, keep, 1.0))), mul(target, input));
  }
  if (reduction != Reduction::batchmean) return reduce_var(l, reduction);
  // PyTorch's batchmean: the sum divided by input.size(0) (a rank-0 input: the sum).
  if (input.dim() == 0) return sum(l);
  return mul_scalar(sum(l), 1.0 / static_cast<double>(input.shape()[0]));
}

Var binary_cross_entropy_with_logits(const Var& logits, const Var& target, Reduction reduction) {
  // l = max(x, 0) - x y + log(1 + exp(-|x|));  dx = (sigmoid(x) - y) dy',  dy_t = -x dy'
  kern::check_same_shape(logits.value(), target.value(), "binary_cross_entropy_with_logits");
  check_reduction(reduction, "binary_cross_entropy_with_logits");
  Tensor l = kern::zip(logits.value(), target.value(), "binary_cross_entropy_with_logits",
                       [](auto x, auto y) {
                         using T = decltype(x);
                         return std::max(x, T(0)) - x * y + std::log1p(std::exp(-std::abs(x)));
                       });
  const int64_t n = logits.numel();
  return record(
      "binary_cross_entropy_with_logits", reduce(l, reduction), {logits, target},
      [reduction, n](const BackwardCtx& c, const Var& dy) {
        Var g = per_element_grad(dy, reduction, n);
        return Grads{c.needs_grad(0) ? mul(sub(sigmoid(c.input(0)), c.input(1)), g) : Var(),
                     c.needs_grad(1) ? mul(neg(c.input(0)), g) : Var()};
      },
      [reduction](const JvpCtx& c) {
        return elementwise_loss_jvp(c, reduction, [](const JvpCtx& k, size_t i) {
          return i == 0 ? sub(sigmoid(k.input(0)), k.input(1)) : neg(k.input(0));
        });
      });
}

}  // namespace tg
