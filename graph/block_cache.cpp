#include "graph/block_cache.hpp"

#include <atomic>
#include <mutex>
#include <new>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "graph/node_pool.hpp"
#include "graph/tensor.hpp"

namespace tg {

namespace {

struct BlockCache {
  std::mutex mutex;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;  // by exact size
  size_t cached_bytes = 0;
  size_t live_bytes = 0;  // handed out and not freed yet (Note [A miss releases stale blocks])
  std::unordered_set<size_t> seen;  // sizes handed out before (the same Note)
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
// without page faults, but it has no per-thread cache (tcache) above 1 KB, so a malloc +
// free pair of these sizes goes through the arena's bins: far more work than taking a
// block back from the thread's own slots, and a visible part of a small op's fixed cost.
// Each thread keeps its last few freed blocks of these sizes (a handful of slots, LIFO,
// exact sizes, at most kLocalBytes): a training step frees and requests the same sizes over
// and over. The slots are plain data (valid until the thread ends); a separate thread_local
// object empties them when the thread exits, and `disabled` stops reuse from then on.
// (What a malloc + free pair cost: bench/README.md, "Measurements behind the Notes".)
constexpr size_t kLocalMin = detail::kLocalBlockMin;  // below: glibc's own cache is as fast
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

}  // namespace

namespace detail {

bool block_reuse_enabled() noexcept { return g_local_enabled.load(std::memory_order_relaxed); }

void* block_allocate(size_t bytes) {
  if (bytes >= kLocalMin && bytes < kCachedBlockMin) {
    if (void* p = local_take(bytes)) return p;
  } else if (bytes >= kCachedBlockMin) {
    BlockCache& c = cache();
    std::lock_guard lock(c.mutex);
    c.live_bytes += bytes;
    auto it = c.free_blocks.find(bytes);
    if (it != c.free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.cached_bytes -= bytes;
      return p;
    }
    // Note [A miss releases stale blocks]: a size the cache does not hold may mean the work
    // changed shape (evaluation at another batch size after training steps, the next layer
    // of a network run without recording). The blocks kept for the old shapes would then
    // sit on top of the new ones, so peak memory would grow to the sum of every shape's
    // buffers, up to the cache limit. So a miss releases as many cached bytes as the new
    // block takes, which keeps (live + cached) where it was -- but never below the bytes in
    // use (this block included): a miss in the middle of a training step, while the step
    // holds more than the cache (a backward pass holding the forward's activations), is one
    // of the step's own sizes in a new mix, and the cached blocks are the step's other
    // sizes, which the next step asks for again. Released there, they came back as fresh
    // pages every step (about 2,400 page faults per Transformer step of bench_seq, ~10% of
    // its time). A steady training loop then hits the cache and never comes here; a return
    // to an old shape costs one miss per buffer. The floor holds for sizes handed out before
    // only: a size never seen is new work (the evaluation at batch 1000 after training at
    // 128), and what is in use then may be long-lived data (a training set loaded as
    // tensors), which must not keep the old shapes' blocks under the new ones. The set of
    // sizes is bounded: past kSeenSizesMax it starts over.
    constexpr size_t kSeenSizesMax = 4096;
    if (c.seen.size() >= kSeenSizesMax) c.seen.clear();
    const size_t floor = c.seen.insert(bytes).second ? 0 : c.live_bytes;
    if (c.cached_bytes > floor) {
      const size_t target = c.cached_bytes > bytes ? c.cached_bytes - bytes : 0;
      c.trim_to(target > floor ? target : floor);
    }
  }
  try {
    try {
      return ::operator new(bytes);
    } catch (const std::bad_alloc&) {
      // Out of memory: the cached blocks are memory nobody uses. Release them all and try
      // once more before giving up (PyTorch's caching allocator does the same).
      {
        BlockCache& c = cache();
        std::lock_guard lock(c.mutex);
        c.trim_to(0);
      }
      return ::operator new(bytes);
    }
  } catch (...) {
    if (bytes >= kCachedBlockMin) {
      BlockCache& c = cache();
      std::lock_guard lock(c.mutex);
      c.live_bytes -= bytes;
    }
    throw;
  }
}

void block_free(void* p, size_t bytes) {
  if (bytes >= kLocalMin && bytes < kCachedBlockMin) {
    if (local_keep(p, bytes)) return;
  } else if (bytes >= kCachedBlockMin) {
    BlockCache& c = cache();
    std::lock_guard lock(c.mutex);
    c.live_bytes -= bytes;
    if (c.cached_bytes + bytes <= c.limit) {
      c.free_blocks[bytes].push_back(p);
      c.cached_bytes += bytes;
      return;
    }
  }
  ::operator delete(p);
}

}  // namespace detail

namespace debug {

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
    detail::drop_recycled_blocks();
  }
}

}  // namespace debug

}  // namespace tg
