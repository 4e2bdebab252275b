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
  std::string name() const override { return "RMSprop"; }
  const RMSpropOptions& options() const { return options_; }

 protected:
  void update(size_t i, Tensor& param, const Tensor& grad) override;

 private:
  RMSpropOptions options_;
  std::vector<Tensor> square_avg_;
  std::vector<Tensor> grad_avg_;
  std::vector<Tensor> momentum_buffer_;
};

}  // namespace tg
