#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <new>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "graph/small_vector.hpp"
#include "graph/tensor.hpp"

namespace tg {

class Node;
class Var;
class BackwardCtx;
class JvpCtx;

namespace detail {
struct NodePool;
struct TangentSlot;  // graph/forward_ad.cpp
void drop_node(Node* n) noexcept;
}  // namespace detail

/// An owning handle to a graph node. The count lives in the node itself (one word written
/// by one store, no separate control block): see Note [Node counts] in graph/var.cpp.
class NodePtr {
 public:
  NodePtr() = default;
  NodePtr(std::nullptr_t) {}
  NodePtr(const NodePtr& o) noexcept : p_(o.p_) { retain(); }
  NodePtr(NodePtr&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
  NodePtr& operator=(const NodePtr& o) noexcept {
    NodePtr(o).swap(*this);
    return *this;
  }
  NodePtr& operator=(NodePtr&& o) noexcept {
    NodePtr(std::move(o)).swap(*this);
    return *this;
  }
  inline ~NodePtr();
  void swap(NodePtr& o) noexcept { std::swap(p_, o.p_); }
  void reset() noexcept { NodePtr().swap(*this); }

  /// A new node of type T (Node or a subclass), owned by the returned handle.
  template <class T, class... Args>
  static NodePtr make(Args&&... args);

  Node* get() const { return p_; }
  Node& operator*() const { return *p_; }
  Node* operator->() const { return p_; }
  explicit operator bool() const { return p_ != nullptr; }
  /// Handles sharing the node (0 for an empty handle).
  inline long use_count() const;
  friend bool operator==(const NodePtr& a, const NodePtr& b) { return a.p_ == b.p_; }
  friend bool operator==(const NodePtr& a, std::nullptr_t) { return a.p_ == nullptr; }

 private:
  friend struct detail::NodePool;
  explicit NodePtr(Node* adopted) : p_(adopted) {}
  inline void retain() const noexcept;
  Node* p_ = nullptr;
};

/// One gradient per input of an op; an undefined Var means "no gradient" (zero).
using Grads = SmallVector<Var, 3>;
/// The inputs of a recorded op.
using Inputs = SmallVector<Var, 3>;
/// A gradient hook: receives the full gradient of a Var during backward; may return a
/// replacement (same shape) or an undefined Var to keep it.
using Hook = std::function<Var(const Var& grad)>;

/// Options of `Var::backward` / `tg::backward`.
struct BackwardOptions {
  /// Keep the recorded graph so that backward can run through it again.
  bool retain_graph = false;
  /// Record the backward pass itself, so gradients can be differentiated again
  /// (implies retain_graph).
  bool create_graph = false;
};

/// Options of `tg::grad`.
struct GradOptions {
  bool retain_graph = false;
  bool create_graph = false;
  /// Return an undefined Var for an input the outputs do not depend on (else throw).
  bool allow_unused = false;
};

/// Handle to a value in the recorded graph: a Tensor, whether it wants a gradient, its
/// accumulated gradient and the op that produced it. Copies share the same node.
class Var {
 public:
  Var() = default;
  /// A leaf holding `value`.
  explicit Var(Tensor value, bool requires_grad = false);
  explicit Var(NodePtr node) : node_(std::move(node)) {}

  bool defined() const { return node_ != nullptr; }
  /// The value (a handle: writing through it updates the value in place, as optimizers do).
  inline Tensor& value() const;
  /// Replaces a leaf's value (e.g. after a dtype conversion); throws for a non-leaf.
  void set_value(Tensor value);
  const Shape& shape() const { return value().shape(); }
  Dtype dtype() const { return value().dtype(); }
  int64_t numel() const { return value().numel(); }
  int dim() const { return value().dim(); }
  double item() const { return value().item(); }

  inline bool requires_grad() const;
  /// Turns gradient tracking of a leaf on or off.
  Var& requires_grad_(bool on = true);
  /// True when not produced by a recorded op.
  bool is_leaf() const;
  /// Name of the op that produced this value ("leaf" for leaves).
  const char* op() const;

  /// The accumulated gradient (undefined until a backward reaches this leaf).
  Var grad() const;
  void set_grad(Var g);
  /// Drops the accumulated gradient (the next backward starts from nothing).
  void zero_grad();
  /// Also keep the gradient of this non-leaf in `grad()` during backward.
  void retain_grad();

  /// Reverse-mode sweep from this value. Without `grad_output` the value must have one
  /// element (its gradient is 1).
  void backward(const Var& grad_output = {}, const BackwardOptions& options = {}) const;
  void backward(const BackwardOptions& options) const { backward(Var{}, options); }

  /// The same value, cut from the graph (a leaf that wants no gradient).
  Var detach() const;

  /// In-place ops (PyTorch's x.add_(y), ...; operands broadcast to this value's shape).
  /// They change the buffer, so its version goes up and a backward that saved it throws
  /// (Note [Saved versions] in graph/var.cpp). Allowed on a value that wants no gradient and
  /// on anything under NoGradGuard (as optimizer steps); a GraphError on a leaf that
  /// requires grad while grad mode is on (as PyTorch) and on a recorded value (tapegrad
  /// does not record in-place ops: use the out-of-place op).
  Var& add_(const Var& other, double alpha = 1.0);
  Var& mul_(const Var& other);
  Var& mul_(double s);
  Var& zero_();
  Var& fill_(double value);
  Var& copy_(const Var& src);
  Var& masked_fill_(const Var& mask, double value);
  Var& clamp_(double lo, double hi);

  /// Registers a hook called with this value's full gradient; returns its id.
  size_t register_hook(Hook hook);
  void remove_hook(size_t id);

  Node* node() const { return node_.get(); }
  const NodePtr& node_ptr() const { return node_; }

 private:
  NodePtr node_;
};

/// A leaf that wants a gradient (a trainable parameter).
inline Var param(Tensor value) { return Var(std::move(value), true); }
/// A leaf that wants no gradient.
inline Var constant(Tensor value) { return Var(std::move(value), false); }

std::ostream& operator<<(std::ostream& os, const Var& v);

/// One value in the graph. Users normally only meet it through `Var` and `record`.
/// See Note [Engine scratch] in graph/engine.cpp for the fields the engine uses.
class Node {
 public:
  Node();
  explicit Node(Tensor&& v);
  virtual ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  /// The backward formula: one gradient per input, given the output gradient.
  virtual Grads apply(const BackwardCtx& ctx, const Var& grad_output);

  // Node memory comes from per-thread free lists (Note [Node blocks] in
  // graph/node_pool.cpp); an over-aligned subclass (a backward closure capturing an aligned
  // type) takes the aligned global allocator.
  static void* operator new(size_t bytes);
  static void operator delete(void* p, size_t bytes) noexcept;
  static void* operator new(size_t bytes, std::align_val_t al) { return ::operator new(bytes, al); }
  static void operator delete(void* p, size_t, std::align_val_t al) noexcept {
    ::operator delete(p, al);
  }

  // A field added here must be reset in reset_for_reuse() (graph/var.cpp), which makes a
  // recycled node a fresh leaf again; tests/test_allocators.cpp checks every field.
  Tensor value;
  Var grad;
  Inputs inputs;
  const char* name = "leaf";  // the op that produced the value (a string literal)
  uint64_t seq = 0;           // recording order (for messages and DOT)
  std::vector<std::pair<size_t, Hook>> hooks;
  bool requires_grad = false;
  bool has_fn = false;         // made by record: apply() is the op's backward formula
  bool retains_grad = false;   // a non-leaf that also keeps its gradient in `grad`
  bool released = false;       // a backward without retain_graph freed its inputs and hooks
  bool pending_owned = false;  // engine scratch (Note [Engine scratch]), kept with the flags
  // Forward mode (graph/forward_ad.hpp): while a DualLevel is open, the slot in the level's
  // list that holds the tangent of `value` (null: none), and the tangent as a Var when it has
  // one (a JVP rule's result, or made on demand; Note [Tangent storage] in
  // graph/forward_ad.cpp).
  detail::TangentSlot* tangent_slot = nullptr;
  Var tangent;
  // The buffer versions of the inputs and, last, of the output when the op was recorded
  // (Note [Saved versions] in graph/var.cpp).
  SmallVector<uint32_t, 4> saved_versions;

  // Engine scratch (Note [Engine scratch]).
  Var pending;  // (and pending_owned, above)
  std::atomic<uint64_t> mark{0};

 private:
  friend class NodePtr;
  friend struct detail::NodePool;
  // Note [Node recycling] (graph/node_pool.cpp): whether a dying node may be recycled, and
  // the reset that makes a recycled node a fresh leaf again (its value is the pool's call).
  bool recyclable() const noexcept {
    return plain_ && !grad.defined() && inputs.empty() && hooks.empty() && !pending.defined();
  }
  void reset_for_reuse() noexcept;

  std::atomic<long> refs_{0};  // NodePtr handles (Note [Node counts])
  bool plain_ = false;  // a Node made by detail::value_node, no subclass (Note [Node recycling])
};

inline NodePtr::~NodePtr() {
  // The last handle needs no locked decrement: nobody else can copy it meanwhile.
  if (p_ && (p_->refs_.load(std::memory_order_acquire) == 1 ||
             p_->refs_.fetch_sub(1, std::memory_order_acq_rel) == 1))
    detail::drop_node(p_);
}

inline void NodePtr::retain() const noexcept {
  if (p_) p_->refs_.fetch_add(1, std::memory_order_relaxed);
}

inline long NodePtr::use_count() const {
  return p_ ? p_->refs_.load(std::memory_order_acquire) : 0;
}

template <class T, class... Args>
NodePtr NodePtr::make(Args&&... args) {
  static_assert(std::is_base_of_v<Node, T>);
  T* n = new T(std::forward<Args>(args)...);
  n->refs_.store(1, std::memory_order_relaxed);
  return NodePtr(n);
}

template <class F>
class FnNode final : public Node {
 public:
  explicit FnNode(F fn) : fn_(std::move(fn)) {}
  Grads apply(const BackwardCtx& ctx, const Var& grad_output) override {
    return fn_(ctx, grad_output);
  }

 private:
  F fn_;
};

/// What a backward formula can see: the op's inputs and its output. Reading an input's or
/// the output's value checks that its buffer was not changed in place since the op was
/// recorded (Note [Saved versions]); a formula that needs only a shape asks input_shape.
class BackwardCtx {
 public:
  explicit BackwardCtx(const NodePtr& node) : node_(node) {}
  const Var& input(size_t i) const {
    const Var& v = node_->inputs[i];
    if (i < node_->saved_versions.size() && v.defined() &&
        v.value().version() != node_->saved_versions[i]) [[unlikely]]
      throw_modified(i);
    return v;
  }
  /// The shape of input `i` (no check: a shape cannot change in place).
  const Shape& input_shape(size_t i) const { return node_->inputs[i].value().shape(); }
  size_t num_inputs() const { return node_->inputs.size(); }
  /// Whether input `i` wants a gradient (skip computing the ones that do not).
  bool needs_grad(size_t i) const;
  /// The op's own output (e.g. sigmoid's backward reuses y).
  Var output() const {
    const size_t k = node_->inputs.size();
    if (k < node_->saved_versions.size() && node_->value.version() != node_->saved_versions[k])
        [[unlikely]]
      throw_modified(k);
    return Var(node_);
  }
  /// Input `i`'s gradient summed so far in this backward, when the op may add its own part
  /// into it in place: no create_graph, no anomaly mode, and a buffer the engine owns of the
  /// input's shape and dtype (Note [Gradient accumulation]); otherwise an undefined tensor.
  /// An op that adds its part into it returns Var() for that input.
  Tensor accumulating_grad(size_t i) const;

 private:
  [[noreturn]] void throw_modified(size_t i) const;  // i == num_inputs(): the output
  const NodePtr& node_;
};

/// What a JVP rule can see: the op's inputs, their tangents and its output. Inside the rule
/// tangents do not propagate (its ops compute the tangent, they carry none of their own);
/// written with tapegrad's ops, it is recorded when grad mode is on, so reverse mode can
/// differentiate the tangent (reverse-over-forward).
class JvpCtx {
 public:
  JvpCtx(const Var* const* inputs, size_t n, const Var& output)
      : inputs_(inputs), n_(n), output_(output) {}
  const Var& input(size_t i) const { return *inputs_[i]; }
  const Shape& input_shape(size_t i) const { return inputs_[i]->shape(); }
  size_t num_inputs() const { return n_; }
  /// The tangent of input `i`; undefined means zero.
  inline const Var& tangent(size_t i) const;
  inline bool has_tangent(size_t i) const;
  /// The tangent of input `i`, zeros of its shape when it has none (for a rule that needs
  /// every operand, as concat's).
  Var tangent_or_zeros(size_t i) const;
  const Var& output() const { return output_; }

 private:
  const Var* const* inputs_;
  size_t n_;
  const Var& output_;
  static inline const Var none_{};
};

namespace detail {
/// What a fused tangent kernel sees (Note [Fused tangents] in graph/forward_ad.cpp): the
/// op's inputs, their tangents as tensors (null: none) and the output's value, all of one
/// shape.
struct FusedCtx {
  const Var* const* inputs;
  const Tensor* const* tangents;
  size_t n;
  const Tensor& y;
};
/// A JVP rule with a fused kernel: `rule` as any JVP rule (it runs whenever the op is
/// recorded, so its tangent can be differentiated, and for operands that broadcast);
/// `kernel(const FusedCtx& c, Tensor* dst)`, run instead when nothing records, writes the
/// output's tangent, computed with raw kernels, into `dst` (empty, or a kept buffer: Note
/// [Kept tangent buffers] in graph/forward_ad.cpp).
template <class R, class K>
struct FusedJvp {
  R rule;
  K kernel;
};
template <class R, class K>
FusedJvp<R, K> fused_jvp(R rule, K kernel) {
  return {std::move(rule), std::move(kernel)};
}
template <class J>
inline constexpr bool is_fused_jvp = false;
template <class R, class K>
inline constexpr bool is_fused_jvp<FusedJvp<R, K>> = true;
}  // namespace detail

namespace detail {
/// A node holding `value` and nothing else (a leaf, or an op result nothing records): a
/// recycled one when this thread has one (Note [Node recycling]).
NodePtr value_node(Tensor&& value);
/// A node holding a new, unwritten tensor of `shape` and `dtype`: a recycled node whose
/// block has exactly that size when this thread has one, else value_node's.
NodePtr output_node(const Shape& shape, Dtype dtype);

inline thread_local bool grad_enabled = true;
inline thread_local bool anomaly_enabled = false;
/// Whether ops propagate tangents on this thread: a DualLevel is open and no JVP rule is
/// running (graph/forward_ad.hpp). Outside a level this one flag is all an op pays.
inline thread_local bool fw_enabled = false;
void finish_record(Node& node);
void check_forward_anomaly(const char* op, const Tensor& value, const Var* const* inputs, size_t n);

/// Whether an op on these inputs is recorded: grad mode is on and one of them wants a
/// gradient.
template <class It>
bool records(It first, It last) {
  if (!grad_enabled) return false;
  for (It it = first; it != last; ++it)
    if (static_cast<const Var&>(*it).requires_grad()) return true;
  return false;
}

/// The JVP rule of an op recorded without one: reaching it with a tangent throws.
struct NoJvp {};

/// Runs an op's JVP rule when one of its inputs has a tangent (graph/forward_ad.cpp).
[[noreturn]] void throw_no_jvp(const char* op);
void forget_tangent(Node& n) noexcept;  // a dying node leaves the level's list
void set_op_tangent(const char* op, const Var& out, Var tangent);
inline bool has_tangent(const Var& v) { return v.defined() && v.node()->tangent_slot != nullptr; }
/// The tangent of a node that has one, as a Var (made on first use from the stored tensor).
void make_tangent_var(Node& n);
inline const Var& tangent_var(Node& n) {
  if (!n.tangent.defined()) [[unlikely]]
    make_tangent_var(n);
  return n.tangent;
}
/// When an elementwise op's output tangent may come from its fused kernel (no AnomalyGuard,
/// every input of the output's shape, no tangent that wants a gradient while grad mode is
/// on), `out`'s tangent for the kernel to write (it then has no Var of its own), with
/// `tangents` filled (null: none); else null.
Tensor* fused_tangent_slot(const Var* const* inputs, size_t n, const Tensor** tangents,
                           const Var& out);
/// Sets one of this thread's mode flags for its lifetime and restores it after (the base of
/// GradModeGuard, AnomalyGuard and FwModeGuard).
class FlagGuard {
 public:
  FlagGuard(bool& flag, bool value) : flag_(flag), prev_(flag) { flag = value; }
  ~FlagGuard() { flag_ = prev_; }
  FlagGuard(const FlagGuard&) = delete;
  FlagGuard& operator=(const FlagGuard&) = delete;

 private:
  bool& flag_;
  bool prev_;
};
/// Sets tangent propagation on this thread for its lifetime: off while a JVP rule runs; on
/// again for a rule that runs a function forward (checkpoint's), only inside a DualLevel.
class FwModeGuard : public FlagGuard {
 public:
  explicit FwModeGuard(bool on) : FlagGuard(fw_enabled, on) {}
};
class FwSuspend : public FwModeGuard {
 public:
  FwSuspend() : FwModeGuard(false) {}
};

// (Out of line, behind an unlikely branch: the recording path stays as small as it was
// without forward mode. Not cold: inside a level it is the hot path, fused kernels included.)
template <class J, class It>
[[gnu::noinline]] void forward_tangent(const char* op, const Var& out, It first, It last, J& jvp,
                                       bool recorded);

template <class F, class J, class It>
Var record_impl(const char* op, Tensor&& value, It first, It last, F&& backward, J&& jvp) {
  if (anomaly_enabled) {
    SmallVector<const Var*, 3> ptrs;
    for (It it = first; it != last; ++it) ptrs.push_back(&static_cast<const Var&>(*it));
    check_forward_anomaly(op, value, ptrs.data(), ptrs.size());
  }
  // An int or bool output (a comparison, an index) carries no gradient: nothing to record.
  if (!records(first, last) || !is_floating(value.dtype())) {
    Var out(value_node(std::move(value)));
    if (fw_enabled) [[unlikely]]
      forward_tangent(op, out, first, last, jvp, false);
    return out;
  }
  NodePtr node = NodePtr::make<FnNode<std::decay_t<F>>>(std::forward<F>(backward));
  node->value = std::move(value);
  for (It it = first; it != last; ++it) {
    const Var& in = static_cast<const Var&>(*it);
    node->inputs.push_back(in);
    node->saved_versions.push_back(in.defined() ? in.value().version() : 0);
  }
  node->saved_versions.push_back(node->value.version());
  node->name = op;
  node->requires_grad = true;
  node->has_fn = true;
  finish_record(*node);
  Var out(std::move(node));
  if (fw_enabled) [[unlikely]]
    forward_tangent(op, out, first, last, jvp, true);
  return out;
}

template <class J, class It>
[[gnu::noinline]] void forward_tangent(const char* op, const Var& out, It first, It last, J& jvp,
                                       bool recorded) {
  // An int or bool output (an index, a comparison) has no tangent.
  if (!is_floating(out.dtype())) return;
  constexpr size_t kInline = 4;
  const size_t n = static_cast<size_t>(last - first);
  const Var* inline_ins[kInline];
  std::vector<const Var*> heap_ins(n > kInline ? n : 0);
  const Var** ins = n > kInline ? heap_ins.data() : inline_ins;
  bool any = false;
  for (size_t i = 0; i < n; ++i) {
    ins[i] = &static_cast<const Var&>(first[i]);
    any = any || has_tangent(*ins[i]);
  }
  if (!any) return;
  if constexpr (std::is_same_v<std::decay_t<J>, NoJvp>) {
    throw_no_jvp(op);
  } else {
    auto& rule = [&]() -> auto& {
      if constexpr (is_fused_jvp<std::decay_t<J>>)
        return jvp.rule;
      else
        return jvp;
    }
    ();
    if constexpr (is_fused_jvp<std::decay_t<J>>) {  // elementwise ops: at most 2 inputs
      const Tensor* tangents[kInline];
      if (!recorded && n <= kInline)
        if (Tensor* dst = fused_tangent_slot(ins, n, tangents, out)) {
          jvp.kernel(FusedCtx{ins, tangents, n, out.value()}, dst);
          return;
        }
    }
    Var t;
    {
      FwSuspend off;
      t = rule(JvpCtx(ins, n, out));
    }
    set_op_tangent(op, out, std::move(t));
  }
}
}  // namespace detail

[[noreturn]] void throw_undefined(const char* what);

const Var& JvpCtx::tangent(size_t i) const {
  const Var& v = *inputs_[i];
  return detail::has_tangent(v) ? detail::tangent_var(*v.node()) : none_;
}
bool JvpCtx::has_tangent(size_t i) const { return detail::has_tangent(*inputs_[i]); }

inline bool Var::requires_grad() const { return node_ && node_->requires_grad; }

inline Tensor& Var::value() const {
  if (!node_) [[unlikely]]
    throw_undefined("value");
  return node_->value;
}

/// An input of `record`: refers to the caller's Var without copying it, so nothing is
/// copied when nothing is recorded.
class VarRef {
 public:
  VarRef(const Var& v) : v_(&v) {}  // implicit on purpose, so `{x, y}` works
  operator const Var&() const { return *v_; }

 private:
  const Var* v_;
};

/// Records an op: its output value, its inputs and its backward formula (a callable
/// `Grads(const BackwardCtx&, const Var& grad_output)` returning one gradient per
/// input, written with tapegrad's own ops so that it can itself be differentiated).
/// Nothing is recorded when grad mode is off or no input wants a gradient. The engine,
/// not the op, sums broadcast gradients back to each input's shape and accumulates them.
/// `op` must be a string with static storage (a literal).
///
/// `jvp`, optional, is the op's forward-mode rule: a callable `Var(const JvpCtx&)` returning
/// the output's tangent (J t, written with tapegrad's ops so it can be differentiated in
/// reverse mode; an undefined Var means zero; a shape that broadcasts to the output's is
/// expanded). It runs only inside a `fwd::DualLevel`, when an input has a tangent; an op
/// recorded without one throws there ("forward-mode AD is not implemented for <op>").
template <class F, class J = detail::NoJvp>
Var record(const char* op, Tensor value, std::initializer_list<VarRef> inputs, F&& backward,
           J&& jvp = {}) {
  return detail::record_impl(op, std::move(value), inputs.begin(), inputs.end(),
                             std::forward<F>(backward), std::forward<J>(jvp));
}

/// The same for a list of inputs known only at run time (e.g. concat's).
template <class F, class J = detail::NoJvp>
Var record(const char* op, Tensor value, std::span<const Var> inputs, F&& backward, J&& jvp = {}) {
  return detail::record_impl(op, std::move(value), inputs.begin(), inputs.end(),
                             std::forward<F>(backward), std::forward<J>(jvp));
}

namespace detail {
/// Records an op of one input whose Jacobian is symmetric (an elementwise op, whose Jacobian
/// is diagonal; softmax): `apply(ctx, d)` multiplies d by that Jacobian, reading
/// ctx.input(0) / ctx.output() (ctx is a BackwardCtx or a JvpCtx). Being its own transpose,
/// the one formula is the backward (d = dy) and the JVP rule (d = the tangent).
template <class A>
Var record_symmetric(const char* op, Tensor value, const Var& x, A apply) {
  return record(
      op, std::move(value), {x},
      [apply](const BackwardCtx& c, const Var& dy) { return Grads{apply(c, dy)}; },
      [apply](const JvpCtx& c) { return apply(c, c.tangent(0)); });
}
/// The same with a fused tangent kernel (detail::FusedJvp) for when nothing records.
template <class A, class K>
Var record_symmetric(const char* op, Tensor value, const Var& x, A apply, K kernel) {
  return record(
      op, std::move(value), {x},
      [apply](const BackwardCtx& c, const Var& dy) { return Grads{apply(c, dy)}; },
      fused_jvp([apply](const JvpCtx& c) { return apply(c, c.tangent(0)); }, std::move(kernel)));
}
}  // namespace detail

/// Records an op whose kernel writes its result into a tensor it is given, as matrix
/// products do: `fill(Tensor& out)` writes the value into `out`, a new tensor of `shape`
/// and `dtype`. When nothing records the op (and no AnomalyGuard checks it), `out` is the
/// value of a recycled node whose block has exactly that size (Note [Node recycling]), so
/// an unrecorded product allocates nothing. Otherwise the same as `record`.
template <class Fill, class F, class J = detail::NoJvp>
Var record_into(const char* op, const Shape& shape, Dtype dtype,
                std::initializer_list<VarRef> inputs, Fill&& fill, F&& backward, J&& jvp = {}) {
  if (!detail::anomaly_enabled && !detail::fw_enabled &&
      !detail::records(inputs.begin(), inputs.end())) {
    NodePtr node = detail::output_node(shape, dtype);
    fill(node->value);
    return Var(std::move(node));
  }
  Tensor out = Tensor::empty(shape, dtype);
  fill(out);
  return detail::record_impl(op, std::move(out), inputs.begin(), inputs.end(),
                             std::forward<F>(backward), std::forward<J>(jvp));
}

/// Whether ops record (thread-local; on by default).
inline bool is_grad_enabled() { return detail::grad_enabled; }

/// Sets grad mode for the current thread for its lifetime.
class GradModeGuard : public detail::FlagGuard {
 public:
  explicit GradModeGuard(bool enabled) : FlagGuard(detail::grad_enabled, enabled) {}
};

/// Nothing is recorded on this thread while it lives.
class NoGradGuard : public GradModeGuard {
 public:
  NoGradGuard() : GradModeGuard(false) {}
};

/// While it lives, every forward value and every gradient on this thread is checked for
/// NaN/Inf; the first one found throws AnomalyError naming the op.
class AnomalyGuard : public detail::FlagGuard {
 public:
  AnomalyGuard() : FlagGuard(detail::anomaly_enabled, true) {}
};

/// Queues `fn` to run once on this thread when the backward now running on it has finished
/// its sweep, after every gradient is in place (PyTorch's
/// `Variable._execution_engine.queue_callback`). A gradient hook uses it to act on the
/// whole backward: DistributedDataParallel (dist/ddp.hpp) waits there for the all-reduces
/// its hooks started. Callbacks run in the order queued; one that throws ends the backward
/// with its exception and the rest are dropped. The backward is the innermost one running:
/// a callback queued during a backward started inside another (from a hook or an op's
/// backward) runs when that nested backward ends (Note [Backward callbacks] in
/// graph/engine.cpp). Outside a backward: GraphError.
void queue_backward_callback(std::function<void()> fn);

/// Backward from several outputs at once.
void backward(const std::vector<Var>& outputs, const std::vector<Var>& grad_outputs = {},
              const BackwardOptions& options = {});

/// Gradients of `outputs` with respect to `inputs` (returned, not accumulated into
/// `.grad()`); `grad_outputs` defaults to ones for one-element outputs.
std::vector<Var> grad(const std::vector<Var>& outputs, const std::vector<Var>& inputs,
                      const std::vector<Var>& grad_outputs = {}, const GradOptions& options = {});

namespace debug {
/// Number of graph nodes alive (all threads).
int64_t live_nodes();
/// Recycled nodes: dropped nodes the calling thread keeps for reuse, and how many of them
/// keep their value's buffer (Note [Node recycling] in graph/node_pool.cpp); neither counts
/// as alive.
int recycled_nodes();
int recycled_node_buffers();
}  // namespace debug

}  // namespace tg
