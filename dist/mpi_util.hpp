#pragma once

// Internal to dist/ (not installed): what dist.cpp and ddp.cpp share on top of <mpi.h>.

#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dist/dist.hpp"

namespace tg::dist::detail {

/// The library's own communicator (a duplicate of MPI_COMM_WORLD with MPI_ERRORS_RETURN);
/// only meaningful when is_launched().
MPI_Comm comm();
/// The MPI type of a tensor element.
MPI_Datatype mpi_type(Dtype d);
/// Throws DistError "<op>: MPI error: ..." when `rc` is not MPI_SUCCESS.
void check(int rc, const char* op);
/// Starts the in-place MPI_Iallreduce of `numel` elements of dtype `d` at `data` on comm(),
/// with the algorithm Note [All-reduce algorithm] in dist.cpp picks; `name` names the
/// caller in errors.
void start_all_reduce(void* data, int64_t numel, Dtype d, MPI_Op op, MPI_Request& req,
                      const char* name);
/// Progresses `req`; true when it has completed.
bool test(MPI_Request& req, const char* op);
/// Waits for `req` by polling MPI_Test until the timeout (get_timeout()), then throws
/// DistError naming `op`.
void wait(MPI_Request& req, const char* op);
/// "rank 1 of 3", for messages.
std::string where();
/// Every rank's `mine`, indexed by rank (a collective on comm(); launched worlds only).
std::vector<std::string> gather_strings(const std::string& mine, const char* op);
/// The lines of `s`, each ended by '\n' (a last line without one is dropped).
std::vector<std::string> split_lines(const std::string& s);

}  // namespace tg::dist::detail
