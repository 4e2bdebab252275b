// Faults under mpirun, checked from outside by tests/check_dist_faults.py: the job must end
// on every rank with a message and a non-zero exit, within a bounded time.
//   dist_fault throw     rank 1 throws mid-run (uncaught)
//   dist_fault kill      rank 1 kills itself with SIGKILL mid-run
//   dist_fault stall     rank 1 stops calling collectives; rank 0's wait times out
//   dist_fault mismatch  rank 1 builds another model; every rank reports the error

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include <tapegrad/tapegrad.hpp>

using namespace tg;

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  const int me = dist::get_rank();
  if (mode == "mismatch") {
    Rng rng(0);
    Linear model(4, me == 1 ? 5 : 3, rng);
    try {
      dist::DistributedDataParallel ddp(model);
    } catch (const dist::DistError& e) {
      std::fprintf(stderr, "rank %d: %s\n", me, e.what());
      return 3;
    }
    return 0;
  }
  Tensor t = ones({1000}, f32);
  for (int step = 0; step < 1000; ++step) {
    if (step == 20 && me == 1) {
      if (mode == "throw") throw Error("rank 1 failed on purpose at step 20");
      if (mode == "kill") ::kill(::getpid(), SIGKILL);
      if (mode == "stall") std::this_thread::sleep_for(std::chrono::seconds(120));
    }
    dist::all_reduce(t, dist::ReduceOp::mean);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return 0;
}
