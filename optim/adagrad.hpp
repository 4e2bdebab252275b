#pragma once

#include "optim/optimizer.hpp"

namespace tg {

struct AdagradOptions {
  double lr = 1e-2;
  double lr_decay = 0.0;
  double weight_decay = 0.0;
  double initial_accumulator_value = 0.0;
  double eps = 1e-10;
  /// Ascend instead of descend: each step updates with the negated gradient (PyTorch's
  /// maximize, applied first, before weight decay; the same for every group).
  bool maximize = false;
};

/// Adagrad as torch.optim.Adagrad, with t = this parameter's step:
///   g = grad + weight_decay * p;   clr = lr / (1 + (t - 1) * lr_decay)
///   sum = sum + g^2;   p = p - clr * g / (sqrt(sum) + eps)
class Adagrad : public Optimizer {
 public:
  Adagrad(std::vector<Var> params, AdagradOptions options = {});
  /// Parameter groups with their own options (see ParamGroup): "lr", "lr_decay", "weight_decay",
  /// "eps". (Not initial_accumulator_value: torch.optim.Adagrad fills every group's state from
  /// the constructor's value, whatever the group says.)
  Adagrad(std::vector<ParamGroup> groups, AdagradOptions defaults = {});
  std::string name() const override { return "Adagrad"; }
  /// The defaults (the options of every group without overrides).
  const AdagradOptions& options() const { return options_; }
  /// The options of group `g`, overrides applied.
  const AdagradOptions& group_options(size_t g) const { return groups_.at(g); }

 protected:
  void update(size_t i, Tensor& param, const Tensor& grad) override;

 private:
  AdagradOptions options_;
  std::vector<AdagradOptions> groups_;
  std::vector<Tensor> sum_;
};

}  // namespace tg
