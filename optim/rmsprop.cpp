#include "optim/rmsprop.hpp"

#include <cmath>

#include "parallel/parallel.hpp"

namespace tg {

RMSprop::RMSprop(std::vector<Var> params, RMSpropOptions o)
    : RMSprop(std::vector<ParamGroup>{{std::move(params), {}}}, o) {}

RMSprop::RMSprop(std::vector<ParamGroup> groups, RMSpropOptions defaults)
    : Optimizer(std::move(groups), defaults.lr), options_(defaults) {
  set_maximize(defaults.maximize);
  groups_ = detail::group_options("RMSprop", defaults, group_overrides(),
                                  [](RMSpropOptions& o, const std::string& name, double v) {
                                    if (name == "alpha")
                                      o.alpha = v;
                                    else if (name == "eps")
                                      o.eps = v;
                                    else if (name == "weight_decay")
                                      o.weight_decay = v;
                                    else if (name == "momentum")
                                      o.momentum = v;
                                    else
                                      return false;
                                    return true;
                                  });
  for (const RMSpropOptions& o : groups_) {
    auto bad = [](const char* what, double v) {
      throw Error(std::string("RMSprop: invalid ") + what + " " + std::to_string(v));
    };
    if (!(o.eps >= 0.0)) bad("eps", o.eps);
    if (!(o.alpha >= 0.0)) bad("alpha", o.alpha);
    if (!(o.momentum >= 0.0)) bad("momentum", o.momentum);
    if (!(o.weight_decay >= 0.0)) bad("weight_decay", o.weight_decay);
  }
  register_state("square_avg", square_avg_);
  if (defaults.centered) register_state("grad_avg", grad_avg_);
  bool momentum = false;
  for (const RMSpropOptions& o : groups_) momentum = momentum || o.momentum > 0.0;
  if (momentum) register_state("momentum_buffer", momentum_buffer_);
}

void RMSprop::update(size_t i, Tensor& param, const Tensor& grad) {
  const RMSpropOptions& o = groups_[group_of(i)];
  Tensor& sq_t = state(square_avg_, i);
  Tensor* ga_t = o.centered ? &state(grad_avg_, i) : nullptr;
  Tensor* buf_t = o.momentum > 0.0 ? &state(momentum_buffer_, i) : nullptr;
  with_flags(
      [&]<bool kDecay, bool kCentered, bool kMomentum>() {
        detail::parallel_for(param.numel(), kUpdateGrain, [&](int64_t lo, int64_t hi) {
          dispatch(param.dtype(), [&]<class T>() {
            T* p = param.data<T>();
            const T* g = grad.data<T>();
            T* sq = sq_t.data<T>();
            T* ga = kCentered ? ga_t->data<T>() : nullptr;
            T* buf = kMomentum ? buf_t->data<T>() : nullptr;
            const T a = static_cast<T>(o.alpha), c = static_cast<T>(1.0 - o.alpha);
            const T wd = static_cast<T>(o.weight_decay), eps = static_cast<T>(o.eps);
            const T mom = static_cast<T>(o.momentum), rate = static_cast<T>(param_lr(i));
            for (int64_t k = lo; k < hi; ++k) {
              T d = g[k];
              if constexpr (kDecay) d = d + wd * p[k];
              sq[k] = sq[k] * a + c * d * d;
              T avg;
              if constexpr (kCentered) {
                ga[k] = ga[k] * a + c * d;
                avg = std::sqrt(sq[k] + T(-1) * ga[k] * ga[k]);
              } else {
                avg = std::sqrt(sq[k]);
              }
              avg = avg + eps;
              if constexpr (kMomentum) {
                buf[k] = buf[k] * mom + d / avg;
                p[k] = p[k] - rate * buf[k];
              } else {
                p[k] = p[k] - rate * d / avg;
              }
            }
          });
        });
      },
      o.weight_decay != 0.0, ga_t != nullptr, buf_t != nullptr);
}

}  // namespace tg
