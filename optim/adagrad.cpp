#include "optim/adagrad.hpp"

#include <cmath>

#include "parallel/parallel.hpp"

namespace tg {

Adagrad::Adagrad(std::vector<Var> params, AdagradOptions o)
    : Adagrad(std::vector<ParamGroup>{{std::move(params), {}}}, o) {}

Adagrad::Adagrad(std::vector<ParamGroup> groups, AdagradOptions defaults)
    : Optimizer(std::move(groups), defaults.lr), options_(defaults) {
  set_maximize(defaults.maximize);
  groups_ = detail::group_options("Adagrad", defaults, group_overrides(),
                                  [](AdagradOptions& o, const std::string& name, double v) {
                                    if (name == "lr_decay")
                                      o.lr_decay = v;
                                    else if (name == "weight_decay")
                                      o.weight_decay = v;
                                    else if (name == "eps")
                                      o.eps = v;
                                    else
                                      return false;
                                    return true;
                                  });
  for (const AdagradOptions& o : groups_) {
    auto bad = [](const char* what, double v) {
      throw Error(std::string("Adagrad: invalid ") + what + " " + std::to_string(v));
    };
    if (!(o.lr_decay >= 0.0)) bad("lr_decay", o.lr_decay);
    if (!(o.weight_decay >= 0.0)) bad("weight_decay", o.weight_decay);
    if (!(o.initial_accumulator_value >= 0.0))
      bad("initial_accumulator_value", o.initial_accumulator_value);
    if (!(o.eps >= 0.0)) bad("eps", o.eps);
  }
  register_state("sum", sum_);
}

void Adagrad::update(size_t i, Tensor& param, const Tensor& grad) {
  const AdagradOptions& o = groups_[group_of(i)];
  Tensor& sum_t = state(sum_, i, o.initial_accumulator_value);
  const double clr = param_lr(i) / (1.0 + static_cast<double>(param_steps(i) - 1) * o.lr_decay);
  with_flags(
      [&]<bool kDecay>() {
        detail::parallel_for(param.numel(), kUpdateGrain, [&](int64_t lo, int64_t hi) {
          dispatch(param.dtype(), [&]<class T>() {
            T* p = param.data<T>();
            const T* g = grad.data<T>();
            T* s = sum_t.data<T>();
            const T wd = static_cast<T>(o.weight_decay), eps = static_cast<T>(o.eps);
            const T rate = static_cast<T>(clr);
            for (int64_t k = lo; k < hi; ++k) {
              T d = g[k];
              if constexpr (kDecay) d = d + wd * p[k];
              s[k] = s[k] + d * d;
              p[k] = p[k] - rate * d / (std::sqrt(s[k]) + eps);
            }
          });
        });
      },
      o.weight_decay != 0.0);
}

}  // namespace tg
