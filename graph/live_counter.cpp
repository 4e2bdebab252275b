#include "graph/live_counter.hpp"

#include <mutex>
#include <vector>

namespace tg::detail {

namespace {

struct Registry {
  std::mutex mutex;
  std::vector<std::pair<const LiveCounter*, std::atomic<int64_t>*>> slots;
  std::vector<std::pair<const LiveCounter*, int64_t>> retired;  // totals of ended threads
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: threads may end after main returns
  return *r;
}

}  // namespace

// One slot per (thread, counter); only two counters exist, so a tiny array suffices. The
// array is trivially destructible (usable even while the thread's other thread_local objects
// are being destroyed); a separate Retirer folds its values into the shared total when the
// thread ends.
struct LiveCounter::Slot {
  struct Entry {
    const LiveCounter* owner = nullptr;
    std::atomic<int64_t> value{0};
  };
  Entry entries[4];
};

namespace {

thread_local LiveCounter::Slot t_slot;

struct Retirer {
  ~Retirer() {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    for (auto& e : t_slot.entries) {
      if (!e.owner) continue;
      std::erase_if(r.slots, [&](const auto& s) { return s.second == &e.value; });
      bool merged = false;
      for (auto& [owner, total] : r.retired)
        if (owner == e.owner) {
          total += e.value.exchange(0, std::memory_order_relaxed);
          merged = true;
        }
      if (!merged) r.retired.emplace_back(e.owner, e.value.exchange(0, std::memory_order_relaxed));
    }
  }
};

}  // namespace

LiveCounter::Slot& LiveCounter::slot() { return t_slot; }

void LiveCounter::add(int64_t n) {
  Slot& s = slot();
  for (auto& e : s.entries) {
    if (e.owner == this) {
      e.value.store(e.value.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
      return;
    }
    if (!e.owner) {
      thread_local Retirer retirer;  // constructed on this thread's first registration
      (void)retirer;
      Registry& r = registry();
      std::lock_guard lock(r.mutex);
      e.owner = this;
      r.slots.emplace_back(this, &e.value);
      e.value.store(n, std::memory_order_relaxed);
      return;
    }
  }
}

int64_t LiveCounter::total() const {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  int64_t sum = 0;
  for (const auto& [owner, v] : r.slots)
    if (owner == this) sum += v->load(std::memory_order_relaxed);
  for (const auto& [owner, v] : r.retired)
    if (owner == this) sum += v;
  return sum;
}

}  // namespace tg::detail
