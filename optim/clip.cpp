#include "optim/clip.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tg {

namespace {
/// A fresh copy of a gradient, so that an update never writes into a buffer another
/// gradient may share (the engine can hand one tensor to several inputs).
Tensor owned_copy(const Var& g) { return g.value().clone(); }
}  // namespace

double clip_grad_norm(const std::vector<Var>& params, double max_norm, double norm_type,
                      bool error_if_nonfinite) {
  const bool inf = std::isinf(norm_type);
  // NOTE: torch's norm_type 0 counts the parameters with a nonzero gradient (the 0-"norm"
  // of the per-parameter counts), not a norm; it is refused here.
  if (norm_type == 0.0 || std::isnan(norm_type))
    throw Error("clip_grad_norm: norm_type " + std::to_string(norm_type) +
                " is not supported (a nonzero p, inf or -inf)");
  // -inf: the smallest magnitude (torch.norm's p = -inf).
  const bool smallest = inf && norm_type < 0.0;
  double total = smallest ? std::numeric_limits<double>::infinity() : 0.0;
  bool any = false;
  for (const auto& p : params) {
    const Var g = p.grad();
    if (!g.defined()) continue;
    any = true;
    dispatch(g.dtype(), [&]<class T>() {
      const T* d = g.value().data<T>();
      for (int64_t k = 0; k < g.numel(); ++k) {
        const double a = std::abs(static_cast<double>(d[k]));
        if (inf)
          total = std::isnan(a) || std::isnan(total) ? std::numeric_limits<double>::quiet_NaN()
                  : smallest                         ? std::min(total, a)
                                                     : std::max(total, a);
        else if (norm_type == 2.0)
          total += a * a;
        else
          total += std::pow(a, norm_type);
      }
    });
  }
  if (!any) return 0.0;
  if (!inf) total = norm_type == 2.0 ? std::sqrt(total) : std::pow(total, 1.0 / norm_type);
  if (!std::isfinite(total) && error_if_nonfinite)
    throw Error("clip_grad_norm: the total gradient norm is " + std::to_string(total));
  // A NaN total scales every gradient by NaN, as torch's clamp(coef, max=1) does.
  const double coef = max_norm / (total + 1e-6);
  if (!(coef >= 1.0)) {
    for (const auto& p : params) {
      Var g = p.grad();
      if (!g.defined()) continue;
      Tensor c = owned_copy(g);
      dispatch(c.dtype(), [&]<class T>() {
        T* d = c.data<T>();
        const T f = static_cast<T>(coef);
        for (int64_t k = 0; k < c.numel(); ++k) d[k] = d[k] * f;
      });
      Var(p).set_grad(Var(c));
    }
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
