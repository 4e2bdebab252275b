#include "optim/clip.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tg {

namespace detail {

GradNorm::GradNorm(double p, std::string who) : norm_type(p), op(std::move(who)) {
  // NOTE: torch's norm_type 0 counts the parameters with a nonzero gradient (the 0-"norm"
  // of the per-parameter counts), not a norm; it is refused here.
  if (norm_type == 0.0 || std::isnan(norm_type))
    throw Error(op + ": norm_type " + std::to_string(norm_type) +
                " is not supported (a nonzero p, inf or -inf)");
}

// -inf: the smallest magnitude (torch.norm's p = -inf).
double GradNorm::none() const {
  return norm_type == -std::numeric_limits<double>::infinity()
             ? std::numeric_limits<double>::infinity()
             : 0.0;
}

double GradNorm::combine(double a, double b) const {
  if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<double>::quiet_NaN();
  if (!std::isinf(norm_type)) return a + b;
  return norm_type > 0 ? std::max(a, b) : std::min(a, b);
}

double GradNorm::partial(const std::vector<Tensor>& grads) const {
  const bool inf = std::isinf(norm_type);
  double acc = none();
  for (const Tensor& g : grads)
    dispatch(g.dtype(), [&]<class T>() {
      const T* d = g.data<T>();
      for (int64_t k = 0; k < g.numel(); ++k) {
        const double a = std::abs(static_cast<double>(d[k]));
        if (inf)
          acc = combine(acc, a);
        else if (norm_type == 2.0)
          acc += a * a;
        else
          acc += std::pow(a, norm_type);
      }
    });
  return acc;
}

double GradNorm::total(double partial) const {
  if (std::isinf(norm_type)) return partial;
  return norm_type == 2.0 ? std::sqrt(partial) : std::pow(partial, 1.0 / norm_type);
}

double GradNorm::coefficient(double total, double max_norm, bool error_if_nonfinite) const {
  if (!std::isfinite(total) && error_if_nonfinite)
    throw Error(op + ": the total gradient norm is " + std::to_string(total));
  // A NaN total scales every gradient by NaN, as torch's clamp(coef, max=1) does.
  const double coef = max_norm / (total + 1e-6);
  return coef >= 1.0 ? 1.0 : coef;
}

void scale_in_place(Tensor& t, double coef) {
  dispatch(t.dtype(), [&]<class T>() {
    T* d = t.data<T>();
    const T f = static_cast<T>(coef);
    for (int64_t k = 0; k < t.numel(); ++k) d[k] = d[k] * f;
  });
}

}  // namespace detail

namespace {
/// A fresh copy of a gradient, so that an update never writes into a buffer another
/// gradient may share (the engine can hand one tensor to several inputs).
Tensor owned_copy(const Var& g) { return g.value().clone(); }
}  // namespace

double clip_grad_norm(const std::vector<Var>& params, double max_norm, double norm_type,
                      bool error_if_nonfinite) {
  const detail::GradNorm norm(norm_type, "clip_grad_norm");
  std::vector<Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad().value());
  if (grads.empty()) return 0.0;
  const double total = norm.total(norm.partial(grads));
  const double coef = norm.coefficient(total, max_norm, error_if_nonfinite);
  if (coef != 1.0)
    for (const auto& p : params) {
      Var g = p.grad();
      if (!g.defined()) continue;
      Tensor c = owned_copy(g);
      detail::scale_in_place(c, coef);
      Var(p).set_grad(Var(c));
    }
  return total;
}

void clip_grad_value(const std::vector<Var>& params, double clip_value) {
  if (!(clip_value >= 0.0)) throw Error("clip_grad_value: clip_value must be >= 0");
  for (const auto& p : params) {
    Var g = p.grad();
    if (!g.defined()) continue;
    Tensor c = owned_copy(g);
    dispatch(c.dtype(), [&]<class T>() {
      T* d = c.data<T>();
      const T hi = static_cast<T>(clip_value);
      for (int64_t k = 0; k < c.numel(); ++k) d[k] = std::clamp(d[k], -hi, hi);
    });
    Var(p).set_grad(Var(c));
  }
}

}  // namespace tg
