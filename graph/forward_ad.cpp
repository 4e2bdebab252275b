#include "graph/forward_ad.hpp"

#include <mutex>
#include <string>
#include <vector>

#include "graph/engine_ops.hpp"
#include "graph/error.hpp"

namespace tg {

// Note [Tangent storage]
// A value's tangent is a field of its node (Node::tangent), as PyTorch keeps it in the
// tensor's autograd metadata: an op reads its inputs' tangents with one load each, and an
// op with no tangent on any input pays nothing more (and outside a level, not even that:
// one thread-local flag, detail::fw_enabled, guards it all). The open level lists the nodes
// that hold a tangent (their slot is Node::tangent_slot); a node that dies first takes
// itself off the list, and closing the level drops every listed tangent, so none survives
// it. The list sits behind a mutex because a node may die on another thread; it is touched
// only in forward mode.
namespace {
struct Level {
  std::mutex mu;
  bool open = false;
  std::vector<Node*> nodes;  // slot -> node holding a tangent (null once it died)
};
Level& level() {
  static Level l;
  return l;
}
}  // namespace

namespace detail {

void forget_tangent(Node& n) noexcept {
  Level& l = level();
  std::lock_guard<std::mutex> lock(l.mu);
  if (n.tangent_slot < l.nodes.size() && l.nodes[n.tangent_slot] == &n)
    l.nodes[n.tangent_slot] = nullptr;
}

bool has_tangent(const Var& v) { return v.defined() && v.node()->tangent.defined(); }

void throw_no_jvp(const char* op) {
  throw Error(std::string("forward-mode AD is not implemented for ") + op +
              " (its record call gives no JVP rule)");
}

namespace {
void attach(Node& n, Var t) {
  if (n.tangent.defined()) {
    n.tangent = std::move(t);
    return;
  }
  Level& l = level();
  {
    std::lock_guard<std::mutex> lock(l.mu);
    if (!l.open) throw Error("forward mode: no DualLevel is open");
    n.tangent_slot = static_cast<uint32_t>(l.nodes.size());
    l.nodes.push_back(&n);
  }
  n.tangent = std::move(t);
}
}  // namespace

void set_op_tangent(const char* op, const Var& out, Var t) {
  if (!t.defined()) return;
  if (t.dtype() != out.dtype())
    throw DtypeError(std::string(op) + ": its JVP rule returned a " +
                     std::string(dtype_name(t.dtype())) + " tangent for a " +
                     std::string(dtype_name(out.dtype())) + " output");
  if (t.shape() != out.shape()) {
    FwSuspend off;
    t = expand(t, out.shape());  // a rule may return a tangent that broadcasts
  }
  attach(*out.node(), std::move(t));
}

}  // namespace detail

const Var& JvpCtx::tangent(size_t i) const {
  static const Var none;
  const Var& v = *inputs_[i];
  return v.defined() ? v.node()->tangent : none;
}

Var JvpCtx::tangent_or_zeros(size_t i) const {
  const Var& t = tangent(i);
  if (t.defined()) return t;
  return Var(zeros(input(i).shape(), input(i).dtype()));
}

namespace fwd {

DualLevel::DualLevel() {
  Level& l = level();
  std::lock_guard<std::mutex> lock(l.mu);
  if (l.open)
    throw Error(
        "fwd::DualLevel: a level is already open; nested forward-mode levels are not supported");
  l.open = true;
  detail::fw_enabled = true;
}

DualLevel::~DualLevel() {
  std::vector<Var> dropped;  // destroyed after the lock: a dying tangent may hold duals
  {
    Level& l = level();
    std::lock_guard<std::mutex> lock(l.mu);
    for (Node* n : l.nodes)
      if (n) dropped.push_back(std::move(n->tangent));
    l.nodes.clear();
    l.open = false;
  }
  detail::fw_enabled = false;
}

bool level_active() {
  Level& l = level();
  std::lock_guard<std::mutex> lock(l.mu);
  return l.open;
}

Var make_dual(const Var& primal, const Var& tangent) {
  if (!level_active())
    throw Error("make_dual: no fwd::DualLevel is open (open one to make dual values)");
  if (!primal.defined() || !tangent.defined())
    throw Error(std::string("make_dual: the ") + (primal.defined() ? "tangent" : "primal") +
                " is undefined");
  if (!is_floating(primal.dtype()) || tangent.dtype() != primal.dtype())
    throw DtypeError("make_dual: the primal is " + std::string(dtype_name(primal.dtype())) +
                     " and the tangent " + std::string(dtype_name(tangent.dtype())) +
                     "; both must be the same floating dtype");
  if (tangent.shape() != primal.shape())
    throw ShapeError("make_dual: the tangent has shape " + tangent.shape().str() +
                     " but the primal has shape " + primal.shape().str());
  Var out;
  {
    detail::FwSuspend off;
    out = record("make_dual", primal.value(), {primal},
                 [](const BackwardCtx&, const Var& dy) { return Grads{dy}; });
  }
  detail::attach(*out.node(), tangent);
  return out;
}

UnpackedDual unpack_dual(const Var& v) {
  if (!v.defined()) throw Error("unpack_dual: the value is undefined");
  if (!detail::has_tangent(v)) return {v, Var()};
  detail::FwSuspend off;
  Var primal = record("unpack_dual", v.value(), {v},
                      [](const BackwardCtx&, const Var& dy) { return Grads{dy}; });
  return {primal, v.node()->tangent};
}

}  // namespace fwd
}  // namespace tg
