#pragma once

#include <array>
#include <cstddef>
#include <initializer_list>
#include <utility>
#include <vector>

namespace tg {

/// A vector that keeps up to N elements inline and moves to the heap beyond that.
/// Used for op inputs and returned gradients (nearly always 1-3 of them).
template <class T, size_t N>
class SmallVector {
 public:
  SmallVector() = default;
  SmallVector(std::initializer_list<T> init) {
    for (const auto& x : init) push_back(x);
  }
  template <class It>
  SmallVector(It first, It last) {
    for (; first != last; ++first) push_back(*first);
  }
  explicit SmallVector(size_t n) {
    for (size_t i = 0; i < n; ++i) push_back(T{});
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T* data() { return heap_.empty() ? inline_.data() : heap_.data(); }
  const T* data() const { return heap_.empty() ? inline_.data() : heap_.data(); }
  T& operator[](size_t i) { return data()[i]; }
  const T& operator[](size_t i) const { return data()[i]; }
  T* begin() { return data(); }
  T* end() { return data() + size_; }
  const T* begin() const { return data(); }
  const T* end() const { return data() + size_; }

  void push_back(T x) {
    if (heap_.empty() && size_ < N) {
      inline_[size_++] = std::move(x);
      return;
    }
    if (heap_.empty()) {
      heap_.reserve(N * 2);
      for (size_t i = 0; i < size_; ++i) heap_.push_back(std::move(inline_[i]));
      inline_ = {};
    }
    heap_.push_back(std::move(x));
    ++size_;
  }
  void clear() {
    inline_ = {};
    heap_.clear();
    heap_.shrink_to_fit();
    size_ = 0;
  }
  /// Moves all elements out (leaves this empty).
  template <class Out>
  void move_into(Out& out) {
    for (auto& x : *this) out.push_back(std::move(x));
    clear();
  }

 private:
  std::array<T, N> inline_{};
  std::vector<T> heap_;
  size_t size_ = 0;
};

}  // namespace tg
