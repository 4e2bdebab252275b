#include "graph/live_counter.hpp"

#include <mutex>

namespace tg::detail {

namespace {

struct Registry {
  std::mutex mutex;
  LiveSlots* threads = nullptr;         // slots of running threads (intrusive list)
  int64_t retired[kLiveCounters] = {};  // totals of ended threads
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: threads may end after main returns
  return *r;
}

// The slots are trivially destructible (usable even while the thread's other thread_local
// objects are being destroyed); the Retirer folds them into the shared total at thread end,
// after which the thread's updates (a tensor freed by a later thread_local destructor) go to
// the shared total directly.
struct Retirer {
  ~Retirer() {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    LiveSlots& s = t_live_slots;
    (s.prev ? s.prev->next : r.threads) = s.next;
    if (s.next) s.next->prev = s.prev;
    for (int i = 0; i < kLiveCounters; ++i)
      r.retired[i] += s.value[i].exchange(0, std::memory_order_relaxed);
    s.state = kSlotsRetired;
  }
};

}  // namespace

// NOTE: noexcept, as it runs from destructors; the registry lock is the only thing here that
// could throw (std::system_error), which the C++ runtime does not do for a valid mutex.
void LiveCounter::add_slow(int64_t n) noexcept {
  LiveSlots& s = t_live_slots;
  Registry& r = registry();
  if (s.state == kSlotsUnregistered) {
    thread_local Retirer retirer;  // constructed on this thread's first update
    (void)retirer;
    std::lock_guard lock(r.mutex);
    s.next = r.threads;
    if (s.next) s.next->prev = &s;
    r.threads = &s;
    s.state = kSlotsActive;
    s.value[index_].store(n, std::memory_order_relaxed);
    return;
  }
  std::lock_guard lock(r.mutex);  // retired
  r.retired[index_] += n;
}

int64_t LiveCounter::total() const {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  int64_t sum = r.retired[index_];
  for (const LiveSlots* s = r.threads; s; s = s->next)
    sum += s->value[index_].load(std::memory_order_relaxed);
  return sum;
}

}  // namespace tg::detail
