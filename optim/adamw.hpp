#pragma once

#include "optim/adam.hpp"

namespace tg {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  /// Decoupled weight decay (Loshchilov & Hutter 2019).
  double weight_decay = 1e-2;
  bool amsgrad = false;
  /// Ascend instead of descend: each step updates with the negated gradient (PyTorch's
  /// maximize, applied first, before weight decay; the same for every group).
  bool maximize = false;
};

/// AdamW as torch.optim.AdamW: p = p * (1 - lr * weight_decay), then the Adam update of
/// the plain gradient.
class AdamW : public Optimizer {
 public:
  AdamW(std::vector<Var> params, AdamWOptions options = {});
  /// Parameter groups with their own options (see ParamGroup): "lr", "beta1", "beta2", "eps",
  /// "weight_decay".
  AdamW(std::vector<ParamGroup> groups, AdamWOptions defaults = {});
  std::string name() const override { return "AdamW"; }
  /// The defaults (the options of every group without overrides).
  const AdamWOptions& options() const { return options_; }
  /// The options of group `g`, overrides applied.
  const AdamWOptions& group_options(size_t g) const { return groups_.at(g); }

 protected:
  void update(size_t i, Tensor& param, const Tensor& grad) override;

 private:
  AdamWOptions options_;
  std::vector<AdamWOptions> groups_;
  std::vector<Tensor> exp_avg_;
  std::vector<Tensor> exp_avg_sq_;
  std::vector<Tensor> max_exp_avg_sq_;
};

}  // namespace tg
