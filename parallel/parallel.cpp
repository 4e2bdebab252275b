#include "parallel/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#ifdef __linux__
#include <pthread.h>
#include <sched.h>
#endif

#include "graph/error.hpp"

namespace tg {

namespace detail {

struct AsyncTask::State {
  std::function<void()> work;
  std::atomic<int> status{0};  // 0 queued, 1 running, 2 done
  std::exception_ptr error;

  // Runs the work if nobody has claimed it yet; true when this call ran it.
  bool try_run() {
    int expected = 0;
    if (!status.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) return false;
    try {
      work();
    } catch (...) {
      error = std::current_exception();
    }
    work = nullptr;
    status.store(2, std::memory_order_release);
    status.notify_all();
    return true;
  }
};

namespace {

thread_local bool in_worker = false;

struct Job {
  FunctionRef<void(int64_t, int64_t)>* body;
  int64_t n;
  int64_t chunk;
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;    // written once, by the thread that set `failed`
  std::atomic<int> joined{0};  // workers inside this job (incremented under the pool mutex)

  void run_chunks() {
    for (;;) {
      const int64_t b = next.fetch_add(chunk, std::memory_order_relaxed);
      if (b >= n) return;
      try {
        (*body)(b, std::min(b + chunk, n));
      } catch (...) {
        if (!failed.exchange(true)) error = std::current_exception();
      }
    }
  }
};

class Pool {
 public:
  Pool() { resize(default_threads()); }

  // TG_NUM_THREADS when set to a positive integer, else the machine's hardware threads.
  static int default_threads() {
    if (const char* env = std::getenv("TG_NUM_THREADS")) {
      char* end = nullptr;
      const long v = std::strtol(env, &end, 10);
      if (end != env && *end == '\0' && v >= 1 && v <= 1024) return static_cast<int>(v);
    }
    return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }

  int threads() const { return threads_.load(std::memory_order_relaxed); }

  void resize(int n) {
    std::lock_guard resize_lock(resize_mutex_);
    std::vector<std::thread> old;
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
      old.swap(workers_);
    }
    cv_.notify_all();
    for (auto& t : old) t.join();
    std::lock_guard lock(mutex_);
    stop_ = false;
    // Tasks their callers already ran or dropped go; the others stay queued for the new
    // workers (or for their wait(), which runs an unstarted task itself).
    auto finished = [](const auto& t) { return t->status.load() != 0; };
    std::erase_if(tasks_, finished);
    std::erase_if(deferred_, finished);
    for (int i = 1; i < n; ++i) {
      try {
        workers_.emplace_back([this] { work(); });
      } catch (const std::system_error&) {  // out of threads: run with the ones started
        break;
      }
    }
    threads_.store(static_cast<int>(workers_.size()) + 1, std::memory_order_relaxed);
#ifdef __linux__
    if (sched_getaffinity(0, sizeof allowed_, &allowed_) != 0) CPU_ZERO(&allowed_);
    pinned_away_from_ = -1;
#endif
  }

  void parallel_for(int64_t n, int64_t grain, FunctionRef<void(int64_t, int64_t)>& body) {
    const int t = threads();
    // Chunks small enough to balance two busy threads, large enough to amortise the
    // shared counter: about 4 per thread.
    Job job;
    job.body = &body;
    job.n = n;
    job.chunk = std::max(grain, (n + 4 * t - 1) / (4 * t));
    bool own = false;
    {
      std::lock_guard lock(mutex_);
      if (job_ == nullptr && !workers_.empty()) {  // else another thread's loop is running
        job_ = &job;
        ++job_generation_;
        own = true;
        keep_workers_off_caller_cpu();
      }
    }
    if (!own) {
      body(0, n);
      return;
    }
    cv_.notify_all();
    job.run_chunks();
    {
      std::lock_guard lock(mutex_);
      job_ = nullptr;  // no worker joins from now on
    }
    // Workers that joined this job are inside its last chunks: spin briefly, then yield,
    // then sleep in short steps (a joined worker preempted on its CPU can take a time
    // slice to come back). The counter is the job's own, so another caller's loop never
    // extends this wait. No notify: the worker must not touch `job` after leaving it.
    for (int spins = 0; job.joined.load(std::memory_order_acquire) != 0; ++spins) {
      if (spins > 2000)
        std::this_thread::sleep_for(std::chrono::microseconds(20));
      else if (spins > 64)
        std::this_thread::yield();
    }
    if (job.failed.load()) std::rethrow_exception(job.error);
  }

  // Note [Worker placement]: a woken worker is queued on some CPU's run queue; when every CPU
  // looks busy (the caller computing, an OpenBLAS thread yielding in its idle loop) the
  // kernel may queue it behind the caller, where it runs only once the caller waits -- the
  // loop can then take longer than on one thread, and how long depends on where the worker
  // landed. So workers may run anywhere but on the caller's current CPU; the mask changes
  // only when the caller has moved (one syscall per worker). (Figures: bench/README.md,
  // "Measurements behind the Notes".)
  void keep_workers_off_caller_cpu() {  // caller holds mutex_
#ifdef __linux__
    const int cpu = sched_getcpu();
    if (cpu < 0 || cpu == pinned_away_from_ || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &allowed_) ||
        CPU_COUNT(&allowed_) < 2)
      return;
    cpu_set_t mask = allowed_;
    CPU_CLR(cpu, &mask);
    for (auto& w : workers_) pthread_setaffinity_np(w.native_handle(), sizeof mask, &mask);
    pinned_away_from_ = cpu;
#endif
  }

  size_t queued() {
    std::lock_guard lock(mutex_);
    return tasks_.size() + deferred_.size();
  }

  void enqueue(std::shared_ptr<AsyncTask::State> task, Launch when) {
    {
      std::lock_guard lock(mutex_);
      if (workers_.empty()) return;  // runs on wait()
      auto& queue = when == Launch::now ? tasks_ : deferred_;
      // Tasks their caller already ran (wait() before any worker woke) are dropped here, so
      // a loop that never wakes the workers does not grow the queue.
      std::erase_if(queue, [](const auto& t) { return t->status.load() != 0; });
      queue.push_back(std::move(task));
    }
    if (when == Launch::now) cv_.notify_one();
  }

 private:
  void work() {
    in_worker = true;
    uint64_t seen = 0;
    std::unique_lock lock(mutex_);
    for (;;) {
      cv_.wait(lock, [&] {
        return stop_ || (job_ != nullptr && job_generation_ != seen) || !tasks_.empty();
      });
      if (stop_) return;
      if (job_ != nullptr && job_generation_ != seen) {
        // Deferred tasks first (Note [Deferred tasks]); the caller is working through the
        // loop's chunks meanwhile, and this worker joins whatever is left.
        while (!deferred_.empty() && !stop_) {
          std::shared_ptr<AsyncTask::State> task = std::move(deferred_.front());
          deferred_.pop_front();
          lock.unlock();
          task->try_run();
          task.reset();
          lock.lock();
        }
        if (stop_ || job_ == nullptr || job_generation_ == seen) continue;
        seen = job_generation_;
        Job* job = job_;
        job->joined.fetch_add(1, std::memory_order_relaxed);
        lock.unlock();
        job->run_chunks();
        job->joined.fetch_sub(1, std::memory_order_release);  // last touch of `job`
        lock.lock();
        continue;
      }
      std::shared_ptr<AsyncTask::State> task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task->try_run();
      task.reset();
      lock.lock();
    }
  }

  std::mutex resize_mutex_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
  std::atomic<int> threads_{1};
  bool stop_ = false;
  Job* job_ = nullptr;
  uint64_t job_generation_ = 0;
  std::deque<std::shared_ptr<AsyncTask::State>> tasks_;
  std::deque<std::shared_ptr<AsyncTask::State>> deferred_;
#ifdef __linux__
  cpu_set_t allowed_{};        // the process's CPUs when the workers started
  int pinned_away_from_ = -1;  // the caller CPU the workers' mask excludes
#endif
};

Pool& pool() {
  // Never destroyed: workers block in the pool until the process ends, and kernels may run
  // from static destructors.
  static Pool* p = new Pool;
  return *p;
}

}  // namespace

void parallel_for(int64_t n, int64_t grain, FunctionRef<void(int64_t, int64_t)> body) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  if (n < 2 * grain || in_worker) {
    body(0, n);
    return;
  }
  Pool& p = pool();
  if (p.threads() == 1) {
    body(0, n);
    return;
  }
  p.parallel_for(n, grain, body);
}

bool is_worker_thread() { return in_worker; }

void AsyncTask::cancel() noexcept {
  if (!state_) return;
  std::shared_ptr<State> s = std::move(state_);
  int expected = 0;
  if (s->status.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
    s->work = nullptr;  // never runs; its captures go now
    s->status.store(2, std::memory_order_release);
    s->status.notify_all();
    return;
  }
  for (int st = s->status.load(std::memory_order_acquire); st != 2;
       st = s->status.load(std::memory_order_acquire))
    s->status.wait(st, std::memory_order_acquire);
}

AsyncTask& AsyncTask::operator=(AsyncTask&& other) noexcept {
  if (this != &other) {
    cancel();
    state_ = std::move(other.state_);
  }
  return *this;
}

size_t queued_async_tasks() { return pool().queued(); }

void AsyncTask::wait() {
  if (!state_) throw Error("AsyncTask::wait: no task (default-constructed or already waited)");
  std::shared_ptr<State> s = std::move(state_);
  if (!s->try_run())
    for (int st = s->status.load(std::memory_order_acquire); st != 2;
         st = s->status.load(std::memory_order_acquire))
      s->status.wait(st, std::memory_order_acquire);
  // The waiting thread takes the exception out of the state, so it also frees it: a worker
  // dropping the state last then frees no exception another thread has read (the exception's
  // count lives in libstdc++, which ThreadSanitizer cannot see synchronize).
  if (s->error) std::rethrow_exception(std::exchange(s->error, nullptr));
}

AsyncTask run_async(std::function<void()> work, Launch when) {
  AsyncTask t;
  t.state_ = std::make_shared<AsyncTask::State>();
  t.state_->work = std::move(work);
  if (!in_worker) pool().enqueue(t.state_, when);
  return t;
}

}  // namespace detail

void set_num_threads(int n) {
  if (n < 1) throw Error("set_num_threads: need at least 1 thread, got " + std::to_string(n));
  if (detail::in_worker) throw Error("set_num_threads: cannot be called from a worker thread");
  detail::pool().resize(n);
  if (detail::pool().threads() < n)
    throw Error("set_num_threads: could start only " + std::to_string(detail::pool().threads()) +
                " of " + std::to_string(n) + " threads");
}

int num_threads() { return detail::pool().threads(); }

}  // namespace tg
