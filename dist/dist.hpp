#pragma once

/// tg::dist: collectives over MPI for data-parallel training (docs/distributed.md), as
/// torch.distributed with the "mpi" backend. Built when CMake finds MPI (the target
/// tapegrad::dist). A program launched by `mpirun` / `srun` has the launcher's world; the
/// same program started on its own is a world of one process, where every collective is a
/// local no-op (or copy), so it runs unchanged with or without a launcher.

#include <string>
#include <vector>

#include "graph/error.hpp"
#include "graph/tensor.hpp"

namespace tg::dist {

/// A failed or timed-out collective, or ranks that disagree; the message names the
/// collective, this rank and the world size.
class DistError : public Error {
 public:
  using Error::Error;
};

/// Ranks that disagree (check_same_across_ranks, DistributedDataParallel's model check):
/// thrown on every rank alike, so a program may end normally rather than abort the job.
class MismatchError : public DistError {
 public:
  using DistError::DistError;
};

/// torch.distributed.ReduceOp: SUM, AVG (here `mean`), MAX.
enum class ReduceOp { sum, mean, max };

/// Joins the launcher's world (MPI_Init_thread with MPI_THREAD_SERIALIZED when nobody has
/// initialized MPI yet; DistError when MPI provides less) or, when not launched by an MPI launcher,
/// becomes a world of one without touching MPI. Idempotent; every function below calls it first.
/// Under a launcher it also sets MPI_ERRORS_RETURN (MPI errors become DistError), installs a
/// terminate handler that prints the uncaught exception with the rank and aborts the whole job
/// (MPI_Abort), and finalizes MPI at exit. The wait timeout is read from TG_DIST_TIMEOUT
/// (seconds) when set.
void init_process_group();
/// Whether init_process_group has run.
bool is_initialized();
/// Whether this process was started by an MPI launcher (then MPI is in use, even for -np 1).
bool is_launched();
/// This process's rank in [0, world size), the world size, and the rank among the processes
/// of this machine (MPI_Comm_split_type with MPI_COMM_TYPE_SHARED).
int get_rank();
int get_world_size();
int get_local_rank();
int get_local_world_size();

/// Every wait (each collective, each gradient bucket) gives up after this many seconds with
/// a DistError naming the collective: a rank that died or skipped a collective cannot hang
/// the others for longer (torch.distributed's `timeout`, default 30 minutes as there).
void set_timeout(double seconds);
double get_timeout();

/// In place: `t` becomes the reduction of every rank's `t` (same shape and dtype on every
/// rank). Any dtype: a bool tensor's sum and max are a logical or; `mean` needs a floating
/// tensor (DtypeError). Floating `max` propagates NaN.
void all_reduce(Tensor& t, ReduceOp op = ReduceOp::sum);
/// In place: every rank's `t` becomes rank `src`'s (same shape and dtype on every rank).
/// IndexError when `src` is not a rank.
void broadcast(Tensor& t, int src = 0);
/// Every rank's `t`, indexed by rank (same shape and dtype on every rank), as
/// torch.distributed.all_gather's tensor list.
std::vector<Tensor> all_gather(const Tensor& t);
/// Returns when every rank has called it.
void barrier();

/// Throws the same MismatchError on every rank when the ranks' `lines` differ (each rank
/// describes what must agree: a model, options, a dataset), naming the first difference:
/// "<who>: the ranks' <what> differ (seen on rank 1 of 2): entry 3 is '...' on rank 0 but
/// '...' on rank 1 (...)". A hash of each rank's lines is gathered first, the lines
/// themselves only when the hashes differ. Nothing to check in a world of one.
void check_same_across_ranks(const std::string& who, const std::string& what,
                             const std::vector<std::string>& lines);

/// Ends the job on every rank at once with exit status `code` (MPI_Abort); a plain exit
/// without a launcher.
[[noreturn]] void abort(int code = 1);
/// Finalizes MPI (also done at exit); after it no collective may be called.
void destroy_process_group();

}  // namespace tg::dist
