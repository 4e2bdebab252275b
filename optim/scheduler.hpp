#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "optim/optimizer.hpp"

namespace tg {

/// Sets an optimizer's learning rates from a closed-form schedule of the epoch (or step)
/// count. Construction applies epoch 0; each `step()` advances one epoch, as in
/// torch.optim.lr_scheduler. Each parameter group follows the schedule from its own base
/// rate: the group's rate at construction (PyTorch's initial_lr).
class LrScheduler {
 public:
  explicit LrScheduler(Optimizer& optimizer);
  virtual ~LrScheduler() = default;

  /// Advances one epoch and sets every group's rate.
  void step();
  /// The rate of epoch `epoch` for a group whose base rate is `base` (pure).
  virtual double lr_for(int64_t epoch, double base) const = 0;
  /// The rate of epoch `epoch` for group `group` (pure: no state changes).
  double lr_at(int64_t epoch, size_t group = 0) const { return lr_for(epoch, base_lrs_.at(group)); }
  int64_t epoch() const { return epoch_; }
  /// Group 0's base rate; every group's.
  double base_lr() const { return base_lrs_.at(0); }
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  /// The rate set by the last step (or construction), of group `group`.
  double last_lr(size_t group = 0) const { return lr_at(epoch_, group); }

  /// Epoch and base rates under `prefix` ("epoch", "base_lr" (group 0's), "base_lrs");
  /// loading also sets the optimizer's rates to that epoch's. A file without "base_lrs"
  /// gives every group its "base_lr".
  void state_dict(NpzArchive& archive, const std::string& prefix = "scheduler.") const;
  void load_state_dict(const NpzArchive& archive, const std::string& prefix = "scheduler.");

 protected:
  /// Derived constructors call this last: applies the rates of epoch 0.
  void start() { apply(epoch_); }
  void apply(int64_t epoch);

  Optimizer* optimizer_;
  std::vector<double> base_lrs_;
  int64_t epoch_ = 0;
};

/// lr = base * gamma^floor(epoch / step_size)   (torch StepLR)
class StepLR : public LrScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);
  double lr_for(int64_t epoch, double base) const override;

 private:
  int64_t step_size_;
  double gamma_;
};

/// lr = base * gamma^epoch   (torch ExponentialLR)
class ExponentialLR : public LrScheduler {
 public:
  ExponentialLR(Optimizer& optimizer, double gamma);
  double lr_for(int64_t epoch, double base) const override;

 private:
  double gamma_;
};

/// lr = eta_min + (base - eta_min) * (1 + cos(pi * epoch / t_max)) / 2
/// (torch CosineAnnealingLR, closed form; periodic past t_max as torch's is).
class CosineAnnealingLR : public LrScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t t_max, double eta_min = 0.0);
  double lr_for(int64_t epoch, double base) const override;

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
  double lr_for(int64_t epoch, double base) const override;

 private:
  int64_t warmup_;
  double start_factor_;
  std::unique_ptr<LrScheduler> after_;
};

enum class Anneal { cos, linear };

struct OneCycleOptions {
  double pct_start = 0.3;
  Anneal anneal_strategy = Anneal::cos;
  double div_factor = 25.0;
  double final_div_factor = 1e4;
  bool three_phase = false;
};

/// torch OneCycleLR (with cycle_momentum=False: momentum is not cycled, see below). Per
/// group, initial = max_lr / div_factor and min = initial / final_div_factor; the rate goes
/// from initial to max_lr over the steps up to pct_start * total_steps - 1, then anneals to
/// min at total_steps - 1 (three_phase: max_lr -> initial by 2 * pct_start * total_steps - 2,
/// then -> min), each phase by `anneal_strategy`:
///   cos: end + (start - end) / 2 * (1 + cos(pi * pct));  linear: start + (end - start) * pct.
/// Stepping past total_steps throws Error, as PyTorch does (step total_steps itself
/// extrapolates, as in PyTorch, but a negative linear extrapolation gives 0: an optimizer
/// refuses a negative rate). `base_lrs()` holds the max_lrs.
/// NOTE: PyTorch's default cycle_momentum=True also moves SGD's momentum / Adam's beta1
/// between base_momentum and max_momentum; options are fixed per group here, so it is not
/// offered (pass cycle_momentum=False to torch for the same rates).
class OneCycleLR : public LrScheduler {
 public:
  OneCycleLR(Optimizer& optimizer, double max_lr, int64_t total_steps,
             OneCycleOptions options = {});
  /// One max_lr per parameter group.
  OneCycleLR(Optimizer& optimizer, std::vector<double> max_lrs, int64_t total_steps,
             OneCycleOptions options = {});
  double lr_for(int64_t step, double max_lr) const override;
  int64_t total_steps() const { return total_steps_; }

 private:
  int64_t total_steps_;
  OneCycleOptions options_;
};

struct ReduceLROnPlateauOptions {
  /// "min": the metric should go down (a loss); "max": up (an accuracy).
  std::string mode = "min";
  double factor = 0.1;
  int64_t patience = 10;
  double threshold = 1e-4;
  /// "rel": better means past best * (1 -+ threshold); "abs": past best -+ threshold.
  std::string threshold_mode = "rel";
  int64_t cooldown = 0;
  double min_lr = 0.0;
  /// One floor per group (overrides min_lr when not empty).
  std::vector<double> min_lrs = {};
  /// A reduction smaller than this is not applied.
  double eps = 1e-8;
};

/// torch ReduceLROnPlateau: `step(metric)` once per epoch; after more than `patience`
/// epochs without improvement every group's rate becomes max(lr * factor, min_lr) (when
/// that changes it by more than eps), then `cooldown` epochs pass without counting. A NaN
/// metric is never an improvement. Not a closed-form schedule, so not an LrScheduler.
class ReduceLROnPlateau {
 public:
  explicit ReduceLROnPlateau(Optimizer& optimizer, ReduceLROnPlateauOptions options = {});
  void step(double metric);
  double best() const { return best_; }
  int64_t num_bad_epochs() const { return num_bad_epochs_; }
  int64_t cooldown_counter() const { return cooldown_counter_; }
  int64_t epoch() const { return epoch_; }

  /// best, num_bad_epochs, cooldown_counter and epoch under `prefix` (the rates are the
  /// optimizer's, saved with it).
  void state_dict(NpzArchive& archive, const std::string& prefix = "scheduler.") const;
  void load_state_dict(const NpzArchive& archive, const std::string& prefix = "scheduler.");

 private:
  bool is_better(double a) const;

  Optimizer* optimizer_;
  ReduceLROnPlateauOptions options_;
  bool max_mode_;
  bool rel_;
  double best_;
  int64_t num_bad_epochs_ = 0;
  int64_t cooldown_counter_ = 0;
  int64_t epoch_ = 0;
};

}  // namespace tg
