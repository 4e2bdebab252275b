#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "graph/var.hpp"

namespace tg {

struct NamedBufferSlot;

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
  /// Registers a buffer: state that is not trained (BatchNorm's running_mean, an int64
  /// num_batches_tracked) under `name` (same rules as parameters), as PyTorch's
  /// register_buffer. A persistent buffer is saved and loaded with the parameters; `to(dtype)`
  /// converts floating buffers (integer and bool buffers keep their dtype). Returns the
  /// module's slot: `to` and `load` write through it, so read the buffer through the returned
  /// reference or `buffer(name)`, not through a copy kept from before. An undefined tensor
  /// registers an empty slot (PyTorch's `register_buffer(name, None)`), skipped by
  /// `named_buffers` until it is set.
  Tensor& register_buffer(std::string name, Tensor value, bool persistent = true);
  /// This module's own buffer `name` (no dots); throws Error when there is none.
  Tensor& buffer(std::string_view name);
  const Tensor& buffer(std::string_view name) const;
  /// Every defined buffer of this module and its descendants with dotted names
  /// ("bn1.running_mean"), own first, then children in registration order, each once.
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  std::vector<Tensor> buffers() const;
  /// Whether `register_buffer(name, ..., persistent)` said so (own buffers only).
  bool is_persistent_buffer(std::string_view name) const;

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

  /// Converts every parameter and every floating buffer to `dtype` in place (same Vars and
  /// buffer slots, new values; the gradients of converted parameters are dropped).
  void to(Dtype dtype);
  /// Drops the accumulated gradient of every parameter.
  void zero_grad();

  /// `tg::save(*this, path)` / `tg::load(*this, path)` (models/checkpoint.hpp): the named
  /// parameters and persistent buffers as .npz, written atomically; loading is all or nothing.
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

  struct BufferSlot {
    std::string name;
    Tensor value;
    bool persistent = true;
  };
  friend std::vector<NamedBufferSlot> named_buffer_slots(Module& m);

  std::vector<std::pair<std::string, Var>> params_;
  // A deque: the references `register_buffer` returns stay valid as buffers are added.
  std::deque<BufferSlot> buffers_;
  std::vector<std::pair<std::string, Module*>> children_;
  bool training_ = true;
};

/// One buffer slot of a module tree, for checkpoints: `slot` is the module's own tensor.
struct NamedBufferSlot {
  std::string name;
  Tensor* slot;
  bool persistent;
};
/// Every defined buffer of `m` and its descendants, with its slot (each slot once).
std::vector<NamedBufferSlot> named_buffer_slots(Module& m);

/// Modules held in a list, as torch.nn.ModuleList: owned, named "0", "1", ... A container
/// has no forward of its own; a module holding one calls its elements as it likes (with
/// any number of inputs).
class ModuleList : public Module {
 public:
  ModuleList() = default;
  template <class... Ms>
  explicit ModuleList(std::unique_ptr<Ms>... modules) {
    (append(std::move(modules)), ...);
  }
  /// Appends an owned module; returns it.
  Module& append(std::unique_ptr<Module> module);
  /// Constructs a module of type M at the end; returns it.
  template <class M, class... Args>
  M& emplace_back(Args&&... args) {
    auto m = std::make_unique<M>(std::forward<Args>(args)...);
    M& ref = *m;
    append(std::move(m));
    return ref;
  }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  /// Element `i`; a negative index counts from the end (PyTorch's). Throws IndexError.
  Module& operator[](int64_t i) const;
  /// Element `i` as M (throws Error when it is not one).
  template <class M>
  M& at(int64_t i) const {
    auto* p = dynamic_cast<M*>(&(*this)[i]);
    if (!p)
      throw Error("ModuleList::at: element " + std::to_string(i) + " is a " +
                  (*this)[i].type_name());
    return *p;
  }

  class iterator {
   public:
    using Base = std::vector<std::unique_ptr<Module>>::const_iterator;
    explicit iterator(Base it) : it_(it) {}
    Module& operator*() const { return **it_; }
    Module* operator->() const { return it_->get(); }
    iterator& operator++() {
      ++it_;
      return *this;
    }
    bool operator==(const iterator& o) const { return it_ == o.it_; }
    bool operator!=(const iterator& o) const { return it_ != o.it_; }

   private:
    Base it_;
  };
  iterator begin() const { return iterator(items_.begin()); }
  iterator end() const { return iterator(items_.end()); }
  std::string type_name() const override { return "ModuleList"; }

 private:
  std::vector<std::unique_ptr<Module>> items_;
};

/// Modules held by name in insertion order, as torch.nn.ModuleDict: owned; the key is the
/// child's name ("conv" -> parameters "conv.weight").
class ModuleDict : public Module {
 public:
  /// Adds an owned module under `key` (a new key: no '.', not taken); returns it.
  Module& insert(std::string key, std::unique_ptr<Module> module);
  template <class M, class... Args>
  M& emplace(std::string key, Args&&... args) {
    auto m = std::make_unique<M>(std::forward<Args>(args)...);
    M& ref = *m;
    insert(std::move(key), std::move(m));
    return ref;
  }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  bool contains(std::string_view key) const;
  /// The module under `key`; throws IndexError naming the key when absent.
  Module& operator[](std::string_view key) const;
  template <class M>
  M& at(std::string_view key) const {
    auto* p = dynamic_cast<M*>(&(*this)[key]);
    if (!p)
      throw Error("ModuleDict::at: '" + std::string(key) + "' is a " + (*this)[key].type_name());
    return *p;
  }
  /// Keys in insertion order.
  std::vector<std::string> keys() const;
  /// (key, module) pairs in insertion order.
  std::vector<std::pair<std::string, Module*>> items() const;
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }
  std::string type_name() const override { return "ModuleDict"; }

 private:
  std::vector<std::pair<std::string, std::unique_ptr<Module>>> items_;
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
