#include "optim/scheduler.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>

namespace tg {

namespace {
void put_f64s(NpzArchive& a, const std::string& name, const std::vector<double>& v) {
  NpyArray arr;
  arr.type = NpyType::f64;
  arr.shape = {static_cast<int64_t>(v.size())};
  arr.bytes.resize(v.size() * sizeof(double));
  if (!v.empty()) std::memcpy(arr.bytes.data(), v.data(), arr.bytes.size());
  a.put(name, std::move(arr));
}
}  // namespace

LrScheduler::LrScheduler(Optimizer& optimizer) : optimizer_(&optimizer) {
  for (size_t g = 0; g < optimizer.num_groups(); ++g) base_lrs_.push_back(optimizer.lr(g));
}

void LrScheduler::apply(int64_t epoch) {
  // Every rate first (lr_for may throw), then set them all.
  std::vector<double> lrs;
  for (double base : base_lrs_) lrs.push_back(lr_for(epoch, base));
  for (size_t g = 0; g < lrs.size(); ++g) optimizer_->set_lr(g, lrs[g]);
  epoch_ = epoch;
}

void LrScheduler::step() { apply(epoch_ + 1); }

void LrScheduler::state_dict(NpzArchive& a, const std::string& prefix) const {
  a.put_int(prefix + "epoch", epoch_);
  a.put_scalar(prefix + "base_lr", base_lrs_.at(0));
  put_f64s(a, prefix + "base_lrs", base_lrs_);
}

void LrScheduler::load_state_dict(const NpzArchive& a, const std::string& prefix) {
  const std::string src = detail::state_source(a, "scheduler state");
  const int64_t epoch = a.integer(prefix + "epoch");
  const double base = a.scalar(prefix + "base_lr");
  if (epoch < 0 || !(base >= 0.0))
    throw IoError(src + ": invalid epoch " + std::to_string(epoch) + " or base_lr " +
                  std::to_string(base));
  std::vector<double> bases(base_lrs_.size(), base);
  if (a.contains(prefix + "base_lrs")) {
    const Tensor t = a.tensor(prefix + "base_lrs").to(f64);
    if (t.dim() != 1 || static_cast<size_t>(t.numel()) != bases.size())
      throw IoError(src + ": base rates for " + std::to_string(t.numel()) +
                    " parameter groups, the optimizer has " + std::to_string(bases.size()));
    for (size_t g = 0; g < bases.size(); ++g) {
      bases[g] = t.data<double>()[g];
      if (!(bases[g] >= 0.0))
        throw IoError(src + ": invalid base_lrs entry " + std::to_string(g) + ": " +
                      std::to_string(bases[g]));
    }
  }
  const auto old = base_lrs_;
  base_lrs_ = bases;
  try {
    apply(epoch);
  } catch (const Error& e) {  // a rate the schedule cannot give at the stored epoch
    base_lrs_ = old;
    throw IoError(src + ": " + e.what());
  } catch (...) {
    base_lrs_ = old;
    throw;
  }
}

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma)
    : LrScheduler(optimizer), step_size_(step_size), gamma_(gamma) {
  if (step_size <= 0) throw Error("StepLR: step_size must be positive");
  start();
}

double StepLR::lr_for(int64_t epoch, double base) const {
  return base * std::pow(gamma_, static_cast<double>(epoch / step_size_));
}

ExponentialLR::ExponentialLR(Optimizer& optimizer, double gamma)
    : LrScheduler(optimizer), gamma_(gamma) {
  start();
}

double ExponentialLR::lr_for(int64_t epoch, double base) const {
  return base * std::pow(gamma_, static_cast<double>(epoch));
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t t_max, double eta_min)
    : LrScheduler(optimizer), t_max_(t_max), eta_min_(eta_min) {
  if (t_max <= 0) throw Error("CosineAnnealingLR: t_max must be positive");
  start();
}

double CosineAnnealingLR::lr_for(int64_t epoch, double base) const {
  const double c =
      std::cos(std::numbers::pi * static_cast<double>(epoch) / static_cast<double>(t_max_));
  return eta_min_ + (base - eta_min_) * (1.0 + c) / 2.0;
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
  if (after_) base_lrs_ = after_->base_lrs();
  start();
}

double LinearWarmup::lr_for(int64_t epoch, double base) const {
  if (epoch >= warmup_) return after_ ? after_->lr_for(epoch - warmup_, base) : base;
  const double r0 = after_ ? after_->lr_for(0, base) : base;
  const double t = static_cast<double>(epoch) / static_cast<double>(warmup_);
  return r0 * (start_factor_ + (1.0 - start_factor_) * t);
}

OneCycleLR::OneCycleLR(Optimizer& optimizer, double max_lr, int64_t total_steps,
                       OneCycleOptions options)
    : OneCycleLR(optimizer, std::vector<double>(optimizer.num_groups(), max_lr), total_steps,
                 options) {}

OneCycleLR::OneCycleLR(Optimizer& optimizer, std::vector<double> max_lrs, int64_t total_steps,
                       OneCycleOptions o)
    : LrScheduler(optimizer), total_steps_(total_steps), options_(o) {
  if (total_steps <= 0)
    throw Error("OneCycleLR: total_steps must be positive, got " + std::to_string(total_steps));
  if (!(o.pct_start >= 0.0 && o.pct_start <= 1.0))
    throw Error("OneCycleLR: pct_start must be in [0, 1], got " + std::to_string(o.pct_start));
  if (max_lrs.size() != optimizer.num_groups())
    throw Error("OneCycleLR: expected " + std::to_string(optimizer.num_groups()) +
                " values for max_lr, got " + std::to_string(max_lrs.size()));
  for (double m : max_lrs)
    if (!(m >= 0.0)) throw Error("OneCycleLR: invalid max_lr " + std::to_string(m));
  if (!(o.div_factor > 0.0) || !(o.final_div_factor > 0.0))
    throw Error("OneCycleLR: div_factor and final_div_factor must be positive");
  base_lrs_ = std::move(max_lrs);
  start();
}

double OneCycleLR::lr_for(int64_t step, double max_lr) const {
  if (step > total_steps_)
    throw Error("OneCycleLR: tried to step " + std::to_string(step + 1) +
                " times; the specified number of total steps is " + std::to_string(total_steps_));
  const double initial = max_lr / options_.div_factor;
  const double min_lr = initial / options_.final_div_factor;
  const double total = static_cast<double>(total_steps_);
  struct Phase {
    double end_step, start, end;
  };
  std::vector<Phase> phases;
  if (options_.three_phase)
    phases = {{options_.pct_start * total - 1.0, initial, max_lr},
              {2.0 * options_.pct_start * total - 2.0, max_lr, initial},
              {total - 1.0, initial, min_lr}};
  else
    phases = {{options_.pct_start * total - 1.0, initial, max_lr}, {total - 1.0, max_lr, min_lr}};
  // PyTorch's loop, in its order of operations (a phase of zero length gives 0/0 there too).
  const double s = static_cast<double>(step);
  double start_step = 0.0;
  for (size_t i = 0; i < phases.size(); ++i) {
    const Phase& p = phases[i];
    if (s <= p.end_step || i + 1 == phases.size()) {
      const double pct = (s - start_step) / (p.end_step - start_step);
      if (options_.anneal_strategy == Anneal::cos)
        return p.end + (p.start - p.end) / 2.0 * (std::cos(std::numbers::pi * pct) + 1.0);
      // NOTE: step total_steps (which PyTorch allows) extrapolates past min_lr, below 0 for a
      // linear anneal; PyTorch sets that negative rate, an optimizer here refuses one, so it
      // is clamped to 0.
      return std::max(0.0, (p.end - p.start) * pct + p.start);
    }
    start_step = p.end_step;
  }
  return min_lr;  // not reached
}

ReduceLROnPlateau::ReduceLROnPlateau(Optimizer& optimizer, ReduceLROnPlateauOptions o)
    : optimizer_(&optimizer), options_(std::move(o)) {
  const auto& op = options_;
  if (!(op.factor < 1.0)) throw Error("ReduceLROnPlateau: factor should be < 1.0");
  if (op.mode != "min" && op.mode != "max")
    throw Error("ReduceLROnPlateau: mode '" + op.mode + "' is unknown (min or max)");
  if (op.threshold_mode != "rel" && op.threshold_mode != "abs")
    throw Error("ReduceLROnPlateau: threshold mode '" + op.threshold_mode +
                "' is unknown (rel or abs)");
  if (op.patience < 0 || op.cooldown < 0)
    throw Error("ReduceLROnPlateau: patience and cooldown must be >= 0");
  if (options_.min_lrs.empty()) options_.min_lrs.assign(optimizer.num_groups(), op.min_lr);
  if (options_.min_lrs.size() != optimizer.num_groups())
    throw Error("ReduceLROnPlateau: expected " + std::to_string(optimizer.num_groups()) +
                " min_lrs, got " + std::to_string(options_.min_lrs.size()));
  max_mode_ = op.mode == "max";
  rel_ = op.threshold_mode == "rel";
  best_ = max_mode_ ? -std::numeric_limits<double>::infinity()
                    : std::numeric_limits<double>::infinity();
}

bool ReduceLROnPlateau::is_better(double a) const {
  const double t = options_.threshold;
  if (!max_mode_) return rel_ ? a < best_ * (1.0 - t) : a < best_ - t;
  return rel_ ? a > best_ * (t + 1.0) : a > best_ + t;
}

void ReduceLROnPlateau::step(double metric) {
  ++epoch_;
  if (is_better(metric)) {
    best_ = metric;
    num_bad_epochs_ = 0;
  } else {
    ++num_bad_epochs_;
  }
  if (cooldown_counter_ > 0) {
    --cooldown_counter_;
    num_bad_epochs_ = 0;  // bad epochs in cooldown do not count
  }
  if (num_bad_epochs_ > options_.patience) {
    for (size_t g = 0; g < optimizer_->num_groups(); ++g) {
      const double old_lr = optimizer_->lr(g);
      const double new_lr = std::max(old_lr * options_.factor, options_.min_lrs[g]);
      if (old_lr - new_lr > options_.eps) optimizer_->set_lr(g, new_lr);
    }
    cooldown_counter_ = options_.cooldown;
    num_bad_epochs_ = 0;
  }
}

void ReduceLROnPlateau::state_dict(NpzArchive& a, const std::string& prefix) const {
  a.put_scalar(prefix + "best", best_);
  a.put_int(prefix + "num_bad_epochs", num_bad_epochs_);
  a.put_int(prefix + "cooldown_counter", cooldown_counter_);
  a.put_int(prefix + "epoch", epoch_);
}

void ReduceLROnPlateau::load_state_dict(const NpzArchive& a, const std::string& prefix) {
  const double best = a.scalar(prefix + "best");
  const int64_t bad = a.integer(prefix + "num_bad_epochs");
  const int64_t cool = a.integer(prefix + "cooldown_counter");
  const int64_t epoch = a.integer(prefix + "epoch");
  if (bad < 0 || cool < 0 || epoch < 0)
    throw IoError(detail::state_source(a, "ReduceLROnPlateau state") +
                  ": negative counter (num_bad_epochs " + std::to_string(bad) +
                  ", cooldown_counter " + std::to_string(cool) + ", epoch " +
                  std::to_string(epoch) + ")");
  best_ = best;
  num_bad_epochs_ = bad;
  cooldown_counter_ = cool;
  epoch_ = epoch;
}

}  // namespace tg
