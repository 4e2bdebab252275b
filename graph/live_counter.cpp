#include "graph/live_counter.hpp"

#include <algorithm>
#include <mutex>
#include <vector>

namespace tg::detail {

namespace {

struct Registry {
  std::mutex mutex;
  std::vector<LiveSlots*> threads;      // slots of running threads
  int64_t retired[kLiveCounters] = {};  // totals of ended threads
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: threads may end after main returns
  return *r;
}

// The slots are trivially destructible (usable even while the thread's other thread_local
// objects are being destroyed); the Retirer folds them into the shared total at thread end.
struct Retirer {
  ~Retirer() {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    LiveSlots& s = t_live_slots;
    std::erase(r.threads, &s);
    for (int i = 0; i < kLiveCounters; ++i)
      r.retired[i] += s.value[i].exchange(0, std::memory_order_relaxed);
  }
};

}  // namespace

void LiveCounter::register_thread() {
  thread_local Retirer retirer;  // constructed on this thread's first update
  (void)retirer;
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  LiveSlots& s = t_live_slots;
  if (!s.registered) {
    r.threads.push_back(&s);
    s.registered = true;
  }
}

int64_t LiveCounter::total() const {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  int64_t sum = r.retired[index_];
  for (const LiveSlots* s : r.threads) sum += s->value[index_].load(std::memory_order_relaxed);
  return sum;
}

}  // namespace tg::detail
