#pragma once

/// DistributedDataParallel (docs/distributed.md): data-parallel training of any Module over
/// tg::dist, as torch.nn.parallel.DistributedDataParallel. Each rank runs the module on its
/// own share of the global batch; during `backward` the wrapper averages every parameter's
/// gradient over the ranks, bucket by bucket, so that after `backward` returns every rank
/// holds the gradient of the global batch and the optimizer steps stay identical.

#include <memory>
#include <string>
#include <vector>

#include "dist/dist.hpp"
#include "models/module.hpp"

namespace tg::dist {

struct DDPOptions {
  /// Largest bucket of gradients reduced by one all-reduce, in MiB (PyTorch's
  /// bucket_cap_mb). A parameter larger than that has a bucket of its own.
  double bucket_cap_mb = 25.0;
  /// Cap of the first bucket (the last layers' gradients, ready first in backward), in MiB,
  /// when smaller than bucket_cap_mb: its all-reduce starts early in backward instead of
  /// waiting for a whole bucket_cap_mb of gradients (PyTorch's 1 MiB first bucket,
  /// torch.distributed._DEFAULT_FIRST_BUCKET_BYTES).
  double first_bucket_cap_mb = 1.0;
  /// Broadcast rank 0's buffers (BatchNorm's running statistics) at construction, as the
  /// parameters. PyTorch also does it before every forward; here call `sync_buffers()`.
  bool broadcast_buffers = true;
  /// PyTorch's gradient_as_bucket_view: after each sync every parameter's `.grad` is a view
  /// into its bucket, so the averaged gradients are not copied out of the buckets (one pass
  /// over the gradients and their memory saved). As in PyTorch: `zero_grad()` drops the
  /// view (set to none) and the next sync points `.grad` at the bucket again; a `.grad`
  /// kept across steps sees the next sync's values (the bucket is reused); an in-place
  /// change of `.grad` (clipping) changes the bucket, which is harmless: the next backward
  /// refills it. Off by default, as in PyTorch.
  bool gradient_as_bucket_view = false;
};

class DistributedDataParallel {
 public:
  /// Checks that every rank has the same parameter and buffer names, shapes and dtypes (a
  /// DistError on every rank naming the first difference otherwise), copies rank 0's
  /// parameters (and buffers) to every rank, splits the parameters that want gradients into
  /// buckets in reverse registration order and hooks their gradients. `module` must outlive
  /// the wrapper; its parameters must not change dtype or shape while it lives.
  explicit DistributedDataParallel(Module& module, DDPOptions options = {});
  ~DistributedDataParallel();
  DistributedDataParallel(const DistributedDataParallel&) = delete;
  DistributedDataParallel& operator=(const DistributedDataParallel&) = delete;

  Module& module() const;

  /// Waits for the bucket all-reduces of the current backward and writes each parameter's
  /// averaged gradient to its `.grad`. The engine calls it at the end of every backward that
  /// reached a parameter (queue_backward_callback), so users need not; calling it again, or
  /// with no backward in progress, does nothing.
  void finish_gradient_sync();

  /// Copies rank 0's buffers to every rank.
  void sync_buffers();

  /// While a NoSync guard lives, backward accumulates gradients locally and reduces
  /// nothing (PyTorch's `with ddp.no_sync():`); the first backward after it reduces the
  /// accumulated gradients.
  class NoSync {
   public:
    ~NoSync();
    NoSync(const NoSync&) = delete;
    NoSync& operator=(const NoSync&) = delete;

   private:
    friend class DistributedDataParallel;
    explicit NoSync(DistributedDataParallel& ddp);
    DistributedDataParallel& ddp_;
    bool prev_;
  };
  [[nodiscard]] NoSync no_sync();

  /// One bucket: its parameters (dotted names, in the order they sit in the bucket), dtype
  /// and number of elements.
  struct BucketInfo {
    std::vector<std::string> params;
    Dtype dtype;
    int64_t numel;
  };
  std::vector<BucketInfo> buckets() const;

  /// What happened during the last gradient sync, in order: each parameter's gradient
  /// arriving (grad_ready), each bucket's all-reduce started and seen finished, and the end
  /// of the sync (at the end of backward). A bucket_started before the last grad_ready is an
  /// all-reduce overlapping backward.
  struct Event {
    enum class Kind { grad_ready, bucket_started, bucket_finished, sync_finished };
    Kind kind;
    int bucket;         // -1 for sync_finished
    std::string param;  // grad_ready only
    double seconds;     // since the first event of the sync
  };
  const std::vector<Event>& last_sync_events() const;

  /// Timings of the last gradient sync: seconds `finish_gradient_sync` waited for buckets
  /// still in flight (the communication backward did not hide), seconds from the first
  /// bucket's start to the last one's end, and bytes all-reduced.
  struct SyncStats {
    double wait_seconds = 0;
    double comm_seconds = 0;
    int64_t bytes = 0;
    int buckets = 0;
  };
  SyncStats last_sync_stats() const;

  /// For ZeroRedundancyOptimizer (dist/zero.hpp, Note [Sharded optimizer] in zero.cpp), not
  /// for direct use. `shard_gradients()` switches every later sync to sharded gradients:
  /// each bucket is laid out with every parameter on a cache line, padded with zeros to a
  /// multiple of the world size p and
  /// reduce-scattered (MPI_Ireduce_scatter_block) instead of all-reduced, so rank r receives
  /// only the average of elements [r S, (r + 1) S) of each bucket (S = padded size / p), in
  /// `Shard::grad`; the parameters' `.grad` are left empty after the sync. Throws Error when
  /// called twice or during a backward. A second synced backward without
  /// `zero_shard_grads()` adds its average into `Shard::grad` (accumulation, as .grad).
  struct Shard {
    Dtype dtype;
    int64_t padded_numel;          // a multiple of the world size
    int64_t shard_numel;           // padded_numel / world size
    Tensor grad;                   // this rank's averaged slice: shard_numel elements
    std::vector<Var> params;       // the bucket's parameters, in bucket order
    std::vector<int64_t> offsets;  // where each starts in the bucket
  };
  const std::vector<Shard>& shard_gradients();
  /// Whether a sync wrote `Shard::grad` since the last `zero_shard_grads()`.
  bool has_shard_grads() const;
  void zero_shard_grads();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tg::dist
