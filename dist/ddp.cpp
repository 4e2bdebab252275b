// DistributedDataParallel: gradient buckets reduced by MPI_Iallreduce as soon as each is
// ready, during backward.
//
// Note [DDP design]
// - Buckets. The parameters that want gradients, in reverse registration order (the order
//   backward usually reaches them, as PyTorch's), are packed into flat buffers of one dtype
//   of at most `bucket_cap_mb`, the first of at most `first_bucket_cap_mb` (1 MiB, PyTorch's
//   rule: the first bucket's all-reduce starts early in backward). Each parameter has a hook
//   (Var::register_hook) that copies its gradient (plus the `.grad` it already holds, for
//   accumulation after no_sync), divided by the world size, into its slice of the bucket
//   (PyTorch's reducer divides while copying too: no pass over the sum afterwards); when a bucket's
//   last gradient arrives its all-reduce (sum) is started, non-blocking. Buckets are started
//   strictly in index order, so every rank issues the same collectives in the same order even when
//   its backward reaches the parameters in another order (MPI requires it; PyTorch's reducer does
//   the same).
// - End of backward. The first hook of a backward queues `finish_gradient_sync` with
//   `queue_backward_callback` (PyTorch's reducer queues its finalizer on the engine the
//   same way): it starts the buckets still waiting (a parameter backward did not reach
//   contributes its `.grad`, or zeros), waits for all of them with the dist timeout and
//   sets every parameter's `.grad` to its averaged slice (a power-of-two world divides
//   exactly, so there the average is the rounded sum divided, as if divided after it).
// - Gradients as bucket views (option). After a sync each .grad is a view of its slice of
//   the bucket (no copy out). The hook drops .grad after copying .grad + g into the bucket,
//   so the engine stores g as a fresh .grad instead of adding it into the view (which
//   would count it twice, and could write into a bucket in flight); write_grads points
//   .grad back at the bucket. Slices start on cache lines; the padding is zeros.
// - Threads. Everything runs on the thread that runs backward: hooks, MPI calls and the
//   final callback; the hooks also call MPI_Test on the buckets in flight so that Open MPI,
//   which progresses non-blocking collectives only inside MPI calls, moves them along while
//   backward computes. With no second thread there is no shared state to race on, so the
//   ThreadSanitizer stage has nothing of dist/ to check (the engine's own threading tests
//   stay there); one thread at a time is why MPI_THREAD_SERIALIZED
//   is enough (not FUNNELED: backward may run on a thread other than the one that initialized
//   MPI).
// - Note [Reduce-scatter]. With sharded gradients (ZeroRedundancyOptimizer) a bucket is
//   reduce-scattered by point-to-point messages rather than MPI_Ireduce_scatter_block:
//   Open MPI's libnbc implements that as a reduce to rank 0 followed by a scatter (rank 0
//   receives and adds the whole bucket, then sends the slices out; no setting chooses
//   another algorithm), which measured slower than the all-reduce it replaces. Here each rank
//   sends slice r to rank r and receives its own slice from every rank at once, then adds
//   the p shares in rank order: every rank sends and adds (p - 1) / p of the bucket, as a
//   ring does, in one round (p - 1 messages each way per rank: fine for the few ranks of a
//   machine; many ranks would want the ring's p - 1 rounds of one message).
// - Determinism. The sum's order is MPI's, fixed for a given world size and message size,
//   and every rank receives the same bytes, so ranks stay bit-identical to each other.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "dist/ddp.hpp"
#include "dist/mpi_util.hpp"
#include "graph/var.hpp"

namespace tg::dist {

namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kOp = "DistributedDataParallel";

// One line per parameter and buffer (name, shape, dtype), plus the options every rank
// must share.
std::vector<std::string> describe(Module& m, const DDPOptions& o) {
  std::vector<std::string> lines;
  for (const auto& [name, p] : m.named_parameters())
    lines.push_back("parameter " + name + " " + p.shape().str() + " " +
                    std::string(dtype_name(p.dtype())) + (p.requires_grad() ? "" : " no-grad"));
  for (const auto& b : named_buffer_slots(m))
    lines.push_back("buffer " + b.name + " " + b.slot->shape().str() + " " +
                    std::string(dtype_name(b.slot->dtype())));
  lines.push_back("option bucket_cap_mb=" + std::to_string(o.bucket_cap_mb) +
                  " first_bucket_cap_mb=" + std::to_string(o.first_bucket_cap_mb) +
                  " broadcast_buffers=" + std::to_string(o.broadcast_buffers) +
                  " gradient_as_bucket_view=" + std::to_string(o.gradient_as_bucket_view));
  return lines;
}

// Where a view into a flat buffer placed at or after element `offset` starts: on a cache
// line, as a tensor of its own does (Tensor::data_start).
int64_t aligned(int64_t offset, Dtype d) {
  const auto line = static_cast<int64_t>(tg::detail::kDataAlignment / itemsize(d));
  return (offset + line - 1) / line * line;
}

}  // namespace

struct DistributedDataParallel::Impl {
  struct Slot {
    Var param;
    std::string name;
    int bucket = 0;
    int64_t offset = 0;
    bool ready = false;
    size_t hook = 0;
  };
  struct Bucket {
    Dtype dtype = f32;
    Tensor buffer;
    std::vector<int> slots;
    int pending = 0;
    bool launched = false;
    bool finished = false;
    // The all-reduce's request, or the sharded exchange's sends and receives.
    std::vector<MPI_Request> reqs;
    double t_start = 0, t_end = 0;
    Tensor scratch;  // sharded: the reduce-scatter's result when it is added to the shard
    Tensor recv;     // sharded: the other ranks' shares of this rank's slice, in rank order
  };

  Module& module;
  DDPOptions options;
  std::vector<Slot> slots;
  std::vector<Bucket> buckets;
  int next_launch = 0;
  bool syncing = false;
  bool no_sync = false;
  bool failed = false;
  // Sharded gradients (shard_gradients): one Shard per bucket.
  bool sharded = false;
  bool shard_grads_zeroed = true;
  std::vector<Shard> shards;
  Clock::time_point t0;
  std::vector<Event> events;
  SyncStats stats;

  Impl(Module& m, DDPOptions o) : module(m), options(o) {}

  double now() const { return std::chrono::duration<double>(Clock::now() - t0).count(); }
  void event(Event::Kind k, int bucket, std::string param = {}) {
    events.push_back({k, bucket, std::move(param), now()});
  }

  void build_buckets() {
    const double mib = 1024.0 * 1024.0;
    const double cap = options.bucket_cap_mb * mib;
    const double first_cap = std::min(options.first_bucket_cap_mb, options.bucket_cap_mb) * mib;
    auto named = module.named_parameters();
    for (auto it = named.rbegin(); it != named.rend(); ++it) {
      const Var& p = it->second;
      if (!p.requires_grad()) continue;
      const size_t bytes = p.value().nbytes();
      if (buckets.empty() || buckets.back().dtype != p.dtype() ||
          (buckets.back().buffer.numel() > 0 &&
           static_cast<double>(buckets.back().buffer.nbytes() + bytes) >
               (buckets.size() == 1 ? first_cap : cap))) {
        buckets.emplace_back();
        buckets.back().dtype = p.dtype();
        buckets.back().buffer = Tensor::empty({0}, p.dtype());
      }
      Bucket& b = buckets.back();
      Slot s;
      s.param = p;
      s.name = it->first;
      s.bucket = static_cast<int>(buckets.size()) - 1;
      s.offset = b.buffer.numel();
      if (options.gradient_as_bucket_view) s.offset = aligned(s.offset, p.dtype());
      b.slots.push_back(static_cast<int>(slots.size()));
      b.buffer = Tensor::empty({s.offset + p.numel()}, p.dtype());  // sized; filled per step
      slots.push_back(std::move(s));
    }
    // The padding between views is reduced with the rest: zeros, once.
    if (options.gradient_as_bucket_view)
      for (Bucket& b : buckets) b.buffer.zero_();
  }

  void begin_sync() {
    syncing = true;
    next_launch = 0;
    for (Slot& s : slots) s.ready = false;
    for (Bucket& b : buckets) {
      b.pending = static_cast<int>(b.slots.size());
      b.launched = b.finished = false;
    }
    events.clear();
    stats = {};
    t0 = Clock::now();
    // The engine drops the callback unrun when the backward throws: the token's destructor
    // then ends the sync (abandon).
    auto token = std::make_shared<FinishToken>(this);
    queue_backward_callback([token] {
      token->ran = true;
      token->impl->finish();
    });
  }

  struct FinishToken {
    explicit FinishToken(Impl* i) : impl(i) {}
    ~FinishToken() {
      if (!ran) impl->abandon();
    }
    FinishToken(const FinishToken&) = delete;
    FinishToken& operator=(const FinishToken&) = delete;
    Impl* impl;
    bool ran = false;
  };

  // A backward that threw after its first hook: its finish never runs. With nothing
  // started on other ranks' behalf the next backward starts afresh; once this rank started
  // an all-reduce the ranks' collectives can no longer be matched (failed).
  void abandon() noexcept {
    if (!syncing) return;
    if (next_launch > 0 && get_world_size() > 1)
      failed = true;
    else
      syncing = false;
  }

  // Writes `g` (plus the .grad already there, unless the slot was filled this sync) into
  // the slot's slice of its bucket, divided by the world size on the way (PyTorch's
  // reducer divides while copying into the bucket too: it saves a pass over the gradients
  // after the sum). A slot filled earlier in this sync already holds its share.
  void fill(Slot& s, const Tensor* g) {
    Bucket& b = buckets[s.bucket];
    const Var acc = s.param.grad();
    const Tensor* first = s.ready ? &b.buffer : (acc.defined() ? &acc.value() : nullptr);
    const int64_t first_off = s.ready ? s.offset : 0;
    const int64_t n = s.param.numel();
    const int p = get_world_size();
    dispatch(b.dtype, kOp, [&]<class T>() {
      T* dst = b.buffer.data<T>() + s.offset;
      const T* a = first ? first->data<T>() + first_off : nullptr;
      const T* x = g ? g->data<T>() : nullptr;
      const T scale = T(1) / T(p);
      const T scale_a = s.ready ? T(1) : scale;
      if (a && x) {
        for (int64_t k = 0; k < n; ++k) dst[k] = a[k] * scale_a + x[k] * scale;
      } else if (a || x) {
        const T* src = a ? a : x;
        const T f = a ? scale_a : scale;
        if (f == T(1)) {
          if (dst != src) std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(T));
        } else {
          for (int64_t k = 0; k < n; ++k) dst[k] = src[k] * f;
        }
      } else {
        std::fill(dst, dst + n, T(0));
      }
    });
  }

  void on_grad(int i, const Var& g) {
    if (no_sync) return;
    if (failed)
      throw DistError(std::string(kOp) + ": a previous gradient sync failed on " + detail::where() +
                      "; the ranks are out of step, end the job");
    if (!syncing) begin_sync();
    try {
      Slot& s = slots[i];
      Bucket& b = buckets[s.bucket];
      if (g.dtype() != b.dtype || g.shape() != s.param.shape())
        throw DistError(std::string(kOp) + ": the gradient of '" + s.name + "' is " +
                        std::string(dtype_name(g.dtype())) + " " + g.shape().str() +
                        " but its bucket was built for " + std::string(dtype_name(b.dtype)) + " " +
                        s.param.shape().str() +
                        ": a wrapped module's parameters must keep their dtype and shape");
      fill(s, &g.value());
      // The bucket holds .grad + g now: with bucket views the engine must not add g into
      // the .grad view as well, so it stores g as a fresh .grad until write_grads.
      if (options.gradient_as_bucket_view) s.param.zero_grad();
      event(Event::Kind::grad_ready, s.bucket, s.name);
      if (!s.ready) {
        s.ready = true;
        --b.pending;
      }
      launch_ready();
      progress();
    } catch (...) {
      failed = true;
      throw;
    }
  }

  void launch(Bucket& b, int k) {
    b.launched = true;
    b.t_start = now();
    event(Event::Kind::bucket_started, k);
    stats.bytes += static_cast<int64_t>(b.buffer.nbytes());
    ++stats.buckets;
    if (sharded) {
      // A second sync before zero_shard_grads accumulates: reduce into scratch, add in finish.
      Tensor& target = shard_grads_zeroed ? shards[k].grad : b.scratch;
      if (get_world_size() == 1) {
        target.copy_(b.buffer);
      } else {
        start_exchange(b, k);
        return;
      }
    }
    if (get_world_size() == 1) {
      b.finished = true;
      b.t_end = b.t_start;
      event(Event::Kind::bucket_finished, k);
      return;
    }
    b.reqs.assign(1, MPI_REQUEST_NULL);
    detail::start_all_reduce(b.buffer.raw_data(), b.buffer.numel(), b.dtype, MPI_SUM, b.reqs[0],
                             kOp);
  }

  // Sharded (Note [Reduce-scatter]): slice r of the bucket goes to rank r, and this rank's
  // slice comes from every other rank, all at once.
  void start_exchange(Bucket& b, int k) {
    const int p = get_world_size(), me = get_rank();
    const int n = static_cast<int>(shards[k].shard_numel);
    const size_t bytes = static_cast<size_t>(n) * itemsize(b.dtype);
    const MPI_Datatype type = detail::mpi_type(b.dtype);
    b.reqs.assign(static_cast<size_t>(2 * (p - 1)), MPI_REQUEST_NULL);
    size_t q = 0;
    for (int r = 0; r < p; ++r) {
      if (r == me) continue;
      char* in = static_cast<char*>(b.recv.raw_data()) + static_cast<size_t>(r - (r > me)) * bytes;
      char* out = static_cast<char*>(b.buffer.raw_data()) + static_cast<size_t>(r) * bytes;
      detail::check(MPI_Irecv(in, n, type, r, k, detail::comm(), &b.reqs[q++]), kOp);
      detail::check(MPI_Isend(out, n, type, r, k, detail::comm(), &b.reqs[q++]), kOp);
    }
  }

  // Sharded, once the exchange is done: this rank's slice summed over the ranks in rank
  // order (the same order on every rank), into the shard (or scratch, to be added).
  void reduce_exchange(Bucket& b, int k) {
    const int p = get_world_size(), me = get_rank();
    const int64_t n = shards[k].shard_numel;
    Tensor& target = shard_grads_zeroed ? shards[k].grad : b.scratch;
    dispatch(b.dtype, kOp, [&]<class T>() {
      auto part = [&](int r) {
        return r == me ? b.buffer.data<T>() + me * n : b.recv.data<T>() + (r - (r > me)) * n;
      };
      T* dst = target.data<T>();
      const T* first = part(0);
      std::copy(first, first + n, dst);
      for (int r = 1; r < p; ++r) {
        const T* src = part(r);
        for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
      }
    });
  }

  bool test_all(Bucket& b) {
    for (MPI_Request& r : b.reqs)
      if (!detail::test(r, kOp)) return false;
    return true;
  }

  void launch_ready() {
    while (next_launch < static_cast<int>(buckets.size()) && buckets[next_launch].pending == 0) {
      launch(buckets[next_launch], next_launch);
      ++next_launch;
    }
  }

  void mark_finished(Bucket& b, int k) {
    if (sharded && get_world_size() > 1) reduce_exchange(b, k);
    b.finished = true;
    b.t_end = now();
    event(Event::Kind::bucket_finished, k);
  }

  // Moves the buckets in flight along (Open MPI progresses only inside MPI calls).
  void progress() {
    for (size_t k = 0; k < buckets.size(); ++k) {
      Bucket& b = buckets[k];
      if (b.launched && !b.finished && test_all(b)) mark_finished(b, static_cast<int>(k));
    }
  }

  void finish() {
    if (!syncing) return;
    try {
      // Parameters backward did not reach contribute what their .grad holds (or zeros).
      for (size_t k = next_launch; k < buckets.size(); ++k) {
        Bucket& b = buckets[k];
        for (int i : b.slots)
          if (!slots[i].ready) {
            fill(slots[i], nullptr);
            slots[i].ready = true;
          }
        b.pending = 0;
      }
      launch_ready();
      const double wait_start = now();
      for (size_t k = 0; k < buckets.size(); ++k) {
        Bucket& b = buckets[k];
        if (b.finished) continue;
        for (MPI_Request& r : b.reqs) detail::wait(r, kOp);
        mark_finished(b, static_cast<int>(k));
      }
      stats.wait_seconds = now() - wait_start;
      double first = 0, last = 0;
      for (size_t k = 0; k < buckets.size(); ++k) {
        first = k == 0 ? buckets[k].t_start : std::min(first, buckets[k].t_start);
        last = std::max(last, buckets[k].t_end);
      }
      stats.comm_seconds = last - first;
      if (sharded) {
        if (!shard_grads_zeroed)
          for (size_t k = 0; k < buckets.size(); ++k) shards[k].grad.add_(buckets[k].scratch);
        shard_grads_zeroed = false;
      }
      write_grads();
      event(Event::Kind::sync_finished, -1);
      syncing = false;
    } catch (...) {
      failed = true;
      throw;
    }
  }

  // The average (the sum of the shares `fill` divided), into each parameter's .grad: with
  // bucket views, .grad becomes its slice of the bucket; else it is copied into the .grad's
  // buffer when that is a plain tensor nothing else holds, as after the engine stored this
  // backward's gradient there, or into a new one.
  void write_grads() {
    if (sharded) {  // the averages are in the shards; each .grad held this rank's own part
      for (Slot& s : slots) s.param.zero_grad();
      return;
    }
    if (options.gradient_as_bucket_view) {
      for (Bucket& b : buckets) b.buffer.bump_version();
      for (Slot& s : slots) {
        const Var old = s.param.grad();
        Tensor v = buckets[s.bucket].buffer.view_range(s.offset, s.param.shape());
        if (!old.defined() || old.requires_grad() || old.value().raw_data() != v.raw_data())
          s.param.set_grad(Var(std::move(v)));
      }
      return;
    }
    for (Slot& s : slots) {
      const Bucket& b = buckets[s.bucket];
      const Var old = s.param.grad();
      const bool reuse = old.defined() && !old.requires_grad() && old.is_leaf() &&
                         old.node_ptr().use_count() == 2 && old.value().storage_use_count() == 1;
      Tensor g = reuse ? old.value() : Tensor::empty(s.param.shape(), b.dtype);
      std::memcpy(g.raw_data(),
                  static_cast<const char*>(b.buffer.raw_data()) +
                      static_cast<size_t>(s.offset) * itemsize(b.dtype),
                  g.nbytes());
      if (reuse)
        g.bump_version();
      else
        s.param.set_grad(Var(std::move(g)));
    }
  }
};

DistributedDataParallel::DistributedDataParallel(Module& module, DDPOptions options)
    : impl_(std::make_unique<Impl>(module, options)) {
  if (!(options.bucket_cap_mb > 0) || !(options.first_bucket_cap_mb > 0))
    throw Error(std::string(kOp) +
                ": bucket_cap_mb and first_bucket_cap_mb must be positive, got " +
                std::to_string(options.bucket_cap_mb) + " and " +
                std::to_string(options.first_bucket_cap_mb));
  init_process_group();
  if (get_world_size() > 1) {
    check_same_across_ranks(kOp, "models or options", describe(module, options));
    for (const Var& p : module.parameters()) broadcast(p.value(), 0);
    if (options.broadcast_buffers) sync_buffers();
  }
  impl_->build_buckets();
  Impl* impl = impl_.get();
  for (size_t i = 0; i < impl->slots.size(); ++i)
    impl->slots[i].hook = impl->slots[i].param.register_hook([impl, i](const Var& g) {
      impl->on_grad(static_cast<int>(i), g);
      return Var();
    });
}

DistributedDataParallel::~DistributedDataParallel() {
  for (auto& s : impl_->slots) s.param.remove_hook(s.hook);
  // An all-reduce still in flight writes into its bucket: let it end before the buffer goes.
  for (auto& b : impl_->buckets)
    if (b.launched && !b.finished) {
      try {
        for (MPI_Request& r : b.reqs) detail::wait(r, kOp);
      } catch (...) {
      }
    }
}

const std::vector<DistributedDataParallel::Shard>& DistributedDataParallel::shard_gradients() {
  Impl& m = *impl_;
  if (m.sharded)
    throw Error(std::string(kOp) +
                ": the gradients are already sharded (one ZeroRedundancyOptimizer per wrapper)");
  if (m.syncing) throw Error(std::string(kOp) + ": shard_gradients called during a backward");
  const int64_t p = get_world_size();
  for (Impl::Bucket& b : m.buckets) {
    // Every slot on a cache line: ZeroRedundancyOptimizer makes the parameters views into a
    // buffer of this layout.
    int64_t end = 0;
    for (int i : b.slots) {
      m.slots[i].offset = aligned(end, b.dtype);
      end = m.slots[i].offset + m.slots[i].param.numel();
    }
    const int64_t padded = (end + p - 1) / p * p;
    if (padded / p > std::numeric_limits<int>::max())
      throw Error(std::string(kOp) + ": a bucket of " + std::to_string(padded) +
                  " elements is too large to shard; lower bucket_cap_mb");
    b.buffer = zeros({padded}, b.dtype);  // the padding stays zero
    b.scratch = zeros({padded / p}, b.dtype);
    b.recv = zeros({padded / p * (p - 1)}, b.dtype);
    Shard sh{b.dtype, padded, padded / p, zeros({padded / p}, b.dtype), {}, {}};
    for (int i : b.slots) {
      sh.params.push_back(m.slots[i].param);
      sh.offsets.push_back(m.slots[i].offset);
    }
    m.shards.push_back(std::move(sh));
  }
  m.sharded = true;
  return m.shards;
}

bool DistributedDataParallel::has_shard_grads() const { return !impl_->shard_grads_zeroed; }
void DistributedDataParallel::zero_shard_grads() { impl_->shard_grads_zeroed = true; }

Module& DistributedDataParallel::module() const { return impl_->module; }
void DistributedDataParallel::finish_gradient_sync() { impl_->finish(); }

void DistributedDataParallel::sync_buffers() {
  for (auto& b : named_buffer_slots(impl_->module)) broadcast(*b.slot, 0);
}

DistributedDataParallel::NoSync::NoSync(DistributedDataParallel& ddp)
    : ddp_(ddp), prev_(ddp.impl_->no_sync) {
  ddp.impl_->no_sync = true;
}
DistributedDataParallel::NoSync::~NoSync() { ddp_.impl_->no_sync = prev_; }
DistributedDataParallel::NoSync DistributedDataParallel::no_sync() { return NoSync(*this); }

std::vector<DistributedDataParallel::BucketInfo> DistributedDataParallel::buckets() const {
  std::vector<BucketInfo> out;
  for (const auto& b : impl_->buckets) {
    BucketInfo info{{}, b.dtype, b.buffer.numel()};
    for (int i : b.slots) info.params.push_back(impl_->slots[i].name);
    out.push_back(std::move(info));
  }
  return out;
}

const std::vector<DistributedDataParallel::Event>& DistributedDataParallel::last_sync_events()
    const {
  return impl_->events;
}

DistributedDataParallel::SyncStats DistributedDataParallel::last_sync_stats() const {
  return impl_->stats;
}

}  // namespace tg::dist
