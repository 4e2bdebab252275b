#pragma once

// Internal helpers shared by models/npy.cpp and models/npz.cpp (not installed API).

#include <bit>
#include <cstring>
#include <string>
#include <vector>

#include "models/npz.hpp"

namespace tg::npy_detail {

inline size_t type_size(NpyType t) {
  switch (t) {
    case NpyType::u8:
    case NpyType::b1:
      return 1;
    case NpyType::f32:
    case NpyType::i32:
      return 4;
    case NpyType::f64:
    case NpyType::i64:
    case NpyType::u64:
      return 8;
  }
  return 8;
}

inline const char* type_descr(NpyType t) {
  switch (t) {
    case NpyType::f32:
      return "<f4";
    case NpyType::f64:
      return "<f8";
    case NpyType::i32:
      return "<i4";
    case NpyType::i64:
      return "<i8";
    case NpyType::u64:
      return "<u8";
    case NpyType::u8:
      return "|u1";
    case NpyType::b1:
      return "|b1";
  }
  return "<f8";
}

template <class T>
inline T load_le(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  static_assert(std::endian::native == std::endian::little, "tapegrad assumes little-endian");
  return v;
}

template <class T>
inline void store_le(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

inline double element_as_double(const NpyArray& a, int64_t i) {
  const unsigned char* p = a.bytes.data() + static_cast<size_t>(i) * type_size(a.type);
  switch (a.type) {
    case NpyType::f32:
      return load_le<float>(p);
    case NpyType::f64:
      return load_le<double>(p);
    case NpyType::i32:
      return load_le<int32_t>(p);
    case NpyType::i64:
      return static_cast<double>(load_le<int64_t>(p));
    case NpyType::u64:
      return static_cast<double>(load_le<uint64_t>(p));
    case NpyType::u8:
    case NpyType::b1:
      return *p;
  }
  return 0.0;
}

inline std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace tg::npy_detail
