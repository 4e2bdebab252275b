#include "optim/scheduler.hpp"

#include <cmath>
#include <numbers>

namespace tg {

LrScheduler::LrScheduler(Optimizer& optimizer) : optimizer_(&optimizer), base_lr_(optimizer.lr()) {}

void LrScheduler::step() {
  ++epoch_;
  optimizer_->set_lr(lr_at(epoch_));
}

void LrScheduler::state_dict(NpzArchive& a, const std::string& prefix) const {
  a.put_int(prefix + "epoch", epoch_);
  a.put_scalar(prefix + "base_lr", base_lr_);
}

void LrScheduler::load_state_dict(const NpzArchive& a, const std::string& prefix) {
  const int64_t epoch = a.integer(prefix + "epoch");
  const double base = a.scalar(prefix + "base_lr");
  if (epoch < 0 || !(base >= 0.0)) throw IoError("scheduler state: invalid epoch or base_lr");
  epoch_ = epoch;
  base_lr_ = base;
  optimizer_->set_lr(lr_at(epoch_));
}

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma)
    : LrScheduler(optimizer), step_size_(step_size), gamma_(gamma) {
  if (step_size <= 0) throw Error("StepLR: step_size must be positive");
  start();
}

double StepLR::lr_at(int64_t epoch) const {
  return base_lr_ * std::pow(gamma_, static_cast<double>(epoch / step_size_));
}

ExponentialLR::ExponentialLR(Optimizer& optimizer, double gamma)
    : LrScheduler(optimizer), gamma_(gamma) {
  start();
}

double ExponentialLR::lr_at(int64_t epoch) const {
  return base_lr_ * std::pow(gamma_, static_cast<double>(epoch));
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t t_max, double eta_min)
    : LrScheduler(optimizer), t_max_(t_max), eta_min_(eta_min) {
  if (t_max <= 0) throw Error("CosineAnnealingLR: t_max must be positive");
  start();
}

double CosineAnnealingLR::lr_at(int64_t epoch) const {
  const double c =
      std::cos(std::numbers::pi * static_cast<double>(epoch) / static_cast<double>(t_max_));
  return eta_min_ + (base_lr_ - eta_min_) * (1.0 + c) / 2.0;
}

LinearWarmup::LinearWarmup(Optimizer& optimizer, int64_t warmup, double start_factor,
                           std::unique_ptr<LrScheduler> after)
    : LrScheduler(optimizer),
      warmup_(warmup),
      start_factor_(start_factor),
      after_(std::move(after)) {
  if (warmup <= 0) throw Error("LinearWarmup: warmup must be positive");
  if (!(start_factor > 0.0 && start_factor <= 1.0))
    throw Error("LinearWarmup: start_factor must be in (0, 1]");
  if (after_) base_lr_ = after_->base_lr();
  start();
}

double LinearWarmup::lr_at(int64_t epoch) const {
  if (epoch >= warmup_) return after_ ? after_->lr_at(epoch - warmup_) : base_lr_;
  const double r0 = after_ ? after_->lr_at(0) : base_lr_;
  const double t = static_cast<double>(epoch) / static_cast<double>(warmup_);
  return r0 * (start_factor_ + (1.0 - start_factor_) * t);
}

}  // namespace tg
