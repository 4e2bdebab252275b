#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "graph/dtype.hpp"
#include "graph/error.hpp"
#include "graph/shape.hpp"

namespace tg {

class Rng;

namespace detail {
struct NodePool;
/// The head of a tensor buffer: one allocation holds it and then the data, which starts on
/// the next 64-byte boundary. `refs` counts the Tensor handles sharing it.
struct Storage {
  std::atomic<long> refs;
  size_t block_bytes;  // the whole allocation, head included
  // In-place changes to the data so far (Note [Saved versions] in graph/var.cpp).
  std::atomic<uint32_t> version;
};
void free_storage(Storage* s) noexcept;
inline constexpr size_t kDataAlignment = 64;
/// The allocation that holds `data_bytes` of tensor data: head, alignment slack, data.
constexpr size_t storage_block_bytes(size_t data_bytes) {
  return sizeof(Storage) + kDataAlignment - 1 + data_bytes;
}
}  // namespace detail

/// Dense, contiguous, row-major data of any rank with a run-time dtype (f32, f64, i64 or
/// boolean).
///
/// A Tensor is a cheap handle: copies share the same buffer (like a LibTorch tensor or a
/// NumPy array view). `clone()` makes an independent copy. The buffer is one allocation
/// (data and reference count together).
class Tensor {
 public:
  Tensor() = default;
  Tensor(const Tensor& o) noexcept
      : storage_(o.storage_), data_(o.data_), shape_(o.shape_), numel_(o.numel_), dtype_(o.dtype_) {
    if (storage_) storage_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  /// Leaves `o` as a default (undefined, rank-0, empty) tensor.
  Tensor(Tensor&& o) noexcept
      : storage_(o.storage_), data_(o.data_), shape_(o.shape_), numel_(o.numel_), dtype_(o.dtype_) {
    o.storage_ = nullptr;
    o.data_ = nullptr;
    o.shape_.clear();
    o.numel_ = 0;
  }
  Tensor& operator=(const Tensor& o) noexcept {
    Tensor(o).swap(*this);
    return *this;
  }
  Tensor& operator=(Tensor&& o) noexcept {
    Tensor(std::move(o)).swap(*this);
    return *this;
  }
  ~Tensor() { release(); }
  void swap(Tensor& o) noexcept {
    std::swap(storage_, o.storage_);
    std::swap(data_, o.data_);
    std::swap(shape_, o.shape_);
    std::swap(numel_, o.numel_);
    std::swap(dtype_, o.dtype_);
  }

  /// A tensor whose contents are unspecified (to be overwritten).
  static Tensor empty(const Shape& shape, Dtype dtype = f32);

  /// From values in row-major order; `values.size()` must equal `shape.numel()`.
  template <class T>
  Tensor(const std::vector<T>& values, const Shape& shape);

  bool defined() const { return storage_ != nullptr; }
  Dtype dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int dim() const { return shape_.rank(); }
  int64_t numel() const { return numel_; }
  /// Extent of `axis` (negative counts from the end).
  int64_t size(int64_t axis) const;
  size_t nbytes() const { return static_cast<size_t>(numel_) * itemsize(dtype_); }

  /// Typed pointer to the first element; throws DtypeError when T does not match.
  template <class T>
  T* data() {
    if (dtype_ != dtype_of<T> || !storage_) [[unlikely]]
      check_dtype(dtype_of<T>);
    return static_cast<T*>(data_);
  }
  template <class T>
  const T* data() const {
    if (dtype_ != dtype_of<T> || !storage_) [[unlikely]]
      check_dtype(dtype_of<T>);
    return static_cast<const T*>(data_);
  }
  void* raw_data() { return data_; }
  const void* raw_data() const { return data_; }

  /// The single value of a one-element tensor, as double.
  double item() const;
  /// The element at a full index (negative indices count from the end), as double.
  double at(std::initializer_list<int64_t> index) const;
  /// All elements in row-major order, as double.
  std::vector<double> to_vector() const;

  /// A copy converted to `dtype` (this same tensor when it already has that dtype), with
  /// PyTorch's rules: floating to i64 truncates toward zero, non-zero to bool is true
  /// (detail::convert in graph/dtype.hpp).
  Tensor to(Dtype dtype) const;
  /// An independent copy.
  Tensor clone() const;
  /// The same buffer seen with another shape (one extent may be -1).
  Tensor reshape(const std::vector<int64_t>& shape) const;
  Tensor reshape(const Shape& shape) const;
  Tensor reshape(std::initializer_list<int64_t> shape) const {
    return reshape(std::vector<int64_t>(shape));
  }
  /// The `shape.numel()` elements from element `offset` of this tensor's row-major data,
  /// seen with `shape`: a view sharing the buffer and its version counter (one slice of a
  /// flat buffer, as DistributedDataParallel's gradient buckets). Throws ShapeError when the
  /// range leaves the tensor.
  Tensor view_range(int64_t offset, const Shape& shape) const;

  /// In place: every element set to `value` (converted as `to` does).
  Tensor& fill_(double value);
  /// In place: elements copied from `src` (broadcast to this shape; dtype converted; a
  /// source partly overlapping this tensor's memory is an Error, as PyTorch).
  Tensor& copy_(const Tensor& src);
  /// In place: every element set to 0.
  Tensor& zero_() { return fill_(0.0); }
  /// In place: += alpha * other / *= other / *= s (other of this dtype, broadcast to this
  /// shape; floating tensors, or i64 for add_ and mul_).
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& mul_(const Tensor& other);
  Tensor& mul_(double s);
  /// In place: `value` where mask (bool, broadcast to this shape) is true.
  Tensor& masked_fill_(const Tensor& mask, double value);
  /// In place: each element clamped to [lo, hi] (NaN stays NaN).
  Tensor& clamp_(double lo, double hi);

  /// How many times this buffer was changed in place (fill_, copy_, add_, mul_,
  /// masked_fill_, clamp_, optimizer updates and other in-place writes): a value saved for backward
  /// whose buffer changed since makes the backward throw instead of using the new data (Note [Saved
  /// versions] in graph/var.cpp).
  uint32_t version() const {
    return storage_ ? storage_->version.load(std::memory_order_relaxed) : 0;
  }
  /// Records an in-place change made through data<T>() (the library's in-place operations
  /// call it themselves).
  void bump_version() {
    if (storage_) storage_->version.fetch_add(1, std::memory_order_relaxed);
  }

  /// True when both handles share one buffer.
  bool shares_storage_with(const Tensor& other) const { return storage_ == other.storage_; }
  /// Number of handles sharing this buffer (used to decide when a buffer may be reused).
  long storage_use_count() const {
    return storage_ ? storage_->refs.load(std::memory_order_acquire) : 0;
  }

  /// NumPy-style text, e.g. "[[1, 2],\n [3, 4]]".
  std::string str() const;

 private:
  friend struct detail::NodePool;
  void check_dtype(Dtype want) const;
  // For the node pool (Note [Node recycling] in graph/node_pool.cpp): the bytes of this
  // tensor's block when this handle is its only holder (0 otherwise), and the same block
  // seen as a new tensor of `shape` and `dtype` whose data fill exactly that block.
  size_t sole_block_bytes() const {
    return storage_ && storage_->refs.load(std::memory_order_acquire) == 1 ? storage_->block_bytes
                                                                           : 0;
  }
  void reuse_block_as(const Shape& shape, int64_t numel, Dtype dtype) {
    shape_ = shape;
    numel_ = numel;
    dtype_ = dtype;
  }
  void allocate();            // the storage for shape_, numel_ and dtype_
  size_t block_size() const;  // the bytes allocate() takes (throws bad_alloc when too many)
  static void* data_start(detail::Storage* s);
  void release() noexcept {
    // The last handle needs no locked decrement: nobody else can copy it meanwhile.
    if (storage_ && (storage_->refs.load(std::memory_order_acquire) == 1 ||
                     storage_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1))
      detail::free_storage(storage_);
  }

  detail::Storage* storage_ = nullptr;
  void* data_ = nullptr;
  Shape shape_;
  int64_t numel_ = 0;
  Dtype dtype_ = f32;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

/// Factories.
Tensor zeros(const Shape& shape, Dtype dtype = f32);
Tensor ones(const Shape& shape, Dtype dtype = f32);
Tensor full(const Shape& shape, double value, Dtype dtype = f32);
/// The shape and dtype of `t`; contents unspecified, zeros, ones, or `value`.
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
/// A rank-0 tensor holding `value`.
Tensor scalar_tensor(double value, Dtype dtype = f32);
/// From values (converted to `dtype`) and a shape.
Tensor tensor(const std::vector<double>& values, const Shape& shape, Dtype dtype = f32);
/// [start, start + step, ...) up to but excluding `stop`.
Tensor arange(double start, double stop, double step = 1.0, Dtype dtype = f32);
Tensor arange(int64_t n, Dtype dtype = f32);
/// Standard normal values from `rng`.
Tensor randn(const Shape& shape, Rng& rng, Dtype dtype = f32);
/// Uniform values in [lo, hi) from `rng`.
Tensor rand(const Shape& shape, Rng& rng, double lo = 0.0, double hi = 1.0, Dtype dtype = f32);

/// Exact equality of shape, dtype and every element.
bool equal(const Tensor& a, const Tensor& b);
/// |a - b| <= atol + rtol * |b| elementwise (shapes must match, dtypes may differ).
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8);
/// Largest |a - b| (shapes must match).
double max_abs_diff(const Tensor& a, const Tensor& b);
/// True when any element is NaN or infinite.
bool has_nonfinite(const Tensor& t);

namespace debug {
/// Bytes currently held by live tensor buffers (all threads).
int64_t live_tensor_bytes();
/// Bytes of freed large buffers kept for reuse (see graph/block_cache.hpp).
int64_t cached_tensor_bytes();
/// Caps the reuse cache (default 1 GiB; 0 disables it and frees what it holds: the shared
/// cache and the calling thread's small blocks at once, another thread's small blocks the
/// next time that thread frees one).
void set_tensor_cache_limit(int64_t bytes);
}  // namespace debug

template <class T>
Tensor::Tensor(const std::vector<T>& values, const Shape& shape) {
  if (static_cast<int64_t>(values.size()) != shape.numel())
    throw ShapeError("Tensor: " + std::to_string(values.size()) + " values do not fill shape " +
                     shape.str());
  *this = empty(shape, dtype_of<T>);
  T* p = data<T>();
  for (size_t i = 0; i < values.size(); ++i) p[i] = values[i];
}

}  // namespace tg
