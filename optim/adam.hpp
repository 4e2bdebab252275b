#pragma once

#include <string>

#include "optim/optimizer.hpp"

namespace tg {

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  /// L2 penalty added to the gradient (for decoupled decay use AdamW).
  double weight_decay = 0.0;
  bool amsgrad = false;
  /// Ascend instead of descend: each step updates with the negated gradient (PyTorch's
  /// maximize, applied first, before weight decay; the same for every group).
  bool maximize = false;
};

/// Adam (Kingma & Ba 2015) as torch.optim.Adam, with t = this parameter's step:
///   g = grad + weight_decay * p
///   m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g^2
///   vmax = max(vmax, v) (amsgrad; used instead of v below)
///   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
class Adam : public Optimizer {
 public:
  Adam(std::vector<Var> params, AdamOptions options = {});
  /// Parameter groups with their own options (see ParamGroup): "lr", "beta1", "beta2", "eps",
  /// "weight_decay".
  Adam(std::vector<ParamGroup> groups, AdamOptions defaults = {});
  std::string name() const override { return "Adam"; }
  /// The defaults (the options of every group without overrides).
  const AdamOptions& options() const { return options_; }
  /// The options of group `g`, overrides applied.
  const AdamOptions& group_options(size_t g) const { return groups_.at(g); }

 protected:
  void update(size_t i, Tensor& param, const Tensor& grad) override;

 private:
  AdamOptions options_;
  std::vector<AdamOptions> groups_;
  std::vector<Tensor> exp_avg_;
  std::vector<Tensor> exp_avg_sq_;
  std::vector<Tensor> max_exp_avg_sq_;
};

namespace detail {
/// The Adam update shared by Adam and AdamW (`l2` is Adam's gradient penalty).
void adam_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, Tensor* vmax,
                 const AdamOptions& o, double lr, double l2, int64_t step);
void check_adam_options(const char* who, const AdamOptions& o);
/// A parameter group's override of Adam's or AdamW's options ("beta1", "beta2", "eps",
/// "weight_decay"); false for another name.
template <class Options>
bool set_adam_option(Options& o, const std::string& name, double v) {
  if (name == "beta1")
    o.beta1 = v;
  else if (name == "beta2")
    o.beta2 = v;
  else if (name == "eps")
    o.eps = v;
  else if (name == "weight_decay")
    o.weight_decay = v;
  else
    return false;
  return true;
}
}  // namespace detail

}  // namespace tg
