#include "graph/shape.hpp"

#include <ostream>
#include <sstream>

#include "graph/error.hpp"

namespace tg {

Shape::Shape(std::initializer_list<int64_t> dims) { assign(dims.begin(), dims.size()); }

Shape::Shape(const std::vector<int64_t>& dims) { assign(dims.data(), dims.size()); }

// One pass over the extents (push_back per extent recomputed the product each time; this
// is on the path of every op result).
void Shape::assign(const int64_t* dims, size_t n) {
  if (n > static_cast<size_t>(kMaxRank))
    throw ShapeError("Shape: rank " + std::to_string(n) + " is above the maximum of " +
                     std::to_string(kMaxRank));
  int64_t prod = 1;
  for (size_t i = 0; i < n; ++i) {
    const int64_t d = dims[i];
    if (d <= 0 || __builtin_mul_overflow(prod, d, &prod)) {
      rank_ = 0;
      // A zero extent, or a fault: the checked path (zero extents are excluded from the
      // product there; a fault is found and worded).
      for (size_t j = 0; j < n; ++j) push_back(dims[j]);
      return;
    }
    dims_[i] = d;
  }
  rank_ = static_cast<int>(n);
}

void Shape::push_back(int64_t d) {
  if (rank_ == kMaxRank)
    throw ShapeError("Shape: rank above the maximum of " + std::to_string(kMaxRank));
  if (d < 0) throw ShapeError("Shape: negative extent " + std::to_string(d));
  // NOTE: the product of the non-zero extents must fit int64, so numel() never overflows
  // (a shape with a zero extent has numel 0 whatever the others are).
  int64_t prod = 1;
  for (int i = 0; i < rank_; ++i)
    if (dims_[static_cast<size_t>(i)] != 0) prod *= dims_[static_cast<size_t>(i)];
  int64_t ignored;
  if (d != 0 && __builtin_mul_overflow(prod, d, &ignored))
    throw ShapeError("Shape: extents " + str() + " and " + std::to_string(d) +
                     " have more elements than int64 can count");
  dims_[static_cast<size_t>(rank_++)] = d;
}

void Shape::insert(int pos, int64_t d) {
  push_back(d);
  for (int i = rank_ - 1; i > pos; --i) dims_[i] = dims_[i - 1];
  dims_[static_cast<size_t>(pos)] = d;
}

void Shape::erase(int pos) {
  for (int i = pos; i + 1 < rank_; ++i) dims_[i] = dims_[i + 1];
  --rank_;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < rank_; ++i) {
    if (i) s += ", ";
    s += std::to_string(dims_[static_cast<size_t>(i)]);
  }
  return s + "]";
}

bool operator==(const Shape& a, const Shape& b) {
  if (a.rank_ != b.rank_) return false;
  for (int i = 0; i < a.rank_; ++i)
    if (a.dims_[static_cast<size_t>(i)] != b.dims_[static_cast<size_t>(i)]) return false;
  return true;
}

std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  if (a == b) return a;
  const int r = std::max(a.rank(), b.rank());
  Shape out;
  for (int i = 0; i < r; ++i) {
    const int ia = i - (r - a.rank());
    const int ib = i - (r - b.rank());
    const int64_t da = ia >= 0 ? a[ia] : 1;
    const int64_t db = ib >= 0 ? b[ib] : 1;
    if (da != db && da != 1 && db != 1)
      throw ShapeError(std::string(op) + ": shapes " + a.str() + " and " + b.str() +
                       " cannot be broadcast together");
    out.push_back(da == 1 ? db : da);
  }
  return out;
}

int normalize_axis(int64_t axis, int rank, const char* op) {
  if (axis < -rank || axis >= rank || rank == 0)
    throw IndexError(std::string(op) + ": axis " + std::to_string(axis) +
                     " is out of range for a tensor of rank " + std::to_string(rank));
  return static_cast<int>(axis < 0 ? axis + rank : axis);
}

}  // namespace tg
