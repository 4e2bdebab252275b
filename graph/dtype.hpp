#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string_view>
#include <type_traits>
#include <utility>

namespace tg {

/// Element type of a tensor, chosen at run time: the floating types f32 and f64 (the only
/// ones that can carry gradients), i64 for indices, labels and token ids, and boolean for
/// masks (one byte per element, 0 or 1, as numpy's `|b1`).
enum class Dtype : unsigned char { f32, f64, i64, boolean };

inline constexpr Dtype f32 = Dtype::f32;
inline constexpr Dtype f64 = Dtype::f64;
inline constexpr Dtype i64 = Dtype::i64;
inline constexpr Dtype boolean = Dtype::boolean;

inline constexpr size_t itemsize(Dtype d) {
  return d == Dtype::f32 ? 4 : d == Dtype::boolean ? 1 : 8;
}
/// "f32", "f64", "i64" or "bool".
inline constexpr std::string_view dtype_name(Dtype d) {
  switch (d) {
    case Dtype::f32:
      return "f32";
    case Dtype::f64:
      return "f64";
    case Dtype::i64:
      return "i64";
    case Dtype::boolean:
      return "bool";
  }
  return "?";
}
/// f32 or f64: the dtypes arithmetic, gradients and optimizers work on.
inline constexpr bool is_floating(Dtype d) { return d == Dtype::f32 || d == Dtype::f64; }

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
template <>
struct DtypeOf<int64_t> {
  static constexpr Dtype value = Dtype::i64;
};
template <>
struct DtypeOf<bool> {
  static constexpr Dtype value = Dtype::boolean;
};
template <class T>
inline constexpr Dtype dtype_of = DtypeOf<T>::value;

namespace detail {
/// One value converted with PyTorch's rules: to bool, non-zero (NaN included) is true; a
/// floating value to i64 truncates toward zero, and NaN, infinities and values outside
/// int64's range give INT64_MIN (what x86's conversion gives PyTorch there; C++ leaves the
/// cast undefined).
template <class T, class S>
constexpr T convert(S v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v != S(0);
  } else if constexpr (std::is_same_v<T, int64_t> && std::is_floating_point_v<S>) {
    if (!(v >= S(-9.2233720368547758e18) && v < S(9.2233720368547758e18)))
      return std::numeric_limits<int64_t>::min();
    return static_cast<int64_t>(v);
  } else {
    return static_cast<T>(v);
  }
}
/// Throws DtypeError: `op` needs a floating tensor and got `d`.
[[noreturn]] void throw_not_floating(Dtype d, const char* op);
}  // namespace detail

/// Calls `f.template operator()<T>()` with T = float or double matching `d`; any other
/// dtype is a DtypeError naming `op` (every floating-only op passes its name).
template <class F>
decltype(auto) dispatch(Dtype d, const char* op, F&& f) {
  if (d == Dtype::f32) return f.template operator()<float>();
  if (d != Dtype::f64) [[unlikely]]
    detail::throw_not_floating(d, op);
  return f.template operator()<double>();
}
/// The same, for code that has no op name to give.
template <class F>
decltype(auto) dispatch(Dtype d, F&& f) {
  return dispatch(d, "this operation", std::forward<F>(f));
}

/// Calls `f.template operator()<T>()` with T = float, double, int64_t or bool matching `d`
/// (for code that works on every dtype: copies, conversions, printing, comparisons).
template <class F>
decltype(auto) dispatch_all(Dtype d, F&& f) {
  switch (d) {
    case Dtype::f32:
      return f.template operator()<float>();
    case Dtype::f64:
      return f.template operator()<double>();
    case Dtype::i64:
      return f.template operator()<int64_t>();
    case Dtype::boolean:
      break;
  }
  return f.template operator()<bool>();
}

}  // namespace tg
