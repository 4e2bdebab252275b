#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <string>
#include <vector>

namespace tg {

class Tensor;

/// A tensor shape: up to `Shape::kMaxRank` extents, stored inline (no heap).
class Shape {
 public:
  static constexpr int kMaxRank = 8;

  Shape() = default;
  // Copies read the extents one by one (copy_dims).
  Shape(const Shape& o) noexcept : rank_(o.rank_) { copy_dims(o); }
  Shape& operator=(const Shape& o) noexcept {
    rank_ = o.rank_;
    copy_dims(o);
    return *this;
  }
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(const std::vector<int64_t>& dims);
  template <class It>
  Shape(It first, It last) {
    for (; first != last; ++first) push_back(static_cast<int64_t>(*first));
  }
  /// [rows, cols], checked like the other constructors (a matrix product's result shape,
  /// built without a loop).
  static Shape matrix(int64_t rows, int64_t cols) {
    int64_t n;
    if (rows < 0 || cols < 0 || __builtin_mul_overflow(rows, cols, &n)) [[unlikely]]
      return Shape{rows, cols};  // throws the checked constructor's ShapeError
    Shape s;
    s.set_matrix(rows, cols);
    return s;
  }

  int rank() const { return rank_; }
  size_t size() const { return static_cast<size_t>(rank_); }
  bool empty() const { return rank_ == 0; }
  int64_t operator[](int i) const { return dims_[static_cast<size_t>(i)]; }
  int64_t& operator[](int i) { return dims_[static_cast<size_t>(i)]; }
  const int64_t* begin() const { return dims_.data(); }
  const int64_t* end() const { return dims_.data() + rank_; }
  int64_t* begin() { return dims_.data(); }
  int64_t* end() { return dims_.data() + rank_; }
  int64_t back() const { return dims_[static_cast<size_t>(rank_ - 1)]; }

  void push_back(int64_t d);
  /// Rank 0 again.
  void clear() { rank_ = 0; }
  void insert(int pos, int64_t d);
  void erase(int pos);

  /// Product of the extents (1 for rank 0; cannot overflow: every way of building or
  /// changing a Shape except operator[] checks it, and writers through operator[] must).
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<size_t>(i)];
    return n;
  }
  std::vector<int64_t> to_vector() const { return {begin(), end()}; }
  /// "[2, 3]"
  std::string str() const;

  friend bool operator==(const Shape& a, const Shape& b);
  friend bool operator!=(const Shape& a, const Shape& b) { return !(a == b); }

 private:
  friend class Tensor;
  void assign(const int64_t* dims, size_t n);
  // [rows, cols], for extents the caller checked (non-negative, product in int64).
  void set_matrix(int64_t rows, int64_t cols) {
    dims_[0] = rows;
    dims_[1] = cols;
    rank_ = 2;
  }
  // Note [Shape copies]: a shape is usually copied right after it was written extent by
  // extent (an op's result, then its moves into a Var). A wide load of all eight slots, or
  // memcpy's 16-byte loads, cannot take their data from those pending 8-byte stores and
  // waits for them to reach the cache. So copies read extent by extent: one 8-byte load per
  // extent is forwarded from its store at once. The empty asm keeps the compiler from
  // merging the loop back into wide loads or a memcpy call. (What the wide load cost:
  // bench/README.md, "Measurements behind the Notes".)
  void copy_dims(const Shape& o) noexcept {
    for (int i = 0; i < rank_; ++i) {
      int64_t d = o.dims_[static_cast<size_t>(i)];
      asm("" : "+r"(d));
      dims_[static_cast<size_t>(i)] = d;
    }
  }

  std::array<int64_t, kMaxRank> dims_{};
  int rank_ = 0;
};

std::ostream& operator<<(std::ostream& os, const Shape& s);

/// NumPy broadcasting of two shapes; throws ShapeError naming `op` and both shapes.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

/// Normalises a possibly negative axis for a tensor of rank `rank`; throws IndexError
/// naming `op` when out of range.
int normalize_axis(int64_t axis, int rank, const char* op);

}  // namespace tg
