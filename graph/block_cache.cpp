#include "graph/block_cache.hpp"

#include <atomic>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "graph/live_counter.hpp"
#include "graph/recycle.hpp"
#include "graph/tensor.hpp"
#include "graph/var.hpp"

namespace tg {

namespace {

struct BlockCache {
  std::mutex mutex;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;  // by exact size
  size_t cached_bytes = 0;
  size_t limit = size_t{1} << 30;

  void trim_to(size_t target) {  // caller holds the mutex
    for (auto it = free_blocks.begin(); it != free_blocks.end() && cached_bytes > target;) {
      auto& blocks = it->second;
      while (!blocks.empty() && cached_bytes > target) {
        ::operator delete(blocks.back());
        blocks.pop_back();
        cached_bytes -= it->first;
      }
      it = blocks.empty() ? free_blocks.erase(it) : std::next(it);
    }
  }
};

BlockCache& cache() {
  static BlockCache* c = new BlockCache;  // never destroyed: buffers may outlive main
  return *c;
}

// Note [Per-thread small blocks]: below kCachedBlockMin glibc serves blocks from its heap
// without page faults, but a 4 KB-256 KB malloc + free pair still costs ~40-60 ns (no
// tcache above 1 KB), a third of the fixed cost of a 32x32 matmul. Each thread keeps its
// last few freed blocks of these sizes (a handful of slots, LIFO, exact sizes, at most
// kLocalBytes): a training step frees and requests the same sizes over and over. The slots
// are plain data (valid until the thread ends); a separate thread_local object empties
// them when the thread exits, and `disabled` stops reuse from then on.
constexpr size_t kLocalMin = 1024;  // below this glibc's own per-thread cache is as fast
constexpr int kLocalSlots = 16;
constexpr size_t kLocalBytes = size_t{4} << 20;
std::atomic<bool> g_local_enabled{true};  // false while the cache limit is 0

struct LocalBlocks : detail::SizedSlots<void*, kLocalSlots> {
  bool disabled = false;

  void release_all() {
    for (int i = 0; i < count; ++i) ::operator delete(items[i]);
    count = 0;
    total = 0;
  }
};
thread_local constinit LocalBlocks t_local{};  // trivially destructible: usable during thread exit

struct LocalBlocksReaper {
  ~LocalBlocksReaper() {
    t_local.release_all();
    t_local.disabled = true;
  }
};
thread_local LocalBlocksReaper t_reaper;

void* local_take(size_t bytes) {
  LocalBlocks& l = t_local;
  for (int i = l.count - 1; i >= 0; --i)
    if (l.bytes[i] == bytes) return l.take(i);
  return nullptr;
}

bool local_keep(void* p, size_t bytes) {
  LocalBlocks& l = t_local;
  if (l.disabled) return false;
  if (!g_local_enabled.load(std::memory_order_relaxed)) {
    l.release_all();
    return false;
  }
  (void)&t_reaper;  // registers the reaper for this thread
  while (l.count > 0 && (l.count == kLocalSlots || l.total + bytes > kLocalBytes))
    ::operator delete(l.take(0));  // drop the oldest
  l.push(p, bytes);
  return true;
}

#ifndef TG_NODE_LISTS_OFF
// Note [Node blocks]: every recorded op and every op result allocates one graph node
// (256 bytes plus its backward closure). glibc keeps only 7 freed blocks per size in its
// per-thread cache, so a graph of thousands of nodes freed after backward and rebuilt by
// the next forward goes through the arena's shared lists; and even a cache hit (malloc +
// free) was ~7 ns of the ~40 ns a no-grad op result costs. Each thread keeps freed node
// blocks in singly linked lists by 64-byte size class, up to kNodeListBytes per thread, and
// hands them out again for any node of that class. A block freed on another thread joins
// that thread's lists (all blocks come from operator new, so any thread may return them).
constexpr size_t kNodeClass = 64;
constexpr int kNodeClasses = static_cast<int>(detail::kNodeBlockMax / kNodeClass);
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
thread_local constinit NodeLists t_nodes{};  // trivially destructible, like t_local

struct NodeListsReaper {
  ~NodeListsReaper() {
    t_nodes.release_all();
    t_nodes.disabled = true;
  }
};
thread_local NodeListsReaper t_nodes_reaper;

int node_class(size_t bytes) { return static_cast<int>((bytes - 1) / kNodeClass); }

// Note [Node recycling]: a plain node (a leaf or an unrecorded op result, no formula) that
// dies with no gradient, inputs, hooks or pending gradient is kept, still constructed, in a
// short per-thread stack, and the next value node this thread makes reuses it: no node
// allocation, construction or destruction. When the dying node was the only holder of its
// value's block (of the sizes the per-thread block slots take), the block stays with it,
// and an op that writes its result in place (matrix_node) takes node and block in one pop.
// (Measured on a no-grad 32x32 matmul, ~615 ns of BLAS work: the cost beyond direct
// cblas_sgemm fell from ~38 to ~19 ns with this and the in-place product, gemm_node.) Kept
// nodes and blocks do not count as live (debug::live_nodes, live_tensor_bytes); the inline
// part, matrix_node's fast path, is in graph/recycle.hpp.
void release_ready(bool blocks_only) noexcept;
struct ReadyNodesReaper {
  ~ReadyNodesReaper() {
    release_ready(false);
    detail::t_ready.capacity = 0;
  }
};
thread_local ReadyNodesReaper t_ready_reaper;
#endif

}  // namespace

namespace detail {

thread_local constinit ReadyNodes t_ready{};

#ifndef TG_NODE_LISTS_OFF
void Internals::keep(ReadyNodes& r, Node* n) noexcept {
  // The value's block stays with the node when the value is its only holder and the block
  // is of the sizes the per-thread block slots take.
  size_t kept = 0;
  if (const Storage* st = n->value.storage_; st && st->refs.load(std::memory_order_acquire) == 1) {
    kept = st->block_bytes;
    if (kept < kLocalMin || kept >= kCachedBlockMin || r.total + kept > kReadyBytes) kept = 0;
  }
  if (!g_local_enabled.load(std::memory_order_relaxed)) [[unlikely]] {
    kept = 0;  // the cache limit is 0: and this thread's other kept blocks go too
    if (r.total != 0) release_ready(true);
  }
  if (kept == 0) n->value = Tensor();
  if (r.count == 0) (void)&t_ready_reaper;  // registers the reaper for this thread
  n->requires_grad = false;
  n->has_fn = false;
  n->retains_grad = false;
  n->released = false;
  n->name = "leaf";
  n->seq = 0;
  n->pending_owned = false;
  n->mark.store(0, std::memory_order_relaxed);
  r.push(n, kept);
  add_live(-1, -static_cast<int64_t>(kept));
}
#endif

void drop_node(Node* n) noexcept {
#ifndef TG_NODE_LISTS_OFF
  ReadyNodes& r = t_ready;
  if (r.count < r.capacity && Internals::recyclable(*n)) return Internals::keep(r, n);
#endif
  delete n;
}

NodePtr value_node(Tensor&& value) {
#ifndef TG_NODE_LISTS_OFF
  ReadyNodes& r = t_ready;
  if (r.count > 0) {
    Node* n = Internals::take(r, r.count - 1);
    n->value = std::move(value);  // drops a block kept with the node, if any
    return Internals::adopt(n);
  }
#endif
  NodePtr n = NodePtr::make<Node>(std::move(value));
  Internals::mark_plain(*n);
  return n;
}

NodePtr matrix_node_slow(int64_t rows, int64_t cols, Dtype dtype) {
#ifndef TG_NODE_LISTS_OFF
  int64_t numel;
  if (matrix_numel(rows, cols, numel)) {  // another size than the last one kept
    const size_t want = storage_block_bytes(static_cast<size_t>(numel) * itemsize(dtype));
    ReadyNodes& r = t_ready;
    for (int i = r.count - 1; i >= 0; --i)
      if (r.bytes[i] == want) {
        Node* n = Internals::take(r, i);
        Internals::set_matrix(n->value, rows, cols, numel, dtype);
        return Internals::adopt(n);
      }
  }
#endif
  return value_node(Tensor::empty_matrix(rows, cols, dtype));
}

}  // namespace detail

namespace {
#ifndef TG_NODE_LISTS_OFF
// Frees the kept nodes (or only their blocks). Each is counted live again first: the
// destructor, or the value's release, uncounts it.
void release_ready(bool blocks_only) noexcept {
  detail::ReadyNodes& r = detail::t_ready;
  if (blocks_only) {
    for (int i = 0; i < r.count; ++i)
      if (r.bytes[i] != 0) {
        detail::g_live_bytes_counter.add(static_cast<int64_t>(r.bytes[i]));
        r.total -= r.bytes[i];
        r.bytes[i] = 0;
        r.items[i]->value = Tensor();
      }
    return;
  }
  while (r.count > 0) delete detail::Internals::take(r, r.count - 1);
}
#endif
}  // namespace

namespace detail {

void* block_allocate(size_t bytes) {
  if (bytes >= kLocalMin && bytes < kCachedBlockMin) {
    if (void* p = local_take(bytes)) return p;
  } else if (bytes >= kCachedBlockMin) {
    BlockCache& c = cache();
    std::lock_guard lock(c.mutex);
    auto it = c.free_blocks.find(bytes);
    if (it != c.free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.cached_bytes -= bytes;
      return p;
    }
  }
  return ::operator new(bytes);
}

void block_free(void* p, size_t bytes) {
  if (bytes >= kLocalMin && bytes < kCachedBlockMin) {
    if (local_keep(p, bytes)) return;
  } else if (bytes >= kCachedBlockMin) {
    BlockCache& c = cache();
    std::lock_guard lock(c.mutex);
    if (c.cached_bytes + bytes <= c.limit) {
      c.free_blocks[bytes].push_back(p);
      c.cached_bytes += bytes;
      return;
    }
  }
  ::operator delete(p);
}

#ifdef TG_NODE_LISTS_OFF
// ASan builds: every node its own allocation, so a use after free is still caught.
void* node_allocate(size_t bytes) { return ::operator new(bytes); }
void node_free(void* p, size_t) noexcept { ::operator delete(p); }
#else
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
#endif

}  // namespace detail

namespace debug {

int kept_nodes() {
#ifndef TG_NODE_LISTS_OFF
  return detail::t_ready.count;
#else
  return 0;
#endif
}

int kept_node_buffers() {
#ifndef TG_NODE_LISTS_OFF
  int n = 0;
  const detail::ReadyNodes& r = detail::t_ready;
  for (int i = 0; i < r.count; ++i) n += r.bytes[i] != 0;
  return n;
#else
  return 0;
#endif
}

int64_t cached_tensor_bytes() {
  BlockCache& c = cache();
  std::lock_guard lock(c.mutex);
  return static_cast<int64_t>(c.cached_bytes);
}

void set_tensor_cache_limit(int64_t bytes) {
  BlockCache& c = cache();
  std::lock_guard lock(c.mutex);
  c.limit = bytes > 0 ? static_cast<size_t>(bytes) : 0;
  c.trim_to(c.limit);
  // Per-thread small blocks follow: off when the limit is 0 (each thread's slots are freed
  // the next time it frees a block; the calling thread's right now).
  g_local_enabled.store(c.limit > 0, std::memory_order_relaxed);
  if (c.limit == 0) {
    t_local.release_all();
#ifndef TG_NODE_LISTS_OFF
    release_ready(true);
#endif
  }
}

}  // namespace debug

}  // namespace tg
