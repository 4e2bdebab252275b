#pragma once

// Internal: where graph nodes come from (graph/node_pool.cpp). Node memory comes from
// per-thread free lists by size class (Note [Node blocks]); a plain node that dies with
// nothing but its value is recycled, kept constructed for the next value this thread makes
// (Note [Node recycling]). Under AddressSanitizer both are off (graph/asan.hpp).

#include <cstddef>

#include "graph/tensor.hpp"

namespace tg::detail {

/// Nodes up to this many bytes (a Node and its backward closure) come from the free lists.
inline constexpr size_t kNodeBlockMax = 1024;
void* node_allocate(size_t bytes);
void node_free(void* p, size_t bytes) noexcept;

/// Frees the tensor blocks this thread's recycled nodes keep (the nodes stay recycled):
/// called when the tensor cache limit is set to 0.
void drop_recycled_blocks() noexcept;

/// The pool's access to a tensor's block, for forward mode's kept tangent buffers (Note
/// [Kept tangent buffers] in graph/forward_ad.cpp): the bytes of `t`'s block when `t` is
/// its only holder (0 otherwise), and that block made a new tensor of `shape` and `dtype`
/// whose data fill it exactly.
size_t sole_block_bytes(const Tensor& t) noexcept;
void reuse_block_as(Tensor& t, const Shape& shape, int64_t numel, Dtype dtype);

}  // namespace tg::detail
