#pragma once

#include <cstdint>
#include <vector>

namespace tg {
class Rng;
}

namespace tg::data {

/// 0, 1, ..., n-1, shuffled by Fisher-Yates from `rng` when it is given: the order a
/// shuffling DataLoader draws at the start of each epoch (the same calls on `rng`), so code
/// that needs that order itself (a rank's share of the global batch) can draw it.
std::vector<int64_t> shuffled_indices(int64_t n, Rng* rng);

/// Each rank's share of a dataset for data-parallel training, as
/// torch.utils.data.distributed.DistributedSampler: the indices 0..n-1 (shuffled from
/// `seed + epoch` when `shuffle`) are padded by wrapping around to a multiple of
/// `num_replicas` (or, with `drop_last`, cut to one), and rank r takes every
/// num_replicas-th index from r. So the ranks' shares are disjoint apart from the padding,
/// cover the dataset (without drop_last), and have the same size, and every rank takes the
/// same number of steps. Pass `indices()` to `DataLoader::set_order`. The order differs from
/// PyTorch's (tapegrad's generator is not torch's); the shares' rules are PyTorch's.
/// `num_replicas` and `rank` are usually tg::dist::get_world_size() and get_rank().
class DistributedSampler {
 public:
  /// Error when `dataset_size` < 0 or `num_replicas` < 1; IndexError when `rank` is not in
  /// [0, num_replicas).
  DistributedSampler(int64_t dataset_size, int64_t num_replicas, int64_t rank, bool shuffle = true,
                     uint64_t seed = 0, bool drop_last = false);
  /// This rank's indices for the current epoch (PyTorch's `iter(sampler)`).
  std::vector<int64_t> indices() const;
  /// Indices per rank (PyTorch's `len(sampler)`): ceil(n / replicas), or floor with drop_last.
  int64_t size() const { return num_samples_; }
  /// size() * num_replicas: the padded (or cut) length of the whole order.
  int64_t total_size() const { return num_samples_ * num_replicas_; }
  /// Sets the epoch, which seeds the shuffle with `seed + epoch`: call it before each epoch
  /// on every rank, or every epoch has the same order.
  void set_epoch(int64_t epoch) { epoch_ = epoch; }
  int64_t epoch() const { return epoch_; }

 private:
  int64_t n_, num_replicas_, rank_;
  bool shuffle_;
  uint64_t seed_;
  bool drop_last_;
  int64_t num_samples_;
  int64_t epoch_ = 0;
};

}  // namespace tg::data
