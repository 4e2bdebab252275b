#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "graph/error.hpp"
#include "graph/rng.hpp"
#include "graph/tensor.hpp"
#include "parallel/parallel.hpp"

namespace tg::data {

/// A file that cannot be read as the format it should be: the message names the file and
/// what is wrong with it.
class DataError : public IoError {
 public:
  using IoError::IoError;
};

/// Examples in memory: features [N, D] (f32) and, for classification, one label per row in
/// [0, num_classes); for regression, targets [N, T] instead.
struct Dataset {
  Tensor features;
  std::vector<int64_t> labels;
  Tensor targets;
  int64_t num_classes = 0;
  std::vector<std::string> class_names;

  int64_t size() const { return features.defined() ? features.shape()[0] : 0; }
  int64_t num_features() const { return features.defined() ? features.shape()[1] : 0; }
  /// The first `n` examples (all when n < 0 or n >= size()); shares nothing with this.
  Dataset head(int64_t n) const;
};

/// An IDX file (gzip-compressed or plain; every IDX element type) as an f32 or f64 tensor
/// with the file's own shape. Throws DataError naming the file and the problem: missing,
/// truncated, bad magic, unknown type, extents that do not match the data.
Tensor read_idx(const std::string& path, Dtype dtype = f32);

/// Fashion-MNIST (or MNIST) from a folder of the four standard IDX files
/// (`train-images-idx3-ubyte.gz`, ...; the `.gz` suffix optional): pixels scaled to
/// [0, 1], flattened to 784 features. `limit` keeps the first examples only.
Dataset load_mnist_like(const std::string& dir, bool train, int64_t limit = -1);
/// Where Debian's dataset-fashion-mnist package puts the files.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
/// Fashion-MNIST's ten class names, in label order.
const std::vector<std::string>& fashion_mnist_classes();

/// A CSV file with a header line: every column numeric.
struct CsvTable {
  std::vector<std::string> header;
  std::vector<std::vector<double>> rows;
  /// Index of `name` in the header; throws DataError naming the file when absent.
  size_t column(const std::string& name) const;
  std::string path;
};
/// Parses a CSV file (comma separated, header required, column names distinct and
/// non-empty, blank lines ignored, finite numbers only). Throws DataError naming the file,
/// line and column of the first problem.
CsvTable read_csv(const std::string& path);
/// A classification dataset from a CSV: `label_column` holds integer classes 0..C-1, every
/// other column is a feature.
Dataset csv_classification(const CsvTable& table, const std::string& label_column);
/// A regression dataset: `target_columns` are targets, the rest features.
/// Both store f32: a value outside float32's range throws DataError naming the file, row
/// and column.
Dataset csv_regression(const CsvTable& table, const std::vector<std::string>& target_columns);

/// One mini-batch.
struct Batch {
  Tensor features;
  std::vector<int64_t> labels;  // classification
  Tensor targets;               // regression
  int64_t size() const { return features.shape()[0]; }
};

/// Batches over a dataset, in order or shuffled by a seeded generator at the start of each
/// epoch; the last partial batch is kept.
///
/// With more than one thread (`tg::set_num_threads`), the loader gathers the following
/// batch on a worker while the caller trains on the current one (`set_prefetch(false)`
/// turns this off). Batches are the same either way; the dataset must not change while a
/// loader is in use.
class DataLoader {
 public:
  DataLoader(const Dataset& data, int64_t batch_size, bool shuffle = false, Rng* rng = nullptr);
  /// The loader keeps a reference to the dataset: a temporary would be gone after the
  /// constructor's statement.
  DataLoader(Dataset&& data, int64_t batch_size, bool shuffle = false, Rng* rng = nullptr) = delete;
  /// Waits for a batch being gathered in the background.
  ~DataLoader();
  // A background gather refers to this object.
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  /// Starts an epoch (reshuffles when shuffling).
  void reset();
  /// Starts an epoch over `order` instead of the loader's own order: indices into the
  /// dataset, in any number, repeats allowed (a custom sampler: a subset, class balancing,
  /// an order shared with another program). The next `reset()` returns to the loader's
  /// own order. Throws Error naming the first index out of range.
  void set_order(std::vector<int64_t> order);
  /// The next batch; false at the end of the epoch.
  bool next(Batch& batch);
  int64_t num_batches() const;
  int64_t batch_size() const { return batch_size_; }
  /// Gather the next batch in the background (default: on when there are worker threads).
  void set_prefetch(bool on);

 private:
  void gather(int64_t pos, int64_t n, Batch& out) const;
  void drop_prefetch() noexcept;

  const Dataset& data_;
  int64_t batch_size_;
  bool shuffle_;
  Rng* rng_;
  std::vector<int64_t> order_;
  int64_t pos_ = 0;
  bool prefetch_ = true;
  tg::detail::AsyncTask pending_;  // gathering `ahead_` from position pos_
  Batch ahead_;
};

}  // namespace tg::data
