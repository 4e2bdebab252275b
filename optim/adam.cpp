#include "optim/adam.hpp"

#include <algorithm>
#include <cmath>

#include "parallel/parallel.hpp"

namespace tg {

namespace detail {

void check_adam_options(const char* who, const AdamOptions& o) {
  auto bad = [&](const char* what, double v) {
    throw Error(std::string(who) + ": invalid " + what + " " + std::to_string(v));
  };
  if (!(o.eps >= 0.0)) bad("eps", o.eps);
  if (!(o.beta1 >= 0.0 && o.beta1 < 1.0)) bad("beta1", o.beta1);
  if (!(o.beta2 >= 0.0 && o.beta2 < 1.0)) bad("beta2", o.beta2);
  if (!(o.weight_decay >= 0.0)) bad("weight_decay", o.weight_decay);
}

void adam_update(Tensor& param, const Tensor& grad, Tensor& m_t, Tensor& v_t, Tensor* vmax_t,
                 const AdamOptions& o, double lr, double l2, int64_t step) {
  // NOTE: the scalar factors are computed in double and applied in the parameter's dtype,
  // in PyTorch's order, so f32 runs follow torch.optim.Adam to rounding.
  const double bias_correction1 = 1.0 - std::pow(o.beta1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(o.beta2, static_cast<double>(step));
  const double step_size = lr / bias_correction1;
  const double bc2_sqrt = std::sqrt(bias_correction2);
  with_flags(
      [&]<bool kL2, bool kAmsgrad>() {
        detail::parallel_for(param.numel(), kUpdateGrain, [&](int64_t lo, int64_t hi) {
          dispatch(param.dtype(), [&]<class T>() {
            T* p = param.data<T>();
            const T* g = grad.data<T>();
            T* m = m_t.data<T>();
            T* v = v_t.data<T>();
            T* vmax = kAmsgrad ? vmax_t->data<T>() : nullptr;
            const T b1 = static_cast<T>(o.beta1), b2 = static_cast<T>(o.beta2);
            const T c1 = static_cast<T>(1.0 - o.beta1), c2 = static_cast<T>(1.0 - o.beta2);
            const T wd = static_cast<T>(l2), eps = static_cast<T>(o.eps);
            const T ss = static_cast<T>(step_size), bc2 = static_cast<T>(bc2_sqrt);
            for (int64_t k = lo; k < hi; ++k) {
              T d = g[k];
              if constexpr (kL2) d = d + wd * p[k];
              m[k] = m[k] * b1 + c1 * d;
              v[k] = v[k] * b2 + c2 * d * d;
              T s = v[k];
              if constexpr (kAmsgrad) s = vmax[k] = std::max(vmax[k], v[k]);
              const T denom = std::sqrt(s) / bc2 + eps;
              p[k] = p[k] - ss * m[k] / denom;  // addcdiv: (value * m) / denom
            }
          });
        });
      },
      l2 != 0.0, vmax_t != nullptr);
}

}  // namespace detail

Adam::Adam(std::vector<Var> params, AdamOptions o)
    : Adam(std::vector<ParamGroup>{{std::move(params), {}}}, o) {}

Adam::Adam(std::vector<ParamGroup> groups, AdamOptions defaults)
    : Optimizer(std::move(groups), defaults.lr), options_(defaults) {
  set_maximize(defaults.maximize);
  groups_ = detail::group_options("Adam", defaults, group_overrides(),
                                  detail::set_adam_option<AdamOptions>);
  for (const AdamOptions& o : groups_) {
    detail::check_adam_options("Adam", o);
  }
  register_state("exp_avg", exp_avg_);
  register_state("exp_avg_sq", exp_avg_sq_);
  if (defaults.amsgrad) register_state("max_exp_avg_sq", max_exp_avg_sq_);
}

void Adam::update(size_t i, Tensor& param, const Tensor& grad) {
  const AdamOptions& o = groups_[group_of(i)];
  Tensor* vmax = o.amsgrad ? &state(max_exp_avg_sq_, i) : nullptr;
  detail::adam_update(param, grad, state(exp_avg_, i), state(exp_avg_sq_, i), vmax, o, param_lr(i),
                      o.weight_decay, param_steps(i));
}

}  // namespace tg
