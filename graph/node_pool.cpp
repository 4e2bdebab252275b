#include "graph/node_pool.hpp"

#include <atomic>
#include <new>

#include "graph/asan.hpp"
#include "graph/block_cache.hpp"
#include "graph/live_counter.hpp"
#include "graph/tensor.hpp"
#include "graph/var.hpp"

namespace tg {

void* Node::operator new(size_t bytes) { return detail::node_allocate(bytes); }
void Node::operator delete(void* p, size_t bytes) noexcept { detail::node_free(p, bytes); }

namespace detail {

#ifdef TG_UNDER_ASAN

// Every node its own allocation, and none recycled, so a use after free is still caught.
void* node_allocate(size_t bytes) { return ::operator new(bytes); }
void node_free(void* p, size_t) noexcept { ::operator delete(p); }
void drop_node(Node* n) noexcept { delete n; }
void drop_recycled_blocks() noexcept {}

struct NodePool {
  static NodePtr make_plain(Tensor&& value) {
    NodePtr n = NodePtr::make<Node>(std::move(value));
    n->plain_ = true;
    return n;
  }
  static void reuse_block_as(Tensor& t, const Shape& shape, int64_t numel, Dtype dtype) {
    t.reuse_block_as(shape, numel, dtype);
  }
};

// No block is reused either (forward mode's kept tangent buffers included).
size_t sole_block_bytes(const Tensor&) noexcept { return 0; }
void reuse_block_as(Tensor& t, const Shape& shape, int64_t numel, Dtype dtype) {
  NodePool::reuse_block_as(t, shape, numel, dtype);
}

NodePtr value_node(Tensor&& value) { return NodePool::make_plain(std::move(value)); }
NodePtr output_node(const Shape& shape, Dtype dtype) {
  return value_node(Tensor::empty(shape, dtype));
}

#else

namespace {

// Note [Node blocks]: every recorded op and every op result allocates one graph node
// (sizeof(Node), 320 bytes on x86-64, plus its backward closure; tests/test_allocators.cpp
// pins the size). glibc keeps only 7 freed blocks per size in its per-thread cache, so a
// graph of thousands of nodes freed after backward and rebuilt by the next forward goes
// through the arena's shared lists, and even a cache hit (malloc + free) costs more than
// popping a block off a thread's own list. Each thread keeps freed node blocks in singly
// linked lists by 64-byte size class, up to kNodeListBytes per thread, and hands them out
// again for any node of that class. A block freed on another thread joins that thread's
// lists (all blocks come from operator new, so any thread may return them). (What a cache
// hit cost: bench/README.md, "Measurements behind the Notes".)
constexpr size_t kNodeClass = 64;
constexpr int kNodeClasses = static_cast<int>(kNodeBlockMax / kNodeClass);
constexpr size_t kNodeListBytes = size_t{2} << 20;

struct NodeLists {
  struct Free {
    Free* next;
  };
  Free* heads[kNodeClasses];
  size_t total;
  bool disabled;

  void release_all() {
    for (auto& head : heads)
      while (head) {
        Free* f = head;
        head = f->next;
        ::operator delete(f);
      }
    total = 0;
  }
};
thread_local constinit NodeLists t_nodes{};  // trivially destructible: usable during thread exit

struct NodeListsReaper {
  ~NodeListsReaper() {
    t_nodes.release_all();
    t_nodes.disabled = true;
  }
};
thread_local NodeListsReaper t_nodes_reaper;

int node_class(size_t bytes) { return static_cast<int>((bytes - 1) / kNodeClass); }

// Note [Node recycling]: a plain node (a leaf or an unrecorded op result, made by
// value_node: no formula, no subclass) that dies with no gradient, inputs, hooks or pending
// gradient is recycled: kept, still constructed, in a short per-thread stack, and the next
// value node this thread makes reuses it, with no node allocation, construction or
// destruction. When the dying node was the only holder of its value's block (of the sizes
// the per-thread block slots take), the block stays with it, and an op that writes its
// result in place (record_into) takes node and block in one pop. A node holding a
// forward-mode tangent is recycled too: it leaves the level's list and drops the tangent
// first (Note [Tangent storage] in graph/forward_ad.cpp). Node::reset_for_reuse makes a
// recycled node a fresh leaf. Recycled nodes and their blocks do not count as live
// (debug::live_nodes, live_tensor_bytes); a reaper frees them when the thread ends. (What
// recycling saves on an unrecorded product: bench/README.md, "Measurements behind the
// Notes".)
constexpr int kRecycledSlots = 16;
constexpr size_t kRecycledBytes = size_t{4} << 20;  // blocks kept with recycled nodes

// bytes: the block kept with each node's value (0: none). Trivially destructible.
struct RecycledNodes : SizedSlots<Node*, kRecycledSlots> {
  int capacity = kRecycledSlots;  // 0 once the thread's reaper has run
};
thread_local constinit RecycledNodes t_recycled{};

void free_recycled(bool blocks_only) noexcept;
struct RecycledNodesReaper {
  ~RecycledNodesReaper() {
    free_recycled(false);
    t_recycled.capacity = 0;
  }
};
thread_local RecycledNodesReaper t_recycled_reaper;

}  // namespace

// The pool's access to Node, NodePtr and Tensor internals, in one place.
struct NodePool {
  static NodePtr make_plain(Tensor&& value) {
    NodePtr n = NodePtr::make<Node>(std::move(value));
    n->plain_ = true;
    return n;
  }

  static void recycle(RecycledNodes& r, Node* n) noexcept {
    if (n->tangent_slot != nullptr) [[unlikely]]
      return recycle_dual(r, n);
    size_t kept = n->value.sole_block_bytes();
    if (kept < kLocalBlockMin || kept >= kCachedBlockMin || r.total + kept > kRecycledBytes)
      kept = 0;
    if (!block_reuse_enabled()) [[unlikely]] {
      kept = 0;  // the cache limit is 0: and this thread's other kept blocks go too
      if (r.total != 0) free_recycled(true);
    }
    if (kept == 0) n->value = Tensor();
    if (r.count == 0) (void)&t_recycled_reaper;  // registers the reaper for this thread
    n->reset_for_reuse();
    r.push(n, kept);
    add_live(-1, -static_cast<int64_t>(kept));
  }

  // A node holding a tangent leaves the level's list; its tangent is dropped once the node
  // is recycled (it may recycle nodes of its own).
  [[gnu::noinline]] static void recycle_dual(RecycledNodes& r, Node* n) noexcept {
    forget_tangent(*n);
    const Var tangent = std::move(n->tangent);
    recycle(r, n);
  }

  // Takes slot i out (the others keep their order); it counts as live again, with its block.
  static Node* take_raw(RecycledNodes& r, int i) noexcept {
    const size_t kept = r.bytes[i];
    Node* n = r.take(i);
    add_live(1, static_cast<int64_t>(kept));
    return n;
  }
  static NodePtr take(RecycledNodes& r, int i) noexcept {
    Node* n = take_raw(r, i);
    n->refs_.store(1, std::memory_order_relaxed);
    return NodePtr(n);
  }

  static void reuse_block_as(Node& n, const Shape& shape, int64_t numel, Dtype dtype) {
    n.value.reuse_block_as(shape, numel, dtype);
  }
  static void reuse_block_as(Tensor& t, const Shape& shape, int64_t numel, Dtype dtype) {
    t.reuse_block_as(shape, numel, dtype);
  }
  static size_t sole_block_bytes(const Tensor& t) { return t.sole_block_bytes(); }

  static bool recyclable(const Node& n) { return n.recyclable(); }
};

namespace {
// Frees the recycled nodes (or only their blocks). Each is counted live again first: the
// destructor, or the value's release, uncounts it.
void free_recycled(bool blocks_only) noexcept {
  RecycledNodes& r = t_recycled;
  if (blocks_only) {
    for (int i = 0; i < r.count; ++i)
      if (r.bytes[i] != 0) {
        g_live_bytes_counter.add(static_cast<int64_t>(r.bytes[i]));
        r.total -= r.bytes[i];
        r.bytes[i] = 0;
        r.items[i]->value = Tensor();
      }
    return;
  }
  while (r.count > 0) delete NodePool::take_raw(r, r.count - 1);  // not dropped: recycled again
}
}  // namespace

void* node_allocate(size_t bytes) {
  if (bytes == 0 || bytes > kNodeBlockMax) return ::operator new(bytes);
  const int c = node_class(bytes);
  NodeLists& l = t_nodes;
  if (NodeLists::Free* f = l.heads[c]) {
    l.heads[c] = f->next;
    l.total -= (static_cast<size_t>(c) + 1) * kNodeClass;
    return f;
  }
  return ::operator new((static_cast<size_t>(c) + 1) * kNodeClass);
}

void node_free(void* p, size_t bytes) noexcept {
  if (bytes == 0 || bytes > kNodeBlockMax) return ::operator delete(p);
  const int c = node_class(bytes);
  const size_t size = (static_cast<size_t>(c) + 1) * kNodeClass;
  NodeLists& l = t_nodes;
  if (l.disabled || l.total + size > kNodeListBytes) return ::operator delete(p);
  if (l.total == 0) (void)&t_nodes_reaper;  // registers the reaper for this thread
  auto* f = static_cast<NodeLists::Free*>(p);
  f->next = l.heads[c];
  l.heads[c] = f;
  l.total += size;
}

void drop_node(Node* n) noexcept {
  RecycledNodes& r = t_recycled;
  if (r.count < r.capacity && NodePool::recyclable(*n)) return NodePool::recycle(r, n);
  delete n;
}

void drop_recycled_blocks() noexcept { free_recycled(true); }

size_t sole_block_bytes(const Tensor& t) noexcept { return NodePool::sole_block_bytes(t); }
void reuse_block_as(Tensor& t, const Shape& shape, int64_t numel, Dtype dtype) {
  NodePool::reuse_block_as(t, shape, numel, dtype);
}

NodePtr value_node(Tensor&& value) {
  RecycledNodes& r = t_recycled;
  if (r.count > 0) {
    NodePtr n = NodePool::take(r, r.count - 1);
    n->value = std::move(value);  // drops a block kept with the node, if any
    return n;
  }
  return NodePool::make_plain(std::move(value));
}

NodePtr output_node(const Shape& shape, Dtype dtype) {
  // The most recently recycled node whose block has exactly the size needed (a loop of one
  // product takes the last one); else a new tensor in value_node's node.
  RecycledNodes& r = t_recycled;
  const int64_t numel = shape.numel();
  if (static_cast<uint64_t>(numel) > (size_t{1} << 40)) [[unlikely]]  // no recycled block is
    return value_node(Tensor::empty(shape, dtype));                   // that large
  const size_t want = storage_block_bytes(static_cast<size_t>(numel) * itemsize(dtype));
  for (int i = r.count - 1; i >= 0; --i)
    if (r.bytes[i] == want) [[likely]] {
      NodePtr n = NodePool::take(r, i);
      NodePool::reuse_block_as(*n, shape, numel, dtype);
      return n;
    }
  return value_node(Tensor::empty(shape, dtype));
}

#endif  // TG_UNDER_ASAN

}  // namespace detail

namespace debug {

int recycled_nodes() {
#ifndef TG_UNDER_ASAN
  return detail::t_recycled.count;
#else
  return 0;
#endif
}

int recycled_node_buffers() {
#ifndef TG_UNDER_ASAN
  int n = 0;
  const detail::RecycledNodes& r = detail::t_recycled;
  for (int i = 0; i < r.count; ++i) n += r.bytes[i] != 0;
  return n;
#else
  return 0;
#endif
}

}  // namespace debug

}  // namespace tg
