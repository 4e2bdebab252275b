#include "ops/loss.hpp"

#include <cmath>

#include "ops/activation.hpp"
#include "ops/arith.hpp"
#include "ops/kernels.hpp"
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

void check_targets(const char* op, const Var& x, const std::vector<int64_t>& targets) {
  if (x.dim() != 2)
    throw ShapeError(std::string(op) + ": expected [N, C] scores, got " + x.shape().str());
  const int64_t n = x.shape()[0], c = x.shape()[1];
  if (static_cast<int64_t>(targets.size()) != n)
    throw ShapeError(std::string(op) + ": " + std::to_string(targets.size()) +
                     " targets for input " + x.shape().str() + " (" + std::to_string(n) + " rows)");
  for (size_t i = 0; i < targets.size(); ++i)
    if (targets[i] < 0 || targets[i] >= c)
      throw IndexError(std::string(op) + ": target " + std::to_string(targets[i]) + " at row " +
                       std::to_string(i) + " is out of range for " + std::to_string(c) +
                       " classes");
}

Tensor one_hot(const Shape& shape, Dtype dtype, const std::vector<int64_t>& targets, double v) {
  Tensor t = zeros(shape, dtype);
  const int64_t c = shape[1];
  dispatch(dtype, "one_hot", [&]<class T>() {
    T* p = t.data<T>();
    for (size_t i = 0; i < targets.size(); ++i)
      p[static_cast<int64_t>(i) * c + targets[i]] = static_cast<T>(v);
  });
  return t;
}

// Per-row -x[i, t_i] of [N, C] scores.
Tensor pick_neg(const Tensor& x, const std::vector<int64_t>& targets) {
  const int64_t n = x.shape()[0], c = x.shape()[1];
  Tensor out = Tensor::empty(Shape{n}, x.dtype());
  dispatch(x.dtype(), "pick_neg", [&]<class T>() {
    const T* p = x.data<T>();
    T* o = out.data<T>();
    for (int64_t i = 0; i < n; ++i) o[i] = -p[i * c + targets[static_cast<size_t>(i)]];
  });
  return out;
}

// For reduction none the gradient is per row: [N] -> [N, 1] to broadcast over classes.
Var row_grad(const Var& dy, Reduction r, int64_t n) {
  Var g = per_element_grad(dy, r, n);
  return r == Reduction::none ? reshape(g, {n, 1}) : g;
}

}  // namespace

Var mse_loss(const Var& input, const Var& target, Reduction reduction) {
  // l = (x - t)^2;  dx = 2 (x - t) dy' = -dt
  kern::check_same_shape(input.value(), target.value(), "mse_loss");
  Tensor d2 = kern::zip(input.value(), target.value(), "mse_loss",
                        [](auto a, auto b) { return (a - b) * (a - b); });
  const int64_t n = input.numel();
  return record("mse_loss", reduce(d2, reduction), {input, target},
                [reduction, n](const BackwardCtx& c, const Var& dy) {
                  Var dx = mul(mul_scalar(sub(c.input(0), c.input(1)), 2.0),
                               per_element_grad(dy, reduction, n));
                  return Grads{c.needs_grad(0) ? dx : Var(), c.needs_grad(1) ? neg(dx) : Var()};
                });
}

Var nll_loss(const Var& log_probs, const std::vector<int64_t>& targets, Reduction reduction) {
  kern::check_floating(log_probs.value(), "nll_loss");
  // l_i = -logp[i, t_i];  dlogp = -onehot * dy'
  check_targets("nll_loss", log_probs, targets);
  const int64_t n = log_probs.shape()[0];
  Tensor neg_onehot = one_hot(log_probs.shape(), log_probs.dtype(), targets, -1.0);
  return record("nll_loss", reduce(pick_neg(log_probs.value(), targets), reduction), {log_probs},
                [reduction, n, neg_onehot](const BackwardCtx&, const Var& dy) {
                  return Grads{mul(constant(neg_onehot), row_grad(dy, reduction, n))};
                });
}

Var cross_entropy(const Var& logits, const std::vector<int64_t>& targets, Reduction reduction) {
  kern::check_floating(logits.value(), "cross_entropy");
  // l_i = -log_softmax(x)[i, t_i];  dx = (softmax(x) - onehot) * dy'
  // NOTE: computed from log_softmax, which subtracts the row max: finite for logits of 1e4.
  check_targets("cross_entropy", logits, targets);
  const int64_t n = logits.shape()[0];
  Tensor logp = kern::softmax(logits.value(), 1, true);
  return record("cross_entropy", reduce(pick_neg(logp, targets), reduction), {logits},
                [reduction, n, targets](const BackwardCtx& c, const Var& dy) {
                  const Var& x = c.input(0);
                  Var p_minus_y =
                      sub(softmax(x, 1), constant(one_hot(x.shape(), x.dtype(), targets, 1.0)));
                  return Grads{mul(p_minus_y, row_grad(dy, reduction, n))};
                });
}

Var binary_cross_entropy_with_logits(const Var& logits, const Var& target, Reduction reduction) {
  // l = max(x, 0) - x y + log(1 + exp(-|x|));  dx = (sigmoid(x) - y) dy',  dy_t = -x dy'
  kern::check_same_shape(logits.value(), target.value(), "binary_cross_entropy_with_logits");
  Tensor l = kern::zip(logits.value(), target.value(), "binary_cross_entropy_with_logits",
                       [](auto x, auto y) {
                         using T = decltype(x);
                         return std::max(x, T(0)) - x * y + std::log1p(std::exp(-std::abs(x)));
                       });
  const int64_t n = logits.numel();
  return record("binary_cross_entropy_with_logits", reduce(l, reduction), {logits, target},
                [reduction, n](const BackwardCtx& c, const Var& dy) {
                  Var g = per_element_grad(dy, reduction, n);
                  return Grads{
                      c.needs_grad(0) ? mul(sub(sigmoid(c.input(0)), c.input(1)), g) : Var(),
                      c.needs_grad(1) ? mul(neg(c.input(0)), g) : Var()};
                });
}

}  // namespace tg
