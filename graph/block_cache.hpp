#pragma once

// Internal: where tensor buffers come from. Tiny blocks go straight to the C++ allocator;
// blocks from 1 KB up are kept when freed and handed out again for the same size: below
// kCachedBlockMin a few per thread (Note [Per-thread small blocks] in block_cache.cpp),
// from kCachedBlockMin up in one shared cache of up to 1 GiB, which gives back as many
// cached bytes as a block of a size it lacks takes, never below the bytes in use unless the
// size was never handed out before (Note [A miss releases stale blocks]).
//
// NOTE: a training step frees and reallocates the same large sizes every step. glibc serves
// such blocks (past its mmap threshold, up to 32 MB and beyond) with fresh mmap'ed pages,
// so without reuse every step pays a page fault and a kernel zeroing for each 4 KB page of
// every large buffer. Reusing the block avoids both. (The faults it saved: bench/README.md,
// "Measurements behind the Notes".)

#include <cstddef>
#include <cstdint>

namespace tg::detail {

/// Blocks from kLocalBlockMin up to kCachedBlockMin are kept per thread; from
/// kCachedBlockMin up in the shared cache.
inline constexpr size_t kLocalBlockMin = 1024;
inline constexpr size_t kCachedBlockMin = size_t{256} << 10;

/// A short per-thread stack of (item, bytes) pairs, newest last: the small blocks a thread
/// keeps (Note [Per-thread small blocks]) and its recycled nodes with their blocks (Note
/// [Node recycling] in graph/node_pool.cpp). Plain data, so a thread_local one is usable
/// during thread exit.
template <class T, int N>
struct SizedSlots {
  T items[N];
  size_t bytes[N];
  int count = 0;
  size_t total = 0;  // the sum of bytes

  void push(T item, size_t b) noexcept {
    items[count] = item;
    bytes[count] = b;
    ++count;
    total += b;
  }
  // Takes slot i out, keeping the others in order.
  T take(int i) noexcept {
    T item = items[i];
    total -= bytes[i];
    for (int j = i + 1; j < count; ++j) {
      items[j - 1] = items[j];
      bytes[j - 1] = bytes[j];
    }
    --count;
    return item;
  }
};

void* block_allocate(size_t bytes);
void block_free(void* p, size_t bytes);
/// False while the tensor cache limit is 0: freed blocks are not kept anywhere.
bool block_reuse_enabled() noexcept;

}  // namespace tg::detail
