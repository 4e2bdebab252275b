#include "graph/forward_ad.hpp"

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "graph/asan.hpp"
#include "graph/block_cache.hpp"
#include "graph/engine_ops.hpp"
#include "graph/error.hpp"
#include "graph/fused_tangent.hpp"
#include "graph/node_pool.hpp"

namespace tg {

// Note [Tangent storage]
// A value's tangent belongs to its node, as PyTorch keeps it in the tensor's autograd
// metadata; the node points to its slot in the open level's list (Node::tangent_slot, null:
// no tangent), and the slot holds the tangent as a bare tensor. An op reads its inputs'
// tangents through their slots, and an op with no tangent on any input pays nothing more
// (and outside a level, not even that: one thread-local flag, detail::fw_enabled, guards it
// all). A tangent that comes from a fused kernel (Note [Fused tangents]) is that tensor
// alone: the op makes one node and two buffers, not a second value. A tangent that is a value
// of its own (make_dual's, a JVP rule's result, which reverse mode may differentiate) is also
// kept as a Var in Node::tangent; for a bare tangent that Var is made on first use (a JVP
// rule reading it, unpack_dual), holding the same buffer. A node that dies first takes itself
// off the list, and closing the level drops every listed tangent, so none survives it. A node
// holding a tangent is recycled like any plain node (Note [Node recycling]): it leaves the
// list and drops its tangent first.
//
// The level belongs to the thread that opened it, and only that thread adds to the list
// (tangents propagate on it alone), so attaching a tangent and a node dying on that thread
// take no lock: a freed slot goes on the owner's free list for the next attach. A node may
// still die on another thread (a value handed to a worker): that rare path takes the level's
// mutex and clears its slot (an atomic word) without reusing it; reading a tangent on another
// thread (unpack_dual there) takes the mutex too. The slots live in chunks that never move
// and are never freed, so a node's pointer to its slot stays valid, and the owner appends to
// them while another thread clears one; the mutex orders that with the owner adding a chunk,
// and with the close. The chunks outlive a level, emptied, for the next one (a level per
// call, as func::jvp opens, would otherwise allocate and clear them each time).
namespace detail {
// A slot's tensor is n's tangent while the slot lists a node n; a free slot's tensor is empty
// or a kept buffer (Note [Kept tangent buffers]).
struct TangentSlot {
  std::atomic<Node*> node{nullptr};
  Tensor tangent;
};
}  // namespace detail

namespace {
using Slot = detail::TangentSlot;
constexpr uint32_t kChunkSlots = 1024;

struct Level {
  std::mutex mu;  // open/close, adding a chunk, and a node dying on another thread
  std::atomic<bool> open{false};
  std::vector<std::unique_ptr<Slot[]>> chunks;  // slot s: chunks[s / kChunkSlots][s % ...]
  // The owner thread's alone:
  uint32_t used = 0;                   // slots handed out
  std::vector<Slot*> free_slots;       // handed out and freed again on the owner thread
  static constexpr int kMaxKept = 64;  // Note [Kept tangent buffers]
  int kept = 0;                        // free slots holding a buffer

  Slot& slot(uint32_t s) { return chunks[s / kChunkSlots][s % kChunkSlots]; }
  bool has_chunk(uint32_t s) const { return s / kChunkSlots < chunks.size(); }
};
constinit Level g_level;
Level& level() { return g_level; }
thread_local bool t_owner = false;  // this thread opened the level that is open
}  // namespace

namespace detail {

// Note [Kept tangent buffers]
// A fused kernel's tangent is a new buffer per op, and on a small tensor its allocation and
// free (by malloc: the per-thread block cache starts at kLocalBlockMin, and the node pool
// keeps no block for a tangent) cost as much as the kernel. So when a tangent under
// kLocalBlockMin bytes dies on the owner thread with no other holder of its buffer (its node
// died or was recycled), its slot keeps the tensor, up to kMaxKept slots at a time; the free
// list hands out the most recently freed slot first, and a fused kernel given a slot with a
// buffer of exactly its block size writes into it (tangent_buffer), with no allocation and
// nothing moved. The same holds for a tangent passed through unchanged (add's, when one
// operand has a tangent): a kept buffer of its size takes a copy, since copying a few
// elements costs less than sharing the buffer (an atomic increment, and an atomic decrement
// when the first holder dies) and freeing the kept one. Larger blocks are left to the
// per-thread cache, which hands back the most recently freed block of any value or tangent
// (warmer in cache than a block kept for tangents alone: on 64x64 kept blocks made forward
// mode slower), and a larger passed-through tangent shares its buffer. Kept buffers are the
// owner thread's alone (fused kernels run only there), count in live_tensor_bytes while kept,
// and are freed when the level closes; none is kept when the tensor cache is disabled (a
// limit of 0) or under AddressSanitizer (the pool's sole_block_bytes is then 0), so a use
// after free is still caught.
namespace {
// Takes a slot's tangent on the owner thread, keeping its buffer if it can. (A kept
// buffer's block is storage_block_bytes of its data: tangents are whole buffers, made by
// Tensor::empty or reused whole.)
void drop_tangent(Level& l, Tensor& t) noexcept {
#ifndef TG_UNDER_ASAN
  if (t.storage_use_count() == 1 && storage_block_bytes(t.nbytes()) < kLocalBlockMin &&
      l.kept < Level::kMaxKept && block_reuse_enabled()) {
    ++l.kept;
    return;
  }
#endif
  t = Tensor();
}

// Whether dst holds a kept buffer of exactly the block a tensor of shape and dtype takes;
// if so, dst becomes that tensor (contents unspecified).
bool reuse_kept(Tensor& dst, const Shape& shape, Dtype dtype) {
  if (!dst.defined()) return false;
  if (dst.dtype() == dtype && dst.shape() == shape) return true;  // the common case
  const int64_t numel = shape.numel();
  if (sole_block_bytes(dst) != storage_block_bytes(static_cast<size_t>(numel) * itemsize(dtype)))
    return false;
  reuse_block_as(dst, shape, numel, dtype);
  return true;
}
}  // namespace

void tangent_buffer(Tensor& dst, const Shape& shape, Dtype dtype) {
  if (!reuse_kept(dst, shape, dtype)) dst = Tensor::empty(shape, dtype);
}

void forget_tangent(Node& n) noexcept {
  Level& l = level();
  Slot* const s = n.tangent_slot;
  n.tangent_slot = nullptr;
  if (t_owner) {
    Slot& slot = *s;
    slot.node.store(nullptr, std::memory_order_relaxed);
    drop_tangent(l, slot.tangent);
    try {
      l.free_slots.push_back(s);
    } catch (...) {  // out of memory: the slot is not reused
      if (slot.tangent.defined()) {
        slot.tangent = Tensor();
        --l.kept;
      }
    }
    return;
  }
  std::lock_guard<std::mutex> lock(l.mu);
  if (!l.open.load(std::memory_order_relaxed)) return;
  Node* expected = &n;  // (a slot's chunk lives as long as the program)
  if (s->node.compare_exchange_strong(expected, nullptr, std::memory_order_relaxed))
    s->tangent = Tensor();
}

void throw_no_jvp(const char* op) {
  throw Error(std::string("forward-mode AD is not implemented for ") + op +
              " (its record call gives no JVP rule)");
}

namespace {
// A free slot for n (which has no tangent), listing n; its tensor is empty or a kept buffer.
Slot& take_slot(Node& n) {
  if (!t_owner) throw Error("forward mode: no DualLevel is open on this thread");
  Level& l = level();
  Slot* s;
  if (!l.free_slots.empty()) {
    s = l.free_slots.back();
    l.free_slots.pop_back();
  } else {
    if (!l.has_chunk(l.used)) {
      auto chunk = std::make_unique<Slot[]>(kChunkSlots);
      std::lock_guard<std::mutex> lock(l.mu);
      l.chunks.push_back(std::move(chunk));
    }
    s = &l.slot(l.used++);
  }
  Slot& slot = *s;
  if (slot.tangent.defined()) --l.kept;
  slot.node.store(&n, std::memory_order_relaxed);
  n.tangent_slot = s;
  return slot;
}

// Stores `t` as n's tangent.
void attach(Node& n, Var t) {
  Slot& slot = n.tangent_slot ? *n.tangent_slot : take_slot(n);
  slot.tangent = t.value();
  n.tangent = std::move(t);
}

// The tensor in n's slot (n has a tangent). On another thread than the level's, under its
// mutex (an empty tensor once the level is closed).
Tensor tangent_tensor(const Node& n) {
  Level& l = level();
  if (t_owner) return n.tangent_slot->tangent;
  std::lock_guard<std::mutex> lock(l.mu);
  if (!l.open.load(std::memory_order_relaxed) || !n.tangent_slot) return Tensor();
  return n.tangent_slot->tangent;
}
}  // namespace

void make_tangent_var(Node& n) {
  Tensor t = tangent_tensor(n);
  if (t.defined()) n.tangent = Var(value_node(std::move(t)));
}

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
// want no gradient), an elementwise op's tangent comes instead from a raw kernel given to
// `record` beside the rule (detail::fused_jvp, graph/fused_tangent.hpp), run in record's
// forward-mode branch right after the value: mul's t_a b + a t_b in one pass, a unary op's
// tangent from its input and output in one pass, add and sub passing a single tangent's
// buffer through. The tangent is stored as a bare tensor (Note [Tangent storage]). Being in
// record's forward-mode branch, which an op outside a level never takes, the kernels cost
// nothing there. The rule with ops stays for the recorded case, so reverse mode can still
// differentiate a tangent (reverse-over-forward); tests/test_gradcheck_ops.cpp compares the
// two on every row of the gradcheck table.
Tensor* fused_tangent_slot(const Var* const* inputs, size_t n, const Tensor** tangents,
                           const Var& out) {
  if (anomaly_enabled) return nullptr;
  const Tensor& y = out.value();
  for (size_t i = 0; i < n; ++i) {
    const Var& v = *inputs[i];
    tangents[i] = nullptr;
    // The inputs broadcast to y: of its rank and size, they have its shape (unless empty).
    const Tensor& x = v.value();
    if (x.numel() != y.numel() || x.dim() != y.dim() || (y.numel() == 0 && x.shape() != y.shape()))
      return nullptr;
    if (!has_tangent(v)) continue;
    const Node& node = *v.node();
    if (grad_enabled && node.tangent.requires_grad()) return nullptr;
    tangents[i] = &node.tangent_slot->tangent;
  }
  return &take_slot(*out.node()).tangent;
}

namespace {
// dst = a + s b (b may be null: dst = s a), elementwise over tensors of one shape.
void axpy_tangent(Tensor& dst, const Tensor* a, const Tensor* b, double s) {
  tangent_buffer(dst, a->shape(), a->dtype());
  dispatch(a->dtype(), "add", [&]<class T>() {
    const T* pa = a->data<T>();
    T* o = dst.data<T>();
    const int64_t n = dst.numel();
    const T ts = static_cast<T>(s);
    if (b) {
      const T* pb = b->data<T>();
#pragma GCC ivdep  // dst is a new or kept buffer: no aliasing
      for (int64_t i = 0; i < n; ++i) o[i] = pa[i] + ts * pb[i];
    } else {
#pragma GCC ivdep
      for (int64_t i = 0; i < n; ++i) o[i] = ts * pa[i];
    }
  });
}

// dst = t: a copy in dst's kept buffer when it has one of t's size, else t's buffer.
void pass_on(const Tensor& t, Tensor* dst) {
  if (reuse_kept(*dst, t.shape(), t.dtype())) {
    const size_t bytes = t.nbytes();
    if (bytes == sizeof(double))  // one element (f64 or i64, or two f32): inline, no call
      std::memcpy(dst->raw_data(), t.raw_data(), sizeof(double));
    else if (bytes == sizeof(float))
      std::memcpy(dst->raw_data(), t.raw_data(), sizeof(float));
    else if (bytes != 0)
      std::memcpy(dst->raw_data(), t.raw_data(), bytes);
  } else
    *dst = t;
}

}  // namespace

void sum_tangent(const FusedCtx& c, Tensor* dst, double s) {
  const Tensor *ta = c.tangents[0], *tb = c.tangents[1];
  if (!tb)
    pass_on(*ta, dst);
  else if (!ta && s == 1.0)
    pass_on(*tb, dst);
  else if (!ta)
    axpy_tangent(*dst, tb, nullptr, s);
  else
    axpy_tangent(*dst, ta, tb, s);
}

void pass_tangent(const FusedCtx& c, Tensor* dst) { pass_on(*c.tangents[0], dst); }

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
    for (uint32_t s = 0; s < l.used; ++s) {
      Slot& slot = l.slot(s);
      if (Node* n = slot.node.exchange(nullptr, std::memory_order_relaxed)) {
        dropped.push_back(std::move(n->tangent));
        n->tangent_slot = nullptr;
      }
      slot.tangent = Tensor();  // a buffer (or a kept one): frees nothing else
    }
    l.open.store(false, std::memory_order_release);
  }
  t_owner = false;
  detail::fw_enabled = false;
  dropped.clear();  // a node dying here finds the level closed
  std::lock_guard<std::mutex> lock(l.mu);
  l.used = 0;  // the chunks (now empty) stay for the next level
  l.free_slots.clear();
  l.kept = 0;
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
  return {primal, detail::tangent_var(*v.node())};
}

}  // namespace fwd
}  // namespace tg
