#pragma once

#include <cstddef>
#include <string_view>

namespace tg {

/// Element type of a tensor, chosen at run time.
enum class Dtype : unsigned char { f32, f64 };

inline constexpr Dtype f32 = Dtype::f32;
inline constexpr Dtype f64 = Dtype::f64;

inline constexpr size_t itemsize(Dtype d) { return d == Dtype::f32 ? 4 : 8; }
inline constexpr std::string_view dtype_name(Dtype d) { return d == Dtype::f32 ? "f32" : "f64"; }

template <class T>
struct DtypeOf;
template <>
struct DtypeOf<float> {
  static constexpr Dtype value = Dtype::f32;
};
template <>
struct DtypeOf<double> {
  static constexpr Dtype value = Dtype::f64;
};
template <class T>
inline constexpr Dtype dtype_of = DtypeOf<T>::value;

/// Calls `f.template operator()<T>()` with T = float or double matching `d`.
template <class F>
decltype(auto) dispatch(Dtype d, F&& f) {
  if (d == Dtype::f32) return f.template operator()<float>();
  return f.template operator()<double>();
}

}  // namespace tg
