#include "graph/forward_ad.hpp"

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "graph/engine_ops.hpp"
#include "graph/error.hpp"
#include "graph/fused_tangent.hpp"

namespace tg {

// Note [Tangent storage]
// A value's tangent is a field of its node (Node::tangent), as PyTorch keeps it in the
// tensor's autograd metadata: an op reads its inputs' tangents with one load each, and an
// op with no tangent on any input pays nothing more (and outside a level, not even that:
// one thread-local flag, detail::fw_enabled, guards it all). The open level lists the nodes
// that hold a tangent (their slot is Node::tangent_slot); a node that dies first takes
// itself off the list, and closing the level drops every listed tangent, so none survives
// it. A node holding a tangent is recycled like any plain node (Note [Node recycling]): it
// leaves the list and drops its tangent first.
//
// The level belongs to the thread that opened it, and only that thread adds to the list
// (tangents propagate on it alone), so attaching a tangent and a node dying on that thread
// take no lock: a freed slot goes on the owner's free list for the next attach. A node may
// still die on another thread (a value handed to a worker): that rare path takes the
// level's mutex and clears its slot (an atomic word) without reusing it. The slots live in
// chunks that never move, so the owner appends to them while another thread clears one; the
// mutex orders that thread's chunk lookup with the owner adding a chunk, and with the close.
namespace {
constexpr uint32_t kChunkSlots = 1024;
using Slot = std::atomic<Node*>;

struct Level {
  std::mutex mu;  // open/close, adding a chunk, and a node dying on another thread
  std::atomic<bool> open{false};
  std::vector<std::unique_ptr<Slot[]>> chunks;  // slot s: chunks[s / kChunkSlots][s % ...]
  // The owner thread's alone:
  uint32_t used = 0;                 // slots handed out
  std::vector<uint32_t> free_slots;  // handed out and freed again on the owner thread

  Slot& slot(uint32_t s) { return chunks[s / kChunkSlots][s % kChunkSlots]; }
};
Level& level() {
  static Level l;
  return l;
}
thread_local bool t_owner = false;  // this thread opened the level that is open
}  // namespace

namespace detail {

void forget_tangent(Node& n) noexcept {
  Level& l = level();
  const uint32_t s = n.tangent_slot;
  if (t_owner) {
    l.slot(s).store(nullptr, std::memory_order_relaxed);
    try {
      l.free_slots.push_back(s);
    } catch (...) {  // out of memory: the slot is not reused
    }
    return;
  }
  std::lock_guard<std::mutex> lock(l.mu);
  if (!l.open.load(std::memory_order_relaxed) || s / kChunkSlots >= l.chunks.size()) return;
  Node* expected = &n;
  l.slot(s).compare_exchange_strong(expected, nullptr, std::memory_order_relaxed);
}

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
  if (!t_owner) throw Error("forward mode: no DualLevel is open on this thread");
  Level& l = level();
  uint32_t s;
  if (!l.free_slots.empty()) {
    s = l.free_slots.back();
    l.free_slots.pop_back();
  } else {
    if (l.used == l.chunks.size() * kChunkSlots) {
      auto chunk = std::make_unique<Slot[]>(kChunkSlots);
      std::lock_guard<std::mutex> lock(l.mu);
      l.chunks.push_back(std::move(chunk));
    }
    s = l.used++;
  }
  l.slot(s).store(&n, std::memory_order_relaxed);
  n.tangent_slot = s;
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

// Note [Fused tangents]
// A JVP rule written with ops costs, per op, a second op's dispatch, allocation and call,
// plus the rule's own context; on a small tensor that is as much as the value's op. When
// nothing records (the common forward-mode use: grad mode off, or inputs and tangents that
// want no gradient), an elementwise op computes its output's tangent with a raw kernel right
// after its value (fuse_tangent / fused_dual): mul's t_a b + a t_b in one pass beside a b, a
// unary op's tangent from its input and output in one pass, add and sub passing a single
// tangent through. The rule with ops stays for the recorded case, so reverse mode can still
// differentiate a tangent (reverse-over-forward); tests/test_gradcheck_ops.cpp compares the
// two on every row of the gradcheck table.
bool fuse_tangent_ok(const VarRef* inputs, size_t n) {
  if (anomaly_enabled) return false;
  bool any = false;
  for (size_t i = 0; i < n; ++i) {
    const Var& v = inputs[i];
    if (!v.defined()) continue;
    const Var& t = v.node()->tangent;
    if (grad_enabled && (v.requires_grad() || t.requires_grad())) return false;
    any = any || t.defined();
  }
  return any;
}

Var fused_dual(Tensor&& value, Var tangent) {
  Var out(value_node(std::move(value)));
  if (tangent.defined()) attach(*out.node(), std::move(tangent));
  return out;
}

Var sum_dual(const Var& a, const Var& b, Tensor&& y, double s) {
  const Var &ta = a.node()->tangent, &tb = b.node()->tangent;
  if (!tb.defined()) return fused_dual(std::move(y), ta);
  if (!ta.defined() && s == 1.0) return fused_dual(std::move(y), tb);
  Tensor t = ta.defined() ? kern::zip(ta.value(), tb.value(), "add",
                                      [s](auto p, auto q) { return p + decltype(p)(s) * q; })
                          : kern::map(tb.value(), "neg", [](auto q) { return -q; });
  return fused_dual(std::move(y), Var(std::move(t)));
}

Var pass_fused_slow(const Var& x, Tensor& y) {
  if (!fuse_tangent({x})) return Var();
  return fused_dual(std::move(y), x.node()->tangent);
}

}  // namespace detail

Var JvpCtx::tangent_or_zeros(size_t i) const {
  const Var& t = tangent(i);
  if (t.defined()) return t;
  return Var(zeros(input(i).shape(), input(i).dtype()));
}

namespace fwd {

DualLevel::DualLevel() {
  Level& l = level();
  std::lock_guard<std::mutex> lock(l.mu);
  if (l.open.load(std::memory_order_relaxed))
    throw Error(
        "fwd::DualLevel: a level is already open; nested forward-mode levels are not supported");
  l.open.store(true, std::memory_order_release);
  t_owner = true;
  detail::fw_enabled = true;
}

DualLevel::~DualLevel() {
  Level& l = level();
  std::vector<Var> dropped;  // destroyed after the lock: a dying tangent may hold duals
  {
    std::lock_guard<std::mutex> lock(l.mu);
    for (uint32_t s = 0; s < l.used; ++s)
      if (Node* n = l.slot(s).exchange(nullptr, std::memory_order_relaxed))
        dropped.push_back(std::move(n->tangent));
    l.open.store(false, std::memory_order_release);
  }
  t_owner = false;
  detail::fw_enabled = false;
  dropped.clear();  // a node dying here finds the level closed
  std::lock_guard<std::mutex> lock(l.mu);
  l.chunks.clear();
  l.used = 0;
  l.free_slots.clear();
}

bool level_active() { return level().open.load(std::memory_order_acquire); }

Var make_dual(const Var& primal, const Var& tangent) {
  if (!t_owner)
    throw Error(level_active()
                    ? "make_dual: the open fwd::DualLevel belongs to another thread"
                    : "make_dual: no fwd::DualLevel is open (open one to make dual values)");
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
