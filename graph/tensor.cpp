#include "graph/tensor.hpp"

#include <atomic>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <new>
#include <ostream>
#include <sstream>

#include "graph/block_cache.hpp"
#include "graph/kernels.hpp"
#include "graph/live_counter.hpp"
#include "graph/rng.hpp"

namespace tg {

namespace {

using detail::kDataAlignment;

void format_value(std::ostream& os, double v) {
  if (std::isnan(v)) {
    os << "nan";
  } else if (std::isinf(v)) {
    os << (v > 0 ? "inf" : "-inf");
  } else {
    os << std::setprecision(6) << v;
  }
}

/// Every element as text: floats as before, integers exactly, bools as True / False.
std::vector<std::string> element_strings(const Tensor& t) {
  std::vector<std::string> out(static_cast<size_t>(t.numel()));
  dispatch_all(t.dtype(), [&]<class T>() {
    const T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      if constexpr (std::is_same_v<T, bool>) {
        out[static_cast<size_t>(i)] = p[i] ? "True" : "False";
      } else if constexpr (std::is_same_v<T, int64_t>) {
        out[static_cast<size_t>(i)] = std::to_string(p[i]);
      } else {
        std::ostringstream os;
        format_value(os, static_cast<double>(p[i]));
        out[static_cast<size_t>(i)] = os.str();
      }
    }
  });
  return out;
}

void print_rec(std::ostream& os, const Tensor& t, const std::vector<std::string>& v, int axis,
               int64_t offset, int64_t stride_total) {
  const Shape& s = t.shape();
  const int64_t n = s[axis];
  const int64_t stride = stride_total / n;
  os << '[';
  for (int64_t i = 0; i < n; ++i) {
    if (i) {
      if (axis == s.rank() - 1) {
        os << ", ";
      } else {
        os << ',' << std::string(static_cast<size_t>(s.rank() - axis - 1), '\n')
           << std::string(static_cast<size_t>(axis + 1), ' ');
      }
    }
    if (axis == s.rank() - 1) {
      os << v[static_cast<size_t>(offset + i)];
    } else {
      print_rec(os, t, v, axis + 1, offset + i * stride, stride);
    }
  }
  os << ']';
}

}  // namespace

namespace debug {
int64_t live_tensor_bytes() { return detail::g_live_bytes_counter.total(); }
}  // namespace debug

namespace detail {
void throw_not_floating(Dtype d, const char* op) {
  throw DtypeError(std::string(op) + ": expected a floating tensor (f32 or f64), got " +
                   std::string(dtype_name(d)));
}

void free_storage(Storage* s) noexcept {
  const size_t bytes = s->block_bytes;
  g_live_bytes_counter.add(-static_cast<int64_t>(bytes));
  block_free(s, bytes);
}
}  // namespace detail

Tensor Tensor::empty(const Shape& shape, Dtype dtype) {
  Tensor t;
  t.shape_ = shape;
  t.numel_ = shape.numel();
  t.dtype_ = dtype;
  t.allocate();
  return t;
}

void Tensor::allocate() {
  // One allocation holds the reference count and the data (counted in live_tensor_bytes,
  // taken from the block cache, graph/block_cache.hpp).
  const size_t block = block_size();
  void* p = detail::block_allocate(block);
  detail::g_live_bytes_counter.add(static_cast<int64_t>(block));
  storage_ = ::new (p) detail::Storage{{1}, block, {0}};
  data_ = data_start(storage_);
}

size_t Tensor::block_size() const {
  static_assert(alignof(detail::Storage) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
  if (static_cast<uint64_t>(numel_) > (SIZE_MAX - 1024) / itemsize(dtype_))
    throw std::bad_alloc();  // more bytes than the address space
  return detail::storage_block_bytes(nbytes());
}

void* Tensor::data_start(detail::Storage* s) {
  // The data starts on a 64-byte (cache line) boundary inside the block: a product written
  // to a fresh result then costs the same as one written to a caller's aligned buffer, with
  // no stores straddling cache lines. (What misalignment cost: bench/README.md,
  // "Measurements behind the Notes".)
  const auto first = reinterpret_cast<uintptr_t>(s + 1);
  return reinterpret_cast<std::byte*>(s + 1) +
         ((kDataAlignment - first % kDataAlignment) % kDataAlignment);
}

void Tensor::check_dtype(Dtype want) const {
  if (!defined()) throw Error("Tensor: access to an undefined tensor");
  if (want != dtype_)
    throw DtypeError("Tensor::data: tensor has dtype " + std::string(dtype_name(dtype_)) +
                     ", requested " + std::string(dtype_name(want)));
}

int64_t Tensor::size(int64_t axis) const { return shape_[normalize_axis(axis, dim(), "size")]; }

double Tensor::item() const {
  if (!defined()) throw Error("item: the tensor is undefined");
  if (numel_ != 1)
    throw ShapeError("item: tensor of shape " + shape_.str() + " has " + std::to_string(numel_) +
                     " elements, not 1");
  return dispatch_all(dtype_, [&]<class T>() { return static_cast<double>(data<T>()[0]); });
}

double Tensor::at(std::initializer_list<int64_t> index) const {
  if (!defined()) throw Error("at: the tensor is undefined");
  if (static_cast<int>(index.size()) != dim())
    throw IndexError("at: " + std::to_string(index.size()) + " indices for a tensor of shape " +
                     shape_.str());
  int64_t flat = 0;
  int axis = 0;
  for (int64_t i : index) {
    const int64_t n = shape_[axis];
    if (i < -n || i >= n)
      throw IndexError("at: index " + std::to_string(i) + " out of range for axis " +
                       std::to_string(axis) + " of shape " + shape_.str());
    flat = flat * n + (i < 0 ? i + n : i);
    ++axis;
  }
  return dispatch_all(dtype_, [&]<class T>() { return static_cast<double>(data<T>()[flat]); });
}

std::vector<double> Tensor::to_vector() const {
  std::vector<double> out(static_cast<size_t>(numel_));
  dispatch_all(dtype_, [&]<class T>() {
    const T* p = data<T>();
    for (int64_t i = 0; i < numel_; ++i) out[static_cast<size_t>(i)] = static_cast<double>(p[i]);
  });
  return out;
}

Tensor Tensor::to(Dtype dtype) const {
  if (dtype == dtype_ || !defined()) return *this;
  Tensor out = empty(shape_, dtype);
  out.copy_(*this);
  return out;
}

Tensor Tensor::clone() const {
  if (!defined()) return Tensor();
  Tensor out = empty(shape_, dtype_);
  if (numel_ > 0) std::memcpy(out.data_, data_, nbytes());
  return out;
}

Tensor Tensor::reshape(const Shape& shape) const { return reshape(shape.to_vector()); }

Tensor Tensor::view_range(int64_t offset, const Shape& shape) const {
  if (!defined()) throw Error("view_range: the tensor is undefined");
  const int64_t n = shape.numel();
  if (offset < 0 || offset > numel_ || n > numel_ - offset)
    throw ShapeError("view_range: elements [" + std::to_string(offset) + ", " +
                     std::to_string(offset + n) + ") of a tensor of " + std::to_string(numel_) +
                     " elements " + shape_.str());
  Tensor t(*this);
  t.data_ = static_cast<std::byte*>(data_) + static_cast<size_t>(offset) * itemsize(dtype_);
  t.shape_ = shape;
  t.numel_ = n;
  return t;
}

Tensor Tensor::reshape(const std::vector<int64_t>& dims) const {
  Shape out;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == -1) {
      if (infer >= 0) throw ShapeError("reshape: more than one -1 in the new shape");
      infer = static_cast<int>(i);
      out.push_back(1);
    } else {
      if (dims[i] < 0) throw ShapeError("reshape: negative extent in the new shape");
      out.push_back(dims[i]);
      known *= dims[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || numel_ % known != 0)
      throw ShapeError("reshape: cannot reshape " + shape_.str() + " (" + std::to_string(numel_) +
                       " elements) with a -1 extent and the other extents' product " +
                       std::to_string(known));
    out[infer] = numel_ / known;
  }
  if (out.numel() != numel_)
    throw ShapeError("reshape: cannot reshape " + shape_.str() + " (" + std::to_string(numel_) +
                     " elements) into " + out.str() + " (" + std::to_string(out.numel()) +
                     " elements)");
  Tensor t = *this;
  t.shape_ = out;
  return t;
}

Tensor& Tensor::fill_(double value) {
  bump_version();
  dispatch_all(dtype_, [&]<class T>() {
    T* p = data<T>();
    const T v = detail::convert<T>(value);
    for (int64_t i = 0; i < numel_; ++i) p[i] = v;
  });
  return *this;
}

namespace {
// Refuses an in-place op whose operand `src` partly shares memory with `dst` (views of one
// buffer, as view_range gives), as PyTorch does: the op would read elements it has already
// written. The very same elements (x.add_(x)) and disjoint ranges are fine.
void check_no_partial_overlap(const Tensor& dst, const Tensor& src, const char* op) {
  if (!dst.shares_storage_with(src) || dst.numel() == 0 || src.numel() == 0) return;
  const auto* d = static_cast<const std::byte*>(dst.raw_data());
  const auto* s = static_cast<const std::byte*>(src.raw_data());
  if (d + dst.nbytes() <= s || s + src.nbytes() <= d) return;
  if (d == s && dst.shape() == src.shape()) return;
  throw Error(std::string(op) + ": the operand " + src.shape().str() + " and the tensor " +
              dst.shape().str() +
              " overlap in one buffer (some elements would be read after being written); "
              "clone() the operand first");
}
}  // namespace

Tensor& Tensor::copy_(const Tensor& src) {
  if (src.shape() != shape_ && broadcast_shapes(shape_, src.shape(), "copy_") != shape_)
    throw ShapeError("copy_: source shape " + src.shape().str() +
                     " does not broadcast to the tensor's shape " + shape_.str());
  if (src.raw_data() == data_ && src.dtype() == dtype_ && src.shape() == shape_)
    return *this;  // the same elements
  check_no_partial_overlap(*this, src, "copy_");
  // As PyTorch, the source broadcasts to this shape (a copy when it must be spread).
  const Tensor full = src.shape() == shape_ ? src : kern::expand(src, shape_, "copy_");
  bump_version();
  dispatch_all(dtype_, [&]<class T>() {
    T* d = data<T>();
    dispatch_all(full.dtype(), [&]<class S>() {
      const S* s = full.data<S>();
      for (int64_t i = 0; i < numel_; ++i) d[i] = detail::convert<T>(s[i]);
    });
  });
  return *this;
}

namespace {
// Checks an in-place op's operand: same dtype, shape broadcasting to `t`'s.
void check_inplace_operand(const Tensor& t, const Tensor& other, const char* op) {
  if (!t.defined() || !other.defined()) throw Error(std::string(op) + ": the tensor is undefined");
  if (other.dtype() != t.dtype())
    throw DtypeError(std::string(op) + ": dtypes " + std::string(dtype_name(t.dtype())) + " and " +
                     std::string(dtype_name(other.dtype())) + " differ");
  if (broadcast_shapes(t.shape(), other.shape(), op) != t.shape())
    throw ShapeError(std::string(op) + ": shape " + other.shape().str() +
                     " does not broadcast to the tensor's shape " + t.shape().str());
  check_no_partial_overlap(t, other, op);
}

// t[i] = f(t[i], other[.]) with `other` broadcast to t's shape, for floating or i64 t.
template <class F>
void update_with(Tensor& t, const Tensor& other, const char* op, F f) {
  check_inplace_operand(t, other, op);
  if (t.dtype() == boolean) throw DtypeError(std::string(op) + ": not defined for dtype bool");
  t.bump_version();
  dispatch_all(t.dtype(), [&]<class T>() {
    if constexpr (!std::is_same_v<T, bool>) {
      T* p = t.data<T>();
      kern::zip_loop(p, t.shape(), other.data<T>(), other.shape(), p, t.shape(), f);
    }
  });
}
}  // namespace

namespace {
// An integer tensor takes only integral factors within int64's range (as PyTorch: 0.5
// would truncate to 0); returns the factor as an int64 (0 for a floating tensor).
int64_t check_integral_factor(const Tensor& t, double f, const char* op, const char* what) {
  if (t.dtype() != i64) return 0;
  if (f != std::trunc(f) || !(f >= -9.2233720368547758e18 && f < 9.2233720368547758e18))
    throw DtypeError(std::string(op) + ": " + what + " " + std::to_string(f) +
                     " is not an integer within int64's range, and the tensor is i64");
  return static_cast<int64_t>(f);
}
// a + k * b for i64 with two's-complement wrapping (PyTorch's result; signed overflow is
// undefined in C++).
int64_t wrapping_madd(int64_t a, int64_t k, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) +
                              static_cast<uint64_t>(k) * static_cast<uint64_t>(b));
}
}  // namespace

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  const int64_t ialpha = check_integral_factor(*this, alpha, "add_", "alpha");
  update_with(*this, other, "add_", [alpha, ialpha](auto a, auto b) {
    using T = decltype(a);
    if constexpr (std::is_same_v<T, int64_t>) return wrapping_madd(a, ialpha, b);
    return alpha == 1.0 ? T(a + b) : T(a + static_cast<T>(alpha) * b);
  });
  return *this;
}

Tensor& Tensor::mul_(const Tensor& other) {
  update_with(*this, other, "mul_", [](auto a, auto b) {
    if constexpr (std::is_same_v<decltype(a), int64_t>) return wrapping_madd(0, a, b);
    return decltype(a)(a * b);
  });
  return *this;
}

Tensor& Tensor::mul_(double s) {
  check_integral_factor(*this, s, "mul_", "factor");
  return mul_(scalar_tensor(s, dtype_));
}

Tensor& Tensor::masked_fill_(const Tensor& mask, double value) {
  if (mask.dtype() != boolean)
    throw DtypeError("masked_fill_: mask must be a bool tensor, got " +
                     std::string(dtype_name(mask.dtype())));
  if (broadcast_shapes(shape_, mask.shape(), "masked_fill_") != shape_)
    throw ShapeError("masked_fill_: mask of shape " + mask.shape().str() +
                     " does not broadcast to the tensor's shape " + shape_.str());
  check_no_partial_overlap(*this, mask, "masked_fill_");
  bump_version();
  dispatch_all(dtype_, [&]<class T>() {
    T* p = data<T>();
    const T v = detail::convert<T>(value);
    kern::zip_loop(p, shape_, mask.data<bool>(), mask.shape(), p, shape_,
                   [v](T a, bool m) { return m ? v : a; });
  });
  return *this;
}

Tensor& Tensor::clamp_(double lo, double hi) {
  if (!(lo <= hi))
    throw Error("clamp_: lo " + std::to_string(lo) + " is greater than hi " + std::to_string(hi));
  kern::check_floating(*this, "clamp_");
  bump_version();
  dispatch(dtype_, "clamp_", [&]<class T>() {
    T* p = data<T>();
    const T l = static_cast<T>(lo), h = static_cast<T>(hi);
    for (int64_t i = 0; i < numel_; ++i) p[i] = p[i] < l ? l : (p[i] > h ? h : p[i]);
  });
  return *this;
}

std::string Tensor::str() const {
  std::ostringstream os;
  os << *this;
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  if (!t.defined()) return os << "tensor(undefined)";
  const std::vector<std::string> v = element_strings(t);
  if (t.dim() == 0) {
    os << v[0];
  } else if (t.numel() == 0) {
    os << "[]";
  } else {
    print_rec(os, t, v, 0, 0, t.numel());
  }
  return os << " (" << dtype_name(t.dtype()) << ' ' << t.shape() << ')';
}

Tensor zeros(const Shape& shape, Dtype dtype) { return full(shape, 0.0, dtype); }
Tensor ones(const Shape& shape, Dtype dtype) { return full(shape, 1.0, dtype); }
Tensor full(const Shape& shape, double value, Dtype dtype) {
  Tensor t = Tensor::empty(shape, dtype);
  t.fill_(value);
  return t;
}
Tensor scalar_tensor(double value, Dtype dtype) { return full(Shape{}, value, dtype); }
Tensor empty_like(const Tensor& t) { return Tensor::empty(t.shape(), t.dtype()); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype()); }
Tensor full_like(const Tensor& t, double value) { return full(t.shape(), value, t.dtype()); }

Tensor tensor(const std::vector<double>& values, const Shape& shape, Dtype dtype) {
  if (static_cast<int64_t>(values.size()) != shape.numel())
    throw ShapeError("tensor: " + std::to_string(values.size()) + " values do not fill shape " +
                     shape.str());
  Tensor t = Tensor::empty(shape, dtype);
  dispatch_all(dtype, [&]<class T>() {
    T* p = t.data<T>();
    for (size_t i = 0; i < values.size(); ++i) p[i] = detail::convert<T>(values[i]);
  });
  return t;
}

Tensor arange(double start, double stop, double step, Dtype dtype) {
  if (step == 0.0 || !std::isfinite(start) || !std::isfinite(stop) || !std::isfinite(step))
    throw Error("arange: step must be non-zero and all bounds finite");
  if (dtype == boolean) throw DtypeError("arange: not defined for dtype bool");
  if (dtype == i64) {
    // As PyTorch: an i64 range truncates start, stop and step to integers first (reading
    // [-3.5, 2) as [-3, 2), not as -3.5, -2.5, ... truncated, which repeats 0).
    const int64_t b = detail::convert<int64_t>(start), e = detail::convert<int64_t>(stop),
                  s = detail::convert<int64_t>(step);
    if (s == 0 || b == INT64_MIN || e == INT64_MIN || s == INT64_MIN)
      throw Error(
          "arange: an i64 range needs a step of magnitude at least 1 and bounds within "
          "int64's range, got start " +
          std::to_string(start) + ", stop " + std::to_string(stop) + ", step " +
          std::to_string(step));
    const long double span = static_cast<long double>(e) - static_cast<long double>(b);
    const long double count = std::ceil(span / static_cast<long double>(s));
    const int64_t n = count > 0 ? static_cast<int64_t>(count) : 0;
    Tensor t = Tensor::empty(Shape{n}, dtype);
    int64_t* p = t.data<int64_t>();
    for (int64_t i = 0; i < n; ++i) p[i] = b + i * s;
    return t;
  }
  const double count = std::ceil((stop - start) / step);
  const int64_t n = count > 0 ? static_cast<int64_t>(count) : 0;
  Tensor t = Tensor::empty(Shape{n}, dtype);
  dispatch_all(dtype, [&]<class T>() {
    T* p = t.data<T>();
    for (int64_t i = 0; i < n; ++i)
      p[i] = detail::convert<T>(start + static_cast<double>(i) * step);
  });
  return t;
}

Tensor arange(int64_t n, Dtype dtype) { return arange(0.0, static_cast<double>(n), 1.0, dtype); }

Tensor randn(const Shape& shape, Rng& rng, Dtype dtype) {
  Tensor t = Tensor::empty(shape, dtype);
  dispatch(dtype, "randn", [&]<class T>() {
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(rng.normal());
  });
  return t;
}

Tensor rand(const Shape& shape, Rng& rng, double lo, double hi, Dtype dtype) {
  if (!(lo <= hi)) throw Error("rand: lo must not exceed hi");
  Tensor t = Tensor::empty(shape, dtype);
  dispatch(dtype, "rand", [&]<class T>() {
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(rng.uniform(lo, hi));
  });
  return t;
}

bool equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  return a.numel() == 0 || std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape())
    throw ShapeError("max_abs_diff: shapes " + a.shape().str() + " and " + b.shape().str() +
                     " differ");
  const auto va = a.to_vector(), vb = b.to_vector();
  double m = 0.0;
  for (size_t i = 0; i < va.size(); ++i) {
    const double d = std::abs(va[i] - vb[i]);
    if (std::isnan(d)) return d;
    m = std::max(m, d);
  }
  return m;
}

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  if (a.shape() != b.shape()) return false;
  const auto va = a.to_vector(), vb = b.to_vector();
  for (size_t i = 0; i < va.size(); ++i)
    if (!(std::abs(va[i] - vb[i]) <= atol + rtol * std::abs(vb[i]))) return false;
  return true;
}

bool has_nonfinite(const Tensor& t) {
  if (!is_floating(t.dtype())) return false;
  return dispatch(t.dtype(), [&]<class T>() {
    const T* p = t.data<T>();
    bool bad = false;
    for (int64_t i = 0; i < t.numel(); ++i) bad |= !std::isfinite(p[i]);
    return bad;
  });
}

}  // namespace tg
