#pragma once

// Internal: the plain nodes a thread keeps for reuse, with their value's block when they
// held it alone (Note [Node recycling] in graph/block_cache.cpp), and matrix_node's inline
// fast path: a no-grad product's result node taken in a few loads and stores.

#include <cstddef>
#include <cstdint>

#include "graph/block_cache.hpp"
#include "graph/live_counter.hpp"
#include "graph/var.hpp"

// Under AddressSanitizer every node is its own allocation, so that a use after free is
// still caught: no node free lists and no kept nodes.
#if defined(__SANITIZE_ADDRESS__)
#define TG_NODE_LISTS_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)  // clang before 2025 does not define the macro above
#define TG_NODE_LISTS_OFF 1
#endif
#endif

namespace tg::detail {

inline constexpr int kReadySlots = 16;
inline constexpr size_t kReadyBytes = size_t{4} << 20;

// bytes: the block kept with each node's value (0: none).
struct ReadyNodes : SizedSlots<Node*, kReadySlots> {
  int capacity = kReadySlots;  // 0 once the thread's reaper has run
};
// Trivially destructible: usable while the thread's other thread_local objects end.
extern thread_local constinit ReadyNodes t_ready;

// Friend access to Tensor, Node and NodePtr for the recycler.
struct Internals {
  static NodePtr adopt(Node* n) { return NodePtr(n); }
  // Only a node of type Node itself that value_node made: a user's subclass built through
  // Node(Tensor&&) is never reused as another type's object.
  static void mark_plain(Node& n) { n.plain_ = true; }
  static bool recyclable(const Node& n) {
    return n.plain_ && !n.grad.defined() && n.inputs.empty() && n.hooks.empty() &&
           !n.pending.defined();
  }
  static void keep(ReadyNodes& r, Node* n) noexcept;  // block_cache.cpp
  // Takes slot i out (the others keep their order); it counts as live again, with its block.
  static Node* take(ReadyNodes& r, int i) noexcept {
    const size_t kept = r.bytes[i];
    Node* n = r.take(i);
    add_live(1, static_cast<int64_t>(kept));
    n->refs_.store(1, std::memory_order_relaxed);
    return n;
  }
  // The kept value's block is the data of a new [rows, cols] tensor (its data pointer is
  // where it was: a tensor's data always starts at its block's first aligned byte).
  static void set_matrix(Tensor& t, int64_t rows, int64_t cols, int64_t numel, Dtype dtype) {
    t.shape_.set_matrix(rows, cols);
    t.numel_ = numel;
    t.dtype_ = dtype;
  }
};

// rows x cols when it is a valid extent product of a size a block could hold.
inline bool matrix_numel(int64_t rows, int64_t cols, int64_t& numel) {
  return rows >= 0 && cols >= 0 && !__builtin_mul_overflow(rows, cols, &numel) &&
         numel < (int64_t{1} << 40);
}

NodePtr matrix_node_slow(int64_t rows, int64_t cols, Dtype dtype);

/// A node holding a new, uninitialised [rows, cols] tensor: an unrecorded op's result, to be
/// written in place. The last node this thread kept, when its block has the size needed (a
/// loop of one product), else a kept node of that size, else value_node's (a kept node whose
/// block, if any, is given back, or a new node) with a new tensor.
inline NodePtr matrix_node(int64_t rows, int64_t cols, Dtype dtype) {
#ifndef TG_NODE_LISTS_OFF
  ReadyNodes& r = t_ready;
  int64_t numel;
  if (r.count > 0 && matrix_numel(rows, cols, numel) &&
      r.bytes[r.count - 1] == storage_block_bytes(static_cast<size_t>(numel) * itemsize(dtype))) {
    Node* n = Internals::take(r, r.count - 1);
    Internals::set_matrix(n->value, rows, cols, numel, dtype);
    return Internals::adopt(n);
  }
#endif
  return matrix_node_slow(rows, cols, dtype);
}

}  // namespace tg::detail
