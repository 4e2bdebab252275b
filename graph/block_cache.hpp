#pragma once

// Internal: where tensor buffers come from. Tiny blocks go straight to the C++ allocator;
// blocks from 1 KB up are kept when freed and handed out again for the same size: below
// kCachedBlockMin a few per thread (Note [Per-thread small blocks] in block_cache.cpp),
// from kCachedBlockMin up in one shared cache of up to 1 GiB.
//
// NOTE: a training step frees and reallocates the same large sizes every step. glibc serves
// such blocks (past its mmap threshold, up to 32 MB and beyond) with fresh mmap'ed pages,
// so every step paid a page fault and a kernel zeroing per 4 KB: 11,700 faults per step of
// a 1024-4096-1024 MLP at batch 256 (measured), ~10% of its time. Reusing the block avoids
// both.

#include <cstddef>
#include <cstdint>

namespace tg::detail {

inline constexpr size_t kCachedBlockMin = size_t{256} << 10;

void* block_allocate(size_t bytes);
void block_free(void* p, size_t bytes);

/// Graph nodes (Note [Node blocks] in block_cache.cpp): blocks up to kNodeBlockMax bytes from
/// per-thread free lists by 64-byte size class; larger ones from the C++ allocator.
inline constexpr size_t kNodeBlockMax = 1024;
void* node_allocate(size_t bytes);
void node_free(void* p, size_t bytes) noexcept;

}  // namespace tg::detail
