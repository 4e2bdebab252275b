#include <algorithm>
#include <cstring>
#include <numeric>

#include "data/dataset.hpp"
#include "data/sampler.hpp"
#include "parallel/parallel.hpp"

namespace tg::data {

namespace {
// Rows `idx` of a [N, ...] tensor.
Tensor take_rows(const Tensor& t, const int64_t* idx, int64_t n) {
  Shape s = t.shape();
  s[0] = n;
  Tensor out = Tensor::empty(s, t.dtype());
  const size_t row = t.nbytes() / static_cast<size_t>(std::max<int64_t>(t.shape()[0], 1));
  const auto* src = static_cast<const std::byte*>(t.raw_data());
  auto* dst = static_cast<std::byte*>(out.raw_data());
  // Rows come from anywhere in a large array, so the copy waits on memory: splitting it over
  // the threads overlaps those waits (chunks of at least 64 KB), and each thread asks for the
  // row two ahead while it copies one (the hardware prefetcher follows a row, not the jump
  // to the next).
  const int64_t grain = std::max<int64_t>(1, (int64_t{64} << 10) / std::max<size_t>(row, 1));
  constexpr int64_t kAhead = 2;
  detail::parallel_for(n, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      if (i + kAhead < hi) {
        const std::byte* next = src + static_cast<size_t>(idx[i + kAhead]) * row;
        for (size_t o = 0; o < row; o += 64) __builtin_prefetch(next + o);
      }
      std::memcpy(dst + static_cast<size_t>(i) * row, src + static_cast<size_t>(idx[i]) * row, row);
    }
  });
  return out;
}
}  // namespace

Dataset Dataset::head(int64_t n) const {
  const int64_t keep = n < 0 ? size() : std::min(n, size());
  std::vector<int64_t> idx(static_cast<size_t>(keep));
  std::iota(idx.begin(), idx.end(), 0);
  Dataset d;
  d.features = take_rows(features, idx.data(), keep);
  if (targets.defined()) d.targets = take_rows(targets, idx.data(), keep);
  d.labels.assign(labels.begin(),
                  labels.begin() + std::min<int64_t>(keep, static_cast<int64_t>(labels.size())));
  d.num_classes = num_classes;
  d.class_names = class_names;
  return d;
}

DataLoader::DataLoader(const Dataset& data, int64_t batch_size, bool shuffle, Rng* rng)
    : data_(data), batch_size_(batch_size), shuffle_(shuffle), rng_(rng) {
  if (batch_size <= 0)
    throw Error("DataLoader: batch size must be positive, got " + std::to_string(batch_size));
  if (shuffle && !rng) throw Error("DataLoader: shuffling needs a generator (pass an Rng)");
  reset();
}

DataLoader::~DataLoader() { drop_prefetch(); }

void DataLoader::drop_prefetch() noexcept {
  pending_.cancel();  // a batch not started is never gathered; a failed one is discarded
  ahead_ = Batch{};
}

void DataLoader::set_prefetch(bool on) {
  prefetch_ = on;
  if (!on) drop_prefetch();
}

void DataLoader::reset() {
  drop_prefetch();  // it read the old order
  // Fisher-Yates with the caller's generator: same seed, same order.
  order_ = shuffled_indices(data_.size(), shuffle_ ? rng_ : nullptr);
  pos_ = 0;
}

void DataLoader::set_order(std::vector<int64_t> order) {
  for (size_t i = 0; i < order.size(); ++i)
    if (order[i] < 0 || order[i] >= data_.size())
      throw Error("DataLoader::set_order: index " + std::to_string(order[i]) + " at position " +
                  std::to_string(i) + " is outside the dataset's " + std::to_string(data_.size()) +
                  " examples");
  drop_prefetch();  // it read the old order
  order_ = std::move(order);
  pos_ = 0;
}

int64_t DataLoader::num_batches() const {
  return (static_cast<int64_t>(order_.size()) + batch_size_ - 1) / batch_size_;
}

void DataLoader::gather(int64_t pos, int64_t n, Batch& b) const {
  const int64_t* idx = order_.data() + pos;
  b.features = take_rows(data_.features, idx, n);
  b.labels.clear();
  if (!data_.labels.empty())
    for (int64_t i = 0; i < n; ++i) b.labels.push_back(data_.labels[static_cast<size_t>(idx[i])]);
  b.targets = data_.targets.defined() ? take_rows(data_.targets, idx, n) : Tensor();
}

bool DataLoader::next(Batch& b) {
  const auto size = static_cast<int64_t>(order_.size());
  const int64_t n = std::min(batch_size_, size - pos_);
  if (n <= 0) return false;
  if (pending_.valid()) {  // gathered in the background from pos_ (reset drops it)
    pending_.wait();
    std::swap(b, ahead_);
  } else {
    gather(pos_, n, b);
  }
  pos_ += n;
  const int64_t following = std::min(batch_size_, size - pos_);
  if (prefetch_ && following > 0 && num_threads() > 1)
    pending_ = detail::run_async([this, pos = pos_, following] { gather(pos, following, ahead_); },
                                 detail::Launch::with_next_parallel_for);
  return true;
}

}  // namespace tg::data
