#include "apps/world.hpp"

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "optim/clip.hpp"

#ifdef TAPEGRAD_HAS_DIST
#include "dist/ddp.hpp"
#include "dist/dist.hpp"
#include "dist/zero.hpp"
#endif

namespace tg::app::world {

// Note [Open MPI transport]
// Ranks on one machine exchange the gradients through Open MPI's shared-memory transport
// (btl vader), which sends a large message either by copying it through shared buffers or
// by one copy from the other process's memory (single copy, CMA: process_vm_readv, the
// default where the kernel allows it). Measured for the main job's MLP (0.94 MB of
// gradients per step, 2 ranks, bench_dist e): copying through shared buffers made the
// all-reduce 0.09 ms instead of 0.18 ms and the epoch 0.38 s instead of 0.42-0.44 s (CMA
// pays a system call and page pinning per message of the all-reduce). The choice is read
// once, when MPI starts; so the program sets "none" before that unless it was chosen
// (`--mca btl_vader_single_copy_mechanism cma` keeps CMA).
void configure_transport() {
  setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", /*overwrite=*/0);
}

#ifdef TAPEGRAD_HAS_DIST

int size() { return dist::get_world_size(); }
int rank() { return dist::get_rank(); }
int local_size() { return dist::get_local_world_size(); }

void sum(std::vector<double>& v) {
  if (size() == 1) return;
  Tensor t = tensor(v, {static_cast<int64_t>(v.size())}, f64);
  dist::all_reduce(t);
  v.assign(t.data<double>(), t.data<double>() + t.numel());
}

void check_same(const std::string& what, const std::vector<std::string>& lines) {
  dist::check_same_across_ranks("tapegrad", what, lines);
}

void end_job(int code, const std::exception& error) {
  if (dynamic_cast<const dist::MismatchError*>(&error)) return;
  if (dist::is_initialized() && dist::is_launched() && size() > 1) dist::abort(code);
}

struct DataParallel::Impl {
  std::unique_ptr<dist::DistributedDataParallel> ddp;
  std::unique_ptr<Optimizer> whole;                     // one process, or not sharded
  std::unique_ptr<dist::ZeroRedundancyOptimizer> zero;  // sharded
  std::vector<Var> params;                              // the module's
  // f(the optimizer that steps): both kinds have the calls DataParallel forwards.
  template <class F>
  void with_optimizer(F f) {
    if (zero)
      f(*zero);
    else
      f(*whole);
  }
};

DataParallel::DataParallel(Module& module) : impl_(std::make_unique<Impl>()) {
  // Gradients as bucket views: the train loops drop .grad each step (zero_grad), so the
  // views change nothing they see, and the copy out of the buckets goes (docs/distributed.md).
  if (size() > 1)
    impl_->ddp = std::make_unique<dist::DistributedDataParallel>(
        module, dist::DDPOptions{.gradient_as_bucket_view = true});
}

DataParallel::DataParallel(Module& module, const MakeOptimizer& make, bool shard_optimizer)
    : DataParallel(module) {
  impl_->params = module.parameters();
  if (impl_->ddp && shard_optimizer)
    impl_->zero = std::make_unique<dist::ZeroRedundancyOptimizer>(*impl_->ddp, make);
  else
    impl_->whole = make(impl_->params);
}

void DataParallel::sync_buffers() {
  if (impl_->ddp) impl_->ddp->sync_buffers();
}

Optimizer& DataParallel::optimizer() {
  return impl_->zero ? impl_->zero->local_optimizer() : *impl_->whole;
}

void DataParallel::consolidate_state_dict() {
  if (impl_->zero) impl_->zero->consolidate_state_dict(0);
}

#else  // built without MPI: a world of one

int size() { return 1; }
int rank() { return 0; }
int local_size() { return 1; }
void sum(std::vector<double>&) {}
void check_same(const std::string&, const std::vector<std::string>&) {}
void end_job(int, const std::exception&) {}

struct DataParallel::Impl {
  std::unique_ptr<Optimizer> whole;
  std::vector<Var> params;
  template <class F>
  void with_optimizer(F f) {
    f(*whole);
  }
};
DataParallel::DataParallel(Module&) : impl_(std::make_unique<Impl>()) {}
DataParallel::DataParallel(Module& module, const MakeOptimizer& make, bool) : DataParallel(module) {
  impl_->params = module.parameters();
  impl_->whole = make(impl_->params);
}
void DataParallel::sync_buffers() {}
Optimizer& DataParallel::optimizer() { return *impl_->whole; }
void DataParallel::consolidate_state_dict() {}

#endif

DataParallel::~DataParallel() = default;

void DataParallel::set_lr(double lr) {
  impl_->with_optimizer([&](auto& o) { o.set_lr(lr); });
}
void DataParallel::zero_grad() {
  impl_->with_optimizer([](auto& o) { o.zero_grad(); });
}
double DataParallel::clip_grad_norm(double max_norm, double norm_type, bool error_if_nonfinite) {
#ifdef TAPEGRAD_HAS_DIST
  if (impl_->zero) return impl_->zero->clip_grad_norm(max_norm, norm_type, error_if_nonfinite);
#endif
  return tg::clip_grad_norm(impl_->params, max_norm, norm_type, error_if_nonfinite);
}
void DataParallel::step() {
  impl_->with_optimizer([](auto& o) { o.step(); });
}
void DataParallel::load_state_dict(const NpzArchive& archive, const std::string& prefix) {
  impl_->with_optimizer([&](auto& o) { o.load_state_dict(archive, prefix); });
}
void DataParallel::state_dict(NpzArchive& archive, const std::string& prefix) const {
  impl_->with_optimizer([&](auto& o) { o.state_dict(archive, prefix); });
}

std::pair<int64_t, int64_t> rows_of(int64_t m) {
  const int64_t p = size(), r = rank();
  return {r * m / p, (r + 1) * m / p};
}

int threads_per_rank(int threads) {
  if (threads <= 0 && local_size() > 1 && !std::getenv("TG_NUM_THREADS") &&
      !std::getenv("OPENBLAS_NUM_THREADS"))
    return std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / local_size());
  return threads;
}

}  // namespace tg::app::world
