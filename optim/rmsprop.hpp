#pragma once

#include "optim/optimizer.hpp"

namespace tg {

struct RMSpropOptions {
  double lr = 1e-2;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum = 0.0;
  bool centered = false;
  /// Ascend instead of descend: each step updates with the negated gradient (PyTorch's
  /// maximize, applied first, before weight decay; the same for every group).
  bool maximize = false;
};

/// RMSprop as torch.optim.RMSprop:
///   g = grad + weight_decay * p;   sq = alpha * sq + (1 - alpha) * g^2
///   centered: ga = alpha * ga + (1 - alpha) * g;  avg = sqrt(sq - ga^2) + eps
///   else avg = sqrt(sq) + eps
///   momentum: buf = momentum * buf + g / avg;  p = p - lr * buf
///   else p = p - lr * g / avg
class RMSprop : public Optimizer {
 public:
  RMSprop(std::vector<Var> params, RMSpropOptions options = {});
  /// Parameter groups with their own options (see ParamGroup): "lr", "alpha", "eps",
  /// "weight_decay", "momentum".
  RMSprop(std::vector<ParamGroup> groups, RMSpropOptions defaults = {});
  std::string name() const override { return "RMSprop"; }
  /// The defaults (the options of every group without overrides).
  const RMSpropOptions& options() const { return options_; }
  /// The options of group `g`, overrides applied.
  const RMSpropOptions& group_options(size_t g) const { return groups_.at(g); }

 protected:
  void update(size_t i, Tensor& param, const Tensor& grad) override;

 private:
  RMSpropOptions options_;
  std::vector<RMSpropOptions> groups_;
  std::vector<Tensor> square_avg_;
  std::vector<Tensor> grad_avg_;
  std::vector<Tensor> momentum_buffer_;
};

}  // namespace tg
