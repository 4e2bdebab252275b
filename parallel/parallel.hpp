#pragma once
// tapegrad's own worker threads, for the loops BLAS does not cover: optimizer updates, the
// DataLoader's row gather, batch norm's channel loops, convolution and pooling lanes, many
// small batched products (ops/). Note [Worker pool]:
//  - Workers block (condition variable) when idle: they never spin against OpenBLAS's
//    threads, which run the matrix products on the same cores.
//  - The calling thread always takes part and work is handed out in chunks pulled from a
//    shared counter, so a worker that is slow to wake (or busy with a background task) only
//    means the caller does more chunks: parallel_for never waits for a thread to start.
//  - Chunk boundaries never change a result: callers split elementwise work only, so any
//    thread count gives the same bits.

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

namespace tg {

/// Threads tapegrad's kernels use: the caller plus `n - 1` workers (BLAS has its own pool,
/// see `set_blas_threads`). Default: the machine's hardware threads. `n >= 1`.
void set_num_threads(int n);
int num_threads();

namespace detail {

/// Non-owning reference to a callable (no allocation, unlike std::function).
template <class Sig>
class FunctionRef;
template <class R, class... A>
class FunctionRef<R(A...)> {
 public:
  template <class F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, FunctionRef>)
      FunctionRef(F&& f)  // NOLINT(google-explicit-constructor): used like a function parameter
      : obj_(const_cast<void*>(static_cast<const void*>(&f))), call_([](void* o, A... a) -> R {
          return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<A>(a)...);
        }) {}
  R operator()(A... a) const { return call_(obj_, std::forward<A>(a)...); }

 private:
  void* obj_;
  R (*call_)(void*, A...);
};

/// Runs `body(begin, end)` over [0, n) in chunks of at least `grain` items on the caller
/// and the idle workers; returns when all chunks are done. Runs inline when `n < 2 * grain`,
/// with one thread, or when called from a worker. An exception from a chunk is rethrown
/// here (the first one; the remaining chunks still run).
void parallel_for(int64_t n, int64_t grain, FunctionRef<void(int64_t, int64_t)> body);

/// When a worker may start a `run_async` task.
///
/// Note [Deferred tasks]: OpenBLAS's idle threads spin (sched_yield) for a long while after
/// each product, so a background task that starts at once shares a core with one of them
/// and slows the next matrix product by about as much as it saves. `with_next_parallel_for`
/// queues the task until the workers next wake for a parallel_for (in training: the
/// optimizer's update, a memory-bound phase where no BLAS thread is busy), and the worker
/// runs it before joining that loop. (Figures: bench/README.md, "Measurements behind the
/// Notes".)
enum class Launch { now, with_next_parallel_for };

/// True on one of the pool's worker threads.
bool is_worker_thread();
/// Tasks queued and not yet taken by a worker (including ones their caller already ran).
size_t queued_async_tasks();

/// A unit of work handed to a worker by `run_async`.
/// The handle owns the work: destroying or overwriting a valid handle cancels it (see
/// `cancel`), so a task never outlives what its captures refer to.
class AsyncTask {
 public:
  AsyncTask() = default;
  AsyncTask(AsyncTask&&) noexcept = default;
  AsyncTask& operator=(AsyncTask&& other) noexcept;
  ~AsyncTask() { cancel(); }
  /// Blocks until the work is done and rethrows its exception. If no worker has started it
  /// yet, the caller runs it itself (so waiting never depends on a worker waking up).
  void wait();
  /// Drops the work: if no worker has started it, it never runs; if one has, waits for it
  /// to finish. An exception it threw is discarded. The handle is then empty.
  void cancel() noexcept;
  bool valid() const { return state_ != nullptr; }
  struct State;

 private:
  friend AsyncTask run_async(std::function<void()> work, Launch when);
  std::shared_ptr<State> state_;
};

/// Queues `work` for a worker. With one thread (or when no worker has started it) it runs
/// when `wait()` is called.
AsyncTask run_async(std::function<void()> work, Launch when = Launch::now);

}  // namespace detail
}  // namespace tg
