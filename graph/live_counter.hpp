#pragma once

// Internal: a process-wide count (live graph nodes, live tensor bytes) that every thread
// updates without atomic read-modify-write instructions: each thread adds into its own slot
// (a plain load and store), and reading sums the slots. A thread's slot is folded into the
// shared total when the thread ends. Reading is rare (debugging, tests); updating happens
// on every op (a node and a buffer, made and freed), so it must not take a locked
// instruction, which would be a large part of a one-element op.
//
// The update is inline: each counter owns a fixed slot index, and the per-thread slots are
// constant-initialised plain data, so an update is a TLS load, a compare and a store, with
// no call and no search for the thread's slot. (What a locked update and an out-of-line
// one cost: bench/README.md, "Measurements behind the Notes".)

#include <atomic>
#include <cstdint>

namespace tg::detail {

inline constexpr int kLiveCounters = 2;
inline constexpr uint8_t kSlotsUnregistered = 0, kSlotsActive = 1, kSlotsRetired = 2;

struct LiveSlots {
  std::atomic<int64_t> value[kLiveCounters];
  // kActive: visible to total(). Before: not yet registered. After (kRetired): the thread
  // is ending, its slots are folded into the shared total and updates go straight there.
  uint8_t state;
  LiveSlots* prev;  // the registry's list of running threads (no allocation to register)
  LiveSlots* next;
};
inline thread_local constinit LiveSlots t_live_slots{};

// One thread's slot: only this thread writes it, so a plain load and store suffice.
inline void bump(std::atomic<int64_t>& slot, int64_t n) noexcept {
  slot.store(slot.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

class LiveCounter {
 public:
  explicit constexpr LiveCounter(int index) : index_(index) {}
  void add(int64_t n) noexcept {
    LiveSlots& s = t_live_slots;
    if (s.state != kSlotsActive) [[unlikely]]
      return add_slow(n);
    bump(s.value[index_], n);
  }
  int64_t total() const;
  constexpr int index() const { return index_; }

 private:
  // A thread's first update makes its slots visible to total() (and registers their folding
  // into the shared total when the thread ends); an update after that adds to the shared
  // total directly.
  void add_slow(int64_t n) noexcept;
  int index_;
};

inline constinit LiveCounter g_live_nodes_counter{0};
inline constinit LiveCounter g_live_bytes_counter{1};

/// Both counters at once (one state check): a node and its value's buffer.
inline void add_live(int64_t nodes, int64_t bytes) noexcept {
  LiveSlots& s = t_live_slots;
  if (s.state != kSlotsActive) [[unlikely]] {
    g_live_nodes_counter.add(nodes);
    g_live_bytes_counter.add(bytes);
    return;
  }
  bump(s.value[g_live_nodes_counter.index()], nodes);
  bump(s.value[g_live_bytes_counter.index()], bytes);
}

}  // namespace tg::detail
