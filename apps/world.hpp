#pragma once

// The `tapegrad` program's view of data-parallel training (docs/distributed.md): the MPI
// world when the program was built with tg::dist and started by mpirun, else a world of
// one. Everything here is a no-op (or the identity) in a world of one.

#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/module.hpp"

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

/// Gradient averaging for `module` over the ranks (dist::DistributedDataParallel), or
/// nothing in a world of one.
class DataParallel {
 public:
  explicit DataParallel(Module& module);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;
  /// Copies rank 0's buffers (BatchNorm's running statistics) to every rank.
  void sync_buffers();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tg::app::world
