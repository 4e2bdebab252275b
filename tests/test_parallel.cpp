// tapegrad's worker pool (parallel/parallel.hpp): parallel_for covers every index once on any
// thread count, rethrows, nests and serves concurrent callers; run_async; and the
// kernels that use it (optimizer updates, the DataLoader's gather) give the same bits on
// any thread count. Tagged [threads]: these also run under ThreadSanitizer.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "tapegrad/tapegrad.hpp"

using tg::Var;
using tg::detail::parallel_for;

namespace {

// Restores the thread count a test changed.
struct ThreadCount {
  int before = tg::num_threads();
  explicit ThreadCount(int n) { tg::set_num_threads(n); }
  ~ThreadCount() { tg::set_num_threads(before); }
};

std::vector<unsigned char> bytes(const tg::Tensor& t) {
  std::vector<unsigned char> b(t.nbytes());
  std::memcpy(b.data(), t.raw_data(), b.size());
  return b;
}

}  // namespace

TEST_CASE("parallel_for visits every index exactly once", "[parallel][threads]") {
  for (int threads : {1, 2, 3, 5}) {
    ThreadCount tc(threads);
    for (int64_t n : {0, 1, 7, 100, 1000, 100003}) {
      for (int64_t grain : {1, 16, 1000}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::atomic<int> calls{0}, empty_chunks{0};
        parallel_for(n, grain, [&](int64_t lo, int64_t hi) {
          if (lo >= hi) ++empty_chunks;  // (Catch's CHECK is not for worker threads)
          ++calls;
          for (int64_t i = lo; i < hi; ++i) hits[static_cast<size_t>(i)]++;
        });
        INFO(threads << " threads, n " << n << ", grain " << grain);
        CHECK(empty_chunks == 0);
        for (int64_t i = 0; i < n; ++i) REQUIRE(hits[static_cast<size_t>(i)] == 1);
        if (n > 0 && n < 2 * grain) CHECK(calls == 1);  // small loops stay on the caller
      }
    }
  }
}

TEST_CASE("parallel_for splits large loops when threads are available", "[parallel][threads]") {
  ThreadCount tc(3);
  std::atomic<int> chunks{0}, short_chunks{0};
  parallel_for(1 << 20, 1 << 12, [&](int64_t lo, int64_t hi) {
    ++chunks;
    if (hi - lo < (1 << 12)) ++short_chunks;
  });
  CHECK(chunks >= 3);  // about 4 chunks per thread
  CHECK(short_chunks == 0);
}

TEST_CASE("parallel_for rethrows a chunk's exception and the pool keeps working",
          "[parallel][threads]") {
  ThreadCount tc(2);
  for (int round = 0; round < 20; ++round) {
    CHECK_THROWS_WITH(parallel_for(1 << 16, 1 << 10,
                                   [&](int64_t lo, int64_t hi) {
                                     if (lo <= 40000 && 40000 < hi)
                                       throw std::runtime_error("chunk at 40000 failed");
                                   }),
                      "chunk at 40000 failed");
  }
  std::atomic<int64_t> total{0};
  parallel_for(1 << 16, 1 << 10, [&](int64_t lo, int64_t hi) { total += hi - lo; });
  CHECK(total == (1 << 16));
}

TEST_CASE("nested parallel_for runs inline and callers on several threads all finish",
          "[parallel][threads]") {
  ThreadCount tc(2);
  std::atomic<int64_t> inner{0};
  parallel_for(64, 8, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i)
      parallel_for(1000, 10, [&](int64_t a, int64_t b) { inner += b - a; });
  });
  CHECK(inner == 64 * 1000);

  std::vector<int64_t> sums(4, 0);
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c)
    callers.emplace_back([&, c] {
      for (int rep = 0; rep < 50; ++rep) {
        std::atomic<int64_t> s{0};
        parallel_for(50000, 1000, [&](int64_t lo, int64_t hi) {
          int64_t local = 0;
          for (int64_t i = lo; i < hi; ++i) local += i;
          s += local;
        });
        sums[static_cast<size_t>(c)] += s;
      }
    });
  for (auto& t : callers) t.join();
  for (int64_t s : sums) CHECK(s == 50 * (int64_t{50000} * 49999 / 2));
}

TEST_CASE("run_async runs on a worker or when waited for, and rethrows", "[parallel][threads]") {
  for (int threads : {1, 2}) {
    ThreadCount tc(threads);
    INFO(threads << " threads");
    auto value = std::make_shared<int>(0);
    tg::detail::AsyncTask t = tg::detail::run_async([value] { *value = 42; });
    CHECK(t.valid());
    t.wait();
    CHECK(*value == 42);
    CHECK_FALSE(t.valid());
    CHECK_THROWS_AS(t.wait(), tg::Error);  // already waited

    tg::detail::AsyncTask bad =
        tg::detail::run_async([] { throw std::runtime_error("prefetch failed"); });
    CHECK_THROWS_WITH(bad.wait(), "prefetch failed");

    // Many tasks at once: each runs exactly once.
    std::vector<tg::detail::AsyncTask> tasks;
    auto count = std::make_shared<std::atomic<int>>(0);
    for (int i = 0; i < 100; ++i) tasks.push_back(tg::detail::run_async([count] { ++*count; }));
    for (auto& task : tasks) task.wait();
    CHECK(*count == 100);
  }
}

TEST_CASE("a deferred task waits for the next parallel_for, or runs at wait()",
          "[parallel][threads]") {
  ThreadCount tc(2);
  using tg::detail::Launch;
  {
    auto ran_on = std::make_shared<std::atomic<int>>(0);  // 1: a worker, 2: the caller
    tg::detail::AsyncTask t =
        tg::detail::run_async([ran_on] { *ran_on = tg::detail::is_worker_thread() ? 1 : 2; },
                              Launch::with_next_parallel_for);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(*ran_on == 0);  // no parallel_for yet: nobody started it
    t.wait();
    CHECK(*ran_on == 2);  // so the caller ran it
  }
  {
    auto runs = std::make_shared<std::atomic<int>>(0);
    tg::detail::AsyncTask t =
        tg::detail::run_async([runs] { ++*runs; }, Launch::with_next_parallel_for);
    // A loop long enough for the woken worker to start the task before joining.
    std::atomic<int64_t> total{0};
    parallel_for(int64_t{1} << 22, int64_t{1} << 12, [&](int64_t lo, int64_t hi) {
      int64_t local = 0;
      for (int64_t i = lo; i < hi; ++i) local += i & 7;
      total += local;
    });
    t.wait();
    CHECK(*runs == 1);  // by the worker or by wait(), never both
    CHECK(total == (int64_t{1} << 22) / 8 * 28);
  }
}

TEST_CASE("deferred tasks run by their callers do not pile up in the queue",
          "[parallel][threads]") {
  ThreadCount tc(2);
  for (int i = 0; i < 2000; ++i) {  // as a DataLoader with no parallel_for in the loop
    tg::detail::AsyncTask t =
        tg::detail::run_async([] {}, tg::detail::Launch::with_next_parallel_for);
    t.wait();
  }
  CHECK(tg::detail::queued_async_tasks() <= 1);
}

TEST_CASE("a dropped or cancelled task never runs later, resizing keeps queued tasks",
          "[parallel][threads]") {
  using tg::detail::Launch;
  ThreadCount tc(2);
  auto ran = std::make_shared<std::atomic<int>>(0);
  {
    tg::detail::AsyncTask dropped =
        tg::detail::run_async([ran] { ++*ran; }, Launch::with_next_parallel_for);
  }  // destroyed unstarted: cancelled
  tg::detail::AsyncTask cancelled =
      tg::detail::run_async([ran] { ++*ran; }, Launch::with_next_parallel_for);
  cancelled.cancel();
  CHECK_FALSE(cancelled.valid());
  std::atomic<int64_t> total{0};
  parallel_for(int64_t{1} << 20, int64_t{1} << 12,
               [&](int64_t lo, int64_t hi) { total += hi - lo; });  // wakes the worker
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(*ran == 0);
  CHECK(total == (int64_t{1} << 20));

  // A task that is running when cancelled is waited for, and its error dropped.
  auto started = std::make_shared<std::atomic<bool>>(false);
  tg::detail::AsyncTask running = tg::detail::run_async([started] {
    *started = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    throw std::runtime_error("ignored");
  });
  while (!*started) std::this_thread::yield();
  running.cancel();  // returns after the task finished, without throwing
  CHECK_FALSE(running.valid());

  // Queued tasks survive a resize: the new workers (or wait()) run them.
  tg::detail::AsyncTask queued =
      tg::detail::run_async([ran] { ++*ran; }, Launch::with_next_parallel_for);
  tg::set_num_threads(1);
  tg::set_num_threads(3);
  queued.wait();
  CHECK(*ran == 1);
}

TEST_CASE("set_num_threads checks its argument", "[parallel]") {
  const int before = tg::num_threads();
  CHECK(before >= 1);
  CHECK_THROWS_WITH(tg::set_num_threads(0), "set_num_threads: need at least 1 thread, got 0");
  CHECK(tg::num_threads() == before);
  {
    ThreadCount tc(3);
    CHECK(tg::num_threads() == 3);
  }
  CHECK(tg::num_threads() == before);
}

namespace {

// Parameters large enough that every update is split (3 x kUpdateGrain + a ragged end).
std::vector<unsigned char> optimize(
    int threads, const std::function<std::unique_ptr<tg::Optimizer>(std::vector<Var>)>& make) {
  ThreadCount tc(threads);
  tg::Rng rng(5);
  const int64_t n = 3 * tg::kUpdateGrain + 77;
  Var w = tg::param(tg::rand({n}, rng, -1, 1));
  auto opt = make({w});
  for (int step = 0; step < 4; ++step) {
    w.set_grad(tg::constant(tg::rand({n}, rng, -1, 1)));
    opt->step();
  }
  return bytes(w.value());
}

}  // namespace

TEST_CASE("optimizer updates give the same bits on 1, 2 and 3 threads", "[parallel][threads]") {
  using Make = std::function<std::unique_ptr<tg::Optimizer>(std::vector<Var>)>;
  const std::vector<std::pair<const char*, Make>> optimizers = {
      {"SGD momentum nesterov",
       [](std::vector<Var> p) {
         return std::make_unique<tg::SGD>(
             std::move(p),
             tg::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-2, .nesterov = true});
       }},
      {"Adam amsgrad",
       [](std::vector<Var> p) {
         return std::make_unique<tg::Adam>(std::move(p),
                                           tg::AdamOptions{.lr = 1e-2, .amsgrad = true});
       }},
      {"AdamW",
       [](std::vector<Var> p) {
         return std::make_unique<tg::AdamW>(std::move(p), tg::AdamWOptions{.lr = 1e-2});
       }},
      {"RMSprop centered momentum",
       [](std::vector<Var> p) {
         return std::make_unique<tg::RMSprop>(
             std::move(p), tg::RMSpropOptions{.lr = 1e-2, .momentum = 0.5, .centered = true});
       }},
      {"Adagrad",
       [](std::vector<Var> p) {
         return std::make_unique<tg::Adagrad>(std::move(p), tg::AdagradOptions{.lr = 1e-2});
       }},
  };
  for (const auto& [name, make] : optimizers) {
    INFO(name);
    const auto one = optimize(1, make);
    CHECK(optimize(2, make) == one);
    CHECK(optimize(3, make) == one);
  }
}

TEST_CASE("a batch of small products gives the same bits on 1, 2 and 3 threads",
          "[parallel][threads]") {
  // Products below OpenBLAS's one-thread threshold are split over the pool by batch entry
  // (Note [Small batched products]), forward and backward.
  tg::Rng rng(5);
  const tg::Tensor a0 = tg::rand({12, 40, 24}, rng, -1, 1), b0 = tg::rand({12, 24, 32}, rng, -1, 1);
  auto run = [&](int threads) {
    const ThreadCount count(threads);
    const Var a = tg::param(a0.clone()), b = tg::param(b0.clone());
    const Var c = tg::matmul(a, b);
    tg::sum(c * c).backward();
    return std::vector<std::vector<double>>{c.value().to_vector(), a.grad().value().to_vector(),
                                            b.grad().value().to_vector()};
  };
  const auto one = run(1);
  CHECK(run(2) == one);
  CHECK(run(3) == one);
}

TEST_CASE("DataLoader batches are the same on 1 and 2 threads", "[parallel][threads]") {
  tg::Rng rng(9);
  tg::data::Dataset d;
  d.features = tg::rand({3000, 50}, rng, 0, 1);              // 200-byte rows: 327 rows per chunk
  for (int64_t i = 0; i < 3000; ++i) d.labels.push_back(i);  // label = row index
  d.num_classes = 3000;
  auto batches = [&](int threads, bool prefetch = true) {
    ThreadCount tc(threads);
    tg::Rng shuffle(3);
    tg::data::DataLoader loader(d, 1000, true, &shuffle);
    loader.set_prefetch(prefetch);
    std::vector<std::vector<unsigned char>> out;
    tg::data::Batch b;
    while (loader.next(b)) {
      out.push_back(bytes(b.features));
      const float* src = d.features.data<float>();
      const float* got = b.features.data<float>();
      for (int64_t i = 0; i < b.size(); ++i)  // row i is dataset row labels[i]
        REQUIRE(std::memcmp(got + i * 50, src + b.labels[static_cast<size_t>(i)] * 50,
                            50 * sizeof(float)) == 0);
    }
    return out;
  };
  const auto one = batches(1);
  REQUIRE(one.size() == 3);
  CHECK(batches(2) == one);
  CHECK(batches(2, false) == one);
}

TEST_CASE("DataLoader prefetching: reset, early destruction, batches kept by the caller",
          "[parallel][threads]") {
  ThreadCount tc(2);
  tg::Rng rng(4);
  tg::data::Dataset d;
  d.features = tg::rand({100, 3}, rng, 0, 1);
  for (int64_t i = 0; i < 100; ++i) d.labels.push_back(i);
  d.num_classes = 100;
  auto labels_of = [](tg::data::DataLoader& loader, int n) {
    std::vector<int64_t> seen;
    tg::data::Batch b;
    for (int i = 0; i < n && loader.next(b); ++i)
      seen.insert(seen.end(), b.labels.begin(), b.labels.end());
    return seen;
  };
  tg::data::DataLoader in_order(d, 30);
  CHECK(labels_of(in_order, 1) == std::vector<int64_t>{0,  1,  2,  3,  4,  5,  6,  7,  8,  9,
                                                       10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
                                                       20, 21, 22, 23, 24, 25, 26, 27, 28, 29});
  in_order.reset();  // drops the batch gathered from position 30
  const auto all = labels_of(in_order, 10);
  REQUIRE(all.size() == 100);
  for (int64_t i = 0; i < 100; ++i) CHECK(all[static_cast<size_t>(i)] == i);

  // A batch the caller keeps is not overwritten by the next gather.
  tg::data::DataLoader loader(d, 10);
  tg::data::Batch first, second;
  REQUIRE(loader.next(first));
  REQUIRE(loader.next(second));
  CHECK(first.labels.front() == 0);
  CHECK(first.features.at({0, 0}) == d.features.at({0, 0}));
  CHECK(second.labels.front() == 10);
  for (int i = 0; i < 5; ++i) {  // destroyed while a gather may be queued or running
    tg::data::DataLoader early(d, 7);
    tg::data::Batch b;
    REQUIRE(early.next(b));
  }
}
