#include "graph/block_cache.hpp"

#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "graph/tensor.hpp"

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

}  // namespace

namespace detail {

void* block_allocate(size_t bytes) {
  if (bytes >= kCachedBlockMin) {
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
  if (bytes >= kCachedBlockMin) {
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
}

}  // namespace debug

}  // namespace tg
