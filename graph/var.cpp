#include "graph/var.hpp"

#include "graph/live_counter.hpp"
#include "graph/node_pool.hpp"

#include <ostream>
#include <string>

namespace tg {

namespace {
thread_local uint64_t t_seq = 0;
}  // namespace

namespace debug {
int64_t live_nodes() { return detail::g_live_nodes_counter.total(); }
}  // namespace debug

// Note [Node counts]: a Var is one pointer to its node, and the node counts its handles
// itself (NodePtr), not a std::shared_ptr. A shared_ptr's separate control block writes its
// two counts as two 4-byte stores and reads them back as one 8-byte word on release, a load
// the processor cannot forward from the pending stores (it waits for them); it also costs
// two virtual calls per node and a 16-byte handle. There are no weak handles: a hook that
// must not keep its own node alive captures the node's value (a Tensor), not the Var.
// (What the change saved: bench/README.md, "Measurements behind the Notes".)

Node::Node() { detail::g_live_nodes_counter.add(1); }
Node::Node(Tensor&& v) : value(std::move(v)) { detail::g_live_nodes_counter.add(1); }

// Every field as a new Node has it, except `value` (the pool keeps or drops it) and the
// handle count; recyclable() already required grad, inputs, hooks and pending to be empty.
void Node::reset_for_reuse() noexcept {
  name = "leaf";
  seq = 0;
  requires_grad = false;
  has_fn = false;
  retains_grad = false;
  released = false;
  pending_owned = false;
  saved_versions.clear();
  tangent_slot = nullptr;
  mark.store(0, std::memory_order_relaxed);
}

// Note [Iterative graph destruction]
// A node owns its inputs, so dropping the last handle to the end of a chain of a million
// ops would destroy a million nodes recursively and overflow the stack. Instead, a dying
// node moves its inputs (and gradient) onto an explicit stack; each popped node that nobody
// else holds gives up its own inputs the same way before it is destroyed, so every
// destructor below this one returns at once.
Node::~Node() {
  detail::g_live_nodes_counter.add(-1);
  if (tangent_slot != nullptr) [[unlikely]]
    detail::forget_tangent(*this);
  if (inputs.empty() && !grad.defined() && !pending.defined()) return;
  std::vector<NodePtr> stack;
  auto take = [&stack](Node& n) {
    for (auto& v : n.inputs)
      if (v.defined()) stack.push_back(v.node_ptr());
    n.inputs.clear();
    for (Var* v : {&n.grad, &n.pending})
      if (v->defined()) {
        stack.push_back(v->node_ptr());
        *v = Var();
      }
  };
  take(*this);
  while (!stack.empty()) {
    NodePtr n = std::move(stack.back());
    stack.pop_back();
    if (n.use_count() == 1) take(*n);
  }
}

Grads Node::apply(const BackwardCtx&, const Var&) {
  throw GraphError("backward: node '" + std::string(name) + "' has no backward formula");
}

// Note [Saved versions]
// A backward formula reads its op's inputs and output as they are when backward runs. If
// one of those buffers was changed in place in between (an optimizer step, fill_, copy_,
// an init), the formula would silently compute the gradient of another function. So every
// buffer counts its in-place changes (Tensor::version, bumped by the library's in-place
// operations and by Tensor::bump_version), record keeps the versions of the inputs and the
// output, and BackwardCtx::input / output compare them when a formula reads a value, as
// PyTorch does with the tensors it saves. Only what a formula reads is checked: a formula
// that needs a shape alone asks input_shape, so changing an input of `add` in place, whose
// gradient does not depend on it, is not an error. Views that share a buffer (reshape)
// share its count.
void BackwardCtx::throw_modified(size_t i) const {
  const Node& n = *node_;
  const bool out = i == n.inputs.size();
  const Tensor& t = out ? n.value : n.inputs[i].value();
  throw GraphError(
      "backward of op '" + std::string(n.name) + "' (node #" + std::to_string(n.seq) +
      "): " + (out ? std::string("its output ") : "its input " + std::to_string(i) + " ") +
      t.shape().str() + " was changed in place after the op saved it (version " +
      std::to_string(n.saved_versions[i]) + " then, " + std::to_string(t.version()) +
      " now); change a copy (clone()), or run backward before the change "
      "(an optimizer step, fill_, copy_)");
}

bool BackwardCtx::needs_grad(size_t i) const {
  const Var& v = node_->inputs[i];
  return v.defined() && v.node()->requires_grad;
}

static void check_can_require_grad(const Tensor& value, const char* what) {
  if (!is_floating(value.dtype()))
    throw DtypeError(std::string(what) +
                     ": only floating tensors (f32, f64) can require gradients, got " +
                     std::string(dtype_name(value.dtype())));
}

Var::Var(Tensor value, bool requires_grad) {
  if (requires_grad) check_can_require_grad(value, "Var");
  node_ = detail::value_node(std::move(value));
  node_->requires_grad = requires_grad;
}

static Node& checked(const NodePtr& n, const char* what) {
  if (!n) throw_undefined(what);
  return *n;
}

void throw_undefined(const char* what) {
  throw GraphError(std::string(what) + ": the Var is undefined");
}

void Var::set_value(Tensor value) {
  Node& n = checked(node_, "set_value");
  if (n.has_fn)
    throw GraphError("set_value: only a leaf's value can be replaced, not op '" +
                     std::string(n.name) + "'");
  n.value = std::move(value);
}

Var& Var::requires_grad_(bool on) {
  Node& n = checked(node_, "requires_grad_");
  if (n.has_fn)
    throw GraphError("requires_grad_: only leaves can change it; op '" + std::string(n.name) +
                     "' output requires grad because its inputs do (use detach())");
  if (on) check_can_require_grad(n.value, "requires_grad_");
  n.requires_grad = on;
  return *this;
}

bool Var::is_leaf() const { return !checked(node_, "is_leaf").has_fn; }
const char* Var::op() const { return checked(node_, "op").name; }
Var Var::grad() const { return checked(node_, "grad").grad; }
void Var::set_grad(Var g) {
  Node& n = checked(node_, "set_grad");
  if (g.defined() && (g.shape() != n.value.shape() || g.dtype() != n.value.dtype()))
    throw ShapeError("set_grad: gradient " + g.shape().str() + " " +
                     std::string(dtype_name(g.dtype())) + " does not match value " +
                     n.value.shape().str() + " " + std::string(dtype_name(n.value.dtype())));
  n.grad = std::move(g);
}
void Var::zero_grad() { checked(node_, "zero_grad").grad = Var(); }
void Var::retain_grad() {
  Node& n = checked(node_, "retain_grad");
  if (!n.requires_grad) throw GraphError("retain_grad: the value does not require grad");
  n.retains_grad = true;
}

void Var::backward(const Var& grad_output, const BackwardOptions& options) const {
  tg::backward({*this}, {grad_output}, options);
}

Var Var::detach() const { return Var(value(), false); }

// The buffer of an in-place op's target, once it is known the op may change it. `source`
// (the operand whose values go in) must not want a gradient while grad mode is on:
// in-place ops are not recorded, so its gradient would be lost without a word.
static Tensor& inplace_target(const NodePtr& node, const char* op, const Var* source = nullptr) {
  Node& n = checked(node, op);
  if (detail::grad_enabled && n.requires_grad) {
    if (!n.has_fn)
      throw GraphError(std::string(op) +
                       ": a leaf that requires grad cannot be changed in place while grad mode "
                       "is on (wrap the update in tg::NoGradGuard, as optimizers do)");
    throw GraphError(std::string(op) + ": the output of op '" + n.name +
                     "' requires grad; in-place ops are not recorded (use the out-of-place op)");
  }
  if (source && detail::grad_enabled && source->requires_grad())
    throw GraphError(std::string(op) +
                     ": the operand requires grad, and in-place ops are not recorded (its "
                     "gradient would be lost); use the out-of-place op");
  return n.value;
}

Var& Var::add_(const Var& other, double alpha) {
  inplace_target(node_, "add_", &other).add_(other.value(), alpha);
  return *this;
}
Var& Var::mul_(const Var& other) {
  inplace_target(node_, "mul_", &other).mul_(other.value());
  return *this;
}
Var& Var::mul_(double s) {
  inplace_target(node_, "mul_").mul_(s);
  return *this;
}
Var& Var::zero_() {
  inplace_target(node_, "zero_").zero_();
  return *this;
}
Var& Var::fill_(double value) {
  inplace_target(node_, "fill_").fill_(value);
  return *this;
}
Var& Var::copy_(const Var& src) {
  inplace_target(node_, "copy_", &src).copy_(src.value());
  return *this;
}
Var& Var::masked_fill_(const Var& mask, double value) {
  inplace_target(node_, "masked_fill_").masked_fill_(mask.value(), value);
  return *this;
}
Var& Var::clamp_(double lo, double hi) {
  inplace_target(node_, "clamp_").clamp_(lo, hi);
  return *this;
}

size_t Var::register_hook(Hook hook) {
  Node& n = checked(node_, "register_hook");
  if (!n.requires_grad)
    throw GraphError("register_hook: the value does not require grad, so no gradient reaches it");
  static std::atomic<size_t> next_id{1};
  const size_t id = next_id.fetch_add(1, std::memory_order_relaxed);
  n.hooks.emplace_back(id, std::move(hook));
  return id;
}

void Var::remove_hook(size_t id) {
  auto& hooks = checked(node_, "remove_hook").hooks;
  std::erase_if(hooks, [id](const auto& h) { return h.first == id; });
}

std::ostream& operator<<(std::ostream& os, const Var& v) {
  if (!v.defined()) return os << "Var(undefined)";
  os << "Var(" << v.value();
  if (!v.is_leaf()) os << ", op=" << v.op();
  if (v.requires_grad()) os << ", requires_grad";
  return os << ')';
}

namespace detail {

void finish_record(Node& node) { node.seq = ++t_seq; }

void check_forward_anomaly(const char* op, const Tensor& value, const Var* const* inputs,
                           size_t n) {
  if (!has_nonfinite(value)) return;
  std::string shapes;
  bool inputs_bad = false;
  for (size_t i = 0; i < n; ++i) {
    const Var& v = *inputs[i];
    if (!v.defined()) continue;
    if (!shapes.empty()) shapes += ", ";
    shapes += v.shape().str();
    inputs_bad |= has_nonfinite(v.value());
  }
  throw AnomalyError("anomaly: op '" + std::string(op) +
                     "' produced NaN/Inf in its forward value " + value.shape().str() +
                     " (inputs " + shapes + ")" +
                     (inputs_bad ? "; its inputs already held NaN/Inf" : ""));
}

}  // namespace detail
}  // namespace tg
