#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "graph/var.hpp"
#include "models/npz.hpp"

namespace tg {

/// Base of every optimizer. Holds the parameter handles and, for each kind of
/// per-parameter state, a vector of tensors aligned with them (`exp_avg_[i]` belongs to
/// `params()[i]`). A new optimizer is one file: an options struct, a constructor that
/// registers its state vectors, and `update`.
///
/// `step()` skips parameters whose gradient is undefined (their state and step count do
/// not change), as PyTorch does. Updates run in the parameter's dtype, in place, so
/// every handle to a parameter sees the new values.
class Optimizer {
 public:
  Optimizer(std::vector<Var> params, double lr);
  virtual ~Optimizer() = default;
  // The state registry points at members of the derived object.
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  /// Drops every parameter's gradient (the next backward starts from nothing).
  void zero_grad();
  /// One update of every parameter that has a gradient.
  void step();

  double lr() const { return lr_; }
  void set_lr(double lr);
  const std::vector<Var>& params() const { return params_; }
  /// Number of `step()` calls so far.
  int64_t steps() const { return steps_; }
  /// Number of updates parameter `i` has received (its bias-correction step).
  int64_t param_steps(size_t i) const { return param_steps_.at(i); }
  /// "SGD", "Adam", ...
  virtual std::string name() const = 0;

  /// Writes lr, step counts and every defined state tensor under `prefix`
  /// ("state.<i>.<name>"), so that a resumed run follows the same trajectory bit for bit.
  /// The options (betas, momentum, ...) are not stored: resume with the same options.
  void state_dict(NpzArchive& archive, const std::string& prefix = "") const;
  /// Reads what `state_dict` wrote; all or nothing (throws IoError, the optimizer is then
  /// unchanged). State of dtype f32 loads into f64 parameters; the reverse is an error.
  void load_state_dict(const NpzArchive& archive, const std::string& prefix = "");
  /// `state_dict` to / from an .npz file (written atomically).
  void save(const std::string& path) const;
  void load(const std::string& path);

 protected:
  /// Updates parameter `i` in place: `param` is its value, `grad` its gradient (same shape
  /// and dtype). `param_steps(i)` already counts this update. Runs without recording.
  virtual void update(size_t i, Tensor& param, const Tensor& grad) = 0;

  /// Registers a state vector (a member of the derived class) under `name`; it is resized
  /// to one (initially undefined) tensor per parameter.
  void register_state(std::string name, std::vector<Tensor>& slots);
  /// `slots[i]`, created on first use as a tensor like parameter `i` filled with `fill`.
  Tensor& state(std::vector<Tensor>& slots, size_t i, double fill = 0.0);

 private:
  std::vector<Var> params_;
  double lr_;
  int64_t steps_ = 0;
  std::vector<int64_t> param_steps_;
  std::vector<std::pair<std::string, std::vector<Tensor>*>> states_;
};

/// Elements per chunk of an update loop split over tapegrad's threads (`set_num_threads`):
/// smaller parameters update on the calling thread alone. Updates are elementwise, so the
/// split never changes a result.
inline constexpr int64_t kUpdateGrain = int64_t{1} << 15;

/// Calls `f.template operator()<b...>()` with compile-time copies of the run-time flags, so
/// an update loop written with `if constexpr` carries no per-element branches and vectorizes.
template <bool... Done, class F>
void with_flags(F&& f) {
  f.template operator()<Done...>();
}
template <bool... Done, class F, class... Rest>
void with_flags(F&& f, bool flag, Rest... rest) {
  if (flag)
    with_flags<Done..., true>(f, rest...);
  else
    with_flags<Done..., false>(f, rest...);
}

}  // namespace tg
