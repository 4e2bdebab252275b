#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "graph/var.hpp"
#include "models/npz.hpp"

namespace tg {

/// A set of parameters with its own options, as an entry of PyTorch's `param_groups`:
/// `options` overrides the optimizer's defaults by PyTorch's names ("lr", "weight_decay",
/// "momentum", "dampening", "beta1", "beta2" (PyTorch's betas), "eps", "alpha", "lr_decay");
/// a name the optimizer does not have throws Error. Boolean
/// options (nesterov, amsgrad, centered, maximize) are the optimizer's, the same for every
/// group.
///   SGD({{weights, {}}, {biases, {{"weight_decay", 0.0}}}}, {.lr = 0.1, .weight_decay = 1e-4})
struct ParamGroup {
  std::vector<Var> params;
  std::map<std::string, double> options;
};

/// Base of every optimizer. Holds the parameter handles and, for each kind of
/// per-parameter state, a vector of tensors aligned with them (`exp_avg_[i]` belongs to
/// `params()[i]`). A new optimizer is one file: an options struct, a constructor that
/// registers its state vectors, and `update`.
///
/// `step()` skips parameters whose gradient is undefined (their state and step count do
/// not change), as PyTorch does. Updates run in the parameter's dtype, in place, so
/// every handle to a parameter sees the new values.
///
/// Parameters come in groups (one group for the single-list constructors); `params()` lists
/// them all, group after group, and state index `i` counts over that list, as PyTorch's
/// state_dict does.
class Optimizer {
 public:
  Optimizer(std::vector<Var> params, double lr);
  /// Groups with their own rates: a group's "lr" option or `default_lr`.
  Optimizer(std::vector<ParamGroup> groups, double default_lr);
  virtual ~Optimizer() = default;
  // The state registry points at members of the derived object.
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  /// Drops every parameter's gradient (the next backward starts from nothing).
  void zero_grad();
  /// One update of every parameter that has a gradient.
  void step();

  /// The rate of group 0 (the only one for single-list optimizers).
  double lr() const { return group_lr_.at(0); }
  /// Sets the rate of every group.
  void set_lr(double lr);
  size_t num_groups() const { return group_lr_.size(); }
  double lr(size_t group) const { return group_lr_.at(group); }
  void set_lr(size_t group, double lr);
  /// The group's parameters (a range of `params()`).
  std::vector<Var> group_params(size_t group) const;
  /// The group parameter `i` belongs to.
  size_t group_of(size_t i) const { return group_of_.at(i); }
  const std::vector<Var>& params() const { return params_; }
  /// Number of `step()` calls so far.
  int64_t steps() const { return steps_; }
  /// Number of updates parameter `i` has received (its bias-correction step).
  int64_t param_steps(size_t i) const { return param_steps_.at(i); }
  /// "SGD", "Adam", ...
  virtual std::string name() const = 0;

  /// Writes lr (group 0's), every group's rate ("group_lrs") and size ("group_sizes"), step
  /// counts and every defined state tensor under `prefix` ("state.<i>.<name>"), so that a
  /// resumed run follows the same trajectory bit for bit. The options (betas, momentum, ...)
  /// are not stored: resume with the same options and groups. A file without "group_lrs"
  /// (written before groups existed) sets every group's rate to its "lr".
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

  /// The rate of the group of parameter `i` (what `update` uses).
  double param_lr(size_t i) const { return group_lr_[group_of_[i]]; }
  /// The option overrides of each group ("lr" included), for derived constructors.
  const std::vector<std::map<std::string, double>>& group_overrides() const { return overrides_; }

  /// Steps with the negated gradients from now on (the options' `maximize`).
  void set_maximize(bool on) { maximize_ = on; }

  /// Registers a state vector (a member of the derived class) under `name`; it is resized
  /// to one (initially undefined) tensor per parameter.
  void register_state(std::string name, std::vector<Tensor>& slots);
  /// `slots[i]`, created on first use as a tensor like parameter `i` filled with `fill`.
  Tensor& state(std::vector<Tensor>& slots, size_t i, double fill = 0.0);

 private:
  void init(const std::vector<ParamGroup>& groups, double default_lr);

  std::vector<Var> params_;
  std::vector<double> group_lr_;
  std::vector<size_t> group_begin_;  // group g is params_[group_begin_[g], group_begin_[g + 1])
  std::vector<size_t> group_of_;
  std::vector<std::map<std::string, double>> overrides_;
  int64_t steps_ = 0;
  bool maximize_ = false;
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

namespace detail {
/// What a load_state_dict error names: "<what> '<file>'" for an archive read from a file,
/// else `what`.
std::string state_source(const NpzArchive& archive, const std::string& what);

/// Builds each group's options from `defaults` and its overrides: `set(options, name, value)`
/// applies one and returns false for a name the optimizer does not have (then Error naming
/// `who`, the group and the name).
template <class Options, class Set>
std::vector<Options> group_options(const char* who, const Options& defaults,
                                   const std::vector<std::map<std::string, double>>& overrides,
                                   Set set) {
  std::vector<Options> out;
  for (size_t g = 0; g < overrides.size(); ++g) {
    Options o = defaults;
    for (const auto& [name, value] : overrides[g])
      if (name != "lr" && !set(o, name, value))
        throw Error(std::string(who) + ": parameter group " + std::to_string(g) +
                    " has an unknown option '" + name + "'");
    if (auto it = overrides[g].find("lr"); it != overrides[g].end()) o.lr = it->second;
    out.push_back(o);
  }
  return out;
}
}  // namespace detail

}  // namespace tg
