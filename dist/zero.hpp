#pragma once

/// ZeroRedundancyOptimizer (docs/distributed.md, "Sharded optimizer"): ZeRO stage 1 over a
/// DistributedDataParallel model, as torch.distributed.optim.ZeroRedundancyOptimizer. Each
/// rank keeps the optimizer state of, and updates, only its own contiguous slice of every
/// gradient bucket; the gradients are reduce-scattered instead of all-reduced and the
/// updated parameters all-gathered. The parameters after each step equal those of the
/// unsharded optimizer on every rank (to the rounding of the sum's order).

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dist/ddp.hpp"
#include "models/npz.hpp"
#include "optim/optimizer.hpp"

namespace tg::dist {

/// Builds the optimizer of a list of parameters (PyTorch's `optimizer_class` plus its
/// `**defaults`); see optimizer_class.
using OptimizerFactory = std::function<std::unique_ptr<Optimizer>(std::vector<Var>)>;

/// The factory of optimizer `Opt` with options `o`:
///   ZeroRedundancyOptimizer zero(ddp, optimizer_class<Adam>(AdamOptions{.lr = 1e-3}));
template <class Opt, class Options>
OptimizerFactory optimizer_class(Options o) {
  return [o](std::vector<Var> params) -> std::unique_ptr<Optimizer> {
    return std::make_unique<Opt>(std::move(params), o);
  };
}

class ZeroRedundancyOptimizer {
 public:
  /// Shards the optimizer of `ddp`'s module's parameters that want gradients (in
  /// registration order: `params()`) over the ranks; from now on `ddp` reduce-scatters its
  /// buckets (DistributedDataParallel::shard_gradients). The optimizer must update each
  /// element from that element's value, gradient and state alone (SGD, Adam, AdamW,
  /// RMSprop, Adagrad: every optimizer here), with one parameter group. Every rank must
  /// construct it (a collective); `ddp` must outlive it and stays sharded for its own life
  /// (one ZeroRedundancyOptimizer per wrapper, even when this one is destroyed or its
  /// construction threw). The parameters become views into flat buffers: change them in
  /// place (copy_, loading a checkpoint), do not replace their tensors or convert the
  /// model's dtype while it lives.
  ZeroRedundancyOptimizer(DistributedDataParallel& ddp, OptimizerFactory make);
  ~ZeroRedundancyOptimizer();
  ZeroRedundancyOptimizer(const ZeroRedundancyOptimizer&) = delete;
  ZeroRedundancyOptimizer& operator=(const ZeroRedundancyOptimizer&) = delete;

  /// Updates this rank's slice with the averaged gradients of the last sync(s), then
  /// all-gathers the parameters. With no sync since `zero_grad` nothing changes (only the
  /// step count, as an optimizer whose parameters have no gradient). A collective.
  void step();
  /// Drops the parameters' `.grad` and the sharded gradients.
  void zero_grad();
  /// Clips the gradients the next `step()` uses (the averages of the last sync(s), held in
  /// slices) by their global norm, as torch.nn.utils.clip_grad_norm_ over the unsharded
  /// gradients (tg::clip_grad_norm: norm_type p != 0, inf or -inf; coefficient max_norm /
  /// (total + 1e-6) capped at 1; a NaN total makes every gradient NaN): each rank reduces
  /// its slices, one all-gather combines them, and every rank scales its slices by the
  /// same coefficient (PyTorch's FullyShardedDataParallel.clip_grad_norm_). Returns the
  /// total norm before clipping, the same on every rank; 0 with no sync since `zero_grad`
  /// (nothing changes). With `error_if_nonfinite`, a NaN or infinite total throws Error on
  /// every rank and nothing changes. Call between the backward and `step()`, on every rank
  /// with the same arguments (a collective).
  double clip_grad_norm(double max_norm, double norm_type = 2.0, bool error_if_nonfinite = false);

  double lr() const;
  void set_lr(double lr);
  int64_t steps() const;
  /// The parameters, in the order of the unsharded optimizer's (and its state_dict's).
  const std::vector<Var>& params() const;
  /// This rank's optimizer: its parameters are 1-D views of this rank's slices.
  Optimizer& local_optimizer();

  /// Gathers the whole optimizer state on rank `to` (a collective; PyTorch's
  /// consolidate_state_dict). IndexError when `to` is not a rank.
  void consolidate_state_dict(int to = 0);
  /// On rank `to` after consolidate_state_dict: the unsharded optimizer's state_dict
  /// (Optimizer::state_dict's entries, loadable by the same optimizer class over `params()`
  /// on any world size). Error elsewhere, or before a consolidation.
  void state_dict(NpzArchive& archive, const std::string& prefix = "") const;
  /// Loads an unsharded optimizer's state_dict (from any world size) on every rank, each
  /// rank keeping its slices. IoError as Optimizer::load_state_dict, optimizer unchanged.
  void load_state_dict(const NpzArchive& archive, const std::string& prefix = "");

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tg::dist
