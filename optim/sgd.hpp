#pragma once

#include "optim/optimizer.hpp"

namespace tg {

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  /// Ascend instead of descend: each step updates with the negated gradient (PyTorch's
  /// maximize, applied first, before weight decay; the same for every group).
  bool maximize = false;
};

/// Stochastic gradient descent as torch.optim.SGD:
///   g = grad + weight_decay * p
///   buf = g (first step), else momentum * buf + (1 - dampening) * g
///   g = nesterov ? g + momentum * buf : buf          (when momentum != 0)
///   p = p - lr * g
class SGD : public Optimizer {
 public:
  SGD(std::vector<Var> params, SGDOptions options = {});
  /// Parameter groups with their own options (see ParamGroup): "lr", "momentum", "dampening",
  /// "weight_decay".
  SGD(std::vector<ParamGroup> groups, SGDOptions defaults = {});
  std::string name() const override { return "SGD"; }
  /// The defaults (the options of every group without overrides).
  const SGDOptions& options() const { return options_; }
  /// The options of group `g`, overrides applied.
  const SGDOptions& group_options(size_t g) const { return groups_.at(g); }

 protected:
  void update(size_t i, Tensor& param, const Tensor& grad) override;

 private:
  SGDOptions options_;
  std::vector<SGDOptions> groups_;
  std::vector<Tensor> momentum_buffer_;
};

}  // namespace tg
