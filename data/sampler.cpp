#include "data/sampler.hpp"

#include <numeric>
#include <string>
#include <utility>

#include "graph/error.hpp"
#include "graph/rng.hpp"

namespace tg::data {

std::vector<int64_t> shuffled_indices(int64_t n, Rng* rng) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (rng)
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng->below(i)]);
  return order;
}

DistributedSampler::DistributedSampler(int64_t dataset_size, int64_t num_replicas, int64_t rank,
                                       bool shuffle, uint64_t seed, bool drop_last)
    : n_(dataset_size),
      num_replicas_(num_replicas),
      rank_(rank),
      shuffle_(shuffle),
      seed_(seed),
      drop_last_(drop_last) {
  if (dataset_size < 0)
    throw Error("DistributedSampler: dataset_size must be >= 0, got " +
                std::to_string(dataset_size));
  if (num_replicas < 1)
    throw Error("DistributedSampler: num_replicas must be >= 1, got " +
                std::to_string(num_replicas));
  if (rank < 0 || rank >= num_replicas)
    throw IndexError("DistributedSampler: invalid rank " + std::to_string(rank) +
                     ", rank should be in the interval [0, " + std::to_string(num_replicas - 1) +
                     "]");
  // PyTorch's: with drop_last, ceil((n - replicas) / replicas) = floor(n / replicas).
  num_samples_ = drop_last ? n_ / num_replicas : (n_ + num_replicas - 1) / num_replicas;
}

std::vector<int64_t> DistributedSampler::indices() const {
  Rng rng(seed_ + static_cast<uint64_t>(epoch_));
  std::vector<int64_t> order = shuffled_indices(n_, shuffle_ ? &rng : nullptr);
  const int64_t total = total_size();
  // Pad by wrapping around (repeatedly when the padding is longer than the data), or cut.
  for (int64_t i = n_; i < total; ++i) order.push_back(order[static_cast<size_t>(i - n_)]);
  order.resize(static_cast<size_t>(total));
  std::vector<int64_t> mine;
  mine.reserve(static_cast<size_t>(num_samples_));
  for (int64_t i = rank_; i < total; i += num_replicas_)
    mine.push_back(order[static_cast<size_t>(i)]);
  return mine;
}

}  // namespace tg::data
