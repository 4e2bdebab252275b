// Data parallel against threads on one machine (docs/distributed.md, "Measured here"): run
// once as 1 process x 2 threads and once under `mpirun -np 2` as 2 ranks x 1 thread
// (scripts/bench_dist.sh does both). Not a Google Benchmark program: it runs under mpirun.
//   bench_dist c [steps] [bucket_mb]   (c) 784-512-512-10 ReLU, global batch 128,
//                                      cross-entropy, Adam: ms per step (median) and
//                                      per-phase medians (forward, backward, optimizer)
//   bench_dist e [epochs] [bucket_mb]  (e) Fashion-MNIST 784-256-128-10 ReLU, global batch
//                                      128, Adam 1e-3, DistributedSampler shares: s/epoch
//                                      (median), test accuracy, and per-phase medians
//                                      of a step (batch, forward, backward, optimizer)
// With more than one rank the optimizer is sharded (dist::ZeroRedundancyOptimizer over Adam:
// reduce-scatter, each rank steps its slice, all-gather) unless TG_BENCH_NO_ZERO is set (then
// every rank runs the whole Adam after an all-reduce, to compare the two).
// With more than one rank it also prints the all-reduce time backward hid: 1 - (time the
// end of backward waited for buckets) / (time of a blocking all-reduce of the same bytes).
// Rank 0 prints one line per figure: "name value unit".

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "tapegrad/tapegrad.hpp"
#include "tg_eval.hpp"

namespace {

using Clock = std::chrono::steady_clock;
namespace dist = tg::dist;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// The slowest rank's value (a step ends when every rank has its gradients).
double max_over_ranks(double x) {
  tg::Tensor t = tg::full({1}, x, tg::f64);
  dist::all_reduce(t, dist::ReduceOp::max);
  return t.data<double>()[0];
}

void print(const std::string& name, double value, const char* unit) {
  if (dist::get_rank() == 0) std::printf("%-28s %12.4f %s\n", name.c_str(), value, unit);
}

// Mean time of a blocking all-reduce of `numel` floats: the communication a step would
// expose if backward hid none of it.
double blocking_allreduce_seconds(int64_t numel) {
  tg::Tensor t = tg::zeros({numel}, tg::f32);
  dist::all_reduce(t);
  const int reps = 20;
  const auto t0 = Clock::now();
  for (int i = 0; i < reps; ++i) dist::all_reduce(t);
  return max_over_ranks(seconds_since(t0) / reps);
}

struct Wrapped {
  std::unique_ptr<dist::DistributedDataParallel> ddp;
  std::vector<double> waits;
  void record() {
    if (ddp) waits.push_back(ddp->last_sync_stats().wait_seconds);
  }
};

void report_overlap(const Wrapped& w, const tg::Module& net) {
  if (!w.ddp) return;
  const double wait = max_over_ranks(median(w.waits));
  const double blocking = blocking_allreduce_seconds(net.num_parameters());
  print("buckets", static_cast<double>(w.ddp->buckets().size()), "");
  print("allreduce_blocking_ms", blocking * 1e3, "ms");
  print("allreduce_exposed_ms", wait * 1e3, "ms");
  print("allreduce_hidden_fraction", std::clamp(1.0 - wait / blocking, 0.0, 1.0), "");
}

// Gradients as bucket views unless TG_BENCH_GRAD_COPY is set (to compare the two).
Wrapped wrap(tg::Module& net, double bucket_mb) {
  Wrapped w;
  if (dist::get_world_size() > 1)
    w.ddp = std::make_unique<dist::DistributedDataParallel>(
        net,
        dist::DDPOptions{.bucket_cap_mb = bucket_mb,
                         .gradient_as_bucket_view = std::getenv("TG_BENCH_GRAD_COPY") == nullptr});
  return w;
}

// Adam over `net`'s parameters: sharded over the ranks (ZeroRedundancyOptimizer) when `w`
// wraps the model, unless TG_BENCH_NO_ZERO is set.
struct Optim {
  std::unique_ptr<tg::Adam> whole;
  std::unique_ptr<dist::ZeroRedundancyOptimizer> zero;
  Optim(tg::Module& net, Wrapped& w) {
    const tg::AdamOptions o{.lr = 1e-3};
    if (w.ddp && std::getenv("TG_BENCH_NO_ZERO") == nullptr)
      zero = std::make_unique<dist::ZeroRedundancyOptimizer>(*w.ddp,
                                                             dist::optimizer_class<tg::Adam>(o));
    else
      whole = std::make_unique<tg::Adam>(net.parameters(), o);
  }
  void zero_grad() { zero ? zero->zero_grad() : whole->zero_grad(); }
  void step() { zero ? zero->step() : whole->step(); }
};

// Per-phase times of each step, to see where a rank's step goes: the batch (gather),
// forward, backward (which ends with the wait for the buckets still in flight), optimizer.
struct Phases {
  std::vector<double> data, fwd, bwd, opt;
  Clock::time_point t = Clock::now();
  // Seconds since the previous mark, appended to `v`.
  void mark(std::vector<double>* v) {
    const auto now = Clock::now();
    if (v) v->push_back(std::chrono::duration<double>(now - t).count());
    t = now;
  }
  void print(const std::string& w) const {
    print_ms(w + "_batch_ms (median)", data);
    print_ms(w + "_forward_ms (median)", fwd);
    print_ms(w + "_backward_ms (median)", bwd);
    print_ms(w + "_optimizer_ms (median)", opt);
  }
  static void print_ms(const std::string& name, const std::vector<double>& v) {
    if (!v.empty()) ::print(name, max_over_ranks(median(v)) * 1e3, "ms");
  }
};

void workload_c(int steps, double bucket_mb) {
  const int p = dist::get_world_size();
  const int64_t local = 128 / p;
  tg::Rng rng(1);
  tg::MLP net({784, 512, 512, 10}, tg::Activation::relu, tg::Activation::identity, rng);
  Wrapped w = wrap(net, bucket_mb);
  Optim opt(net, w);
  tg::Rng data(10 + static_cast<uint64_t>(dist::get_rank()));
  const tg::Var x = tg::constant(tg::randn({local, 784}, data));
  std::vector<int64_t> labels(static_cast<size_t>(local));
  for (auto& l : labels) l = static_cast<int64_t>(data.below(10));
  std::vector<double> times;
  Phases ph;
  for (int s = 0; s < steps + 5; ++s) {
    const bool keep = s >= 5;  // after a warm-up
    const auto t0 = Clock::now();
    ph.mark(nullptr);
    opt.zero_grad();
    const tg::Var loss = tg::cross_entropy(net(x), labels);
    ph.mark(keep ? &ph.fwd : nullptr);
    loss.backward();
    ph.mark(keep ? &ph.bwd : nullptr);
    opt.step();
    ph.mark(keep ? &ph.opt : nullptr);
    if (keep) {
      times.push_back(seconds_since(t0));
      w.record();
    }
  }
  print("c_ms_per_step", max_over_ranks(median(times)) * 1e3, "ms");
  ph.print("c");
  report_overlap(w, net);
}

void workload_e(int epochs, double bucket_mb) {
  const int p = dist::get_world_size(), me = dist::get_rank();
  const auto train = tg::data::load_mnist_like(tg::data::kFashionMnistDir, true);
  const auto test = tg::data::load_mnist_like(tg::data::kFashionMnistDir, false);
  tg::Rng rng(1);
  tg::MLP net({784, 256, 128, 10}, tg::Activation::relu, tg::Activation::identity, rng);
  Wrapped w = wrap(net, bucket_mb);
  Optim opt(net, w);
  // drop_last: every rank takes the same steps; 60000 is a multiple of 2 anyway.
  tg::data::DistributedSampler sampler(train.size(), p, me, true, 7, true);
  std::vector<double> times;
  Phases ph;
  for (int epoch = 0; epoch < epochs; ++epoch) {
    const auto t0 = Clock::now();
    sampler.set_epoch(epoch);
    tg::data::DataLoader loader(train, 128 / p);
    loader.set_order(sampler.indices());
    tg::data::Batch b;
    for (;;) {
      ph.mark(nullptr);
      if (!loader.next(b)) break;
      ph.mark(&ph.data);
      opt.zero_grad();
      const tg::Var loss = tg::cross_entropy(net(tg::constant(b.features)), b.labels);
      ph.mark(&ph.fwd);
      loss.backward();
      ph.mark(&ph.bwd);
      opt.step();
      ph.mark(&ph.opt);
      w.record();
    }
    times.push_back(max_over_ranks(seconds_since(t0)));
  }
  print("e_s_per_epoch", median(times), "s");
  const auto t_eval = Clock::now();
  print("e_accuracy_pct", bench::accuracy(net, test), "%");
  print("e_eval_s", max_over_ranks(seconds_since(t_eval)), "s");
  ph.print("e");
  report_overlap(w, net);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string which = argc > 1 ? argv[1] : "c";
  int n = argc > 2 ? std::atoi(argv[2]) : 0;  // "" or 0: the default
  if (n <= 0) n = which == "c" ? 100 : 3;
  double bucket_mb = argc > 3 ? std::atof(argv[3]) : 0;
  if (!(bucket_mb > 0)) bucket_mb = 25.0;
  if (dist::get_rank() == 0)
    std::printf("bench_dist %s: %d rank(s) x %d thread(s) (BLAS %d), bucket %g MiB%s\n",
                which.c_str(), dist::get_world_size(), tg::num_threads(), tg::blas_threads(),
                bucket_mb,
                dist::get_world_size() > 1 && !std::getenv("TG_BENCH_NO_ZERO")
                    ? ", sharded Adam (ZeroRedundancyOptimizer)"
                    : "");
  if (which == "c")
    workload_c(n, bucket_mb);
  else if (which == "e")
    workload_e(n, bucket_mb);
  else {
    std::fprintf(stderr, "bench_dist: unknown workload '%s' (c or e)\n", which.c_str());
    return 2;
  }
  return 0;
}
