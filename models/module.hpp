#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "graph/var.hpp"

namespace tg {

/// Base of every model part. A module registers its parameters and its child modules
/// once, in its constructor; `parameters()`, `named_parameters()`, `train()/eval()`,
/// `to(dtype)`, `zero_grad()`, checkpoints and diagnostics all derive from that.
///
/// Children are usually data members of the derived struct, so a module stores plain
/// pointers to them. A module is therefore neither copyable nor movable (a moved copy
/// would point into the old object); build it in place, or hold it in a unique_ptr.
class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  Module(Module&&) = delete;
  Module& operator=(Module&&) = delete;

  /// Registers a trainable parameter (a leaf that wants gradients) under `name`
  /// (no '.', unique within this module); returns its handle.
  Var register_parameter(std::string name, Tensor value);
  /// Registers an existing Var (it is made to require gradients). Registering the same
  /// Var in two modules shares it; `parameters()` lists it once.
  Var register_parameter(std::string name, Var param);
  /// Registers `child` (which must outlive this module, e.g. a data member) under `name`.
  template <class M>
  M& register_module(std::string name, M& child) {
    add_child(std::move(name), child);
    return child;
  }

  /// Every parameter of this module and its descendants (own first, then children in
  /// registration order), each distinct Var once.
  std::vector<Var> parameters() const;
  /// The same, with dotted names ("fc1.weight", "layers.0.bias").
  std::vector<std::pair<std::string, Var>> named_parameters() const;
  /// This module's own parameters.
  const std::vector<std::pair<std::string, Var>>& own_parameters() const { return params_; }
  /// The parameter with dotted name `name`, or an undefined Var.
  Var parameter(std::string_view name) const;
  /// Total number of scalar parameters.
  int64_t num_parameters() const;

  std::vector<Module*> children() const;
  const std::vector<std::pair<std::string, Module*>>& named_children() const { return children_; }
  /// This module ("") and every descendant with its dotted path, in pre-order.
  std::vector<std::pair<std::string, Module*>> named_modules();
  std::vector<std::pair<std::string, const Module*>> named_modules() const;

  /// Sets training mode on this module and every descendant.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  /// Converts every parameter to `dtype` in place (same Vars, new values; the gradients of
  /// converted parameters are dropped).
  void to(Dtype dtype);
  /// Drops the accumulated gradient of every parameter.
  void zero_grad();

  /// `tg::save(*this, path)` / `tg::load(*this, path)` (models/checkpoint.hpp): the named
  /// parameters as .npz, written atomically; loading is all or nothing.
  void save(const std::string& path) const;
  void load(const std::string& path);

  /// Type name used by `str()` ("Linear", "Sequential", ...).
  virtual std::string type_name() const { return "Module"; }
  /// Arguments shown by `str()` inside the parentheses ("in_features=2, ...").
  virtual std::string extra_repr() const { return ""; }
  /// A tree like PyTorch's module printout.
  std::string str() const;

 private:
  void add_child(std::string name, Module& child);
  void check_new_name(const std::string& name, const char* what) const;

  std::vector<std::pair<std::string, Var>> params_;
  std::vector<std::pair<std::string, Module*>> children_;
  bool training_ = true;
};

/// A module with one input and one output: what Sequential chains.
class Layer : public Module {
 public:
  /// Called after every `operator()` with the layer, its input and its output.
  using ForwardHook = std::function<void(Layer& layer, const Var& input, const Var& output)>;

  virtual Var forward(const Var& x) = 0;
  /// `forward(x)`, then the forward hooks.
  Var operator()(const Var& x);

  size_t register_forward_hook(ForwardHook hook);
  void remove_forward_hook(size_t id);

 private:
  std::vector<std::pair<size_t, ForwardHook>> hooks_;
  size_t next_hook_id_ = 0;
};

}  // namespace tg
