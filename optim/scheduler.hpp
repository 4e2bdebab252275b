#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "optim/optimizer.hpp"

namespace tg {

/// Sets an optimizer's learning rate from a closed-form schedule of the epoch (or step)
/// count. Construction applies epoch 0; each `step()` advances one epoch, as in
/// torch.optim.lr_scheduler. The base rate is the optimizer's rate at construction.
class LrScheduler {
 public:
  explicit LrScheduler(Optimizer& optimizer);
  virtual ~LrScheduler() = default;

  /// Advances one epoch and sets the optimizer's rate.
  void step();
  /// The rate of epoch `epoch` (pure: no state changes).
  virtual double lr_at(int64_t epoch) const = 0;
  int64_t epoch() const { return epoch_; }
  double base_lr() const { return base_lr_; }
  /// The rate set by the last step (or construction).
  double last_lr() const { return lr_at(epoch_); }

  /// Epoch and base rate under `prefix` ("epoch", "base_lr"); loading also sets the
  /// optimizer's rate to that epoch's.
  void state_dict(NpzArchive& archive, const std::string& prefix = "scheduler.") const;
  void load_state_dict(const NpzArchive& archive, const std::string& prefix = "scheduler.");

 protected:
  /// Derived constructors call this last: applies the rate of epoch 0.
  void start() { optimizer_->set_lr(lr_at(epoch_)); }

  Optimizer* optimizer_;
  double base_lr_;
  int64_t epoch_ = 0;
};

/// lr = base * gamma^floor(epoch / step_size)   (torch StepLR)
class StepLR : public LrScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);
  double lr_at(int64_t epoch) const override;

 private:
  int64_t step_size_;
  double gamma_;
};

/// lr = base * gamma^epoch   (torch ExponentialLR)
class ExponentialLR : public LrScheduler {
 public:
  ExponentialLR(Optimizer& optimizer, double gamma);
  double lr_at(int64_t epoch) const override;

 private:
  double gamma_;
};

/// lr = eta_min + (base - eta_min) * (1 + cos(pi * epoch / t_max)) / 2
/// (torch CosineAnnealingLR, closed form; periodic past t_max as torch's is).
class CosineAnnealingLR : public LrScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t t_max, double eta_min = 0.0);
  double lr_at(int64_t epoch) const override;

 private:
  int64_t t_max_;
  double eta_min_;
};

/// Linear warmup over `warmup` epochs from start_factor * r0 to r0, then `after`'s schedule
/// shifted by `warmup` epochs (or the constant base rate without one). r0 is `after`'s rate
/// at its epoch 0 (the base rate without one). Standalone it is torch's
/// LinearLR(start_factor, 1.0, warmup); wrapping, SequentialLR([LinearLR, after], [warmup]).
class LinearWarmup : public LrScheduler {
 public:
  LinearWarmup(Optimizer& optimizer, int64_t warmup, double start_factor = 1.0 / 3.0,
               std::unique_ptr<LrScheduler> after = nullptr);
  double lr_at(int64_t epoch) const override;

 private:
  int64_t warmup_;
  double start_factor_;
  std::unique_ptr<LrScheduler> after_;
};

}  // namespace tg
