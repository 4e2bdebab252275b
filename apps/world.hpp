#pragma once

// The `tapegrad` program's view of data-parallel training (docs/distributed.md): the MPI
// world when the program was built with tg::dist and started by mpirun, else a world of
// one. Everything here is a no-op (or the identity) in a world of one.

#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/module.hpp"
#include "models/npz.hpp"
#include "optim/optimizer.hpp"

namespace tg::app::world {

/// Call first thing in main, before any other call here: sets the MPI transport options
/// the program wants (Note [Open MPI transport] in world.cpp) unless the user or the
/// launcher chose them (`mpirun --mca ...` reaches the program as OMPI_MCA_* variables).
void configure_transport();

int size();
int rank();
/// Ranks on this machine (they share its cores).
int local_size();
/// Rank 0: the rank that prints, writes checkpoints, metrics and pictures.
inline bool is_root() { return rank() == 0; }
/// This rank's rows [first, second) of a global batch of `m` rows: rank r of p takes
/// [r m / p, (r + 1) m / p), so a batch that does not split evenly splits as evenly as it goes.
std::pair<int64_t, int64_t> rows_of(int64_t m);
/// `threads` when positive; else, when several ranks share this machine and neither
/// TG_NUM_THREADS nor OPENBLAS_NUM_THREADS is set, this rank's share of its hardware
/// threads; else 0 (the defaults).
int threads_per_rank(int threads);
/// Element-wise sums of `v` over the ranks, in place (every rank gets them).
void sum(std::vector<double>& v);
/// The same error on every rank when the ranks' `lines` differ (dist::check_same_across_ranks).
void check_same(const std::string& what, const std::vector<std::string>& lines);
/// After `error` ended this rank's command: ends every rank of a launched job at once with
/// `code` (MPI_Abort), so none waits for this one. Returns when there is no such job, or
/// when the error is one every rank raised alike (ranks that disagree): then each rank
/// reports it and exits normally.
void end_job(int code, const std::exception& error);

/// Builds the optimizer of a list of parameters (dist::OptimizerFactory).
using MakeOptimizer = std::function<std::unique_ptr<Optimizer>(std::vector<Var>)>;

/// Gradient averaging for `module` over the ranks (dist::DistributedDataParallel) and the
/// optimizer that steps it: in a world of one (or without `shard_optimizer`) the optimizer
/// `make` builds over the module's parameters; on several ranks with `shard_optimizer` that
/// optimizer sharded over the ranks (dist::ZeroRedundancyOptimizer: each rank keeps and
/// updates 1/p of its state). The parameters after each step are the same either way, to
/// the rounding of the gradients' sum. Construction is a collective. Constructed without
/// `make`, it averages the gradients only (the loop steps its own optimizer: the calls on
/// the optimizer below are then not to be used).
class DataParallel {
 public:
  explicit DataParallel(Module& module);
  DataParallel(Module& module, const MakeOptimizer& make, bool shard_optimizer);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;
  /// Copies rank 0's buffers (BatchNorm's running statistics) to every rank.
  void sync_buffers();

  /// The optimizer whose rate the schedulers read and set: the whole one, or this rank's
  /// shard's (set_lr sets the rate of every shard alike).
  Optimizer& optimizer();
  void set_lr(double lr);
  void zero_grad();
  /// Clips the averaged gradients by their global norm, as torch.nn.utils.clip_grad_norm_
  /// (tg::clip_grad_norm): the whole optimizer's through the parameters' `.grad`, the
  /// sharded one's over every rank's slices (ZeroRedundancyOptimizer::clip_grad_norm, a
  /// collective). Returns the total norm before clipping, the same on every rank (to the
  /// rounding of the gradients' sum). Call after the backward, before step().
  double clip_grad_norm(double max_norm, double norm_type = 2.0, bool error_if_nonfinite = false);
  /// A collective when sharded.
  void step();
  /// Loads the whole optimizer's state_dict (Optimizer::state_dict's format, from a run on
  /// any world size, sharded or not) on every rank.
  void load_state_dict(const NpzArchive& archive, const std::string& prefix);
  /// Call on every rank before rank 0 writes state_dict (a collective when sharded: the
  /// shards' state is gathered on rank 0).
  void consolidate_state_dict();
  /// On rank 0 after consolidate_state_dict: the whole optimizer's state_dict, the entries
  /// one process writes.
  void state_dict(NpzArchive& archive, const std::string& prefix) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tg::app::world
