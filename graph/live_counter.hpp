#pragma once

// Internal: a process-wide count (live graph nodes, live tensor bytes) that every thread
// updates without atomic read-modify-write instructions: each thread adds into its own slot
// (a plain load and store), and reading sums the slots. A thread's slot is folded into the
// shared total when the thread ends. Reading is rare (debugging, tests); updating happens
// on every op, where a locked instruction per update cost ~25% of a one-element op.

#include <atomic>
#include <cstdint>

namespace tg::detail {

class LiveCounter {
 public:
  void add(int64_t n);
  int64_t total() const;

  struct Slot;

 private:
  Slot& slot();
};

inline LiveCounter g_live_nodes_counter;
inline LiveCounter g_live_bytes_counter;

}  // namespace tg::detail
