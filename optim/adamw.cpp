#include "optim/adamw.hpp"

#include "parallel/parallel.hpp"

namespace tg {

namespace {
AdamOptions as_adam(const AdamWOptions& o) {
  return {.lr = o.lr,
          .beta1 = o.beta1,
          .beta2 = o.beta2,
          .eps = o.eps,
          .weight_decay = o.weight_decay,
          .amsgrad = o.amsgrad};
}
}  // namespace

AdamW::AdamW(std::vector<Var> params, AdamWOptions o)
    : AdamW(std::vector<ParamGroup>{{std::move(params), {}}}, o) {}

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions defaults)
    : Optimizer(std::move(groups), defaults.lr), options_(defaults) {
  set_maximize(defaults.maximize);
  groups_ = detail::group_options("AdamW", defaults, group_overrides(),
                                  detail::set_adam_option<AdamWOptions>);
  for (const AdamWOptions& o : groups_) {
    detail::check_adam_options("AdamW", as_adam(o));
  }
  register_state("exp_avg", exp_avg_);
  register_state("exp_avg_sq", exp_avg_sq_);
  if (defaults.amsgrad) register_state("max_exp_avg_sq", max_exp_avg_sq_);
}

void AdamW::update(size_t i, Tensor& param, const Tensor& grad) {
  const AdamWOptions& o = groups_[group_of(i)];
  const double decay = 1.0 - param_lr(i) * o.weight_decay;
  detail::parallel_for(param.numel(), kUpdateGrain, [&](int64_t lo, int64_t hi) {
    dispatch(param.dtype(), [&]<class T>() {
      T* p = param.data<T>();
      const T f = static_cast<T>(decay);
      for (int64_t k = lo; k < hi; ++k) p[k] = p[k] * f;
    });
  });
  Tensor* vmax = o.amsgrad ? &state(max_exp_avg_sq_, i) : nullptr;
  detail::adam_update(param, grad, state(exp_avg_, i), state(exp_avg_sq_, i), vmax, as_adam(o),
                      param_lr(i), 0.0, param_steps(i));
}

}  // namespace tg
