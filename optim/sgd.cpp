#include "optim/sgd.hpp"

#include <cstring>

#include "parallel/parallel.hpp"

namespace tg {

SGD::SGD(std::vector<Var> params, SGDOptions o)
    : SGD(std::vector<ParamGroup>{{std::move(params), {}}}, o) {}

SGD::SGD(std::vector<ParamGroup> groups, SGDOptions defaults)
    : Optimizer(std::move(groups), defaults.lr), options_(defaults) {
  set_maximize(defaults.maximize);
  groups_ = detail::group_options("SGD", defaults, group_overrides(),
                                  [](SGDOptions& o, const std::string& name, double v) {
                                    if (name == "momentum")
                                      o.momentum = v;
                                    else if (name == "dampening")
                                      o.dampening = v;
                                    else if (name == "weight_decay")
                                      o.weight_decay = v;
                                    else
                                      return false;
                                    return true;
                                  });
  for (const SGDOptions& o : groups_) {
    if (!(o.momentum >= 0.0)) throw Error("SGD: invalid momentum " + std::to_string(o.momentum));
    if (!(o.weight_decay >= 0.0))
      throw Error("SGD: invalid weight_decay " + std::to_string(o.weight_decay));
  }
  // As torch.optim.SGD, the defaults only: a group may set its momentum to 0 (then it takes
  // plain steps) or its own dampening.
  if (defaults.nesterov && (defaults.momentum <= 0.0 || defaults.dampening != 0.0))
    throw Error("SGD: Nesterov momentum requires a momentum and zero dampening, got momentum " +
                std::to_string(defaults.momentum) + ", dampening " +
                std::to_string(defaults.dampening));
  register_state("momentum_buffer", momentum_buffer_);
}

void SGD::update(size_t i, Tensor& param, const Tensor& grad) {
  const SGDOptions& o = groups_[group_of(i)];
  const bool fresh = !momentum_buffer_[i].defined();
  Tensor* buf = o.momentum != 0.0 ? &state(momentum_buffer_, i) : nullptr;
  with_flags(
      [&]<bool kDecay, bool kMomentum, bool kFresh, bool kNesterov>() {
        detail::parallel_for(param.numel(), kUpdateGrain, [&](int64_t lo, int64_t hi) {
          dispatch(param.dtype(), [&]<class T>() {
            T* p = param.data<T>();
            const T* g = grad.data<T>();
            T* b = kMomentum ? buf->data<T>() : nullptr;
            const T wd = static_cast<T>(o.weight_decay), mom = static_cast<T>(o.momentum);
            const T damp = static_cast<T>(1.0 - o.dampening), rate = static_cast<T>(param_lr(i));
            for (int64_t k = lo; k < hi; ++k) {
              T d = g[k];
              if constexpr (kDecay) d = d + wd * p[k];
              if constexpr (kMomentum) {
                // NOTE: the first step copies the gradient into the buffer (no dampening), as
                // PyTorch does.
                if constexpr (kFresh)
                  b[k] = d;
                else
                  b[k] = mom * b[k] + damp * d;
                if constexpr (kNesterov)
                  d = d + mom * b[k];
                else
                  d = b[k];
              }
              p[k] = p[k] - rate * d;
            }
          });
        });
      },
      o.weight_decay != 0.0, buf != nullptr, fresh, o.nesterov);
}

}  // namespace tg
