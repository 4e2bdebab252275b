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
    : Optimizer(std::move(params), o.lr), options_(o) {
  detail::check_adam_options("AdamW", as_adam(o));
  register_state("exp_avg", exp_avg_);
  register_state("exp_avg_sq", exp_avg_sq_);
  if (o.amsgrad) register_state("max_exp_avg_sq", max_exp_avg_sq_);
}

void AdamW::update(size_t i, Tensor& param, const Tensor& grad) {
  const double decay = 1.0 - lr() * options_.weight_decay;
  detail::parallel_for(param.numel(), kUpdateGrain, [&](int64_t lo, int64_t hi) {
    dispatch(param.dtype(), [&]<class T>() {
      T* p = param.data<T>();
      const T f = static_cast<T>(decay);
      for (int64_t k = lo; k < hi; ++k) p[k] = p[k] * f;
    });
  });
  Tensor* vmax = options_.amsgrad ? &state(max_exp_avg_sq_, i) : nullptr;
  detail::adam_update(param, grad, state(exp_avg_, i), state(exp_avg_sq_, i), vmax,
                      as_adam(options_), lr(), 0.0, param_steps(i));
}

}  // namespace tg
